use super::*;
use crate::rulefile::{compile, SourceFile};
use crate::stages::{self, pipeline, STAGES};

#[test]
fn every_stage_that_reads_the_identity_comes_after_it() {
    let identity = STAGES.iter().position(|s| s.name() == "identity").unwrap();
    for (i, s) in STAGES.iter().enumerate() {
        if s.info().needs_identity {
            assert!(i > identity, "{} runs before the identity stage", s.name());
        }
    }
    let names: std::collections::HashSet<_> = STAGES.iter().map(|s| s.name()).collect();
    assert_eq!(names.len(), STAGES.len(), "stage names are unique");
    assert!(STAGES.len() <= MAX_STAGES);
}

#[test]
fn the_order_is_the_documented_one() {
    let names: Vec<_> = STAGES.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "operator_blocks",
            "firewall",
            "identity",
            "rate_limits",
            "authentication",
            "webhooks",
            "ssrf",
            "tenant_suspensions",
            "tenant_scope",
            "quotas",
            "anomaly",
        ]
    );
}

#[test]
fn a_snapshot_lists_only_the_stages_it_gives_work() {
    let empty = Snapshot::empty();
    let names: Vec<_> = pipeline(&empty).stages().map(|s| s.name()).collect();
    assert_eq!(names, ["operator_blocks", "tenant_suspensions"]);
    let text = "version: 1\nfirewall:\n  - id: fw1\n    match: { paths: [/admin] }\n";
    let snap = compile(&[SourceFile::new("r.yaml", text)]).unwrap();
    let names: Vec<_> = pipeline(&snap).stages().map(|s| s.name()).collect();
    assert_eq!(names, ["operator_blocks", "firewall", "tenant_suspensions"]);
    assert_eq!(format!("{:?}", pipeline(&snap)), "[\"operator_blocks\", \"firewall\", \"tenant_suspensions\"]");
}

#[test]
fn a_stage_sees_the_body_as_its_own_need_allows() {
    let b = b"{\"tenant\":\"a\"}";
    let whole = Read::Whole(b);
    assert_eq!(Body { read: whole, need: None }.input(), BodyInput::NotBuffered);
    assert_eq!(Body { read: Read::NotRead, need: Some(10) }.input(), BodyInput::NotBuffered);
    assert_eq!(Body { read: whole, need: Some(100) }.input(), BodyInput::Bytes(b));
    assert_eq!(Body { read: whole, need: Some(b.len() as u64) }.input(), BodyInput::Bytes(b));
    assert_eq!(Body { read: whole, need: Some(3) }.input(), BodyInput::TooLarge);
    assert_eq!(Body { read: Read::Over, need: Some(100) }.input(), BodyInput::TooLarge);
}

#[test]
fn flags_gate_the_stages_that_name_one() {
    let gated: Vec<_> = STAGES.iter().filter_map(|s| s.info().flag.map(|f| (s.name(), f.name()))).collect();
    assert_eq!(
        gated,
        [
            ("firewall", "firewall"),
            ("rate_limits", "rate_limit"),
            ("webhooks", "webhook_verification"),
            ("tenant_scope", "tenant_scope"),
        ]
    );
}

/// Runtime state for the tests: what the gateway would read from its stores.
#[derive(Default)]
struct Fake {
    blocked: Option<&'static str>,
    suspended: Vec<&'static str>,
    flags_off: Vec<Flag>,
    scoring: std::cell::RefCell<Option<Scoring>>,
    agg: Aggregator,
    book: QuotaBook,
    replay: ReplayCache,
}

