//! The gateway's Prometheus metrics: the `portcullis-metrics` crate (one registry, typed families,
//! one encoder). The request path records through [`Metrics`]. Every component that exposes
//! state declares its families as [`Def`] constants (its `METRICS`, gathered by
//! `control::metric_families` and registered at start) and adds their samples to a [`Scrape`] in
//! its `render_metrics`; `/metrics` renders both.

pub use portcullis_metrics::{
    final_status, Declared, Def, Family, Metrics, Scrape, UpstreamError, CLIENT_CLOSED, CONTENT_TYPE,
};
