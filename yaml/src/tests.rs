use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    listen: Listen,
    upstreams: BTreeMap<String, Upstream>,
    routes: Vec<Route>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Listen {
    proxy: String,
    control: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Upstream {
    backends: Vec<String>,
    connect_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Route {
    id: String,
    path_prefix: String,
    upstream: String,
    channel: Option<String>,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Enforce,
    Monitor,
}

const VALID: &str = "\
# Portcullis test config
listen:
  proxy: 0.0.0.0:8080
  control: 127.0.0.1:9090
upstreams:
  app:
    backends: [10.0.0.5:8080, \"10.0.0.6:8080\"]
    connect_timeout_ms: 500
  auth:
    backends:
      - 10.0.0.9:9000
routes:
  - id: api
    path_prefix: /api
    upstream: app
    mode: monitor
  - id: default
    path_prefix: /
    upstream: auth
    channel: web
";

fn errors<T: DeserializeOwned + fmt::Debug>(text: &str) -> Vec<ConfigError> {
    match from_str::<T>("gw.yaml", text) {
        Ok(v) => panic!("expected errors, got {v:?}"),
        Err(e) => e,
    }
}

fn rendered(errors: &[ConfigError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn yaml_valid_document() {
    let config: Config = from_str("gw.yaml", VALID).unwrap();
    assert_eq!(config.listen, Listen { proxy: "0.0.0.0:8080".into(), control: Some("127.0.0.1:9090".into()) });
    assert_eq!(config.upstreams["app"].backends, ["10.0.0.5:8080", "10.0.0.6:8080"]);
    assert_eq!(config.upstreams["app"].connect_timeout_ms, Some(500));
    assert_eq!(config.upstreams["auth"], Upstream { backends: vec!["10.0.0.9:9000".into()], connect_timeout_ms: None });
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[0].mode, Mode::Monitor);
    assert_eq!(config.routes[1].mode, Mode::Enforce);
    assert_eq!(config.routes[1].channel.as_deref(), Some("web"));
}

#[test]
fn yaml_one_typo_one_error_with_suggestion() {
    let text = VALID.replace("    upstream: auth", "    upsteam: auth");
    let errs = errors::<Config>(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert_eq!((e.file.as_str(), e.line, e.path.as_str()), ("gw.yaml", 19, "routes[1].upsteam"));
    assert!(e.message.starts_with("unknown field `upsteam`, expected one of `id`, `path_prefix`"), "{e}");
    assert!(e.message.ends_with("(did you mean `upstream`?)"), "{e}");
}

#[test]
fn yaml_errors_in_three_routes_and_an_unknown_top_level_key() {
    let text = "\
listen:
  proxy: 0.0.0.0:8080
upstreams:
  app:
    backends: [a]
routes:
  - id: one
    path_prefix: /one
    upstream: app
    mode: enforcing
  - id: two
    path_prefix: /two
  - id: three
    path_prefix: [/three]
    upstream: app
logging: debug
";
    let errs = errors::<Config>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:10: routes[0].mode: unknown variant `enforcing`, expected one of `enforce`, `monitor`",
            "gw.yaml:11: routes[1]: missing field `upstream`",
            "gw.yaml:14: routes[2].path_prefix: invalid type: sequence, expected a string",
            "gw.yaml:16: logging: unknown field `logging`, expected one of `listen`, `upstreams`, `routes`",
        ]
    );
}

#[test]
fn yaml_several_errors_in_one_struct() {
    let text = "\
listen:
  proxy: [x]
  contrl: 1
  extra: true
upstreams: {}
routes: []
";
    let errs = errors::<Config>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:2: listen.proxy: invalid type: sequence, expected a string",
            "gw.yaml:3: listen.contrl: unknown field `contrl`, expected one of `proxy`, `control` \
                 (did you mean `control`?)",
            "gw.yaml:4: listen.extra: unknown field `extra`, expected one of `proxy`, `control`",
        ]
    );
}

#[test]
fn yaml_type_error() {
    let text = VALID.replace("connect_timeout_ms: 500", "connect_timeout_ms: \"soon\"");
    let errs = errors::<Config>(&text);
    assert_eq!(
        rendered(&errs),
        ["gw.yaml:8: upstreams.app.connect_timeout_ms: invalid type: string \"soon\", expected u64"]
    );
    let errs = errors::<Config>(&VALID.replace("connect_timeout_ms: 500", "connect_timeout_ms: 1.5"));
    assert_eq!(errs[0].message, "invalid type: floating point `1.5`, expected u64");
    let errs = errors::<Config>(&VALID.replace("      - 10.0.0.9:9000", "      - {host: x}"));
    assert_eq!(rendered(&errs), ["gw.yaml:11: upstreams.auth.backends[0]: invalid type: mapping, expected a string"]);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Ports {
    port: u16,
    small: Option<u8>,
    signed: Option<i32>,
    ratio: Option<f64>,
    on: Option<bool>,
}

#[test]
fn yaml_integers_in_range_and_out_of_range() {
    let ok: Ports = from_str("p.yaml", "port: 8080\nsmall: 255\nsigned: -5\nratio: 1\non: true\n").unwrap();
    assert_eq!((ok.port, ok.small, ok.signed, ok.ratio, ok.on), (8080, Some(255), Some(-5), Some(1.0), Some(true)));
    let errs = errors::<Ports>("port: 70000\nsmall: -1\nsigned: 99999999999\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: port: value 70000 out of range for u16",
            "gw.yaml:2: small: value -1 out of range for u8",
            "gw.yaml:3: signed: value 99999999999 out of range for i32",
        ]
    );
    // Bools are `true`/`false` (YAML 1.2): `yes` is a string, and so is a quoted "true".
    let errs = errors::<Ports>("port: 1\non: yes\n");
    assert_eq!(rendered(&errs), ["gw.yaml:2: on: invalid type: string \"yes\", expected a boolean"]);
    let errs = errors::<Ports>("port: \"8080\"\non: \"true\"\n");
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].message, "invalid type: string \"8080\", expected u16");
}

