//! The `quotas:` section: compiled rules, the counters ([`QuotaBook`]), calendar periods in a
//! fixed UTC offset, and the per-request check. Documented in the parent module
//! ([`crate::limits`]).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::aggregate::{Aggregator, Emit, Origin};
use super::{KeyInput, LimitCheck, Now};
use crate::deny::{Deny, DenyCode};
use crate::identity::Identity;
use crate::schema::{compile_section, present, route_matches, Common, Ctx, RawRule, MAX_ID_LEN};
use crate::verdict::{EventType, Finding, Mode, Severity};
use crate::view::RequestView;

/// The rule kind name, as in [`crate::schema::RuleInfo::kind`].
pub const KIND: &str = "quotas";

/// The event every quota finding becomes.
pub const EVENT: EventType = EventType::QuotaExceeded;

/// Default of `thresholds`.
pub const DEFAULT_THRESHOLDS: [u8; 3] = [80, 90, 100];

/// Largest `limit`.
pub const MAX_LIMIT: u64 = 1_000_000_000_000;

/// Default bound on the number of counters of a [`QuotaBook`].
pub const DEFAULT_MAX_COUNTERS: usize = 100_000;

/// Longest tenant or subject a counter is kept for, in bytes (longer ones are not counted).
pub const MAX_NAME_LEN: usize = 256;

/// Format tag of the persisted book.
pub const FORMAT: &str = "portcullis.quotas";

/// Version of the persisted book.
pub const FORMAT_VERSION: u32 = 1;

const SHARDS: usize = 16;
const DAY: i64 = 86_400;

/// Whose requests a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Every request of the tenant.
    #[default]
    Tenant,
    /// Every request of one subject within its tenant.
    Subject,
}

impl Per {
    /// `tenant` or `subject`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Per::Tenant => "tenant",
            Per::Subject => "subject",
        }
    }
}

/// The calendar period a quota counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A calendar month.
    Month,
    /// A calendar day.
    Day,
    /// An hour.
    Hour,
}

impl Period {
    /// `month`, `day` or `hour`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Day => "day",
            Period::Hour => "hour",
        }
    }

    /// The period containing `now` (Unix seconds) in the zone `offset` seconds east of UTC:
    /// `(start, end)` in Unix seconds, `start ≤ now < end`.
    pub fn bounds(self, now: i64, offset: i64) -> (i64, i64) {
        let local = now.saturating_add(offset);
        let (start, end) = match self {
            Period::Hour => {
                let s = local.div_euclid(3600) * 3600;
                (s, s + 3600)
            }
            Period::Day => {
                let s = local.div_euclid(DAY) * DAY;
                (s, s + DAY)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(local.div_euclid(DAY));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1) * DAY, days_from_civil(ny, nm, 1) * DAY)
            }
        };
        (start - offset, end - offset)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01): `(year, month 1..=12, day 1..=31)`.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// `2026-02-01T00:00:00Z`.
pub fn rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(DAY));
    let s = unix.rem_euclid(DAY);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// `Z`, `UTC`, `+03:00`, `-05:30`, `+0545` → seconds east of UTC (−12:00 to +14:00).
pub fn parse_offset(s: &str) -> Result<i64, String> {
    let bad = || format!("`{}` is not a UTC offset: write `+03:00`, `-05:30` or `UTC`", s.escape_debug());
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    if !s.is_ascii() {
        return Err(bad());
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None if rest.len() == 2 => (rest, "00"),
        None => return Err(bad()),
    };
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 {
        return Err(bad());
    }
    let secs = sign * (h * 3600 + m * 60);
    if !(-12 * 3600..=14 * 3600).contains(&secs) {
        return Err(format!("`{s}` is out of range: UTC offsets run from -12:00 to +14:00"));
    }
    Ok(secs)
}

