//! Anomaly zones: the `anomaly:` section of a rule file. A rule scores each request of a key
//! (session, subject, tenant or client address) by the behaviour features that fire for it; at
//! `amber` the gateway slows the caller down, at `red` it ends the session
//! (`gateway/src/anomaly.rs`).
//!
//! ```yaml
//! anomaly:
//!   - id: rto-enumeration
//!     key: session                 # session (default) | subject | tenant | address
//!     routes: [api]                # optional
//!     features:                    # at least one; each fires or not, its weight adds up
//!       velocity:      { weight: 1, window: 10s, max_requests: 50 }  # more than 50 in 10 s
//!       sequential:    { weight: 3, window: 1m, min_run: 5 }         # /…/1001, /…/1002, … 5 steps
//!       breadth:       { weight: 1, window: 1m, max_groups: 20 }     # > 20 endpoint groups
//!       timing:        { weight: 2, intervals: 8, max_cv: 0.1 }      # 8 sub-second regular gaps
//!       auth_failures: { weight: 3, streak: 5 }                      # 5 401/403 in a row
//!     amber: 3                     # score at which requests are delayed
//!     red: 5                       # score at which the session is revoked
//!     amber_delay_ms: 1000         # default 1000, at most 10000
//!     exempt: { cidrs: [10.0.0.0/8], subjects: [svc-batch] }
//!     mode: enforce                # monitor: events only, no delay, no revocation
//! ```
//!
//! Scoring is pure (this file): the caller passes the time. Memory is bounded: at most
//! [`MAX_KEYS`] keys per [`Scorer`] (the oldest-seen forgotten first) and at most
//! [`MAX_COUNT`] timestamps per key and feature.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::deny::{Deny, DenyCode};
use crate::ipset::{parse_net, IpSet};
use crate::limits::rate::period_secs;
use crate::schema::{compile_section, present, route_matches, Checker, Common, Ctx, RawRule, RuleMeta};
use crate::verdict::{EventType, Finding, Mode, Severity};

/// The section's rule kind.
pub const KIND: &str = "anomaly";
/// Most keys a scorer holds: a flood of new sessions or addresses cannot grow memory past this.
pub const MAX_KEYS: usize = 50_000;
/// Largest `max_requests`, `min_run`, `max_groups`, `intervals`, `streak`: what a key remembers
/// per feature is bounded by it.
pub const MAX_COUNT: u32 = 200;
/// Longest feature `window`.
pub const MAX_WINDOW_SECS: u64 = 3600;
/// Longest `amber_delay_ms`.
pub const MAX_DELAY_MS: u64 = 10_000;
/// Default `amber_delay_ms`.
pub const DEFAULT_DELAY_MS: u64 = 1000;
/// The timing feature only looks at intervals shorter than this.
pub const TIMING_MAX_INTERVAL_MS: u64 = 1000;

/// What a rule scores requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The identity's session id (requests without one are not scored).
    #[default]
    Session,
    /// The authenticated subject.
    Subject,
    /// The identity's tenant.
    Tenant,
    /// The client address (after trusted proxies).
    Address,
}

impl KeyKind {
    /// The name rules use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Subject => "subject",
            Self::Tenant => "tenant",
            Self::Address => "address",
        }
    }
}

/// The features, in the order of [`Score::values`].
pub const FEATURES: [&str; 5] = ["velocity", "sequential", "breadth", "timing", "auth_failures"];

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct AnomalyRule {
    /// The rule id.
    pub id: Arc<str>,
    /// The rule hash: an unchanged rule keeps its scores across a reload.
    pub hash: String,
    /// `monitor`: events only.
    pub mode: Mode,
    /// What is scored.
    pub key: KeyKind,
    routes: Option<Box<[Box<str>]>>,
    /// The features and their parameters.
    pub features: Features,
    /// Amber at this score.
    pub amber: u32,
    /// Red at this score.
    pub red: u32,
    /// The delay injected in amber.
    pub amber_delay_ms: u64,
    exempt_cidrs: IpSet,
    exempt_subjects: Vec<String>,
}

