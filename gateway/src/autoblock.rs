//! Automatic blocks (the rules' `auto_blocks:`, `portcullis_rules::autoblock`): refusals are
//! counted per client address or subject, and a key that goes over its rule's threshold is
//! blocked for the rule's duration.
//!
//! - The event bus's tap hands each counted refusal (an enforced, non-test event of a type some
//!   rule counts) to this module's thread over a bounded queue: the request path never waits,
//!   and a full queue drops the hit (counted in `portcullis_auto_block_hits_dropped_total`).
//! - The block is the operator's block (`PUT /v1/blocks/addresses/…` / `…/subjects/…`) made by
//!   the rule: the same control-plane transaction (`txn::transact`, audited with the actor
//!   `auto_block:<rule id>` before it is in force), published to the fleet in fleet mode,
//!   announced with a `switch_changed` event, listed by `GET /v1/blocks`, lifted by `DELETE`,
//!   and it expires by itself.
//! - Not counted: refusals that carry out a block or suspension already decided
//!   (`detail.reason` `address_blocked`, `subject_blocked`, `tenant_suspended`).
//! - Never blocked: the rule's `exempt` CIDRs, the gateway's trusted proxies and the maintenance
//!   bypass CIDRs (counted as `exempt`). A key already blocked is not blocked again.
//! - This module holds the counters the shared state keeps (`AutoBlockStats`); the thread that
//!   counts and blocks is `crate::auto_blocker` (it reads the shared state, so it sits above it).
//! - Counts live in memory on this thread (bounded per rule; kept across a reload of an
//!   unchanged rule) and are per instance: in a fleet, each instance counts what it sees.

use crate::metrics::{Declared, Def};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What happened when a key went over a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Blocked,
    Monitor,
    Exempt,
    AlreadyBlocked,
    Failed,
}

impl Outcome {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Monitor => "monitor",
            Self::Exempt => "exempt",
            Self::AlreadyBlocked => "already_blocked",
            Self::Failed => "failed",
        }
    }
}

/// The automatic blocks' counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct AutoBlockStats {
    dropped: AtomicU64,
    outcomes: Mutex<BTreeMap<(String, Outcome), u64>>,
}

const AUTO_BLOCKS_TOTAL: Def<2> = Def::counter(
    "portcullis_auto_blocks_total",
    "Keys that went over an auto_blocks rule's threshold, by what was done: blocked, monitor (mode: monitor), exempt (trusted proxy, maintenance bypass or the rule's exempt list), already_blocked, failed (the audit log refused the change).",
    ["rule", "result"],
);
const AUTO_BLOCK_HITS_DROPPED_TOTAL: Def<0> = Def::counter(
    "portcullis_auto_block_hits_dropped_total",
    "Refusals not counted by the automatic blocks because their queue was full.",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&AUTO_BLOCKS_TOTAL, &AUTO_BLOCK_HITS_DROPPED_TOTAL];

impl AutoBlockStats {
    /// One key over `rule`'s threshold, and what was done.
    pub(crate) fn count(&self, rule: &str, o: Outcome) {
        *self.outcomes.lock().entry((rule.to_string(), o)).or_default() += 1;
    }

    /// One hit dropped because the thread's queue was full.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// `portcullis_auto_blocks_total{rule,result}` and the dropped hits.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        let mut f = out.family(&AUTO_BLOCKS_TOTAL);
        for ((rule, o), n) in self.outcomes.lock().iter() {
            f.sample([rule, o.as_str()], *n);
        }
        out.family(&AUTO_BLOCK_HITS_DROPPED_TOTAL).sample([], self.dropped.load(Ordering::Relaxed));
    }
}
