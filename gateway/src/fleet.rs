//! Fleet mode (issue 17): maintenance, channel switches, flags, session revocations, the
//! operator's subject and address blocks, tenant suspensions and allowlist entries shared by
//! every instance through Redis (or Valkey), behind the same control-plane
//! transaction as a single instance ([`crate::txn::transact`]).
//!
//! The store is an append-only list of changes, `portcullis:{id}:ops`, each one JSON object
//! `{"action", "target", "new"}`: exactly what an `ok` audit record says the state becomes, so
//! it is parsed and applied by the one [`Op::from_record`] / [`crate::txn::State::apply`]. Every
//! change is absolute for its target (`channel:x` becomes this entry), so the list, folded to the
//! last change per target, *is* the fleet state, and two instances appending at once never lose
//! each other's change (Redis orders them). `portcullis:{id}:epoch` names the list's
//! incarnation: a store restarted empty has none (or another), and every instance then
//! republishes what it holds closed before it adopts the new list, so nothing reopens.
//!
//! - A commit: the local transaction (the audit record is the local write-ahead log, the state
//!   files keep the last known fleet state for a start with Redis down), then one `EVAL` that
//!   appends to the list if the epoch is the one this instance follows and `PUBLISH`es the new
//!   length on `portcullis:{id}:changes`. The control API answers after that acknowledgement.
//! - Every instance subscribes to the channel and re-reads on a message; the read (epoch and
//!   length) also runs every [`POLL`] as the backstop. Changes past its position are folded and
//!   those that differ from its state are applied through the transaction, audited with the
//!   actor `fleet`. The request path never talks to Redis.
//! - Store unreachable: a change that closes is applied and persisted locally at once, answered
//!   with a warning, kept in `fleet-pending.json` and published when the store returns (before
//!   anything is read from it); a change that opens is refused with 503 before anything changes.
//!   The state in force stays the last known one.
//! - Where the store is: one Redis or Valkey (`redis://`, `rediss://`), the master a Sentinel
//!   names, or the master of the fleet's hash slot in a Cluster (every key then tagged
//!   `portcullis:{<id>}:…`), asked again on every new connection ([`Target::open`]).
//! - Values are validated on read: an entry that is not a known change of a fleet-shared target
//!   is skipped and logged; a wrong-typed key is an unreachable store. Nothing panics on them.

use crate::audit::{AuditAction, AuditLog};
use crate::events::EventBus;
use crate::metrics::{Declared, Def};
use crate::reload::Rules;
use crate::sessions::{canonical_net, check_id, SessionOp};
use crate::switches::SwitchOp;
use crate::txn::{transact, Meta, Op, Plan, Refused, State, TxError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The backstop: how often an instance checks the store's version without a notification.
pub const POLL: Duration = Duration::from_millis(500);
/// The budget of one round trip to the store (connect, read, write); past it the store counts as
/// unreachable for that call.
pub const BUDGET: Duration = Duration::from_millis(500);
/// The largest list entry read; a longer one is a tampered value and skipped.
const MAX_ENTRY: usize = 64 * 1024;
/// The changes not yet published, in `state_dir`.
pub const PENDING_FILE: &str = "fleet-pending.json";
/// The epoch of the list this instance last followed, in `state_dir`: after a restart, a store
/// that lost its state is recognised (and republished to) even if this instance never saw it.
pub const EPOCH_FILE: &str = "fleet-epoch";

/// Appends `ARGV[2]` to the list if the epoch is `ARGV[1]`, then announces the new length.
const PUSH: &str = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end \
local n = redis.call('RPUSH', KEYS[1], ARGV[2]) redis.call('PUBLISH', KEYS[3], n) return n";

use crate::secret::{read_secret, Secret};

/// How the store is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Topology {
    /// One Redis or Valkey (`redis://`).
    Direct,
    /// The master a Sentinel names (`redis+sentinel://`): the Sentinels (`host:port`) and the
    /// master's name.
    Sentinel(Vec<String>, String),
    /// The node of a Redis Cluster that serves the fleet's hash slot (`redis+cluster://`): the
    /// seed nodes (`host:port`).
    Cluster(Vec<String>),
}

/// Splits `redis+sentinel://[user[:password]@]host:port[,host:port…]/<master>[/<db>]` and
/// `redis+cluster://[user[:password]@]host:port[,host:port…]` (and their `rediss+` TLS forms)
/// into the data node's URL on a placeholder host (credentials, db) and the topology. A URL of
/// one host is `(url, Direct)`.
fn parse_topology(url: &str) -> Result<(String, Topology), (&'static str, String)> {
    let (sentinel, scheme, rest) = match (url.split_once("+sentinel://"), url.split_once("+cluster://")) {
        (Some((s, r)), None) => (true, s, r),
        (None, Some((s, r))) => (false, s, r),
        (None, None) => return Ok((url.to_string(), Topology::Direct)),
        (Some(_), Some(_)) => return Err(("redis_url", "names both +sentinel and +cluster".into())),
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err((
            "redis_url",
            "a Sentinel or Cluster URL is redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
                .into(),
        ));
    }
    let form = if sentinel {
        "redis+sentinel://[user[:password]@]host:port[,host:port…]/<master name>[/<db>]"
    } else {
        "redis+cluster://[user[:password]@]host:port[,host:port…]"
    };
    let bad = |why: &str| ("redis_url", format!("{why} ({form})"));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let default_port = if sentinel { 26379 } else { 6379 };
    let mut nodes = Vec::new();
    for h in hosts.split(',') {
        let h = if h.contains("]:") || (!h.starts_with('[') && h.contains(':')) {
            h.to_string()
        } else {
            format!("{h}:{default_port}")
        };
        match format!("redis://{h}").parse::<redis::ConnectionInfo>().map(|i| i.addr) {
            Ok(redis::ConnectionAddr::Tcp(..)) => nodes.push(h),
            _ => return Err(bad(&format!("{h:?} is not a host:port"))),
        }
    }
    if !sentinel {
        // A cluster has one database.
        if !path.is_empty() && path != "0" {
            return Err(bad("a Redis Cluster has no database number"));
        }
        return Ok((format!("{scheme}://{user}cluster-node/"), Topology::Cluster(nodes)));
    }
    let (name, db) = path.split_once('/').unwrap_or((path, ""));
    if !valid_name(name) {
        return Err(bad("the master name must be 1 to 64 of A-Z a-z 0-9 - _ ."));
    }
    if !db.bytes().all(|b| b.is_ascii_digit()) || db.len() > 5 {
        return Err(bad("the db must be a number"));
    }
    Ok((format!("{scheme}://{user}sentinel-master/{db}"), Topology::Sentinel(nodes, name.to_string())))
}

