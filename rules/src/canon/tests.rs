use super::*;
use proptest::prelude::*;
use CanonError::*;

/// Every bypass form we know of, and the ordinary paths that must keep working.
const CASES: &[(&str, Result<&str, CanonError>)] = &[
    // Already canonical.
    ("/", Ok("/")),
    ("/api/business/42/orders", Ok("/api/business/42/orders")),
    ("/api/", Ok("/api/")),
    ("/~user", Ok("/~user")),
    ("/a:b@c!$&'()*+,=-_~.x", Ok("/a:b@c!$&'()*+,=-_~.x")),
    ("/caf%C3%A9", Ok("/caf%C3%A9")),
    ("/%F0%9F%A6%80/", Ok("/%F0%9F%A6%80/")),
    ("/a%20b", Ok("/a%20b")),
    ("/%25", Ok("/%25")),
    ("/%25zz", Ok("/%25zz")),
    ("/100%25/off", Ok("/100%25/off")),
    ("/%5B%5D", Ok("/%5B%5D")),
    ("/.well-known/x", Ok("/.well-known/x")),
    ("/a/..b/c..d", Ok("/a/..b/c..d")),
    ("/file.tar.gz", Ok("/file.tar.gz")),
    ("/a:b", Ok("/a:b")),
    ("/a$b:c", Ok("/a$b:c")),
    // Decoding of unreserved characters and case of escapes.
    ("/%61dmin", Ok("/admin")),
    ("/%41DMIN", Ok("/ADMIN")),
    ("/%7Euser", Ok("/~user")),
    ("/%7euser", Ok("/~user")),
    ("/%2D%2e%5F%7E", Ok("/-._~")),
    ("/api/%62usiness//42/./orders", Ok("/api/business/42/orders")),
    ("/a%3ab", Ok("/a%3Ab")),
    ("/caf%c3%a9", Ok("/caf%C3%A9")),
    ("/caf\u{e9}", Ok("/caf%C3%A9")),
    ("/\u{1F980}", Ok("/%F0%9F%A6%80")),
    ("/%c2%a0x", Ok("/%C2%A0x")),
    // Bytes outside pchar get encoded.
    ("/a b", Ok("/a%20b")),
    ("/a\"b<c>", Ok("/a%22b%3Cc%3E")),
    ("/{x}|^`", Ok("/%7Bx%7D%7C%5E%60")),
    ("/[::1]", Ok("/%5B::1%5D")),
    // Slashes and dot segments.
    ("//admin", Ok("/admin")),
    ("///a//b", Ok("/a/b")),
    ("/a//", Ok("/a/")),
    ("/./admin", Ok("/admin")),
    ("/.", Ok("/")),
    ("/a/.", Ok("/a/")),
    ("/a/./b/./", Ok("/a/b/")),
    ("/a/..", Ok("/")),
    ("/a/b/..", Ok("/a/")),
    ("/a/b/../../admin", Ok("/admin")),
    ("/a/%2e%2e/admin", Ok("/admin")),
    ("/a/.%2E/admin", Ok("/admin")),
    ("/a/%2E./admin", Ok("/admin")),
    ("/a/%2e/admin", Ok("/a/admin")),
    ("/a//..//admin", Ok("/admin")),
    ("/../", Err(DotDotAboveRoot)),
    ("/..", Err(DotDotAboveRoot)),
    ("/%2e%2e/", Err(DotDotAboveRoot)),
    ("/%2E%2E/", Err(DotDotAboveRoot)),
    ("/.%2e/", Err(DotDotAboveRoot)),
    ("/%2e./", Err(DotDotAboveRoot)),
    ("/a/../../", Err(DotDotAboveRoot)),
    ("/a/./../..", Err(DotDotAboveRoot)),
    ("//../etc/passwd", Err(DotDotAboveRoot)),
    // Not origin-form / length.
    ("", Err(NotOriginForm)),
    ("*", Err(NotOriginForm)),
    ("http://x/", Err(NotOriginForm)),
    ("api/x", Err(NotOriginForm)),
    ("?a=1", Err(NotOriginForm)),
    // Malformed escapes (including IIS %u).
    ("/%", Err(BadPercentEncoding)),
    ("/a%", Err(BadPercentEncoding)),
    ("/%zz", Err(BadPercentEncoding)),
    ("/%2", Err(BadPercentEncoding)),
    ("/%g0", Err(BadPercentEncoding)),
    ("/%u002e%u002e/", Err(BadPercentEncoding)),
    ("/%uff0f", Err(BadPercentEncoding)),
    // Double encoding, in the input and produced by decoding.
    ("/%252e%252e/", Err(DoubleEncoding)),
    ("/%252F", Err(DoubleEncoding)),
    ("/%252f", Err(DoubleEncoding)),
    ("/a%2500", Err(DoubleEncoding)),
    ("/%2525", Err(DoubleEncoding)),
    ("/%25%32%65", Err(DoubleEncoding)),
    ("/%25%32%45%25%32%45/", Err(DoubleEncoding)),
    ("/%25ab", Err(DoubleEncoding)),
    ("/%25u002e", Err(DoubleEncoding)),
    ("/%25%75%30%30%32%65", Err(DoubleEncoding)),
    // Path parameters.
    ("/a/..;/admin", Err(PathParameter)),
    ("/..;/admin", Err(PathParameter)),
    ("/admin;jsessionid=x", Err(PathParameter)),
    ("/admin;x/secret", Err(PathParameter)),
    ("/;/admin", Err(PathParameter)),
    // Encoded path parameters: decoded before `;` is stripped, `..%3B` is `..`.
    ("/a%3Bb", Err(EncodedSemicolon)),
    ("/a%3bb", Err(EncodedSemicolon)),
    ("/api/x/..%3B/whatsapp/x", Err(EncodedSemicolon)),
    ("/api/x/..%3b/admin", Err(EncodedSemicolon)),
    ("/x/.%2E%3B/admin", Err(EncodedSemicolon)),
    ("/x/%2e%2e%3Bjsessionid=1/admin", Err(EncodedSemicolon)),
    ("/admin%3Bx/secret", Err(EncodedSemicolon)),
    ("/%3B/admin", Err(EncodedSemicolon)),
    // Query and fragment delimiters, raw (only through a direct call) or encoded.
    ("/a#b", Err(QueryDelimiter)),
    ("/a?b", Err(QueryDelimiter)),
    ("/x/..%3F/admin", Err(QueryDelimiter)),
    ("/admin%3f.css", Err(QueryDelimiter)),
    ("/x/..%23/admin", Err(QueryDelimiter)),
    ("/public%23/../admin", Err(QueryDelimiter)),
    // ASP.NET cookieless sessions, in any segment, with encoded parentheses too.
    ("/(S(x))/admin", Err(CookielessSession)),
    ("/admin/(S(abc))/secret", Err(CookielessSession)),
    ("/(A(x)F(y))/admin", Err(CookielessSession)),
    ("/(s(x))", Err(CookielessSession)),
    ("/%28S%28x%29%29/admin", Err(CookielessSession)),
    ("/%28S(x%29)/admin", Err(CookielessSession)),
    ("/(S())/", Err(CookielessSession)),
    ("/(x)/(S)/a(S(b))/(1(x))/((S))", Ok("/(x)/(S)/a(S(b))/(1(x))/((S))")),
    ("/(S(x)", Ok("/(S(x)")),
    ("/%28a%29", Ok("/%28a%29")),
    // Slashes and backslashes in disguise.
    ("/%2F", Err(EncodedSlash)),
    ("/%2f", Err(EncodedSlash)),
    ("/admin%2fsecret", Err(EncodedSlash)),
    ("/..%2f..%2fetc", Err(EncodedSlash)),
    ("/a%5cb", Err(EncodedBackslash)),
    ("/a%5Cb", Err(EncodedBackslash)),
    ("/..%5c", Err(EncodedBackslash)),
    ("/a\\b", Err(Backslash)),
    ("/..\\admin", Err(Backslash)),
    // NUL and controls.
    ("/%00", Err(Nul)),
    ("/a\0b", Err(Nul)),
    ("/admin%00.png", Err(Nul)),
    ("/%0a", Err(ControlCharacter)),
    ("/%0D%0ASet-Cookie:x", Err(ControlCharacter)),
    ("/a\tb", Err(ControlCharacter)),
    ("/a\nb", Err(ControlCharacter)),
    ("/%7f", Err(ControlCharacter)),
    ("/a\x7fb", Err(ControlCharacter)),
    ("/%C2%85", Err(ControlCharacter)),
    ("/\u{85}", Err(ControlCharacter)),
    // Overlong UTF-8.
    ("/%c0%ae%c0%ae/", Err(OverlongEncoding)),
    ("/%C0%AE%C0%AE%C0%AF", Err(OverlongEncoding)),
    ("/%c0%af", Err(OverlongEncoding)),
    ("/%c1%9c", Err(OverlongEncoding)),
    ("/%c1%1c", Err(InvalidUtf8)),
    ("/%e0%80%ae", Err(OverlongEncoding)),
    ("/%e0%80%af", Err(OverlongEncoding)),
    ("/%f0%80%80%af", Err(OverlongEncoding)),
    ("/%f8%80%80%80%af", Err(OverlongEncoding)),
    ("/%fc%80%80%80%80%af", Err(OverlongEncoding)),
    // Invalid UTF-8.
    ("/%ED%A0%80", Err(InvalidUtf8)),
    ("/%ed%bf%bf", Err(InvalidUtf8)),
    ("/%c3", Err(InvalidUtf8)),
    ("/%c3/", Err(InvalidUtf8)),
    ("/%c3%", Err(InvalidUtf8)),
    ("/%a9", Err(InvalidUtf8)),
    ("/%f4%90%80%80", Err(InvalidUtf8)),
    ("/%f8%88%80%80%80", Err(InvalidUtf8)),
    ("/%fe", Err(InvalidUtf8)),
    ("/%ff", Err(InvalidUtf8)),
    // Confusables.
    ("/%EF%BC%8F", Err(Confusable)),
    ("/..%ef%bc%8fadmin", Err(Confusable)),
    ("/%ef%bc%8e%ef%bc%8e/", Err(Confusable)),
    ("/\u{FF0F}admin", Err(Confusable)),
    ("/\u{FF0E}\u{FF0E}/", Err(Confusable)),
    ("/a%EF%BC%BCb", Err(Confusable)),
    ("/%E2%88%95", Err(Confusable)),
    ("/%E2%81%84", Err(Confusable)),
    ("/%E2%A7%B8", Err(Confusable)),
    ("/%EF%B9%A8", Err(Confusable)),
    ("/%E2%80%A4", Err(Confusable)),
    ("/%E2%80%A5", Err(Confusable)),
    ("/%EF%BC%85", Err(Confusable)),
    ("/%EF%BD%81dmin", Err(Confusable)),
    ("/%CD%BE", Err(Confusable)),
    ("/%EF%B9%92", Err(Confusable)),
    ("/a%E2%A9%B4%24DATA", Err(Confusable)),
    // Windows trailing dot/space.
    ("/admin.", Err(TrailingDotOrSpace)),
    ("/admin./", Err(TrailingDotOrSpace)),
    ("/admin%2e", Err(TrailingDotOrSpace)),
    ("/admin%20", Err(TrailingDotOrSpace)),
    ("/admin /x", Err(TrailingDotOrSpace)),
    ("/admin. . ", Err(TrailingDotOrSpace)),
    ("/...", Err(TrailingDotOrSpace)),
    ("/a/.../b", Err(TrailingDotOrSpace)),
    ("/.. ", Err(TrailingDotOrSpace)),
    ("/%2e%2e%20/", Err(TrailingDotOrSpace)),
    ("/. ", Err(TrailingDotOrSpace)),
    // NTFS alternate data streams.
    ("/admin::$DATA", Err(NtfsStream)),
    ("/admin:$i30:$INDEX_ALLOCATION/x", Err(NtfsStream)),
    ("/admin%3A%3A%24DATA", Err(NtfsStream)),
    ("/admin:%24DATA", Err(NtfsStream)),
];