/// A rule's zone for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Zone {
    /// Under amber.
    Green,
    /// Delayed.
    Amber,
    /// Session ended.
    Red,
}

impl Zone {
    /// `green`, `amber`, `red`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Green => "green",
            Self::Amber => "amber",
            Self::Red => "red",
        }
    }
}

impl AnomalyRule {
    /// Whether the rule scores requests of this route.
    pub fn applies(&self, route: Option<&str>) -> bool {
        route_matches(self.routes.as_deref(), route)
    }

    /// Whether the caller is exempt (its address in `exempt.cidrs`, its subject in
    /// `exempt.subjects`).
    pub fn exempt(&self, ip: Option<IpAddr>, subject: Option<&str>) -> bool {
        ip.is_some_and(|ip| self.exempt_cidrs.contains(ip))
            || subject.is_some_and(|s| self.exempt_subjects.iter().any(|x| x == s))
    }

    /// The zone of a score.
    pub fn zone(&self, score: u32) -> Zone {
        if score >= self.red {
            Zone::Red
        } else if score >= self.amber {
            Zone::Amber
        } else {
            Zone::Green
        }
    }

    /// Whether the rule has the auth-failure feature (the gateway then reports response statuses).
    pub fn counts_statuses(&self) -> bool {
        self.features.auth_failures.is_some()
    }
}

/// Every rule of a snapshot, in file order.
#[derive(Debug, Clone, Default)]
pub struct Anomalies {
    rules: Vec<AnomalyRule>,
}

impl Anomalies {
    /// The rules.
    pub fn new(rules: Vec<AnomalyRule>) -> Self {
        Anomalies { rules }
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[AnomalyRule] {
        &self.rules
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The key of a request for a rule; `None` when the request has none (not scored).
pub fn key_of<'a>(
    kind: KeyKind,
    session: Option<&'a str>,
    subject: Option<&'a str>,
    tenant: Option<&'a str>,
    ip: Option<IpAddr>,
) -> Option<Cow<'a>> {
    let s = match kind {
        KeyKind::Session => session,
        KeyKind::Subject => subject,
        KeyKind::Tenant => tenant,
        KeyKind::Address => {
            return ip.map(|ip| match ip {
                IpAddr::V6(v6) => Cow::Owned(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4).to_string()),
                v4 => Cow::Owned(v4.to_string()),
            })
        }
    };
    s.filter(|s| !s.is_empty()).map(Cow::Borrowed)
}

/// A borrowed or owned key.
pub type Cow<'a> = std::borrow::Cow<'a, str>;

/// `velocity`: more than `max_requests` in `window`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Velocity {
    weight: u32,
    window_ms: u64,
    max_requests: u32,
}

/// `sequential`: `min_run` consecutive +1 (or −1) steps of a trailing numeric id under the same
/// prefix, within `window` of the run's first step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    weight: u32,
    window_ms: u64,
    min_run: u32,
}

/// `breadth`: more than `max_groups` endpoint groups (the first two path segments) in `window`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Breadth {
    weight: u32,
    window_ms: u64,
    max_groups: u32,
}

/// `timing`: the last `intervals` gaps between requests all under 1 s with a coefficient of
/// variation (standard deviation / mean) under `max_cv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    weight: u32,
    intervals: u32,
    max_cv: f64,
}

/// `auth_failures`: `streak` 401/403 answers in a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuthFailures {
    weight: u32,
    streak: u32,
}

/// The features of a rule (absent: not scored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Request rate.
    pub velocity: Option<Velocity>,
    /// Walking ids in order.
    pub sequential: Option<Sequential>,
    /// Distinct endpoint groups.
    pub breadth: Option<Breadth>,
    /// Machine-regular timing.
    pub timing: Option<Timing>,
    /// Authentication failure streaks.
    pub auth_failures: Option<AuthFailures>,
}

/// The score of one request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Score {
    /// The sum of the weights of the features that fired.
    pub total: u32,
    /// Bit `i`: feature [`FEATURES`]`[i]` fired.
    pub fired: u8,
    /// Each feature's measured value (requests in the window, run length, groups, coefficient
    /// of variation, streak).
    pub values: [f64; 5],
}

