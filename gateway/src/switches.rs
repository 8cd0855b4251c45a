//! Runtime switches: maintenance mode, channel kill switches and runtime flags.
//!
//! The live state is an immutable [`SwitchState`] behind an [`ArcSwap`], so the request path reads
//! it without a lock and without allocating ([`Switches::maintenance`], [`Switches::channel_enabled`],
//! [`Switches::flag`]). Every change goes through one mutex: validate, build the next state
//! (version + 1), write it to `<state_dir>/switches.json` (temp file, fsync, rename, fsync of the
//! directory) and only then publish it. A change that cannot be persisted is not applied, so what
//! the gateway enforces is always what survives a restart or a `kill -9`.
//!
//! Initial state, lowest precedence first: built-in defaults, the environment as operators already
//! set it (`MAINTENANCE_MODE=true`, `WHATSAPP_ENABLED=false`, the [`FLAGS`] variables), then every
//! entry of `switches.json` that an operator set (or a maintenance ttl ended). A corrupt state file
//! stops the start: silently reopening a killed channel is worse than not starting.

use crate::metrics::{Declared, Def};
use arc_swap::ArcSwap;
use chrono::DateTime;
use ipnet::IpNet;
use parking_lot::Mutex;
use portcullis_rules::ipset::IpSet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

// The flags themselves are the rules crate's (the request pipeline's stages name them).
pub use portcullis_rules::flag::{Flag, FlagSet, FLAGS};

/// The environment variable that turns maintenance mode on at start.
pub const MAINTENANCE_ENV: &str = "MAINTENANCE_MODE";
/// `Retry-After` (seconds) when an operator does not give one.
pub const DEFAULT_RETRY_AFTER: u64 = 3600;
/// Largest accepted `retry_after`: seven days.
pub const MAX_RETRY_AFTER: u64 = 86_400 * 7;
/// Largest accepted `ttl_seconds`: thirty days.
pub const MAX_TTL_SECONDS: u64 = 86_400 * 30;
/// Longest accepted reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The state file's name inside `state_dir`.
pub const STATE_FILE: &str = "switches.json";
/// `set_by` of a maintenance that its ttl ended.
pub const TTL_ACTOR: &str = "ttl";

/// Where an entry's current value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Built-in default.
    #[default]
    Default,
    /// An environment variable read at start.
    Environment,
    /// An operator, through the control endpoint. Persisted; wins over the environment.
    Operator,
    /// A maintenance whose `ttl_seconds` ran out. Persisted; wins over the environment.
    Expired,
}

impl Source {
    /// True for values that were persisted on purpose and win over the environment at start.
    fn sticky(self) -> bool {
        matches!(self, Source::Operator | Source::Expired)
    }
}

/// Maintenance mode: every proxied request answers 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Maintenance {
    /// On or off.
    pub enabled: bool,
    /// Seconds sent in `Retry-After` and `retryAfter`.
    pub retry_after: u64,
    /// Why (free text from the operator, or the environment variable that set it).
    pub reason: Option<String>,
    /// Who: the control token's name, `ttl`, or none for defaults and the environment.
    pub set_by: Option<String>,
    /// When, RFC 3339 UTC.
    pub set_at: Option<String>,
    /// When maintenance ends by itself (RFC 3339 UTC), if a ttl was given.
    pub expires_at: Option<String>,
    /// Where the value came from.
    pub source: Source,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            enabled: false,
            retry_after: DEFAULT_RETRY_AFTER,
            reason: None,
            set_by: None,
            set_at: None,
            expires_at: None,
            source: Source::Default,
        }
    }
}

/// One channel kill switch or runtime flag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Toggle {
    /// On (channel served / feature active) or off.
    pub enabled: bool,
    /// Why.
    pub reason: Option<String>,
    /// Who: the control token's name, or none for defaults and the environment.
    pub set_by: Option<String>,
    /// When, RFC 3339 UTC.
    pub set_at: Option<String>,
    /// Where the value came from.
    pub source: Source,
}

