//! `alerting:` in gateway.yaml: where alerts go (sinks), how deliveries are retried, and the
//! daily digest. The rules of *when* an alert fires are rule files (`alerts:`, hot-reloaded).
//!
//! Secrets — a webhook's URL and signing secret, a PagerDuty routing key, the SMTP password — are
//! read from the environment (`*_env`) or a file (`*_file`) once at start, never written inline
//! (a Slack or webhook URL may be written inline: prefer `url_env` when it embeds a token), and
//! never logged: their `Debug` is `<redacted>` and delivery errors never quote a URL.

use crate::secret::{read_secret, Secret};
use portcullis_rules::verdict::Severity;
use portcullis_rules::yaml::{ConfigError, Doc};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PagerDuty's Events API v2 endpoint (the default `url` of a `pagerduty` sink).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    #[serde(default)]
    evaluate_every_ms: Option<u64>,
    #[serde(default)]
    links_base_url: Option<String>,
    #[serde(default)]
    queue_capacity: Option<usize>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    sinks: Vec<RawSink>,
    #[serde(default)]
    digest: Option<RawDigest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    min_severity: Option<Severity>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    url_file: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default)]
    routing_key_env: Option<String>,
    #[serde(default)]
    routing_key_file: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
    #[serde(default)]
    smtp: Option<RawSmtp>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<String>,
    #[serde(default)]
    helo: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    time: String,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    sinks: Option<Vec<String>>,
}

/// How a connection to an SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (the default; port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS: only for a relay on loopback or a trusted network. Credentials are refused with it.
    None,
}

/// An e-mail sink's server.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name (also the name the certificate is checked against).
    pub host: String,
    /// Port (default 587, or 465 with `tls: implicit`).
    pub port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// AUTH user, with `password`.
    pub username: Option<String>,
    /// AUTH password (environment or file).
    pub password: Option<Secret>,
    /// The name sent in EHLO (default `portcullis`).
    pub helo: String,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// What a sink is.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// A JSON POST signed with Standard Webhooks (`webhook-id`, `-timestamp`, `-signature`).
    Webhook {
        /// Where to POST.
        url: Secret,
        /// The `whsec_…` signing secret; `None`: unsigned.
        secret: Option<Secret>,
    },
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack {
        /// The incoming-webhook URL (it embeds a token).
        url: Secret,
    },
    /// PagerDuty Events API v2: `trigger` / `resolve` with the rule's `dedup_key`.
    PagerDuty {
        /// The Events API URL (default [`PAGERDUTY_EVENTS_URL`]).
        url: Secret,
        /// The integration's routing key.
        routing_key: Secret,
    },
    /// E-mail over SMTP.
    Email(Box<SmtpConfig>),
}

impl SinkKind {
    /// `webhook`, `slack`, `pagerduty` or `email`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
            Self::PagerDuty { .. } => "pagerduty",
            Self::Email(_) => "email",
        }
    }
}

/// One configured sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Its name, as alert rules' `sinks:` and the metrics show it.
    pub name: String,
    /// Alerts below this severity do not go to it (default: every severity).
    pub min_severity: Severity,
    /// What it is.
    pub kind: SinkKind,
    /// Extra CA certificates (PEM) trusted besides the system's, for HTTPS and SMTP TLS.
    pub ca_file: Option<PathBuf>,
}

/// Retries of a failed delivery: exponential backoff from `initial_backoff`, doubling up to
/// `max_backoff`, at most `attempts` tries in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (first one included).
    pub attempts: u32,
    /// Wait before the second try.
    pub initial_backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// Timeout of one try (connect + send + answer).
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The wait before try `attempt + 1` after `attempt` (1-based) failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// When the daily digest is sent.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// Hour and minute, local to `zone`.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// IANA zone name (`America/Los_Angeles`) or `UTC`.
    pub zone: jiff::tz::TimeZone,
    /// The zone as written.
    pub zone_name: String,
    /// Sinks it goes to (default: every sink but PagerDuty, which takes incidents only).
    pub sinks: Option<Vec<String>>,
}