#[test]
fn yaml_missing_required_field() {
    let text = VALID.replace("    path_prefix: /api\n", "");
    let errs = errors::<Config>(&text);
    assert_eq!(rendered(&errs), ["gw.yaml:13: routes[0]: missing field `path_prefix`"]);
    // At the root.
    let errs = errors::<Config>("listen: {proxy: x}\nroutes: []\n");
    assert_eq!(rendered(&errs), ["gw.yaml:1: (root): missing field `upstreams`"]);
}

#[test]
fn yaml_invalid_enum_variant() {
    let text = VALID.replace("mode: monitor", "mode: monitr");
    let errs = errors::<Config>(&text);
    assert_eq!(
        rendered(&errs),
        ["gw.yaml:16: routes[0].mode: unknown variant `monitr`, expected one of `enforce`, `monitor` \
                 (did you mean `monitor`?)"]
    );
    let errs = errors::<Config>(&VALID.replace("mode: monitor", "mode: [monitor]"));
    assert_eq!(rendered(&errs), ["gw.yaml:16: routes[0].mode: invalid type: sequence, expected enum Mode"]);
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Check {
    Tcp,
    Http { path: String, interval_ms: Option<u32> },
    Exec(Vec<String>),
}

#[test]
fn yaml_enum_forms() {
    let checks: Vec<Check> =
        from_str("c.yaml", "- tcp\n- http: {path: /health}\n- exec: [true, '1']\n- {http: {path: /, interval_ms: 5}}")
            .unwrap();
    assert_eq!(
        checks,
        [
            Check::Tcp,
            Check::Http { path: "/health".into(), interval_ms: None },
            Check::Exec(vec!["true".into(), "1".into()]),
            Check::Http { path: "/".into(), interval_ms: Some(5) },
        ]
    );
    let errs = errors::<Vec<Check>>("- http\n- tcp: 1\n- http: {path: /, intervl_ms: 5}\n- {tcp: ~, http: ~}\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: [0]: variant `http` needs a value: write it as `http: …`",
            "gw.yaml:2: [1].tcp: variant `tcp` takes no value, found integer `1`",
            "gw.yaml:3: [2].http.intervl_ms: unknown field `intervl_ms`, expected one of `path`, `interval_ms` \
                 (did you mean `interval_ms`?)",
            "gw.yaml:4: [3]: invalid type: mapping, expected enum Check",
        ]
    );
}