#[test]
fn table() {
    assert!(CASES.len() >= 60, "{}", CASES.len());
    for &(input, expected) in CASES {
        let got = canonicalize(input.as_bytes());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "input {input:?}");
        if let Ok(out) = got {
            if out == input {
                assert!(matches!(out, Cow::Borrowed(_)), "canonical input not borrowed: {input:?}");
            }
            let again = canonicalize(out.as_bytes());
            assert!(matches!(again, Ok(Cow::Borrowed(s)) if s == out), "not idempotent: {input:?}");
        }
    }
}

#[test]
fn raw_bytes() {
    let cases: &[(&[u8], Result<&str, CanonError>)] = &[
        (b"/caf\xc3\xa9", Ok("/caf%C3%A9")),
        (b"/caf\xc3%A9", Ok("/caf%C3%A9")),
        (b"/\xef\xbc\x8fadmin", Err(Confusable)),
        (b"/\xc0\xae\xc0\xae/", Err(OverlongEncoding)),
        (b"/\xe0\x80\xaf", Err(OverlongEncoding)),
        (b"/\xff", Err(InvalidUtf8)),
        (b"/a\xc3", Err(InvalidUtf8)),
        (b"/\xed\xa0\x80", Err(InvalidUtf8)),
        (b"/\x80", Err(InvalidUtf8)),
    ];
    for &(input, expected) in cases {
        assert_eq!(canonicalize(input).as_deref().map_err(|e| *e), expected, "input {input:?}");
    }
}

