//! `portcullis-rules`: every decision Portcullis makes, as pure functions over borrowed views.
//!
//! No Pingora, no tokio, no sockets: everything here is testable, fuzzable and benchable alone.

pub mod alerts;
pub mod anomaly;
pub mod autoblock;
pub mod canon;
pub mod client_ip;
pub mod deny;
pub mod firewall;
pub mod flag;
pub mod framing;
pub mod identity;
pub mod ipset;
pub mod limits;
pub mod operator;
pub mod overrides;
pub mod pii;
pub mod pipeline;
mod prefixes;
pub mod query;
pub mod request_id;
pub mod routes;
pub mod rulefile;
pub mod ssrf;
mod stages;
pub mod tenant;
pub mod verdict;
pub mod view;
pub mod webhook;
pub mod yaml;
