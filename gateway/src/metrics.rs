//! Prometheus metrics without locks or allocation on the request path.
//!
//! Every label set is fixed when the config is compiled (route ids, status classes, error kinds),
//! so cardinality is bounded by the config, never by traffic. Counters are plain atomics indexed
//! by route; `/metrics` renders the text format on demand.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

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

const ERROR_KINDS: [&str; 3] = ["connect", "timeout", "protocol"];

#[derive(Default)]
struct RouteCounters {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    upstream_errors: [AtomicU64; 3],
    /// 5xx responses by cause: `[failure, gateway decision]`.
    by_cause: [AtomicU64; 2],
}

/// The causes of a 5xx, as the `cause` label shows them.
const CAUSES: [&str; 2] = ["failure", "gateway_decision"];

/// The gateway's metrics. Route index `routes.len()` is "no route matched" (`route="none"`).
pub struct Metrics {
    route_ids: Vec<String>,
    routes: Vec<RouteCounters>,
    config_version: String,
}

impl Metrics {
    /// One counter set per route, plus one for requests that matched none.
    pub fn new(route_ids: Vec<String>, config_version: String) -> Self {
        let routes = (0..=route_ids.len()).map(|_| RouteCounters::default()).collect();
        Self { route_ids, routes, config_version }
    }

    fn slot(&self, route: Option<usize>) -> Option<&RouteCounters> {
        self.routes.get(route.unwrap_or(self.route_ids.len()))
    }

    /// Records a finished request. `failure`: a 5xx that is a failure to serve (upstream error
    /// or timeout, the gateway's own failure), not the gateway's deliberate answer.
    pub fn observe_request(&self, route: Option<usize>, status: u16, failure: bool, elapsed: Duration) {
        let Some(c) = self.slot(route) else { return };
        let class = usize::from(status / 100).saturating_sub(1).min(4);
        if let Some(x) = c.by_class.get(class) {
            x.fetch_add(1, Relaxed);
        }
        if (500..600).contains(&status) {
            if let Some(x) = c.by_cause.get(usize::from(!failure)) {
                x.fetch_add(1, Relaxed);
            }
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                if let Some(x) = c.buckets.get(i) {
                    x.fetch_add(1, Relaxed);
                }
            }
        }
        c.count.fetch_add(1, Relaxed);
        c.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Records an upstream failure.
    pub fn observe_upstream_error(&self, route: Option<usize>, kind: UpstreamError) {
        if let Some(c) = self.slot(route) {
            if let Some(x) = c.upstream_errors.get(kind as usize) {
                x.fetch_add(1, Relaxed);
            }
        }
    }

    /// Renders the text exposition format. `extra` is appended (gauges computed elsewhere).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        let label = |i: usize| self.route_ids.get(i).map_or("none", String::as_str);
        let _ = writeln!(out, "# HELP portcullis_build_info Build and config version.");
        let _ = writeln!(out, "# TYPE portcullis_build_info gauge");
        let _ = writeln!(
            out,
            "portcullis_build_info{{version=\"{}\",config_version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            self.config_version
        );
        let _ = writeln!(out, "# HELP portcullis_requests_total Requests by route and status class.");
        let _ = writeln!(out, "# TYPE portcullis_requests_total counter");
        for (i, c) in self.routes.iter().enumerate() {
            for (j, class) in CLASSES.iter().enumerate() {
                let v = c.by_class.get(j).map_or(0, |x| x.load(Relaxed));
                let _ =
                    writeln!(out, "portcullis_requests_total{{route=\"{}\",status_class=\"{class}\"}} {v}", label(i));
            }
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_responses_5xx_total 5xx responses by route and cause: `failure` (upstream error or timeout, the gateway's own failure) or `gateway_decision` (response_blocked, maintenance, channel_disabled, store_unavailable)."
        );
        let _ = writeln!(out, "# TYPE portcullis_responses_5xx_total counter");
        for (i, c) in self.routes.iter().enumerate() {
            for (j, cause) in CAUSES.iter().enumerate() {
                let v = c.by_cause.get(j).map_or(0, |x| x.load(Relaxed));
                let _ = writeln!(out, "portcullis_responses_5xx_total{{route=\"{}\",cause=\"{cause}\"}} {v}", label(i));
            }
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_request_duration_seconds Time from request headers to the end of the response."
        );
        let _ = writeln!(out, "# TYPE portcullis_request_duration_seconds histogram");
        for (i, c) in self.routes.iter().enumerate() {
            for (j, b) in BUCKETS.iter().enumerate() {
                let v = c.buckets.get(j).map_or(0, |x| x.load(Relaxed));
                let _ = writeln!(
                    out,
                    "portcullis_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {v}",
                    label(i)
                );
            }
            let count = c.count.load(Relaxed);
            let _ = writeln!(
                out,
                "portcullis_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {count}",
                label(i)
            );
            let sum = c.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "portcullis_request_duration_seconds_sum{{route=\"{}\"}} {sum}", label(i));
            let _ = writeln!(out, "portcullis_request_duration_seconds_count{{route=\"{}\"}} {count}", label(i));
        }
        let _ = writeln!(out, "# HELP portcullis_upstream_errors_total Failed upstream exchanges by route and kind.");
        let _ = writeln!(out, "# TYPE portcullis_upstream_errors_total counter");
        for (i, c) in self.routes.iter().enumerate() {
            for (j, kind) in ERROR_KINDS.iter().enumerate() {
                let v = c.upstream_errors.get(j).map_or(0, |x| x.load(Relaxed));
                let _ = writeln!(out, "portcullis_upstream_errors_total{{route=\"{}\",kind=\"{kind}\"}} {v}", label(i));
            }
        }
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new(vec!["api".into()], "abc".into());
        m.observe_request(Some(0), 200, false, Duration::from_millis(3));
        m.observe_request(None, 404, false, Duration::from_millis(1));
        m.observe_request(Some(0), 999, false, Duration::from_secs(9));
        m.observe_request(Some(0), 503, false, Duration::from_millis(1));
        m.observe_request(Some(0), 502, true, Duration::from_millis(1));
        m.observe_request(Some(0), 502, false, Duration::from_millis(1));
        m.observe_upstream_error(Some(0), UpstreamError::Timeout);
        let t = m.render("");
        assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"2xx\"} 1"));
        assert!(t.contains("portcullis_requests_total{route=\"none\",status_class=\"4xx\"} 1"));
        assert!(t.contains("portcullis_requests_total{route=\"api\",status_class=\"5xx\"} 4"));
        assert!(t.contains("portcullis_responses_5xx_total{route=\"api\",cause=\"failure\"} 1"));
        assert!(t.contains("portcullis_responses_5xx_total{route=\"api\",cause=\"gateway_decision\"} 2"));
        assert!(t.contains("portcullis_responses_5xx_total{route=\"none\",cause=\"failure\"} 0"));
        assert!(t.contains("portcullis_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 4"));
        assert!(t.contains("portcullis_request_duration_seconds_count{route=\"api\"} 5"));
        assert!(t.contains("portcullis_upstream_errors_total{route=\"api\",kind=\"timeout\"} 1"));
    }
}