/// The TLS files of a `rediss://` store: `redis_ca_file` (else the system's roots) and the
/// client pair of `redis_client_cert_file` + `redis_client_key_file` (mTLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    ca: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

/// `fleet:` in gateway.yaml, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis[s]://[user[:password]@]host:port[/db]` (the password is better given apart).
    url: String,
    /// `Some` for a TLS store (`rediss://`, `valkeys://`, `rediss+sentinel://`).
    tls: Option<TlsFiles>,
    /// Standalone, Sentinel or Cluster (for the last two, `url` is the data node's credentials
    /// and db on a placeholder host).
    topology: Topology,
    /// Where to connect, for logs (no credentials).
    pub endpoint: String,
    /// The fleet id: every key is `portcullis:{id}:…`.
    pub id: String,
    password: Option<Secret>,
    /// `sentinel_password_env` / `sentinel_password_file`: the Sentinels' own `requirepass`.
    sentinel_password: Option<Secret>,
    /// This instance's name in the fleet (`instance_id`; default `<hostname>-<8 hex digits of the
    /// state_dir's hash>`: the two processes of a graceful upgrade, which share the state
    /// directory and its audit chain, are one instance).
    pub instance: String,
    /// `rate_limit_fallback`: the fleet rate budget while the store is unreachable.
    pub rate_fallback: portcullis_rules::limits::Fallback,
    /// `webhook_replay_fallback: closed`: refuse webhook deliveries (503) while the fleet replay
    /// cache cannot be asked, instead of relying on this instance's cache alone.
    pub webhook_closed: bool,
    /// `webhook_replay_budget_ms`: the request-path budget of one replay-cache round trip.
    pub webhook_budget: Duration,
}

/// Default of `webhook_replay_budget_ms`.
pub const DEFAULT_WEBHOOK_BUDGET_MS: u64 = 5;

/// This machine's host name (`HOSTNAME`, else the kernel's), for the default instance id.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FleetConfig {
    /// Validates the `fleet:` section; `Err((field, why))`.
    pub fn from_parts(
        url: &str,
        id: &str,
        password_env: Option<&str>,
        password_file: Option<PathBuf>,
    ) -> Result<FleetConfig, (&'static str, String)> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(("id", "must be 1 to 64 of A-Z a-z 0-9 - _".into()));
        }
        let (url, topology) = parse_topology(url)?;
        let url = url.as_str();
        let tls = if url.starts_with("rediss://") || url.starts_with("valkeys://") {
            Some(TlsFiles::default())
        } else if url.starts_with("redis://") || url.starts_with("valkey://") {
            None
        } else {
            return Err((
                "redis_url",
                "must start with redis://, rediss:// (TLS), redis+sentinel://, redis+cluster:// (or their rediss+ forms); valkey:// and valkeys:// are the same as redis:// and rediss://".into(),
            ));
        };
        let info: redis::ConnectionInfo =
            url.parse().map_err(|e: redis::RedisError| ("redis_url", format!("not a Redis URL: {}", e.category())))?;
        let endpoint = match &info.addr {
            redis::ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
            redis::ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err((
                    "redis_url",
                    "#insecure (no certificate check) is not supported: give the store's CA in redis_ca_file".into(),
                ))
            }
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            _ => return Err(("redis_url", "must name a TCP host and port".into())),
        };
        let tls_note = if tls.is_some() { " (TLS)" } else { "" };
        let endpoint = match &topology {
            Topology::Sentinel(sentinels, name) => {
                format!("master {name} of sentinel {}{tls_note}", sentinels.join(","))
            }
            Topology::Cluster(seeds) => format!("cluster {}{tls_note}", seeds.join(",")),
            Topology::Direct => endpoint,
        };
        let password = read_secret(("password_env", password_env), ("password_file", password_file))?;
        FleetConfig {
            url: url.to_string(),
            tls,
            topology,
            endpoint,
            id: id.to_string(),
            password,
            sentinel_password: None,
            instance: String::new(),
            rate_fallback: portcullis_rules::limits::Fallback::Share,
            webhook_closed: false,
            webhook_budget: Duration::from_millis(DEFAULT_WEBHOOK_BUDGET_MS),
        }
        .with_options(None, None, None, None)
    }

    /// `redis_ca_file`, `redis_client_cert_file` and `redis_client_key_file`, validated (only
    /// with a TLS URL; the files are read and checked now, and again by [`Fleet::new`]).
    pub fn with_tls(
        mut self,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<FleetConfig, (&'static str, String)> {
        let Some(tls) = self.tls.as_mut() else {
            return match (&ca, &cert, &key) {
                (Some(_), _, _) => Err(("redis_ca_file", "needs a rediss:// redis_url".into())),
                (_, Some(_), _) => Err(("redis_client_cert_file", "needs a rediss:// redis_url".into())),
                (_, _, Some(_)) => Err(("redis_client_key_file", "needs a rediss:// redis_url".into())),
                _ => Ok(self),
            };
        };
        if let Some(ca) = &ca {
            crate::alerting::tls::read_ca_file(ca).map_err(|e| ("redis_ca_file", e))?;
        }
        tls.ca = ca;
        tls.client = match (cert, key) {
            (Some(c), Some(k)) => {
                crate::tls::check_client_pair(&c, &k).map_err(|e| ("redis_client_cert_file", e))?;
                Some((c, k))
            }
            (None, None) => None,
            (Some(_), None) => return Err(("redis_client_key_file", "required with redis_client_cert_file".into())),
            (None, Some(_)) => return Err(("redis_client_cert_file", "required with redis_client_key_file".into())),
        };
        Ok(self)
    }

    /// The TLS client's files, read (`None` without TLS).
    fn certificates(&self) -> Result<Option<redis::TlsCertificates>, String> {
        let Some(tls) = &self.tls else { return Ok(None) };
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let client_tls = match &tls.client {
            Some((c, k)) => Some(redis::ClientTlsConfig { client_cert: read(c)?, client_key: read(k)? }),
            None => None,
        };
        let root_cert = tls.ca.as_deref().map(read).transpose()?;
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }

    /// `sentinel_password_env` / `sentinel_password_file` (only with a Sentinel URL): what the
    /// Sentinels are asked with (`AUTH`); the master's password is `password_env`/`_file`.
    pub fn with_sentinel_password(
        mut self,
        env: Option<&str>,
        file: Option<PathBuf>,
    ) -> Result<FleetConfig, (&'static str, String)> {
        self.sentinel_password = read_secret(("sentinel_password_env", env), ("sentinel_password_file", file))?;
        if self.sentinel_password.is_some() && !matches!(self.topology, Topology::Sentinel(..)) {
            return Err(("sentinel_password_env", "needs a redis+sentinel:// redis_url".into()));
        }
        Ok(self)
    }

    /// The optional members of `fleet:`, validated.
    pub fn with_options(
        mut self,
        instance_id: Option<&str>,
        rate_fallback: Option<&str>,
        webhook_fallback: Option<&str>,
        webhook_budget_ms: Option<u64>,
    ) -> Result<FleetConfig, (&'static str, String)> {
        use portcullis_rules::limits::Fallback;
        self.instance = match instance_id {
            Some(i) if valid_name(i) => i.to_string(),
            Some(_) => return Err(("instance_id", "must be 1 to 64 of A-Z a-z 0-9 - _ .".into())),
            // Filled in by `Fleet::new`: `<hostname>-<hash of state_dir>`.
            None => String::new(),
        };
        self.rate_fallback = match rate_fallback {
            None | Some("share") => Fallback::Share,
            Some("local") => Fallback::Local,
            Some(_) => return Err(("rate_limit_fallback", "must be share or local".into())),
        };
        self.webhook_closed = match webhook_fallback {
            None | Some("local") => false,
            Some("closed") => true,
            Some(_) => return Err(("webhook_replay_fallback", "must be local or closed".into())),
        };
        if let Some(ms) = webhook_budget_ms {
            if !(1..=1000).contains(&ms) {
                return Err(("webhook_replay_budget_ms", "must be between 1 and 1000".into()));
            }
            self.webhook_budget = Duration::from_millis(ms);
        }
        Ok(self)
    }
}