impl Score {
    /// The features that fired with their values.
    pub fn fired(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        FEATURES.iter().enumerate().filter(|(i, _)| self.fired & (1 << i) != 0).map(|(i, n)| (*n, self.values[i]))
    }
}

/// What one key remembers.
#[derive(Debug, Default)]
struct State {
    /// Request times in the velocity window (at most `max_requests + 1`).
    times: VecDeque<u64>,
    /// Last request times for timing (at most `intervals + 1`).
    recent: VecDeque<u64>,
    /// The sequential run: prefix hash, last id, direction, steps, first step time.
    seq: Option<(u64, u64, i8, u32, u64)>,
    /// Endpoint groups seen, with their last time (at most `max_groups + 1`).
    groups: Vec<(u64, u64)>,
    /// 401/403 answers in a row.
    streak: u32,
}

/// Scores per key for one rule. Pure: the caller passes the time. Bounded: at most its
/// capacity of keys ([`MAX_KEYS`] by default), the oldest-seen forgotten first.
#[derive(Debug)]
pub struct Scorer {
    keys: HashMap<String, State>,
    order: VecDeque<String>,
    cap: usize,
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer::with_capacity(MAX_KEYS)
    }
}

fn hash_of(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The endpoint group of a path: its first two segments.
fn group(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let end = rest.match_indices('/').nth(1).map_or(rest.len(), |(i, _)| i);
    &path[..end + usize::from(path.starts_with('/'))]
}

/// A path's trailing numeric id (`/api/rto/1001` -> (`/api/rto/`, 1001)).
fn trailing_id(path: &str) -> Option<(&str, u64)> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let cut = path.rfind('/')?;
    let (prefix, last) = path.split_at(cut + 1);
    if last.is_empty() || last.len() > 19 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    last.parse().ok().map(|id| (prefix, id))
}

