//! Differential test of the canonical path against the way common application stacks read a
//! path (the table "How application stacks read a path" in docs/rules.md, row for row).
//!
//! Every rule matches the canonical path and the canonical path is what the upstream receives.
//! So for every raw path, either `canonicalize` refuses it, or every stack's routing view of the
//! canonical path has exactly the canonical path's own segments (split on `/`, each
//! percent-decoded once), with no `.`/`..` among them: no stack can read into it a delimiter, a
//! dot segment or a removed segment that the rules did not see.
//!
//! Each stack is modelled from its documented behaviour, taking the most lenient reading where
//! versions or settings differ (a model that decodes too much only makes the test stricter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use portcullis_rules::canon::canonicalize;
use proptest::prelude::*;

/// How one stack turns the request path it receives into the path it routes on.
#[derive(Clone, Copy, Default)]
struct Stack {
    name: &'static str,
    /// `;params` are cut from each segment of the raw path, before decoding (Tomcat).
    params_before_decode: bool,
    /// How many times `%XX` is decoded (2: a second decode by the framework or IIS double
    /// escaping).
    decodes: u8,
    /// `%uXXXX` is decoded too (IIS).
    percent_u: bool,
    /// Fullwidth forms are mapped to ASCII (Windows best-fit, NFKC).
    best_fit: bool,
    /// The decoded path is parsed again as a request target: it ends at the first `?` or `#`
    /// (nginx forwarding `$uri`).
    reparsed: bool,
    /// `\` separates segments (Windows; IIS always).
    backslash: bool,
    /// `;params` are cut from each segment after decoding (Jetty, Spring's decoded path).
    params_after_decode: bool,
    /// Trailing dots and spaces of a segment are dropped (Windows file names).
    trailing_dot_space: bool,
    /// ASP.NET cookieless-session segments `(X(…))` are removed.
    cookieless: bool,
    /// NTFS alternate data streams: `name::$DATA`, `name:$i30:$INDEX_ALLOCATION` are `name`.
    ntfs_streams: bool,
    /// Empty segments (`//`) are dropped.
    merge_slashes: bool,
    /// `.` and `..` segments are resolved.
    dots: bool,
}

const fn stack(name: &'static str) -> Stack {
    Stack {
        name,
        params_before_decode: false,
        decodes: 1,
        percent_u: false,
        best_fit: false,
        reparsed: false,
        backslash: false,
        params_after_decode: false,
        trailing_dot_space: false,
        cookieless: false,
        ntfs_streams: false,
        merge_slashes: false,
        dots: false,
    }
}

