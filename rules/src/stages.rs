//! The built-in stages of the request pipeline (see [`crate::pipeline`]): each one a unit struct
//! that adapts a rule kind's compiled rules (or the operator's runtime blocks) to
//! [`RequestCheck`]. The checks themselves stay in their kinds' modules; a stage only says what
//! the check needs and hands it over.

use crate::flag::Flag;
use crate::identity::{AuthInput, Authn};
use crate::limits::{KeyInput, LimitCheck};
use crate::operator;
use crate::pipeline::{FollowUp, Input, Read, Request, RequestCheck, Run, Runtime, StageInfo, MAX_STAGES};
use crate::rulefile::Snapshot;
use crate::tenant::{BodyInput, Principal};
use crate::verdict::EventType;
use crate::webhook::rules::Checked;
use std::ops::ControlFlow;

/// Every stage, in the order a request meets them. The order is the policy: operator blocks and
/// the firewall before anything reads a credential; rate limits before an authentication failure
/// is answered (a client guessing credentials is limited like any other); the body checks only on
/// what the head checks let through; quotas after every check (only a request that passed is
/// counted); anomaly scoring last, on what everything else let through.
pub static STAGES: &[&dyn RequestCheck] = &[
    &OperatorBlocks,
    &FirewallStage,
    &IdentityStage,
    &RateLimitStage,
    &Authentication,
    &WebhookStage,
    &SsrfStage,
    &TenantSuspensions,
    &TenantScopeStage,
    &QuotaStage,
    &AnomalyStage,
];

/// The stages of [`STAGES`] that a snapshot gives something to do (and those that act on runtime
/// state alone, such as operator blocks), in order: a set of positions in [`STAGES`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pipeline(u16);

impl Pipeline {
    /// The stages, in order.
    pub fn stages(self) -> impl Iterator<Item = &'static dyn RequestCheck> {
        STAGES.iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, s)| *s)
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.stages().map(|s| s.name())).finish()
    }
}

/// The snapshot's pipeline: worked out from its rules once, on first use, and kept in the
/// snapshot (a `OnceLock` the snapshot holds, so that `rulefile` need not know the stages: the
/// module graph stays one way, stages -> rulefile).
pub fn pipeline(snapshot: &Snapshot) -> Pipeline {
    Pipeline(*snapshot.active_stages.get_or_init(|| {
        STAGES
            .iter()
            .take(MAX_STAGES)
            .enumerate()
            .filter(|(_, s)| (s.info().present)(snapshot))
            .fold(0u16, |set, (i, _)| set | (1 << i))
    }))
}

/// Merges a rate-limit or quota answer into the run: its flagged findings, its refusal (whose
/// event may be left to the aggregator), and the headers for a passing response.
fn apply_limits(check: LimitCheck, run: &mut Run<'_>) -> ControlFlow<()> {
    for f in check.outcome.flagged {
        let _ = run.outcome.add(f);
    }
    if let Some(deny) = check.outcome.deny {
        run.deny_aggregated = !check.deny_event;
        return run.outcome.add(deny);
    }
    run.limit_headers.extend(check.headers);
    ControlFlow::Continue(())
}

/// Operator blocks and tenant suspensions are runtime state, not rules: always in the pipeline
/// (active only while some exist).
fn always(_: &Snapshot) -> bool {
    true
}

/// The operator's address blocks: they hold whatever the firewall flag says.
pub struct OperatorBlocks;

impl RequestCheck for OperatorBlocks {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("operator_blocks", &[EventType::FirewallBlock], always) }
    }
    fn active(&self, _: &Snapshot, rt: &dyn Runtime) -> bool {
        rt.any_operator_block()
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        match i.req.view.client_ip.and_then(|ip| i.rt.blocked_address(ip)) {
            Some(block) => run.outcome.add(operator::address_blocked(&block)),
            None => ControlFlow::Continue(()),
        }
    }
}

/// The request firewall ([`crate::firewall`]).
pub struct FirewallStage;