/// Everything the switches decide, as persisted in `switches.json` and shown by `GET /v1/switches`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SwitchState {
    /// Incremented by every change (operator or ttl); persisted, so it survives restarts.
    pub version: u64,
    /// Maintenance mode.
    pub maintenance: Maintenance,
    /// Channel kill switches by channel name.
    pub channels: BTreeMap<String, Toggle>,
    /// Runtime flags by name (every entry of [`FLAGS`]).
    pub flags: BTreeMap<String, Toggle>,
    /// `seq` of the last audit record this state includes (the state is replayed from the audit
    /// log past it, see `txn`). Absent in files written before it existed: such a file is trusted
    /// as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// One switch change, as applied live and as replayed from its audit record (`target` + `new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchOp {
    /// `maintenance`: the new maintenance entry.
    Maintenance(Maintenance),
    /// `channel:<name>`: the channel's new entry.
    Channel(String, Toggle),
    /// `flag:<name>`: the flag's new entry.
    Flag(String, Toggle),
}

impl SwitchOp {
    /// The audit record's `target`.
    pub fn target(&self) -> String {
        match self {
            SwitchOp::Maintenance(_) => "maintenance".into(),
            SwitchOp::Channel(n, _) => format!("channel:{n}"),
            SwitchOp::Flag(n, _) => format!("flag:{n}"),
        }
    }

    /// The audit record's `new`.
    pub fn new_value(&self) -> Value {
        match self {
            SwitchOp::Maintenance(m) => to_value(m),
            SwitchOp::Channel(_, t) | SwitchOp::Flag(_, t) => to_value(t),
        }
    }

    /// The op an audit record's `target` and `new` describe.
    pub fn from_record(target: &str, new: &Value) -> Option<SwitchOp> {
        if target == "maintenance" {
            return serde_json::from_value(new.clone()).ok().map(SwitchOp::Maintenance);
        }
        let t = || serde_json::from_value::<Toggle>(new.clone()).ok();
        if let Some(n) = target.strip_prefix("channel:") {
            return t().map(|t| SwitchOp::Channel(n.to_string(), t));
        }
        let n = target.strip_prefix("flag:")?;
        t().map(|t| SwitchOp::Flag(n.to_string(), t))
    }
}

/// The body of `PUT /v1/switches/maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceChange {
    /// On or off.
    pub enabled: bool,
    /// `Retry-After` seconds, 1..=604800; [`DEFAULT_RETRY_AFTER`] when absent.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Why, at most 500 characters, no control characters.
    #[serde(default)]
    pub reason: Option<String>,
    /// Ends maintenance by itself after this many seconds, 1..=2592000; only with `enabled: true`.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// One applied change, for the audit log, the `switch_changed` event and the PUT answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// `maintenance`, `channel:<name>` or `flag:<name>`.
    pub target: String,
    /// The entry before the change.
    pub old: Value,
    /// The entry after the change.
    pub new: Value,
    /// The state's version after the change.
    pub version: u64,
}

/// Why a change was refused. Nothing was changed, in memory or on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchError {
    /// No route uses this channel (404).
    UnknownChannel {
        /// The channels that exist.
        known: Vec<String>,
    },
    /// No such flag (404).
    UnknownFlag {
        /// The flags that exist.
        known: Vec<String>,
    },
    /// `If-Match` named another version (412).
    Conflict {
        /// The version the state is at now.
        current: u64,
    },
    /// A value out of range (400).
    Invalid(String),
    /// The new state could not be written durably (500); the old state stays live.
    Persist(String),
    /// Fleet mode: the change opens something (or is a flag) and the fleet store is unreachable
    /// (503); nothing changed.
    StoreUnavailable(String),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::UnknownChannel { known } => write!(f, "unknown channel; known channels: {}", known.join(", ")),
            SwitchError::UnknownFlag { known } => write!(f, "unknown flag; known flags: {}", known.join(", ")),
            SwitchError::Conflict { current } => {
                write!(f, "the switch state changed since it was read: current version is {current}")
            }
            SwitchError::Invalid(m) => write!(f, "{m}"),
            SwitchError::Persist(m) => write!(f, "could not persist the switch state: {m}"),
            SwitchError::StoreUnavailable(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for SwitchError {}

/// The published state plus what the request path needs precomputed.
struct Live {
    state: Arc<SwitchState>,
    /// `(retry_after, expires_at as unix seconds)` while maintenance is enabled.
    maintenance: Option<(u64, Option<u64>)>,
    /// Some channel is switched off (the request path skips channel checks otherwise).
    any_channel_off: bool,
    /// Every flag's value, indexed by [`Flag`].
    flags: [bool; Flag::ALL.len()],
}

impl Live {
    fn new(state: SwitchState) -> Self {
        let m = &state.maintenance;
        // An unparseable expiry keeps maintenance on (fail closed); load and the setters never produce one.
        let maintenance = m.enabled.then(|| (m.retry_after, m.expires_at.as_deref().and_then(parse_unix)));
        let any_channel_off = state.channels.values().any(|t| !t.enabled);
        let flags = Flag::ALL.map(|f| state.flags.get(f.name()).map_or(f.default_on(), |t| t.enabled));
        Self { state: Arc::new(state), maintenance, any_channel_off, flags }
    }
}

/// The runtime switch store. Cheap to read from any thread; changes are serialised.
pub struct Switches {
    live: ArcSwap<Live>,
    write: Mutex<()>,
    dir: PathBuf,
    /// Channel names the config's routes use (sorted, deduplicated).
    routed: Vec<String>,
}

impl fmt::Debug for Switches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switches").field("state", &self.live.load().state).field("dir", &self.dir).finish()
    }
}

