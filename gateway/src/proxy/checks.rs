//! The request checks (`request_filter`): maintenance, the deny decided from the head, the
//! snapshot's stage pipeline as one loop, channel switches. The stages are pure
//! ([`portcullis_rules::pipeline`]); this module is their glue: it reads the body when a stage
//! needs it, does the asynchronous follow-ups, turns findings into events, and waits out an
//! amber delay.

use super::body::{read_body, BodyRead};
use super::{refuse, view_of, Ctx, Portcullis};
use crate::events::{RequestFacts, SecurityEvent};
use crate::state::Shared;
use crate::webhook_replay::FleetClaim;
use pingora_core::Result;
use pingora_proxy::Session;
use portcullis_rules::canon;
use portcullis_rules::deny::{Deny, DenyCode};
use portcullis_rules::flag::{Flag, FlagSet};
use portcullis_rules::identity::Identity;
use portcullis_rules::limits::Now;
use portcullis_rules::pii::PiiPolicy;
use portcullis_rules::pipeline::{
    Body, FollowUp, Input, Limiting, Read, Request, RequestCheck, Run, Runtime, Scoring, MAX_STAGES,
};
use portcullis_rules::rulefile::Snapshot;
use portcullis_rules::verdict::{Action, EventType, Finding, Mode, Outcome};
use portcullis_rules::view::RequestView;
use portcullis_rules::webhook::replay::{Claim, ReplayCache};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// An accepted webhook delivery, for `Ctx` once the loop is done.
struct Accepted {
    claim: Claim,
    secret_id: String,
    /// The claim is held in the fleet's replay cache too.
    fleet: bool,
}

/// The gateway's runtime state as the stages read it: lock-free reads of the shared state at
/// this request's clocks.
struct Live<'a> {
    sh: &'a Shared,
    /// The runtime flags, read once for the request.
    flags: FlagSet,
    now: u64,
    lnow: Now,
}

impl Runtime for Live<'_> {
    fn flag(&self, flag: Flag) -> bool {
        self.flags.contains(flag)
    }
    fn any_operator_block(&self) -> bool {
        self.sh.sessions.any_operator_block()
    }
    fn blocked_address(&self, ip: IpAddr) -> Option<String> {
        self.sh.sessions.blocked_address(ip, self.now)
    }
    fn session_revoked(&self, session: &str) -> bool {
        self.sh.sessions.is_revoked(session, self.now)
    }
    fn subject_blocked(&self, subject: &str) -> bool {
        self.sh.sessions.is_blocked(subject, self.now)
    }
    fn allowlisted(&self, key: &str) -> Option<bool> {
        self.sh.sessions.allowlisted(key)
    }
    fn any_suspended(&self) -> bool {
        self.sh.sessions.any_suspended()
    }
    fn tenant_suspended(&self, tenant: &str) -> bool {
        self.sh.sessions.is_suspended(tenant, self.now)
    }
    fn limiting(&self) -> Limiting<'_> {
        Limiting {
            now: self.lnow,
            agg: &self.sh.limits.agg,
            book: &self.sh.limits.book,
            fleet: self.sh.fleet.as_deref().map(|f| (&f.rates, crate::fleet_limits::unix_ms())),
        }
    }
    fn replay_cache(&self) -> &ReplayCache {
        &self.sh.webhooks.replay
    }
    fn count_webhook(&self, rule: &str, result: &str, secret_id: &str) {
        self.sh.webhooks.count(rule, result, secret_id);
    }
    fn score_anomaly(&self, snapshot: &Snapshot, req: &Request<'_>, who: Option<&Identity>) -> Scoring {
        let v = &req.view;
        let now_ms = crate::fleet_limits::unix_ms();
        self.sh.anomaly.score(snapshot.anomaly.rules(), v.route, v.path, who, v.client_ip, now_ms)
    }
}