impl Scorer {
    /// A scorer holding at most `cap` keys (at least 1).
    pub fn with_capacity(cap: usize) -> Self {
        Scorer { keys: HashMap::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    /// The key's state, added (forgetting the oldest key when full) if new.
    fn state(&mut self, key: &str) -> Option<&mut State> {
        if !self.keys.contains_key(key) {
            while self.keys.len() >= self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.keys.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key.to_string());
            self.keys.insert(key.to_string(), State::default());
        }
        self.keys.get_mut(key)
    }

    /// Scores one request of `key` at `now_ms` to `path`. `status`, when known, is the answer's
    /// status (it only feeds `auth_failures`; see [`Scorer::status`]).
    pub fn observe(&mut self, f: &Features, key: &str, now_ms: u64, path: &str, status: Option<u16>) -> Score {
        let Some(st) = self.state(key) else { return Score::default() };
        let mut s = Score::default();
        if let Some(v) = &f.velocity {
            st.times.push_back(now_ms);
            while st.times.len() > v.max_requests as usize + 1
                || st.times.front().is_some_and(|t| now_ms.saturating_sub(*t) >= v.window_ms)
            {
                st.times.pop_front();
            }
            let n = st.times.len();
            fire(&mut s, 0, v.weight, n > v.max_requests as usize, n as f64);
        }
        if let Some(q) = &f.sequential {
            if let Some((prefix, id)) = trailing_id(path) {
                let ph = hash_of(prefix);
                let next = match st.seq {
                    Some((h, last, dir, steps, t0)) if h == ph && now_ms.saturating_sub(t0) <= q.window_ms => {
                        let d: i8 = if Some(id) == last.checked_add(1) {
                            1
                        } else if Some(id) == last.checked_sub(1) {
                            -1
                        } else {
                            0
                        };
                        match (d, dir) {
                            (0, _) => (ph, id, 0, 0, now_ms),
                            (d, 0) => (ph, id, d, 1, t0),
                            (d, dir) if d == dir => (ph, id, dir, steps.saturating_add(1), t0),
                            (d, _) => (ph, id, d, 1, now_ms),
                        }
                    }
                    _ => (ph, id, 0, 0, now_ms),
                };
                st.seq = Some(next);
            }
            let steps = st.seq.map_or(0, |x| x.3);
            fire(&mut s, 1, q.weight, steps >= q.min_run, f64::from(steps));
        }
        if let Some(b) = &f.breadth {
            let g = hash_of(group(path));
            st.groups.retain(|(_, t)| now_ms.saturating_sub(*t) < b.window_ms);
            match st.groups.iter_mut().find(|(h, _)| *h == g) {
                Some(e) => e.1 = now_ms,
                None => {
                    if st.groups.len() > b.max_groups as usize {
                        st.groups.remove(0);
                    }
                    st.groups.push((g, now_ms));
                }
            }
            let n = st.groups.len();
            fire(&mut s, 2, b.weight, n > b.max_groups as usize, n as f64);
        }
        if let Some(t) = &f.timing {
            st.recent.push_back(now_ms);
            while st.recent.len() > t.intervals as usize + 1 {
                st.recent.pop_front();
            }
            let (on, cv) = timing(&st.recent, t);
            fire(&mut s, 3, t.weight, on, cv);
        }
        if let Some(a) = &f.auth_failures {
            if let Some(code) = status {
                st.streak = if matches!(code, 401 | 403) { st.streak.saturating_add(1) } else { 0 };
            }
            fire(&mut s, 4, a.weight, st.streak >= a.streak, f64::from(st.streak));
        }
        s
    }

    /// Records the status a request of `key` was answered with (401/403 lengthen the
    /// `auth_failures` streak, anything else ends it). A key not seen yet is added.
    pub fn status(&mut self, key: &str, status: u16) {
        let Some(st) = self.state(key) else { return };
        st.streak = if matches!(status, 401 | 403) { st.streak.saturating_add(1) } else { 0 };
    }

    /// Forgets a key (after red: it starts again from nothing).
    pub fn forget(&mut self, key: &str) {
        if self.keys.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The finding of a score in amber or red: the event (`anomaly_amber`, `anomaly_red`), the deny
/// a red zone answers with (401 `session_expired`, exactly what a revoked session gets: the
/// caller learns nothing), and the detail: zone, score, the features that fired with their
/// values, the key kind (never the key itself: it may be a session id).
pub fn finding(rule: &AnomalyRule, zone: Zone, score: &Score) -> Finding {
    let event = if zone == Zone::Red { EventType::AnomalyRed } else { EventType::AnomalyAmber };
    let mut detail = serde_json::Map::new();
    let features: serde_json::Map<String, serde_json::Value> =
        score.fired().map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect();
    detail.insert("zone".into(), zone.as_str().into());
    detail.insert("score".into(), score.total.into());
    detail.insert("amber".into(), rule.amber.into());
    detail.insert("red".into(), rule.red.into());
    detail.insert("features".into(), features.into());
    detail.insert("key".into(), rule.key.as_str().into());
    Finding {
        rule_id: rule.id.clone(),
        mode: rule.mode,
        event,
        severity: event.default_severity(),
        deny: Deny::new(DenyCode::SessionExpired, "anomaly_red"),
        detail,
    }
}

/// Records one feature's value, and its weight when it fired.
fn fire(s: &mut Score, i: usize, w: u32, on: bool, v: f64) {
    s.values[i] = v;
    if on {
        s.fired |= 1 << i;
        s.total = s.total.saturating_add(w);
    }
}

/// Whether the last intervals are all sub-second and regular; and their coefficient of variation.
fn timing(recent: &VecDeque<u64>, t: &Timing) -> (bool, f64) {
    if recent.len() < t.intervals as usize + 1 {
        return (false, 0.0);
    }
    let gaps = recent.iter().zip(recent.iter().skip(1)).map(|(a, b)| b.saturating_sub(*a) as f64);
    let (mut n, mut sum, mut sq, mut max) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for g in gaps {
        n += 1.0;
        sum += g;
        sq += g * g;
        max = max.max(g);
    }
    let mean = sum / n;
    let var = (sq / n - mean * mean).max(0.0);
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
    (max < TIMING_MAX_INTERVAL_MS as f64 && cv < t.max_cv, cv)
}

/// One raw feature entry.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    window: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_requests: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    min_run: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_groups: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    intervals: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    max_cv: Option<f64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    streak: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    velocity: Option<RawFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sequential: Option<RawFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    breadth: Option<RawFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timing: Option<RawFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_failures: Option<RawFeature>,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExempt {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subjects: Vec<String>,
}

/// One raw rule of the `anomaly:` list.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an anomaly rule: a mapping with `id`, `features`, `amber`, `red`")]
pub(crate) struct RawAnomaly {
    id: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    key: KeyKind,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    features: Option<RawFeatures>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    amber: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    red: Option<u32>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    amber_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exempt: Option<RawExempt>,
}

impl RawRule for RawAnomaly {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: Some(Severity::Warning) }
    }
}

