use super::*;

#[test]
fn browsers_get_the_console_and_clients_the_index() {
    assert!(wants_html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
    assert!(!wants_html(Some("application/json")));
    assert!(!wants_html(None));
    let r = serve("GET", "/", Some("text/html"), "r").unwrap();
    assert_eq!(r.headers()["content-security-policy"], CSP);
    let r = serve("GET", "/", Some("application/json"), "r").unwrap();
    let v: Value = serde_json::from_slice(r.body()).unwrap();
    assert!(v["endpoints"].as_array().unwrap().iter().any(|e| e["path"] == "/v1/quotas" && e["role"] == "viewer"));
    assert_eq!(serve("POST", "/", None, "r").unwrap().status(), 405);
    assert!(serve("GET", "/nope", None, "r").is_none());
}

#[test]
fn the_page_has_no_inline_script_or_style() {
    assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style=") && !INDEX_HTML.contains("<style"));
    for handler in [" onclick", " onload", " onsubmit", " onerror", " onchange", " oninput", "javascript:"] {
        assert!(!INDEX_HTML.contains(handler), "no inline event handlers: {handler}");
    }
    assert!(!CONSOLE_JS.contains("innerHTML"), "values are put in the page as text");
    assert!(!CONSOLE_JS.contains("document.cookie"));
}
