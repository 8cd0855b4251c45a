//! Anomaly zones (the rules' `anomaly:`, `portcullis_rules::anomaly`): every request that
//! passed the checks is scored for each rule whose routes it is on, per the rule's key, before
//! it is forwarded.
//!
//! - **Amber** (score ≥ `amber`): the request waits `amber_delay_ms` on a timer
//!   (`tokio::time::sleep`, never a blocked thread) and is then forwarded; an `anomaly_amber`
//!   event (action `flagged`). At most [`MAX_DELAYED`] requests wait at once: over that, the
//!   request goes through undelayed and is counted (`portcullis_anomaly_delay_skipped_total`),
//!   so the delays can never exhaust the gateway's own connections.
//! - **Red** (score ≥ `red`): the session is revoked through the control-plane transaction,
//!   audited with the actor `anomaly:<rule id>` (`containment::anomaly_red`: a `containment::Job` on a blocking thread), before
//!   this request is answered 401 `session_expired`, exactly as a revoked session is; an
//!   `anomaly_red` event (critical) with `detail.action: session_revoked` and what was done in
//!   `detail.containment`. A rule keyed by `subject` blocks the subject for [`RED_BLOCK_SECS`]
//!   instead; keyed by `address` or `tenant`, the request's own session (if it has one) is
//!   revoked: a shared address or a whole tenant is never blocked by a score. The key's score
//!   then starts again from nothing.
//! - `mode: monitor`: the events only (action `flagged`, `detail.action: none`), no delay, no
//!   revocation. Exempt callers (`exempt.cidrs`, `exempt.subjects`) are never scored.
//! - State: per rule (id and hash: an unchanged rule keeps its scores across a reload), in
//!   [`SHARDS`] locked shards by key hash; a lock is held for one score only. Bounded: at most
//!   `anomaly::MAX_KEYS` keys per rule. Per instance: in a fleet, each instance scores what it
//!   sees.

use crate::metrics::{Declared, Def};
use parking_lot::{Mutex, RwLock};
use portcullis_rules::anomaly::{finding, key_of, AnomalyRule, Cow, KeyKind, Score, Scorer, Zone, MAX_KEYS};
use portcullis_rules::identity::Identity;
use portcullis_rules::tenant::Containment;
use portcullis_rules::verdict::Mode;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Requests delayed at once at most.
pub const MAX_DELAYED: usize = 1024;
/// How long a red zone blocks a subject (rules keyed by `subject`).
pub const RED_BLOCK_SECS: u64 = 3600;
/// Locked shards per rule.
pub const SHARDS: usize = 16;

type Shards = [Mutex<Scorer>; SHARDS];
/// A rule's id and hash.
type RuleKey = (Arc<str>, String);

/// The scorers of the rules in force, and the counters.
#[derive(Default)]
pub struct AnomalyState {
    scorers: RwLock<HashMap<RuleKey, Arc<Shards>>>,
    delayed: AtomicUsize,
    skipped: AtomicU64,
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// What a request's scoring asks the proxy to do: the pipeline's anomaly stage turns it into
/// scores, a delay and a red finding.
pub use portcullis_rules::pipeline::Scoring as Verdict;

/// Holds one delay slot until dropped.
pub struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The rule's key of a request; `None` when the caller is exempt or the request has no such key.
fn request_key<'a>(rule: &AnomalyRule, who: Option<&'a Identity>, ip: Option<IpAddr>) -> Option<Cow<'a>> {
    let subject = who.map(|i| i.subject.as_str());
    if rule.exempt(ip, subject) {
        return None;
    }
    let session = who.and_then(|i| i.session.as_deref());
    key_of(rule.key, session, subject, who.and_then(|i| i.tenant.as_deref()), ip)
}

fn shard_of(key: &str) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

const ANOMALY_TOTAL: Def<2> =
    Def::counter("portcullis_anomaly_total", "Requests scored amber or red by an anomaly rule.", ["rule", "zone"]);
const ANOMALY_DELAY_SKIPPED_TOTAL: Def<0> = Def::counter(
    "portcullis_anomaly_delay_skipped_total",
    "Amber requests forwarded undelayed because 1024 requests were already delayed.",
    [],
);
// The help text above says 1024.
const _: () = assert!(MAX_DELAYED == 1024);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&ANOMALY_TOTAL, &ANOMALY_DELAY_SKIPPED_TOTAL];

