//! The gateway's Prometheus metrics: the `portcullis-metrics` crate (one registry, typed families,
//! one encoder). The request path records through [`Metrics`]; every component that exposes
//! state adds its families to a [`Scrape`] in its `render_metrics`, and `/metrics` renders both.

pub use portcullis_metrics::{final_status, Family, Metrics, Scrape, UpstreamError, CLIENT_CLOSED, CONTENT_TYPE};
