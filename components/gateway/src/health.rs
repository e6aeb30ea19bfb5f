//! `GET /health`, `/health/services`: every component's readiness probe and the runner's
//! `/healthz`, concurrently, each bounded by the gateway timeout; the rule and the report
//! shapes are in `spinmesh_health`. `GET /health/live`: liveness without probes.

use std::time::Instant;

use futures::future::join_all;
use serde_json::{Value, json as value};
use spin_sdk::http::{Params, Request, Response};
use spinmesh_api::config::var;
use spinmesh_api::{ApiResult, json, probe};
use spinmesh_health::{Check, Health, Outcome, Service, TARGETS, Target};

use crate::outbound;

pub async fn summary(_request: Request, _params: Params) -> ApiResult<Response> {
    let health = probe_all().await?;
    Ok(json(health.status().http_status(), &health.summary()))
}

pub async fn detail(_request: Request, _params: Params) -> ApiResult<Response> {
    let health = probe_all().await?;
    Ok(json(health.status().http_status(), &health.detail()))
}

/// The process serves requests; nothing else is checked.
pub fn live(_request: Request, _params: Params) -> Response {
    json(200, &value!({ "status": "ok" }) as &Value)
}

async fn probe_all() -> ApiResult<Health> {
    let limit = outbound::timeout()?;
    let runner_url = var("runner_url")?;
    let checks = TARGETS.map(|(service, target)| {
        let url = match target {
            Target::Component(id) => format!("http://{id}.spin.internal{}", probe::PATH),
            Target::Runner => format!("{}/healthz", runner_url.trim_end_matches('/')),
        };
        check(service, target, url, limit)
    });
    Ok(Health {
        checks: join_all(checks).await,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn check(service: Service, target: Target, url: String, limit: std::time::Duration) -> Check {
    let started = Instant::now();
    let outcome = match outbound::fetch(outbound::get(&url, None), limit).await {
        Ok(response) if *response.status() == 200 => Outcome::Up,
        Ok(response) => Outcome::Status(*response.status()),
        Err(outcome) => outcome,
    };
    Check {
        service,
        target,
        outcome,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
