//! `portcullis-metrics`: the gateway's Prometheus metrics through one registry and one encoder.
//!
//! Every family is registered once, in one [`prometheus::Registry`], when the config is loaded
//! ([`Metrics::new`]); the registry refuses a name twice or an invalid one. Two kinds of family:
//! - **Recorded** on the request path ([`Metrics`]): requests by route and status class, 5xx by
//!   cause, the duration histogram, upstream errors, build info. Every route's series are resolved
//!   at registration (routes come from the gateway config, fixed for the process), so recording
//!   one request is a handful of relaxed atomic adds on handles held by index: no lock, no
//!   lookup, no allocation.
//! - **Read at scrape** ([`Def`], [`Scrape`]): gauges over live state (sessions, switches, health,
//!   lists, certificates) and counters other components keep as their own atomics. Each is a
//!   constant with its name, help, type and label names; the number of labels is part of its type,
//!   so a sample with a label too many or too few does not compile. The registry holds their
//!   descriptors; their samples are read when `/metrics` is asked for.
//!
//! Both go out through the crate's text encoder (format 0.0.4, [`CONTENT_TYPE`]), the one place
//! label values and help texts are escaped. Label names keep the order they are declared in, as
//! the text always had them. A family with no series is left out (the encoder has nothing to say
//! about it; Prometheus ingests nothing from one either).

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use std::time::Duration;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Histogram bucket upper bounds, in seconds.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The causes of a 5xx, as the `cause` label shows them.
const CAUSES: [&str; 2] = ["failure", "gateway_decision"];
const ERROR_KINDS: [&str; 3] = ["connect", "timeout", "protocol"];

/// The status recorded (metrics, access log, 5xx rate) for a request that got no final response
/// because the client went away: 499, nginx's "client closed request", in `4xx`.
pub const CLIENT_CLOSED: u16 = 499;

/// The status to record for a request, from the status of the last response head written to the
/// client (`None`: none was). An interim `1xx` head (`100 Continue` before the body was read, for
/// instance) is not an answer: a request that got only that is [`CLIENT_CLOSED`], like one that got
/// nothing. `101 Switching Protocols` is a final answer and stays `1xx`.
pub fn final_status(written: Option<u16>) -> u16 {
    match written {
        Some(s) if (100..200).contains(&s) && s != 101 => CLIENT_CLOSED,
        Some(s) => s,
        None => CLIENT_CLOSED,
    }
}

