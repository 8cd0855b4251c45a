//! What a check returns, and the one dry-run mechanism every check shares.
//!
//! A check never decides whether its finding blocks: it reports a [`Finding`] carrying the rule's
//! [`Mode`], and [`Outcome::add`] applies it. `enforce` stops the request with the finding's deny;
//! `monitor` records the same finding as flagged and lets the request through. The gateway core
//! turns every finding into exactly one security event (`action: blocked` or `flagged`).

use crate::deny::Deny;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Whether a rule blocks or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Detect and block.
    #[default]
    Enforce,
    /// Detect, emit the same event with action `flagged`, let the request through.
    Monitor,
}

impl Mode {
    /// `enforce` or `monitor`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
        }
    }
}

/// Event severity, ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Review daily.
    Info,
    /// Investigate within the hour.
    Warning,
    /// Respond now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `info`, `warning` or `critical`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// Parses a severity name, case-insensitively.
    pub fn parse(s: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Position in [`Severity::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The security event types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// An identity reached for another tenant's resource.
    CrossTenantAttempt,
    /// The anomaly detector revoked a session.
    AnomalyRed,
    /// A response was withheld or redacted for PII.
    PiiLeakBlock,
    /// A webhook signature was missing, invalid, stale or replayed.
    WebhookInvalidSignature,
    /// Missing or invalid credentials.
    AuthFailure,
    /// A firewall rule (client IP, CIDR, request pattern) matched.
    FirewallBlock,
    /// An SSRF target was found in a request.
    SsrfBlock,
    /// A tenant's quota ran out.
    QuotaExceeded,
    /// The anomaly detector injected latency.
    AnomalyAmber,
    /// A rule reload was rejected; the old rules stay.
    RulesReloadFailed,
    /// A rate limit answered 429 (aggregated per key and window).
    RateLimitHit,
    /// An operator flipped a switch or flag.
    SwitchChanged,
    /// A certificate/key pair failed its checks on reload; the pair in service stays.
    TlsReloadFailed,
    /// A certificate in service enters its expiry-warning window.
    TlsCertificateExpiring,
    /// Fleet mode: the fleet store could not be asked where the request path needed it (the
    /// webhook replay cache); the documented fallback applied.
    FleetStoreUnavailable,
    /// An alert notification could not be delivered to a sink (after its retries, or its queue
    /// was full).
    AlertDeliveryFailed,
}

impl EventType {
    /// Every type, in the contract's order.
    pub const ALL: [EventType; 16] = [
        EventType::CrossTenantAttempt,
        EventType::AnomalyRed,
        EventType::PiiLeakBlock,
        EventType::WebhookInvalidSignature,
        EventType::AuthFailure,
        EventType::FirewallBlock,
        EventType::SsrfBlock,
        EventType::QuotaExceeded,
        EventType::AnomalyAmber,
        EventType::RulesReloadFailed,
        EventType::RateLimitHit,
        EventType::SwitchChanged,
        EventType::TlsReloadFailed,
        EventType::TlsCertificateExpiring,
        EventType::FleetStoreUnavailable,
        EventType::AlertDeliveryFailed,
    ];

    /// The contract's name, e.g. `cross_tenant_attempt`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CrossTenantAttempt => "cross_tenant_attempt",
            Self::AnomalyRed => "anomaly_red",
            Self::PiiLeakBlock => "pii_leak_block",
            Self::WebhookInvalidSignature => "webhook_invalid_signature",
            Self::AuthFailure => "auth_failure",
            Self::FirewallBlock => "firewall_block",
            Self::SsrfBlock => "ssrf_block",
            Self::QuotaExceeded => "quota_exceeded",
            Self::AnomalyAmber => "anomaly_amber",
            Self::RulesReloadFailed => "rules_reload_failed",
            Self::RateLimitHit => "rate_limit_hit",
            Self::SwitchChanged => "switch_changed",
            Self::TlsReloadFailed => "tls_reload_failed",
            Self::TlsCertificateExpiring => "tls_certificate_expiring",
            Self::FleetStoreUnavailable => "fleet_store_unavailable",
            Self::AlertDeliveryFailed => "alert_delivery_failed",
        }
    }

    /// The contract's default severity.
    pub const fn default_severity(self) -> Severity {
        match self {
            Self::CrossTenantAttempt | Self::AnomalyRed => Severity::Critical,
            Self::RateLimitHit | Self::SwitchChanged => Severity::Info,
            _ => Severity::Warning,
        }
    }

    /// Whether events of this type count in the health score. An operator's own switch flip and
    /// the alerting pipeline's own delivery reports say nothing about attacks or the service's
    /// health: they are counted and queryable, never a penalty.
    pub const fn counts_in_health(self) -> bool {
        !matches!(self, Self::SwitchChanged | Self::AlertDeliveryFailed)
    }

    /// Parses a type name as operators write it: `auth_failure`, `auth-failure` or
    /// `AUTH_FAILURE` (the runbook's spellings).
    pub fn parse(s: &str) -> Option<EventType> {
        let s = s.trim();
        Self::ALL.into_iter().find(|t| {
            let name = t.as_str().as_bytes();
            name.len() == s.len()
                && name.iter().zip(s.bytes()).all(|(&n, c)| {
                    let c = if c == b'-' { b'_' } else { c.to_ascii_lowercase() };
                    n == c
                })
        })
    }

    /// Position in [`EventType::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What happened to the request (or, for system events, to the operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// An `enforce` rule stopped the request.
    Blocked,
    /// A `monitor` rule matched; the request went through.
    Flagged,
    /// Something was redacted and passed on (PII `redact`).
    Redacted,
    /// An operation was refused (a rule reload that failed validation).
    Rejected,
    /// State was changed (switches, flags).
    Changed,
}

impl Action {
    /// Lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Flagged => "flagged",
            Self::Redacted => "redacted",
            Self::Rejected => "rejected",
            Self::Changed => "changed",
        }
    }
}

