//! Automatic blocks: the `auto_blocks:` section of a rule file. A rule counts the refusals of
//! some event types per client address (or per subject) in a sliding window; when a key goes
//! over the threshold, the gateway blocks it for a while — through the same audited path as an
//! operator's `PUT /v1/blocks/...` (`gateway/src/autoblock.rs`), so the block is listed, liftable
//! and expires like one.
//!
//! ```yaml
//! auto_blocks:
//!   - id: scanner
//!     events: [firewall_block]    # event types counted (refusals only: `blocked` events)
//!     above: 10                   # more than 10 ...
//!     window: 1m                  # ... in a sliding minute (1s to 24h)
//!     block: address              # address (the client IP, /32 or /128) | subject
//!     duration: 1h                # how long the block lasts (1s to 30 days)
//!     mode: enforce               # monitor: logged and counted, nothing blocked
//!     exempt: [10.0.0.0/8]        # never blocked (trusted proxies and maintenance bypass never are)
//! ```
//!
//! Compiling and counting are pure (this file); acting is the gateway's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ipset::{parse_net, IpSet};
use crate::schema::{compile_section, present, Checker, Common, Ctx, RawRule, RuleMeta};
use crate::verdict::{EventType, Mode, Severity};

/// The section's rule kind.
pub const KIND: &str = "auto_blocks";
/// Longest `window`.
pub const MAX_WINDOW_SECS: u64 = 24 * 3600;
/// Longest `duration`.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
/// Most keys counted at once per rule: a flood of new addresses cannot grow memory past this
/// (the oldest-seen keys are forgotten first).
pub const MAX_KEYS: usize = 100_000;

/// The event types a rule may count: refusals of a request, which carry its client and subject.
pub const COUNTABLE: [EventType; 8] = [
    EventType::FirewallBlock,
    EventType::AuthFailure,
    EventType::WebhookInvalidSignature,
    EventType::RateLimitHit,
    EventType::SsrfBlock,
    EventType::CrossTenantAttempt,
    EventType::QuotaExceeded,
    EventType::PiiLeakBlock,
];

/// What a rule blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKey {
    /// The client address (the one the gateway resolved, after trusted proxies).
    Address,
    /// The authenticated subject.
    Subject,
}

impl BlockKey {
    /// The name rules use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Subject => "subject",
        }
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct AutoBlockRule {
    /// The rule id.
    pub id: Arc<str>,
    /// The rule hash: an unchanged rule keeps its counts across a reload.
    pub hash: String,
    /// `monitor`: logged and counted, never blocks.
    pub mode: Mode,
    /// Event types counted.
    pub types: Vec<EventType>,
    /// Blocks when the count in the window goes over this.
    pub above: u64,
    /// The sliding window.
    pub window_secs: u64,
    /// What is blocked.
    pub key: BlockKey,
    /// How long.
    pub duration_secs: u64,
    /// Addresses never blocked by this rule.
    pub exempt: IpSet,
}

/// Every rule of a snapshot, in file order.
#[derive(Debug, Clone, Default)]
pub struct AutoBlocks {
    rules: Vec<AutoBlockRule>,
}