fn offset_string(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// One raw rule of the `quotas:` list. Serialized (JSON) for the rule hash: absent optional keys
/// are skipped so that adding keys to the schema keeps existing hashes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a quotas rule: a mapping with `id`, `limit` and `period`")]
pub(crate) struct RawQuota {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    per: Option<Per>,
    limit: u64,
    period: Period,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    utc_offset: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    thresholds: Option<Vec<u64>>,
}

/// One compiled quota rule.
#[derive(Debug)]
pub struct QuotaRule {
    id: Arc<str>,
    hash: Box<str>,
    mode: Mode,
    routes: Option<Box<[Box<str>]>>,
    per: Per,
    limit: u64,
    period: Period,
    offset: i64,
    /// Ascending, distinct, 1..=100.
    thresholds: Vec<u8>,
    origin: Arc<Origin>,
}

impl QuotaRule {
    /// The rule id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The rule hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `enforce` or `monitor`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whose requests it counts.
    pub fn per(&self) -> Per {
        self.per
    }

    /// Requests per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The zone's offset east of UTC, in seconds.
    pub fn utc_offset_secs(&self) -> i64 {
        self.offset
    }

    /// The threshold percentages, ascending.
    pub fn thresholds(&self) -> &[u8] {
        &self.thresholds
    }

    /// The period containing `now` (Unix seconds): `(start, end)`.
    pub fn bounds(&self, now: u64) -> (i64, i64) {
        self.period.bounds(unix(now), self.offset)
    }

    /// Whether the rule applies to the request's route.
    pub fn applies(&self, view: &RequestView<'_>) -> bool {
        route_matches(self.routes.as_deref(), view.route)
    }

    /// The counter key of an identity: `(tenant, subject)`, or `None` when this rule does not
    /// count it (no tenant; or a tenant or subject over [`MAX_NAME_LEN`] bytes).
    pub fn key_of<'i>(&self, id: &'i Identity) -> Option<(&'i str, Option<&'i str>)> {
        let tenant = id.tenant.as_deref().filter(|t| !t.is_empty() && t.len() <= MAX_NAME_LEN)?;
        match self.per {
            Per::Tenant => Some((tenant, None)),
            Per::Subject => {
                let subject = Some(id.subject.as_str()).filter(|s| !s.is_empty() && s.len() <= MAX_NAME_LEN)?;
                Some((tenant, Some(subject)))
            }
        }
    }

    /// The highest threshold `used` reaches, or 0.
    fn level(&self, used: u64) -> u8 {
        let pct = u128::from(used) * 100;
        self.thresholds.iter().rev().copied().find(|&t| pct >= u128::from(t) * u128::from(self.limit)).unwrap_or(0)
    }

    fn detail(
        &self,
        tenant: &str,
        subject: Option<&str>,
        used: u64,
        bounds: (i64, i64),
    ) -> Map<String, serde_json::Value> {
        let mut d = Map::new();
        d.insert("tenant".into(), json!(tenant));
        if let Some(s) = subject {
            d.insert("subject".into(), json!(s));
        }
        d.insert("per".into(), json!(self.per.as_str()));
        d.insert("used".into(), json!(used));
        d.insert("limit".into(), json!(self.limit));
        d.insert("period".into(), json!(self.period.as_str()));
        d.insert("utc_offset".into(), json!(offset_string(self.offset)));
        d.insert("period_start".into(), json!(bounds.0));
        d.insert("resets_at".into(), json!(bounds.1));
        d.insert("resets_at_utc".into(), json!(rfc3339(bounds.1)));
        d
    }

    fn policy(&self, bounds: (i64, i64)) -> String {
        format!("\"{}\";q={};w={}", self.id, self.limit, bounds.1 - bounds.0)
    }
}

fn unix(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX / 2)
}

/// The compiled `quotas:` rules of a snapshot. `Send + Sync`.
#[derive(Debug, Default)]
pub struct Quotas {
    rules: Vec<QuotaRule>,
}

/// One line of `GET /v1/quotas/{tenant}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The rule.
    pub rule: String,
    /// `tenant` or `subject`.
    pub per: Per,
    /// The subject, for `per: subject`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Requests counted this period.
    pub used: u64,
    /// The limit.
    pub limit: u64,
    /// `limit - used`, at least 0.
    pub remaining: u64,
    /// `month`, `day` or `hour`.
    pub period: Period,
    /// Start of the period (Unix seconds).
    pub period_start: i64,
    /// When the counter resets (Unix seconds).
    pub resets_at: i64,
    /// `resets_at` as RFC 3339 UTC.
    pub resets_at_utc: String,
    /// The rule's mode.
    pub mode: Mode,
}