impl Runtime for Fake {
    fn flag(&self, flag: Flag) -> bool {
        !self.flags_off.contains(&flag)
    }
    fn any_operator_block(&self) -> bool {
        self.blocked.is_some() || !self.suspended.is_empty()
    }
    fn blocked_address(&self, _: IpAddr) -> Option<String> {
        self.blocked.map(String::from)
    }
    fn session_revoked(&self, _: &str) -> bool {
        false
    }
    fn subject_blocked(&self, _: &str) -> bool {
        false
    }
    fn allowlisted(&self, _: &str) -> Option<bool> {
        None
    }
    fn any_suspended(&self) -> bool {
        !self.suspended.is_empty()
    }
    fn tenant_suspended(&self, tenant: &str) -> bool {
        self.suspended.contains(&tenant)
    }
    fn limiting(&self) -> Limiting<'_> {
        Limiting { now: Now::default(), agg: &self.agg, book: &self.book, fleet: None }
    }
    fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }
    fn count_webhook(&self, _: &str, _: &str, _: &str) {}
    fn score_anomaly(&self, _: &Snapshot, _: &Request<'_>, _: Option<&Identity>) -> Scoring {
        self.scoring.borrow_mut().take().unwrap_or_default()
    }
}

fn request<'a>(headers: &'a http::HeaderMap) -> Request<'a> {
    Request {
        view: RequestView {
            method: "GET",
            path: "/api/acme/orders",
            query: None,
            host: Some("a.test"),
            route: Some("api"),
            channel: None,
            client_ip: Some("203.0.113.9".parse().unwrap()),
            headers,
        },
        peer_trusted: false,
        now: 1_700_000_000,
        route_body_cap: 1024,
    }
}

/// The glue's loop, without a body and without follow-ups: the active stages in order until one
/// stops the request.
fn drive<'s>(snap: &'s Snapshot, req: &Request<'_>, rt: &dyn Runtime) -> (Run<'s>, Vec<&'static str>) {
    let mut run = Run::default();
    let mut ran = Vec::new();
    for stage in pipeline(snap).stages().filter(|s| s.active(snap, rt)) {
        ran.push(stage.name());
        let body = Body { read: Read::NotRead, need: stage.body_needed(snap, req, rt) };
        let input = Input { snapshot: snap, req, body, rt };
        if stage.check(&input, &mut run).is_break() || run.follow_up.is_some() {
            break;
        }
    }
    (run, ran)
}

#[test]
fn nothing_runs_on_a_quiet_gateway_without_rules() {
    let snap = Snapshot::empty();
    let headers = http::HeaderMap::new();
    let (run, ran) = drive(&snap, &request(&headers), &Fake::default());
    assert!(ran.is_empty());
    assert!(run.outcome.is_clean() && run.refusal.is_none());
}

#[test]
fn an_operator_address_block_stops_the_request_before_the_firewall_runs() {
    let text = "version: 1\nfirewall:\n  - id: fw1\n    mode: monitor\n    match: { paths: [/api] }\n";
    let snap = compile(&[SourceFile::new("r.yaml", text)]).unwrap();
    let headers = http::HeaderMap::new();
    let req = request(&headers);
    let blocked = Fake { blocked: Some("203.0.113.0/24"), ..Fake::default() };
    let (run, ran) = drive(&snap, &req, &blocked);
    assert_eq!(ran, ["operator_blocks"]);
    let deny = run.outcome.deny.expect("denied");
    assert_eq!(deny.deny.reason, "address_blocked");
    assert!(run.outcome.flagged.is_empty(), "the firewall never ran");

    // Without the block, the monitor rule flags and the request goes on.
    let (run, ran) = drive(&snap, &req, &Fake::default());
    assert_eq!(ran, ["firewall"]);
    assert_eq!(run.outcome.flagged.len(), 1);
    assert!(run.outcome.deny.is_none());

    // With the firewall flag off, nothing runs.
    let off = Fake { flags_off: vec![Flag::Firewall], ..Fake::default() };
    assert!(drive(&snap, &req, &off).1.is_empty());
}

