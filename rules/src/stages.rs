//! The built-in stages of the request pipeline (see [`crate::pipeline`]): each one a unit struct
//! that adapts a rule kind's compiled rules (or the operator's runtime blocks) to
//! [`RequestCheck`]. The checks themselves stay in their kinds' modules; a stage only says what
//! the check needs and hands it over.

use crate::flag::Flag;
use crate::identity::{AuthInput, Authn};
use crate::limits::{KeyInput, LimitCheck};
use crate::operator;
use crate::pipeline::{Body, FollowUp, Read, Request, RequestCheck, Run, Runtime};
use crate::rulefile::Snapshot;
use crate::tenant::{BodyInput, Principal};
use crate::verdict::{EventType, Outcome};
use crate::webhook::rules::Checked;
use std::ops::ControlFlow;

/// Merges a rate-limit or quota answer into the run: its flagged findings, its refusal (whose
/// event may be left to the aggregator), and the headers for a passing response.
fn apply_limits(check: LimitCheck, run: &mut Run<'_>) -> ControlFlow<()> {
    let out: &mut Outcome = &mut run.outcome;
    for f in check.outcome.flagged {
        let _ = out.add(f);
    }
    if let Some(deny) = check.outcome.deny {
        run.deny_aggregated = !check.deny_event;
        return out.add(deny);
    }
    run.limit_headers.extend(check.headers);
    ControlFlow::Continue(())
}

/// The operator's address blocks: they hold whatever the firewall flag says.
pub struct OperatorBlocks;

impl RequestCheck for OperatorBlocks {
    fn name(&self) -> &'static str {
        "operator_blocks"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::FirewallBlock]
    }
    fn present(&self, _: &Snapshot) -> bool {
        true // runtime state, not rules
    }
    fn active(&self, _: &Snapshot, rt: &dyn Runtime) -> bool {
        rt.any_operator_block()
    }
    fn check<'s>(
        &self,
        _: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        match req.view.client_ip.and_then(|ip| rt.blocked_address(ip)) {
            Some(block) => run.outcome.add(operator::address_blocked(&block)),
            None => ControlFlow::Continue(()),
        }
    }
}

/// The request firewall ([`crate::firewall`]).
pub struct FirewallStage;

impl RequestCheck for FirewallStage {
    fn name(&self) -> &'static str {
        "firewall"
    }
    fn flag(&self) -> Option<Flag> {
        Some(Flag::Firewall)
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::FirewallBlock]
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.firewall.is_empty()
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        _: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        s.firewall.check(&req.view, &mut run.outcome)
    }
}

/// Who the caller is ([`crate::identity`]): verifies the credential. A failure is held for
/// [`Authentication`], after the rate limits.
pub struct IdentityStage;

impl RequestCheck for IdentityStage {
    fn name(&self) -> &'static str {
        "identity"
    }
    fn events(&self) -> &'static [EventType] {
        &[]
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.identity.is_empty()
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let revoked = |id: &str| rt.session_revoked(id);
        let blocked = |sub: &str| rt.subject_blocked(sub);
        let allowlisted = |k: &str| rt.allowlisted(k);
        let input = AuthInput {
            view: &req.view,
            peer_trusted: req.peer_trusted,
            now_unix: req.now,
            revoked: &revoked,
            blocked: &blocked,
            allowlisted: &allowlisted,
        };
        match s.identity.authenticate(&input) {
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
    fn name(&self) -> &'static str {
        "rate_limits"
    }
    fn flag(&self) -> Option<Flag> {
        Some(Flag::RateLimit)
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::RateLimitHit]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.rate_limits.is_empty()
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let l = rt.limiting();
        let key = KeyInput { view: &req.view, identity: run.identity.as_ref() };
        let check = s.rate_limits.check_fleet(&key, l.now, l.agg, l.fleet);
        apply_limits(check, run)
    }
}

/// Answers an authentication failure held by [`IdentityStage`].
pub struct Authentication;

impl RequestCheck for Authentication {
    fn name(&self) -> &'static str {
        "authentication"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::AuthFailure]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.identity.is_empty()
    }
    fn check<'s>(
        &self,
        _: &'s Snapshot,
        _: &Request<'_>,
        _: Body<'_>,
        _: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        match run.auth_failure.take() {
            Some(f) => run.outcome.add(*f),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Webhook signatures ([`crate::webhook`]), over the raw body bytes.
pub struct WebhookStage;

impl RequestCheck for WebhookStage {
    fn name(&self) -> &'static str {
        "webhooks"
    }
    fn flag(&self) -> Option<Flag> {
        Some(Flag::WebhookVerification)
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::WebhookInvalidSignature, EventType::FleetStoreUnavailable]
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.webhooks.is_empty()
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.webhooks.for_request(&req.view).map(|w| w.body_cap(req.route_body_cap))
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        body: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        // No need: no rule for this request (the lookup is done again only when one applies).
        if body.need.is_none() {
            return ControlFlow::Continue(());
        }
        let Some(rule) = s.webhooks.for_request(&req.view) else { return ControlFlow::Continue(()) };
        let Read::Whole(b) = body.read else {
            // Over the cap (declared, or found while reading), or not read: 413.
            run.refusal = Some(crate::deny::Deny::new(crate::deny::DenyCode::PayloadTooLarge, "webhook_body_over_cap"));
            return ControlFlow::Break(());
        };
        match rule.check(req.view.headers, b, req.now, rt.replay_cache()) {
            Checked::Accepted { secret_id, claim } => {
                run.follow_up = Some(FollowUp::WebhookAccepted { rule, secret_id, claim });
                ControlFlow::Continue(())
            }
            Checked::Refused(f) => {
                let detail = |k: &str| f.detail.get(k).and_then(|v| v.as_str()).unwrap_or("");
                rt.count_webhook(&rule.id, detail("reason"), detail("secret_id"));
                run.outcome.add(*f)
            }
        }
    }
}