impl Quotas {
    pub(crate) fn new(rules: Vec<QuotaRule>) -> Self {
        Quotas { rules }
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[QuotaRule] {
        &self.rules
    }

    /// Counts the request against every quota that applies to it (see the module doc).
    /// `enforcement` is the `quota_enforcement` flag: when on, an `enforce` rule whose quota is
    /// used up refuses the request with 402 `quota_exceeded` (and it is not counted); when off,
    /// quotas only count. Threshold crossings come back as flagged findings
    /// (`outcome.flagged`); the refusal, as `outcome.deny` (its event aggregated per tenant or
    /// subject and window, like rate-limit hits).
    pub fn check(
        &self,
        book: &QuotaBook,
        input: &KeyInput<'_>,
        now: Now,
        enforcement: bool,
        agg: &Aggregator,
    ) -> LimitCheck {
        let mut out = LimitCheck::default();
        let Some(id) = input.identity else { return out };
        if self.rules.is_empty() {
            return out;
        }
        let applicable =
            || self.rules.iter().filter(|r| r.applies(input.view)).filter_map(|r| r.key_of(id).map(|k| (r, k)));
        // First: does any enforced quota refuse the request? Then nothing is counted. When
        // several do, the latest reset is the one to wait for.
        if enforcement {
            let mut refused: Option<Exhausted<'_>> = None;
            for (rule, (tenant, subject)) in applicable() {
                let used = book.peek(rule, tenant, subject, now.unix_secs);
                if used < rule.limit {
                    continue;
                }
                let e = Exhausted { rule, tenant, subject, used, bounds: rule.bounds(now.unix_secs) };
                match rule.mode {
                    Mode::Enforce => {
                        if refused.as_ref().is_none_or(|r| e.bounds.1 > r.bounds.1) {
                            refused = Some(e);
                        }
                    }
                    Mode::Monitor => {
                        let (f, due) = e.refusal(now, agg);
                        if due {
                            let _ = out.outcome.add(f);
                        }
                    }
                }
            }
            if let Some(e) = refused {
                let (f, due) = e.refusal(now, agg);
                out.deny_event = due;
                let _ = out.outcome.add(f);
                return out;
            }
        }
        for (rule, (tenant, subject)) in applicable() {
            let o = book.record(rule, tenant, subject, now.unix_secs, false);
            if let Some(threshold) = o.crossed {
                let mut detail = rule.detail(tenant, subject, o.used, (o.period_start, o.resets_at));
                detail.insert("threshold".into(), json!(threshold));
                detail.insert("enforcement".into(), json!(enforcement));
                detail.insert("rule_mode".into(), json!(rule.mode.as_str()));
                // A notice: reported, never blocking, whatever the rule's mode.
                let _ = out.outcome.add(Finding {
                    rule_id: rule.id.clone(),
                    mode: Mode::Monitor,
                    event: EVENT,
                    severity: rule.origin.severity,
                    deny: Deny::new(DenyCode::QuotaExceeded, "quota_threshold"),
                    detail,
                });
            }
        }
        out
    }

    /// The usage of every quota of `tenant` at `now` (Unix seconds), for
    /// `GET /v1/quotas/{tenant}`: one line per `per: tenant` rule (0 when nothing was counted
    /// yet this period), one per subject counted this period for `per: subject` rules.
    pub fn usage(&self, book: &QuotaBook, tenant: &str, now: u64) -> Vec<Usage> {
        let counters = book.counters_of(tenant);
        let mut out = Vec::new();
        for rule in &self.rules {
            let bounds = rule.bounds(now);
            let line = |subject: Option<&str>, used: u64| Usage {
                rule: rule.id.to_string(),
                per: rule.per,
                subject: subject.map(str::to_owned),
                used,
                limit: rule.limit,
                remaining: rule.limit.saturating_sub(used),
                period: rule.period,
                period_start: bounds.0,
                resets_at: bounds.1,
                resets_at_utc: rfc3339(bounds.1),
                mode: rule.mode,
            };
            let current = counters
                .iter()
                .filter(|c| *c.rule == *rule.id && c.subject.is_some() == (rule.per == Per::Subject))
                .filter(|c| (c.period_start, c.resets_at) == bounds);
            match rule.per {
                Per::Tenant => out.push(line(None, current.map(|c| c.used).sum())),
                Per::Subject => {
                    let mut lines: Vec<Usage> = current.map(|c| line(c.subject.as_deref(), c.used)).collect();
                    lines.sort_by(|a, b| a.subject.cmp(&b.subject));
                    out.extend(lines);
                }
            }
        }
        out
    }
}

/// A used-up quota of one request.
struct Exhausted<'a> {
    rule: &'a QuotaRule,
    tenant: &'a str,
    subject: Option<&'a str>,
    used: u64,
    bounds: (i64, i64),
}