/// The table of docs/rules.md.
const STACKS: &[Stack] = &[
    Stack { params_before_decode: true, merge_slashes: true, dots: true, ..stack("Tomcat") },
    Stack { params_after_decode: true, merge_slashes: true, dots: true, ..stack("Spring MVC") },
    Stack { params_after_decode: true, dots: true, ..stack("Jetty") },
    Stack { backslash: true, merge_slashes: true, dots: true, ..stack("Express / Node") },
    Stack { backslash: true, merge_slashes: true, dots: true, ..stack("Rack / Rails") },
    Stack { ..stack("Django") },
    Stack { ..stack("Werkzeug / Flask") },
    Stack { decodes: 2, backslash: true, merge_slashes: true, dots: true, ..stack("PHP") },
    Stack {
        decodes: 2,
        percent_u: true,
        best_fit: true,
        backslash: true,
        trailing_dot_space: true,
        cookieless: true,
        ntfs_streams: true,
        merge_slashes: true,
        dots: true,
        ..stack("ASP.NET / IIS")
    },
    Stack { merge_slashes: true, dots: true, ..stack("Go net/http") },
    Stack { reparsed: true, merge_slashes: true, dots: true, ..stack("nginx (second hop)") },
];

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One percent-decoding pass; malformed escapes stay as they are.
fn decode(s: &[u8], percent_u: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if percent_u && matches!(s.get(i + 1), Some(b'u' | b'U')) {
                let digits = s.get(i + 2..i + 6).filter(|d| d.iter().all(|&c| hex(c).is_some()));
                let ch = digits
                    .and_then(|d| u32::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok())
                    .and_then(char::from_u32);
                if let Some(c) = ch {
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += 6;
                    continue;
                }
            }
            if let (Some(h), Some(l)) = (s.get(i + 1).and_then(|&c| hex(c)), s.get(i + 2).and_then(|&c| hex(c))) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn cut_params(seg: &[u8]) -> &[u8] {
    seg.split(|&b| b == b';').next().unwrap_or_default()
}

fn is_cookieless(seg: &[u8]) -> bool {
    seg.len() >= 5 && seg[0] == b'(' && seg[1].is_ascii_alphabetic() && seg[2] == b'(' && seg.ends_with(b"))")
}

/// Segments after the leading `/`, without a trailing empty one (`/a/` and `/a` route alike).
fn finish(mut segs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if segs.last().is_some_and(Vec::is_empty) {
        segs.pop();
    }
    segs
}

impl Stack {
    /// The segments this stack routes on, for the path it received.
    fn view(&self, path: &[u8]) -> Vec<Vec<u8>> {
        let mut p: Vec<u8> = if self.params_before_decode {
            path.split(|&b| b == b'/').map(cut_params).collect::<Vec<_>>().join(&b'/')
        } else {
            path.to_vec()
        };
        for _ in 0..self.decodes {
            p = decode(&p, self.percent_u);
        }
        if self.best_fit {
            if let Ok(s) = std::str::from_utf8(&p) {
                p = s
                    .chars()
                    .map(|c| match u32::from(c) {
                        cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
                        _ => c,
                    })
                    .collect::<String>()
                    .into_bytes();
            }
        }
        if self.reparsed {
            if let Some(end) = p.iter().position(|&b| b == b'?' || b == b'#') {
                p.truncate(end);
            }
        }
        if self.backslash {
            for b in &mut p {
                if *b == b'\\' {
                    *b = b'/';
                }
            }
        }
        let rest = p.strip_prefix(b"/").unwrap_or(&p);
        let mut out: Vec<Vec<u8>> = Vec::new();
        let last = rest.split(|&b| b == b'/').count() - 1;
        for (k, seg) in rest.split(|&b| b == b'/').enumerate() {
            let mut seg = if self.params_after_decode { cut_params(seg) } else { seg }.to_vec();
            if self.trailing_dot_space {
                while seg.last() == Some(&b' ') {
                    seg.pop();
                }
                if seg != b"." && seg != b".." {
                    while seg.last() == Some(&b'.') || seg.last() == Some(&b' ') {
                        seg.pop();
                    }
                }
            }
            if self.ntfs_streams && seg.windows(2).any(|w| w == b":$") {
                let colon = seg.iter().position(|&b| b == b':').unwrap_or(seg.len());
                seg.truncate(colon);
            }
            if self.cookieless && is_cookieless(&seg) {
                continue;
            }
            if self.merge_slashes && seg.is_empty() && k != last {
                continue;
            }
            if self.dots && seg == b"." {
                continue;
            }
            if self.dots && seg == b".." {
                out.pop();
                continue;
            }
            out.push(seg);
        }
        finish(out)
    }
}

/// The canonical path's own segments, each percent-decoded once.
fn own_segments(canonical: &str) -> Vec<Vec<u8>> {
    let rest = canonical.strip_prefix('/').unwrap_or(canonical);
    finish(rest.split('/').map(|s| decode(s.as_bytes(), false)).collect())
}

fn show(segs: &[Vec<u8>]) -> String {
    segs.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join(" | ")
}

/// `Err` describing the first stack that reads the canonical form of `raw` differently.
fn check(raw: &[u8]) -> Result<(), String> {
    let Ok(canonical) = canonicalize(raw) else { return Ok(()) };
    let own = own_segments(&canonical);
    for st in STACKS {
        let view = st.view(canonical.as_bytes());
        if view != own {
            return Err(format!(
                "{:?} -> {canonical:?}: {} reads [{}], the rules saw [{}]",
                String::from_utf8_lossy(raw),
                st.name,
                show(&view),
                show(&own)
            ));
        }
        if let Some(dot) = view.iter().find(|s| *s == b"." || *s == b"..") {
            return Err(format!(
                "{:?} -> {canonical:?}: {} keeps a dot segment {:?}",
                String::from_utf8_lossy(raw),
                st.name,
                String::from_utf8_lossy(dot)
            ));
        }
    }
    Ok(())
}

/// Attack shapes from the issue and the literature, and ordinary paths that must keep working.
const CORPUS: &[&str] = &[
    "/api/x/..%3B/whatsapp/x",
    "/api/x/..%3b/whatsapp/x",
    "/api/x/.%2E%3B/whatsapp/x",
    "/api/x/%2e%2e%3Bjsessionid=1/whatsapp",
    "/api/x/..%3B%3B/admin",
    "/api/x/..%253B/admin",
    "/api/x/..%25%33%42/admin",
    "/api/x/..;/admin",
    "/api;/admin",
    "/admin;jsessionid=1",
    "/admin%3Bx",
    "/x/..%3F/admin",
    "/x/..%23/admin",
    "/x%3F/../admin",
    "/public%23/../admin",
    "/admin%3f.css",
    "/(S(x))/admin",
    "/%28S%28x%29%29/admin",
    "/admin/(A(x)F(y))/page",
    "/admin%2Fx",
    "/..%2F..%2Fadmin",
    "/..%5Cadmin",
    "/x/..\\admin",
    "/%252e%252e/admin",
    "/x/%25%32%65%25%32%65/admin",
    "/%u002e%u002e/admin",
    "/x/%25u002e%25u002e/admin",
    "/%c0%ae%c0%ae/admin",
    "/x/%c0%af/admin",
    "/%ef%bc%8e%ef%bc%8e/admin",
    "/x/..%ef%bc%8fadmin",
    "/admin.",
    "/admin%2e",
    "/x/..%20/admin",
    "/x/.. /admin",
    "/x/..%2e/admin",
    "/admin::$DATA",
    "/x/%2e%2e/admin",
    "/x/.%2e/admin",
    "/x/%2E./admin",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/%61dmin",
    "/ADMIN",
    "/a:b@c!$&'()*+,=-_~.x",
    "/caf%C3%A9",
    "/100%25/off",
    "/%25zz",
    "/a%20b",
    "/%28a%29/(x)/(S)",
    "/.well-known/x",
    "/a/..b/c..d",
    "/file.tar.gz",
    "/api/",
    "/",
];

#[test]
fn every_stack_reads_the_canonical_corpus_as_the_rules_do() {
    let failures: Vec<String> = CORPUS.iter().filter_map(|raw| check(raw.as_bytes()).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus is not vacuous: the ordinary paths pass.
    for ok in ["/ADMIN", "/a:b@c!$&'()*+,=-_~.x", "/%28a%29/(x)/(S)", "/100%25/off", "/x/../admin"] {
        assert!(canonicalize(ok.as_bytes()).is_ok(), "{ok}");
    }
}

/// Each row of the table does what it says: its view of a raw attack differs from the rules'
/// plain reading (split on `/`, decode each segment), so a canonicaliser that forwarded the
/// attack as is would fail the tests above; the gateway refuses it or normalises it to the
/// stack's reading.
#[test]
fn each_stack_model_sees_its_own_attack() {
    let cases: &[(&str, &str, &str)] = &[
        ("Tomcat", "/admin;x/secret", "admin/secret"),
        ("Spring MVC", "/x/..%3B/admin", "admin"),
        ("Jetty", "/x/..%3B/admin", "admin"),
        ("Express / Node", "/x/..%5Cadmin", "admin"),
        ("Rack / Rails", "/x/..\\admin", "admin"),
        ("Django", "/x%2Fadmin", "x/admin"),
        ("Werkzeug / Flask", "/x%2Fadmin", "x/admin"),
        ("PHP", "/x/%252e%252e/admin", "admin"),
        ("ASP.NET / IIS", "/(S(x))/x/%u002e%u002e/admin.", "admin"),
        ("ASP.NET / IIS", "/x/%ef%bc%8e%ef%bc%8e/admin", "admin"),
        ("ASP.NET / IIS", "/admin::$DATA/x", "admin/x"),
        ("Go net/http", "/x/%2e%2e/admin", "admin"),
        ("nginx (second hop)", "/admin%3F/x", "admin"),
    ];
    for (name, raw, want) in cases {
        let st = STACKS.iter().find(|s| s.name == *name).unwrap();
        let want: Vec<Vec<u8>> = want.split('/').map(|s| s.as_bytes().to_vec()).collect();
        assert_eq!(show(&st.view(raw.as_bytes())), show(&want), "{name} on {raw}");
        assert_ne!(own_segments(raw), want, "{name} on {raw}: the plain reading");
        // And the gateway refuses it, or forwards what the stack would have read.
        if let Ok(canonical) = canonicalize(raw.as_bytes()) {
            assert_eq!(own_segments(&canonical), want, "{raw} -> {canonical}");
        }
    }
}

/// Pieces of raw paths: delimiters, dots, and encodings of both, in both hex cases.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "/",
        "/",
        "/",
        "//",
        "a",
        "b",
        "Admin",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2E",
        "%2E.",
        ";",
        ";x",
        "..;",
        "%3B",
        "%3b",
        ";jsessionid=1",
        "?",
        "#",
        "%3F",
        "%3f",
        "%23",
        "%2F",
        "%2f",
        "%5C",
        "%5c",
        "\\",
        "%25",
        "%252e",
        "%252E",
        "%253B",
        "%253b",
        "%25%32%65",
        "%25%33%42",
        "%u002e",
        "%U002E",
        "%u003b",
        "%uff0e",
        "%25u002e",
        "(",
        ")",
        "(S(",
        "))",
        "%28",
        "%29",
        "%28S%28",
        "%29%29",
        "(A(x)",
        "%C0%AE",
        "%c0%af",
        "%EF%BC%8E",
        "%ef%bc%8f",
        "%E2%80%A4",
        " ",
        "%20",
        "+",
        "~",
        "%7E",
        "%7e",
        ":",
        "%3A",
        "$DATA",
        "%24",
        "%00",
        "%0a",
        "%c3%a9",
        "\u{e9}",
        "%",
        "%2",
        "%zz",
        "x=1",
        "&",
        ",",
        "@",
    ])
}