#[test]
fn a_suspended_tenant_of_the_identity_is_refused() {
    let snap = Snapshot::empty();
    let headers = http::HeaderMap::new();
    let req = request(&headers);
    let rt = Fake { suspended: vec!["acme"], ..Fake::default() };
    let identity = Some(Identity {
        rule_id: "id1".into(),
        method: crate::identity::AuthMethod::ApiKey,
        subject: "u1".into(),
        tenant: Some("acme".into()),
        roles: Vec::new(),
        session: None,
        email: None,
        credential: None,
    });
    let mut run = Run { identity, ..Run::default() };
    let flow = stages::TenantSuspensions.check(
        &Input { snapshot: &snap, req: &req, body: Body { read: Read::NotRead, need: None }, rt: &rt },
        &mut run,
    );
    assert!(flow.is_break());
    assert_eq!(run.outcome.deny.map(|f| f.deny.reason), Some("tenant_suspended".into()));
}

#[test]
fn an_authentication_failure_waits_for_the_rate_limits_then_stops() {
    let snap = Snapshot::empty();
    let headers = http::HeaderMap::new();
    let req = request(&headers);
    let mut run = Run::default();
    let none = Body { read: Read::NotRead, need: None };
    assert!(stages::Authentication
        .check(&Input { snapshot: &snap, req: &req, body: none, rt: &Fake::default() }, &mut run)
        .is_continue());
    let mut f = crate::operator::address_blocked("x");
    f.event = EventType::AuthFailure;
    run.auth_failure = Some(Box::new(f));
    assert!(stages::Authentication
        .check(&Input { snapshot: &snap, req: &req, body: none, rt: &Fake::default() }, &mut run)
        .is_break());
    assert_eq!(run.outcome.deny.map(|f| f.event), Some(EventType::AuthFailure));
    assert!(run.auth_failure.is_none());
}

#[test]
fn a_webhook_stage_with_no_rule_for_the_request_does_nothing() {
    let snap = Snapshot::empty();
    let headers = http::HeaderMap::new();
    let req = request(&headers);
    let mut run = Run::default();
    // No need: no rule for this request, nothing looked up.
    let none = Body { read: Read::Over, need: None };
    assert!(stages::WebhookStage
        .check(&Input { snapshot: &snap, req: &req, body: none, rt: &Fake::default() }, &mut run)
        .is_continue());
    assert!(run.refusal.is_none() && run.outcome.is_clean());
}

#[test]
fn anomaly_scores_delay_and_a_red_zone_is_left_to_the_glue_to_contain() {
    let snap = Snapshot::empty();
    let headers = http::HeaderMap::new();
    let req = request(&headers);
    let mut amber = crate::operator::address_blocked("x");
    amber.event = EventType::AnomalyAmber;
    let mut red = amber.clone();
    red.event = EventType::AnomalyRed;
    let plan = Containment { revoke_session: true, ..Containment::default() };
    let scoring = Scoring {
        delay: Some(Duration::from_millis(250)),
        flagged: vec![amber],
        red: Some((red.clone(), Some(plan.clone()))),
    };
    let rt = Fake { scoring: std::cell::RefCell::new(Some(scoring)), ..Fake::default() };
    let mut run = Run::default();
    let none = Body { read: Read::NotRead, need: None };
    assert!(stages::AnomalyStage
        .check(&Input { snapshot: &snap, req: &req, body: none, rt: &rt }, &mut run)
        .is_continue());
    assert_eq!(run.outcome.scored.len(), 1);
    assert_eq!(run.outcome.delay, Some(Duration::from_millis(250)));
    assert!(run.outcome.deny.is_none(), "the glue adds the red finding once contained");
    match run.follow_up {
        Some(FollowUp::Contain { finding, plan: p }) => {
            assert_eq!(finding.event, EventType::AnomalyRed);
            assert_eq!(p, plan);
        }
        other => panic!("expected containment, got {other:?}"),
    }

    // A monitor red zone (no plan) is a finding at once.
    let rt = Fake {
        scoring: std::cell::RefCell::new(Some(Scoring { red: Some((red, None)), ..Scoring::default() })),
        ..Fake::default()
    };
    let mut run = Run::default();
    let _ = stages::AnomalyStage.check(&Input { snapshot: &snap, req: &req, body: none, rt: &rt }, &mut run);
    assert!(run.follow_up.is_none());
    assert_eq!(run.outcome.deny.map(|f| f.event), Some(EventType::AnomalyRed));
}
