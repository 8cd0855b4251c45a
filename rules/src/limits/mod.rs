//! Rate limits and quotas: the `rate_limits:` and `quotas:` sections of a rule file, the keyed
//! limiter, the quota counters and event aggregation. Pure: time is passed in, nothing here
//! reads a clock or a file.
//!
//! ```yaml
//! rate_limits:
//!   - id: per-client
//!     description: "the runbook's RATE_LIMIT_MAX_REQUESTS=100 per RATE_LIMIT_WINDOW_MS=60000"
//!     mode: enforce             # or monitor
//!     severity: info            # default: rate_limit_hit's (info)
//!     routes: [api]             # optional; default: every route
//!     key: [client_ip]          # one or more of client_ip, tenant, subject, api_key, header:<name>
//!     rate: 100/60s             # <requests>/<period>; units s, m, h; period 1s to 24h
//!     burst: 100                # optional; default: the rate's count
//!     max_keys: 100000          # optional; default 100000, at most 10000000
//!     ipv6_prefix: 64           # optional; default 64
//! quotas:
//!   - id: monthly-business
//!     mode: enforce             # monitor: never refuses, even with enforcement on
//!     severity: warning         # default: quota_exceeded's (warning)
//!     routes: [api]             # optional; default: every route
//!     per: tenant               # or subject (each subject within its tenant); default tenant
//!     limit: 100000             # requests per period
//!     period: month             # month | day | hour
//!     utc_offset: "+03:00"      # optional; default UTC; a fixed offset, no daylight saving
//!     thresholds: [80, 90, 100] # optional; default [80, 90, 100]; [] for none
//! ```
//!
//! # Rate limits
//!
//! * `key`: what one bucket counts. `client_ip` is the address resolved through the trusted
//!   proxies (IPv4-mapped IPv6 as IPv4; IPv6 by its `ipv6_prefix` network, /64 by default, since
//!   one subscriber holds a whole /64); `tenant` and `subject` are the verified identity's;
//!   `api_key` is the API key's id (the identity's `credential`, only for API-key
//!   authentication, never the secret); `header:<name>` is every value of the header joined with
//!   `, `. Several parts make a combined key (`[tenant, client_ip]`: each address of each
//!   tenant). Parts are tagged and length-prefixed, so `("a", "bc")` ≠ `("ab", "c")`; a part
//!   over 256 bytes counts by its first 256 bytes and its full length (a huge header costs no
//!   more to key than a short one).
//! * **An absent part falls back to the client IP.** `tenant` on an anonymous request,
//!   `api_key` on a JWT request, a missing header: the part is replaced by the client address
//!   (tagged, so it never equals a present value). The request is still limited, at the same
//!   rate, per address: leaving out a credential or a header never escapes a limit, and callers
//!   without it do not all share one bucket (which would let one of them lock out the rest).
//!   Only with no client IP at all (not reachable through the gateway) do they share one.
//! * `rate` and `burst`: GCRA ([`gcra`]): `rate` is the sustained rate, `burst` how many
//!   requests may arrive at once. With the default burst, `100/60s` allows 100 at once, then one
//!   every 0.6 s; over any window of `L` seconds at most `burst + L × rate` requests pass.
//! * `max_keys`: the bound on keys held for this rule. Idle keys are forgotten by themselves
//!   (at most one period after their last request, with the default burst); at the bound, a new
//!   key replaces the key closest to being forgotten in its buckets, so a flood of unique keys
//!   (random source addresses) cannot grow memory past it nor free a client that is being
//!   limited. 16 to 34 bytes per key (see [`gcra`]), never more than 16 bytes × `max_keys`
//!   (rounded up) plus about 12 KiB per rule.
//! * Several rules may apply to one request; each counts it. The request is refused when any
//!   `enforce` rule refuses it, with the **latest** `Retry-After` among them (the request can
//!   only pass once every limit allows it), and then no rule counts it (the ones that did are
//!   refunded). A `monitor` rule that would refuse yields a flagged finding and the request goes
//!   on; it behaves exactly like the `enforce` rule would, so its findings show what enforcing
//!   would do.
//! * Headers ([IETF draft-ietf-httpapi-ratelimit-headers][draft]): a refusal is 429
//!   `rate_limited` with `Retry-After` (seconds until one request is allowed),
//!   `RateLimit-Policy: "<rule id>";q=<count>;w=<period seconds>` and
//!   `RateLimit: "<rule id>";r=0;t=<seconds until the full burst is back>`. A request that
//!   passes gets the same two headers of the most constraining `enforce` rule (fewest remaining,
//!   then latest reset) in [`LimitCheck::headers`]. `monitor` rules never add headers.
//! * Reloads: the limiter state lives in the compiled rule; [`RateLimits::carry_over`] gives
//!   every rule whose id and hash (see [`crate::rulefile`]) are unchanged the state of the
//!   running snapshot's rule, so an unchanged rule keeps counting and a changed one starts
//!   fresh.
//! * Fleet mode: [`RateLimits::check_fleet`] also holds each rule's count as a fleet-wide
//!   budget per aligned window, shared by the instances without a round trip on the request
//!   path ([`fleet`], its accuracy stated there).
//!
//! # Quotas
//!
//! * A quota counts requests of a tenant (`per: tenant`) or of each subject within its tenant
//!   (`per: subject`) on its routes, per calendar `period` in the zone `utc_offset` (`Z`, `UTC`,
//!   `+03:00`, `-05:30`, `+0545`; −12:00 to +14:00). Months are calendar months; the counter
//!   restarts at the first request of a new period. Requests without a tenant (anonymous, or an
//!   identity with no tenant) are not counted: there is no one to bill. Tenants or subjects over
//!   256 bytes are not counted either.
//! * The `quota_enforcement` flag (the caller's switch) decides what a used-up quota does: off,
//!   requests are only counted; on, an `enforce` rule refuses with 402 `quota_exceeded`,
//!   `Retry-After` (seconds until the reset), `RateLimit-Policy` / `RateLimit` (`r=0`), and the
//!   refused request is not counted. A `monitor` rule never refuses; with enforcement on it
//!   reports each would-be refusal (aggregated).
//! * `thresholds`: when a request takes the count to or past a percentage of the limit, one
//!   `quota_exceeded` event reports it (`detail.threshold`, `used`, `limit`, `resets_at`), once
//!   per threshold and period (a jump past several reports the highest). These notices are
//!   flagged findings (they never block), whatever the rule's mode and the flag.
//! * Counters ([`QuotaBook`]) are keyed by rule **id**, tenant and subject, not by rule hash: a
//!   limit raised mid-month keeps the month's usage (and re-arms thresholds the new limit puts
//!   back out of reach). A changed `period` or `utc_offset` restarts the counter. The book is
//!   gateway-wide state, persisted by the gateway as [`QuotaBook::to_json`] under `state_dir`
//!   (batch writes with [`QuotaBook::generation`]); [`QuotaBook::reset`] resets a tenant by hand.
//! * Bounded: at most `max_counters` counters (100000 by default). When the shard of a new key
//!   is full, counters of finished periods are dropped first; if it is still full the request is
//!   not counted (fail open: a quota is billing, not protection) and
//!   [`QuotaOutcome::untracked`] / [`QuotaBook::untracked`] say so.
//! * Concurrent requests of one tenant can pass a used-up quota by at most the number in flight
//!   when it runs out (the check and the count are two steps).
//!
//! # Events
//!
//! Refusals are `rate_limit_hit` (info) and `quota_exceeded` (warning) findings. The first
//! refusal of a key in a window ([`Aggregator`], 60 s by default) is reported at once with its
//! key label; the rest are counted and summarised when the window closes
//! ([`Aggregator::drain`]). Key labels never hold secrets: addresses, tenants, subjects and API
//! key ids as they are (cut at 64 bytes), header values as a keyed hash and a length.
//!
//! # Time
//!
//! [`Now`] carries two clocks read once per request: `mono_ns`, nanoseconds since a fixed
//! monotonic origin (limiter and aggregation windows: it never jumps), and `unix_secs`
//! (calendar periods).
//!
//! [draft]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/

