//! Delivery: one thread per sink with a bounded queue, retries with exponential backoff, and
//! every outcome counted. Enqueuing never blocks: a full queue drops the notification, counts it
//! and reports it as an `alert_delivery_failed` event, so no alert is lost silently.

use super::config::{RetryPolicy, SinkConfig, SinkKind, SmtpConfig, SmtpTls};
use super::message::{email_parts, failure_detail, pagerduty_bodies, slack_body, webhook_body, Message};
use crate::events::{EventBus, SecurityEvent};
use portcullis_rules::verdict::{Action, EventType};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One sink's counters (`portcullis_alert_deliveries_total{sink,result}` and attempts).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Notifications given up on after their retries (or refused for good by the receiver).
    pub failed: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Tries in all (a retry is a try).
    pub attempts: AtomicU64,
    /// Tries that failed and were scheduled again.
    pub retries: AtomicU64,
}

/// The outcome of one notification at one sink, for a caller that waits (a safe test).
pub type Outcome = (String, Result<u32, String>);

/// A notification queued for a sink.
struct Job {
    msg: Arc<Message>,
    seq: u64,
    attempt: u32,
    due: Instant,
    done: Option<SyncSender<Outcome>>,
}

/// A running sink: its queue and counters.
pub struct Sink {
    /// The configured sink.
    pub cfg: Arc<SinkConfig>,
    tx: SyncSender<Job>,
    /// Counters.
    pub stats: Arc<SinkStats>,
    seq: AtomicU64,
    events: Arc<EventBus>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("name", &self.cfg.name).field("kind", &self.cfg.kind.as_str()).finish()
    }
}

impl Sink {
    /// Starts the sink's thread.
    pub fn start(cfg: SinkConfig, retry: RetryPolicy, capacity: usize, events: Arc<EventBus>) -> std::io::Result<Sink> {
        let cfg = Arc::new(cfg);
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let stats = Arc::new(SinkStats::default());
        let worker = Worker { cfg: cfg.clone(), retry, capacity, stats: stats.clone(), events: events.clone() };
        std::thread::Builder::new().name(format!("alert-sink-{}", cfg.name)).spawn(move || worker.run(&rx))?;
        Ok(Sink { cfg, tx, stats, seq: AtomicU64::new(0), events })
    }

    /// Whether a message goes to this sink at all (its `min_severity`; PagerDuty takes no digest).
    pub fn accepts(&self, m: &Message) -> bool {
        match (m.severity(), &self.cfg.kind) {
            (None, SinkKind::PagerDuty { .. }) => false,
            (None, _) => true,
            (Some(s), _) => s >= self.cfg.min_severity,
        }
    }

    /// Queues a message without waiting. A full queue drops it: counted, and reported as an
    /// `alert_delivery_failed` event (and to `done`).
    pub fn send(&self, msg: Arc<Message>, done: Option<SyncSender<Outcome>>) {
        let job = Job { msg, seq: self.seq.fetch_add(1, Relaxed), attempt: 0, due: Instant::now(), done };
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = self.tx.try_send(job) {
            self.stats.dropped.fetch_add(1, Relaxed);
            report(&self.events, &self.cfg, &job, "queue_full");
        }
    }
}

fn report(events: &EventBus, cfg: &SinkConfig, job: &Job, reason: &str) {
    tracing::warn!(
        event.action = "alert_delivery_failed",
        sink = %cfg.name,
        alert = %job.msg.what(),
        attempts = job.attempt,
        reason,
        "an alert notification was not delivered"
    );
    let detail = failure_detail(&cfg.name, cfg.kind.as_str(), job.msg.what(), job.attempt, reason);
    events.emit(SecurityEvent::system(EventType::AlertDeliveryFailed, Action::Flagged, None, detail));
    if let Some(done) = &job.done {
        let _ = done.try_send((cfg.name.clone(), Err(reason.to_owned())));
    }
}

/// Why a try failed: a fixed reason (never a URL or a server's words), and whether to retry.
struct Failure {
    retry: bool,
    reason: String,
}