struct Keys {
    ops: String,
    epoch: String,
    changes: String,
}

/// Where this instance is in the fleet's list.
#[derive(Default)]
struct Cursor {
    epoch: Option<String>,
    at: u64,
}

/// The fleet store client of one instance.
pub struct Fleet {
    target: Target,
    /// What every key starts with.
    prefix: String,
    keys: Keys,
    endpoint: String,
    conn: Mutex<Option<redis::Connection>>,
    /// Held across a whole commit (local transaction + publish) and a whole sync, so a sync never
    /// applies an older fleet change over a local one not yet published.
    cursor: Mutex<Cursor>,
    up: AtomicBool,
    pending: Mutex<Vec<Value>>,
    pending_path: PathBuf,
    /// The fleet budgets of the rate limits (synced by [`crate::fleet_limits`]).
    pub rates: portcullis_rules::limits::FleetShares,
    /// The validated `fleet:` section.
    pub cfg: FleetConfig,
    /// Connections of the webhook replay cache (request path, through blocking threads).
    replay_pool: Mutex<Vec<redis::Connection>>,
    /// `seq` of the last local audit record in the fleet's audit list (`None`: not asked yet).
    pub audit_streamed: Mutex<Option<u64>>,
    /// Unix seconds of the last `fleet_store_unavailable` event (at most one a minute).
    last_unavailable_event: std::sync::atomic::AtomicU64,
}

/// Where the store is.
enum Target {
    /// A standalone Redis or Valkey.
    Direct(redis::Client),
    /// The master a Sentinel names, asked on every new connection (so a failover is followed by
    /// the next reconnect).
    Sentinel { sentinels: Vec<redis::Client>, master: String, node: Node },
    /// The master of the fleet's hash slot, asked of the seed nodes on every new connection (a
    /// cluster failover or a moved slot is followed by the next reconnect).
    Cluster { seeds: Vec<redis::Client>, slot_key: String, node: Node },
}

/// A data node's credentials, db and TLS files (its address comes from a Sentinel or the cluster).
struct Node {
    redis: redis::RedisConnectionInfo,
    certs: Option<redis::TlsCertificates>,
}

impl Node {
    fn client(&self, host: &str, port: u16) -> redis::RedisResult<redis::Client> {
        let scheme = if self.certs.is_some() { "rediss" } else { "redis" };
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        let mut info: redis::ConnectionInfo = format!("{scheme}://{host}:{port}").parse()?;
        info.redis = self.redis.clone();
        client_for(info, &self.certs)
    }

    /// A connection to `host:port` if it says it is a master (`ROLE`: a demoted one still
    /// answers, read-only, until it is reconfigured).
    fn master(&self, host: &str, port: u16, budget: Duration) -> redis::RedisResult<redis::Connection> {
        let mut c = open_within(&self.client(host, port)?, budget)?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
        match role.first().map(redis::from_redis_value::<String>) {
            Some(Ok(r)) if r == "master" => Ok(c),
            _ => Err(fail(format!("{host}:{port} is not a master (yet)"))),
        }
    }
}

/// The master of `slot` in a `CLUSTER SLOTS` answer (`[[start, end, [host, port, …], …], …]`);
/// an empty host (a node that does not know its address) is `None`.
fn slot_master(slots: &[redis::Value], slot: i64) -> Option<(String, u16)> {
    slots.iter().find_map(|range| {
        let redis::Value::Array(r) = range else { return None };
        let (Some(redis::Value::Int(a)), Some(redis::Value::Int(b)), Some(redis::Value::Array(node))) =
            (r.first(), r.get(1), r.get(2))
        else {
            return None;
        };
        if !(*a..=*b).contains(&slot) {
            return None;
        }
        let host: String =
            redis::from_redis_value(node.first()?).ok().filter(|h: &String| !h.is_empty() && h != "?")?;
        // As an i64 first: the client's own u16 conversion of an integer truncates.
        let port = u16::try_from(redis::from_redis_value::<i64>(node.get(1)?).ok()?).ok().filter(|p| *p > 0)?;
        Some((host, port))
    })
}