/// One detection by one rule. Never holds secrets, tokens or raw PII values: `detail` carries
/// kinds, counts, reasons and masked samples only.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule that matched.
    pub rule_id: Arc<str>,
    /// The rule's mode.
    pub mode: Mode,
    /// The event this finding becomes.
    pub event: EventType,
    /// Its severity (the type's default unless the rule overrides it).
    pub severity: Severity,
    /// What the client gets when the rule enforces.
    pub deny: Deny,
    /// Structured detail for the event (no secrets, no raw PII).
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl Finding {
    /// The action this finding's mode implies.
    pub const fn action(&self) -> Action {
        match self.mode {
            Mode::Enforce => Action::Blocked,
            Mode::Monitor => Action::Flagged,
        }
    }
}

/// The findings of one phase: every monitor-mode finding, the findings of scoring rules below
/// their blocking zone, at most one enforcing deny (the first; checks stop at it), and the delay a
/// scoring rule asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Monitor-mode findings: reported, not enforced.
    pub flagged: Vec<Finding>,
    /// Findings of scoring rules (anomaly zones) below their blocking zone: reported `flagged`
    /// whatever the rule's mode; what they do is [`Outcome::delay`].
    pub scored: Vec<Finding>,
    /// The first enforce-mode finding: the request stops here.
    pub deny: Option<Finding>,
    /// Wait this long before forwarding (the longest any scoring rule asked for); never applied
    /// to a denied request.
    pub delay: Option<Duration>,
}

impl Outcome {
    /// Applies a finding's mode. Returns `Break` once the request is denied: later checks must
    /// not run.
    pub fn add(&mut self, f: Finding) -> ControlFlow<()> {
        match f.mode {
            Mode::Monitor => {
                self.flagged.push(f);
                ControlFlow::Continue(())
            }
            Mode::Enforce => {
                self.deny = Some(f);
                ControlFlow::Break(())
            }
        }
    }

    /// Records a scoring rule's finding below its blocking zone: reported, never a deny.
    pub fn score(&mut self, f: Finding) {
        self.scored.push(f);
    }

    /// Asks for the request to wait `d` before it is forwarded (the longest ask wins).
    pub fn delay_by(&mut self, d: Duration) {
        self.delay = Some(self.delay.map_or(d, |old| old.max(d)));
    }

    /// True when nothing matched.
    pub fn is_clean(&self) -> bool {
        self.flagged.is_empty() && self.scored.is_empty() && self.deny.is_none()
    }

    /// Every finding, scored first, then flagged, then the deny.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.scored.iter().chain(&self.flagged).chain(self.deny.as_ref())
    }
}

#[cfg(test)]
mod tests;