const MAINTENANCE_MODE: Def<0> =
    Def::gauge("portcullis_maintenance_mode", "1 while maintenance mode answers 503 to proxied requests.", []);
const CHANNEL_ENABLED: Def<1> =
    Def::gauge("portcullis_channel_enabled", "0 while the channel's kill switch stops its routes.", ["channel"]);
const FLAG_ENABLED: Def<1> = Def::gauge("portcullis_flag_enabled", "Runtime flags (1 on, 0 off).", ["flag"]);
const SWITCHES_VERSION: Def<0> =
    Def::gauge("portcullis_switches_version", "Version of the switch state (changes with every switch change).", []);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&MAINTENANCE_MODE, &CHANNEL_ENABLED, &FLAG_ENABLED, &SWITCHES_VERSION];

impl Switches {
    /// Initial state: defaults, then the environment (`MAINTENANCE_MODE=true`, `<CHANNEL>_ENABLED=false`
    /// with the channel name upper-cased and `-` as `_`, the [`FLAGS`] variables; `true/1/yes/on`,
    /// `false/0/no/off`, anything else ignored with a warning), then `<state_dir>/switches.json` if
    /// present: each entry an operator set (or a ttl ended) wins over the environment until changed
    /// again. A state file that cannot be read or parsed is an error: never silently reopen a killed
    /// channel. `channels` are the channel names the config's routes use; a persisted channel that no
    /// route uses any more is kept (with a warning), so removing and restoring a route cannot reopen it.
    pub fn load(
        state_dir: &Path,
        channels: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Switches, String> {
        Self::load_at(state_dir, channels, env, now_unix())
    }

    fn load_at(
        state_dir: &Path,
        channels: &[String],
        env: &dyn Fn(&str) -> Option<String>,
        now: u64,
    ) -> Result<Switches, String> {
        let mut routed: Vec<String> = channels.to_vec();
        routed.sort();
        routed.dedup();
        let at = Some(rfc3339_unix(now));
        let mut state = SwitchState::default();

        // 1. Defaults.
        for c in &routed {
            state.channels.insert(c.clone(), Toggle { enabled: true, ..Toggle::default() });
        }
        for (name, default, _, _) in FLAGS {
            state.flags.insert((*name).to_string(), Toggle { enabled: *default, ..Toggle::default() });
        }

        // 2. Environment.
        let env_toggle = |var: &str, v: bool| Toggle {
            enabled: v,
            reason: Some(format!("{var}={v}")),
            set_by: None,
            set_at: at.clone(),
            source: Source::Environment,
        };
        if let Some(v) = env_bool(env, MAINTENANCE_ENV) {
            state.maintenance = Maintenance {
                enabled: v,
                reason: Some(format!("{MAINTENANCE_ENV}={v}")),
                set_at: at.clone(),
                source: Source::Environment,
                ..Maintenance::default()
            };
        }
        for c in &routed {
            let var = channel_env_var(c);
            if let Some(v) = env_bool(env, &var) {
                state.channels.insert(c.clone(), env_toggle(&var, v));
            }
        }
        for (name, _, var, _) in FLAGS {
            if let Some(v) = env_bool(env, var) {
                state.flags.insert((*name).to_string(), env_toggle(var, v));
            }
        }

        // 3. Persisted operator state.
        let path = state_dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let saved = parse_saved(&bytes).map_err(|e| corrupt(&path, &e))?;
                merge_saved(&mut state, saved, &routed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => state.audit_seq = Some(0),
            Err(e) => return Err(corrupt(&path, &e.to_string())),
        }

        Ok(Switches {
            live: ArcSwap::from_pointee(Live::new(state)),
            write: Mutex::new(()),
            dir: state_dir.into(),
            routed,
        })
    }

    /// The current state (for `GET /v1/switches` and anything that needs a consistent view).
    pub fn snapshot(&self) -> Arc<SwitchState> {
        self.live.load().state.clone()
    }

    /// `Some(retry_after)` while maintenance mode is on, `None` when it is off or its ttl has passed
    /// (even before [`Switches::expire`] has persisted that). Lock-free, no allocation.
    pub fn maintenance(&self, now_unix: u64) -> Option<u64> {
        match self.live.load().maintenance {
            Some((_, Some(expires))) if now_unix >= expires => None,
            Some((retry_after, _)) => Some(retry_after),
            None => None,
        }
    }

    /// True while at least one channel's kill switch is off. Lock-free, no allocation.
    pub fn any_channel_off(&self) -> bool {
        self.live.load().any_channel_off
    }

    /// False while the channel's kill switch is off. A channel the store does not know is enabled
    /// (a route without a channel is never killed). Lock-free, no allocation.
    pub fn channel_enabled(&self, name: &str) -> bool {
        self.live.load().state.channels.get(name).is_none_or(|t| t.enabled)
    }

    /// A runtime flag. Typed: there is no unknown flag to read. Lock-free, no allocation.
    pub fn flag(&self, flag: Flag) -> bool {
        self.live.load().flags.get(flag as usize).copied().unwrap_or(flag.default_on())
    }

    /// Every runtime flag's value now, from one read of the live state: what one request's
    /// checks see.
    pub fn flags(&self) -> FlagSet {
        let live = self.live.load();
        FlagSet::from_fn(|f| live.flags.get(f as usize).copied().unwrap_or(f.default_on()))
    }

    /// The channels that can be switched: those the routes use, plus persisted ones no route uses any more.
    pub fn known_channels(&self) -> Vec<String> {
        self.live.load().state.channels.keys().cloned().collect()
    }

    /// `seq` of the last audit record the live state includes (`None`: a state file from before
    /// the audit log was the state's write-ahead log, trusted as it is).
    pub fn audit_seq(&self) -> Option<u64> {
        self.live.load().state.audit_seq
    }

    /// Plans turning maintenance on or off (validated against the live state; nothing changes
    /// until the op is applied). See [`MaintenanceChange`] for the limits.
    pub fn plan_maintenance(
        &self,
        req: MaintenanceChange,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        self.plan_maintenance_at(req, actor, if_match, now_unix())
    }

    fn plan_maintenance_at(
        &self,
        req: MaintenanceChange,
        actor: &str,
        if_match: Option<u64>,
        now: u64,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        let retry_after = req.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        if !(1..=MAX_RETRY_AFTER).contains(&retry_after) {
            return Err(SwitchError::Invalid(format!("retry_after must be 1..={MAX_RETRY_AFTER} seconds")));
        }
        let expires_at = match req.ttl_seconds {
            None => None,
            Some(_) if !req.enabled => {
                return Err(SwitchError::Invalid("ttl_seconds applies only when enabling maintenance".into()))
            }
            Some(t) if !(1..=MAX_TTL_SECONDS).contains(&t) => {
                return Err(SwitchError::Invalid(format!("ttl_seconds must be 1..={MAX_TTL_SECONDS}")))
            }
            Some(t) => Some(rfc3339_unix(now.saturating_add(t))),
        };
        let reason = check_reason(req.reason)?;
        let next = Maintenance {
            enabled: req.enabled,
            retry_after,
            reason,
            set_by: Some(actor.to_string()),
            set_at: Some(rfc3339_unix(now)),
            expires_at,
            source: Source::Operator,
        };
        let cur = self.checked(if_match)?;
        Ok((SwitchOp::Maintenance(next), to_value(&cur.maintenance)))
    }

    /// Plans a channel's kill switch: `enabled: false` stops its routes.
    pub fn plan_channel(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        self.plan_channel_at(name, enabled, reason, actor, if_match, now_unix())
    }

    fn plan_channel_at(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
        now: u64,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        let cur = self.live.load().state.clone();
        let Some(old) = cur.channels.get(name) else {
            return Err(SwitchError::UnknownChannel { known: self.known_channels() });
        };
        let t = toggle(enabled, check_reason(reason)?, actor, now);
        let old = to_value(old);
        self.checked(if_match)?;
        Ok((SwitchOp::Channel(name.to_string(), t), old))
    }

    /// Plans setting a runtime flag (with a reason, like the other switches).
    pub fn plan_flag(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        self.plan_flag_at(name, enabled, reason, actor, if_match, now_unix())
    }

    fn plan_flag_at(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
        now: u64,
    ) -> Result<(SwitchOp, Value), SwitchError> {
        if Flag::parse(name).is_none() {
            return Err(SwitchError::UnknownFlag { known: flag_names() });
        }
        let t = toggle(enabled, check_reason(reason)?, actor, now);
        let cur = self.checked(if_match)?;
        let old = cur.flags.get(name).map_or(Value::Null, to_value);
        Ok((SwitchOp::Flag(name.to_string(), t), old))
    }

    /// Plans ending a maintenance whose ttl has passed (`enabled: false, source: expired`);
    /// `None` when there is nothing to end. The request path already treats it as ended.
    pub fn plan_expire(&self, now_unix: u64) -> Option<(SwitchOp, Value)> {
        let cur = self.live.load_full();
        let m = &cur.state.maintenance;
        if !(m.enabled && m.expires_at.as_deref().and_then(parse_unix).is_some_and(|e| now_unix >= e)) {
            return None;
        }
        let after = Maintenance {
            enabled: false,
            set_by: Some(TTL_ACTOR.to_string()),
            set_at: Some(rfc3339_unix(now_unix)),
            source: Source::Expired,
            ..m.clone()
        };
        Some((SwitchOp::Maintenance(after), to_value(m)))
    }

    /// The live state, if `If-Match` names its version (or there is no `If-Match`).
    fn checked(&self, if_match: Option<u64>) -> Result<Arc<SwitchState>, SwitchError> {
        let cur = self.live.load().state.clone();
        match if_match {
            Some(v) if v != cur.version => Err(SwitchError::Conflict { current: cur.version }),
            _ => Ok(cur),
        }
    }

    /// Applies a committed op (its audit record is `seq`): publishes the next state (version + 1)
    /// and, with `checkpoint`, writes it to `switches.json`. A record the state already includes
    /// (`seq` at or below its `audit_seq`) changes nothing. Returns the version after; `Err` when
    /// the checkpoint could not be written (the op is applied all the same: its audit record is
    /// durable and the state is replayed from it at the next start).
    pub fn apply(&self, op: &SwitchOp, seq: u64, checkpoint: bool) -> Result<u64, String> {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        if cur.state.audit_seq.is_some_and(|a| seq <= a) {
            return Ok(cur.state.version);
        }
        let mut next = (*cur.state).clone();
        match op {
            SwitchOp::Maintenance(m) => next.maintenance = m.clone(),
            SwitchOp::Channel(n, t) => {
                next.channels.insert(n.clone(), t.clone());
            }
            SwitchOp::Flag(n, t) if Flag::parse(n).is_some() => {
                next.flags.insert(n.clone(), t.clone());
            }
            SwitchOp::Flag(n, _) => {
                tracing::warn!(flag = %n, seq, "a recorded change of a flag this version does not know: ignored");
            }
        }
        next.version = cur.state.version.saturating_add(1);
        next.audit_seq = Some(seq);
        let version = next.version;
        let written = if checkpoint { write_atomic(&self.dir, &next).map_err(|(e, _)| e) } else { Ok(()) };
        self.live.store(Arc::new(Live::new(next)));
        written.map(|()| version)
    }

    /// Records that the live state includes every audit record up to `seq` (after a replay, or
    /// for a state file that predates [`SwitchState::audit_seq`]). Never moves it back.
    pub fn settle_audit_seq(&self, seq: u64) {
        let _guard = self.write.lock();
        let cur = self.live.load_full();
        if cur.state.audit_seq.is_none_or(|a| a < seq) {
            let mut next = (*cur.state).clone();
            next.audit_seq = Some(seq);
            self.live.store(Arc::new(Live::new(next)));
        }
    }

    /// Adopts `seq` as the position of a state file that predates [`SwitchState::audit_seq`].
    pub fn settle_audit_seq_if_none(&self, seq: u64) {
        if self.audit_seq().is_none() {
            self.settle_audit_seq(seq);
        }
    }

    /// Writes the live state to `switches.json`.
    pub fn checkpoint(&self) -> Result<(), String> {
        let _guard = self.write.lock();
        write_atomic(&self.dir, &self.live.load().state).map_err(|(e, _)| e)
    }

    /// The `GET /v1/switches` body: the state, with `maintenance.active` (ttl applied), each channel's
    /// environment variable and whether a route uses it, and each flag's default, variable and effect.
    pub fn view(&self, now_unix: u64) -> Value {
        let state = self.snapshot();
        let mut maintenance = to_value(&state.maintenance);
        if let Value::Object(m) = &mut maintenance {
            m.insert("active".into(), Value::Bool(self.maintenance(now_unix).is_some()));
        }
        let channels: serde_json::Map<String, Value> = state
            .channels
            .iter()
            .map(|(name, t)| {
                let mut v = to_value(t);
                if let Value::Object(o) = &mut v {
                    o.insert("env".into(), Value::String(channel_env_var(name)));
                    o.insert("routed".into(), Value::Bool(self.routed.binary_search(name).is_ok()));
                }
                (name.clone(), v)
            })
            .collect();
        let flags: serde_json::Map<String, Value> = FLAGS
            .iter()
            .map(|(name, default, var, effect)| {
                let mut v = state.flags.get(*name).map_or(Value::Null, to_value);
                if let Value::Object(o) = &mut v {
                    o.insert("default".into(), Value::Bool(*default));
                    o.insert("env".into(), Value::String((*var).to_string()));
                    o.insert("description".into(), Value::String((*effect).to_string()));
                }
                ((*name).to_string(), v)
            })
            .collect();
        json!({"version": state.version, "maintenance": maintenance, "channels": channels, "flags": flags})
    }

    /// Prometheus gauges for `/metrics`: `portcullis_maintenance_mode`,
    /// `portcullis_channel_enabled{channel}`, `portcullis_flag_enabled{flag}`, `portcullis_switches_version`.
    pub fn render_metrics(&self, now_unix: u64, out: &mut crate::metrics::Scrape) {
        let state = self.snapshot();
        out.family(&MAINTENANCE_MODE).sample([], self.maintenance(now_unix).is_some());
        let mut f = out.family(&CHANNEL_ENABLED);
        for (name, t) in &state.channels {
            f.sample([name], t.enabled);
        }
        let mut f = out.family(&FLAG_ENABLED);
        for (name, t) in &state.flags {
            f.sample([name], t.enabled);
        }
        out.family(&SWITCHES_VERSION).sample([], state.version);
    }
}

/// Parses an `If-Match` header: `7`, `"7"` or `W/"7"` → `Some(7)`; `*` → `None` (any version).
pub fn parse_if_match(header: &str) -> Result<Option<u64>, String> {
    let h = header.trim();
    if h == "*" {
        return Ok(None);
    }
    let h = h.strip_prefix("W/").unwrap_or(h);
    let h = h.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(h);
    h.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("If-Match must be a switch state version such as \"7\", not {header:?}"))
}

