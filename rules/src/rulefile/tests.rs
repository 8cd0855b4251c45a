use super::*;
use crate::verdict::Mode;

fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
    list.iter().map(|(n, t)| SourceFile::new(*n, *t)).collect()
}

fn errs(list: &[(&str, &str)]) -> Vec<String> {
    compile(&files(list)).unwrap_err().iter().map(ToString::to_string).collect()
}

const FW: &str = "\
version: 1
firewall:
  - id: block-scanners
    description: Known attack tools
    match:
      headers:
        user-agent: '(?i)sqlmap'
  - id: block-net
    mode: monitor
    severity: critical
    match:
      client_ips: [203.0.113.0/24]
";

#[test]
fn compiles_and_lists_rules() {
    let snap = compile(&files(&[("a.yaml", FW)])).unwrap();
    assert_eq!(snap.rule_count(), 2);
    assert_eq!(snap.firewall.len(), 2);
    assert_eq!(snap.files.len(), 1);
    assert_eq!(snap.files[0].name, "a.yaml");
    assert_eq!(snap.files[0].rules, 2);
    assert_eq!(snap.files[0].sha256.len(), 16);
    assert_eq!(snap.version.len(), 16);
    let r = snap.rule("block-net").unwrap();
    assert_eq!((r.kind, r.mode, r.file.as_str(), r.line), ("firewall", Mode::Monitor, "a.yaml", 8));
    assert_eq!(snap.rule("block-scanners").unwrap().line, 3);
    assert_eq!(snap.rule("block-scanners").unwrap().mode, Mode::Enforce);
    assert!(snap.rule("nope").is_none());
    assert_eq!(snap.rules().iter().map(|r| &*r.id).collect::<Vec<_>>(), ["block-scanners", "block-net"]);
    assert!(snap.rules().iter().all(|r| r.hash.len() == 16 && r.hash.bytes().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn zero_files_and_version_only_files_are_valid() {
    let snap = compile(&[]).unwrap();
    assert_eq!(snap.rule_count(), 0);
    assert!(snap.firewall.is_empty());
    assert_eq!(snap.version, Snapshot::empty().version);
    assert_eq!(snap.version, "e3b0c44298fc1c14"); // SHA-256 of nothing
    assert_eq!(Snapshot::default().version, snap.version);
    let snap = compile(&files(&[("a.yaml", "version: 1\n")])).unwrap();
    assert_eq!(snap.rule_count(), 0);
    assert_eq!(snap.files[0].rules, 0);
    assert_ne!(snap.version, Snapshot::empty().version);
    for text in ["version: 1\nfirewall: []\n", "version: 1\nfirewall:\n", "# comment\nversion: 1 # one\n"] {
        assert_eq!(compile(&files(&[("a.yaml", text)])).unwrap().rule_count(), 0, "{text}");
    }
}

#[test]
fn version_errors() {
    assert_eq!(
        errs(&[("a.yaml", "version: 2\n")]),
        ["a.yaml:1: version: unsupported version 2; this gateway supports version 1"]
    );
    // Reported alone: further errors in a file written for another schema are noise.
    let future = "# v2\nversion: 2\nrate_limits: []\nfirewall:\n  - id: BAD\n";
    assert_eq!(
        errs(&[("a.yaml", future)]),
        ["a.yaml:2: version: unsupported version 2; this gateway supports version 1"]
    );
    let e = errs(&[("a.yaml", "version: 0\n"), ("b.yaml", "version: -3\n")]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[1].starts_with("b.yaml:1: version: unsupported version -3"), "{e:?}");
    assert_eq!(errs(&[("a.yaml", "firewall: []\n")]), ["a.yaml:1: (root): missing field `version`"]);
    let e = errs(&[("a.yaml", "version: one\n")]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("a.yaml:1: version: invalid type"), "{e:?}");
    // An empty file has no version either.
    for text in ["", "# nothing\n", "- a\n"] {
        let e = errs(&[("a.yaml", text)]);
        assert_eq!(e.len(), 1);
        assert!(e[0].ends_with("expected a rule file: a mapping starting with `version: 1`"), "{e:?}");
    }
}

#[test]
fn unknown_top_level_key_has_did_you_mean() {
    let e = errs(&[("a.yaml", "version: 1\nfirewal: []\n")]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("a.yaml:2: firewal: unknown field `firewal`"), "{e:?}");
    assert!(e[0].contains("did you mean `firewall`"), "{e:?}");
}

#[test]
fn unknown_rule_key_has_did_you_mean() {
    let text = "version: 1\nfirewall:\n  - id: a\n    mdoe: monitor\n    match: {methods: [GET]}\n";
    let e = errs(&[("a.yaml", text)]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("a.yaml:4: firewall[0].mdoe: unknown field `mdoe`"), "{e:?}");
    assert!(e[0].contains("did you mean `mode`"), "{e:?}");
    let text = "version: 1\nfirewall:\n  - id: a\n    match: {method: [GET]}\n";
    let e = errs(&[("a.yaml", text)]);
    assert!(e[0].starts_with("a.yaml:4: firewall[0].match.method: unknown field `method`"), "{e:?}");
    assert!(e[0].contains("did you mean `methods`"), "{e:?}");
    let text = "version: 1\nfirewall:\n  - id: a\n    mode: block\n    severity: high\n    match: {methods: [GET]}\n";
    let e = errs(&[("a.yaml", text)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("a.yaml:4: firewall[0].mode: unknown variant `block`"), "{e:?}");
    assert!(e[1].starts_with("a.yaml:5: firewall[0].severity: unknown variant `high`"), "{e:?}");
}

#[test]
fn bad_ids() {
    for (id, ok) in [
        ("a", true),
        ("0", true),
        ("block-scanners.v2_x", true),
        (&"a".repeat(64), true),
        (&"a".repeat(65), false),
        ("Block", false),
        ("-a", false),
        (".a", false),
        ("a b", false),
        ("a/b", false),
        ("é", false),
        ("''", false),
    ] {
        let text = format!("version: 1\nfirewall:\n  - id: {id}\n    match: {{methods: [GET]}}\n");
        let r = compile(&files(&[("a.yaml", &text)]));
        assert_eq!(r.is_ok(), ok, "{id}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.len(), 1);
            assert_eq!((e[0].line, e[0].path.as_str()), (3, "firewall[0].id"));
            assert!(e[0].message.contains("is not a valid rule id"), "{}", e[0]);
        }
    }
    let e = errs(&[("a.yaml", "version: 1\nfirewall:\n  - match: {methods: [GET]}\n")]);
    assert_eq!(e, ["a.yaml:3: firewall[0]: missing field `id`"]);
}

#[test]
fn duplicate_ids_within_and_across_files() {
    let a = "version: 1\nfirewall:\n  - id: x\n    match: {methods: [GET]}\n  - id: x\n    match: {methods: [PUT]}\n";
    assert_eq!(
        errs(&[("a.yaml", a)]),
        ["a.yaml:5: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3"]
    );
    let b = "version: 1\n\nfirewall:\n  - id: y\n    match: {methods: [GET]}\n  - id: x\n    match: {methods: [GET]}\n";
    assert_eq!(
        errs(&[("a.yaml", a), ("b.yaml", b)]),
        [
            "a.yaml:5: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3",
            "b.yaml:6: firewall[1].id: duplicate rule id `x`: already defined at a.yaml:3",
        ]
    );
}

#[test]
fn every_file_reports_its_errors_in_one_run() {
    let shape = "version: 1\nfirewall:\n  - id: a\n    match: {methods: [GET]}\n    extra: 1\n";
    let semantic =
        "version: 1\nfirewall:\n  - id: b\n    match:\n      client_ips: [10.0.0.300]\n      path_regex: '('\n";
    let syntax = "version: 1\nfirewall: [\n";
    let fine = "version: 1\n";
    let e =
        compile(&files(&[("z.yaml", semantic), ("a.yaml", shape), ("m.yaml", syntax), ("ok.yaml", fine)])).unwrap_err();
    let where_: Vec<(&str, usize, &str)> = e.iter().map(|e| (e.file.as_str(), e.line, e.path.as_str())).collect();
    assert_eq!(
        where_,
        [
            ("z.yaml", 5, "firewall[0].match.client_ips[0]"),
            ("z.yaml", 6, "firewall[0].match.path_regex"),
            ("a.yaml", 5, "firewall[0].extra"),
            ("m.yaml", 3, ""),
        ],
        "{e:?}"
    );
}

#[test]
fn errors_are_capped() {
    let mut text = String::from("version: 1\nfirewall:\n  - id: r\n    match:\n      client_ips:\n");
    for _ in 0..500 {
        text.push_str("        - nope\n");
    }
    let e = compile(&files(&[("a.yaml", &text)])).unwrap_err();
    assert_eq!(e.len(), MAX_ERRORS + 1);
    assert_eq!(e[MAX_ERRORS].message, "too many errors (500); fix these and run again");
}

#[test]
fn file_over_four_mib_is_refused() {
    let mut text = String::from("version: 1\n");
    while text.len() <= crate::yaml::MAX_INPUT_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding padding\n");
    }
    let e = compile(&files(&[("big.yaml", &text)])).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.as_str(), e[0].line), ("big.yaml", 1));
    assert!(e[0].message.contains("too large"), "{}", e[0]);
}

#[test]
fn rule_hash_depends_on_content_only() {
    let rule = "  - id: r\n    match:\n      methods: [POST]\n      paths: [/admin]\n";
    let one = format!("version: 1\nfirewall:\n{rule}");
    let other = format!("# another file\nversion: 1\nfirewall:\n  - id: first\n    match: {{methods: [GET]}}\n{rule}");
    let a = compile(&files(&[("a.yaml", &one)])).unwrap();
    let b = compile(&files(&[("b.yaml", &other)])).unwrap();
    let (ha, hb) = (&a.rule("r").unwrap().hash, &b.rule("r").unwrap().hash);
    assert_eq!(ha, hb);
    // Flow style, key order and an explicit default mode are the same content.
    let flow = "version: 1\nfirewall:\n- {match: {paths: [/admin], methods: [POST]}, mode: enforce, id: r}\n";
    assert_eq!(&compile(&files(&[("c.yaml", flow)])).unwrap().rule("r").unwrap().hash, ha);
    // Any change to the rule changes the hash.
    for changed in [
        rule.replace("POST", "PUT"),
        rule.replace("/admin", "/admin2"),
        rule.replace("id: r", "id: r2"),
        rule.replace("    match", "    mode: monitor\n    match"),
        rule.replace("    match", "    severity: critical\n    match"),
    ] {
        let text = format!("version: 1\nfirewall:\n{changed}");
        let s = compile(&files(&[("a.yaml", &text)])).unwrap();
        assert_ne!(&s.rules()[0].hash, ha, "{changed}");
    }
}

#[test]
fn snapshot_version_changes_with_any_byte() {
    let base = compile(&files(&[("a.yaml", FW)])).unwrap().version;
    assert_eq!(compile(&files(&[("a.yaml", FW)])).unwrap().version, base);
    let spaced = format!("{FW}\n");
    let commented = FW.replace("Known", "Known ");
    for list in [
        vec![("a.yaml", spaced.as_str())],
        vec![("a.yaml", commented.as_str())],
        vec![("b.yaml", FW)],
        vec![("a.yaml", FW), ("b.yaml", "version: 1\n")],
    ] {
        assert_ne!(compile(&files(&list)).unwrap().version, base, "{list:?}");
    }
    // Boundaries between name and text, and between files, cannot collide.
    let x = compile(&files(&[("a.yaml", "version: 1\n"), ("b.yaml", "version: 1\n")])).unwrap().version;
    let y = compile(&files(&[("b.yaml", "version: 1\n"), ("a.yaml", "version: 1\n")])).unwrap().version;
    assert_ne!(x, y);
    let p = version_of(&files(&[("ab", "c")]));
    assert_ne!(p, version_of(&files(&[("a", "bc")])));
    assert_ne!(p, version_of(&files(&[("a", ""), ("b", "c")])));
    assert_ne!(version_of(&files(&[("a", ""), ("", "")])), version_of(&files(&[("a", "")])));
}

#[test]
fn routes_are_checked_when_known() {
    let text = "version: 1\nfirewall:\n  - id: a\n    match:\n      routes: [api, apx]\n";
    let routes = ["api", "webhooks"];
    let env = Env { routes: Some(&routes), assets: None, sinks: None };
    let e = compile_with(&files(&[("a.yaml", text)]), &env).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].path.as_str()), (5, "firewall[0].match.routes[1]"));
    assert!(e[0].message.contains("unknown route `apx`"), "{}", e[0]);
    assert!(e[0].message.contains("api, webhooks"), "{}", e[0]);
    assert!(compile(&files(&[("a.yaml", text)])).is_ok());
}

#[test]
fn snapshot_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<Arc<Snapshot>>();
}