/// A percent-escape of a delimiter-like byte, each hex digit in either case (`%2e`, `%3b`, `%Ef`).
fn escape() -> impl Strategy<Value = String> {
    let byte = prop::sample::select(b"/\\.;?#%:()$ +~\x00\xc0\xae\xaf\xef\xbc\x8e\x8f".to_vec());
    (byte, any::<bool>(), any::<bool>()).prop_map(|(b, hi_upper, lo_upper)| {
        let case = |c: char, upper: bool| if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
        let hex = format!("{b:02x}");
        let mut chars = hex.chars();
        let (hi, lo) = (chars.next().unwrap_or('0'), chars.next().unwrap_or('0'));
        format!("%{}{}", case(hi, hi_upper), case(lo, lo_upper))
    })
}

fn raw_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![3 => piece().prop_map(String::from), 1 => escape()];
    prop::collection::vec(part, 0..14).prop_map(|v| format!("/{}", v.concat()))
}

/// Pieces the canonicaliser accepts alone (dots, encoded unreserved, parentheses, `%25`, colons,
/// spaces inside a segment, non-ASCII): combinations of them are mostly accepted, so the stack
/// views are exercised on many canonical paths rather than on refusals.
fn accepted_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "/",
        "/",
        "//",
        "a",
        "b",
        "Admin",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2E",
        "%2E.",
        "%41",
        "%7e",
        "(",
        ")",
        "(S(",
        "))",
        "%28",
        "%29",
        "%28S%28",
        "%29%29",
        "(A(x)",
        " ",
        "%20",
        "+",
        "~",
        ":",
        "%3A",
        "$DATA",
        "%24",
        "%25",
        "%25zz",
        "%c3%a9",
        "\u{e9}",
        "%e3%80%82",
        "x=1",
        "&",
        ",",
        "@",
        "!",
        "'",
        "*",
        "%5B",
        "%7B",
    ])
}

fn mostly_accepted_path() -> impl Strategy<Value = String> {
    prop::collection::vec(accepted_piece(), 0..14).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16384))]

    #[test]
    fn every_stack_reads_every_canonical_path_as_the_rules_do(raw in raw_path()) {
        if let Err(e) = check(raw.as_bytes()) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn every_stack_reads_every_mostly_ordinary_canonical_path_as_the_rules_do(raw in mostly_accepted_path()) {
        if let Err(e) = check(raw.as_bytes()) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn every_stack_reads_arbitrary_bytes_as_the_rules_do(mut v in prop::collection::vec(any::<u8>(), 0..48)) {
        v.insert(0, b'/');
        if let Err(e) = check(&v) {
            prop_assert!(false, "{}", e);
        }
    }
}