/// `alerting:` validated.
#[derive(Debug, Clone)]
pub struct AlertingConfig {
    /// How often the alert rules are evaluated (default 10 s).
    pub evaluate_every: Duration,
    /// Base URL of the control endpoint as the on-call reaches it, for the `/v1/events` links in
    /// notifications (default: none, the links are relative).
    pub links_base_url: Option<String>,
    /// Notifications waiting per sink (default 256); a full queue drops and counts.
    pub queue_capacity: usize,
    /// Retries of failed deliveries.
    pub retry: RetryPolicy,
    /// The sinks.
    pub sinks: Vec<SinkConfig>,
    /// The daily digest, when configured.
    pub digest: Option<DigestConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            evaluate_every: Duration::from_secs(10),
            links_base_url: None,
            queue_capacity: 256,
            retry: RetryPolicy {
                attempts: 5,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
            },
            sinks: Vec::new(),
            digest: None,
        }
    }
}

impl AlertingConfig {
    /// The sink names, which alert rules may name.
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.name.clone()).collect()
    }
}

/// Validates `alerting:`, recording every error at its key path.
pub(crate) fn compile(doc: &Doc, raw: RawAlerting, base: &Path, errs: &mut Vec<ConfigError>) -> AlertingConfig {
    let found = std::cell::RefCell::new(Vec::new());
    let err = |path: &str, msg: String| found.borrow_mut().push(doc.error_at(path, msg));
    let d = AlertingConfig::default();
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let evaluate_every = raw.evaluate_every_ms.map_or(d.evaluate_every, Duration::from_millis);
    if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&evaluate_every) {
        err("alerting.evaluate_every_ms", "must be 100 to 300000".into());
    }
    let links_base_url = raw.links_base_url.map(|u| u.trim_end_matches('/').to_owned());
    if let Some(u) = &links_base_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            err("alerting.links_base_url", format!("`{u}` must start with http:// or https://"));
        }
    }
    let queue_capacity = raw.queue_capacity.unwrap_or(d.queue_capacity);
    if !(1..=100_000).contains(&queue_capacity) {
        err("alerting.queue_capacity", "must be 1 to 100000".into());
    }
    let retry = RetryPolicy {
        attempts: raw.retry.attempts.unwrap_or(d.retry.attempts),
        initial_backoff: raw.retry.initial_backoff_ms.map_or(d.retry.initial_backoff, Duration::from_millis),
        max_backoff: raw.retry.max_backoff_ms.map_or(d.retry.max_backoff, Duration::from_millis),
        timeout: raw.retry.timeout_ms.map_or(d.retry.timeout, Duration::from_millis),
    };
    if !(1..=20).contains(&retry.attempts) {
        err("alerting.retry.attempts", "must be 1 to 20".into());
    }
    if retry.initial_backoff.is_zero() || retry.max_backoff < retry.initial_backoff {
        err("alerting.retry", "initial_backoff_ms must be at least 1 and at most max_backoff_ms".into());
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(120)).contains(&retry.timeout) {
        err("alerting.retry.timeout_ms", "must be 100 to 120000".into());
    }

    let mut sinks: Vec<SinkConfig> = Vec::new();
    for (i, s) in raw.sinks.into_iter().enumerate() {
        let at =
            |k: &str| if k.is_empty() { format!("alerting.sinks[{i}]") } else { format!("alerting.sinks[{i}].{k}") };
        if s.name.is_empty()
            || s.name.len() > portcullis_rules::alerts::MAX_SINK_NAME
            || !s.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            err(&at("name"), format!("`{}`: a sink name is 1 to 64 of A-Z a-z 0-9 - _", s.name));
        } else if sinks.iter().any(|x| x.name == s.name) {
            err(&at("name"), format!("duplicate sink name `{}`", s.name));
        }
        let secret = |env: (&'static str, &Option<String>), file: (&'static str, &Option<String>)| {
            read_secret((env.0, env.1.as_deref()), (file.0, file.1.as_deref().map(&resolve)))
        };
        let fail = |r: Result<Option<Secret>, (&'static str, String)>| match r {
            Ok(v) => v,
            Err((k, why)) => {
                err(&at(k), why);
                None
            }
        };
        let url = match (&s.url, fail(secret(("url_env", &s.url_env), ("url_file", &s.url_file)))) {
            (Some(_), Some(_)) => {
                err(&at("url"), "give url, url_env or url_file, one of them".into());
                None
            }
            (Some(u), None) => Some(Secret::new(u.clone())),
            (None, v) => v,
        };
        if let Some(u) = &url {
            let u = u.expose();
            // Never quote the URL: it may embed a token.
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
                err(&at("url"), "not an http:// or https:// URL".into());
            }
        }
        let unused = |k: &str, present: bool, err: &dyn Fn(&str, String)| {
            if present {
                err(&at(k), format!("`{k}` does not apply to a `{}` sink", s.kind));
            }
        };
        let kind = match s.kind.as_str() {
            "webhook" | "slack" | "pagerduty" => {
                unused("smtp", s.smtp.is_some(), &err);
                unused("from", s.from.is_some(), &err);
                unused("to", !s.to.is_empty(), &err);
                let need_url = |err: &dyn Fn(&str, String)| {
                    if url.is_none() {
                        err(&at("url"), "a URL is needed: url, url_env or url_file".into());
                    }
                };
                match s.kind.as_str() {
                    "webhook" => {
                        need_url(&err);
                        unused("routing_key_env", s.routing_key_env.is_some() || s.routing_key_file.is_some(), &err);
                        let secret = fail(secret(("secret_env", &s.secret_env), ("secret_file", &s.secret_file)));
                        if let Some(sec) = &secret {
                            if let Err(e) =
                                portcullis_rules::webhook::sign_standard_webhooks(sec.expose(), "probe", 0, b"")
                            {
                                // The error names the secret's id ("outbound"), never its value.
                                err(&at("secret_env"), e);
                            }
                        }
                        url.map(|url| SinkKind::Webhook { url, secret })
                    }
                    "slack" => {
                        need_url(&err);
                        unused("secret_env", s.secret_env.is_some() || s.secret_file.is_some(), &err);
                        unused("routing_key_env", s.routing_key_env.is_some() || s.routing_key_file.is_some(), &err);
                        url.map(|url| SinkKind::Slack { url })
                    }
                    _ => {
                        unused("secret_env", s.secret_env.is_some() || s.secret_file.is_some(), &err);
                        let key = fail(secret(
                            ("routing_key_env", &s.routing_key_env),
                            ("routing_key_file", &s.routing_key_file),
                        ));
                        if key.is_none() {
                            err(
                                &at("routing_key_env"),
                                "a routing key is needed: routing_key_env or routing_key_file".into(),
                            );
                        }
                        let url = url.unwrap_or_else(|| Secret::new(PAGERDUTY_EVENTS_URL));
                        key.map(|routing_key| SinkKind::PagerDuty { url, routing_key })
                    }
                }
            }
            "email" => {
                for (k, present) in [
                    ("url", url.is_some()),
                    ("secret_env", s.secret_env.is_some() || s.secret_file.is_some()),
                    ("routing_key_env", s.routing_key_env.is_some() || s.routing_key_file.is_some()),
                ] {
                    unused(k, present, &err);
                }
                email(&s, &at, &resolve, &err)
            }
            other => {
                err(&at("type"), format!("unknown sink type `{other}`; known: webhook, slack, pagerduty, email"));
                None
            }
        };
        let ca_file = s.ca_file.as_deref().map(&resolve);
        if let Some(p) = &ca_file {
            if let Err(e) = crate::alerting::tls::read_ca_file(p) {
                err(&at("ca_file"), e);
            }
        }
        if let Some(kind) = kind {
            sinks.push(SinkConfig {
                name: s.name,
                min_severity: s.min_severity.unwrap_or(Severity::Info),
                kind,
                ca_file,
            });
        }
    }

    let digest = raw.digest.and_then(|dg| {
        let (hour, minute) = match dg.time.split_once(':').map(|(h, m)| (h.parse::<u8>(), m.parse::<u8>())) {
            Some((Ok(h), Ok(m))) if h < 24 && m < 60 && dg.time.len() == 5 => (h, m),
            _ => {
                err("alerting.digest.time", format!("`{}` is not a time of day: write HH:MM, like 09:00", dg.time));
                (0, 0)
            }
        };
        let zone_name = dg.zone.unwrap_or_else(|| "UTC".into());
        let zone = match jiff::tz::TimeZone::get(&zone_name) {
            Ok(z) => z,
            Err(_) => {
                err(
                    "alerting.digest.zone",
                    format!("`{zone_name}` is not a known time zone (an IANA name like America/Los_Angeles, or UTC)"),
                );
                return None;
            }
        };
        if let Some(list) = &dg.sinks {
            for (j, n) in list.iter().enumerate() {
                if !sinks.iter().any(|s| s.name == *n) {
                    err(&format!("alerting.digest.sinks[{j}]"), format!("unknown sink `{n}`"));
                }
            }
        }
        Some(DigestConfig { hour, minute, zone, zone_name, sinks: dg.sinks })
    });

    errs.extend(found.into_inner());
    AlertingConfig { evaluate_every, links_base_url, queue_capacity, retry, sinks, digest }
}