pub mod aggregate;
pub mod fleet;
pub mod gcra;
pub mod quota;
pub mod rate;
#[cfg(test)]
mod tests;

pub use aggregate::{Aggregator, Emit, Origin, Summary};
pub use fleet::{Fallback, FleetShares};
pub use gcra::{Gcra, LimitDecision, LimiterStore};
pub use quota::{Per, Period, QuotaBook, QuotaOutcome, QuotaRule, Quotas, Usage};
pub use rate::{CarryOver, KeyPart, LimitRule, RateLimits};

use crate::identity::Identity;
use crate::verdict::Outcome;
use crate::view::RequestView;

/// What a key is read from: the request, and the verified identity (`None`: anonymous).
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The request.
    pub view: &'a RequestView<'a>,
    /// The verified identity, if any.
    pub identity: Option<&'a Identity>,
}

/// The two clocks, read once per request by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Nanoseconds since a monotonic origin fixed for the process (e.g. an `Instant` taken at
    /// start): limiter state and aggregation windows.
    pub mono_ns: u64,
    /// Unix time in seconds: quota periods.
    pub unix_secs: u64,
}

/// The answer of [`RateLimits::check`] and [`Quotas::check`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LimitCheck {
    /// Flagged findings whose event is due now (monitor refusals, quota threshold notices),
    /// and the refusal, if any. Flagged findings counted by the aggregator instead are not
    /// listed.
    pub outcome: Outcome,
    /// Whether `outcome.deny` should become an event now (false: the aggregator counted it; its
    /// window's summary will report it).
    pub deny_event: bool,
    /// Headers for the response when the request passes (`ratelimit-policy`, `ratelimit`).
    pub headers: Vec<(&'static str, String)>,
}
