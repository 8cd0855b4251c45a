//! The request-check pipeline: every check that decides whether a request is forwarded, as one
//! ordered list of stages held by the compiled [`Snapshot`].
//!
//! A stage is a [`RequestCheck`]: it says what it needs (the head only, the body up to a cap, the
//! verified identity), which runtime [`Flag`] turns it off, which events its findings become
//! ([`StageInfo`]), and checks the borrowed [`RequestView`], pushing findings into the request's
//! [`Outcome`]. The gateway's Pingora glue loops over the snapshot's pipeline
//! ([`crate::stages::pipeline`]): it reads the body once when a stage
//! needs it, calls each stage in order until one denies, and does the asynchronous work a stage
//! hands back as a [`FollowUp`] (a fleet round trip, containment) before the next stage runs.
//!
//! What the checks read besides the request and the snapshot (operator blocks, revocations,
//! limiter counters, the replay cache, anomaly scores) is the gateway's runtime state, reached
//! through [`Runtime`]; stages stay pure over what they are given.
//!
//! Adding a rule kind: its module implements [`RequestCheck`] for a unit struct and the struct is
//! registered once in [`crate::stages::STAGES`], at its place in the order (see `docs/architecture.md`).

use crate::deny::Deny;
use crate::flag::Flag;
use crate::identity::Identity;
use crate::limits::{Aggregator, FleetShares, Now, QuotaBook};
use crate::rulefile::Snapshot;
use crate::tenant::{BodyInput, Containment};
use crate::verdict::{EventType, Finding, Outcome};
use crate::view::RequestView;
use crate::webhook::replay::{Claim, ReplayCache};
use crate::webhook::rules::WebhookRule;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::Duration;

/// The most stages a pipeline holds (the glue plans a request on the stack).
pub const MAX_STAGES: usize = 16;

/// What a stage is: its name, the runtime flag that turns it off, the events its findings
/// become, whether it reads the verified identity, and whether a snapshot gives it work.
#[derive(Debug, Clone, Copy)]
pub struct StageInfo {
    /// Stable name, e.g. `firewall`: logs, docs and tests.
    pub name: &'static str,
    /// The runtime flag that turns the stage off, if any.
    pub flag: Option<Flag>,
    /// The event types its findings become.
    pub events: &'static [EventType],
    /// It reads the verified identity: it must come after the identity stage.
    pub needs_identity: bool,
    /// Whether the snapshot gives it anything to do (asked once, when the snapshot is compiled:
    /// a stage without rules is not in the snapshot's pipeline, [`crate::stages::pipeline`]).
    pub present: fn(&Snapshot) -> bool,
}

impl StageInfo {
    /// A stage named `name` whose findings become `events`, present when `present` says so.
    pub const fn new(name: &'static str, events: &'static [EventType], present: fn(&Snapshot) -> bool) -> Self {
        StageInfo { name, flag: None, events, needs_identity: false, present }
    }

    /// Turned off with `flag`.
    pub const fn gated_by(self, flag: Flag) -> Self {
        StageInfo { flag: Some(flag), ..self }
    }

    /// Reads the verified identity.
    pub const fn after_identity(self) -> Self {
        StageInfo { needs_identity: true, ..self }
    }
}

/// What a stage's check is given: the snapshot, the request, the body as far as it asked for it,
/// and the runtime state.
#[derive(Clone, Copy)]
pub struct Input<'a, 's> {
    /// The pinned rules.
    pub snapshot: &'s Snapshot,
    /// The request.
    pub req: &'a Request<'a>,
    /// The body, with this stage's need.
    pub body: Body<'a>,
    /// The gateway's runtime state.
    pub rt: &'a dyn Runtime,
}

/// One check of the request path. Implementations are unit structs: everything they read comes
/// from the [`Input`].
pub trait RequestCheck: Sync {
    /// What the stage is.
    fn info(&self) -> &'static StageInfo;

    /// Its name.
    fn name(&self) -> &'static str {
        self.info().name
    }

    /// Whether it runs now: by default, unless its flag is off.
    fn active(&self, _snapshot: &Snapshot, rt: &dyn Runtime) -> bool {
        self.info().flag.is_none_or(|f| rt.flag(f))
    }

    /// How much of the body it needs for this request (bytes), or `None` for the head only. The
    /// glue reads the body once, before the first stage that needs it, up to the largest need of
    /// the stages still to run (never more than the route takes).
    fn body_needed(&self, _snapshot: &Snapshot, _req: &Request<'_>, _rt: &dyn Runtime) -> Option<u64> {
        None
    }

    /// The check. Pushes findings into `run.outcome` (whose mode rules apply: `Break` once a
    /// finding enforces); may record what later stages or the glue need in `run`.
    fn check<'s>(&self, input: &Input<'_, 's>, run: &mut Run<'s>) -> ControlFlow<()>;
}

/// The request as every stage sees it: the borrowed view and what the glue determined once.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The borrowed view.
    pub view: RequestView<'a>,
    /// The TCP peer is a trusted proxy (its identity headers are believed).
    pub peer_trusted: bool,
    /// Unix seconds, read once per request.
    pub now: u64,
    /// The route's `max_body_bytes`: no body need exceeds it.
    pub route_body_cap: u64,
}