impl Exhausted<'_> {
    /// The refusal (enforce) or would-be refusal (monitor), and whether its event is due (the
    /// aggregator counts the rest per tenant or subject and window).
    fn refusal(&self, now: Now, agg: &Aggregator) -> (Finding, bool) {
        let Exhausted { rule, tenant, subject, used, bounds } = *self;
        let key = counter_key("", tenant, subject);
        let label = || match subject {
            Some(s) => format!("tenant={}, subject={}", cut(tenant), cut(s)),
            None => format!("tenant={}", cut(tenant)),
        };
        let due = agg.hit(&rule.origin, agg.label_hash(key.as_bytes()), now.mono_ns, label) == Emit::First;
        let retry = u64::try_from(bounds.1 - unix(now.unix_secs)).unwrap_or(0).max(1);
        let deny = Deny::new(DenyCode::QuotaExceeded, "quota_exhausted")
            .retry_after(retry)
            .with_header("ratelimit-policy", rule.policy(bounds))
            .with_header("ratelimit", format!("\"{}\";r=0;t={retry}", rule.id));
        let detail = if due {
            rule.detail(tenant, subject, used, bounds)
        } else {
            let mut d = Map::new();
            d.insert("aggregated".into(), json!(true));
            d
        };
        let f = Finding {
            rule_id: rule.id.clone(),
            mode: rule.mode,
            event: EVENT,
            severity: rule.origin.severity,
            deny,
            detail,
        };
        (f, due)
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl RawRule for RawQuota {
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, mode: self.mode, severity: self.severity }
    }
}

/// Compiles the `quotas:` list of one file (`section` is its key, for error paths).
pub(crate) fn compile(ctx: &mut Ctx<'_>, section: &str, raw: &[RawQuota], out: &mut Vec<QuotaRule>) {
    compile_section(ctx, KIND, section, raw, out, |c, meta, r| {
        let routes = c.routes("routes", r.routes.as_ref());
        if !(1..=MAX_LIMIT).contains(&r.limit) {
            c.error("limit", format!("`limit` must be between 1 and {MAX_LIMIT}, got {}", r.limit));
        }
        let offset = match &r.utc_offset {
            None => 0,
            Some(s) => c.result("utc_offset", parse_offset(s)).unwrap_or(0),
        };
        let thresholds = match &r.thresholds {
            None => DEFAULT_THRESHOLDS.to_vec(),
            Some(list) => {
                let mut out: Vec<u8> = Vec::with_capacity(list.len());
                for (j, &t) in list.iter().enumerate() {
                    match u8::try_from(t) {
                        Ok(t) if (1..=100).contains(&t) && !out.contains(&t) => out.push(t),
                        Ok(t) if out.contains(&t) => {
                            c.error(&format!("thresholds[{j}]"), format!("{t} is listed twice"))
                        }
                        _ => c.error(
                            &format!("thresholds[{j}]"),
                            format!("a threshold is a percentage between 1 and 100, got {t}"),
                        ),
                    }
                }
                out.sort_unstable();
                out
            }
        };
        if c.ok {
            let severity = meta.severity.unwrap_or(EVENT.default_severity());
            return Some(QuotaRule {
                origin: Arc::new(Origin { rule_id: meta.id.clone(), event: EVENT, mode: meta.mode, severity }),
                id: meta.id,
                hash: meta.hash.into(),
                mode: meta.mode,
                routes,
                per: r.per.unwrap_or_default(),
                limit: r.limit,
                period: r.period,
                offset,
                thresholds,
            });
        }
        None
    });
}

