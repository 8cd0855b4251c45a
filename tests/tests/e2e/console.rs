//! The operator console in a real browser: headless Chromium driven by chromedriver over the W3C
//! WebDriver protocol (plain JSON over HTTP from the harness's client, no WebDriver crate).
//! Sign in with an admin token → turn a channel off through the confirmation dialog (reason and
//! typed name) → the proxy refuses that channel → the `switch_changed` event and the audit record
//! appear in the page → a viewer sees the switches but cannot flip them. Screenshots go to
//! `target/console-screenshots/`.
//!
//! Skipped (with a message) only when Chromium or chromedriver is absent and
//! `PORTCULLIS_REQUIRE_BROWSER` is unset; `.ci/run` installs both and sets it.
use crate::common::*;
use base64::Engine as _;
use portcullis_tests::{wait_until, Client, Gateway, TempDir, Upstream};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The whole browser test's budget.
const BUDGET: Duration = Duration::from_secs(120);

const ROUTES: &str = "  - id: whatsapp\n    path_prefix: /api/whatsapp\n    upstream: app\n    channel: whatsapp\n  - id: default\n    path_prefix: /\n    upstream: app\n";

/// chromedriver on a free port, killed on drop, and one browser session.
struct Driver {
    child: Child,
    base: String,
    session: String,
    http: Client,
    started: Instant,
    shots: PathBuf,
    _profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.http.request("DELETE", &format!("{}/session/{}", self.base, self.session), &[], None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::with_timeout(Duration::from_secs(30));
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            http.try_request("GET", &format!("{base}/status"), &[], None)
                .is_ok_and(|r| r.status == 200 && r.json()["value"]["ready"] == true)
        });
        assert!(up, "chromedriver did not become ready");
        let profile = TempDir::new("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1800", format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let r = http.post(&format!("{base}/session"), &[("content-type", "application/json")], caps.to_string());
        assert_eq!(r.status, 200, "new session: {}", r.text());
        let session = r.json()["value"]["sessionId"].as_str().expect("session id").to_string();
        let shots = target_dir().join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Driver { child, base, session, http, started: Instant::now(), shots, _profile: profile }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        assert!(self.started.elapsed() < BUDGET, "the browser test ran over its {BUDGET:?} budget");
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = body.to_string();
        let body = (method != "GET").then_some(body.as_bytes());
        let r = self.http.request(method, &url, &[("content-type", "application/json")], body);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        r.json()["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}));
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": text }));
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), json!({}));
    }

    /// Runs a script in the page (WebDriver's, not the page's: the CSP does not apply to it).
    fn eval(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn wait(&self, what: &str, script: &str) {
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(200), || self.eval(script) == json!(true));
        if !ok {
            self.shot("failure");
        }
        assert!(ok, "waited for {what}: {script}");
    }

    fn shot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or("")).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// `None` (with the reason printed) when the test is to be skipped.
fn browser_available() -> Option<()> {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    let required = std::env::var_os("PORTCULLIS_REQUIRE_BROWSER").is_some_and(|v| !v.is_empty() && v != "0");
    if present {
        return Some(());
    }
    assert!(!required, "PORTCULLIS_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)");
    eprintln!("SKIPPED console browser test: {CHROMIUM} or {CHROMEDRIVER} is missing (set PORTCULLIS_REQUIRE_BROWSER=1 to make this a failure)");
    None
}

fn sign_in(d: &Driver, gw: &Gateway, token: &str) {
    d.go(&gw.control_url("/"));
    d.wait(
        "the sign-in form",
        "return !!document.getElementById('token') && !document.getElementById('signin').hidden",
    );
    d.type_into("#token", token);
    d.click("#signin-button");
    d.wait("the console", "return !document.getElementById('app').hidden");
}