/// The `ETag` for a version: `"7"`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The environment variable for a channel: `whatsapp` → `WHATSAPP_ENABLED`, `sms-eu` → `SMS_EU_ENABLED`.
pub fn channel_env_var(channel: &str) -> String {
    let mut s: String = channel.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }).collect();
    s.push_str("_ENABLED");
    s
}

/// Names of every runtime flag.
pub fn flag_names() -> Vec<String> {
    FLAGS.iter().map(|f| f.0.to_string()).collect()
}

/// Maintenance bypass: client CIDRs, and a secret header whose SHA-256 is compared in constant time
/// against the configured hash. Only maintenance mode is bypassed; killed channels stay killed.
#[derive(Debug, Clone, Default)]
pub struct Bypass {
    cidrs: IpSet,
    header: Option<(String, [u8; 32])>,
}

impl Bypass {
    /// `header` is `(name, sha256 of the secret)`; the name is lower-cased.
    pub fn new(cidrs: Vec<IpNet>, header: Option<(String, [u8; 32])>) -> Self {
        Self { cidrs: IpSet::new(cidrs), header: header.map(|(n, h)| (n.to_ascii_lowercase(), h)) }
    }

    /// The header to read from the request, if a header bypass is configured (lower-case).
    pub fn header_name(&self) -> Option<&str> {
        self.header.as_ref().map(|(n, _)| n.as_str())
    }

