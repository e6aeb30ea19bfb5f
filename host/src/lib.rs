//! spinmesh's embedded host: runs a Spin manifest-v2 HTTP application on
//! wasmtime, the way `spin up` does, with nothing to install beyond cargo.

pub mod app;
mod db;
mod logs;
pub mod manifest;
pub mod metrics;
pub mod outbound;
mod platform;
pub mod routes;
pub mod runtime_config;
pub mod server;
mod state;
pub mod variables;