/// One counter to carry to the fleet store: add `delta`, read the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSync {
    /// `<tenant hash>:<counter hash>:<period start>` (hex SHA-256 prefixes): the store's key
    /// suffix; a tenant's keys share a prefix, so a reset finds them.
    pub store_key: String,
    /// The tenant's hash, as in `store_key`.
    pub tenant_hash: String,
    /// The counter (rule, tenant, subject).
    counter: String,
    period_start: i64,
    /// When the period ends (Unix seconds): the store's key expires a day later.
    pub resets_at: i64,
    /// Counted here since the last sync.
    pub delta: u64,
    used: u64,
}

/// The first 8 bytes of SHA-256, hex: the fleet store's name for a tenant or counter.
pub fn short_hash(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b).get(..8).unwrap_or_default())
}

/// What one [`QuotaBook::record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaOutcome {
    /// Requests counted this period (after this one, when it was counted).
    pub used: u64,
    /// The rule's limit.
    pub limit: u64,
    /// Start of the period (Unix seconds).
    pub period_start: i64,
    /// When the counter resets (Unix seconds).
    pub resets_at: i64,
    /// The threshold (percent) this request crossed, once per threshold and period.
    pub crossed: Option<u8>,
    /// The quota was already used up before this request.
    pub exhausted: bool,
    /// This request was counted (false when refused, or untracked).
    pub counted: bool,
    /// The book is full: this key has no counter, the request was not counted (fail open).
    pub untracked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    period_start: i64,
    resets_at: i64,
    used: u64,
    /// The highest threshold reported this period.
    notified: u8,
    /// Fleet mode: `used` as the fleet store last counted it (`used − pushed`: counted here,
    /// not yet added to the fleet's counter).
    pushed: u64,
}

#[derive(Default)]
struct BookShard {
    counters: HashMap<Box<str>, Counter>,
    generation: u64,
}

/// The quota counters: gateway-wide (not per snapshot), keyed by rule id, tenant and subject,
/// persisted as JSON. Bounded; `Send + Sync`. See the module doc.
pub struct QuotaBook {
    shards: Box<[Mutex<BookShard>]>,
    hasher: RandomState,
    per_shard: usize,
    untracked: AtomicU64,
}

impl std::fmt::Debug for QuotaBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaBook").field("max_counters", &self.max_counters()).finish_non_exhaustive()
    }
}

impl Default for QuotaBook {
    fn default() -> Self {
        QuotaBook::new(DEFAULT_MAX_COUNTERS)
    }
}

/// One counter as persisted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterRecord {
    rule: String,
    tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    period_start: i64,
    resets_at: i64,
    used: u64,
    #[serde(default)]
    notified: u8,
    /// Fleet mode: counted here and not yet added to the fleet's counter (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookFile {
    format: String,
    version: u32,
    counters: Vec<CounterRecord>,
}

/// A counter of one tenant, for [`Quotas::usage`].
struct TenantCounter {
    rule: String,
    subject: Option<String>,
    period_start: i64,
    resets_at: i64,
    used: u64,
}

impl QuotaBook {
    /// An empty book of at most about `max_counters` counters (at least 16; split over 16
    /// shards by tenant).
    pub fn new(max_counters: usize) -> QuotaBook {
        QuotaBook {
            shards: (0..SHARDS).map(|_| Mutex::new(BookShard::default())).collect(),
            hasher: RandomState::new(),
            per_shard: max_counters.div_ceil(SHARDS).max(1),
            untracked: AtomicU64::new(0),
        }
    }