/// The index in [`CLASSES`] of a recorded status (see [`final_status`]).
fn class_of(status: u16) -> usize {
    match final_status(Some(status)) {
        0..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Why an upstream exchange failed.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    /// No healthy backend, or connect refused / failed.
    Connect,
    /// Connect, read or total timeout.
    Timeout,
    /// The upstream broke the exchange (reset, bad response).
    Protocol,
}

/// One route's series, resolved once: recording is atomics only.
struct RouteSeries {
    by_class: [IntCounter; 5],
    /// 5xx responses by cause: `[failure, gateway decision]`.
    by_cause: [IntCounter; 2],
    duration: Histogram,
    upstream_errors: [IntCounter; 3],
}

/// The registered families' label names in their declared order (the registry sorts them).
const DECLARED: [(&str, &[&str]); 5] = [
    ("portcullis_build_info", &["version", "config_version"]),
    ("portcullis_requests_total", &["route", "status_class"]),
    ("portcullis_responses_5xx_total", &["route", "cause"]),
    ("portcullis_request_duration_seconds", &["route"]),
    ("portcullis_upstream_errors_total", &["route", "kind"]),
];

/// The gateway's recorded metrics. Route index `route_ids.len()` is "no route matched"
/// (`route="none"`).
pub struct Metrics {
    registry: Registry,
    routes: Vec<RouteSeries>,
    /// The names of the families read at scrape, as registered.
    declared: Vec<&'static str>,
}

fn counters<const N: usize>(
    vec: &IntCounterVec,
    route: &str,
    values: [&str; N],
) -> Result<[IntCounter; N], prometheus::Error> {
    let mut out = Vec::with_capacity(N);
    for v in values {
        out.push(vec.get_metric_with_label_values(&[route, v])?);
    }
    out.try_into().map_err(|_| prometheus::Error::Msg("label count".into()))
}

impl Metrics {
    /// Registers every family once — the recorded ones, and `scraped`, the families read from
    /// state at scrape — and resolves each route's series (plus `none`'s). `Err` names a family
    /// registered twice or an invalid name.
    pub fn new(route_ids: Vec<String>, config_version: String, scraped: &[&dyn Declared]) -> Result<Self, String> {
        Self::build(&route_ids, &config_version, scraped).map_err(|e| format!("metrics: {e}"))
    }

    fn build(route_ids: &[String], config_version: &str, scraped: &[&dyn Declared]) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build_info =
            IntGaugeVec::new(Opts::new("portcullis_build_info", "Build and config version."), DECLARED[0].1)?;
        let requests = IntCounterVec::new(
            Opts::new("portcullis_requests_total", "Requests by route and status class."),
            DECLARED[1].1,
        )?;
        let by_cause = IntCounterVec::new(
            Opts::new(
                "portcullis_responses_5xx_total",
                "5xx responses by route and cause: `failure` (upstream error or timeout, the gateway's own failure) or `gateway_decision` (response_blocked, maintenance, channel_disabled, store_unavailable).",
            ),
            DECLARED[2].1,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from request headers to the end of the response.",
            )
            .buckets(BUCKETS.to_vec()),
            DECLARED[3].1,
        )?;
        let upstream = IntCounterVec::new(
            Opts::new("portcullis_upstream_errors_total", "Failed upstream exchanges by route and kind."),
            DECLARED[4].1,
        )?;
        build_info.get_metric_with_label_values(&[env!("CARGO_PKG_VERSION"), config_version])?.set(1);
        let mut routes = Vec::with_capacity(route_ids.len() + 1);
        for route in route_ids.iter().map(String::as_str).chain(["none"]) {
            routes.push(RouteSeries {
                by_class: counters(&requests, route, CLASSES)?,
                by_cause: counters(&by_cause, route, CAUSES)?,
                duration: duration.get_metric_with_label_values(&[route])?,
                upstream_errors: counters(&upstream, route, ERROR_KINDS)?,
            });
        }
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(requests))?;
        registry.register(Box::new(by_cause))?;
        registry.register(Box::new(duration))?;
        registry.register(Box::new(upstream))?;
        let mut descs = Vec::with_capacity(scraped.len());
        for d in scraped {
            let labels = d.labels().iter().map(|l| (*l).to_owned()).collect();
            descs.push(prometheus::core::Desc::new(
                d.name().to_owned(),
                d.help().to_owned(),
                labels,
                Default::default(),
            )?);
        }
        registry.register(Box::new(Declarations(descs)))?;
        let declared = scraped.iter().map(|d| d.name()).collect();
        Ok(Self { registry, routes, declared })
    }

    fn slot(&self, route: Option<usize>) -> Option<&RouteSeries> {
        self.routes.get(route.unwrap_or(self.routes.len().saturating_sub(1)))
    }

    /// Records a finished request. `failure`: a 5xx that is a failure to serve (upstream error
    /// or timeout, the gateway's own failure), not the gateway's deliberate answer. A `status` that
    /// is an interim `1xx` counts as [`CLIENT_CLOSED`] (see [`final_status`]).
    pub fn observe_request(&self, route: Option<usize>, status: u16, failure: bool, elapsed: Duration) {
        let Some(c) = self.slot(route) else { return };
        if let Some(x) = c.by_class.get(class_of(status)) {
            x.inc();
        }
        if (500..600).contains(&status) {
            if let Some(x) = c.by_cause.get(usize::from(!failure)) {
                x.inc();
            }
        }
        c.duration.observe(elapsed.as_secs_f64());
    }

    /// Records an upstream failure.
    pub fn observe_upstream_error(&self, route: Option<usize>, kind: UpstreamError) {
        if let Some(x) = self.slot(route).and_then(|c| c.upstream_errors.get(kind as usize)) {
            x.inc();
        }
    }

    /// The text exposition: the recorded families, then `scrape`'s. A scraped family that was
    /// not registered is left out (registration is what guarantees one family per name).
    pub fn render(&self, scrape: Scrape) -> String {
        let mut families = self.registry.gather();
        for mf in &mut families {
            let Some((_, order)) = DECLARED.iter().find(|(n, _)| *n == mf.name()) else { continue };
            for m in mf.mut_metric() {
                let mut labels = m.take_label();
                labels.sort_by_key(|l| order.iter().position(|o| *o == l.name()).unwrap_or(usize::MAX));
                m.set_label(labels);
            }
        }
        let mut all = Scrape { families };
        for mf in scrape.families.into_iter().filter(|f| self.declared.contains(&f.name())) {
            all.merge(mf);
        }
        all.render()
    }
}