    /// True when no bypass is configured.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.header.is_none()
    }

    /// True when the client IP is in a bypass CIDR (an [`IpSet`]: IPv4-mapped IPv6 addresses
    /// match IPv4 CIDRs and the other way round; an IPv6 network wider than `::ffff:0:0/96`, such
    /// as `::/0`, is IPv6 only), or the header's value hashes to the configured SHA-256. An empty
    /// header value never matches. No allocation.
    pub fn allows(&self, client_ip: Option<IpAddr>, header_value: Option<&[u8]>) -> bool {
        if client_ip.is_some_and(|ip| self.cidrs.contains(ip)) {
            return true;
        }
        match (&self.header, header_value) {
            (Some((_, want)), Some(v)) if !v.is_empty() => {
                let got: [u8; 32] = Sha256::digest(v).into();
                bool::from(got.ct_eq(want))
            }
            _ => false,
        }
    }
}

/// Decodes a 64-hex-digit SHA-256 (for the bypass header's configured hash).
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.trim()).map_err(|_| "must be 64 hex digits (a SHA-256)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "must be 64 hex digits (a SHA-256)".to_string())
}

// ---------------------------------------------------------------------------------------------

/// The clock is `crate::clock`'s (a leaf). Re-exported only while proxy.rs still names it here (it is
/// being split by phase; issue 22): new code imports `crate::clock::now_unix`.
use crate::clock::now_unix;
use crate::clock::rfc3339_unix;

