//! Portcullis: the Pingora glue (the only code that touches `ProxyHttp`/`Session`), the control
//! endpoint, metrics, logs, the CLI and the demo. Every decision lives in `portcullis-rules`.

pub mod access_log;
pub mod alerting;
pub mod anomaly;
pub mod audit;
pub mod auto_blocker;
pub mod autoblock;
pub mod cli;
pub mod clock;
pub mod config;
pub mod containment;
pub mod control;
pub mod decode;
pub mod demo;
pub mod durable;
pub mod events;
pub mod fleet;
pub mod fleet_limits;
pub mod ids;
pub mod limit_state;
pub mod logging;
pub mod metrics;
pub mod pii_response;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod server;
pub mod sessions;
pub mod state;
pub mod status;
pub mod switches;
pub mod tls;
pub mod tokens;
pub mod txn;
pub mod webhook_replay;
