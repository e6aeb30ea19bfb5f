//! spinmesh's embedded host: runs a Spin manifest-v2 HTTP application on
//! wasmtime, the way `spin up` does, with nothing to install beyond cargo.
//!
//! Modules, bottom up; each uses only modules listed before it (`←` names
//! what it uses), so there are no import cycles:
//!
//! ```text
//! template        variable names, `{{ name }}` templates
//! routes          Spin route syntax and the route table
//! limits          resource bounds
//! body            request bodies under a size limit and read timeout
//! responses       host-written responses; refusals → HTTP     ← body
//! db, logs, metrics   SQLite files, log writers off the request path, Prometheus registry
//! kv              key-value stores: SQLite or Redis          ← db
//! outbound        allowed_outbound_hosts: parsed, resolved, enforced  ← template
//! manifest        spin.toml                                 ← template, routes, outbound
//! runtime_config  runtime-config.toml, opened stores        ← manifest, db, kv
//! variables       providers and resolved values             ← manifest, template
//! engine          wasmtime config, epoch ticker, compile cache  ← limits
//! state           per-instance store data, outbound hooks   ← outbound, manifest, runtime_config, variables, limits, logs
//! platform        Spin key-value, SQLite, variables, wasi:keyvalue  ← state, db, kv, variables
//! invoke          linker, fresh instance per request        ← state, platform, engine, metrics
//! app             loading, dispatch, Spin headers, bounds   ← invoke, engine, body, routes, manifest, runtime_config, variables, outbound, state, metrics, responses, limits
//! server          listeners and connections                 ← app, metrics, responses
//! ```

pub mod app;
mod body;
mod db;
mod engine;
mod invoke;
mod kv;
pub mod limits;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod outbound;
mod platform;
mod responses;
pub mod routes;
pub mod runtime_config;
pub mod server;
mod state;
mod template;
pub mod variables;
