//! Operator state: what the control plane's address blocks, tenant suspensions and identity
//! allowlist entries decide for a request.
//!
//! The gateway keeps that state (`/v1/blocks`, `/v1/tenants`, `/v1/allowlist`: persisted and
//! audited through its one control-plane transaction). These pure functions turn a match into the
//! [`Finding`] every other check produces, so the refusal goes through the one deny renderer and
//! becomes one `firewall_block` event like any rule's:
//!
//! | match | answer | event `detail.reason` |
//! |---|---|---|
//! | the client address is in a blocked address or CIDR | 403 `ip_blocked` | `address_blocked` |
//! | the identity's tenant, or a tenant the request targets, is suspended | 403 `tenant_suspended` | `tenant_suspended` |
//!
//! Allowlist entries are keyed `email:<address>` or `domain:<name>`, lower case
//! ([`allowlist_key`]); the identity check consults them before the rule file's `allow:` lists
//! (see [`crate::identity`]).

use std::sync::Arc;

use crate::deny::{Deny, DenyCode};
use crate::verdict::{EventType, Finding, Mode};

/// The `rule_id` of a finding for a blocked client address.
pub const ADDRESS_RULE: &str = "control:address_block";
/// The `rule_id` of a finding for a suspended tenant.
pub const TENANT_RULE: &str = "control:tenant_suspension";
/// Longest allowlist value (an email address or a domain), in bytes.
pub const MAX_ALLOW_VALUE: usize = 254;

/// The finding for a client whose address is in the blocked `block` (an address or a CIDR).
pub fn address_blocked(block: &str) -> Finding {
    let mut detail = serde_json::Map::new();
    detail.insert("reason".into(), "address_blocked".into());
    detail.insert("block".into(), block.into());
    Finding {
        rule_id: Arc::from(ADDRESS_RULE),
        mode: Mode::Enforce,
        event: EventType::FirewallBlock,
        severity: EventType::FirewallBlock.default_severity(),
        deny: Deny::new(DenyCode::IpBlocked, "address_blocked"),
        detail,
    }
}

/// The finding for a request whose identity's tenant (`as_what` = `identity`) or targeted tenant
/// (`target`) is suspended.
pub fn tenant_suspended(tenant: &str, as_what: &'static str) -> Finding {
    let mut detail = serde_json::Map::new();
    detail.insert("reason".into(), "tenant_suspended".into());
    detail.insert("tenant".into(), tenant.into());
    detail.insert("matched".into(), as_what.into());
    Finding {
        rule_id: Arc::from(TENANT_RULE),
        mode: Mode::Enforce,
        event: EventType::FirewallBlock,
        severity: EventType::FirewallBlock.default_severity(),
        deny: Deny::new(DenyCode::TenantSuspended, "tenant_suspended"),
        detail,
    }
}

/// The first suspended tenant among the identity's (`identity`) and the targeted ones, with what
/// it was matched as; `None` when none is suspended.
pub fn first_suspended<'a>(
    identity: Option<&'a str>,
    targets: &'a [String],
    suspended: &dyn Fn(&str) -> bool,
) -> Option<(&'a str, &'static str)> {
    if let Some(t) = identity.filter(|t| suspended(t)) {
        return Some((t, "identity"));
    }
    targets.iter().find(|t| suspended(t)).map(|t| (t.as_str(), "target"))
}

/// The key of an allowlist entry: `email:<address>` or `domain:<name>`, lower case. The value is
/// trimmed; an email needs a non-empty local part and domain, a domain has no `@`; both are 1 to
/// [`MAX_ALLOW_VALUE`] bytes without whitespace or control characters.
pub fn allowlist_key(kind: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_ALLOW_VALUE || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("the value is 1 to {MAX_ALLOW_VALUE} bytes without spaces or control characters"));
    }
    let v = v.to_ascii_lowercase();
    match kind {
        "email" => match v.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !local.contains('@') => {
                Ok(format!("email:{v}"))
            }
            _ => Err(format!("`{v}` is not an email address (local@domain)")),
        },
        "domain" if !v.contains('@') && !v.starts_with('.') && !v.ends_with('.') => Ok(format!("domain:{v}")),
        "domain" => Err(format!("`{v}` is not a domain name")),
        _ => Err(format!("unknown allowlist kind `{kind}`; known: email, domain")),
    }
}

#[cfg(test)]
mod tests;