impl AutoBlocks {
    /// The rules.
    pub fn new(rules: Vec<AutoBlockRule>) -> Self {
        AutoBlocks { rules }
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[AutoBlockRule] {
        &self.rules
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule counts events of this type (the cheap test on the event path).
    pub fn counts(&self, kind: EventType) -> bool {
        self.rules.iter().any(|r| r.types.contains(&kind))
    }
}

/// Sliding-window counts per key of one rule, in one-second buckets. Pure: the caller passes
/// the time. Bounded: at most [`MAX_KEYS`] keys.
#[derive(Debug, Default)]
pub struct Counter {
    keys: HashMap<String, VecDeque<(u64, u64)>>,
    /// Keys in first-seen order, for forgetting the oldest when full.
    order: VecDeque<String>,
}

impl Counter {
    /// Adds `hits` for `key` at `now` (unix seconds); `true` when the key's count in the window
    /// is now over `above` — the key's counts are then cleared (one trigger per crossing).
    pub fn add(&mut self, key: &str, hits: u64, now: u64, window_secs: u64, above: u64) -> bool {
        if !self.keys.contains_key(key) {
            while self.keys.len() >= MAX_KEYS {
                match self.order.pop_front() {
                    Some(old) => {
                        self.keys.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key.to_string());
            self.keys.insert(key.to_string(), VecDeque::new());
        }
        let Some(buckets) = self.keys.get_mut(key) else { return false };
        let start = now.saturating_sub(window_secs.saturating_sub(1));
        while buckets.front().is_some_and(|(t, _)| *t < start) {
            buckets.pop_front();
        }
        match buckets.back_mut() {
            Some((t, n)) if *t == now => *n = n.saturating_add(hits),
            _ => buckets.push_back((now, hits)),
        }
        let total: u64 = buckets.iter().map(|(_, n)| *n).fold(0, u64::saturating_add);
        if total > above {
            buckets.clear();
            return true;
        }
        false
    }

    /// Forgets keys with nothing in their window (called now and then).
    pub fn sweep(&mut self, now: u64, window_secs: u64) {
        let start = now.saturating_sub(window_secs.saturating_sub(1));
        self.keys.retain(|_, b| b.back().is_some_and(|(t, _)| *t >= start));
        let keys = &self.keys;
        self.order.retain(|k| keys.contains_key(k));
    }

    /// Keys counted now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is counted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key of an event for a rule: the client address (canonical, IPv4-mapped as IPv4) or the
/// subject; `None` when the event has none.
pub fn key_of(key: BlockKey, client_ip: Option<IpAddr>, subject: Option<&str>) -> Option<String> {
    match key {
        BlockKey::Address => client_ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4).to_string(),
            v4 => v4.to_string(),
        }),
        BlockKey::Subject => subject.filter(|s| !s.is_empty()).map(str::to_string),
    }
}

/// One raw rule of the `auto_blocks:` list.
#[derive(Debug, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an automatic block rule: a mapping with `id`, `events`, `above`, `window`, `block`, `duration`"
)]
pub(crate) struct RawAutoBlock {
    id: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    above: Option<u64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    window: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    block: Option<BlockKey>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    exempt: Option<Vec<String>>,
}

impl RawRule for RawAutoBlock {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: Some(Severity::Warning) }
    }
}

/// Compiles the `auto_blocks:` list of one file.
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawAutoBlock], out: &mut Vec<AutoBlockRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| Some(one(c, meta, r)));
}

/// A required duration key, 1 s to `max`.
fn secs(c: &mut Checker<'_, '_>, key: &str, v: Option<&String>, max: u64) -> u64 {
    if v.is_none() {
        c.error(key, format!("`{key}` is required: write <n><unit> like `30s`, `5m` or `1h`"));
    }
    crate::alerts::duration(c, key, v, 1, 1, max)
}

fn one(c: &mut Checker<'_, '_>, meta: RuleMeta, r: &RawAutoBlock) -> AutoBlockRule {
    let mut types = Vec::new();
    match &r.events {
        None => c.error("events", "list the event types to count, e.g. `events: [firewall_block]`"),
        Some(list) if list.is_empty() => c.error("events", "list at least one event type"),
        Some(list) => {
            for (j, t) in list.iter().enumerate() {
                let path = format!("events[{j}]");
                match EventType::parse(t) {
                    Some(k) if types.contains(&k) => c.error(&path, format!("`{t}` is listed twice")),
                    Some(k) if COUNTABLE.contains(&k) => types.push(k),
                    _ => {
                        let known: Vec<&str> = COUNTABLE.iter().map(|t| t.as_str()).collect();
                        c.error(
                            &path,
                            format!("`{t}` is not a refusal a rule can count; one of: {}", known.join(", ")),
                        );
                    }
                }
            }
        }
    }
    let above = match r.above {
        Some(n) if n >= 1 => n,
        Some(_) => {
            c.error("above", "must be at least 1 (a block needs more than one refusal)");
            1
        }
        None => {
            c.error("above", "`above` is required: block when the count goes over it");
            1
        }
    };
    let window_secs = secs(c, "window", r.window.as_ref(), MAX_WINDOW_SECS);
    let duration_secs = secs(c, "duration", r.duration.as_ref(), MAX_DURATION_SECS);
    let key = r.block.unwrap_or_else(|| {
        c.error("block", "`block` is required: address or subject");
        BlockKey::Address
    });
    let mut nets = Vec::new();
    for (j, s) in r.exempt.iter().flatten().enumerate() {
        match parse_net(s) {
            Some(n) => nets.push(n),
            None => c.error(&format!("exempt[{j}]"), format!("`{s}` is not an IP address or CIDR")),
        }
    }
    AutoBlockRule {
        id: meta.id,
        hash: meta.hash,
        mode: meta.mode,
        types,
        above,
        window_secs,
        key,
        duration_secs,
        exempt: IpSet::new(nets),
    }
}

#[cfg(test)]
mod tests;
