use super::*;
use std::collections::HashMap;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portcullis-switches-{tag}-{}-{}", std::process::id(), rand_suffix()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn chans() -> Vec<String> {
    vec!["whatsapp".into(), "email".into(), "voice".into(), "sms-eu".into()]
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k: &str| m.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

const T0: u64 = 1_800_000_000;

fn fl(name: &str) -> Flag {
    Flag::parse(name).unwrap()
}

#[test]
fn typed_flags_match_the_table() {
    assert_eq!(Flag::ALL.len(), FLAGS.len());
    for (i, f) in Flag::ALL.into_iter().enumerate() {
        assert_eq!(f as usize, i);
        assert_eq!(f.name(), FLAGS[i].0);
        assert_eq!(Flag::parse(f.name()), Some(f));
    }
    for bad in ["", "Rate_limit", "rate-limit", "rate_limit ", "turbo"] {
        assert_eq!(Flag::parse(bad), None, "{bad:?}");
    }
}

fn load(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Switches {
    Switches::load_at(dir, &chans(), env, T0).unwrap()
}

fn on(retry: Option<u64>, ttl: Option<u64>) -> MaintenanceChange {
    MaintenanceChange { enabled: true, retry_after: retry, reason: Some("db migration".into()), ttl_seconds: ttl }
}

#[test]
fn send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Switches>();
    is::<Bypass>();
}

#[test]
fn defaults() {
    let d = tmpdir("defaults");
    let s = load(&d, &no_env);
    assert_eq!(s.maintenance(T0), None);
    for c in chans() {
        assert!(s.channel_enabled(&c));
    }
    assert!(s.channel_enabled("not-a-channel"));
    for (name, default, _, _) in FLAGS {
        assert_eq!(s.flag(fl(name)), *default, "{name}");
    }
    assert_eq!(Flag::parse("no_such_flag"), None);
    let snap = s.snapshot();
    assert_eq!(snap.version, 0);
    assert_eq!(snap.maintenance.retry_after, DEFAULT_RETRY_AFTER);
    assert_eq!(snap.maintenance.source, Source::Default);
    assert_eq!(s.known_channels(), vec!["email", "sms-eu", "voice", "whatsapp"]);
    assert!(!d.join(STATE_FILE).exists(), "load never writes");
}

#[test]
fn env_parsing() {
    let d = tmpdir("env");
    let env = env_of(&[
        ("MAINTENANCE_MODE", "true"),
        ("WHATSAPP_ENABLED", "false"),
        ("EMAIL_ENABLED", " OFF "),
        ("VOICE_ENABLED", "0"),
        ("SMS_EU_ENABLED", "no"),
        ("RATE_LIMIT_ENABLED", "false"),
        ("QUOTA_ENFORCEMENT_ENABLED", "yes"),
        ("SAFE_TEST_MODE", "1"),
        ("FIREWALL_ENABLED", "off"),
        ("TENANT_SCOPE_ENABLED", "No"),
        ("PII_SCANNING_ENABLED", "FALSE"),
        ("WEBHOOK_VERIFICATION_ENABLED", "0"),
    ]);
    let s = load(&d, &env);
    assert_eq!(s.maintenance(T0), Some(DEFAULT_RETRY_AFTER));
    for c in chans() {
        assert!(!s.channel_enabled(&c), "{c}");
    }
    for (name, default, _, _) in FLAGS {
        assert_eq!(s.flag(fl(name)), !*default, "{name}");
    }
    let snap = s.snapshot();
    assert_eq!(snap.maintenance.source, Source::Environment);
    assert_eq!(snap.maintenance.reason.as_deref(), Some("MAINTENANCE_MODE=true"));
    let w = &snap.channels["whatsapp"];
    assert_eq!(w.source, Source::Environment);
    assert_eq!(w.reason.as_deref(), Some("WHATSAPP_ENABLED=false"));
    assert!(w.set_at.is_some());

    // Each true spelling, each false spelling.
    for v in ["true", "1", "yes", "on", "TRUE", "On"] {
        let s = load(&d, &env_of(&[("MAINTENANCE_MODE", v), ("QUOTA_ENFORCEMENT_ENABLED", v)]));
        assert!(s.maintenance(T0).is_some(), "{v}");
        assert!(s.flag(fl("quota_enforcement")), "{v}");
    }
    for v in ["false", "0", "no", "off", "False"] {
        let s = load(&d, &env_of(&[("RATE_LIMIT_ENABLED", v), ("WHATSAPP_ENABLED", v)]));
        assert!(!s.flag(fl("rate_limit")), "{v}");
        assert!(!s.channel_enabled("whatsapp"), "{v}");
    }
}