#[test]
fn yaml_duplicate_keys() {
    let text = "\
listen:
  proxy: a
  proxy: b
upstreams: {}
routes:
  - {id: x, path_prefix: /, upstream: app, id: y}
upstreams: {}
";
    let errs = errors::<Config>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:3: listen.proxy: duplicate key `proxy` (first defined on line 2)",
            "gw.yaml:6: routes[0].id: duplicate key `id` (first defined on line 6)",
            "gw.yaml:7: upstreams: duplicate key `upstreams` (first defined on line 4)",
        ]
    );
    // Three copies, in a flow mapping too.
    let errs = errors::<serde_json::Value>("a: 1\nb: {x: 1, x: 2}\na: 2\na: 3\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:2: b.x: duplicate key `x` (first defined on line 2)",
            "gw.yaml:3: a: duplicate key `a` (first defined on line 1)",
            "gw.yaml:4: a: duplicate key `a` (first defined on line 1)",
        ]
    );
    // Too many duplicates: the parse fails, still reporting each one seen.
    let text: String = (0..40).map(|i| format!("k: {i}\n")).collect();
    let errs = errors::<serde_json::Value>(&text);
    assert_eq!(errs.len(), MAX_DUPLICATE_KEYS + 1);
    assert!(errs.iter().all(|e| e.message == "duplicate key `k`"), "{errs:#?}");
    // Complex keys are refused as such (saphyr does not compare them for duplicates).
    let errs = errors::<serde_json::Value>("? [a]\n: 1\n? [a]\n: 2\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: (root): mapping keys must be strings, found a sequence",
            "gw.yaml:3: (root): mapping keys must be strings, found a sequence",
        ]
    );
    // Same key spelled differently (a quoted and a plain scalar).
    let errs = errors::<BTreeMap<String, u8>>("\"1\": 1\n1: 2\n");
    assert_eq!(rendered(&errs), ["gw.yaml:2: 1: duplicate key `1` (first defined on line 1)"]);
}

