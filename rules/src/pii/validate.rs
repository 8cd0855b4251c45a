//! Check-digit and structure validators. Pure functions over digit values (`0..=9`) or ASCII
//! bytes; none allocates, none panics.

/// Luhn (mod 10) over digit values, rightmost digit being the check digit.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 2 {
        return false;
    }
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if k % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    matches!(sum % 10, 0)
}

/// Turkish identity number (T.C. Kimlik No): 11 digits, the first non-zero, the 10th
/// `((d1+d3+d5+d7+d9)·7 − (d2+d4+d6+d8)) mod 10`, the 11th `(d1+…+d10) mod 10`.
pub(crate) fn tckn(d: &[u8]) -> bool {
    let [d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11] = *d else {
        return false;
    };
    if d1 == 0 {
        return false;
    }
    let odd = u32::from(d1) + u32::from(d3) + u32::from(d5) + u32::from(d7) + u32::from(d9);
    let even = u32::from(d2) + u32::from(d4) + u32::from(d6) + u32::from(d8);
    // `odd·7 + 10·even − even` keeps it non-negative; the same residue mod 10.
    let c10 = (odd * 7 + even * 9) % 10;
    let sum10 = odd + even + u32::from(d10);
    c10 == u32::from(d10) && sum10 % 10 == u32::from(d11)
}

/// Turkish tax number (Vergi Kimlik No): 10 digits, the last a check digit over the first nine
/// (the Revenue Administration's algorithm).
pub(crate) fn vkn(d: &[u8]) -> bool {
    let Some((&last, first9)) = d.split_last() else {
        return false;
    };
    if first9.len() != 9 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &digit) in first9.iter().enumerate() {
        let i = i as u32;
        let tmp = (u32::from(digit) + 9 - i) % 10;
        sum += if tmp == 9 { 9 } else { (tmp * (1 << (9 - i))) % 9 };
    }
    (10 - sum % 10) % 10 == u32::from(last)
}

/// US Social Security number structure (9 digits `AAAGGSSSS`): area not 000, 666 or 900–999,
/// group not 00, serial not 0000. (There is no check digit.)
pub(crate) fn ssn(d: &[u8]) -> bool {
    let [a1, a2, a3, g1, g2, s1, s2, s3, s4] = *d else {
        return false;
    };
    let area = u32::from(a1) * 100 + u32::from(a2) * 10 + u32::from(a3);
    let group = g1 * 10 + g2;
    let serial = [s1, s2, s3, s4].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// The value of the leading `n` digits.
fn lead(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0u32, |acc, &x| acc * 10 + u32::from(x))
}

/// A payment card number: a known issuer prefix (IIN) with a length that issuer uses, and a
/// valid Luhn check digit. Numbers whose prefix belongs to no card scheme are not cards, however
/// Luhn-valid (`1` — UATP, rarely seen, and every Unix timestamp — is deliberately not one).
pub(crate) fn card(d: &[u8]) -> bool {
    card_brand(d).is_some() && luhn(d)
}

/// Whether a card number may start with these four digits (some scheme's prefix does): a cheap
/// test before reading a grouped number.
pub(crate) fn iin_possible(p4: u32) -> bool {
    let (p1, p2, p3) = (p4 / 1000, p4 / 100, p4 / 10);
    p1 == 4
        || matches!(p2, 34 | 36..=39 | 51..=55 | 60 | 62 | 65 | 81 | 82)
        || (2200..=2204).contains(&p4)
        || (2221..=2720).contains(&p4)
        || (300..=305).contains(&p3)
        || (644..=649).contains(&p3)
        || p3 == 508
        || (3528..=3589).contains(&p4)
        || matches!(p4, 3095 | 5018 | 5020 | 5038 | 5893 | 6011 | 6304 | 6759 | 6761..=6763 | 9792)
}