#[test]
fn the_console_signs_in_flips_with_confirmation_shows_the_refusal_s_event_and_audit_and_viewers_cannot_flip() {
    if browser_available().is_none() {
        return;
    }
    let up = Upstream::start("app");
    let gw = Cfg::new(&[up.addr()]).routes(ROUTES).start();
    let proxy = Client::new();
    assert_eq!(proxy.get(&gw.url("/api/whatsapp/messages"), &[]).status, 200);
    let d = Driver::start();

    // Sign in as admin: the token stays in session storage, no cookie.
    sign_in(&d, &gw, ADMIN);
    d.wait("the switches", "return !!document.getElementById('flip-channel-whatsapp')");
    assert_eq!(d.eval("return sessionStorage.getItem('portcullis.token')"), json!(ADMIN));
    assert_eq!(d.eval("return document.cookie"), json!(""));
    d.wait("upstream health", "return document.getElementById('upstreams-table').textContent.includes('healthy')");
    d.shot("01-signed-in");

    // Turn the channel off: the dialog wants a reason and the name typed out.
    d.click("#flip-channel-whatsapp");
    d.wait("the dialog", "return document.getElementById('confirm').open");
    d.click("#confirm-ok");
    d.wait(
        "the missing reason refused",
        "return document.getElementById('confirm-error').textContent.includes('reason')",
    );
    d.type_into("#confirm-reason", "spam wave");
    d.type_into("#confirm-typed", "whatsap");
    d.click("#confirm-ok");
    d.wait("the wrong name refused", "return document.getElementById('confirm-error').textContent.includes('exactly')");
    assert_eq!(proxy.get(&gw.url("/api/whatsapp/messages"), &[]).status, 200, "nothing changed yet");
    d.type_into("#confirm-typed", "whatsapp");
    d.shot("02-confirm");
    d.click("#confirm-ok");
    d.wait("the dialog to close", "return !document.getElementById('confirm').open");

    // The proxy refuses the channel, and nothing reaches the upstream.
    up.clear();
    let r = proxy.get(&gw.url("/api/whatsapp/messages"), &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("channel_disabled")));
    assert_eq!(up.count(), 0);

    // The page shows the new state, the event and the audit record (live, without a reload).
    d.wait(
        "the channel shown off",
        "return document.querySelector('tr[data-target=\"channel:whatsapp\"]').textContent.includes('OFF')",
    );
    d.wait(
        "the switch_changed event",
        "return !!document.querySelector('#events-table tr[data-type=\"switch_changed\"]')",
    );
    d.wait(
        "the audit record",
        "return [...document.querySelectorAll('#audit-table tr.audit-record')].some(r => r.dataset.action === 'switch.channel.set' && r.dataset.target === 'channel:whatsapp' && r.textContent.includes('spam wave'))",
    );
    let shot = d.shot("03-channel-off");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
    let rec = control_get(&gw, "/v1/audit?action=switch.channel.set&outcome=ok", ADMIN).json();
    assert_eq!(rec["records"][0]["actor"], "a");
    assert_eq!(rec["records"][0]["reason"], "spam wave");

    // A viewer sees the switches, but cannot flip them, and has no audit feed.
    d.click("#signout");
    d.wait("signed out", "return !document.getElementById('signin').hidden");
    assert_eq!(d.eval("return sessionStorage.getItem('portcullis.token')"), Value::Null);
    sign_in(&d, &gw, VIEWER);
    d.wait("the switches", "return !!document.getElementById('flip-channel-whatsapp')");
    assert_eq!(d.eval("return document.getElementById('flip-channel-whatsapp').disabled"), json!(true));
    assert_eq!(d.eval("return document.getElementById('flip-maintenance').title"), json!("needs the operator role"));
    d.wait("the audit note", "return document.getElementById('audit-note').textContent.includes('admin')");
    d.shot("04-viewer");
    // The API refuses the viewer anyway.
    let r = Client::new().request(
        "PUT",
        &gw.control_url("/v1/switches/channels/whatsapp"),
        &[("authorization", &bearer(VIEWER))],
        Some(br#"{"enabled":true}"#),
    );
    assert_eq!(r.status, 403);
    assert_eq!(proxy.get(&gw.url("/api/whatsapp/messages"), &[]).status, 503);

    // A bad token is refused on the sign-in form.
    d.click("#signout");
    d.go(&gw.control_url("/"));
    d.type_into("#token", "pcx_not_a_token");
    d.click("#signin-button");
    d.wait("the refusal", "return document.getElementById('signin-error').textContent.includes('failed')");
}