/// The request body, as far as the glue read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read<'a> {
    /// Not read: no stage so far needed it.
    NotRead,
    /// Read whole (possibly empty).
    Whole(&'a [u8]),
    /// Over the cap it was read with (declared, or found while reading): not available.
    Over,
}

/// The body as one stage gets it: what was read, and what the stage said it needs
/// ([`RequestCheck::body_needed`], asked once per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body<'a> {
    /// What the glue read.
    pub read: Read<'a>,
    /// The stage's need for this request.
    pub need: Option<u64>,
}

impl<'a> Body<'a> {
    /// The body as the stage sees it: not buffered for it, too large for it, or whole.
    pub fn input(self) -> BodyInput<'a> {
        match (self.read, self.need) {
            (Read::NotRead, _) | (_, None) => BodyInput::NotBuffered,
            (Read::Whole(b), Some(cap)) if b.len() as u64 <= cap => BodyInput::Bytes(b),
            (Read::Whole(_) | Read::Over, Some(_)) => BodyInput::TooLarge,
        }
    }
}

/// What one request's stages decided so far.
#[derive(Debug, Default)]
pub struct Run<'s> {
    /// The findings: every flagged one, the first enforcing deny, scores and a delay.
    pub outcome: Outcome,
    /// A refusal that is no rule's finding (a body over a check's cap, a store that cannot
    /// answer): answered like a deny, with no event.
    pub refusal: Option<Deny>,
    /// The verified caller (set by the identity stage).
    pub identity: Option<Identity>,
    /// An authentication failure held until the rate limits have run.
    pub auth_failure: Option<Box<Finding>>,
    /// `RateLimit-Policy` / `RateLimit` for a response that passed the limits.
    pub limit_headers: Vec<(&'static str, String)>,
    /// The deny is a rate-limit or quota refusal whose event the aggregator counted instead.
    pub deny_aggregated: bool,
    /// Asynchronous work the glue does before the next stage runs.
    pub follow_up: Option<FollowUp<'s>>,
}

/// Work a stage leaves to the glue: it needs the network or the state store.
#[derive(Debug)]
pub enum FollowUp<'s> {
    /// A webhook delivery accepted here: in fleet mode, another instance may have accepted it;
    /// the glue claims it fleet-wide, and refuses or records it.
    WebhookAccepted {
        /// The rule that verified it.
        rule: &'s WebhookRule,
        /// The secret whose MAC matched.
        secret_id: String,
        /// The local replay-cache claim.
        claim: Claim,
    },
    /// An enforcing scoring rule reached its blocking zone: the glue runs the containment (which
    /// notes what it did in the finding), then adds the finding.
    Contain {
        /// The finding, added to the outcome once contained.
        finding: Finding,
        /// What to do.
        plan: Containment,
    },
}

/// What anomaly scoring (runtime state: the per-key scores) said about one request.
#[derive(Debug, Default)]
pub struct Scoring {
    /// Wait this long before forwarding (amber, enforced).
    pub delay: Option<Duration>,
    /// Findings for amber zones (reported `flagged`).
    pub flagged: Vec<Finding>,
    /// A red zone: the finding, and what its rule does (`None`: monitor).
    pub red: Option<(Finding, Option<Containment>)>,
}

/// The limiter state the rate-limit and quota stages count in.
#[derive(Clone, Copy)]
pub struct Limiting<'a> {
    /// The two clocks, read once per request.
    pub now: Now,
    /// The aggregator of rate-limit and quota events.
    pub agg: &'a Aggregator,
    /// Quota counters.
    pub book: &'a QuotaBook,
    /// Fleet mode: the fleet's shares of every rate limit, and the Unix time in milliseconds.
    pub fleet: Option<(&'a FleetShares, u64)>,
}

/// The gateway's runtime state, as the stages read it. Implemented by the gateway; every method is
/// a lock-free read (or an atomic count) on the request path.
pub trait Runtime {
    /// A runtime flag's value now.
    fn flag(&self, flag: Flag) -> bool;
    /// Any operator block (an address, a tenant) is in force: otherwise their stages are skipped.
    fn any_operator_block(&self) -> bool;
    /// The operator's blocked address or CIDR `ip` is in now, if any.
    fn blocked_address(&self, ip: IpAddr) -> Option<String>;
    /// The session id is revoked.
    fn session_revoked(&self, session: &str) -> bool;
    /// The subject is blocked.
    fn subject_blocked(&self, subject: &str) -> bool;
    /// The operator's allowlist decision for a key (see [`crate::identity::AuthInput`]).
    fn allowlisted(&self, key: &str) -> Option<bool>;
    /// Any tenant is suspended.
    fn any_suspended(&self) -> bool;
    /// The tenant is suspended now.
    fn tenant_suspended(&self, tenant: &str) -> bool;
    /// The limiter state and clocks.
    fn limiting(&self) -> Limiting<'_>;
    /// The webhook replay cache.
    fn replay_cache(&self) -> &ReplayCache;
    /// Counts a webhook verification result.
    fn count_webhook(&self, rule: &str, result: &str, secret_id: &str);
    /// Scores the request for the anomaly rules (their state is the gateway's).
    fn score_anomaly(&self, snapshot: &Snapshot, req: &Request<'_>, who: Option<&Identity>) -> Scoring;
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