#[test]
fn yaml_syntax_error_has_its_line() {
    let errs = errors::<Config>("listen:\n  proxy: a\n control: b\nroutes: []\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 3);
    assert_eq!(errs[0].path, "");
    assert!(errs[0].message.starts_with("YAML syntax error: "), "{}", errs[0]);
    let errs = errors::<Config>("routes: [a, b\nlisten: x\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("YAML syntax error: "), "{}", errs[0]);
    let errs = errors::<Config>("a: 1\n---\nb: 2\n");
    assert_eq!(errs[0].line, 3);
    assert!(errs[0].message.contains("second YAML document"));
}

#[test]
fn yaml_empty_document() {
    for text in ["", "\n\n", "# nothing here\n", "---\n", "---\n...\n", "--- # nothing\n...\n"] {
        let errs = errors::<Config>(text);
        assert_eq!(rendered(&errs), ["gw.yaml:1: (root): invalid type: empty document, expected struct Config"]);
    }
    // A type that accepts nothing.
    let empty: Option<Config> = from_str("gw.yaml", "").unwrap();
    assert_eq!(empty, None);
    // A written null is not an empty document.
    let errs = errors::<Config>("# comment\n~\n");
    assert_eq!(rendered(&errs), ["gw.yaml:2: (root): invalid type: null, expected struct Config"]);
}

#[test]
fn yaml_document_of_the_wrong_shape() {
    let errs = errors::<Config>("just a string\n");
    assert_eq!(rendered(&errs), ["gw.yaml:1: (root): invalid type: string \"just a string\", expected struct Config"]);
    let errs = errors::<Config>("\n- listen\n- routes\n");
    assert_eq!(rendered(&errs), ["gw.yaml:2: (root): invalid type: sequence, expected struct Config"]);
    let errs = errors::<Config>("42");
    assert_eq!(rendered(&errs), ["gw.yaml:1: (root): invalid type: integer `42`, expected struct Config"]);
}

#[test]
fn yaml_deep_nesting_is_capped() {
    // 70 levels by indentation: the problem is at depth 65.
    let mut text = String::new();
    for depth in 0..70 {
        text.push_str(&" ".repeat(depth));
        text.push_str("a:\n");
    }
    let doc = Doc::parse("deep.yaml", &text).unwrap();
    assert_eq!(
        rendered(doc.problems()),
        [format!("deep.yaml:65: {}: nested too deeply (the limit is 64 levels)", ["a"; 64].join("."))]
    );
    let errs = doc.deserialize::<serde_json::Value>().unwrap_err();
    assert_eq!(errs, doc.problems());

    // Flow nesting up to saphyr's own limit (255) parses, then is capped.
    let text = format!("{}{}", "[".repeat(250), "]".repeat(250));
    let errs = errors::<serde_json::Value>(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("nested too deeply"));
    let text = format!("{}{}", "{a: ".repeat(250), "}".repeat(250));
    assert!(errors::<serde_json::Value>(&text)[0].message.starts_with("nested too deeply"));
    // Beyond saphyr's limit: a syntax error, not a crash.
    let errs = errors::<serde_json::Value>(&"[".repeat(100_000));
    assert!(errs[0].message.starts_with("YAML syntax error"), "{}", errs[0]);

    // Compact block nesting (2 bytes a level) is refused before parsing.
    let errs = errors::<serde_json::Value>(&format!("a: 1\n{}x\n", "- ".repeat(1_000_000)));
    assert_eq!(rendered(&errs), ["gw.yaml:2: (root): indented or nested too deeply (nesting is limited to 64 levels)"]);
    let errs = errors::<serde_json::Value>(&format!("{}a: 1\n", " ".repeat(600)));
    assert_eq!(errs[0].line, 1);
    // Close to the gate, parsing still works (and the cap applies).
    let errs = errors::<serde_json::Value>(&format!("{}x\n", "- ".repeat(1000)));
    assert!(errs[0].message.starts_with("nested too deeply"), "{}", errs[0]);
}

#[test]
fn yaml_worst_nesting_the_gate_lets_through_parses() {
    // The deepest shapes under the gate (see PARSER_STACK_BYTES): about 1000 block levels, then
    // 255 flow sequences each holding an implicit mapping.
    let flow = format!("{}{}\n", "[a: ".repeat(255), "]".repeat(255));
    let compact = format!("{}{flow}", "- ".repeat(1021));
    let mut zigzag = String::new();
    for depth in 0..510 {
        zigzag.push_str(&format!("{0}a:\n{0}-\n", " ".repeat(depth)));
    }
    zigzag.push_str(&" ".repeat(510));
    zigzag.push_str(&flow);
    for text in [compact, zigzag] {
        assert_eq!(nesting_gate(&text), None);
        let doc = Doc::parse("deep.yaml", &text).unwrap();
        assert_eq!(doc.problems().len(), 1);
        assert!(doc.problems()[0].message.starts_with("nested too deeply"));
    }
}

#[test]
fn yaml_long_lines_are_not_quadratic() {
    // Hundreds of thousands of nodes on one line: every node used to rescan the rest of it.
    let text = format!("[{}1]", "1,".repeat(300_000));
    let start = std::time::Instant::now();
    let v: Vec<u8> = from_str("long.yaml", &text).unwrap();
    assert_eq!(v.len(), 300_001);
    let text = format!("[{}x]", "!!str 1,".repeat(100_000));
    assert_eq!(from_str::<Vec<String>>("long.yaml", &text).unwrap().len(), 100_001);
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
}

#[test]
fn yaml_doc_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Doc>();
    check::<ConfigError>();
}

#[test]
fn yaml_size_is_capped() {
    let text = format!("a: \"{}\"\n", "x".repeat(MAX_INPUT_BYTES));
    let errs = errors::<serde_json::Value>(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("file is too large"), "{}", errs[0]);
    // Just under the cap is fine.
    let text = format!("a: \"{}\"\n", "x".repeat(MAX_INPUT_BYTES - 100));
    assert!(from_str::<serde_json::Value>("big.yaml", &text).is_ok());
}

#[test]
fn yaml_aliases_and_anchors_are_refused() {
    let text = "\
listen: &l
  proxy: a
copy: *l
routes:
  - &r {id: a, path_prefix: /, upstream: u}
  - *r
";
    let errs = errors::<serde_json::Value>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: listen: YAML anchors (`&name`) are not supported",
            "gw.yaml:3: copy: YAML aliases (`*name`) are not supported: write the value out",
            "gw.yaml:5: routes[0]: YAML anchors (`&name`) are not supported",
            "gw.yaml:6: routes[1]: YAML aliases (`*name`) are not supported: write the value out",
        ]
    );
    // Anchored and aliased keys.
    let errs = errors::<serde_json::Value>("- &k key: 1\n- *k : 2\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].line, errs[1].line), (1, 2));

    // Billion laughs: refused quickly, without expanding.
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let start = std::time::Instant::now();
    let errs = errors::<serde_json::Value>(&text);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(!errs.is_empty());
    assert!(errs.iter().all(|e| e.message.contains("not supported") || e.message.contains("alias")), "{errs:#?}");
}

