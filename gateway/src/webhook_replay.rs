//! Webhook state that outlives rule snapshots: the replay cache and delivery counters.
//!
//! The cache is keyed by rule id (see [`portcullis_rules::webhook::replay`]), so a reload —
//! including a secret rotation — never forgets an accepted delivery. It lives in memory: a
//! restart forgets it, which reopens replays of deliveries still inside their window (at most the
//! tolerance, 300 s by default, or a GitHub rule's `replay_window_seconds`).

use crate::metrics::{Declared, Def};
use parking_lot::Mutex;
use portcullis_rules::webhook::replay::ReplayCache;
use std::collections::BTreeMap;

/// Outcome label of accepted deliveries in the counters.
pub const ACCEPTED: &str = "accepted";

/// Replay cache and per-rule counters.
#[derive(Debug, Default)]
pub struct WebhookState {
    /// Accepted deliveries, by rule id.
    pub replay: ReplayCache,
    /// `(rule, result, secret)` → deliveries; `result` is `accepted` or a refusal reason, `secret`
    /// the matching secret's id (empty when none matched). Bounded by the rules: every label
    /// comes from configuration or from the fixed list of reasons.
    counts: Mutex<BTreeMap<(String, String, String), u64>>,
}

const WEBHOOK_DELIVERIES_TOTAL: Def<3> = Def::counter(
    "portcullis_webhook_deliveries_total",
    "Webhook deliveries by rule, result and matching secret id.",
    ["rule", "result", "secret"],
);
const WEBHOOK_REPLAY_ENTRIES: Def<0> =
    Def::gauge("portcullis_webhook_replay_entries", "Deliveries remembered by the replay cache.", []);
const WEBHOOK_REPLAY_EVICTIONS_TOTAL: Def<0> = Def::counter(
    "portcullis_webhook_replay_evictions_total",
    "Unexpired deliveries dropped from the full replay cache.",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] =
    &[&WEBHOOK_DELIVERIES_TOTAL, &WEBHOOK_REPLAY_ENTRIES, &WEBHOOK_REPLAY_EVICTIONS_TOTAL];

impl WebhookState {
    /// Counts one delivery.
    pub fn count(&self, rule: &str, result: &str, secret: &str) {
        *self.counts.lock().entry((rule.to_owned(), result.to_owned(), secret.to_owned())).or_default() += 1;
    }

    /// Prometheus text: deliveries by rule, result and secret (how an operator sees the old
    /// secret fall out of use during a rotation), and the replay cache's size and evictions.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&WEBHOOK_DELIVERIES_TOTAL);
        for ((rule, result, secret), n) in self.counts.lock().iter() {
            f.sample([rule, result, secret], *n);
        }
        out.family(&WEBHOOK_REPLAY_ENTRIES).sample([], self.replay.len());
        out.family(&WEBHOOK_REPLAY_EVICTIONS_TOTAL).sample([], self.replay.evicted());
    }
}

/// What the fleet's replay cache said of an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetClaim {
    /// Claimed fleet-wide: forward it.
    Claimed,
    /// Another instance accepted it already: a replay.
    Replayed,
    /// The store did not answer within the budget (the reason).
    Unavailable(String),
}

/// Fleet mode: claims an accepted delivery in the fleet store, on a blocking thread, within
/// `fleet.webhook_replay_budget_ms` (the connection's own timeouts bound the thread too).
pub async fn fleet_claim(
    fleet: &std::sync::Arc<crate::fleet::Fleet>,
    claim: &portcullis_rules::webhook::replay::Claim,
    now: u64,
) -> FleetClaim {
    let (f, c) = (fleet.clone(), claim.clone());
    let job = tokio::task::spawn_blocking(move || f.replay_claim(&c, now));
    // The connect, write and read steps each have the budget; the whole waits at most twice it.
    match tokio::time::timeout(fleet.cfg.webhook_budget * 2, job).await {
        Ok(Ok(Ok(true))) => FleetClaim::Claimed,
        Ok(Ok(Ok(false))) => FleetClaim::Replayed,
        Ok(Ok(Err(e))) => FleetClaim::Unavailable(e),
        Ok(Err(e)) => FleetClaim::Unavailable(e.to_string()),
        Err(_) => FleetClaim::Unavailable("over the budget".into()),
    }
}

/// Fleet mode: releases a claim the upstream did not take, in the background.
pub fn fleet_release(fleet: &std::sync::Arc<crate::fleet::Fleet>, claim: portcullis_rules::webhook::replay::Claim) {
    let f = fleet.clone();
    let _ = std::thread::Builder::new().name("fleet-release".into()).spawn(move || {
        if let Err(e) = f.replay_release(&claim) {
            tracing::warn!(error = %e, "fleet webhook replay cache: a claim the upstream did not take could not be released; the sender's retry is refused until it expires");
        }
    });
}