fn parse_unix(s: &str) -> Option<u64> {
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    Some(u64::try_from(t.timestamp()).unwrap_or(0))
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn toggle(enabled: bool, reason: Option<String>, actor: &str, now: u64) -> Toggle {
    Toggle {
        enabled,
        reason,
        set_by: Some(actor.to_string()),
        set_at: Some(rfc3339_unix(now)),
        source: Source::Operator,
    }
}

/// At most [`MAX_REASON_CHARS`] characters, no control characters; an empty reason is none.
pub(crate) fn check_reason(reason: Option<String>) -> Result<Option<String>, SwitchError> {
    let Some(r) = reason else { return Ok(None) };
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(SwitchError::Invalid(format!("reason must be at most {MAX_REASON_CHARS} characters")));
    }
    if r.chars().any(char::is_control) {
        return Err(SwitchError::Invalid("reason must not contain control characters".into()));
    }
    Ok((!r.is_empty()).then_some(r))
}

/// `true/1/yes/on` or `false/0/no/off`, case-insensitively; anything else is ignored with a warning.
fn env_bool(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<bool> {
    let v = env(var)?;
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => {
            tracing::warn!(variable = var, value = %v, "ignoring an environment switch that is not true/false");
            None
        }
    }
}

fn corrupt(path: &Path, err: &str) -> String {
    format!(
        "{}: {err}: the switch state cannot be trusted, so the gateway does not start (a killed channel or \
         maintenance mode must never be lifted by accident); repair the file, or remove it to start from \
         the environment's state",
        path.display()
    )
}