/// Compiles the `anomaly:` list of one file.
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawAnomaly], out: &mut Vec<AnomalyRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| Some(one(c, meta, r)));
}

/// The checked keys of one feature.
struct Feat<'c, 'x, 'a> {
    c: &'c mut Checker<'x, 'a>,
    name: &'static str,
    raw: &'c RawFeature,
}

impl Feat<'_, '_, '_> {
    fn weight(&mut self) -> u32 {
        match self.raw.weight {
            Some(w) if (1..=1000).contains(&w) => w,
            Some(_) => {
                self.c.error(&format!("features.{}.weight", self.name), "must be 1 to 1000");
                1
            }
            None => {
                self.c.error(&format!("features.{}.weight", self.name), "`weight` is required");
                1
            }
        }
    }

    fn count(&mut self, key: &str, v: Option<u32>, min: u32) -> u32 {
        let path = format!("features.{}.{key}", self.name);
        match v {
            Some(n) if (min..=MAX_COUNT).contains(&n) => n,
            Some(_) => {
                self.c.error(&path, format!("must be {min} to {MAX_COUNT}"));
                min
            }
            None => {
                self.c.error(&path, format!("`{key}` is required for {}", self.name));
                min
            }
        }
    }

    fn window_ms(&mut self) -> u64 {
        let path = format!("features.{}.window", self.name);
        let Some(s) = &self.raw.window else {
            self.c.error(&path, "`window` is required: write <n><unit> like `10s` or `1m`");
            return 1000;
        };
        match period_secs(s.trim()) {
            Some(Some(n)) if (1..=MAX_WINDOW_SECS).contains(&n) => n * 1000,
            Some(_) => {
                self.c.error(&path, format!("`{s}` is out of range: 1s to {MAX_WINDOW_SECS}s"));
                1000
            }
            None => {
                let msg = format!("`{}` is not a duration: write <n><unit> like `10s` or `1m`", s.escape_debug());
                self.c.error(&path, msg);
                1000
            }
        }
    }

    /// Keys this feature does not take.
    fn only(&mut self, allowed: &[&str]) {
        let r = self.raw;
        let given = [
            ("window", r.window.is_some()),
            ("max_requests", r.max_requests.is_some()),
            ("min_run", r.min_run.is_some()),
            ("max_groups", r.max_groups.is_some()),
            ("intervals", r.intervals.is_some()),
            ("max_cv", r.max_cv.is_some()),
            ("streak", r.streak.is_some()),
        ];
        for (k, set) in given {
            if set && !allowed.contains(&k) {
                let msg = format!("{} takes `weight`, {}; not `{k}`", self.name, allowed.join(", "));
                self.c.error(&format!("features.{}.{k}", self.name), msg);
            }
        }
    }
}