#[test]
fn env_garbage_is_ignored() {
    let d = tmpdir("garbage");
    let env = env_of(&[
        ("MAINTENANCE_MODE", "maybe"),
        ("WHATSAPP_ENABLED", ""),
        ("RATE_LIMIT_ENABLED", "disabled"),
        ("SAFE_TEST_MODE", "2"),
        ("whatsapp_ENABLED", "false"),
    ]);
    let s = load(&d, &env);
    assert_eq!(s.maintenance(T0), None);
    assert!(s.channel_enabled("whatsapp"));
    assert!(s.flag(fl("rate_limit")));
    assert!(!s.flag(fl("safe_test_mode")));
    let snap = s.snapshot();
    assert_eq!(snap.maintenance.source, Source::Default);
    assert_eq!(snap.flags["rate_limit"].source, Source::Default);
}

#[test]
fn channel_env_var_names() {
    assert_eq!(channel_env_var("whatsapp"), "WHATSAPP_ENABLED");
    assert_eq!(channel_env_var("sms-eu"), "SMS_EU_ENABLED");
    assert_eq!(channel_env_var("voice_2"), "VOICE_2_ENABLED");
}

#[test]
fn operator_state_persists_and_wins_over_env_after_restart() {
    let d = tmpdir("restart");
    let env = env_of(&[("WHATSAPP_ENABLED", "true"), ("RATE_LIMIT_ENABLED", "true"), ("EMAIL_ENABLED", "false")]);
    let s = load(&d, &env);
    s.set_channel("whatsapp", false, Some("pii leak".into()), "alice", None).unwrap();
    s.set_flag("rate_limit", false, None, "alice", None).unwrap();
    let c = s.set_maintenance(on(Some(120), None), "bob", None).unwrap();
    assert_eq!(c.version, 3);
    drop(s);

    // Restart (also what a kill -9 leaves: the file was fsynced before each answer).
    let s = load(&d, &env);
    assert!(!s.channel_enabled("whatsapp"), "operator kill survives the restart despite WHATSAPP_ENABLED=true");
    assert!(!s.flag(fl("rate_limit")));
    assert_eq!(s.maintenance(T0), Some(120));
    assert!(!s.channel_enabled("email"), "env still applies where no operator acted");
    let snap = s.snapshot();
    assert_eq!(snap.version, 3, "version survives restarts");
    let w = &snap.channels["whatsapp"];
    assert_eq!(w.source, Source::Operator);
    assert_eq!(w.set_by.as_deref(), Some("alice"));
    assert_eq!(w.reason.as_deref(), Some("pii leak"));
    assert_eq!(snap.maintenance.set_by.as_deref(), Some("bob"));
    assert_eq!(snap.channels["email"].source, Source::Environment);

    // Changed again: the new operator value wins, and the version keeps counting.
    let c = s.set_channel("whatsapp", true, None, "alice", Some(3)).unwrap();
    assert_eq!(c.version, 4);
    let s = load(&d, &env_of(&[("WHATSAPP_ENABLED", "false")]));
    assert!(s.channel_enabled("whatsapp"));
    assert_eq!(s.snapshot().version, 4);
}

#[test]
fn env_changes_apply_where_no_operator_acted() {
    let d = tmpdir("envonly");
    let s = load(&d, &env_of(&[("EMAIL_ENABLED", "false")]));
    s.set_flag("safe_test_mode", true, None, "ops", None).unwrap();
    // The file now holds email as `environment`: a later start without the variable reopens it,
    // because the environment is the initial state, not an operator decision.
    let s = load(&d, &no_env);
    assert!(s.channel_enabled("email"));
    assert!(s.flag(fl("safe_test_mode")));
}

