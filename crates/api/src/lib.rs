//! HTTP plumbing shared by every spinmesh component: the one error type and its JSON
//! shape, JSON in and out, bearer authentication (with the logout denylist),
//! component variables, the route table (router, JSON 404/405 and `OPTIONS` from one
//! list), SQLite migrations, path parameters,
//! pagination, timestamps, the readiness probe behind `/health`, and the [`edge`] every
//! request passes (request ids, CORS, rate limits, security headers, a log line). The HTTP
//! parts work on `spin_sdk::http::{Request, Response}`, plain Rust values, so they are
//! unit-tested natively; [`denylist`], [`config`], [`db`], the counters of [`edge`] and the
//! `expiry` index of the stores whose entries end reach Spin stores and variables and
//! are covered by the end-to-end tests.

mod auth;
pub mod client_addr;
pub mod config;
mod cors;
pub mod db;
pub mod denylist;
pub mod edge;
mod error;
mod expiry;
mod json;
mod page;
mod params;
pub mod probe;
mod rate_limit;
mod request_id;
pub mod routes;
mod security_headers;
pub mod time;
mod token_cache;

pub use auth::{
    authenticate, bearer_token, caller, verify_active, verify_active_charging_misses, verify_bearer,
};
pub use error::{ApiError, ApiResult};
pub use json::{DEFAULT_MAX_JSON_BODY, is_json_content_type, json, parse_json};
pub use page::{Page, link_header, paginated, query_value};
pub use params::{param, path_param};
/// Re-exported so components need one dependency for auth types.
pub use spinmesh_authn as authn;
