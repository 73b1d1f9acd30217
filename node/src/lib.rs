//! The Sabt agency node as a library: consensus, storage, p2p, mempool, sync and the HTTP API.
//!
//! The `sabt-node` binary is a thin command line over [`node::run`]; the library exists so that
//! tools and benchmarks (`bench/`) drive the same storage layer and rules the daemon runs.

pub mod access;
pub mod api;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod faults;
pub mod forward;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod parcels;
pub mod schema;
pub mod store;