    /// The bound on counters.
    pub fn max_counters(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Counts one request of `tenant` (and `subject`, for `per: subject` rules) against `rule`
    /// at `now` (Unix seconds). A counter from an earlier period restarts at 0 first. With
    /// `block`, a used-up quota is not counted further (`exhausted`, not `counted`).
    pub fn record(&self, rule: &QuotaRule, tenant: &str, subject: Option<&str>, now: u64, block: bool) -> QuotaOutcome {
        let bounds = rule.bounds(now);
        let mut out = QuotaOutcome {
            used: 0,
            limit: rule.limit,
            period_start: bounds.0,
            resets_at: bounds.1,
            crossed: None,
            exhausted: false,
            counted: false,
            untracked: false,
        };
        let key = counter_key(&rule.id, tenant, subject);
        let Some(shard) = self.shard(tenant) else { return out };
        let mut shard = shard.lock();
        let shard = &mut *shard;
        if !shard.counters.contains_key(key.as_str()) {
            if shard.counters.len() >= self.per_shard {
                // Make room: counters of finished periods are worth nothing.
                let t = unix(now);
                let before = shard.counters.len();
                shard.counters.retain(|_, c| c.resets_at > t);
                if shard.counters.len() != before {
                    shard.generation += 1;
                }
            }
            if shard.counters.len() >= self.per_shard {
                self.untracked.fetch_add(1, Relaxed);
                out.untracked = true;
                return out;
            }
            shard.counters.insert(
                key.clone().into_boxed_str(),
                Counter { period_start: bounds.0, resets_at: bounds.1, used: 0, notified: 0, pushed: 0 },
            );
        }
        let Some(c) = shard.counters.get_mut(key.as_str()) else { return out };
        current_period(c, bounds, now);
        out.period_start = c.period_start;
        out.resets_at = c.resets_at;
        out.exhausted = c.used >= rule.limit;
        out.used = c.used;
        if block && out.exhausted {
            return out;
        }
        c.used = c.used.saturating_add(1);
        out.used = c.used;
        out.counted = true;
        let level = rule.level(c.used);
        if level > c.notified {
            out.crossed = Some(level);
        }
        // Also re-arms the lower thresholds after the limit was raised mid-period.
        c.notified = level;
        shard.generation += 1;
        out
    }

    /// Requests counted this period for the key, without counting.
    pub fn peek(&self, rule: &QuotaRule, tenant: &str, subject: Option<&str>, now: u64) -> u64 {
        let bounds = rule.bounds(now);
        let key = counter_key(&rule.id, tenant, subject);
        let Some(shard) = self.shard(tenant) else { return 0 };
        let shard = shard.lock();
        match shard.counters.get(key.as_str()) {
            Some(c) if (c.period_start, c.resets_at) == bounds || unix(now) < c.period_start => c.used,
            _ => 0,
        }
    }

    /// Resets every counter of `tenant` (every rule, every subject): `POST
    /// /v1/quotas/{tenant}/reset`. Returns how many counters were removed.
    pub fn reset(&self, tenant: &str) -> usize {
        let Some(shard) = self.shard(tenant) else { return 0 };
        let mut shard = shard.lock();
        let before = shard.counters.len();
        shard.counters.retain(|k, _| parse_key(k).is_none_or(|(_, t, _)| t != tenant));
        let removed = before - shard.counters.len();
        if removed > 0 {
            shard.generation += 1;
        }
        removed
    }

    /// The tenants with at least one counter, sorted, at most `max` (`GET /v1/quotas`), and
    /// whether there were more.
    pub fn tenants(&self, max: usize) -> (Vec<String>, bool) {
        let mut all = std::collections::BTreeSet::new();
        for shard in self.shards.iter() {
            for k in shard.lock().counters.keys() {
                if let Some((_, t, _)) = parse_key(k) {
                    all.insert(t.to_owned());
                }
            }
        }
        let more = all.len() > max;
        (all.into_iter().take(max).collect(), more)
    }

    /// Counters held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().counters.len()).sum()
    }