fn email(
    s: &RawSink,
    at: &dyn Fn(&str) -> String,
    resolve: &dyn Fn(&str) -> PathBuf,
    err: &dyn Fn(&str, String),
) -> Option<SinkKind> {
    let Some(smtp) = &s.smtp else {
        err(&at("smtp"), "an email sink needs `smtp: {host, port, tls, username, password_env}`".into());
        return None;
    };
    let tls = match smtp.tls.as_deref().unwrap_or("starttls") {
        "starttls" => SmtpTls::StartTls,
        "implicit" => SmtpTls::Implicit,
        "none" => SmtpTls::None,
        other => {
            err(&at("smtp.tls"), format!("`{other}`: one of starttls, implicit, none"));
            SmtpTls::StartTls
        }
    };
    let password = match read_secret(
        ("password_env", smtp.password_env.as_deref()),
        ("password_file", smtp.password_file.as_deref().map(resolve)),
    ) {
        Ok(p) => p,
        Err((k, why)) => {
            err(&at(&format!("smtp.{k}")), why);
            None
        }
    };
    let password_given = smtp.password_env.is_some() || smtp.password_file.is_some();
    if smtp.username.is_some() != password_given {
        err(&at("smtp"), "give `username` and a password (password_env or password_file) together".into());
    }
    if tls == SmtpTls::None && (smtp.username.is_some() || password_given) {
        err(&at("smtp.tls"), "credentials are never sent without TLS: use starttls or implicit".into());
    }
    if smtp.host.is_empty() {
        err(&at("smtp.host"), "cannot be empty".into());
    }
    let valid = |a: &str| a.parse::<lettre::Address>().is_ok();
    let from = s.from.clone().unwrap_or_default();
    if !valid(&from) {
        err(&at("from"), format!("`{from}` is not an e-mail address"));
    }
    if s.to.is_empty() {
        err(&at("to"), "at least one recipient".into());
    }
    for (j, t) in s.to.iter().enumerate() {
        if !valid(t) {
            err(&at(&format!("to[{j}]")), format!("`{t}` is not an e-mail address"));
        }
    }
    let port = smtp.port.unwrap_or(if tls == SmtpTls::Implicit { 465 } else { 587 });
    Some(SinkKind::Email(Box::new(SmtpConfig {
        host: smtp.host.clone(),
        port,
        tls,
        username: smtp.username.clone(),
        password,
        helo: smtp.helo.clone().unwrap_or_else(|| "portcullis".into()),
        from,
        to: s.to.clone(),
    })))
}
