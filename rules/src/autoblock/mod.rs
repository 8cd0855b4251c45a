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
mod tests {
    use super::*;
    use crate::rulefile::{compile_with, Env, SourceFile};

    fn compile_text(text: &str) -> Result<AutoBlocks, Vec<String>> {
        let env = Env { routes: None, assets: None, sinks: None };
        compile_with(&[SourceFile::new("a.yaml", text)], &env)
            .map(|s| s.auto_blocks)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_rule_compiles_with_its_keys() {
        let a = compile_text(
            "version: 1\nauto_blocks:\n  - id: scanner\n    events: [firewall_block, SSRF_BLOCK]\n    above: 10\n    window: 1m\n    block: address\n    duration: 1h\n    exempt: [10.0.0.0/8, \"::1\"]\n",
        )
        .unwrap();
        let r = &a.rules()[0];
        assert_eq!((&*r.id, r.above, r.window_secs, r.duration_secs), ("scanner", 10, 60, 3600));
        assert_eq!(r.types, vec![EventType::FirewallBlock, EventType::SsrfBlock]);
        assert_eq!(r.key, BlockKey::Address);
        assert!(r.exempt.contains("10.1.2.3".parse().unwrap()) && !r.exempt.contains("11.0.0.1".parse().unwrap()));
        assert!(a.counts(EventType::SsrfBlock) && !a.counts(EventType::AuthFailure));
    }

    #[test]
    fn bad_rules_name_every_error() {
        let e = compile_text(
            "version: 1\nauto_blocks:\n  - id: a\n    events: [switch_changed, nope, firewall_block, firewall_block]\n    above: 0\n    window: 2d\n    block: tenant\n    duration: 0s\n    exempt: [not-an-ip]\n",
        )
        .unwrap_err()
        .join("\n");
        // `block: tenant` is a type error for the whole rule; fix it and every other key is named.
        assert!(e.contains("block"), "{e}");
        let e = compile_text(
            "version: 1\nauto_blocks:\n  - id: a\n    events: [switch_changed, nope, firewall_block, firewall_block]\n    above: 0\n    window: 2d\n    block: subject\n    duration: 0s\n    exempt: [not-an-ip]\n",
        )
        .unwrap_err()
        .join("\n");
        for want in ["events[0]", "events[1]", "events[3]", "above", "window", "duration", "exempt[0]"] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
        let e = compile_text("version: 1\nauto_blocks:\n  - id: a\n").unwrap_err().join("\n");
        for want in ["events", "above", "window", "block", "duration"] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }

    #[test]
    fn the_counter_slides_triggers_once_per_crossing_and_stays_bounded() {
        let mut c = Counter::default();
        // 3 in the window is not over 3; the 4th is.
        for t in 0..3 {
            assert!(!c.add("a", 1, 100 + t, 60, 3));
        }
        assert!(c.add("a", 1, 103, 60, 3));
        // Cleared: counting starts again.
        assert!(!c.add("a", 1, 104, 60, 3));
        // Old hits slide out of the window.
        let mut c = Counter::default();
        assert!(!c.add("b", 3, 100, 10, 3));
        assert!(!c.add("b", 3, 110, 10, 3), "the first 3 are out of a 10 s window at t=110");
        assert!(c.add("b", 1, 111, 10, 3));
        // An aggregated event counts its hits.
        assert!(Counter::default().add("c", 50, 1, 60, 10));
        // Bounded: a flood of new keys never holds more than MAX_KEYS.
        let mut c = Counter::default();
        for i in 0..(MAX_KEYS + 10) {
            c.add(&i.to_string(), 1, 5, 60, 100);
        }
        assert_eq!(c.len(), MAX_KEYS);
        c.sweep(1000, 60);
        assert!(c.is_empty());
    }

    #[test]
    fn keys_are_canonical() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key_of(BlockKey::Address, Some(mapped), None).as_deref(), Some("192.0.2.7"));
        assert_eq!(key_of(BlockKey::Address, None, Some("u")), None);
        assert_eq!(key_of(BlockKey::Subject, None, Some("u")).as_deref(), Some("u"));
        assert_eq!(key_of(BlockKey::Subject, None, Some("")), None);
    }
}
