//! Runtime flags, typed: what an operator may turn off (or on) in an emergency without a deploy.
//! Their live values are the gateway's switch state; the request pipeline's stages name the flag
//! that gates them (see [`crate::pipeline::RequestCheck::flag`]).

/// Runtime flags: `(name, default, environment variable, what turning it off does)`.
///
/// Every flag is something an operator may need to turn off (or on) in an emergency without a
/// deploy; the checks read them at request time from the gateway's switch state.
pub const FLAGS: &[(&str, bool, &str, &str)] = &[
    (
        "rate_limit",
        true,
        "RATE_LIMIT_ENABLED",
        "off: no request is refused with 429 rate_limited (limits are neither counted nor enforced)",
    ),
    (
        "quota_enforcement",
        false,
        "QUOTA_ENFORCEMENT_ENABLED",
        "off: quotas are counted and quota_exceeded events logged, but no request is refused with 402",
    ),
    (
        "safe_test_mode",
        false,
        "SAFE_TEST_MODE",
        "off: POST /v1/safe-test/{type} is refused; on: operators may fire synthetic test events",
    ),
    (
        "firewall",
        true,
        "FIREWALL_ENABLED",
        "off: firewall rules are not evaluated (nothing is blocked with 403 ip_blocked, no firewall_block events)",
    ),
    (
        "tenant_scope",
        true,
        "TENANT_SCOPE_ENABLED",
        "off: the tenant-scope check is skipped (no 403 tenant_mismatch); cross-tenant requests reach the upstream",
    ),
    (
        "pii_scanning",
        true,
        "PII_SCANNING_ENABLED",
        "off: upstream responses are not scanned for PII (nothing withheld with 502 response_blocked)",
    ),
    (
        "webhook_verification",
        true,
        "WEBHOOK_VERIFICATION_ENABLED",
        "off: webhook signatures are not checked (no 401 invalid_signature); unsigned webhooks reach the upstream",
    ),
];

/// A runtime flag, typed: code names a flag by this enum, so a misspelt flag is a compile error
/// rather than a lookup that silently reads as off (fail open). Its name, default, variable and
/// effect are its entry in [`FLAGS`] (same order, checked by a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `rate_limit`.
    RateLimit,
    /// `quota_enforcement`.
    QuotaEnforcement,
    /// `safe_test_mode`.
    SafeTestMode,
    /// `firewall`.
    Firewall,
    /// `tenant_scope`.
    TenantScope,
    /// `pii_scanning`.
    PiiScanning,
    /// `webhook_verification`.
    WebhookVerification,
}

impl Flag {
    /// Every flag, in [`FLAGS`] order.
    pub const ALL: [Flag; 7] = [
        Flag::RateLimit,
        Flag::QuotaEnforcement,
        Flag::SafeTestMode,
        Flag::Firewall,
        Flag::TenantScope,
        Flag::PiiScanning,
        Flag::WebhookVerification,
    ];

    /// Its [`FLAGS`] entry.
    fn entry(self) -> &'static (&'static str, bool, &'static str, &'static str) {
        // `ALL` and `FLAGS` have the same length and order (a test checks it).
        &FLAGS[self as usize]
    }

    /// Its name in the API, the state file and the metrics.
    pub fn name(self) -> &'static str {
        self.entry().0
    }

    /// Its built-in default.
    pub fn default_on(self) -> bool {
        self.entry().1
    }

    /// The flag of an API path or a state file entry; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A set of runtime flags: their values as one request reads them, once (one load of the switch
/// state instead of one per check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagSet(u16);

impl FlagSet {
    /// The set of the flags `on` says are on.
    pub fn from_fn(on: impl Fn(Flag) -> bool) -> FlagSet {
        FlagSet(Flag::ALL.iter().filter(|f| on(**f)).fold(0, |bits, f| bits | (1 << *f as u16)))
    }

    /// Whether `flag` is on.
    pub const fn contains(self, flag: Flag) -> bool {
        self.0 & (1 << flag as u16) != 0
    }
}

#[cfg(test)]
mod tests;
