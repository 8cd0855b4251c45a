//! Fleet mode's counting thread (issue 17): rate-limit budgets shared by the instances (the
//! arithmetic is [`portcullis_rules::limits::fleet`]), the live-instance count they are split
//! by, and the quota counters (each instance adds what it counted to the fleet's counter and
//! adopts the fleet's total). One blocking connection of its own, every [`TICK`]; the request path only reads and
//! writes the local tables.
//!
//! Keys: `portcullis:{id}:instances` (a sorted set: instance id → last tick, ms), and
//! `portcullis:{id}:rl:<key>:<window>` (a hash: what the fleet charged and reserved for a rate
//! key in a window, and how many instances reported it; expires one period plus 10 s after its
//! last sync), and
//! `portcullis:{id}:q:<tenant hash>:<counter hash>:<period start>` (integer: the fleet's count of
//! a quota counter in a period; expires a day after the period ends).

use crate::fleet::Fleet;
use crate::state::Shared;
use portcullis_rules::limits::fleet::SyncItem;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the counters meet the store.
pub const TICK: Duration = Duration::from_millis(100);
/// An instance not seen for this long no longer counts in the split.
pub const INSTANCE_TTL_MS: u64 = 3_000;
/// Most rate keys carried in one round trip (the rest wait for the next tick).
const MAX_ITEMS: usize = 2_000;

/// For each key (a hash: `c` what the fleet charged and reserved, `r` the instances that
/// reported): charge `charge`, count this instance once (`first`), then reserve the fair part of
/// what remains (`ceil(rem / n)` less `headroom`, at most `rem`), where what remains holds back
/// `held` for each instance that has not reported yet. A value that is not an integer
/// (tampered) answers -1 for that key: the instance then admits no more than it has.
const RATES: &str = r"
local n = tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do
  local b = 1 + (i - 1) * 6
  local charge, headroom, limit = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local ttl, first, held = ARGV[b + 4], tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local c = redis.pcall('HINCRBY', k, 'c', charge)
  local r = redis.pcall('HINCRBY', k, 'r', first)
  if type(c) ~= 'number' or type(r) ~= 'number' then
    out[i] = -1
  else
    local waiting = n - r
    if waiting < 0 then waiting = 0 end
    local rem = limit - c - waiting * held
    local give = 0
    if rem > 0 then
      give = math.ceil(rem / n) - headroom
      if give > rem then give = rem end
      if give > 0 then redis.call('HINCRBY', k, 'c', give) else give = 0 end
    end
    redis.call('PEXPIRE', k, ttl)
    out[i] = give
  end
end
return out
";

/// For each quota counter: add `delta`, return the total (-1: not an integer, left alone).
const QUOTAS: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  local c = redis.pcall('INCRBY', k, ARGV[2 * i - 1])
  if type(c) ~= 'number' then out[i] = -1 else redis.call('EXPIREAT', k, ARGV[2 * i]) out[i] = c end
end
return out
";

/// Appends the records past this instance's position (`HGET pos instance`) to the capped fleet
/// audit list, each tagged with the instance, and moves the position: two processes of one
/// instance (an upgrade) never append a record twice.
const AUDIT: &str = r"
local pos = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') or 0
for i = 3, #ARGV, 2 do
  local s = tonumber(ARGV[i])
  if s > pos then redis.call('RPUSH', KEYS[1], ARGV[i + 1]) pos = s end
end
redis.call('HSET', KEYS[2], ARGV[1], pos)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return pos
";

/// Records kept in the fleet audit list (`portcullis:{id}:audit`).
pub const AUDIT_CAP: u64 = 10_000;
/// Most records carried in one tick.
const AUDIT_BATCH: usize = 500;

/// Unix time in milliseconds (the fleet budgets' windows).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One tick: the heartbeat (and the live-instance count), the quota counters, the rate keys.
fn tick(fleet: &Fleet, sh: &Shared, c: &mut redis::Connection) -> redis::RedisResult<()> {
    let now = unix_ms();
    let instances = fleet.key("instances");
    let (n,): (u64,) = redis::pipe()
        .zadd(&instances, &fleet.cfg.instance, now)
        .ignore()
        .zrembyscore(&instances, "-inf", now.saturating_sub(INSTANCE_TTL_MS))
        .ignore()
        .zcard(&instances)
        .query(c)?;
    // The audit list never holds the counters back: a local read error or a tampered list is
    // logged and retried next tick (a broken connection fails the commands below as well).
    if let Err(e) = stream_audit(fleet, sh, c) {
        tracing::warn!(error = %e, "fleet audit list: records not appended yet; retried");
    }
    let rates = &fleet.rates;
    rates.set_instances(n);
    let book = &sh.limits.book;
    let quotas = book.fleet_plan(now / 1000);
    for chunk in quotas.chunks(MAX_ITEMS) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(QUOTAS).arg(chunk.len());
        for q in chunk {
            cmd.arg(fleet.key(&format!("q:{}", q.store_key)));
        }
        for q in chunk {
            cmd.arg(q.delta).arg(q.resets_at.saturating_add(86_400));
        }
        let totals: Vec<i64> = cmd.query(c)?;
        let totals: Vec<Option<u64>> =
            (0..chunk.len()).map(|j| totals.get(j).and_then(|&t| u64::try_from(t).ok())).collect();
        book.fleet_apply(chunk, &totals);
    }
    let mut items = rates.plan(now);
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(MAX_ITEMS));
        let given = sync_rates(fleet, c, &items, n);
        match given {
            Ok(g) => rates.apply(&items, &g),
            Err(e) => {
                // Not carried: charged (with what comes next) once the store answers.
                rates.retouch(&items);
                rates.retouch(&rest);
                return Err(e);
            }
        }
        items = rest;
    }
    Ok(())
}

