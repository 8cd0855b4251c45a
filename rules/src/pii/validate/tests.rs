use super::*;

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

#[test]
fn country_table_is_sorted_and_consistent() {
    for w in IBAN_COUNTRIES.windows(2) {
        assert!(w[0].0 < w[1].0, "{:?} before {:?}", w[0].0, w[1].0);
    }
    for (cc, len, shape) in IBAN_COUNTRIES {
        // The shape's counts add up to the BBAN length.
        let mut total = 0usize;
        let mut n = 0usize;
        for c in shape.bytes() {
            if c.is_ascii_digit() {
                n = n * 10 + usize::from(c - b'0');
            } else {
                assert!(matches!(c, b'n' | b'a' | b'c'), "{cc:?}");
                total += n;
                n = 0;
            }
        }
        assert_eq!(total + 4, usize::from(*len), "{}", String::from_utf8_lossy(*cc));
        assert!(usize::from(*len) <= IBAN_MAX_LEN);
    }
}

#[test]
fn luhn_and_brands() {
    assert!(luhn(&digits("79927398713")));
    assert!(!luhn(&digits("79927398710")));
    assert!(card(&digits("4111111111111111")));
    assert!(!card(&digits("4111111111111112")));
    assert_eq!(card_brand(&digits("378282246310005")), Some("amex"));
    assert_eq!(card_brand(&digits("5555555555554444")), Some("mastercard"));
    assert_eq!(card_brand(&digits("2223003122003222")), Some("mastercard"));
    assert_eq!(card_brand(&digits("6011111111111117")), Some("discover"));
    assert_eq!(card_brand(&digits("3566002020360505")), Some("jcb"));
    assert_eq!(card_brand(&digits("30569309025904")), Some("diners"));
    assert_eq!(card_brand(&digits("6200000000000005")), Some("unionpay"));
    assert_eq!(card_brand(&digits("9792030000000000")), Some("troy"));
    // Luhn-valid without a card prefix: not a card.
    assert!(luhn(&digits("1000000000000008")) && !card(&digits("1000000000000008")));
    // A Visa prefix at a length Visa does not issue.
    assert!(!card(&digits("41111111111111")));
}

#[test]
fn iin_prefilter_never_drops_a_brand() {
    for p4 in 0..10_000u32 {
        let mut d: Vec<u8> = format!("{p4:04}").bytes().map(|b| b - b'0').collect();
        for len in 13..=19 {
            d.resize(len, 0);
            for p6 in [0u8, 5, 9] {
                d[4] = p6;
                d[5] = p6;
                if card_brand(&d).is_some() {
                    assert!(iin_possible(p4), "{p4} len {len}");
                }
            }
        }
    }
}

#[test]
fn tckn_vkn_ssn() {
    assert!(tckn(&digits("10000000146")));
    assert!(!tckn(&digits("10000000147")));
    assert!(!tckn(&digits("10000000156")));
    assert!(!tckn(&digits("01000000146")));
    assert!(!tckn(&digits("1000000014")));
    // Published examples (GİB-valid numbers used by other validators' test suites).
    for ok in ["1234567890", "4540536920", "9029589240", "3721052062", "7920586482", "7439837246", "3253690336"] {
        assert!(vkn(&digits(ok)), "{ok}");
    }
    assert!(!vkn(&digits("4540536921")));
    assert!(!vkn(&digits("123456789")));
    assert!(ssn(&digits("123456789")));
    for bad in ["000456789", "666456789", "900456789", "999456789", "123006789", "123450000", "12345678"] {
        assert!(!ssn(&digits(bad)), "{bad}");
    }
}

#[test]
fn exactly_one_vkn_check_digit_per_body() {
    for base in ["123456789", "000000001", "987654321", "470000000"] {
        let valid: Vec<u8> = (0..10u8)
            .filter(|c| {
                let mut d = digits(base);
                d.push(*c);
                vkn(&d)
            })
            .collect();
        assert_eq!(valid.len(), 1, "{base}");
    }
}

#[test]
fn iban_registry_examples() {
    for s in [
        "DE89370400440532013000",
        "GB29NWBK60161331926819",
        "TR330006100519786457841326",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "ES9121000418450200051332",
        "IT60X0542811101000000123456",
        "CH9300762011623852957",
        "BE68539007547034",
        "AT611904300234573201",
        "PL61109010140000071219812874",
        "NO9386011117947",
        "DK5000400440116243",
        "FI2112345600000785",
        "IE29AIBK93115212345678",
        "SA0380000000608010167519",
        "AE070331234567890123456",
        "MT84MALT011000012345MTLCAST001S",
        "LC55HEMM000100010012001200023015",
        "MU17BOMM0101101030300200000MUR",
        "BR1800360305000010009795493C1",
        "GR1601101250000000012300695",
        "HU42117730161111101800000000",
        "RO49AAAA1B31007593840000",
        "CZ6508000000192000145399",
        "LU280019400644750000",
        "IL620108000000099999999",
        "KW81CBKU0000000000001234560101",
        "QA58DOHB00001234567890ABCDEFG",
        "UA213223130000026007233566001",
        "AZ21NABZ00000000137010001944",
        "SM86U0322509800000000270100",
        "VA59001123000012345678",
        "EG380019000500000000263180002",
        "SE4550000000058398257466",
        "PT50000201231234567890154",
    ] {
        assert!(iban(s.as_bytes()), "{s}");
    }
    assert!(!iban(b"DE89370400440532013001"), "checksum");
    assert!(!iban(b"DE8937040044053201300"), "length");
    assert!(!iban(b"XX89370400440532013000"), "country");
    assert!(!iban(b"GB29NWBK6016133192681A"), "shape: account is numeric");
}