impl Portcullis {
    /// `request_filter`: maintenance, a deny decided from the head, the snapshot's stage
    /// pipeline, channel switches; then the way the request goes out (Pingora's path, or the
    /// gateway's own exchange for a response that may have to be withheld whole).
    pub(super) async fn request_phase(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.arm_body_deadline(session, ctx);
        // Maintenance first: every proxied request, whatever it is, unless the team's bypass.
        if let Some(deny) = self.maintenance(session, ctx) {
            return refuse(session, ctx, &deny, deny.reason.clone()).await;
        }
        // A refused request's body is never read (or only partly): every refusal closes the
        // connection so nothing of it is parsed as a next request.
        if let Some(deny) = ctx.verdict.take_pending() {
            return refuse(session, ctx, &deny, deny.reason.clone()).await;
        }
        let (outcome, refusal) = self.request_checks(session, ctx).await?;
        if let Some(f) = &outcome.deny {
            return refuse(session, ctx, &f.deny, format!("{}:{}", f.deny.reason, f.rule_id)).await;
        }
        if let Some(deny) = refusal {
            return refuse(session, ctx, &deny, deny.reason.clone()).await;
        }
        if self.channel_disabled(session, ctx) {
            let deny = Deny::new(DenyCode::ChannelDisabled, "channel_switch");
            return refuse(session, ctx, &deny, deny.reason.clone()).await;
        }
        // A response that may have to be withheld whole is fetched here, not by Pingora (which
        // writes the response head before any body filter could decide); so is a request whose
        // body was read whole but cannot be handed to Pingora.
        if ctx.fetch_self || !ctx.rules.snapshot.pii.is_empty() {
            let policy = self.pii_policy(&ctx.rules, ctx);
            // After a protocol switch (WebSocket, h2c, a CONNECT tunnel) nothing is an HTTP
            // response a PII rule could scan: refused on its routes unless the rule allows it;
            // an allowed one takes Pingora's path (which relays upgrades), never the held one.
            if let Some(p) = policy {
                let req = session.req_header();
                if let Some(why) = portcullis_rules::pii::upgrade_requested(req.method.as_str(), &req.headers) {
                    if p.allow_upgrade {
                        return Ok(false);
                    }
                    let summary = p.upgrade_refused(why);
                    self.report_pii(session, ctx, p, &summary, 0);
                    let deny = summary.finding.deny;
                    let reason = format!("{}:{}:{why}", deny.reason, p.id);
                    return refuse(session, ctx, &deny, reason).await;
                }
            }
            if ctx.fetch_self || policy.is_some_and(PiiPolicy::needs_buffering) {
                // The exchange writes to `ctx` while it reads the policy: it gets its own
                // reference to the pinned rules (an `Arc` clone, on this path only).
                let scanned = policy.is_some();
                let rules = Arc::clone(&ctx.rules);
                let policy = if scanned { self.route_pii_policy(&rules, ctx) } else { None };
                // Boxed: the held exchange's state is kilobytes, and Pingora boxes this filter's
                // future on every request (async_trait), moving all of it for requests that
                // never take this path (7.7k instructions per request in S2, benches/README.md).
                return Box::pin(self.exchange(session, ctx, policy)).await;
            }
        }
        Ok(false)
    }

    /// `fleet.webhook_replay_fallback: closed`.
    fn fleet_webhook_closed(&self) -> bool {
        self.shared.fleet.as_ref().is_some_and(|f| f.cfg.webhook_closed)
    }

    /// The fleet's replay cache did not answer: logged, counted by the caller, and one
    /// `fleet_store_unavailable` event a minute at most (`fallback`: `local` or `refused`).
    fn fleet_unavailable(&self, why: &str, fallback: &str, now: u64) {
        tracing::warn!(error = %why, fallback, "fleet webhook replay cache unreachable within its budget");
        if self.shared.fleet.as_ref().is_some_and(|f| f.unavailable_event_due(now)) {
            let mut detail = serde_json::Map::new();
            detail.insert("component".into(), "webhook_replay".into());
            detail.insert("fallback".into(), fallback.into());
            detail.insert("error".into(), why.chars().take(200).collect::<String>().into());
            let rules = self.shared.rules.current().snapshot.version.clone();
            self.shared.events.emit(SecurityEvent::system(
                EventType::FleetStoreUnavailable,
                portcullis_rules::verdict::Action::Flagged,
                Some(&rules),
                detail,
            ));
        }
    }
}