#[test]
fn yaml_tags() {
    // Core-schema tags matching the value are understood.
    let v: BTreeMap<String, String> = from_str("t.yaml", "a: !!str 1.0\nb: !!int 5\n").unwrap();
    assert_eq!((v["a"].as_str(), v["b"].as_str()), ("1.0", "5"));
    let errs = errors::<serde_json::Value>(
        "a: !custom x\nb: !!binary aGk=\nc: !!int abc\nd: !!map [1]\ne: !local {x: 1}\nf: !<tag:yaml.org,2002:str> ok\n",
    );
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: a: unsupported YAML tag `!custom`",
            "gw.yaml:2: b: unsupported YAML tag `!!binary`",
            "gw.yaml:3: c: the value does not match its tag `!!int`",
            "gw.yaml:4: d: the value does not match its tag `!!map`",
            "gw.yaml:5: e: unsupported YAML tag `!local`",
            "gw.yaml:6: f: unsupported YAML tag `!<tag:yaml.org,2002:str>`",
        ]
    );
}

#[test]
fn yaml_unicode_keys_and_values() {
    let text = "# é ü — ünïcödé\nnäme: ünï\n日本: 語\nlist: [ä, ö]\n";
    let v: serde_json::Value = from_str("u.yaml", text).unwrap();
    assert_eq!(v, serde_json::json!({"näme": "ünï", "日本": "語", "list": ["ä", "ö"]}));
    // Lines and properties are found after multi-byte text too.
    let text = format!("# {}\nα: 1\nβ: &x 2\nγ: {}\n", "é".repeat(200), "ü".repeat(100));
    let errs = errors::<serde_json::Value>(&text);
    assert_eq!(rendered(&errs), ["gw.yaml:3: β: YAML anchors (`&name`) are not supported"]);
    let errs = errors::<Listen>("proxy: ä\nprøxy: b\n");
    assert_eq!(errs[0].path, "prøxy");
    assert!(errs[0].message.contains("did you mean `proxy`"));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Versioned {
    version: String,
    names: Vec<String>,
}

#[test]
fn yaml_numbers_as_strings_keep_their_text() {
    let v: Versioned = from_str("v.yaml", "version: 1\nnames: [1.0, 0x1F, true, 1e3, +5, .5, 007, ~x]\n").unwrap();
    assert_eq!(v.version, "1");
    assert_eq!(v.names, ["1.0", "0x1F", "true", "1e3", "+5", ".5", "007", "~x"]);
    let v: Versioned = from_str("v.yaml", "version: !!float 1.50\nnames: []\n").unwrap();
    assert_eq!(v.version, "1.50");
    let errs = errors::<Versioned>("version:\nnames: [~]\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: version: invalid type: null, expected a string",
            "gw.yaml:2: names[0]: invalid type: null, expected a string",
        ]
    );
}

#[test]
fn yaml_line_of_paths() {
    let doc = Doc::parse("gw.yaml", VALID).unwrap();
    assert_eq!(doc.line_of(""), 2);
    assert_eq!(doc.line_of("listen"), 2);
    assert_eq!(doc.line_of("listen.control"), 4);
    assert_eq!(doc.line_of("upstreams.app.backends"), 7);
    assert_eq!(doc.line_of("upstreams.app.backends[1]"), 7);
    assert_eq!(doc.line_of("upstreams.auth.backends[0]"), 11);
    assert_eq!(doc.line_of("routes[1]"), 17);
    assert_eq!(doc.line_of("routes[1].upstream"), 19);
    assert_eq!(doc.line_of("routes[1].channel"), 20);
    // Nearest existing ancestor.
    assert_eq!(doc.line_of("routes[1].nope.deeper"), 17);
    assert_eq!(doc.line_of("routes[9].id"), 12);
    assert_eq!(doc.line_of("upstreams.app.backends[7]"), 7);
    assert_eq!(doc.line_of("nothing"), 2);
    let e = doc.error_at("routes[1].upstream", "route references unknown upstream `auth`");
    assert_eq!(e.to_string(), "gw.yaml:19: routes[1].upstream: route references unknown upstream `auth`");
    assert_eq!(doc.file(), "gw.yaml");
}