    /// True when no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests not counted because the book was full (a metric; also `untracked` in
    /// [`QuotaOutcome`]).
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Relaxed)
    }

    /// A number that grows with every change. To persist in batches: read it, then
    /// [`QuotaBook::to_json`], write, remember the number; write again once it differs.
    pub fn generation(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().generation).sum()
    }

    /// The whole book as JSON (`{"format":"portcullis.quotas","version":1,"counters":[…]}`),
    /// counters sorted by rule, tenant and subject. Locks one shard at a time.
    pub fn to_json(&self) -> String {
        let mut counters = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (k, c) in &shard.counters {
                if let Some((rule, tenant, subject)) = parse_key(k) {
                    counters.push(CounterRecord {
                        rule: rule.to_owned(),
                        tenant: tenant.to_owned(),
                        subject: subject.map(str::to_owned),
                        period_start: c.period_start,
                        resets_at: c.resets_at,
                        used: c.used,
                        notified: c.notified,
                        pending: Some(c.used.saturating_sub(c.pushed)).filter(|&p| p > 0),
                    });
                }
            }
        }
        counters.sort_by(|a, b| (&a.rule, &a.tenant, &a.subject).cmp(&(&b.rule, &b.tenant, &b.subject)));
        let file = BookFile { format: FORMAT.into(), version: FORMAT_VERSION, counters };
        serde_json::to_string(&file).unwrap_or_default()
    }

    /// A book from [`QuotaBook::to_json`]'s output, bounded like [`QuotaBook::new`]. Anything
    /// wrong (not JSON, another format or version, an unknown key, an invalid or duplicate
    /// counter, more counters than fit) is an error naming it; nothing is half-loaded.
    pub fn from_json(text: &str, max_counters: usize) -> Result<QuotaBook, String> {
        let file: BookFile = serde_json::from_str(text).map_err(|e| format!("not a quota book: {e}"))?;
        if file.format != FORMAT {
            return Err(format!("not a quota book: format `{}`, expected `{FORMAT}`", file.format.escape_debug()));
        }
        if file.version != FORMAT_VERSION {
            return Err(format!("unsupported quota book version {}; this build reads {FORMAT_VERSION}", file.version));
        }
        let book = QuotaBook::new(max_counters);
        let mut seen = HashSet::new();
        for (i, c) in file.counters.into_iter().enumerate() {
            let bad = |why: &str| format!("counters[{i}]: {why}");
            if c.rule.is_empty() || c.rule.len() > MAX_ID_LEN {
                return Err(bad("`rule` must be 1 to 64 bytes"));
            }
            if c.tenant.is_empty() || c.tenant.len() > MAX_NAME_LEN {
                return Err(bad("`tenant` must be 1 to 256 bytes"));
            }
            if c.subject.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_NAME_LEN) {
                return Err(bad("`subject` must be 1 to 256 bytes"));
            }
            if c.period_start >= c.resets_at {
                return Err(bad("`period_start` must be before `resets_at`"));
            }
            if c.notified > 100 {
                return Err(bad("`notified` must be a percentage"));
            }
            let key = counter_key(&c.rule, &c.tenant, c.subject.as_deref());
            if !seen.insert(key.clone()) {
                return Err(bad("duplicate counter"));
            }
            let Some(shard) = book.shard(&c.tenant) else { return Err(bad("no shard")) };
            let mut shard = shard.lock();
            if shard.counters.len() >= book.per_shard {
                return Err(format!("more counters than fit in a book of {}; raise the bound", book.max_counters()));
            }
            shard.counters.insert(
                key.into_boxed_str(),
                Counter {
                    period_start: c.period_start,
                    resets_at: c.resets_at,
                    used: c.used,
                    notified: c.notified,
                    pushed: c.pending.map_or(c.used, |p| c.used.saturating_sub(p)),
                },
            );
        }
        Ok(book)
    }

    fn counters_of(&self, tenant: &str) -> Vec<TenantCounter> {
        let Some(shard) = self.shard(tenant) else { return Vec::new() };
        let shard = shard.lock();
        shard
            .counters
            .iter()
            .filter_map(|(k, c)| {
                let (rule, t, subject) = parse_key(k)?;
                (t == tenant).then(|| TenantCounter {
                    rule: rule.to_owned(),
                    subject: subject.map(str::to_owned),
                    period_start: c.period_start,
                    resets_at: c.resets_at,
                    used: c.used,
                })
            })
            .collect()
    }

    /// Fleet mode: the counters of the current period counted here since they last met the
    /// fleet store (see [`QuotaSync`]).
    pub fn fleet_plan(&self, now: u64) -> Vec<QuotaSync> {
        let t = unix(now);
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (k, c) in &shard.counters {
                if c.used > c.pushed && c.resets_at > t && c.period_start <= t {
                    let Some((_, tenant, _)) = parse_key(k) else { continue };
                    out.push(QuotaSync {
                        store_key: format!(
                            "{}:{}:{}",
                            short_hash(tenant.as_bytes()),
                            short_hash(k.as_bytes()),
                            c.period_start
                        ),
                        tenant_hash: short_hash(tenant.as_bytes()),
                        counter: k.to_string(),
                        period_start: c.period_start,
                        resets_at: c.resets_at,
                        delta: c.used - c.pushed,
                        used: c.used,
                    });
                }
            }
        }
        out
    }

    /// Fleet mode: the fleet's totals after adding each item's `delta` (`None`: not added, e.g.
    /// a tampered value; counted again next time). Each counter becomes the fleet's total plus
    /// what was counted here meanwhile.
    pub fn fleet_apply(&self, items: &[QuotaSync], totals: &[Option<u64>]) {
        for (item, total) in items.iter().zip(totals) {
            let Some(total) = total else { continue };
            let Some((_, tenant, _)) = parse_key(&item.counter) else { continue };
            let Some(shard) = self.shard(tenant) else { continue };
            let mut shard = shard.lock();
            let Some(c) = shard.counters.get_mut(item.counter.as_str()) else { continue };
            if c.period_start != item.period_start || c.used < item.used {
                continue; // a new period or a reset meanwhile: the fleet's old total is not ours
            }
            let meanwhile = c.used - item.used;
            c.pushed = *total;
            c.used = total.saturating_add(meanwhile);
            shard.generation += 1;
        }
    }

    fn shard(&self, tenant: &str) -> Option<&Mutex<BookShard>> {
        let mut h = self.hasher.build_hasher();
        h.write(tenant.as_bytes());
        usize::try_from(h.finish() % SHARDS as u64).ok().and_then(|i| self.shards.get(i))
    }
}

