//! Fleet mode's counters on a real `redis-server` shared by two gateway processes: a rate limit
//! holds across both (ε measured per aligned window), and falls back to a per-instance share
//! when the store dies.
use crate::common::*;
use crate::fleet::{fleet_id, routes, Redis};
use portcullis_tests::{Client, Gateway, TempDir, Upstream};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RATE: &str = "rate_limits:\n  - id: fleet-ten\n    routes: [api]\n    key: [client_ip]\n    rate: 10/1s\n";

pub(crate) fn instance_with(
    up: &Upstream,
    state: &std::path::Path,
    redis: u16,
    id: &str,
    rules: &str,
    more: &str,
) -> Gateway {
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .rule_file("fleet.yaml", &format!("version: 1\n{rules}"))
        .extra(&format!("fleet:\n  redis_url: \"redis://127.0.0.1:{redis}\"\n  id: {id}\n{more}"))
        .start()
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Hammers every gateway at once (one client thread each, a request every `gap`) for `span`;
/// returns the 200s per aligned wall-clock second (only whole seconds inside the run), and the
/// 429s seen.
fn hammer(gws: &[&Gateway], span: Duration, gap: Duration) -> (Vec<u64>, u64) {
    let start = unix_ms();
    let results: Vec<Vec<(u128, u16)>> = std::thread::scope(|s| {
        let handles: Vec<_> = gws
            .iter()
            .map(|gw| {
                let url = gw.url("/api/orders");
                s.spawn(move || {
                    let c = Client::new();
                    let t = Instant::now();
                    let mut out = Vec::new();
                    while t.elapsed() < span {
                        let sent = unix_ms();
                        let st = c.get(&url, &[]).status;
                        // The gateway decided between `sent` and now: its second is `sent`'s
                        // unless the answer crossed a boundary (then the sample is dropped).
                        let got = unix_ms();
                        if sent / 1000 == got / 1000 {
                            out.push((sent, st));
                        }
                        std::thread::sleep(gap);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let end = unix_ms();
    let mut per: BTreeMap<u128, u64> = BTreeMap::new();
    let mut refused = 0;
    for (t, st) in results.into_iter().flatten() {
        match st {
            200 => *per.entry(t / 1000).or_default() += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Whole seconds only.
    let windows = (start / 1000 + 1..end / 1000).map(|w| per.get(&w).copied().unwrap_or(0)).collect();
    (windows, refused)
}

#[test]
fn a_rate_limit_holds_across_two_instances_within_the_stated_epsilon_and_falls_back_to_a_share() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-ra"), TempDir::new("fleet-rb"));
    let id = format!("{}r", fleet_id());
    let a = instance_with(&up, sa.path(), redis.port, &id, RATE, "");
    let b = instance_with(&up, sb.path(), redis.port, &id, RATE, "");
    // Both instances have announced themselves.
    assert!(portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || redis
        .cli(&["ZCARD", &format!("portcullis:{id}:instances")])
        == "2"));

    // 2 instances, 10/s, each offered ~60 requests a second: the fleet admits at most
    // 10 × (1 + ε) per aligned second. Without the fleet budget each instance would admit its own
    // 10 (and up to 20 in one aligned second with its burst).
    up.clear();
    let (windows, refused) = hammer(&[&a, &b], Duration::from_millis(4_300), Duration::from_millis(15));
    let max = windows.iter().copied().max().unwrap_or(0);
    let eps = max as f64 / 10.0 - 1.0;
    eprintln!("fleet rate limit 10/s on 2 instances: admitted per aligned second {windows:?}, refused {refused}; measured ε = {eps:.2}");
    assert!(windows.len() >= 3, "{windows:?}");
    assert!(max <= 11, "the fleet admitted {max} in one second for a 10/s limit: {windows:?}");
    assert!(windows.iter().all(|&w| w >= 7), "the fleet budget starved the limit: {windows:?}");
    assert!(refused > 100);
    // What the upstream received is what was admitted (refusals never reach it).
    assert!(up.requests_to("/api/orders").len() as u64 <= windows.iter().sum::<u64>() + 2 * 11 + 11);
    assert!(redis.cli(&["KEYS", &format!("portcullis:{id}:rl:*")]).contains(&format!("portcullis:{id}:rl:")));

    // The store dies: each instance admits its share (10 / 2) per second, not the full limit.
    let _port = redis.stop();
    std::thread::sleep(Duration::from_millis(400));
    let (windows, _) = hammer(&[&a, &b], Duration::from_millis(3_300), Duration::from_millis(15));
    eprintln!("store down, rate_limit_fallback share: admitted per aligned second {windows:?}");
    assert!(windows.iter().all(|&w| (8..=11).contains(&w)), "{windows:?}");
    let (windows, _) = hammer(&[&a], Duration::from_millis(2_300), Duration::from_millis(15));
    eprintln!("store down, one instance alone: {windows:?}");
    assert!(windows.iter().all(|&w| (4..=5).contains(&w)), "one instance kept its share only: {windows:?}");
    for gw in [&a, &b] {
        assert!(gw.is_running());
    }
}

#[test]
fn rate_limit_fallback_local_lets_each_instance_use_the_full_limit_while_the_store_is_down() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let sa = TempDir::new("fleet-rl");
    let id = format!("{}l", fleet_id());
    let a = instance_with(&up, sa.path(), redis.port, &id, RATE, "  rate_limit_fallback: local\n");
    let _ = redis.stop();
    std::thread::sleep(Duration::from_millis(400));
    let (windows, _) = hammer(&[&a], Duration::from_millis(2_300), Duration::from_millis(15));
    eprintln!("store down, rate_limit_fallback local: {windows:?}");
    assert!(windows.iter().all(|&w| (9..=11).contains(&w)), "{windows:?}");
}

#[test]
fn a_tampered_rate_counter_fails_closed_for_its_key_and_crashes_nothing() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let sa = TempDir::new("fleet-rt");
    let id = format!("{}x", fleet_id());
    let a = instance_with(&up, sa.path(), redis.port, &id, RATE, "");
    // Every counter of the coming seconds replaced by a value that is not a number.
    let c = Client::new();
    assert_eq!(c.get(&a.url("/api/orders"), &[]).status, 200);
    // The counter reaches the store with the next sync (100 ms) and lives for its window: on a
    // loaded machine one request's key can come and go between two looks (this failed in full
    // parallel runs), so a request every 200 ms (under the 10/s limit) keeps a window counted.
    assert!(portcullis_tests::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let _ = c.get(&a.url("/api/orders"), &[]);
        !redis.cli(&["KEYS", &format!("portcullis:{id}:rl:*")]).is_empty()
    }));
    let keys = redis.cli(&["KEYS", &format!("portcullis:{id}:rl:*")]);
    let key = keys.lines().next().unwrap().to_string();
    let stem = key.rsplit_once(':').unwrap().0.to_string();
    let now = (unix_ms() / 1000) as u64;
    for w in now..now + 4 {
        redis.cli(&["SET", &format!("{stem}:{w}"), "lots"]);
    }
    std::thread::sleep(Duration::from_millis(1_000 - (unix_ms() % 1000) as u64 + 20));
    let (windows, _) = hammer(&[&a], Duration::from_millis(2_300), Duration::from_millis(15));
    eprintln!("tampered counters: admitted per second {windows:?}");
    assert!(a.is_running());
    assert!(windows.iter().all(|&w| w <= 10), "{windows:?}");
}

pub(crate) const HOOKS: &str = "webhooks:\n  - id: github\n    path_prefix: /api/hooks/github\n    provider: github\n    secrets: [{id: current, env: PC_GH}]\n    replay_window_seconds: 60\n  - id: sw\n    path_prefix: /api/hooks/sw\n    provider: standard_webhooks\n    secrets: [{id: sw-1, env: PC_SW}]\n";

fn hooks_instance(up: &Upstream, state: &std::path::Path, redis: u16, id: &str, more: &str) -> Gateway {
    use crate::webhooks::{GH, SW};
    Cfg::new(&[up.addr()])
        .routes(routes())
        .state_dir(state)
        .rule_file("fleet.yaml", &format!("version: 1\n{HOOKS}"))
        .extra(&format!("fleet:\n  redis_url: \"redis://127.0.0.1:{redis}\"\n  id: {id}\n{more}"))
        .start_env(&[("PC_GH", GH), ("PC_SW", SW)])
}

/// The sender's attempt number rides in an unsigned header: the upstream fails attempt 1.
fn flaky() -> Upstream {
    Upstream::with_fn("app", |r| {
        if r.header("x-attempt") == Some("1") {
            portcullis_tests::Reply::status(503)
        } else {
            portcullis_tests::Reply::status(200)
        }
    })
}

#[test]
fn a_webhook_delivery_accepted_by_one_instance_is_refused_as_a_replay_by_the_other() {
    use crate::webhooks::{github, post, standard, with, GH};
    let Some(redis) = Redis::start(None) else { return };
    let up = flaky();
    let (sa, sb) = (TempDir::new("fleet-wa"), TempDir::new("fleet-wb"));
    let id = format!("{}w", fleet_id());
    let a = hooks_instance(&up, sa.path(), redis.port, &id, "");
    let b = hooks_instance(&up, sb.path(), redis.port, &id, "");
    let t = crate::identity::now();

    // GitHub: accepted by A, the same bytes replayed to B refused, and re-spelled (hex case).
    let body = br#"{"ref":"refs/heads/main","n":1}"#;
    let h = github(GH, body, "d-1");
    assert_eq!(post(&a, "/api/hooks/github", &h, body).status, 200);
    let r = post(&b, "/api/hooks/github", &h, body);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "invalid_signature");
    let upper = h.iter().map(|(k, v)| (k.clone(), v.replace("sha256=", "").to_uppercase())).map(|(k, v)| {
        if k == "x-hub-signature-256" {
            (k, format!("sha256={v}"))
        } else {
            (k, v)
        }
    });
    let upper: Vec<(String, String)> = upper.collect();
    assert_eq!(post(&b, "/api/hooks/github", &upper, body).status, 401, "re-spelled signature replayed to B");
    // A new delivery id does not make it new (GitHub's id is unsigned): still the same content.
    assert_eq!(post(&b, "/api/hooks/github", &with(&h, "x-github-delivery", "d-2"), body).status, 401);
    assert_eq!(up.requests_to("/api/hooks/github").len(), 1, "the upstream received a replay");

    // Standard Webhooks: the signed id is a key too: the same message re-signed later is a replay.
    let b2 = br#"{"type":"invoice.paid"}"#;
    assert_eq!(post(&b, "/api/hooks/sw", &standard("msg_1", b2, t), b2).status, 200);
    assert_eq!(post(&a, "/api/hooks/sw", &standard("msg_1", b2, t), b2).status, 401);
    assert_eq!(post(&a, "/api/hooks/sw", &standard("msg_1", b2, t + 1), b2).status, 401, "same id, new timestamp");
    assert_eq!(post(&a, "/api/hooks/sw", &standard("msg_2", b2, t), b2).status, 200, "another message passes");
    assert_eq!(up.requests_to("/api/hooks/sw").len(), 2);

    // The upstream fails attempt 1 on A: the sender's retry reaches B and passes; a third copy
    // anywhere is a replay.
    let b3 = br#"{"type":"retry"}"#;
    let h3 = standard("msg_retry", b3, t);
    assert_eq!(post(&a, "/api/hooks/sw", &with(&h3, "x-attempt", "1"), b3).status, 503);
    assert!(portcullis_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        redis.cli(&["KEYS", &format!("portcullis:{id}:wh:*")]).lines().count() == 5
    }));
    assert_eq!(post(&b, "/api/hooks/sw", &with(&h3, "x-attempt", "2"), b3).status, 200, "the retry after a failure");
    assert_eq!(post(&a, "/api/hooks/sw", &with(&h3, "x-attempt", "3"), b3).status, 401);
    // The claims expire with the delivery's window.
    let ttl: i64 = redis
        .cli(&["PTTL", redis.cli(&["KEYS", &format!("portcullis:{id}:wh:*")]).lines().next().unwrap()])
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 301_000, "{ttl}");

    // The store dies: fallback local (the default), with one fleet_store_unavailable event; A's
    // own cache still refuses A's replays.
    let _ = redis.stop();
    let b4 = br#"{"ref":"outage"}"#;
    let h4 = github(GH, b4, "d-9");
    let started = Instant::now();
    assert_eq!(post(&a, "/api/hooks/github", &h4, b4).status, 200);
    eprintln!("webhook delivery with the fleet store down took {:?}", started.elapsed());
    assert_eq!(post(&a, "/api/hooks/github", &h4, b4).status, 401);
    assert!(portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        control_get(&a, "/v1/events?type=fleet_store_unavailable", VIEWER).json()["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["detail"]["fallback"] == "local"))
    }));
}