/// The SSRF guard ([`crate::ssrf`]): query parameters, headers, form and JSON body fields.
pub struct SsrfStage;

impl RequestCheck for SsrfStage {
    fn name(&self) -> &'static str {
        "ssrf"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::SsrfBlock]
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.ssrf.is_empty()
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.ssrf.body_needed(&req.view).map(|c| c as u64)
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        body: Body<'_>,
        _: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        s.ssrf.check(&req.view, body.input(), &mut run.outcome)
    }
}

/// The tenant scope's body need, when the tenant-scope flag lets it run.
fn tenant_body(s: &Snapshot, req: &Request<'_>, rt: &dyn Runtime) -> Option<u64> {
    if s.tenant.is_empty() || !rt.flag(Flag::TenantScope) {
        return None;
    }
    s.tenant.body_needed(&req.view).map(|c| c as u64)
}

/// The operator's tenant suspensions: the identity's tenant, and every tenant the request
/// targets (as the tenant-scope rules read it).
pub struct TenantSuspensions;

impl RequestCheck for TenantSuspensions {
    fn name(&self) -> &'static str {
        "tenant_suspensions"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::FirewallBlock]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, _: &Snapshot) -> bool {
        true // runtime state, not rules
    }
    fn active(&self, _: &Snapshot, rt: &dyn Runtime) -> bool {
        rt.any_suspended()
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, rt: &dyn Runtime) -> Option<u64> {
        tenant_body(s, req, rt)
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        body: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let input = match body.input() {
            BodyInput::TooLarge => BodyInput::NotBuffered,
            other => other,
        };
        let targets = s.tenant.targets(&req.view, input);
        let identity_tenant = run.identity.as_ref().and_then(|i| i.tenant.as_deref());
        match operator::first_suspended(identity_tenant, &targets, &|t| rt.tenant_suspended(t)) {
            Some((t, what)) => run.outcome.add(operator::tenant_suspended(t, what)),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Tenant scope ([`crate::tenant`]): a caller authenticated for one tenant never reaches
/// another's resources.
pub struct TenantScopeStage;

impl RequestCheck for TenantScopeStage {
    fn name(&self) -> &'static str {
        "tenant_scope"
    }
    fn flag(&self) -> Option<Flag> {
        Some(Flag::TenantScope)
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::CrossTenantAttempt]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.tenant.is_empty()
    }
    fn body_needed(&self, s: &Snapshot, req: &Request<'_>, _: &dyn Runtime) -> Option<u64> {
        s.tenant.body_needed(&req.view).map(|c| c as u64)
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        body: Body<'_>,
        _: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let input = body.input();
        let who = run.identity.as_ref().map(|i| Principal {
            subject: Some(i.subject.as_str()),
            tenant: i.tenant.as_deref(),
            roles: &i.roles,
        });
        s.tenant.check(&req.view, who.as_ref(), input, &mut run.outcome)
    }
}

/// Quotas ([`crate::limits::quota`]), last of the checks: only a request every other check let
/// through is counted.
pub struct QuotaStage;

impl RequestCheck for QuotaStage {
    fn name(&self) -> &'static str {
        "quotas"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::QuotaExceeded]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.quotas.is_empty()
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let l = rt.limiting();
        let input = KeyInput { view: &req.view, identity: run.identity.as_ref() };
        let enforcement = rt.flag(Flag::QuotaEnforcement);
        let check = s.quotas.check(l.book, &input, l.now, enforcement, l.agg);
        apply_limits(check, run)
    }
}

/// Anomaly zones ([`crate::anomaly`]), on what every check let through: amber is scored and
/// delays, red is contained (revoke or block) and refused.
pub struct AnomalyStage;

impl RequestCheck for AnomalyStage {
    fn name(&self) -> &'static str {
        "anomaly"
    }
    fn events(&self) -> &'static [EventType] {
        &[EventType::AnomalyAmber, EventType::AnomalyRed]
    }
    fn needs_identity(&self) -> bool {
        true
    }
    fn present(&self, s: &Snapshot) -> bool {
        !s.anomaly.is_empty()
    }
    fn check<'s>(
        &self,
        s: &'s Snapshot,
        req: &Request<'_>,
        _: Body<'_>,
        rt: &dyn Runtime,
        run: &mut Run<'s>,
    ) -> ControlFlow<()> {
        let v = rt.score_anomaly(s, req, run.identity.as_ref());
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