/// A value a sample can take.
pub trait Value {
    /// As the exposition writes it.
    fn value(self) -> f64;
}

macro_rules! value_from {
    ($($t:ty),*) => {$(
        impl Value for $t {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn value(self) -> f64 {
                self as f64
            }
        }
    )*};
}
value_from!(u8, u32, u64, usize, i64, f64);

impl Value for bool {
    fn value(self) -> f64 {
        f64::from(u8::from(self))
    }
}

/// Whether a family read at scrape counts (a `counter`, its name ends in `_total`) or measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (until a restart).
    Counter,
    /// A current value.
    Gauge,
}

/// A family read at scrape: its name, help, type and label names. The number of labels is part of
/// its type, so a sample with a label too many or too few does not compile.
#[derive(Debug)]
pub struct Def<const N: usize> {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: [&'static str; N],
}

impl<const N: usize> Def<N> {
    /// A counter family.
    pub const fn counter(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Self { name, help, kind: Kind::Counter, labels }
    }

    /// A gauge family.
    pub const fn gauge(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Self { name, help, kind: Kind::Gauge, labels }
    }
}

/// Any [`Def`], whatever its arity: what the registry is given when the config loads.
pub trait Declared: Sync {
    /// The family's name.
    fn name(&self) -> &'static str;
    /// Its help text.
    fn help(&self) -> &'static str;
    /// Its label names, in the order the text shows them.
    fn labels(&self) -> &[&'static str];
}

impl<const N: usize> Declared for Def<N> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn help(&self) -> &'static str {
        self.help
    }
    fn labels(&self) -> &[&'static str] {
        &self.labels
    }
}

/// The families read at scrape, as the registry knows them: descriptors only (their values are
/// read from live state by [`Scrape`]). Registering them is what makes the registry refuse a
/// family declared twice, or under the name of a recorded one.
struct Declarations(Vec<prometheus::core::Desc>);

impl prometheus::core::Collector for Declarations {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Vec::new()
    }
}

/// The families read from live state when `/metrics` is asked for.
#[derive(Default)]
pub struct Scrape {
    families: Vec<MetricFamily>,
}

impl Scrape {
    /// An empty scrape.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family `def`, to add its series to (the same family again when asked twice).
    pub fn family<const N: usize>(&mut self, def: &Def<N>) -> Family<'_, N> {
        let at = match self.families.iter().position(|f| f.name() == def.name) {
            Some(i) => i,
            None => {
                let mut mf = MetricFamily::default();
                mf.set_name(def.name.to_owned());
                mf.set_help(def.help.to_owned());
                mf.set_field_type(match def.kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                });
                self.families.push(mf);
                self.families.len() - 1
            }
        };
        Family { mf: self.families.get_mut(at), kind: def.kind, labels: def.labels }
    }

    fn merge(&mut self, mut mf: MetricFamily) {
        match self.families.iter_mut().find(|f| f.name() == mf.name()) {
            Some(f) => f.mut_metric().extend(mf.take_metric()),
            None => self.families.push(mf),
        }
    }

    /// The text exposition of these families alone (tests; the gateway uses [`Metrics::render`]).
    pub fn render(self) -> String {
        let mut families = self.families;
        families.retain(|f| !f.get_metric().is_empty());
        let mut out = String::with_capacity(8192);
        // Fails only on a family without series or name: neither is left.
        let _ = prometheus::TextEncoder::new().encode_utf8(&families, &mut out);
        out
    }
}

/// A family of a [`Scrape`]: add its series with [`Family::sample`].
pub struct Family<'a, const N: usize> {
    mf: Option<&'a mut MetricFamily>,
    kind: Kind,
    labels: [&'static str; N],
}

impl<const N: usize> Family<'_, N> {
    /// One series: its label values, in the declared order, and its value.
    pub fn sample(&mut self, values: [&str; N], v: impl Value) -> &mut Self {
        let Some(mf) = self.mf.as_deref_mut() else { return self };
        let labels = self
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut l = LabelPair::default();
                l.set_name((*name).to_owned());
                l.set_value(value.to_owned());
                l
            })
            .collect();
        let mut m = proto::Metric::from_label(labels);
        match self.kind {
            Kind::Counter => {
                let mut c = proto::Counter::default();
                c.set_value(v.value());
                m.set_counter(c);
            }
            Kind::Gauge => {
                let mut g = proto::Gauge::default();
                g.set_value(v.value());
                m.set_gauge(g);
            }
        }
        mf.mut_metric().push(m);
        self
    }
}

#[cfg(test)]
mod tests;