#[test]
fn webhook_replay_fallback_closed_refuses_deliveries_while_the_store_is_down() {
    use crate::webhooks::{github, post, GH};
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let sa = TempDir::new("fleet-wc");
    let id = format!("{}c", fleet_id());
    let a = hooks_instance(
        &up,
        sa.path(),
        redis.port,
        &id,
        "  webhook_replay_fallback: closed\n  webhook_replay_budget_ms: 20\n",
    );
    let body = br#"{"n":1}"#;
    assert_eq!(post(&a, "/api/hooks/github", &github(GH, body, "d"), body).status, 200);
    let port = redis.stop();
    let body = br#"{"n":2}"#;
    let r = post(&a, "/api/hooks/github", &github(GH, body, "d"), body);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "store_unavailable");
    assert_eq!(up.requests_to("/api/hooks").len(), 1, "nothing reached the upstream while the store was down");
    // The refused delivery claimed nothing: once the store is back, the sender's retry passes.
    let _redis = Redis::start(Some(port)).unwrap();
    assert!(portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        post(&a, "/api/hooks/github", &github(GH, body, "d"), body).status == 200
    }));
    assert_eq!(up.requests_to("/api/hooks").len(), 2);
}

const QUOTA: &str = "quotas:\n  - id: daily\n    routes: [business]\n    per: tenant\n    limit: 20\n    period: day\n    thresholds: []\n";

