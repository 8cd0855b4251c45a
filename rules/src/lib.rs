//! `portcullis-rules`: every decision Portcullis makes, as pure functions over borrowed views.
//!
//! No Pingora, no tokio, no sockets: everything here is testable, fuzzable and benchable alone.
//!
//! # Layout
//!
//! - One folder per rule kind (`alerts`, `anomaly`, `autoblock`, `firewall`, `identity`,
//!   `limits`, `pii`, `ssrf`, `tenant`, `webhook`): its raw rule, its compiler and its check, in
//!   `mod.rs` (and more files where it is large), its unit tests in `tests.rs`.
//! - [`schema`]: what every kind's compiler is written against (`Ctx`, `Checker`, `RawRule`,
//!   `compile_section`, rule regexes, errors at `FILE:LINE: key.path`). It imports no kind.
//! - [`rulefile`]: assembles every kind into the compiled [`rulefile::Snapshot`]; no kind
//!   imports it. The graph runs one way: leaves (`deny`, `verdict`, `view`, `canon`, `query`,
//!   `ipset`, …) ← `schema` ← kinds ← `rulefile`.
//! - [`yaml`]: the YAML loader, its own crate (`portcullis-yaml`), re-exported here.
//! - Every module's unit tests sit next to it: `#[cfg(test)] mod tests;` and `<module>/tests.rs`.

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
pub mod schema;
pub mod ssrf;
pub mod stages;
pub mod tenant;
pub mod verdict;
pub mod view;
pub mod webhook;
/// The YAML loader, its own crate (`portcullis-yaml`, fuzzable alone), at its old path.
pub use portcullis_yaml as yaml;