impl AnomalyState {
    fn shards(&self, rule: &AnomalyRule, all: &[AnomalyRule]) -> Arc<Shards> {
        let id = (rule.id.clone(), rule.hash.clone());
        if let Some(s) = self.scorers.read().get(&id) {
            return s.clone();
        }
        let mut map = self.scorers.write();
        // Rules no longer in force are forgotten when a new one is first seen.
        map.retain(|(i, h), _| all.iter().any(|r| r.id == *i && r.hash == *h));
        map.entry(id)
            .or_insert_with(|| Arc::new(std::array::from_fn(|_| Mutex::new(Scorer::with_capacity(MAX_KEYS / SHARDS)))))
            .clone()
    }

    fn count(&self, rule: &str, zone: &'static str) {
        *self.counts.lock().entry((rule.to_string(), zone)).or_default() += 1;
    }

    /// Scores one request that passed every check. `now_ms`: unix milliseconds.
    pub fn score(
        &self,
        rules: &[AnomalyRule],
        route: Option<&str>,
        path: &str,
        who: Option<&Identity>,
        ip: Option<IpAddr>,
        now_ms: u64,
    ) -> Verdict {
        let mut v = Verdict::default();
        for rule in rules.iter().filter(|r| r.applies(route)) {
            let Some(key) = request_key(rule, who, ip) else { continue };
            let shards = self.shards(rule, rules);
            let Some(shard) = shards.get(shard_of(&key)) else { continue };
            let score: Score = {
                let mut s = shard.lock();
                let score = s.observe(&rule.features, &key, now_ms, path, None);
                if rule.zone(score.total) == Zone::Red {
                    s.forget(&key);
                }
                score
            };
            let zone = rule.zone(score.total);
            if zone == Zone::Green {
                continue;
            }
            self.count(&rule.id, zone.as_str());
            let mut f = finding(rule, zone, &score);
            if zone == Zone::Red {
                if v.red.is_none() {
                    let plan = (rule.mode == Mode::Enforce).then(|| Containment {
                        revoke_session: rule.key != KeyKind::Subject,
                        block_subject_seconds: (rule.key == KeyKind::Subject).then_some(RED_BLOCK_SECS),
                        maintenance: false,
                    });
                    if plan.is_none() {
                        f.detail.insert("action".into(), "none".into());
                    }
                    v.red = Some((f, plan));
                }
                continue;
            }
            if rule.mode == Mode::Enforce {
                let ms = rule.amber_delay_ms;
                v.delay = Some(v.delay.unwrap_or_default().max(Duration::from_millis(ms)));
                f.detail.insert("delay_ms".into(), ms.into());
            } else {
                f.detail.insert("delay_ms".into(), 0.into());
            }
            v.flagged.push(f);
        }
        v
    }

    /// A delay slot, or `None` when [`MAX_DELAYED`] requests already wait (counted).
    pub fn slot(&self) -> Option<Slot<'_>> {
        let n = self.delayed.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(&self.delayed);
        if n >= MAX_DELAYED {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(slot)
    }

    /// Records a finished request's status for the rules that count auth-failure streaks.
    pub fn status(
        &self,
        rules: &[AnomalyRule],
        route: Option<&str>,
        who: Option<&Identity>,
        ip: Option<IpAddr>,
        status: u16,
    ) {
        for rule in rules.iter().filter(|r| r.counts_statuses() && r.applies(route)) {
            let Some(key) = request_key(rule, who, ip) else { continue };
            let shards = self.shards(rule, rules);
            if let Some(shard) = shards.get(shard_of(&key)) {
                shard.lock().status(&key, status);
            }
        }
    }

    /// `portcullis_anomaly_total{rule,zone}` and the skipped delays.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&ANOMALY_TOTAL);
        for ((rule, zone), n) in self.counts.lock().iter() {
            f.sample([rule, zone], *n);
        }
        out.family(&ANOMALY_DELAY_SKIPPED_TOTAL).sample([], self.skipped.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests;