struct Worker {
    cfg: Arc<SinkConfig>,
    retry: RetryPolicy,
    capacity: usize,
    stats: Arc<SinkStats>,
    events: Arc<EventBus>,
}

impl Worker {
    fn run(self, rx: &Receiver<Job>) {
        let client = Client::new(&self.cfg, self.retry.timeout);
        let mut waiting: Vec<Job> = Vec::new();
        loop {
            let next = waiting.iter().map(|j| j.due).min();
            let got = match next {
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(job) => waiting.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) if waiting.is_empty() => return,
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(50)),
            }
            // Everything already queued joins before the due jobs run: one pass sees them all.
            while let Ok(job) = rx.try_recv() {
                waiting.push(job);
            }
            let now = Instant::now();
            // A job runs when due and no older job of the same key waits: a resolve never
            // overtakes the fire it resolves.
            let mut run = Vec::new();
            let mut i = 0;
            while i < waiting.len() {
                let (due, key, seq) = match waiting.get(i) {
                    Some(j) => (j.due, j.msg.order_key().to_owned(), j.seq),
                    None => break,
                };
                let blocked = waiting.iter().any(|o| o.seq < seq && o.msg.order_key() == key);
                if due <= now && !blocked {
                    run.push(waiting.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            run.sort_by_key(|j| j.seq);
            for mut job in run {
                job.attempt += 1;
                self.stats.attempts.fetch_add(1, Relaxed);
                match client.deliver(&job.msg) {
                    Ok(()) => {
                        self.stats.delivered.fetch_add(1, Relaxed);
                        tracing::info!(event.action = "alert_delivered", sink = %self.cfg.name, alert = %job.msg.what(), attempts = job.attempt, "alert notification delivered");
                        if let Some(done) = &job.done {
                            let _ = done.try_send((self.cfg.name.clone(), Ok(job.attempt)));
                        }
                    }
                    Err(f) if f.retry && job.attempt < self.retry.attempts && waiting.len() < self.capacity => {
                        self.stats.retries.fetch_add(1, Relaxed);
                        tracing::debug!(sink = %self.cfg.name, alert = %job.msg.what(), attempt = job.attempt, reason = %f.reason, "alert delivery failed; retrying");
                        job.due = Instant::now() + self.retry.backoff(job.attempt);
                        waiting.push(job);
                    }
                    Err(f) => {
                        self.stats.failed.fetch_add(1, Relaxed);
                        report(&self.events, &self.cfg, &job, &f.reason);
                    }
                }
            }
        }
    }
}

/// How a sink talks to its receiver.
enum Client {
    Http { agent: ureq::Agent, cfg: Arc<SinkConfig> },
    Smtp(Result<Box<lettre::SmtpTransport>, String>, Box<SmtpConfig>),
}

impl Client {
    fn new(cfg: &Arc<SinkConfig>, timeout: Duration) -> Client {
        let roots = super::tls::roots(cfg.ca_file.as_deref());
        match &cfg.kind {
            SinkKind::Email(smtp) => Client::Smtp(smtp_transport(smtp, &roots, timeout).map(Box::new), smtp.clone()),
            _ => {
                let mut b = ureq::AgentBuilder::new().timeout(timeout).redirects(0).user_agent("portcullis-alerts");
                match super::tls::client_config(&roots) {
                    Ok(tls) => b = b.tls_config(tls),
                    Err(e) => tracing::error!(sink = %cfg.name, error = %e, "alert sink TLS"),
                }
                Client::Http { agent: b.build(), cfg: cfg.clone() }
            }
        }
    }