impl Portcullis {
    /// Maintenance mode, unless the client is in a bypass CIDR or sends the bypass secret.
    fn maintenance(&self, session: &Session, ctx: &Ctx) -> Option<Deny> {
        let retry_after = self.shared.switches.maintenance(crate::clock::now_unix())?;
        let header = self
            .shared
            .config
            .maintenance_bypass_header
            .as_ref()
            .map(|(name, _)| name.as_str())
            .and_then(|h| session.req_header().headers.get(h));
        if self.shared.bypass.allows(ctx.client_ip, header.map(|v| v.as_bytes())) {
            return None;
        }
        Some(Deny::new(DenyCode::Maintenance, "maintenance_mode").retry_after(retry_after))
    }

    /// The matched route's channel is switched off. Defence in depth: the canonical path is also
    /// compared, ignoring ASCII case, with the prefixes of every route whose channel is off **and
    /// whose hosts include the request's host**, so no spelling reaches a killed channel's path
    /// through another route of the same host (e.g. a host-specific catch-all that outranks it),
    /// while a channel scoped to `admin.example.com` leaves every other host alone.
    fn channel_disabled(&self, session: &Session, ctx: &Ctx) -> bool {
        let sw = &self.shared.switches;
        if !sw.any_channel_off() {
            return false;
        }
        if let Some(ch) = self.route(ctx).and_then(|r| r.channel.as_deref()) {
            if !sw.channel_enabled(ch) {
                return true;
            }
        }
        let path = session.req_header().uri.path();
        let host = ctx.host.as_deref();
        self.shared.config.routes.entries().iter().any(|e| {
            e.value.channel.as_deref().is_some_and(|ch| !sw.channel_enabled(ch))
                && e.matches_host(host)
                && canon::has_prefix_ignore_case(path, &e.prefix)
        })
    }