#[test]
fn yaml_display_format() {
    let e = ConfigError::new("config/gateway.yaml", 13, "routes[1].path_prefx", "unknown field `path_prefx`");
    assert_eq!(e.to_string(), "config/gateway.yaml:13: routes[1].path_prefx: unknown field `path_prefx`");
    let e = ConfigError::new("g.yaml", 1, "", "file is too large");
    assert_eq!(e.to_string(), "g.yaml:1: (root): file is too large");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().starts_with("g.yaml:1:"));
}

#[test]
fn yaml_json_value_round_trip() {
    let text = "\
name: gw
port: 8080
neg: -3
ratio: 0.25
on: true
off: false
nothing: ~
empty:
list: [1, two, {three: 3}]
nested:
  deeper:
    - a
    - [b, c]
";
    let v: serde_json::Value = from_str("j.yaml", text).unwrap();
    let expected = serde_json::json!({
        "name": "gw", "port": 8080, "neg": -3, "ratio": 0.25, "on": true, "off": false,
        "nothing": null, "empty": null, "list": [1, "two", {"three": 3}],
        "nested": {"deeper": ["a", ["b", "c"]]},
    });
    assert_eq!(v, expected);
    // And back: the JSON text is YAML too.
    let again: serde_json::Value = from_str("j.json", &serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert_eq!(again, expected);
}

#[test]
fn yaml_keys() {
    let codes: BTreeMap<u16, String> = from_str("k.yaml", "404: not found\n503: busy\n").unwrap();
    assert_eq!(codes[&404], "not found");
    let errs = errors::<BTreeMap<u16, String>>("404: a\nfour: b\n70000: c\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:2: four: invalid type: key \"four\", expected u16",
            "gw.yaml:3: 70000: invalid type: key \"70000\", expected u16",
        ]
    );
    let errs = errors::<serde_json::Value>("? [a, b]\n: 1\n? {x: 1}\n: 2\n~: 3\nok: 4\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: (root): mapping keys must be strings, found a sequence",
            "gw.yaml:3: (root): mapping keys must be strings, found a mapping",
            "gw.yaml:5: (root): a mapping key is empty or null",
        ]
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Addrs {
    listen: std::net::SocketAddr,
    peers: Vec<std::net::SocketAddr>,
    pools: BTreeMap<String, std::net::IpAddr>,
}

#[test]
fn yaml_visitor_errors_are_all_collected() {
    // `FromStr` failures are found by the visitor, not the deserializer: each costs a pass.
    let text = "\
listen: nowhere
peers:
  - 10.0.0.1:80
  - 10.0.0.2
  - 10.0.0.3:80
  - bad
pools:
  a: 10.0.0.1
  b: 10.0.0
";
    let errs = errors::<Addrs>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: listen: invalid socket address syntax",
            "gw.yaml:4: peers[1]: invalid socket address syntax",
            "gw.yaml:6: peers[3]: invalid socket address syntax",
            "gw.yaml:9: pools.b: invalid IP address syntax",
        ]
    );
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum Backend {
    Addr(String),
    Weighted { addr: String, weight: u32 },
}

#[test]
fn yaml_untagged_enums_and_internally_tagged() {
    let v: Vec<Backend> = from_str("b.yaml", "- a:1\n- {addr: b:2, weight: 3}\n").unwrap();
    assert_eq!(v, [Backend::Addr("a:1".into()), Backend::Weighted { addr: "b:2".into(), weight: 3 }]);
    let errs = errors::<Vec<Backend>>("- a:1\n- [x]\n");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].path.as_str()), (2, "[1]"));
    assert!(errs[0].message.contains("did not match any variant"), "{}", errs[0]);

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
    enum Health {
        Tcp,
        Http { path: String },
    }
    let h: Health = from_str("h.yaml", "{ kind: http, path: /health }").unwrap();
    assert_eq!(h, Health::Http { path: "/health".into() });
    let errs = errors::<Vec<Health>>("- {kind: http, pth: /}\n- {kind: udp}\n- {kind: tcp}\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:1: [0]: unknown field `pth`, expected one of `path` (did you mean `path`?)",
            "gw.yaml:2: [1].kind: unknown variant `udp`, expected one of `tcp`, `http` (did you mean `tcp`?)",
        ]
    );
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Level {
    Info,
    Debug,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "RawPool")]