/// The scheme of a card number by prefix and length.
pub(crate) fn card_brand(d: &[u8]) -> Option<&'static str> {
    let n = d.len();
    let (p1, p2, p3, p4, p6) = (lead(d, 1), lead(d, 2), lead(d, 3), lead(d, 4), lead(d, 6));
    let brand = if p1 == 4 && matches!(n, 13 | 16 | 19) {
        "visa"
    } else if matches!(p2, 34 | 37) && n == 15 {
        "amex"
    } else if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16 {
        "mastercard"
    } else if (2200..=2204).contains(&p4) && (16..=19).contains(&n) {
        "mir"
    } else if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
        && (16..=19).contains(&n)
    {
        "discover"
    } else if p2 == 62 && (16..=19).contains(&n) {
        "unionpay"
    } else if (3528..=3589).contains(&p4) && (16..=19).contains(&n) {
        "jcb"
    } else if ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&n) {
        "diners"
    } else if (matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759) || (6761..=6763).contains(&p4))
        && (13..=19).contains(&n)
    {
        "maestro"
    } else if p4 == 9792 && n == 16 {
        "troy"
    } else if (matches!(p2, 60 | 81 | 82) || p3 == 508) && n == 16 {
        "rupay"
    } else {
        return None;
    };
    Some(brand)
}