fn parse_saved(bytes: &[u8]) -> Result<SwitchState, String> {
    let s: SwitchState = serde_json::from_slice(bytes).map_err(|e| format!("not valid switch state JSON: {e}"))?;
    let m = &s.maintenance;
    if !(1..=MAX_RETRY_AFTER).contains(&m.retry_after) {
        return Err(format!("maintenance.retry_after must be 1..={MAX_RETRY_AFTER}"));
    }
    if let Some(e) = &m.expires_at {
        if parse_unix(e).is_none() {
            return Err(format!("maintenance.expires_at {e:?} is not an RFC 3339 time"));
        }
    }
    for name in s.channels.keys() {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(format!("channel name {name:?} must be lowercase [a-z0-9_-]"));
        }
    }
    Ok(s)
}

/// Applies the persisted entries an operator set (or a ttl ended) over defaults and the environment.
fn merge_saved(state: &mut SwitchState, saved: SwitchState, routed: &[String]) {
    state.version = saved.version;
    state.audit_seq = saved.audit_seq;
    if saved.maintenance.source.sticky() {
        if state.maintenance.source == Source::Environment && state.maintenance.enabled != saved.maintenance.enabled {
            tracing::warn!(
                variable = MAINTENANCE_ENV,
                persisted = saved.maintenance.enabled,
                set_by = saved.maintenance.set_by.as_deref().unwrap_or(""),
                "the environment disagrees with the persisted maintenance state; the persisted state wins"
            );
        }
        state.maintenance = saved.maintenance;
    }
    for (name, t) in saved.channels {
        if !t.source.sticky() {
            continue;
        }
        if routed.binary_search(&name).is_err() {
            tracing::warn!(
                channel = %name,
                enabled = t.enabled,
                "a persisted channel switch names a channel no route uses; kept"
            );
        }
        if let Some(cur) = state.channels.get(&name) {
            if cur.source == Source::Environment && cur.enabled != t.enabled {
                tracing::warn!(
                    variable = %channel_env_var(&name),
                    persisted = t.enabled,
                    set_by = t.set_by.as_deref().unwrap_or(""),
                    "the environment disagrees with the persisted channel switch; the persisted state wins"
                );
            }
        }
        state.channels.insert(name, t);
    }
    for (name, t) in saved.flags {
        if !t.source.sticky() {
            continue;
        }
        let Some((_, _, var, _)) = FLAGS.iter().find(|f| f.0 == name) else {
            tracing::warn!(flag = %name, "ignoring a persisted flag this version does not know");
            continue;
        };
        if let Some(cur) = state.flags.get(&name) {
            if cur.source == Source::Environment && cur.enabled != t.enabled {
                tracing::warn!(
                    variable = var,
                    persisted = t.enabled,
                    set_by = t.set_by.as_deref().unwrap_or(""),
                    "the environment disagrees with the persisted flag; the persisted state wins"
                );
            }
        }
        state.flags.insert(name, t);
    }
}

