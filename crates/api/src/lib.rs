//! HTTP plumbing shared by every spinmesh component: the one error type and its JSON
//! shape (DESIGN §3), JSON in and out, bearer authentication, path parameters and
//! pagination. Everything here works on `spin_sdk::http::{Request, Response}`, which are
//! plain Rust values, so it is unit-tested natively.

mod auth;
mod error;
mod json;
mod page;
mod params;

pub use auth::{authenticate, bearer_token};
pub use error::{ApiError, ApiResult};
pub use json::{DEFAULT_MAX_JSON_BODY, is_json_content_type, json, parse_json};
pub use page::{Page, link_header, paginated};
pub use params::{param, path_param};
/// Re-exported so components need one dependency for auth types.
pub use spinmesh_authn as authn;