#[test]
fn persisted_channel_without_route_is_kept() {
    let d = tmpdir("unrouted");
    let s = load(&d, &no_env);
    s.set_channel("voice", false, None, "ops", None).unwrap();
    let s = Switches::load_at(&d, &["whatsapp".to_string()], &no_env, T0).unwrap();
    assert_eq!(s.known_channels(), vec!["voice", "whatsapp"]);
    assert!(!s.channel_enabled("voice"));
    let v = s.view(T0);
    assert_eq!(v["channels"]["voice"]["routed"], false);
    assert_eq!(v["channels"]["whatsapp"]["routed"], true);
    // Restoring the route later finds the channel still killed.
    let s = load(&d, &no_env);
    assert!(!s.channel_enabled("voice"));
}

#[test]
fn corrupt_file_is_an_error() {
    for (tag, body) in [
        ("garbage", &b"{not json"[..]),
        ("empty", b""),
        ("truncated", b"{\"version\": 3, \"channels\": {\"whatsapp\": {\"enabled\": fal"),
        ("wrongtype", b"{\"version\": \"three\"}"),
        ("retry", b"{\"maintenance\": {\"enabled\": true, \"retry_after\": 0}}"),
        ("expiry", b"{\"maintenance\": {\"enabled\": true, \"expires_at\": \"tomorrow\"}}"),
        ("badsource", b"{\"channels\": {\"whatsapp\": {\"enabled\": false, \"source\": \"admin\"}}}"),
        ("badname", b"{\"channels\": {\"Whats App\": {\"enabled\": false, \"source\": \"operator\"}}}"),
    ] {
        let d = tmpdir(tag);
        fs::write(d.join(STATE_FILE), body).unwrap();
        let e = Switches::load_at(&d, &chans(), &no_env, T0).unwrap_err();
        assert!(e.contains("switches.json"), "{tag}: {e}");
        assert!(e.contains("does not start"), "{tag}: {e}");
    }
    // Unreadable (a directory where the file should be) is an error too.
    let d = tmpdir("isdir");
    fs::create_dir(d.join(STATE_FILE)).unwrap();
    assert!(Switches::load_at(&d, &chans(), &no_env, T0).is_err());
}

#[test]
fn missing_fields_and_unknown_flags_in_file_are_tolerated() {
    let d = tmpdir("partial");
    fs::write(
        d.join(STATE_FILE),
        br#"{"version": 9, "flags": {"retired_flag": {"enabled": true, "source": "operator"}},
                "channels": {"email": {"enabled": false, "source": "operator", "set_by": "x"}}}"#,
    )
    .unwrap();
    let s = load(&d, &no_env);
    assert_eq!(s.snapshot().version, 9);
    assert!(!s.channel_enabled("email"));
    assert!(!s.snapshot().flags.contains_key("retired_flag"));
    assert_eq!(Flag::parse("retired_flag"), None);
}