/// `Err((message, renamed))`.
fn write_atomic(dir: &Path, state: &SwitchState) -> Result<(), (String, bool)> {
    let mut body = serde_json::to_vec_pretty(state).map_err(|e| (e.to_string(), false))?;
    body.push(b'\n');
    crate::durable::write_durably(dir, STATE_FILE, &body)
}

/// The old one-call setters, for the unit tests: plan + apply with the next audit position, as
/// `txn::transact` does (without the audit record).
#[cfg(test)]
impl Switches {
    fn commit_test(&self, planned: Result<(SwitchOp, Value), SwitchError>) -> Result<Change, SwitchError> {
        static ONE: Mutex<()> = Mutex::new(());
        let _one = ONE.lock();
        let (op, old) = planned?;
        let seq = self.audit_seq().unwrap_or(0) + 1;
        let (target, new) = (op.target(), op.new_value());
        let version = self.apply(&op, seq, true).map_err(SwitchError::Persist)?;
        Ok(Change { target, old, new, version })
    }

    fn set_maintenance(
        &self,
        req: MaintenanceChange,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<Change, SwitchError> {
        self.commit_test(self.plan_maintenance(req, actor, if_match))
    }

    fn set_maintenance_at(
        &self,
        req: MaintenanceChange,
        actor: &str,
        if_match: Option<u64>,
        now: u64,
    ) -> Result<Change, SwitchError> {
        self.commit_test(self.plan_maintenance_at(req, actor, if_match, now))
    }

    fn set_channel(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<Change, SwitchError> {
        self.commit_test(self.plan_channel(name, enabled, reason, actor, if_match))
    }

    fn set_flag(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
        if_match: Option<u64>,
    ) -> Result<Change, SwitchError> {
        self.commit_test(self.plan_flag(name, enabled, reason, actor, if_match))
    }

    fn expire(&self, now: u64) -> Option<Change> {
        self.commit_test(self.plan_expire(now).ok_or(SwitchError::Invalid(String::new()))).ok()
    }
}

#[cfg(test)]
mod tests;