fn one(c: &mut Checker<'_, '_>, meta: RuleMeta, r: &RawAnomaly) -> AnomalyRule {
    let routes = c.routes("routes", r.routes.as_ref());
    let mut features = Features::default();
    match &r.features {
        None => c.error("features", "list at least one feature: velocity, sequential, breadth, timing, auth_failures"),
        Some(raw) => {
            if let Some(x) = &raw.velocity {
                let mut f = Feat { c: &mut *c, name: "velocity", raw: x };
                f.only(&["window", "max_requests"]);
                features.velocity = Some(Velocity {
                    weight: f.weight(),
                    window_ms: f.window_ms(),
                    max_requests: f.count("max_requests", x.max_requests, 1),
                });
            }
            if let Some(x) = &raw.sequential {
                let mut f = Feat { c: &mut *c, name: "sequential", raw: x };
                f.only(&["window", "min_run"]);
                features.sequential = Some(Sequential {
                    weight: f.weight(),
                    window_ms: f.window_ms(),
                    min_run: f.count("min_run", x.min_run, 2),
                });
            }
            if let Some(x) = &raw.breadth {
                let mut f = Feat { c: &mut *c, name: "breadth", raw: x };
                f.only(&["window", "max_groups"]);
                features.breadth = Some(Breadth {
                    weight: f.weight(),
                    window_ms: f.window_ms(),
                    max_groups: f.count("max_groups", x.max_groups, 1),
                });
            }
            if let Some(x) = &raw.timing {
                let mut f = Feat { c: &mut *c, name: "timing", raw: x };
                f.only(&["intervals", "max_cv"]);
                let weight = f.weight();
                let intervals = f.count("intervals", x.intervals, 3);
                let max_cv = match x.max_cv {
                    Some(v) if v > 0.0 && v <= 1.0 => v,
                    Some(_) => {
                        c.error("features.timing.max_cv", "must be over 0 and at most 1");
                        0.1
                    }
                    None => {
                        c.error("features.timing.max_cv", "`max_cv` is required for timing, e.g. 0.1");
                        0.1
                    }
                };
                features.timing = Some(Timing { weight, intervals, max_cv });
            }
            if let Some(x) = &raw.auth_failures {
                let mut f = Feat { c: &mut *c, name: "auth_failures", raw: x };
                f.only(&["streak"]);
                features.auth_failures =
                    Some(AuthFailures { weight: f.weight(), streak: f.count("streak", x.streak, 1) });
            }
            if features == Features::default() {
                c.error("features", "list at least one feature: velocity, sequential, breadth, timing, auth_failures");
            }
        }
    }
    let amber = r.amber.unwrap_or_else(|| {
        c.error("amber", "`amber` is required: the score at which requests are delayed");
        1
    });
    let red = r.red.unwrap_or_else(|| {
        c.error("red", "`red` is required: the score at which the session is revoked");
        2
    });
    if amber == 0 {
        c.error("amber", "must be at least 1");
    }
    if red <= amber {
        c.error("red", format!("must be over amber ({amber})"));
    }
    let amber_delay_ms = match r.amber_delay_ms {
        None => DEFAULT_DELAY_MS,
        Some(ms) if ms <= MAX_DELAY_MS => ms,
        Some(_) => {
            c.error("amber_delay_ms", format!("at most {MAX_DELAY_MS}"));
            DEFAULT_DELAY_MS
        }
    };
    let mut nets = Vec::new();
    let (mut cidrs, mut subjects): (&[String], &[String]) = (&[], &[]);
    if let Some(e) = &r.exempt {
        (cidrs, subjects) = (&e.cidrs, &e.subjects);
    }
    for (j, s) in cidrs.iter().enumerate() {
        match parse_net(s) {
            Some(n) => nets.push(n),
            None => c.error(&format!("exempt.cidrs[{j}]"), format!("`{s}` is not an IP address or CIDR")),
        }
    }
    for (j, s) in subjects.iter().enumerate() {
        if s.is_empty() {
            c.error(&format!("exempt.subjects[{j}]"), "an empty subject");
        }
    }
    AnomalyRule {
        id: meta.id,
        hash: meta.hash,
        mode: meta.mode,
        key: r.key,
        routes,
        features,
        amber,
        red,
        amber_delay_ms,
        exempt_cidrs: IpSet::new(nets),
        exempt_subjects: subjects.to_vec(),
    }
}

#[cfg(test)]
mod tests;