impl RequestCheck for FirewallStage {
    fn info(&self) -> &'static StageInfo {
        &const {
            StageInfo::new("firewall", &[EventType::FirewallBlock], |s| !s.firewall.is_empty()).gated_by(Flag::Firewall)
        }
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        i.snapshot.firewall.check(&i.req.view, &mut run.outcome)
    }
}

/// Who the caller is ([`crate::identity`]): verifies the credential. A failure is held for
/// [`Authentication`], after the rate limits.
pub struct IdentityStage;

impl RequestCheck for IdentityStage {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("identity", &[], |s| !s.identity.is_empty()) }
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let rt = i.rt;
        let revoked = |id: &str| rt.session_revoked(id);
        let blocked = |sub: &str| rt.subject_blocked(sub);
        let allowlisted = |k: &str| rt.allowlisted(k);
        let input = AuthInput {
            view: &i.req.view,
            peer_trusted: i.req.peer_trusted,
            now_unix: i.req.now,
            revoked: &revoked,
            blocked: &blocked,
            allowlisted: &allowlisted,
        };
        match i.snapshot.identity.authenticate(&input) {
            Authn::Verified(who) => run.identity = Some(who),
            Authn::Failed(f) => run.auth_failure = Some(f),
            Authn::NotConfigured | Authn::Anonymous => {}
        }
        ControlFlow::Continue(())
    }
}

/// Rate limits ([`crate::limits::rate`]), keyed by the verified identity (anonymous when it
/// failed).
pub struct RateLimitStage;

impl RequestCheck for RateLimitStage {
    fn info(&self) -> &'static StageInfo {
        &const {
            StageInfo::new("rate_limits", &[EventType::RateLimitHit], |s| !s.rate_limits.is_empty())
                .gated_by(Flag::RateLimit)
                .after_identity()
        }
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let l = i.rt.limiting();
        let key = KeyInput { view: &i.req.view, identity: run.identity.as_ref() };
        let check = i.snapshot.rate_limits.check_fleet(&key, l.now, l.agg, l.fleet);
        apply_limits(check, run)
    }
}

/// Answers an authentication failure held by [`IdentityStage`].
pub struct Authentication;

impl RequestCheck for Authentication {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("authentication", &[EventType::AuthFailure], |s| !s.identity.is_empty()).after_identity() }
    }
    fn check<'s>(&self, _: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        match run.auth_failure.take() {
            Some(f) => run.outcome.add(*f),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Webhook signatures ([`crate::webhook`]), over the raw body bytes.
pub struct WebhookStage;

impl RequestCheck for WebhookStage {
    fn info(&self) -> &'static StageInfo {
        const EVENTS: &[EventType] = &[EventType::WebhookInvalidSignature, EventType::FleetStoreUnavailable];
        &const { StageInfo::new("webhooks", EVENTS, |s| !s.webhooks.is_empty()).gated_by(Flag::WebhookVerification) }
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.webhooks.for_request(&req.view).map(|w| w.body_cap(req.route_body_cap))
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        // No need: no rule for this request (looked up again only when one applies).
        if i.body.need.is_none() {
            return ControlFlow::Continue(());
        }
        let Some(rule) = i.snapshot.webhooks.for_request(&i.req.view) else { return ControlFlow::Continue(()) };
        let Read::Whole(b) = i.body.read else {
            // Over the cap (declared, or found while reading), or not read: 413.
            run.refusal = Some(crate::deny::Deny::new(crate::deny::DenyCode::PayloadTooLarge, "webhook_body_over_cap"));
            return ControlFlow::Break(());
        };
        match rule.check(i.req.view.headers, b, i.req.now, i.rt.replay_cache()) {
            Checked::Accepted { secret_id, claim } => {
                run.follow_up = Some(FollowUp::WebhookAccepted { rule, secret_id, claim });
                ControlFlow::Continue(())
            }
            Checked::Refused(f) => {
                let detail = |k: &str| f.detail.get(k).and_then(|v| v.as_str()).unwrap_or("");
                i.rt.count_webhook(&rule.id, detail("reason"), detail("secret_id"));
                run.outcome.add(*f)
            }
        }
    }
}

/// The SSRF guard ([`crate::ssrf`]): query parameters, headers, form and JSON body fields.
pub struct SsrfStage;

