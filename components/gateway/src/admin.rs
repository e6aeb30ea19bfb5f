//! Routes for administrators: upload statistics and the app's metrics, both read from
//! the runner (behind its token) and, for metrics, the host's admin listener.

use futures::join;
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Params, Request, Response};
use spinmesh_api::authn::Role;
use spinmesh_api::config::var;
use spinmesh_api::{ApiError, ApiResult, caller, json};
use spinmesh_health::metrics::{self, Source};

use crate::outbound;

/// 401 without a valid token, 403 without the admin role.
fn require_admin(request: &Request) -> ApiResult<()> {
    let claims = caller(request)?;
    Ok(claims.require(Role::Admin)?)
}

/// The runner's `/stats`, field by field, so nothing else it might add leaks through.
#[derive(Deserialize, Serialize)]
struct UploadStats {
    jobs: JobCounts,
    total: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Deserialize, Serialize)]
struct JobCounts {
    queued: u64,
    running: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
}

/// `GET /stats/uploads`: conversion jobs by status and bytes in and out.
pub async fn upload_stats(request: Request, _params: Params) -> ApiResult<Response> {
    require_admin(&request)?;
    let url = format!("{}/stats", var("runner_url")?.trim_end_matches('/'));
    let token = var("runner_token")?;
    let unavailable = || ApiError::service_unavailable("The conversion runner is unavailable");
    let response = outbound::fetch(outbound::get(&url, Some(&token)), outbound::timeout()?)
        .await
        .map_err(|_| unavailable())?;
    if *response.status() != 200 {
        eprintln!("runner /stats answered {}", response.status());
        return Err(unavailable());
    }
    let stats: UploadStats = serde_json::from_slice(response.body())
        .map_err(|error| ApiError::internal_logged(format_args!("runner /stats: {error}")))?;
    Ok(json(200, &stats))
}

/// `GET /metrics`: the host's and the runner's Prometheus text in one answer; a source
/// that does not answer shows as `spinmesh_metrics_source_up{source=…} 0`.
pub async fn metrics(request: Request, _params: Params) -> ApiResult<Response> {
    require_admin(&request)?;
    let limit = outbound::timeout()?;
    let host_url = format!("{}/metrics", var("host_metrics_url")?.trim_end_matches('/'));
    let runner_url = format!("{}/metrics", var("runner_url")?.trim_end_matches('/'));
    let token = var("runner_token")?;
    let (host, runner) = join!(
        scrape(outbound::get(&host_url, None), limit),
        scrape(outbound::get(&runner_url, Some(&token)), limit),
    );
    let body = metrics::merge(&[
        Source {
            name: "host",
            text: host.as_deref(),
        },
        Source {
            name: "runner",
            text: runner.as_deref(),
        },
    ]);
    Ok(Response::builder()
        .status(200)
        .header("content-type", metrics::CONTENT_TYPE)
        .header("cache-control", "no-store")
        .body(body)
        .build())
}

/// A source's text when it answers 200 with UTF-8.
async fn scrape(request: Request, limit: std::time::Duration) -> Option<String> {
    let response = outbound::fetch(request, limit).await.ok()?;
    if *response.status() != 200 {
        return None;
    }
    String::from_utf8(response.into_body()).ok()
}