#[allow(dead_code)]
struct Pool {
    backends: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    backends: Vec<String>,
}

impl TryFrom<RawPool> for Pool {
    type Error = String;
    fn try_from(raw: RawPool) -> Result<Self, String> {
        if raw.backends.is_empty() {
            return Err("a pool needs at least one backend".into());
        }
        Ok(Pool { backends: raw.backends })
    }
}

#[test]
fn yaml_serde_attributes() {
    let levels: Vec<Level> = from_str("l.yaml", "[info, debug, trace]").unwrap();
    assert_eq!(levels, [Level::Info, Level::Debug, Level::Other]);
    // A validation error is reported, unless the value was built from a placeholder (then it
    // is a follow-up of the error already reported).
    let errs = errors::<BTreeMap<String, Pool>>("a:\n  backends: 5\nb:\n  backends: []\nc:\n  backends: [x]\n");
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:2: a.backends: invalid type: integer `5`, expected a sequence",
            "gw.yaml:4: b: a pool needs at least one backend",
        ]
    );
}

#[test]
fn yaml_null_and_empty_values_into_options() {
    for text in ["proxy: a\ncontrol: ~\n", "proxy: a\ncontrol:\n", "proxy: a\ncontrol: null\n", "proxy: a\n"] {
        let l: Listen = from_str("l.yaml", text).unwrap();
        assert_eq!(l, Listen { proxy: "a".into(), control: None });
    }
}

#[test]
fn yaml_line_endings_and_bom() {
    let text = "\u{feff}proxy: a\r\nbogus: 1\r\n";
    let errs = errors::<Listen>(text);
    assert_eq!(rendered(&errs), ["gw.yaml:2: bogus: unknown field `bogus`, expected one of `proxy`, `control`"]);
    let errs = errors::<Config>("listen:\r\n  proxy: a\r\n  bogus: 1\r\nupstreams: {}\r\nroutes: []\r\n");
    assert_eq!(
        rendered(&errs)[0],
        "gw.yaml:3: listen.bogus: unknown field `bogus`, expected one of `proxy`, `control`"
    );
    // Character positions stay right after CRLF and a BOM (props and number texts use them).
    let text = "\u{feff}a: 1.50\r\nb: &x 2\r\nc: *x\r\nd: 0x10\r\n";
    let errs = errors::<BTreeMap<String, String>>(text);
    assert_eq!(
        rendered(&errs),
        [
            "gw.yaml:2: b: YAML anchors (`&name`) are not supported",
            "gw.yaml:3: c: YAML aliases (`*name`) are not supported: write the value out",
        ]
    );
    let v: BTreeMap<String, String> = from_str("crlf.yaml", "\u{feff}é: 1.50\r\nd: 0x10\rx: 1e3\r\n").unwrap();
    assert_eq!((v["é"].as_str(), v["d"].as_str(), v["x"].as_str()), ("1.50", "0x10", "1e3"));
}

#[test]
fn yaml_tuples_and_sequences() {
    let t: (String, u8) = from_str("t.yaml", "[a, 1]").unwrap();
    assert_eq!(t, ("a".to_owned(), 1));
    let errs = errors::<(String, u8)>("[a, 1, 2]");
    assert_eq!(rendered(&errs), ["gw.yaml:1: (root): too many elements: 1 more than expected"]);
    let errs = errors::<Vec<u8>>("a: 1");
    assert_eq!(rendered(&errs), ["gw.yaml:1: (root): invalid type: mapping, expected a sequence"]);
}