impl RequestCheck for SsrfStage {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("ssrf", &[EventType::SsrfBlock], |s| !s.ssrf.is_empty()) }
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.ssrf.body_needed(&req.view).map(|c| c as u64)
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        i.snapshot.ssrf.check(&i.req.view, i.body.input(), &mut run.outcome)
    }
}

/// The operator's tenant suspensions: the identity's tenant, and every tenant the request
/// targets (as the tenant-scope rules read it, when they run).
pub struct TenantSuspensions;

impl RequestCheck for TenantSuspensions {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("tenant_suspensions", &[EventType::FirewallBlock], always).after_identity() }
    }
    fn active(&self, _: &Snapshot, rt: &dyn Runtime) -> bool {
        rt.any_suspended()
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, rt: &dyn Runtime) -> Option<u64> {
        if s.tenant.is_empty() || !rt.flag(Flag::TenantScope) {
            return None;
        }
        s.tenant.body_needed(&req.view).map(|c| c as u64)
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let input = match i.body.input() {
            BodyInput::TooLarge => BodyInput::NotBuffered,
            other => other,
        };
        let targets = i.snapshot.tenant.targets(&i.req.view, input);
        let identity_tenant = run.identity.as_ref().and_then(|w| w.tenant.as_deref());
        match operator::first_suspended(identity_tenant, &targets, &|t| i.rt.tenant_suspended(t)) {
            Some((t, what)) => run.outcome.add(operator::tenant_suspended(t, what)),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Tenant scope ([`crate::tenant`]): a caller authenticated for one tenant never reaches
/// another's resources.
pub struct TenantScopeStage;

impl RequestCheck for TenantScopeStage {
    fn info(&self) -> &'static StageInfo {
        &const {
            StageInfo::new("tenant_scope", &[EventType::CrossTenantAttempt], |s| !s.tenant.is_empty())
                .gated_by(Flag::TenantScope)
                .after_identity()
        }
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.tenant.body_needed(&req.view).map(|c| c as u64)
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let who = run.identity.as_ref().map(|w| Principal {
            subject: Some(w.subject.as_str()),
            tenant: w.tenant.as_deref(),
            roles: &w.roles,
        });
        i.snapshot.tenant.check(&i.req.view, who.as_ref(), i.body.input(), &mut run.outcome)
    }
}

/// Quotas ([`crate::limits::quota`]), last of the checks: only a request every other check let
/// through is counted.
pub struct QuotaStage;

impl RequestCheck for QuotaStage {
    fn info(&self) -> &'static StageInfo {
        &const { StageInfo::new("quotas", &[EventType::QuotaExceeded], |s| !s.quotas.is_empty()).after_identity() }
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let l = i.rt.limiting();
        let key = KeyInput { view: &i.req.view, identity: run.identity.as_ref() };
        let enforcement = i.rt.flag(Flag::QuotaEnforcement);
        let check = i.snapshot.quotas.check(l.book, &key, l.now, enforcement, l.agg);
        apply_limits(check, run)
    }
}

/// Anomaly zones ([`crate::anomaly`]), on what every check let through: amber is scored and
/// delays, red is contained (revoke or block) and refused.
pub struct AnomalyStage;

impl RequestCheck for AnomalyStage {
    fn info(&self) -> &'static StageInfo {
        const EVENTS: &[EventType] = &[EventType::AnomalyAmber, EventType::AnomalyRed];
        &const { StageInfo::new("anomaly", EVENTS, |s| !s.anomaly.is_empty()).after_identity() }
    }
    fn check<'s>(&self, i: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()> {
        let v = i.rt.score_anomaly(i.snapshot, i.req, run.identity.as_ref());
        for f in v.flagged {
            run.outcome.score(f);
        }
        if let Some(d) = v.delay {
            run.outcome.delay_by(d);
        }
        match v.red {
            Some((finding, Some(plan))) => {
                run.follow_up = Some(FollowUp::Contain { finding, plan });
                ControlFlow::Continue(())
            }
            Some((finding, None)) => run.outcome.add(finding),
            None => ControlFlow::Continue(()),
        }
    }
}