    /// The snapshot's stage pipeline ([`portcullis_rules::pipeline`]), in its order: each
    /// stage that is active now (flag on, runtime blocks present) checks the borrowed view and
    /// pushes findings into one `Outcome`, which applies each rule's mode: the first enforcing
    /// finding stops the loop. A body the stages need is read whole first (once, up to the
    /// largest need of the stages still to run): nothing is forwarded before every check has
    /// passed. What a stage hands back as a follow-up (a fleet claim, containment) is done here
    /// before the next stage runs. Each finding becomes one event; an enforced cross-tenant
    /// attempt also triggers its rule's containment. Returns the outcome and a refusal that is no
    /// rule's finding.
    async fn request_checks(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(Outcome, Option<Deny>)> {
        // The stages keep references into the pinned snapshot across the body read (which writes
        // to `ctx`): the loop holds its own reference to it, an `Arc` clone.
        let rules = Arc::clone(&ctx.rules);
        let snapshot = &rules.snapshot;
        let mut rt = Live { sh: &self.shared, flags: self.shared.switches.flags(), now: 0, lnow: Now::default() };
        let mut plan: [Option<&dyn RequestCheck>; MAX_STAGES] = [None; MAX_STAGES];
        let mut n = 0;
        for stage in portcullis_rules::stages::pipeline(snapshot).stages().filter(|s| s.active(snapshot, &rt)) {
            if let Some(slot) = plan.get_mut(n) {
                *slot = Some(stage);
                n += 1;
            }
        }
        if n == 0 {
            return Ok((Outcome::default(), None));
        }
        let now = crate::clock::now_unix();
        (rt.now, rt.lnow) = (now, self.shared.limits.now());
        let rt = rt;
        let route = self.route(ctx);
        let route_cap = route.map_or(0, |r| r.max_body_bytes);
        let peer_trusted = ctx.peer_trusted;

        // The view, once; again only after the body is read (the read needs the session).
        let mut req = Request {
            view: view_of(session.req_header(), ctx.host.as_deref(), ctx.client_ip, route),
            peer_trusted,
            now,
            route_body_cap: route_cap,
        };
        let mut needs: [Option<u64>; MAX_STAGES] = [None; MAX_STAGES];
        for (need, stage) in needs.iter_mut().zip(plan.iter().flatten()) {
            *need = stage.body_needed(snapshot, &req, &rt);
        }
        let mut run = Run::default();
        let mut accepted: Option<Accepted> = None;
        let mut body: Option<BodyRead> = None;
        for (i, stage) in plan.iter().flatten().enumerate() {
            let need = needs.get(i).copied().flatten();
            if need.is_some() && body.is_none() {
                // Never more than the route takes (the streaming cap check does not see this body).
                let cap = needs.get(i..n).into_iter().flatten().flatten().max().copied().unwrap_or(0);
                let deadline = Instant::now() + self.body_time_left(ctx);
                body = Some(read_body(session, ctx, cap.min(route_cap), true, deadline).await?);
                req = Request {
                    view: view_of(session.req_header(), ctx.host.as_deref(), ctx.client_ip, route),
                    peer_trusted,
                    now,
                    route_body_cap: route_cap,
                };
            }
            let read = match &body {
                None => Read::NotRead,
                Some(BodyRead::Complete(b) | BodyRead::NotReplayable(b)) => Read::Whole(b),
                Some(BodyRead::DeclaredTooLarge | BodyRead::StreamedTooLarge) => Read::Over,
            };
            let mut flow = stage.check(&Input { snapshot, req: &req, body: Body { read, need }, rt: &rt }, &mut run);
            if let Some(f) = run.follow_up.take() {
                flow = self.follow_up(f, &mut run, ctx, now, &mut accepted).await;
            }
            if flow.is_break() {
                break;
            }
        }

        let Run { outcome, mut refusal, identity, limit_headers, deny_aggregated, .. } = run;
        ctx.identity = identity;
        ctx.limit_headers = limit_headers;
        ctx.deny_event_aggregated = deny_aggregated;
        if let Some(a) = accepted {
            ctx.webhook_claim = Some(a.claim);
            ctx.webhook_secret = Some(a.secret_id);
            ctx.webhook_fleet = a.fleet;
        }
        if !outcome.is_clean() {
            let containment = self.contain(&outcome, ctx, now).await;
            self.emit_findings(&req.view, ctx, &outcome, containment);
        }
        // Amber: the request waits on a timer before it is forwarded (a bounded number at once).
        if let (Some(d), None) = (outcome.delay, &outcome.deny) {
            if let Some(_slot) = self.shared.anomaly.slot() {
                tokio::time::sleep(d).await;
            }
        }
        // A body partly consumed by a check cannot be forwarded whole, even if only a monitor
        // rule looked at it: refuse it rather than send the upstream a truncated body. One read
        // whole that Pingora cannot forward goes out through the gateway's own exchange.
        if outcome.deny.is_none() && refusal.is_none() {
            match body {
                Some(BodyRead::StreamedTooLarge) => {
                    refusal = Some(Deny::new(DenyCode::PayloadTooLarge, "body_over_check_cap"));
                }
                Some(BodyRead::NotReplayable(b)) => {
                    ctx.replay_body = Some(b);
                    ctx.fetch_self = true;
                }
                _ => {}
            }
        }
        Ok((outcome, refusal))
    }

    /// Does what a stage left to the glue; the flow from there.
    async fn follow_up(
        &self,
        f: FollowUp<'_>,
        run: &mut Run<'_>,
        ctx: &Ctx,
        now: u64,
        accepted: &mut Option<Accepted>,
    ) -> ControlFlow<()> {
        match f {
            FollowUp::WebhookAccepted { rule, secret_id, claim } => {
                let hooks = &self.shared.webhooks;
                // Fleet mode: another instance may have accepted it (see webhooks.rs).
                let fleet = match &self.shared.fleet {
                    None => FleetClaim::Claimed,
                    Some(f) => crate::webhook_replay::fleet_claim(f, &claim, now).await,
                };
                match fleet {
                    FleetClaim::Replayed => {
                        hooks.replay.release(&claim);
                        hooks.count(&rule.id, "replayed", &secret_id);
                        run.outcome.add(rule.replayed_in_fleet(&secret_id))
                    }
                    FleetClaim::Unavailable(why) if self.fleet_webhook_closed() => {
                        hooks.replay.release(&claim);
                        hooks.count(&rule.id, "fleet_store_unavailable", &secret_id);
                        self.fleet_unavailable(&why, "refused", now);
                        run.refusal = Some(
                            Deny::new(DenyCode::StoreUnavailable, "webhook_replay_store")
                                .with_details(vec!["the fleet's replay cache is unreachable: deliveries are refused until it is back (fleet.webhook_replay_fallback: closed)".into()]),
                        );
                        ControlFlow::Break(())
                    }
                    other => {
                        let fleet = if let FleetClaim::Unavailable(why) = other {
                            self.fleet_unavailable(&why, "local", now);
                            false
                        } else {
                            self.shared.fleet.is_some()
                        };
                        hooks.count(&rule.id, crate::webhook_replay::ACCEPTED, &secret_id);
                        *accepted = Some(Accepted { claim, secret_id, fleet });
                        ControlFlow::Continue(())
                    }
                }
            }
            FollowUp::Contain { mut finding, plan } => {
                let who = run.identity.as_ref();
                crate::containment::anomaly_red(
                    &self.shared,
                    &mut finding,
                    plan,
                    who,
                    &ctx.request_id,
                    ctx.client_ip,
                    now,
                )
                .await;
                run.outcome.add(finding)
            }
        }
    }

    /// Runs the containment of an enforced cross-tenant finding's rule: revoke the session, block
    /// the subject, switch maintenance on; each persisted, audited and evented before the deny is
    /// answered. Returns what was done, for the finding's event.
    async fn contain(&self, outcome: &Outcome, ctx: &Ctx, now: u64) -> Vec<serde_json::Value> {
        let Some(f) = outcome.deny.as_ref().filter(|f| f.event == EventType::CrossTenantAttempt) else {
            return Vec::new();
        };
        let Some(plan) = ctx.rules.snapshot.tenant.containment(&f.rule_id).cloned() else {
            return Vec::new();
        };
        let job = crate::containment::Job {
            shared: self.shared.clone(),
            plan,
            rule_id: f.rule_id.to_string(),
            actor: "containment",
            reason: crate::containment::REASON,
            session: ctx.identity.as_ref().and_then(|i| i.session.clone()),
            subject: ctx.identity.as_ref().map(|i| i.subject.clone()),
            request_id: ctx.request_id.clone(),
            client_ip: ctx.client_ip,
            now,
        };
        tokio::task::spawn_blocking(move || job.run()).await.unwrap_or_default()
    }

    /// One security event per finding (see [`Portcullis::event_for`]).
    fn emit_findings(&self, view: &RequestView<'_>, ctx: &Ctx, outcome: &Outcome, containment: Vec<serde_json::Value>) {
        // Scoring rules below their blocking zone (amber) let the request through: `flagged`,
        // whatever the rule's mode.
        for f in &outcome.scored {
            let mut ev = self.event_for(view, ctx, f);
            ev.action = Action::Flagged;
            self.shared.events.emit(ev);
        }
        for f in outcome.flagged.iter().chain(outcome.deny.as_ref()) {
            if ctx.deny_event_aggregated && is_the_deny(f, outcome) {
                continue; // counted by the aggregator; its window's summary reports it
            }
            let mut ev = self.event_for(view, ctx, f);
            if !containment.is_empty() && is_the_deny(f, outcome) {
                ev.detail.insert("containment".into(), serde_json::Value::Array(containment.clone()));
            }
            self.shared.events.emit(ev);
        }
    }

    /// The event of a finding; the core, not the check, builds it, from the same view the checks
    /// read and the verified identity.
    pub(super) fn event_for(&self, view: &RequestView<'_>, ctx: &Ctx, f: &Finding) -> SecurityEvent {
        let who = ctx.identity.as_ref();
        let detail_str = |k: &str| f.detail.get(k).and_then(|v| v.as_str());
        let facts = RequestFacts {
            request_id: &ctx.request_id,
            client_ip: view.client_ip,
            method: view.method,
            path: view.path,
            route: view.route,
            channel: view.channel,
            tenant: who.and_then(|i| i.tenant.as_deref()).or_else(|| detail_str("tenant")),
            target_tenant: detail_str("target_tenant"),
            subject: who.map(|i| i.subject.as_str()).or_else(|| detail_str("subject")),
        };
        let mut ev = SecurityEvent::from_finding(f, &facts, &ctx.rules.snapshot.version);
        // The session the request ran under (an identity failure's finding names it already):
        // the runbook's way from an event to the session's whole request history.
        if let Some(session) = who.and_then(|i| i.session.as_deref()) {
            ev.detail.entry("session").or_insert_with(|| session.into());
        }
        ev
    }
}

fn is_the_deny(f: &Finding, outcome: &Outcome) -> bool {
    f.mode == Mode::Enforce && outcome.deny.as_ref().is_some_and(|d| std::ptr::eq(d, f))
}