#[test]
fn yaml_errors_are_capped() {
    let mut text = String::from("peers:\n");
    for _ in 0..500 {
        text.push_str("  - x\n");
    }
    text.push_str("listen: 1.2.3.4:5\npools: {}\n");
    let errs = errors::<Addrs>(&text);
    assert!(errs.len() <= MAX_ERRORS + 1, "{}", errs.len());
    assert!(errs.last().unwrap().message.contains("fix these and run again"));
    let mut text = String::from("port: 1\n");
    for i in 0..500 {
        text.push_str(&format!("k{i}: 1\n"));
    }
    let errs = errors::<Ports>(&text);
    assert_eq!(errs.len(), MAX_ERRORS + 1);
    assert_eq!(errs.last().unwrap().message, "too many errors; fix these and run again");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Whatever the input, the loader answers (a value or errors), never panics, and every
    /// error has a line within the text.
    #[test]
    fn yaml_never_panics(text in "[a-z0-9:\\-\\[\\]{}&*!|>'\" \n\t#,?.~%@`é]{0,300}") {
        let lines = text.split('\n').count().max(1);
        for errors in [
            from_str::<serde_json::Value>("f.yaml", &text).err(),
            from_str::<Config>("f.yaml", &text).err(),
            from_str::<Vec<Check>>("f.yaml", &text).err(),
        ].into_iter().flatten() {
            proptest::prop_assert!(!errors.is_empty());
            for e in &errors {
                proptest::prop_assert!(e.line >= 1 && e.line <= lines + 1, "{} (of {} lines)", e, lines);
            }
        }
    }

    /// The valid document, damaged somewhere: still never a panic.
    #[test]
    fn yaml_damaged_document_never_panics(
        at in 0usize..VALID.len(),
        cut in 0usize..8,
        insert in "[a-z0-9:\\-\\[\\]{}&*!|'\" \n#,~]{0,6}",
    ) {
        let start = (0..=at).rev().find(|&i| VALID.is_char_boundary(i)).unwrap_or(0);
        let end = (start + cut..=VALID.len()).find(|&i| VALID.is_char_boundary(i)).unwrap_or(VALID.len());
        let text = format!("{}{insert}{}", &VALID[..start], &VALID[end..]);
        if let Err(errors) = from_str::<Config>("f.yaml", &text) {
            proptest::prop_assert!(!errors.is_empty());
        }
    }

    /// Valid documents with a typo'd key: exactly that error.
    #[test]
    fn yaml_typo_is_reported_alone(route in 0usize..2, key in "(id|path_prefix|upstream)") {
        let typo = format!("{key}x");
        let field = format!("    {key}:");
        let mut seen = 0;
        let text: String = VALID.lines().map(|l| {
            let l = if l.starts_with(&field) {
                seen += 1;
                if seen == route + 1 { l.replacen(&key, &typo, 1) } else { l.to_owned() }
            } else { l.to_owned() };
            l + "\n"
        }).collect();
        proptest::prop_assume!(seen > route);
        let errs = from_str::<Config>("f.yaml", &text).unwrap_err();
        proptest::prop_assert_eq!(errs.len(), 1, "{:?}", errs);
        proptest::prop_assert_eq!(&errs[0].path, &format!("routes[{route}].{typo}"));
        let wanted = format!("did you mean `{key}`");
        proptest::prop_assert!(errs[0].message.contains(&wanted), "{}", errs[0]);
    }
}

#[test]
fn yaml_helpers() {
    assert_eq!(edit_distance("upsteam", "upstream"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(did_you_mean("Upstream", &["id", "upstream"]), Some("upstream"));
    assert_eq!(did_you_mean("x", &["id", "y"]), None);
    assert_eq!(
        parse_path("a.b[2].c[0][1]"),
        [Seg::Key("a"), Seg::Key("b"), Seg::Index(2), Seg::Key("c"), Seg::Index(0), Seg::Index(1)]
    );
    assert_eq!(parse_path(""), []);
    let text = "é".repeat(1000) + "x";
    let idx = CharIndex::new(&text);
    assert_eq!(idx.byte(0), Some(0));
    assert_eq!(idx.byte(999), Some(1998));
    assert_eq!(idx.byte(1000), Some(2000));
    assert_eq!(idx.byte(1001), Some(2001));
    assert_eq!(idx.byte(1002), None);
    assert_eq!(lines("a\r\nb\rc\nd").collect::<Vec<_>>(), ["a", "b", "c", "d"]);
}