#[test]
fn unknown_channel_and_flag_list_known_ones() {
    let d = tmpdir("unknown");
    let s = load(&d, &no_env);
    match s.set_channel("telegram", false, None, "ops", None) {
        Err(SwitchError::UnknownChannel { known }) => {
            assert_eq!(known, vec!["email", "sms-eu", "voice", "whatsapp"])
        }
        other => panic!("{other:?}"),
    }
    let e = s.set_flag("turbo", true, None, "ops", None).unwrap_err();
    assert!(e.to_string().contains("quota_enforcement"), "{e}");
    match e {
        SwitchError::UnknownFlag { known } => {
            assert_eq!(known.len(), FLAGS.len());
            assert!(known.contains(&"rate_limit".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.snapshot().version, 0);
    assert!(!d.join(STATE_FILE).exists());
}

#[test]
fn if_match_conflict() {
    let d = tmpdir("ifmatch");
    let s = load(&d, &no_env);
    let c = s.set_channel("email", false, None, "alice", Some(0)).unwrap();
    assert_eq!(c.version, 1);
    // Bob read version 0 and is now stale.
    let e = s.set_channel("email", true, None, "bob", Some(0)).unwrap_err();
    assert_eq!(e, SwitchError::Conflict { current: 1 });
    assert!(e.to_string().contains("current version is 1"));
    assert!(!s.channel_enabled("email"));
    assert_eq!(
        s.set_flag("rate_limit", false, None, "bob", Some(7)).unwrap_err(),
        SwitchError::Conflict { current: 1 }
    );
    assert_eq!(s.set_maintenance(on(None, None), "bob", Some(0)).unwrap_err(), SwitchError::Conflict { current: 1 });
    assert_eq!(s.snapshot().version, 1);
    // With the current version (or none) it goes through.
    assert_eq!(s.set_channel("email", true, None, "bob", Some(1)).unwrap().version, 2);
    assert_eq!(s.set_flag("rate_limit", false, None, "bob", None).unwrap().version, 3);
}

#[test]
fn parse_if_match_forms() {
    assert_eq!(parse_if_match("7"), Ok(Some(7)));
    assert_eq!(parse_if_match("\"7\""), Ok(Some(7)));
    assert_eq!(parse_if_match(" W/\"12\" "), Ok(Some(12)));
    assert_eq!(parse_if_match("*"), Ok(None));
    assert!(parse_if_match("\"abc\"").is_err());
    assert!(parse_if_match("").is_err());
    assert!(parse_if_match("-1").is_err());
    assert_eq!(etag(7), "\"7\"");
}

#[test]
fn change_values_for_audit() {
    let d = tmpdir("change");
    let s = load(&d, &env_of(&[("WHATSAPP_ENABLED", "false")]));
    let c = s.set_channel("whatsapp", true, Some("partner back".into()), "alice", None).unwrap();
    assert_eq!(c.target, "channel:whatsapp");
    assert_eq!(c.old["enabled"], false);
    assert_eq!(c.old["source"], "environment");
    assert_eq!(c.new["enabled"], true);
    assert_eq!(c.new["source"], "operator");
    assert_eq!(c.new["set_by"], "alice");
    assert_eq!(c.new["reason"], "partner back");
    let c = s.set_flag("quota_enforcement", true, None, "alice", None).unwrap();
    assert_eq!(c.target, "flag:quota_enforcement");
    assert_eq!(c.old["enabled"], false);
    assert_eq!(c.old["source"], "default");
    let c = s.set_maintenance(on(Some(600), Some(1800)), "bob", None).unwrap();
    assert_eq!(c.target, "maintenance");
    assert_eq!(c.new["retry_after"], 600);
    assert_eq!(c.version, 3);
    let j = serde_json::to_value(&c).unwrap();
    assert_eq!(j["version"], 3);
}

#[test]
fn maintenance_validation() {
    let d = tmpdir("validation");
    let s = load(&d, &no_env);
    let bad = [
        on(Some(0), None),
        on(Some(MAX_RETRY_AFTER + 1), None),
        on(None, Some(0)),
        on(None, Some(MAX_TTL_SECONDS + 1)),
        MaintenanceChange { enabled: false, ttl_seconds: Some(60), ..Default::default() },
        MaintenanceChange { enabled: true, reason: Some("x".repeat(501)), ..Default::default() },
        MaintenanceChange { enabled: true, reason: Some("line\nbreak".into()), ..Default::default() },
        MaintenanceChange { enabled: true, reason: Some("esc\u{1b}[31m".into()), ..Default::default() },
    ];
    for b in bad {
        assert!(matches!(s.set_maintenance(b.clone(), "ops", None), Err(SwitchError::Invalid(_))), "{b:?}");
    }
    assert!(matches!(s.set_channel("email", false, Some("\u{7}".into()), "ops", None), Err(SwitchError::Invalid(_))));
    assert!(matches!(s.set_flag("rate_limit", false, Some("a\tb".into()), "ops", None), Err(SwitchError::Invalid(_))));
    assert_eq!(s.snapshot().version, 0);
    // Limits themselves are accepted; 500 characters of non-ASCII are 500 characters.
    s.set_maintenance(on(Some(MAX_RETRY_AFTER), Some(MAX_TTL_SECONDS)), "ops", None).unwrap();
    s.set_maintenance(on(Some(1), Some(1)), "ops", None).unwrap();
    let r = "é".repeat(500);
    let c = s.set_channel("email", false, Some(r.clone()), "ops", None).unwrap();
    assert_eq!(c.new["reason"], r);
    // An empty reason is none.
    let c = s.set_channel("email", false, Some(String::new()), "ops", None).unwrap();
    assert_eq!(c.new["reason"], Value::Null);
    // Without retry_after: the default.
    s.set_maintenance(MaintenanceChange { enabled: true, ..Default::default() }, "ops", None).unwrap();
    assert!(s.maintenance(now_unix()).is_some_and(|r| r == DEFAULT_RETRY_AFTER));
}

#[test]
fn maintenance_change_body() {
    let m: MaintenanceChange =
        serde_json::from_str(r#"{"enabled":true,"retry_after":3600,"reason":"db","ttl_seconds":900}"#).unwrap();
    assert_eq!(
        m,
        MaintenanceChange { enabled: true, retry_after: Some(3600), reason: Some("db".into()), ttl_seconds: Some(900) }
    );
    let m: MaintenanceChange = serde_json::from_str(r#"{"enabled":false}"#).unwrap();
    assert!(!m.enabled);
    assert!(serde_json::from_str::<MaintenanceChange>(r#"{"enabled":true,"retryAfter":5}"#).is_err());
    assert!(serde_json::from_str::<MaintenanceChange>(r#"{"retry_after":5}"#).is_err());
}

#[test]
fn maintenance_ttl_expires_and_expire_persists() {
    let d = tmpdir("ttl");
    let s = load(&d, &no_env);
    s.set_maintenance_at(on(Some(300), Some(600)), "bob", None, T0).unwrap();
    assert_eq!(s.maintenance(T0), Some(300));
    assert_eq!(s.maintenance(T0 + 599), Some(300));
    assert_eq!(s.expire(T0 + 599), None, "not due yet");
    assert_eq!(s.snapshot().version, 1);
    // Past the ttl the request path treats it as off at once, before the tick persists it.
    assert_eq!(s.maintenance(T0 + 600), None);
    assert_eq!(s.view(T0 + 600)["maintenance"]["active"], false);
    assert_eq!(s.view(T0 + 600)["maintenance"]["enabled"], true);

    let c = s.expire(T0 + 605).unwrap();
    assert_eq!(c.target, "maintenance");
    assert_eq!(c.version, 2);
    assert_eq!(c.old["enabled"], true);
    assert_eq!(c.new["enabled"], false);
    assert_eq!(c.new["source"], "expired");
    assert_eq!(c.new["set_by"], TTL_ACTOR);
    assert_eq!(c.new["reason"], "db migration", "the reason is kept for context");
    assert_eq!(c.new["expires_at"], rfc3339_unix(T0 + 600));
    assert_eq!(s.expire(T0 + 700), None, "only once");
    assert_eq!(s.maintenance(T0 + 700), None);

    // Persisted, and the expiry wins over MAINTENANCE_MODE=true after a restart.
    let s = Switches::load_at(&d, &chans(), &env_of(&[("MAINTENANCE_MODE", "true")]), T0 + 800).unwrap();
    assert_eq!(s.maintenance(T0 + 800), None);
    let snap = s.snapshot();
    assert_eq!(snap.maintenance.source, Source::Expired);
    assert_eq!(snap.version, 2);
}

#[test]
fn maintenance_ttl_past_on_restart() {
    // The gateway was down when the ttl passed: off at once, then the tick persists it.
    let d = tmpdir("ttlrestart");
    let s = load(&d, &no_env);
    s.set_maintenance_at(on(None, Some(60)), "bob", None, T0).unwrap();
    let s = Switches::load_at(&d, &chans(), &no_env, T0 + 3600).unwrap();
    assert_eq!(s.maintenance(T0 + 3600), None);
    assert!(s.expire(T0 + 3600).is_some());
}

#[test]
fn maintenance_without_ttl_never_expires_and_off_clears_expiry() {
    let d = tmpdir("nottl");
    let s = load(&d, &no_env);
    s.set_maintenance_at(on(None, None), "bob", None, T0).unwrap();
    assert_eq!(s.maintenance(u64::MAX), Some(DEFAULT_RETRY_AFTER));
    assert_eq!(s.expire(u64::MAX), None);
    s.set_maintenance_at(on(None, Some(60)), "bob", None, T0).unwrap();
    s.set_maintenance_at(MaintenanceChange::default(), "bob", None, T0 + 10).unwrap();
    let snap = s.snapshot();
    assert!(!snap.maintenance.enabled);
    assert_eq!(snap.maintenance.expires_at, None);
    assert_eq!(s.expire(T0 + 100), None, "nothing to end");
}

#[test]
fn a_failed_checkpoint_is_reported_and_the_committed_change_stays_live() {
    // switches.json is a directory: the rename fails. The change was committed (its audit
    // record is the durable copy, replayed at the next start): it is live, and reported.
    let d = tmpdir("persistfail");
    let s = load(&d, &no_env);
    s.set_channel("voice", false, None, "ops", None).unwrap();
    fs::remove_file(d.join(STATE_FILE)).unwrap();
    fs::create_dir(d.join(STATE_FILE)).unwrap();
    let e = s.set_channel("whatsapp", false, None, "ops", None).unwrap_err();
    assert!(matches!(e, SwitchError::Persist(_)), "{e:?}");
    assert!(!s.channel_enabled("whatsapp"));
    assert_eq!(s.snapshot().version, 2);
    assert_eq!(s.audit_seq(), Some(2));
    let leftovers: Vec<_> =
        fs::read_dir(&d).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != STATE_FILE).collect();
    assert!(leftovers.is_empty(), "temp files are cleaned up: {leftovers:?}");
    // The same record applied again (a replay) changes nothing.
    let (op, _) = s.plan_channel("whatsapp", true, None, "ops", None).unwrap();
    s.apply(&op, 2, false).unwrap();
    assert!(!s.channel_enabled("whatsapp"));
    assert_eq!(s.snapshot().version, 2);
}

#[test]
fn a_refused_plan_changes_nothing() {
    let d = tmpdir("refused");
    let s = load(&d, &env_of(&[("WHATSAPP_ENABLED", "false")]));
    s.set_maintenance_at(on(Some(300), Some(600)), "bob", None, T0).unwrap();
    let before = s.snapshot();
    let file = fs::read(d.join(STATE_FILE)).unwrap();
    assert!(s.plan_channel("whatsapp", true, None, "ops", Some(0)).is_err(), "stale If-Match");
    assert!(s.plan_channel("nope", true, None, "ops", None).is_err());
    assert!(s.plan_flag("nope", true, None, "ops", None).is_err());
    assert!(s.plan_maintenance(on(Some(0), None), "ops", None).is_err());
    // A valid plan that is never applied (its audit record failed) changes nothing either.
    s.plan_channel("whatsapp", true, None, "ops", None).unwrap();
    assert_eq!(*s.snapshot(), *before);
    assert_eq!(fs::read(d.join(STATE_FILE)).unwrap(), file);
    assert_eq!(s.snapshot().channels["whatsapp"].source, Source::Environment);
    assert!(s.snapshot().maintenance.expires_at.is_some());
}

#[test]
fn state_file_is_readable_json() {
    let d = tmpdir("file");
    let s = load(&d, &no_env);
    s.set_channel("whatsapp", false, Some("abuse".into()), "alice", None).unwrap();
    let v: Value = serde_json::from_slice(&fs::read(d.join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["channels"]["whatsapp"]["enabled"], false);
    assert_eq!(v["channels"]["whatsapp"]["source"], "operator");
    assert_eq!(v["maintenance"]["retry_after"], 3600);
}

#[test]
fn view_and_metrics() {
    let d = tmpdir("view");
    let s = load(&d, &env_of(&[("EMAIL_ENABLED", "false")]));
    s.set_maintenance_at(on(Some(120), None), "bob", None, T0).unwrap();
    let v = s.view(T0);
    assert_eq!(v["version"], 1);
    assert_eq!(v["maintenance"]["active"], true);
    assert_eq!(v["maintenance"]["set_by"], "bob");
    assert_eq!(v["channels"]["email"]["env"], "EMAIL_ENABLED");
    assert_eq!(v["channels"]["email"]["enabled"], false);
    assert_eq!(v["flags"]["quota_enforcement"]["default"], false);
    assert_eq!(v["flags"]["quota_enforcement"]["env"], "QUOTA_ENFORCEMENT_ENABLED");
    assert!(v["flags"]["rate_limit"]["description"].as_str().unwrap().contains("429"));
    assert_eq!(v["flags"].as_object().unwrap().len(), FLAGS.len());

    let mut scrape = crate::metrics::Scrape::new();
    s.render_metrics(T0, &mut scrape);
    let m = scrape.render();
    assert!(m.contains("\nportcullis_maintenance_mode 1\n"), "{m}");
    assert!(m.contains("portcullis_channel_enabled{channel=\"email\"} 0\n"));
    assert!(m.contains("portcullis_channel_enabled{channel=\"whatsapp\"} 1\n"));
    assert!(m.contains("portcullis_flag_enabled{flag=\"rate_limit\"} 1\n"));
    assert!(m.contains("portcullis_switches_version 1\n"));
    assert!(m.contains("# TYPE portcullis_channel_enabled gauge"));
}

#[test]
fn concurrent_changes_are_serialised() {
    let d = tmpdir("concurrent");
    let s = Arc::new(load(&d, &no_env));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    s.set_channel("email", i % 2 == 0, None, "ops", None).unwrap();
                    let _ = s.channel_enabled("email");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.snapshot().version, 80);
    assert_eq!(load(&d, &no_env).snapshot().version, 80);
}

// Hot path: `maintenance`, `channel_enabled` and `flag` are an `ArcSwap::load` (a guard, no
// refcount traffic on the fast path, no heap allocation) plus a field read or a `BTreeMap` lookup
// by `&str`; `Bypass::allows` hashes on the stack. Nothing allocates; no timing test is made.

fn sha(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

#[test]
fn bypass_cidrs() {
    let b = Bypass::new(vec!["10.1.0.0/16".parse().unwrap(), "2001:db8::/32".parse().unwrap()], None);
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert!(b.allows(ip("10.1.2.3"), None));
    assert!(!b.allows(ip("10.2.0.1"), None));
    assert!(b.allows(ip("2001:db8::1"), None));
    assert!(!b.allows(ip("2001:db9::1"), None));
    // IPv4-mapped IPv6 matches the IPv4 CIDR.
    assert!(b.allows(ip("::ffff:10.1.2.3"), None));
    assert!(!b.allows(ip("::ffff:10.2.0.1"), None));
    assert!(!b.allows(None, None));
    // A v4-mapped CIDR matches the plain IPv4 client.
    let m = Bypass::new(vec!["::ffff:192.0.2.0/120".parse().unwrap()], None);
    assert!(m.allows(ip("192.0.2.9"), None));
    assert!(!m.allows(ip("192.0.3.9"), None));
    // An IPv6 network wider than the mapped range is IPv6 only (the one set type's rule).
    let wide = Bypass::new(vec!["::/0".parse().unwrap()], None);
    assert!(wide.allows(ip("2001:db8::1"), None));
    assert!(!wide.allows(ip("192.0.2.9"), None));
    assert!(Bypass::default().is_empty());
    assert!(!Bypass::default().allows(ip("10.1.2.3"), Some(b"x")));
}

#[test]
fn bypass_header() {
    let b = Bypass::new(vec![], Some(("X-Portcullis-Bypass".into(), sha(b"s3cret-verify-token"))));
    assert_eq!(b.header_name(), Some("x-portcullis-bypass"));
    assert!(!b.is_empty());
    assert!(b.allows(None, Some(b"s3cret-verify-token")));
    assert!(!b.allows(None, Some(b"s3cret-verify-tokeN")), "mismatch");
    assert!(!b.allows(None, None), "missing");
    assert!(!b.allows(None, Some(b"s3cret")), "shorter");
    assert!(!b.allows(None, Some(&[b'a'; 4096])), "longer");
    assert!(!b.allows(None, Some(b"")), "empty");
    assert!(!b.allows(Some("10.0.0.1".parse().unwrap()), Some(b"wrong")));
    // Either bypass suffices.
    let both = Bypass::new(vec!["10.0.0.0/8".parse().unwrap()], Some(("x-b".into(), sha(b"k"))));
    assert!(both.allows(Some("10.0.0.1".parse().unwrap()), None));
    assert!(both.allows(Some("192.0.2.1".parse().unwrap()), Some(b"k")));
    assert!(!both.allows(Some("192.0.2.1".parse().unwrap()), Some(b"j")));
}

#[test]
fn sha256_hex() {
    let h = hex::encode(sha(b"k"));
    assert_eq!(parse_sha256_hex(&h), Ok(sha(b"k")));
    assert!(parse_sha256_hex(&h[..62]).is_err());
    assert!(parse_sha256_hex("zz").is_err());
}