/// Every code point whose NFKC form contains `/ \\ . % ? # ; :` (Unicode 14), plus the
/// best-fit slashes, must be refused; ordinary non-ASCII must not.
#[test]
fn confusables() {
    let mut nfkc_structural: Vec<u32> = vec![
        0x37E, 0x2024, 0x2025, 0x2026, 0x2047, 0x2048, 0x2049, 0x2100, 0x2101, 0x2105, 0x2106, 0x2A74, 0x33C2, 0x33C7,
        0x33D8, 0xFE13, 0xFE14, 0xFE16, 0xFE19, 0xFE30, 0xFE52, 0xFE54, 0xFE55, 0xFE56, 0xFE5F, 0xFE68, 0xFE6A, 0xFF03,
        0xFF05, 0xFF0E, 0xFF0F, 0xFF1A, 0xFF1B, 0xFF1F, 0xFF3C, 0x1F100,
    ];
    nfkc_structural.extend(0x2488..=0x249B);
    nfkc_structural.extend([0x2044, 0x2215, 0x2216, 0x29F5, 0x29F8, 0x29F9, 0xFF41]);
    for cp in nfkc_structural {
        let c = char::from_u32(cp).unwrap();
        let raw = format!("/a{c}b");
        assert_eq!(canonicalize(raw.as_bytes()), Err(Confusable), "U+{cp:04X}");
        let encoded: String =
            raw.bytes().map(|b| if b < 0x80 { (b as char).to_string() } else { format!("%{b:02x}") }).collect();
        assert_eq!(canonicalize(encoded.as_bytes()), Err(Confusable), "U+{cp:04X} encoded");
    }
    for ok in ["\u{e9}", "\u{4e2d}\u{6587}", "\u{a0}x", "\u{3002}", "\u{1F980}", "\u{FF61}", "\u{10FFFF}"] {
        let raw = format!("/a{ok}b");
        assert!(canonicalize(raw.as_bytes()).is_ok(), "{ok:?}");
    }
}

