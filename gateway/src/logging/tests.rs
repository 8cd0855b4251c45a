use super::*;

fn directives(spec: &str) -> Vec<String> {
    let mut d: Vec<String> = cap_h2(EnvFilter::new(spec), spec).to_string().split(',').map(String::from).collect();
    d.sort();
    d
}

#[test]
fn h2_warnings_are_capped_unless_named() {
    assert_eq!(directives("info"), ["h2=error", "info"]);
    assert_eq!(directives("debug"), ["debug", "h2=error"]);
    assert_eq!(directives("info,h2=debug"), ["h2=debug", "info"]);
    assert_eq!(directives("info,h2::proto=trace"), ["h2::proto=trace", "info"]);
    // A crate whose name starts alike is not the h2 crate.
    assert_eq!(directives("h2o=debug"), ["h2=error", "h2o=debug"]);
}