fn quota_instance(up: &Upstream, state: &std::path::Path, redis: u16, id: &str) -> Gateway {
    crate::identity::start(
        &crate::identity::cfg(up, QUOTA)
            .state_dir(state)
            .extra(&format!("fleet:\n  redis_url: \"redis://127.0.0.1:{redis}\"\n  id: {id}\n")),
    )
}

fn used(gw: &Gateway, tenant: &str) -> u64 {
    control_get(gw, &format!("/v1/quotas/{tenant}"), VIEWER).json()["quotas"][0]["used"].as_u64().unwrap_or(0)
}

fn flag_on(gw: &Gateway, name: &str) {
    assert_eq!(crate::fleet::put(gw, &format!("/v1/flags/{name}"), r#"{"enabled":true}"#).status, 200);
}

/// The fleet's count of the one quota counter in the store.
fn quota_counter(redis: &Redis, id: &str) -> String {
    let k = redis.cli(&["KEYS", &format!("portcullis:{id}:q:*")]);
    redis.cli(&["GET", k.lines().next().unwrap_or("none")])
}

#[test]
fn a_quota_counts_across_two_instances_resets_everywhere_and_reconciles_after_an_outage() {
    use crate::identity::{claims, get, rs256};
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-qa"), TempDir::new("fleet-qb"));
    let id = format!("{}q", fleet_id());
    let a = quota_instance(&up, sa.path(), redis.port, &id);
    let b = quota_instance(&up, sb.path(), redis.port, &id);
    let t = rs256(claims("user-1", "77"));
    let other = rs256(claims("user-2", "78"));
    flag_on(&a, "quota_enforcement");

    // 8 on A, then 7 on B: B counts on the fleet's total (an instance adopts it at its sync).
    for _ in 0..8 {
        assert_eq!(get(&a, "/api/business/x", &t).status, 200);
    }
    assert!(portcullis_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), || quota_counter(
        &redis, &id
    ) == "8"));
    for _ in 0..7 {
        assert_eq!(get(&b, "/api/business/x", &t).status, 200);
    }
    assert!(portcullis_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), || used(&b, "77") == 15));
    // Alternating until refused: the fleet admits the limit (20) plus at most one sync interval
    // of each instance's own traffic (here one request each: an instance adopts the fleet's
    // total at its own sync, after it counted).
    up.clear();
    let mut admitted = 0;
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        match get(gw, "/api/business/x", &t).status {
            200 => admitted += 1,
            402 => {}
            s => panic!("{s}"),
        }
        std::thread::sleep(Duration::from_millis(120));
    }
    eprintln!("quota 20 across 2 instances: 15 counted, then {admitted} more admitted");
    assert!((5..=7).contains(&admitted), "the fleet quota admitted {admitted} past 15 for a limit of 20");
    assert_eq!(up.requests_to("/api/business").len(), admitted);
    assert_eq!(get(&b, "/api/business/x", &other).status, 200, "another tenant is unaffected");

    // A reset on B reaches A (through the fleet's one transaction, audited there as `fleet`).
    let r = Client::new().post(&b.control_url("/v1/quotas/77/reset"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["fleet"]["published"], true, "{}", r.text());
    assert!(portcullis_tests::wait_until(Duration::from_secs(1), Duration::from_millis(10), || used(&a, "77") == 0));
    assert_eq!(get(&a, "/api/business/x", &t).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&b, "/api/business/x", &t).status, 200);
    assert!(portcullis_tests::wait_until(Duration::from_secs(2), Duration::from_millis(20), || used(&b, "77") == 2));
    let audit = control_get(&a, "/v1/audit?limit=50", ADMIN).json();
    assert!(
        audit["records"].as_array().unwrap().iter().any(|r| r["action"] == "quota.reset" && r["actor"] == "fleet"),
        "{audit}"
    );

    // The store dies: counting goes on locally; a reset (it gives quota back) is refused.
    let port = redis.stop();
    for _ in 0..3 {
        assert_eq!(get(&a, "/api/business/x", &t).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&b, "/api/business/x", &t).status, 200);
    }
    let r = Client::new().post(&a.control_url("/v1/quotas/77/reset"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "store_unavailable");
    assert_eq!((used(&a, "77"), used(&b, "77")), (4, 4));
    // The store returns (empty, so the 2 counted before the outage are gone from it): each adds
    // what it counted during the outage (A 3, B 2) by itself, A also its new request: the
    // fleet's counter is 6, and each instance adopts it.
    let redis = Redis::start(Some(port)).unwrap();
    let took = Instant::now();
    assert_eq!(get(&a, "/api/business/x", &t).status, 200);
    let counter = || quota_counter(&redis, &id);
    assert!(
        portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || counter() == "6"),
        "the fleet's counter: {}",
        counter()
    );
    assert_eq!(get(&b, "/api/business/x", &t).status, 200);
    assert!(portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || counter() == "7"
        && used(&b, "77") == 7));
    assert_eq!(get(&a, "/api/business/x", &t).status, 200);
    assert!(
        portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || used(&a, "77") == 8),
        "A: {}, the fleet's counter: {}",
        used(&a, "77"),
        counter()
    );
    eprintln!("quota reconciled after the outage in {:?}", took.elapsed());
}