    fn deliver(&self, m: &Message) -> Result<(), Failure> {
        match self {
            Client::Http { agent, cfg } => match &cfg.kind {
                SinkKind::Webhook { url, secret } => {
                    let body = webhook_body(m);
                    let mut headers = Vec::new();
                    if let Some(secret) = secret {
                        let now = crate::clock::now_unix();
                        let signed =
                            portcullis_rules::webhook::sign_standard_webhooks(secret.expose(), m.id(), now, &body)
                                .map_err(|_| Failure { retry: false, reason: "signing".into() })?;
                        headers.extend(signed);
                    } else {
                        headers.push(("webhook-id", m.id().to_owned()));
                    }
                    post(agent, url.expose(), &headers, &body)
                }
                SinkKind::Slack { url } => post(agent, url.expose(), &[], &slack_body(m)),
                SinkKind::PagerDuty { url, routing_key } => {
                    for body in pagerduty_bodies(m, routing_key.expose()) {
                        post(agent, url.expose(), &[], &body)?;
                    }
                    Ok(())
                }
                SinkKind::Email(_) => Err(Failure { retry: false, reason: "misconfigured".into() }),
            },
            Client::Smtp(transport, smtp) => {
                let t = transport.as_ref().map_err(|e| Failure { retry: false, reason: e.clone() })?;
                let email = build_email(m, smtp).map_err(|e| Failure { retry: false, reason: e })?;
                use lettre::Transport as _;
                t.send(&email).map(drop).map_err(|e| smtp_failure(&e))
            }
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, headers: &[(&str, String)], body: &[u8]) -> Result<(), Failure> {
    let mut req = agent.post(url).set("content-type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_bytes(body) {
        Ok(_) => Ok(()),
        // 408, 429 and 5xx are worth another try; any other refusal will not change.
        Err(ureq::Error::Status(code, _)) => {
            Err(Failure { retry: code == 408 || code == 429 || code >= 500, reason: format!("http_status_{code}") })
        }
        // The kind only: the error's text quotes the URL, which may embed a token.
        Err(ureq::Error::Transport(t)) => {
            Err(Failure { retry: true, reason: format!("transport: {}", t.kind()).to_ascii_lowercase() })
        }
    }
}

fn smtp_transport(
    smtp: &SmtpConfig,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    timeout: Duration,
) -> Result<lettre::SmtpTransport, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    let params = || {
        // The system's roots are lettre's own; add the sink's CA file (and, harmlessly, the same
        // system roots again).
        let mut b = TlsParameters::builder(smtp.host.clone());
        for der in roots {
            if let Ok(c) = Certificate::from_der(der.to_vec()) {
                b = b.add_root_certificate(c);
            }
        }
        b.build_rustls().map_err(|_| "tls_setup".to_owned())
    };
    let tls = match smtp.tls {
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Implicit => Tls::Wrapper(params()?),
        SmtpTls::None => Tls::None,
    };
    let mut b = lettre::SmtpTransport::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(smtp.helo.clone()));
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
    }
    Ok(b.build())
}

fn build_email(m: &Message, smtp: &SmtpConfig) -> Result<lettre::Message, String> {
    use lettre::message::header::ContentType;
    let (subject, body) = email_parts(m);
    let from = smtp.from.parse::<lettre::message::Mailbox>().map_err(|_| "bad_from".to_owned())?;
    let mut b = lettre::Message::builder().from(from).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        b = b.to(to.parse::<lettre::message::Mailbox>().map_err(|_| "bad_to".to_owned())?);
    }
    b.body(body).map_err(|_| "message_build".to_owned())
}

/// A fixed reason for an SMTP error (the server's reply text is not quoted), and whether a
/// retry may help (a permanent 5xx reply will not).
fn smtp_failure(e: &lettre::transport::smtp::Error) -> Failure {
    let code = e.status().map(|c| c.to_string());
    let (retry, what) = if e.is_permanent() {
        (false, "smtp_permanent")
    } else if e.is_transient() {
        (true, "smtp_transient")
    } else if e.is_timeout() {
        (true, "smtp_timeout")
    } else if e.is_tls() {
        (true, "smtp_tls")
    } else if e.is_client() {
        (false, "smtp_client")
    } else {
        (true, "smtp_connection")
    };
    Failure { retry, reason: code.map_or_else(|| what.to_owned(), |c| format!("{what}_{c}")) }
}