/// ISO 7064 mod 97-10 over an IBAN-shaped string of ASCII upper-case letters and digits: the
/// first four characters moved to the end, letters as 10–35; valid when the remainder is 1.
pub(crate) fn mod97(s: &[u8]) -> bool {
    if s.len() < 5 {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut r = 0u32;
    for &c in tail.iter().chain(head) {
        r = match c {
            b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// An IBAN in electronic form (no spaces, upper case): a country of the IBAN registry, that
/// country's length and BBAN structure, and mod 97.
pub(crate) fn iban(s: &[u8]) -> bool {
    let Some(&(_, len, shape)) = s.get(..2).and_then(iban_country) else {
        return false;
    };
    s.len() == usize::from(len)
        && s.get(2..4).is_some_and(|c| c.iter().all(u8::is_ascii_digit))
        && s.get(4..).is_some_and(|bban| bban_matches(bban, shape))
        && mod97(s)
}

/// The registry entry of a two-letter country code.
pub(crate) fn iban_country(cc: &[u8]) -> Option<&'static (&'static [u8; 2], u8, &'static str)> {
    IBAN_COUNTRIES.binary_search_by(|(c, _, _)| c.as_slice().cmp(cc)).ok().and_then(|i| IBAN_COUNTRIES.get(i))
}

/// Checks a BBAN against the registry's structure notation: runs of `<count><class>` with `n`
/// digits, `a` upper-case letters, `c` upper-case letters or digits.
fn bban_matches(bban: &[u8], shape: &str) -> bool {
    let mut rest = bban;
    let mut count = 0usize;
    for c in shape.bytes() {
        if c.is_ascii_digit() {
            count = count * 10 + usize::from(c - b'0');
            continue;
        }
        let Some((run, after)) = (count <= rest.len()).then(|| rest.split_at(count)) else {
            return false;
        };
        let ok = match c {
            b'n' => run.iter().all(u8::is_ascii_digit),
            b'a' => run.iter().all(u8::is_ascii_uppercase),
            _ => run.iter().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
        };
        if !ok {
            return false;
        }
        rest = after;
        count = 0;
    }
    rest.is_empty()
}

/// Every country of the SWIFT IBAN registry (release 2024): code, IBAN length, BBAN structure.
/// Sorted by code (binary search).
static IBAN_COUNTRIES: &[(&[u8; 2], u8, &str)] = &[
    (b"AD", 24, "4n4n12c"),
    (b"AE", 23, "3n16n"),
    (b"AL", 28, "8n16c"),
    (b"AT", 20, "5n11n"),
    (b"AZ", 28, "4a20c"),
    (b"BA", 20, "3n3n8n2n"),
    (b"BE", 16, "3n7n2n"),
    (b"BG", 22, "4a4n2n8c"),
    (b"BH", 22, "4a14c"),
    (b"BI", 27, "5n5n11n2n"),
    (b"BR", 29, "8n5n10n1a1c"),
    (b"BY", 28, "4c4n16c"),
    (b"CH", 21, "5n12c"),
    (b"CR", 22, "4n14n"),
    (b"CY", 28, "3n5n16c"),
    (b"CZ", 24, "4n6n10n"),
    (b"DE", 22, "8n10n"),
    (b"DJ", 27, "5n5n11n2n"),
    (b"DK", 18, "4n9n1n"),
    (b"DO", 28, "4c20n"),
    (b"EE", 20, "2n2n11n1n"),
    (b"EG", 29, "4n4n17n"),
    (b"ES", 24, "4n4n1n1n10n"),
    (b"FI", 18, "3n11n"),
    (b"FK", 18, "2a12n"),
    (b"FO", 18, "4n9n1n"),
    (b"FR", 27, "5n5n11c2n"),
    (b"GB", 22, "4a6n8n"),
    (b"GE", 22, "2a16n"),
    (b"GI", 23, "4a15c"),
    (b"GL", 18, "4n9n1n"),
    (b"GR", 27, "3n4n16c"),
    (b"GT", 28, "4c20c"),
    (b"HN", 28, "4a20n"),
    (b"HR", 21, "7n10n"),
    (b"HU", 28, "3n4n1n15n1n"),
    (b"IE", 22, "4a6n8n"),
    (b"IL", 23, "3n3n13n"),
    (b"IQ", 23, "4a3n12n"),
    (b"IS", 26, "4n2n6n10n"),
    (b"IT", 27, "1a5n5n12c"),
    (b"JO", 30, "4a4n18c"),
    (b"KW", 30, "4a22c"),
    (b"KZ", 20, "3n13c"),
    (b"LB", 28, "4n20c"),
    (b"LC", 32, "4a24c"),
    (b"LI", 21, "5n12c"),
    (b"LT", 20, "5n11n"),
    (b"LU", 20, "3n13c"),
    (b"LV", 21, "4a13c"),
    (b"LY", 25, "3n3n15n"),
    (b"MC", 27, "5n5n11c2n"),
    (b"MD", 24, "2c18c"),
    (b"ME", 22, "3n13n2n"),
    (b"MK", 19, "3n10c2n"),
    (b"MN", 20, "4n12n"),
    (b"MR", 27, "5n5n11n2n"),
    (b"MT", 31, "4a5n18c"),
    (b"MU", 30, "4a2n2n12n3n3a"),
    (b"NI", 28, "4a20n"),
    (b"NL", 18, "4a10n"),
    (b"NO", 15, "4n6n1n"),
    (b"OM", 23, "3n16c"),
    (b"PK", 24, "4a16c"),
    (b"PL", 28, "8n16n"),
    (b"PS", 29, "4a21c"),
    (b"PT", 25, "4n4n11n2n"),
    (b"QA", 29, "4a21c"),
    (b"RO", 24, "4a16c"),
    (b"RS", 22, "3n13n2n"),
    (b"RU", 33, "9n5n15c"),
    (b"SA", 24, "2n18c"),
    (b"SC", 31, "4a2n2n16n3a"),
    (b"SD", 18, "2n12n"),
    (b"SE", 24, "3n16n1n"),
    (b"SI", 19, "5n8n2n"),
    (b"SK", 24, "4n6n10n"),
    (b"SM", 27, "1a5n5n12c"),
    (b"SO", 23, "4n3n12n"),
    (b"ST", 25, "8n11n2n"),
    (b"SV", 28, "4a20n"),
    (b"TL", 23, "3n14n2n"),
    (b"TN", 24, "2n3n13n2n"),
    (b"TR", 26, "5n1n16c"),
    (b"UA", 29, "6n19c"),
    (b"VA", 22, "3n15n"),
    (b"VG", 24, "4a16n"),
    (b"XK", 20, "4n10n2n"),
    (b"YE", 30, "4a4n18c"),
];

/// The longest IBAN of any country.
pub(crate) const IBAN_MAX_LEN: usize = 34;

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