#[test]
fn borrowed_prefix_when_only_trailing_dots_removed() {
    let raw = b"/a/b/..";
    let out = canonicalize(raw).unwrap();
    assert_eq!(out, "/a/");
    assert!(matches!(out, Cow::Borrowed(_)));
}

#[test]
fn length_limits() {
    let mut ok = vec![b'/'];
    ok.resize(MAX_PATH_LEN, b'a');
    assert!(matches!(canonicalize(&ok), Ok(Cow::Borrowed(_))));
    ok.push(b'a');
    assert_eq!(canonicalize(&ok), Err(TooLong));
    // Short enough raw, too long once encoded: refused, or idempotence would break.
    let mut grows = vec![b'/'];
    grows.resize(4000, b' ');
    grows.push(b'x');
    assert_eq!(canonicalize(&grows), Err(TooLong));
    // Long but shrinking: fine.
    let long = "/%61".repeat(2000);
    assert_eq!(canonicalize(long.as_bytes()).unwrap(), "/a".repeat(2000));
}

#[test]
fn errors_have_stable_names_and_messages() {
    let all = [
        NotOriginForm,
        TooLong,
        BadPercentEncoding,
        EncodedSlash,
        EncodedBackslash,
        Backslash,
        Nul,
        ControlCharacter,
        DoubleEncoding,
        InvalidUtf8,
        OverlongEncoding,
        Confusable,
        PathParameter,
        EncodedSemicolon,
        QueryDelimiter,
        CookielessSession,
        DotDotAboveRoot,
        TrailingDotOrSpace,
        NtfsStream,
    ];
    let mut names: Vec<_> = all.iter().map(|e| e.as_str()).collect();
    assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    assert_eq!(EncodedSlash.as_str(), "encoded_slash");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
    assert!(all.iter().all(|e| !e.to_string().is_empty()));
}