fn sync_rates(
    fleet: &Fleet,
    c: &mut redis::Connection,
    items: &[SyncItem],
    n: u64,
) -> redis::RedisResult<Vec<Option<u64>>> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(RATES).arg(items.len());
    for i in items {
        cmd.arg(fleet.key(&format!("rl:{}", i.store_key())));
    }
    cmd.arg(n);
    for i in items {
        let ttl = i.period.saturating_mul(1000).saturating_add(10_000);
        cmd.arg(i.charge).arg(i.headroom).arg(i.limit).arg(ttl).arg(u8::from(i.first)).arg(i.held_share);
    }
    let out: Vec<i64> = cmd.query(c)?;
    Ok((0..items.len()).map(|j| out.get(j).and_then(|&g| u64::try_from(g).ok())).collect())
}

/// The local audit records not yet in the fleet's list, appended (oldest first).
fn stream_audit(fleet: &Fleet, sh: &Shared, c: &mut redis::Connection) -> redis::RedisResult<()> {
    let last = sh.audit.last_seq();
    let known = *fleet.audit_streamed.lock();
    let from = match known {
        Some(p) if p >= last => return Ok(()),
        Some(p) => p,
        // First contact: where the fleet's list has this instance (a new one starts here).
        None => {
            let p: Option<String> = redis::cmd("HGET").arg(fleet.key("audit_pos")).arg(&fleet.cfg.instance).query(c)?;
            p.and_then(|p| p.parse::<u64>().ok()).filter(|&p| p <= last).unwrap_or(last)
        }
    };
    if from >= last {
        *fleet.audit_streamed.lock() = Some(last);
        return Ok(());
    }
    let want = usize::try_from(last - from).unwrap_or(AUDIT_BATCH).min(AUDIT_BATCH);
    let mut records = sh.audit.recent(want).map_err(redis::RedisError::from)?;
    records.reverse();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(AUDIT).arg(2).arg(fleet.key("audit")).arg(fleet.key("audit_pos")).arg(&fleet.cfg.instance).arg(AUDIT_CAP);
    let mut top = from;
    for mut r in records {
        let Some(seq) = r.get("seq").and_then(serde_json::Value::as_u64).filter(|&s| s > from) else { continue };
        if let Some(o) = r.as_object_mut() {
            o.insert("instance".into(), serde_json::Value::String(fleet.cfg.instance.clone()));
        }
        cmd.arg(seq).arg(r.to_string());
        top = top.max(seq);
    }
    let pos: u64 = if top > from { cmd.query(c)? } else { last };
    *fleet.audit_streamed.lock() = Some(pos.max(top));
    Ok(())
}

/// Starts the counting thread (ends when the gateway is gone).
pub fn start(fleet: &Arc<Fleet>, shared: Weak<Shared>) -> std::io::Result<()> {
    let fleet = fleet.clone();
    std::thread::Builder::new().name("fleet-limits".into()).spawn(move || run(&fleet, &shared)).map(drop)
}

fn run(fleet: &Fleet, shared: &Weak<Shared>) {
    let mut conn: Option<redis::Connection> = None;
    loop {
        let started = Instant::now();
        let Some(sh) = shared.upgrade() else { return };
        let r = match conn.as_mut() {
            Some(c) => tick(fleet, &sh, c),
            None => fleet.connect().and_then(|mut c| {
                let r = tick(fleet, &sh, &mut c);
                conn = Some(c);
                r
            }),
        };
        match r {
            Ok(()) => {
                if !fleet.rates.connected() {
                    tracing::info!("fleet counters: the store answers; rate budgets are shared again");
                }
                fleet.rates.set_connected(true);
                fleet.warm_replay_pool();
            }
            Err(e) => {
                if fleet.rates.connected() {
                    tracing::error!(error = %e, "fleet counters: the store is unreachable; rate limits fall back to rate_limit_fallback");
                }
                fleet.rates.set_connected(false);
                conn = None;
            }
        }
        drop(sh);
        std::thread::sleep(TICK.saturating_sub(started.elapsed()));
    }
}
