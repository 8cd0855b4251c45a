//! End-to-end suite: a real upstream (recording what it receives), the real gateway binary and a
//! real client, all on port 0. One module per concern; every attack is followed by a clean
//! request to show nothing broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod alerts;
mod anomaly;
mod audit_cli;
mod auto_blocks;
mod canon_wire;
mod cli;
mod console;
mod control;
mod deadlines;
mod demo;
mod deploy;
mod events;
mod fleet;
mod fleet_cluster;
mod fleet_limits;
mod fleet_sentinel;
mod fleet_tls;
mod framing;
mod h2;
mod h2_floods;
mod identity;
mod lifecycle;
mod limits;
mod lists;
mod metrics;
mod operator;
mod path_structure;
mod pii;
mod pii_response;
mod routing;
mod rules_reload;
mod spellings;
mod ssrf;
mod state_model;
mod switches;
mod tenant;
mod tls;
mod webhooks;