#[test]
fn has_prefix_cases() {
    let yes = [
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/api/x", "/api"),
        ("/api/x/y", "/api/x"),
        ("/api", "/api/"),
        ("/api/", "/api/"),
        ("/api/x", "/api/"),
        ("/anything", "/"),
        ("/", "/"),
        ("/anything", ""),
        ("/", ""),
    ];
    for (path, prefix) in yes {
        assert!(has_prefix(path, prefix), "{path:?} under {prefix:?}");
    }
    let no = [
        ("/apix", "/api"),
        ("/apix", "/api/"),
        ("/ap", "/api"),
        ("/", "/api"),
        ("/v1/api", "/api"),
        ("/admin", "/administrator"),
        ("/administrator", "/admin"),
    ];
    for (path, prefix) in no {
        assert!(!has_prefix(path, prefix), "{path:?} not under {prefix:?}");
    }
}

fn check_canonical_shape(out: &str) -> Result<(), TestCaseError> {
    let b = out.as_bytes();
    prop_assert!(out.is_ascii());
    prop_assert!(out.starts_with('/'));
    prop_assert!(out.len() <= MAX_PATH_LEN);
    prop_assert!(!out.contains("//"));
    for seg in out.split('/') {
        prop_assert!(seg != "." && seg != "..", "dot segment in {:?}", out);
        prop_assert!(!seg.ends_with('.') && !seg.ends_with("%20"), "trailing dot/space in {:?}", out);
    }
    prop_assert!(!out.contains(';') && !out.contains('\\'));
    let upper = out.to_ascii_uppercase();
    prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"));
    for (k, &c) in b.iter().enumerate() {
        prop_assert!(!c.is_ascii_control());
        prop_assert!(c != b' ' && c != b'"' && c != b'<' && c != b'>' && c != b'?' && c != b'#');
        if c == b'%' {
            let hex = &b[k + 1..k + 3];
            prop_assert!(hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)), "{:?}", out);
            let v = escape_at(b, k).unwrap_or(0);
            prop_assert!(!is_unreserved(v), "needless escape in {:?}", out);
        }
    }
    check_upstream_view(out)
}

/// What an upstream that percent-decodes once sees must have the same segments as `out`,
/// none of them a dot segment or ending in a dot or space, no backslash or control, valid
/// UTF-8, and nothing a second decode would change.
fn check_upstream_view(out: &str) -> Result<(), TestCaseError> {
    let b = out.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut k = 0;
    while k < b.len() {
        match escape_at(b, k) {
            Some(v) if b[k] == b'%' => {
                decoded.push(v);
                k += 3;
            }
            _ => {
                decoded.push(b[k]);
                k += 1;
            }
        }
    }
    let text = std::str::from_utf8(&decoded);
    prop_assert!(text.is_ok(), "{:?}", out);
    prop_assert_eq!(decoded.iter().filter(|&&c| c == b'/').count(), out.matches('/').count());
    prop_assert!(
        !decoded.iter().any(|&c| matches!(c, b'\\' | b';' | b'?' | b'#') || c.is_ascii_control()),
        "{:?}",
        out
    );
    for seg in decoded.split(|&c| c == b'/') {
        prop_assert!(seg != b"." && seg != b"..", "{:?}", out);
        prop_assert!(!seg.ends_with(b".") && !seg.ends_with(b" "), "{:?}", out);
        prop_assert!(!seg.windows(2).any(|w| w == b":$"), "{:?}", out);
    }
    let twice = (0..decoded.len()).any(|k| decoded[k] == b'%' && escape_at(&decoded, k).is_some());
    prop_assert!(!twice, "a second decode changes {:?}", out);
    Ok(())
}