fn client_for(
    info: redis::ConnectionInfo,
    certs: &Option<redis::TlsCertificates>,
) -> redis::RedisResult<redis::Client> {
    match certs {
        Some(c) => redis::Client::build_with_tls(info, c.clone()),
        None => redis::Client::open(info),
    }
}

fn fail(why: String) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(why))
}

/// A connection with every round trip (connect, handshake, read, write) within `budget`.
fn open_within(client: &redis::Client, budget: Duration) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(budget)?;
    c.set_read_timeout(Some(budget))?;
    c.set_write_timeout(Some(budget))?;
    Ok(c)
}

impl Target {
    /// A new connection to the store (the master), each step within `budget`.
    fn open(&self, budget: Duration) -> redis::RedisResult<redis::Connection> {
        let (asked, node): (&[redis::Client], &Node) = match self {
            Target::Direct(client) => return open_within(client, budget),
            Target::Sentinel { sentinels, node, .. } => (sentinels, node),
            Target::Cluster { seeds, node, .. } => (seeds, node),
        };
        let mut last = fail("no Sentinel or cluster node answered".into());
        for client in asked {
            let r = (|| {
                let mut c = open_within(client, budget)?;
                let (host, port) = match self {
                    Target::Sentinel { master, .. } => {
                        let addr: Option<(String, u16)> =
                            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query(&mut c)?;
                        addr.ok_or_else(|| fail(format!("the Sentinel does not know a master {master}")))?
                    }
                    Target::Cluster { slot_key, .. } => {
                        let (slot, slots): (i64, Vec<redis::Value>) = redis::pipe()
                            .cmd("CLUSTER")
                            .arg("KEYSLOT")
                            .arg(slot_key)
                            .cmd("CLUSTER")
                            .arg("SLOTS")
                            .query(&mut c)?;
                        slot_master(&slots, slot)
                            .ok_or_else(|| fail(format!("the cluster serves no master for the fleet's slot {slot}")))?
                    }
                    Target::Direct(_) => return Err(fail("no store".into())),
                };
                node.master(&host, port, budget)
            })();
            match r {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Claims every key if none is held: 1, or 0 (a replay). Values are `<instance>:<expires_at>`.
const CLAIM: &str = "for _, k in ipairs(KEYS) do if redis.call('EXISTS', k) == 1 then return 0 end end \
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end return 1";
/// Releases the keys this claim holds (not a later claim's).
const RELEASE: &str =
    "for _, k in ipairs(KEYS) do if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end end return 1";
/// Most idle replay-cache connections kept.
const REPLAY_POOL: usize = 16;
/// Idle replay-cache connections the counting thread keeps open ahead of need, so a delivery
/// rarely pays for a connect within its budget (a TLS handshake alone can take the default 5 ms).
const REPLAY_WARM: usize = 2;

/// What became of a committed change, for the control API's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The fleet store acknowledged it.
    Fleet,
    /// Applied on this instance only; published when the store returns.
    Pending(String),
}

impl Published {
    /// The answer's `fleet` member.
    pub fn to_json(&self) -> Value {
        match self {
            Published::Fleet => json!({ "published": true }),
            Published::Pending(w) => json!({ "published": false, "warning": w }),
        }
    }
}

/// True when the change opens something (restores a channel, ends maintenance, lifts a
/// revocation or block) or is a flag: such a change needs the fleet store and is refused while
/// it is unreachable. Closing changes never wait for it.
pub fn needs_store(op: &Op) -> bool {
    match op {
        Op::Switch(SwitchOp::Maintenance(m)) => !m.enabled,
        Op::Switch(SwitchOp::Channel(_, t)) => t.enabled,
        Op::Switch(SwitchOp::Flag(..)) => true,
        Op::Session(
            SessionOp::Session(_, r) | SessionOp::Subject(_, r) | SessionOp::Address(_, r) | SessionOp::Tenant(_, r),
        ) => r.is_none(),
        // An active allowlist entry lets someone in (opens); a deactivated one refuses (closes).
        Op::Session(SessionOp::Allow(_, e)) => e.enabled,
        // A reset gives a tenant its quota back (opens), and clears the fleet's counters.
        Op::QuotaReset(_) => true,
    }
}

/// The audit action of a fleet-shared op.
fn action_of(op: &Op) -> Option<AuditAction> {
    Some(match op {
        Op::Switch(SwitchOp::Maintenance(_)) => AuditAction::MaintenanceSet,
        Op::Switch(SwitchOp::Channel(..)) => AuditAction::ChannelSet,
        Op::Switch(SwitchOp::Flag(..)) => AuditAction::FlagSet,
        Op::Session(SessionOp::Session(_, Some(_))) => AuditAction::SessionRevoke,
        Op::Session(SessionOp::Session(_, None)) => AuditAction::SessionRestore,
        Op::Session(SessionOp::Subject(_, Some(_))) => AuditAction::SubjectBlock,
        Op::Session(SessionOp::Subject(_, None)) => AuditAction::SubjectUnblock,
        Op::Session(SessionOp::Address(_, Some(_))) => AuditAction::AddressBlock,
        Op::Session(SessionOp::Address(_, None)) => AuditAction::AddressUnblock,
        Op::Session(SessionOp::Tenant(_, Some(_))) => AuditAction::TenantSuspend,
        Op::Session(SessionOp::Tenant(_, None)) => AuditAction::TenantResume,
        Op::Session(SessionOp::Allow(_, e)) if e.enabled => AuditAction::AllowlistAdd,
        Op::Session(SessionOp::Allow(..)) => AuditAction::AllowlistRemove,
        Op::QuotaReset(_) => AuditAction::QuotaReset,
    })
}

/// The list entry of an op.
pub fn entry_of(op: &Op) -> Option<Value> {
    let action = action_of(op)?;
    Some(json!({ "action": action.as_str(), "target": op.target(), "new": op.new_value() }))
}

/// Validates a list entry read from the store: a fleet-shared change this version knows, with a
/// valid id. Anything else (tampered, truncated, from a newer version) is `None`.
pub fn parse_entry(raw: &[u8]) -> Option<(AuditAction, Op)> {
    if raw.len() > MAX_ENTRY {
        return None;
    }
    let mut v: Value = serde_json::from_slice(raw).ok()?;
    v.as_object_mut()?.insert("outcome".into(), json!("ok"));
    let op = Op::from_record(&v)?;
    match &op {
        Op::Session(SessionOp::Session(id, _) | SessionOp::Subject(id, _) | SessionOp::Tenant(id, _)) => {
            check_id(id).ok()?
        }
        // Keys are canonical: a network in its canonical form, an allowlist key as the API makes it.
        Op::Session(SessionOp::Address(net, _)) => (canonical_net(net).ok()? == *net).then_some(())?,
        Op::Session(SessionOp::Allow(key, _)) => {
            let (kind, value) = key.split_once(':')?;
            (portcullis_rules::operator::allowlist_key(kind, value).ok()? == *key).then_some(())?
        }
        _ => {}
    }
    let action = action_of(&op)?;
    (AuditAction::parse(v.get("action")?.as_str()?)? == action).then_some((action, op))
}

/// The last change per target, in first-seen order of the targets.
pub fn fold(entries: &[Vec<u8>]) -> Vec<(AuditAction, Op)> {
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<(AuditAction, Op)> = Vec::new();
    for raw in entries {
        match parse_entry(raw) {
            Some((a, op)) => match last.get(&op.target()) {
                Some(&i) => out[i] = (a, op),
                None => {
                    last.insert(op.target(), out.len());
                    out.push((a, op));
                }
            },
            None => tracing::error!(
                bytes = raw.len(),
                "fleet store: an entry that is not a valid change was skipped (tampered or from a newer version); the state in force is kept"
            ),
        }
    }
    out
}

/// What the fleet follower changes and announces on this instance: the runtime state, the audit
/// log every change is recorded in, the events and the live rules (for their version).
/// Implemented by the shared state (`state::Shared`), which sits above the fleet client in the
/// module graph (docs/architecture.md).
pub trait Local {
    /// The audit log (the local store of the one transaction).
    fn audit_log(&self) -> &AuditLog;
    /// The runtime state the transaction changes.
    fn runtime(&self) -> State<'_>;
    /// The event bus.
    fn event_bus(&self) -> &EventBus;
    /// The live rules.
    fn live_rules(&self) -> &Rules;
}

/// The current value of a fleet-shared target on this instance (what its op's `new` would be).
fn current(sh: &dyn Local, target: &str) -> Value {
    let to =
        |v: Option<&crate::switches::Toggle>| v.map_or(Value::Null, |t| serde_json::to_value(t).unwrap_or_default());
    let snap = sh.runtime().switches.snapshot();
    if target == "maintenance" {
        return serde_json::to_value(&snap.maintenance).unwrap_or_default();
    }
    if let Some(n) = target.strip_prefix("channel:") {
        return to(snap.channels.get(n));
    }
    if let Some(n) = target.strip_prefix("flag:") {
        return to(snap.flags.get(n));
    }
    let s = sh.runtime().sessions.snapshot();
    let r = |v: Option<&crate::sessions::Revocation>| v.map_or(Value::Null, |r| json!(r));
    if let Some(id) = target.strip_prefix("session:") {
        return r(s.revoked.get(id));
    }
    if let Some(id) = target.strip_prefix("subject:") {
        return r(s.blocked.get(id));
    }
    if let Some(net) = target.strip_prefix("address:") {
        return r(s.addresses.get(net));
    }
    if let Some(t) = target.strip_prefix("tenant:") {
        return r(s.tenants.get(t));
    }
    target.strip_prefix("allow:").map_or(Value::Null, |k| s.allowlist.get(k).map_or(Value::Null, |e| json!(e)))
}

/// What this instance holds closed (and its flags): republished to a store that lost its state.
fn closed_state(sh: &dyn Local) -> Vec<Op> {
    let snap = sh.runtime().switches.snapshot();
    let mut ops = Vec::new();
    if snap.maintenance.enabled {
        ops.push(Op::Switch(SwitchOp::Maintenance(snap.maintenance.clone())));
    }
    for (n, t) in &snap.channels {
        if !t.enabled {
            ops.push(Op::Switch(SwitchOp::Channel(n.clone(), t.clone())));
        }
    }
    for (n, t) in &snap.flags {
        if t.set_by.is_some() {
            ops.push(Op::Switch(SwitchOp::Flag(n.clone(), t.clone())));
        }
    }
    let s = sh.runtime().sessions.snapshot();
    for (id, r) in &s.revoked {
        ops.push(Op::Session(SessionOp::Session(id.clone(), Some(r.clone()))));
    }
    for (id, r) in &s.blocked {
        ops.push(Op::Session(SessionOp::Subject(id.clone(), Some(r.clone()))));
    }
    for (net, r) in &s.addresses {
        ops.push(Op::Session(SessionOp::Address(net.clone(), Some(r.clone()))));
    }
    for (t, r) in &s.tenants {
        ops.push(Op::Session(SessionOp::Tenant(t.clone(), Some(r.clone()))));
    }
    for (k, e) in s.allowlist.iter().filter(|(_, e)| !e.enabled) {
        ops.push(Op::Session(SessionOp::Allow(k.clone(), e.clone())));
    }
    ops
}

const FLEET_CONNECTED: Def<0> =
    Def::gauge("portcullis_fleet_connected", "1 when the last round trip to the fleet store succeeded.", []);
const FLEET_PENDING_CHANGES: Def<0> = Def::gauge(
    "portcullis_fleet_pending_changes",
    "Changes applied on this instance, not yet published to the fleet.",
    [],
);
/// The metric families this module adds to `/metrics` (registered when the config loads).
pub const METRICS: &[&dyn Declared] = &[&FLEET_CONNECTED, &FLEET_PENDING_CHANGES];

impl Fleet {
    /// A client for `cfg` (no connection yet); `state_dir` keeps the changes not yet published.
    pub fn new(cfg: &FleetConfig, state_dir: &Path) -> Result<Fleet, String> {
        let mut info: redis::ConnectionInfo =
            cfg.url.parse().map_err(|e: redis::RedisError| format!("fleet.redis_url: {}", e.category()))?;
        if let Some(p) = &cfg.password {
            info.redis.password = Some(p.expose().to_owned());
        }
        let certs = cfg.certificates()?;
        if certs.is_some() {
            crate::tls::install_provider();
        }
        // In a cluster every key carries the fleet id as a hash tag, so all of them live in one
        // slot (one node): the scripts touch several keys at once, and the subscriber meets every
        // publisher there. Elsewhere the keys keep their names (no tag: nothing to migrate).
        let prefix = match cfg.topology {
            Topology::Cluster(_) => format!("portcullis:{{{}}}:", cfg.id),
            _ => format!("portcullis:{}:", cfg.id),
        };
        let nodes = |hosts: &[String], credentials: Option<redis::RedisConnectionInfo>| {
            hosts
                .iter()
                .map(|h| {
                    let scheme = if certs.is_some() { "rediss" } else { "redis" };
                    let mut i: redis::ConnectionInfo = format!("{scheme}://{h}").parse()?;
                    if let Some(c) = &credentials {
                        i.redis = c.clone();
                    }
                    client_for(i, &certs)
                })
                .collect::<redis::RedisResult<Vec<_>>>()
                .map_err(|e| format!("fleet.redis_url: {e}"))
        };
        let target = match &cfg.topology {
            Topology::Direct => {
                Target::Direct(client_for(info.clone(), &certs).map_err(|e| format!("fleet.redis_url: {e}"))?)
            }
            // The URL's credentials are the master's; the Sentinels have their own password.
            Topology::Sentinel(hosts, name) => Target::Sentinel {
                sentinels: nodes(
                    hosts,
                    cfg.sentinel_password.as_ref().map(|p| redis::RedisConnectionInfo {
                        password: Some(p.expose().to_owned()),
                        ..Default::default()
                    }),
                )?,
                master: name.clone(),
                node: Node { redis: info.redis.clone(), certs: certs.clone() },
            },
            Topology::Cluster(hosts) => Target::Cluster {
                seeds: nodes(hosts, Some(info.redis.clone()))?,
                slot_key: format!("{prefix}ops"),
                node: Node { redis: info.redis.clone(), certs: certs.clone() },
            },
        };
        let pending_path = state_dir.join(PENDING_FILE);
        let pending = match std::fs::read(&pending_path) {
            Ok(b) => serde_json::from_slice::<Vec<Value>>(&b)
                .map_err(|e| format!("{} is corrupt: {e}", pending_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", pending_path.display())),
        };
        let epoch = std::fs::read_to_string(state_dir.join(EPOCH_FILE))
            .ok()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty() && e.len() <= 64);
        let p = |k: &str| format!("{prefix}{k}");
        let keys = Keys { ops: p("ops"), epoch: p("epoch"), changes: p("changes") };
        let mut cfg = cfg.clone();
        if cfg.instance.is_empty() {
            let h: String =
                host_name().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(48).collect();
            let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
            let tag = portcullis_rules::limits::quota::short_hash(dir.to_string_lossy().as_bytes());
            cfg.instance = format!("{h}-{}", tag.get(..8).unwrap_or_default());
        }
        Ok(Fleet {
            target,
            prefix,
            keys,

            endpoint: cfg.endpoint.clone(),
            conn: Mutex::new(None),
            cursor: Mutex::new(Cursor { epoch, at: 0 }),
            up: AtomicBool::new(false),
            pending: Mutex::new(pending),
            pending_path,
            rates: portcullis_rules::limits::FleetShares::new(cfg.rate_fallback),
            cfg,
            replay_pool: Mutex::new(Vec::new()),
            audit_streamed: Mutex::new(None),
            last_unavailable_event: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// True when the last round trip to the store succeeded.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// For `GET /v1/switches`: the fleet's id-less status.
    pub fn view(&self) -> Value {
        let c = self.cursor.try_lock().map(|c| c.at);
        json!({ "store": self.endpoint, "connected": self.up(), "pending": self.pending.lock().len(), "position": c })
    }

    /// `portcullis_fleet_connected` and `portcullis_fleet_pending_changes`.
    pub fn render_metrics(&self, out: &mut crate::metrics::Scrape) {
        out.family(&FLEET_CONNECTED).sample([], self.up());
        out.family(&FLEET_PENDING_CHANGES).sample([], self.pending.lock().len());
    }

    /// The key `portcullis:<id>:<name>` (`portcullis:{<id>}:<name>` in a cluster).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// One round trip of the webhook replay cache on a pooled connection, every step within
    /// `fleet.webhook_replay_budget_ms` (blocking: run it off the request's thread).
    fn replay_call<T: redis::FromRedisValue>(&self, script: &str, keys: &[String], args: &[&str]) -> Result<T, String> {
        let budget = self.cfg.webhook_budget;
        let pooled = self.replay_pool.lock().pop();
        let mut c = match pooled {
            Some(c) => c,
            None => self.target.open(budget).map_err(|e| e.to_string())?,
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys);
        for a in args {
            cmd.arg(*a);
        }
        let r = cmd.query::<T>(&mut c).map_err(|e| e.to_string())?;
        let mut pool = self.replay_pool.lock();
        if pool.len() < REPLAY_POOL {
            pool.push(c);
        }
        Ok(r)
    }

    /// Opens one replay-cache connection (within [`BUDGET`], off the request path) while fewer
    /// than [`REPLAY_WARM`] are idle. Called by the counting thread after a good tick.
    pub fn warm_replay_pool(&self) {
        if self.replay_pool.lock().len() >= REPLAY_WARM {
            return;
        }
        let Ok(c) = self.target.open(BUDGET) else { return };
        let budget = Some(self.cfg.webhook_budget);
        if c.set_read_timeout(budget).is_ok() && c.set_write_timeout(budget).is_ok() {
            let mut pool = self.replay_pool.lock();
            if pool.len() < REPLAY_POOL {
                pool.push(c);
            }
        }
    }

    fn replay_keys(&self, claim: &portcullis_rules::webhook::replay::Claim) -> Vec<String> {
        claim.keys().iter().map(|k| self.key(&format!("wh:{}", hex::encode(k)))).collect()
    }

    fn replay_value(&self, claim: &portcullis_rules::webhook::replay::Claim) -> String {
        format!("{}:{}", self.cfg.instance, claim.expires_at())
    }

    /// Claims a delivery's keys fleet-wide (`SET … PX` when none is held): `Ok(true)` claimed,
    /// `Ok(false)` another instance accepted it, `Err` the store did not answer.
    pub fn replay_claim(&self, claim: &portcullis_rules::webhook::replay::Claim, now: u64) -> Result<bool, String> {
        let ttl_ms = claim.expires_at().saturating_sub(now).max(1).saturating_mul(1000).to_string();
        let v: i64 = self.replay_call(CLAIM, &self.replay_keys(claim), &[&self.replay_value(claim), &ttl_ms])?;
        Ok(v == 1)
    }

    /// Releases a claim the upstream did not take (the sender's retry must pass on any instance).
    pub fn replay_release(&self, claim: &portcullis_rules::webhook::replay::Claim) -> Result<(), String> {
        self.replay_call::<i64>(RELEASE, &self.replay_keys(claim), &[&self.replay_value(claim)]).map(drop)
    }

    /// True at most once a minute: whether to emit `fleet_store_unavailable` now.
    pub fn unavailable_event_due(&self, now: u64) -> bool {
        let last = self.last_unavailable_event.load(Ordering::Relaxed);
        now >= last.saturating_add(60)
            && self.last_unavailable_event.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// A new blocking connection, every round trip within [`BUDGET`].
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        self.target.open(BUDGET)
    }

    /// One round trip on the command connection (reconnecting once if it was dropped).
    fn cmd<T>(&self, f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        let mut guard = self.conn.lock();
        let r = (|| {
            if guard.is_none() {
                *guard = Some(self.connect()?);
            }
            match guard.as_mut() {
                Some(c) => f(c),
                None => Err(redis::RedisError::from((redis::ErrorKind::IoError, "no connection"))),
            }
        })();
        match r {
            Ok(v) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = %self.endpoint, "fleet store reachable");
                }
                Ok(v)
            }
            Err(e) => {
                *guard = None;
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::error!(store = %self.endpoint, error = %e, "fleet store unreachable: the last known state stays in force; closing changes are applied locally, opening ones refused");
                }
                Err(e.to_string())
            }
        }
    }

    fn push(&self, epoch: &str, entry: &Value) -> Result<i64, String> {
        let text = entry.to_string();
        self.cmd(|c| {
            redis::cmd("EVAL")
                .arg(PUSH)
                .arg(3)
                .arg(&self.keys.ops)
                .arg(&self.keys.epoch)
                .arg(&self.keys.changes)
                .arg(epoch)
                .arg(&text)
                .query::<i64>(c)
        })
    }

    fn save_pending(&self, pending: &[Value]) {
        let r = if pending.is_empty() {
            match std::fs::remove_file(&self.pending_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            }
        } else {
            let dir = self.pending_path.parent().unwrap_or(Path::new("."));
            crate::durable::write_durably(dir, PENDING_FILE, Value::from(pending.to_vec()).to_string().as_bytes())
                .map_err(|(e, _)| e)
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot write the fleet's pending changes (they stay in memory)");
        }
    }

    /// A quota reset: the tenant's counters in the store go (what other instances counted and
    /// had not yet carried is added again on their next sync: at most one tick of counting).
    fn clear_quota(&self, tenant: &str) {
        let pattern = self.key(&format!("q:{}:*", portcullis_rules::limits::quota::short_hash(tenant.as_bytes())));
        let r = self.cmd(|c| {
            let keys: Vec<String> = redis::Commands::scan_match::<_, String>(c, &pattern)?.collect();
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query::<()>(c)?;
            }
            Ok(keys.len())
        });
        match r {
            Ok(n) => tracing::info!(counters = n, "quota reset: the tenant's fleet counters cleared"),
            Err(e) => {
                tracing::error!(error = %e, "quota reset: the tenant's fleet counters could not be cleared; the fleet total returns on the next sync")
            }
        }
    }

    /// `GET /v1/audit?scope=fleet`: the newest `limit` records of every instance, newest first,
    /// each with its `instance` (a value that is not a JSON object is skipped).
    pub fn audit(&self, limit: usize) -> Result<Vec<Value>, String> {
        let n = i64::try_from(limit).unwrap_or(1000);
        let raw: Vec<Vec<u8>> = self.cmd(|c| redis::cmd("LRANGE").arg(self.key("audit")).arg(-n).arg(-1).query(c))?;
        Ok(raw
            .iter()
            .rev()
            .filter(|r| r.len() <= MAX_ENTRY)
            .filter_map(|r| serde_json::from_slice::<Value>(r).ok().filter(Value::is_object))
            .collect())
    }

    /// Refuses (503) an opening change while the store does not answer (checked live).
    pub fn admit(&self, op: &Op) -> Result<(), String> {
        if !needs_store(op) {
            return Ok(());
        }
        self.cmd(|c| redis::cmd("PING").query::<String>(c)).map(drop).map_err(|_| {
            "the fleet store is unreachable: a change that opens (or a flag) is refused until it is back, so no instance opens alone; closing changes still apply".to_string()
        })
    }

    /// Runs a local commit (`local` returns its outcome and, when it committed a fleet-shared
    /// change, the list entry) and publishes the entry, as one step against the sync.
    pub fn commit<T>(&self, local: impl FnOnce() -> (T, Option<Value>)) -> (T, Option<Published>) {
        let mut cur = self.cursor.lock();
        let (out, entry) = local();
        let Some(entry) = entry else { return (out, None) };
        let published = match cur.epoch.clone() {
            Some(epoch) => match self.push(&epoch, &entry) {
                Ok(n) if n > 0 => {
                    if let Some(t) = entry.get("target").and_then(Value::as_str).and_then(|t| t.strip_prefix("quota:"))
                    {
                        self.clear_quota(t);
                    }
                    // Our own change is in force already: skip past it if nothing came between.
                    if u64::try_from(n).is_ok_and(|n| n == cur.at + 1) {
                        cur.at += 1;
                    }
                    Ok(())
                }
                Ok(_) => Err("the fleet store was reset; republished once this instance resyncs".to_string()),
                Err(e) => Err(e),
            },
            None => Err("the fleet store has not been reached yet".to_string()),
        };
        drop(cur);
        match published {
            Ok(()) => (out, Some(Published::Fleet)),
            Err(e) => {
                tracing::warn!(change = ?entry.get("target"), error = %e, "change applied on this instance only; published when the fleet store returns");
                let mut p = self.pending.lock();
                p.push(entry);
                self.save_pending(&p);
                (out, Some(Published::Pending(
                    "applied on this instance only: the fleet store is unreachable; it is published to the fleet when the store returns".into(),
                )))
            }
        }
    }

    /// One sync: adopt a new (or reset) store, publish what is pending, apply what others
    /// committed. `Err` when the store did not answer (nothing local changes).
    pub fn sync(&self, sh: &dyn Local) -> Result<usize, String> {
        let mut cur = self.cursor.lock();
        let (epoch, len): (Option<String>, u64) =
            self.cmd(|c| redis::pipe().get(&self.keys.epoch).llen(&self.keys.ops).query(c))?;
        if epoch.is_none() || epoch != cur.epoch || len < cur.at {
            let lost = epoch.is_none() || cur.epoch.is_some();
            let fresh = format!("{:016x}", rand::random::<u64>());
            let (_, epoch): (bool, String) =
                self.cmd(|c| redis::pipe().set_nx(&self.keys.epoch, &fresh).get(&self.keys.epoch).query(c))?;
            if lost {
                tracing::warn!(store = %self.endpoint, "the fleet store holds no state this instance knows (new, or restarted empty): republishing what this instance holds closed");
                for op in closed_state(sh) {
                    if let Some(e) = entry_of(&op) {
                        self.push(&epoch, &e)?;
                    }
                }
            }
            let dir = self.pending_path.parent().unwrap_or(Path::new("."));
            if let Err((e, _)) = crate::durable::write_durably(dir, EPOCH_FILE, epoch.as_bytes()) {
                tracing::error!(error = %e, "cannot write the fleet epoch file");
            }
            cur.epoch = Some(epoch);
            cur.at = 0;
        }
        let Some(epoch) = cur.epoch.clone() else { return Ok(0) };
        // What was applied here during an outage goes first: nothing read below can undo it.
        let pending: Vec<Value> = self.pending.lock().clone();
        if !pending.is_empty() {
            for e in &pending {
                if self.push(&epoch, e)? < 0 {
                    return Err("the fleet store's epoch changed".into());
                }
            }
            tracing::info!(changes = pending.len(), "published the changes applied during the fleet store outage");
            let mut p = self.pending.lock();
            let n = pending.len().min(p.len());
            p.drain(..n);
            self.save_pending(&p);
        }
        let at = cur.at;
        let entries: Vec<Vec<u8>> =
            self.cmd(|c| redis::cmd("LRANGE").arg(&self.keys.ops).arg(at).arg(-1).query::<Vec<Vec<u8>>>(c))?;
        let mut applied = 0;
        for (action, op) in fold(&entries) {
            // A reset is an event, not a state: one from before this instance followed the list
            // is not replayed (the store's counters are the truth; they were cleared then).
            if at == 0 && matches!(op, Op::QuotaReset(_)) {
                continue;
            }
            let target = op.target();
            let old = current(sh, &target);
            if old == op.new_value() {
                continue;
            }
            let meta = Meta { actor: Some("fleet"), role: None, source_ip: None, request_id: "fleet", status: 0 };
            let r = transact(sh.audit_log(), sh.runtime(), meta, &target, Value::Null, action, || {
                Ok::<_, Refused>(Plan { action, op, old, reason: Some("applied from the fleet store".into()) })
            });
            match r {
                Ok(c) => {
                    applied += 1;
                    tracing::info!(change = %target, version = c.version, "applied a change from the fleet store");
                    let rules = sh.live_rules().current().snapshot.version.clone();
                    sh.event_bus().emit(crate::events::switch_changed_event(&c.change(), "fleet", &rules));
                }
                Err(TxError::Store(e)) => {
                    tracing::error!(error = %e, change = %target, "cannot apply a fleet change: the audit log refused it; retried");
                    return Err(e.to_string());
                }
                Err(TxError::Refused(_)) => {}
            }
        }
        cur.at = at + entries.len() as u64;
        Ok(applied)
    }

    /// Starts the fleet thread: subscribes to the change channel, syncs on every message and at
    /// least every [`POLL`], reconnecting (each attempt within [`BUDGET`]) while the store is down.
    pub fn start<S: Local + Send + Sync + 'static>(self: &Arc<Self>, shared: Weak<S>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new().name("fleet".into()).spawn(move || me.run(&shared)).map(drop)
    }

    /// One sync; false once the gateway is gone.
    fn tick<S: Local>(&self, shared: &Weak<S>) -> bool {
        let Some(sh) = shared.upgrade() else { return false };
        if let Err(e) = self.sync(&*sh) {
            tracing::debug!(error = %e, "fleet sync failed");
        }
        true
    }

    fn run<S: Local>(&self, shared: &Weak<S>) {
        loop {
            // The subscriber: a message wakes the sync at once; the read timeout is the backstop.
            if let Ok(mut c) = self.connect() {
                let mut ps = c.as_pubsub();
                if ps.set_read_timeout(Some(POLL)).is_ok() && ps.subscribe(&self.keys.changes).is_ok() {
                    loop {
                        if !self.tick(shared) {
                            return;
                        }
                        match ps.get_message() {
                            Ok(_) => {}
                            Err(e) if e.is_timeout() => {}
                            Err(_) => break,
                        }
                    }
                }
            }
            if !self.tick(shared) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// True when a store error says the TLS handshake failed on trust (its certificate is not one
/// `redis_ca_file` vouches for, or it refused ours): a configuration fault, not an outage.
pub fn tls_refused(error: &str) -> bool {
    error.contains("invalid peer certificate") || error.contains("received fatal alert")
}

/// Runs one control-plane transaction and, in fleet mode, publishes what it committed. `None`
/// for the second member without a fleet.
pub fn run<E>(
    fleet: Option<&Fleet>,
    action: AuditAction,
    tx: impl FnOnce() -> Result<crate::txn::Committed, E>,
) -> (Result<crate::txn::Committed, E>, Option<Published>) {
    let Some(f) = fleet else { return (tx(), None) };
    f.commit(|| {
        let r = tx();
        let entry = match &r {
            Ok(c) => Some(json!({ "action": action.as_str(), "target": c.target, "new": c.new })),
            Err(_) => None,
        };
        (r, entry)
    })
}

#[cfg(test)]
mod tests;
