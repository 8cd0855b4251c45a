//! Webhook state that outlives rule snapshots: the replay cache and delivery counters.
//!
//! The cache is keyed by rule id (see [`portcullis_rules::webhook::replay`]), so a reload —
//! including a secret rotation — never forgets an accepted delivery. It lives in memory: a
//! restart forgets it, which reopens replays of deliveries still inside their window (at most the
//! tolerance, 300 s by default, or a GitHub rule's `replay_window_seconds`).

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

impl WebhookState {
    /// Counts one delivery.
    pub fn count(&self, rule: &str, result: &str, secret: &str) {
        *self.counts.lock().entry((rule.to_owned(), result.to_owned(), secret.to_owned())).or_default() += 1;
    }

    /// Prometheus text: deliveries by rule, result and secret (how an operator sees the old
    /// secret fall out of use during a rotation), and the replay cache's size and evictions.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP portcullis_webhook_deliveries_total Webhook deliveries by rule, result and matching secret id."
        );
        let _ = writeln!(out, "# TYPE portcullis_webhook_deliveries_total counter");
        for ((rule, result, secret), n) in self.counts.lock().iter() {
            let _ = writeln!(
                out,
                "portcullis_webhook_deliveries_total{{rule=\"{rule}\",result=\"{result}\",secret=\"{secret}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP portcullis_webhook_replay_entries Deliveries remembered by the replay cache.");
        let _ = writeln!(out, "# TYPE portcullis_webhook_replay_entries gauge");
        let _ = writeln!(out, "portcullis_webhook_replay_entries {}", self.replay.len());
        let _ = writeln!(
            out,
            "# HELP portcullis_webhook_replay_evictions_total Unexpired deliveries dropped from the full replay cache."
        );
        let _ = writeln!(out, "# TYPE portcullis_webhook_replay_evictions_total counter");
        let _ = writeln!(out, "portcullis_webhook_replay_evictions_total {}", self.replay.evicted());
    }
}