fn check(raw: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(out) = canonicalize(raw) {
        check_canonical_shape(&out)?;
        match &out {
            Cow::Borrowed(s) => prop_assert!(raw.starts_with(s.as_bytes())),
            Cow::Owned(s) => {
                prop_assert!(s.as_bytes() != raw, "canonical input not borrowed: {:?}", raw);
                // Exactly the one up-front allocation: no reallocation happened.
                let grow = raw.iter().filter(|&&b| b >= 0x80 || class(b) == Class::Encode).count();
                prop_assert_eq!(s.capacity(), raw.len() + 2 * grow);
            }
        }
        let again = canonicalize(out.as_bytes());
        prop_assert!(matches!(&again, Ok(Cow::Borrowed(s)) if *s == out), "{:?} -> {:?} -> {:?}", raw, out, again);
    }
    Ok(())
}

fn biased() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "/", "/", "/", ".", ".", "..", "%", "%2e", "%2E", "%2f", "%25", "%32", "%65", "2e", "2f", "25", "%5c", ";",
        "\\", "a", "b", "F", "0", "9", "%41", "%7e", "~", " ", "%20", ":", "$", "%3A", "%24", "%C0", "%AE", "%c3",
        "%a9", "\u{e9}", "\u{FF0F}", "%EF", "%BC", "%8F", "%80", "%e0", "%u", "?", "#", "%3B", "%3b", "%3F", "%23",
        "(", "S(", "))", "%28", "%29",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|v| {
        let mut s = String::from("/");
        s.extend(v);
        s.into_bytes()
    })
}

fn raw_high() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'/'),
            Just(b'.'),
            Just(b'%'),
            prop::sample::select(b"0123456789abcdefABCDEF".to_vec()),
            0x80u8..=0xFF
        ],
        0..32,
    )
    .prop_map(|mut v| {
        v.insert(0, b'/');
        v
    })
}

/// A canonical path made of simple segments.
fn canonical_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-c]{1,3}", 0..5).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn idempotent_on_arbitrary_bytes(mut v in prop::collection::vec(any::<u8>(), 0..64)) {
        v.insert(0, b'/');
        check(&v)?;
    }

    #[test]
    fn idempotent_on_biased_alphabet(v in biased()) {
        check(&v)?;
    }

    #[test]
    fn idempotent_on_high_bytes(v in raw_high()) {
        check(&v)?;
    }

    #[test]
    fn never_panics(v in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = canonicalize(&v);
    }

    #[test]
    fn has_prefix_laws(p in canonical_path(), q in canonical_path(), r in canonical_path(), seg in "[a-c]{1,3}") {
        prop_assert!(has_prefix(&p, &p));
        prop_assert!(has_prefix(&p, "/"));
        prop_assert!(has_prefix(&p, ""));
        let child = if p == "/" { format!("/{seg}") } else { format!("{p}/{seg}") };
        prop_assert!(has_prefix(&child, &p));
        let with_slash = format!("{p}/");
        prop_assert!(has_prefix(&with_slash, &p));
        if p != "/" {
            let longer = format!("{p}{seg}");
            prop_assert!(!has_prefix(&longer, &p));
            prop_assert!(!has_prefix(&p, &child));
            prop_assert_eq!(has_prefix(&q, &p), has_prefix(&q, &with_slash));
        }
        if has_prefix(&p, &q) && has_prefix(&q, &r) {
            prop_assert!(has_prefix(&p, &r));
        }
        if has_prefix(&p, &q) {
            prop_assert!(p.starts_with(q.trim_end_matches('/')));
            prop_assert!(has_prefix(&q, &p) == (p == q));
        }
    }
}