#[test]
fn the_fleet_audit_shows_who_did_what_on_every_instance_and_summaries_say_they_are_per_instance() {
    let Some(redis) = Redis::start(None) else { return };
    let up = Upstream::start("app");
    let (sa, sb) = (TempDir::new("fleet-aa"), TempDir::new("fleet-ab"));
    let id = format!("{}a", fleet_id());
    let a = instance_with(&up, sa.path(), redis.port, &id, "", "  instance_id: gw-a\n");
    let b = instance_with(&up, sb.path(), redis.port, &id, "", "");
    assert_eq!(
        crate::fleet::put(&a, "/v1/switches/channels/email", r#"{"enabled":false,"reason":"incident 7"}"#).status,
        200
    );
    let r =
        Client::new().post(&b.control_url("/v1/sessions/sess-1/revoke"), &[("authorization", &bearer(OPERATOR))], "");
    assert_eq!(r.status, 200);
    // An unauthenticated mutation is audited too (refused), on B.
    let r = Client::new().post(&b.control_url("/v1/sessions/sess-2/revoke"), &[], "");
    assert_eq!(r.status, 401);

    let fleet_audit = |gw: &Gateway| control_get(gw, "/v1/audit?scope=fleet&limit=100", ADMIN);
    assert!(
        portcullis_tests::wait_until(Duration::from_secs(3), Duration::from_millis(25), || {
            let v = fleet_audit(&a).json();
            let recs = v["records"].as_array().cloned().unwrap_or_default();
            recs.iter().any(|r| r["instance"] == "gw-a" && r["target"] == "channel:email" && r["actor"] == "o")
                && recs
                    .iter()
                    .any(|r| r["instance"] == "gw-a" && r["target"] == "session:sess-1" && r["actor"] == "fleet")
                && recs.iter().any(|r| {
                    r["instance"].as_str().is_some_and(|i| i != "gw-a")
                        && r["target"] == "session:sess-1"
                        && r["actor"] == "o"
                })
        }),
        "{}",
        fleet_audit(&a).text()
    );
    let v = fleet_audit(&b).json();
    assert_eq!(v["scope"], "fleet");
    let recs = v["records"].as_array().unwrap();
    // Each instance's own chain: seq increases per instance, newest first overall.
    let seqs_a: Vec<u64> =
        recs.iter().filter(|r| r["instance"] == "gw-a").map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs_a.windows(2).all(|w| w[0] > w[1]), "{seqs_a:?}");
    // No record twice.
    let mut keys: Vec<String> = recs.iter().map(|r| format!("{}/{}", r["instance"], r["seq"])).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    // B's change applied on A from the fleet is in A's own chain, actor `fleet`.
    assert!(recs.iter().any(|r| r["instance"] == "gw-a" && r["target"] == "session:sess-1" && r["actor"] == "fleet"));

    // The instance scope is the default and says so; summaries say they are per instance.
    assert_eq!(control_get(&a, "/v1/audit", ADMIN).json()["scope"], "instance");
    assert_eq!(control_get(&a, "/v1/summary", VIEWER).json()["scope"], "instance");
    assert_eq!(control_get(&a, "/v1/top-threats", VIEWER).json()["scope"], "instance");
    for bad in ["scope=all", "scope=", "scope=fleet&x=1"] {
        assert_eq!(control_get(&a, &format!("/v1/audit?{bad}"), ADMIN).status, 400, "{bad}");
    }
    assert_eq!(control_get(&a, "/v1/audit?scope=fleet", VIEWER).status, 403);
    // A tampered list entry is skipped, never a crash.
    redis.cli(&["RPUSH", &format!("portcullis:{id}:audit"), "not json"]);
    redis.cli(&["RPUSH", &format!("portcullis:{id}:audit"), "[1]"]);
    let v = fleet_audit(&a).json();
    assert!(v["records"].as_array().unwrap().iter().all(|r| r.is_object()));
    // The store down: 503 for the fleet scope, the instance scope still answers.
    let _ = redis.stop();
    let r = fleet_audit(&a);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "store_unavailable");
    assert_eq!(control_get(&a, "/v1/audit", ADMIN).status, 200);
}

#[test]
fn scope_fleet_without_fleet_mode_is_a_bad_request() {
    let (_up, gw) = simple();
    assert_eq!(control_get(&gw, "/v1/audit?scope=fleet", ADMIN).status, 400);
    assert_eq!(control_get(&gw, "/v1/audit?scope=instance", ADMIN).json()["scope"], "instance");
}