/// Moves a counter to the period `bounds` when it belongs to another one (a new period, or a
/// rule whose period or offset changed). A counter of a period that has not started yet (the
/// clock stepped back) keeps counting where it is.
fn current_period(c: &mut Counter, bounds: (i64, i64), now: u64) {
    if (c.period_start, c.resets_at) != bounds && unix(now) >= c.period_start {
        *c = Counter { period_start: bounds.0, resets_at: bounds.1, used: 0, notified: 0, pushed: 0 };
    }
}

/// `<len>:<rule><len>:<tenant>[<len>:<subject>]`: unambiguous for any strings.
fn counter_key(rule: &str, tenant: &str, subject: Option<&str>) -> String {
    let mut k = String::with_capacity(rule.len() + tenant.len() + subject.map_or(0, str::len) + 12);
    let _ = write!(k, "{}:{rule}{}:{tenant}", rule.len(), tenant.len());
    if let Some(s) = subject {
        let _ = write!(k, "{}:{s}", s.len());
    }
    k
}

fn parse_key(k: &str) -> Option<(&str, &str, Option<&str>)> {
    fn take(s: &str) -> Option<(&str, &str)> {
        let (n, rest) = s.split_once(':')?;
        let n: usize = n.parse().ok()?;
        Some((rest.get(..n)?, rest.get(n..)?))
    }
    let (rule, rest) = take(k)?;
    let (tenant, rest) = take(rest)?;
    if rest.is_empty() {
        return Some((rule, tenant, None));
    }
    let (subject, rest) = take(rest)?;
    rest.is_empty().then_some((rule, tenant, Some(subject)))
}

#[cfg(test)]
mod tests;
