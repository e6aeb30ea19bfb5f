//! Requests from the gateway to components and the runner, each bounded by a timeout so
//! one hung dependency cannot hold a health check or a scrape.

use std::time::Duration;

use spin_sdk::http::{Method, Request, Response};
use spinmesh_api::ApiError;
use spinmesh_api::config::positive_u64;
use spinmesh_health::Outcome;
use spinmesh_outbound::{Error, request, send};

/// How long the gateway waits for an answer, from the `gateway_timeout_ms` variable.
pub fn timeout() -> Result<Duration, ApiError> {
    Ok(Duration::from_millis(positive_u64("gateway_timeout_ms")?))
}

/// A GET with an optional bearer token.
pub fn get(url: &str, bearer: Option<&str>) -> Request {
    request(Method::Get, url, bearer).build()
}

/// Sends `request`; `Err` when it fails or `limit` passes first.
pub async fn fetch(request: Request, limit: Duration) -> Result<Response, Outcome> {
    send(request, limit).await.map_err(|error| match error {
        Error::Timeout(_) => Outcome::Timeout,
        _ => Outcome::Unreachable,
    })
}
