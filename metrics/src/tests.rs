use super::*;

#[test]
fn counts_and_renders() {
    let m = Metrics::new(vec!["api".into()], "abc".into(), &[]).unwrap();
    m.observe_request(Some(0), 200, false, Duration::from_millis(3));
    m.observe_request(None, 404, false, Duration::from_millis(1));
    m.observe_request(Some(0), 999, false, Duration::from_secs(9));
    m.observe_request(Some(0), 503, false, Duration::from_millis(1));
    m.observe_request(Some(0), 502, true, Duration::from_millis(1));
    m.observe_request(Some(0), 502, false, Duration::from_millis(1));
    m.observe_upstream_error(Some(0), UpstreamError::Timeout);
    let t = m.render(Scrape::new());
    assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"2xx\"} 1"));
    assert!(t.contains("portcullis_requests_total{route=\"none\",status_class=\"4xx\"} 1"));
    assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"5xx\"} 4"));
    assert!(t.contains("portcullis_responses_5xx_total{route=\"api\",cause=\"failure\"} 1"));
    assert!(t.contains("portcullis_responses_5xx_total{route=\"api\",cause=\"gateway_decision\"} 2"));
    assert!(t.contains("portcullis_responses_5xx_total{route=\"none\",cause=\"failure\"} 0"));
    assert!(t.contains("portcullis_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 4"));
    assert!(t.contains("portcullis_request_duration_seconds_count{route=\"api\"} 5"));
    assert!(t.contains("portcullis_upstream_errors_total{route=\"api\",kind=\"timeout\"} 1"));
}

#[test]
fn names_types_and_label_order_as_before() {
    let m = Metrics::new(vec!["api".into()], "abc".into(), &[]).unwrap();
    let t = m.render(Scrape::new());
    for line in [
        "# HELP portcullis_build_info Build and config version.\n# TYPE portcullis_build_info gauge\n",
        &format!("portcullis_build_info{{version=\"{}\",config_version=\"abc\"}} 1\n", env!("CARGO_PKG_VERSION")),
        "# TYPE portcullis_requests_total counter\n",
        "# TYPE portcullis_responses_5xx_total counter\n",
        "# TYPE portcullis_request_duration_seconds histogram\n",
        "portcullis_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"} 0\n",
        "portcullis_request_duration_seconds_bucket{route=\"api\",le=\"1\"} 0\n",
        "portcullis_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 0\n",
        "portcullis_request_duration_seconds_sum{route=\"api\"} 0\n",
        "# TYPE portcullis_upstream_errors_total counter\n",
    ] {
        assert!(t.contains(line), "{line} in\n{t}");
    }
    // Every route and `none` is there before any request, every class and cause at 0.
    assert_eq!(t.matches("portcullis_requests_total{").count(), 10);
    assert!(!t.contains("# EOF"));
}

#[test]
fn interim_1xx_is_not_an_answer() {
    // A 100 Continue then nothing: the client went away; counted as 499 (4xx), never 1xx.
    assert_eq!(final_status(Some(100)), CLIENT_CLOSED);
    assert_eq!(final_status(Some(103)), CLIENT_CLOSED);
    assert_eq!(final_status(None), CLIENT_CLOSED);
    assert_eq!(final_status(Some(101)), 101);
    assert_eq!(final_status(Some(204)), 204);
    let m = Metrics::new(vec!["api".into()], "abc".into(), &[]).unwrap();
    for s in [100, 102, 103, 199] {
        m.observe_request(Some(0), s, false, Duration::from_millis(1));
    }
    m.observe_request(Some(0), 101, false, Duration::from_millis(1));
    let t = m.render(Scrape::new());
    assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"1xx\"} 1\n"), "{t}");
    assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"4xx\"} 4\n"), "{t}");
}

const X: Def<2> = Def::gauge("portcullis_x", "Help with a \\ backslash\nand a newline.", ["a", "b"]);
const A: Def<1> = Def::counter("portcullis_a_total", "A.", ["k"]);
const EMPTY: Def<1> = Def::gauge("portcullis_empty", "Nothing yet.", ["k"]);
const PLAIN: Def<0> = Def::gauge("portcullis_plain", "No labels.", []);

#[test]
fn label_values_and_help_are_escaped_once() {
    let mut s = Scrape::new();
    s.family(&X).sample(["q\"uote", "back\\slash"], 1_u64).sample(["new\nline", "plain"], true);
    let t = s.render();
    assert!(t.contains("# HELP portcullis_x Help with a \\\\ backslash\\nand a newline.\n"), "{t}");
    assert!(t.contains("portcullis_x{a=\"q\\\"uote\",b=\"back\\\\slash\"} 1\n"), "{t}");
    assert!(t.contains("portcullis_x{a=\"new\\nline\",b=\"plain\"} 1\n"), "{t}");
}

#[test]
fn one_family_per_name_and_empty_families_left_out() {
    let m = Metrics::new(vec![], "v".into(), &[&A, &EMPTY, &PLAIN]).unwrap();
    let mut s = Scrape::new();
    s.family(&A).sample(["1"], 2_u64);
    s.family(&A).sample(["2"], 3_u64);
    s.family(&EMPTY);
    s.family(&PLAIN).sample([], 7.5);
    // Not registered: not served.
    s.family(&X).sample(["a", "b"], 1_u64);
    let t = m.render(s);
    assert_eq!(t.matches("# TYPE portcullis_a_total counter\n").count(), 1, "{t}");
    assert!(t.contains("portcullis_a_total{k=\"1\"} 2\nportcullis_a_total{k=\"2\"} 3\n"), "{t}");
    assert!(!t.contains("portcullis_empty"), "{t}");
    assert!(t.contains("# TYPE portcullis_plain gauge\nportcullis_plain 7.5\n"), "{t}");
    assert!(!t.contains("portcullis_x"), "{t}");
}

#[test]
fn the_registry_refuses_a_family_twice() {
    const AGAIN: Def<1> = Def::gauge("portcullis_a_total", "A again.", ["other"]);
    const RECORDED: Def<2> = Def::counter("portcullis_requests_total", "Again.", ["route", "status_class"]);
    assert!(Metrics::new(vec![], "v".into(), &[&A, &PLAIN]).is_ok());
    assert!(Metrics::new(vec![], "v".into(), &[&A, &A]).is_err());
    assert!(Metrics::new(vec![], "v".into(), &[&A, &AGAIN]).is_err());
    assert!(Metrics::new(vec![], "v".into(), &[&RECORDED]).is_err());
    let bad: Def<0> = Def::gauge("not a name", "x", []);
    assert!(Metrics::new(vec![], "v".into(), &[&bad]).is_err());
}
