//! `GET /health`, `/health/services`: every component's readiness probe and the runner's
//! `/healthz`, concurrently, each bounded by the gateway timeout. The aggregate is kept in
//! key-value for `health_cache_ms` and refreshed by one caller at a time
//! (`spinmesh_health::cache`), so a burst of health checks probes once, not once each. The
//! rule and the report shapes are in `spinmesh_health`. `GET /health/live`: liveness
//! without probes.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json as value};
use spin_sdk::http::{Params, Request, Response};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use spinmesh_api::config::{positive_u64, var};
use spinmesh_api::{ApiResult, json, probe};
use spinmesh_health::cache::{self, Plan, Report};
use spinmesh_health::{Check, Health, Outcome, Service, TARGETS, Target};

use crate::outbound;

/// The store the report and the refresh counters live in (rebuildable state).
const STORE: &str = "default";
/// How often a caller waiting for another's first report looks for it.
const WAIT_STEP: Duration = Duration::from_millis(50);

pub async fn summary(_request: Request, _params: Params) -> ApiResult<Response> {
    let (report, age) = report().await?;
    Ok(with_age(json(report.http_status, &report.summary), age))
}

pub async fn detail(_request: Request, _params: Params) -> ApiResult<Response> {
    let (report, age) = report().await?;
    Ok(with_age(json(report.http_status, &report.detail), age))
}

/// The process serves requests; nothing else is checked.
pub fn live(_request: Request, _params: Params) -> Response {
    json(200, &value!({ "status": "ok" }) as &Value)
}

/// `Age` (RFC 9111): how old the served report is, in seconds.
fn with_age(mut response: Response, age_secs: u64) -> Response {
    response.set_header("age", age_secs.to_string());
    response
}

/// The report to serve and its age. Key-value trouble never stops `/health`: without the
/// store every caller probes for itself (and the trouble is logged).
async fn report() -> ApiResult<(Report, u64)> {
    let max_age_ms = positive_u64("health_cache_ms")?;
    let now = now_ms();
    let bucket = store::open(STORE)
        .inspect_err(|error| eprintln!("health cache: key-value: {error:?}"))
        .ok();
    let cached = bucket.as_ref().and_then(read);
    if let Some(Plan::ServeCached) = Plan::before_race(cached.as_ref(), now, max_age_ms) {
        let report = cached.expect("a fresh report exists");
        let age = report.age_secs(now);
        return Ok((report, age));
    }
    let slot = cache::refresh_slot(now, max_age_ms);
    let race = bucket.as_ref().and_then(|bucket| {
        atomics::increment(bucket, &cache::refresh_key(slot), 1)
            .inspect_err(|error| eprintln!("health cache: key-value: {error:?}"))
            .ok()
    });
    match Plan::after_race(cached.as_ref(), race, now, max_age_ms) {
        Plan::ServeCached | Plan::ServeStale => {
            let report = cached.expect("a usable report exists");
            let age = report.age_secs(now);
            Ok((report, age))
        }
        Plan::Refresh => {
            let report = Report::new(&probe_all().await?, now, slot);
            if let Some(bucket) = &bucket {
                store_report(bucket, &report, cached.as_ref());
            }
            Ok((report, 0))
        }
        Plan::Wait => {
            let deadline = Instant::now() + outbound::timeout()? + Duration::from_secs(1);
            while Instant::now() < deadline {
                std::thread::sleep(WAIT_STEP);
                if let Some(report) = bucket.as_ref().and_then(read)
                    && report.slot >= slot
                {
                    let age = report.age_secs(now_ms());
                    return Ok((report, age));
                }
            }
            // The refresher never stored one (it failed, or key-value did): probe here.
            Ok((Report::new(&probe_all().await?, now_ms(), slot), 0))
        }
    }
}

fn read(bucket: &store::Bucket) -> Option<Report> {
    match bucket.get(cache::REPORT_KEY) {
        Ok(value) => value.as_deref().and_then(Report::decode),
        Err(error) => {
            eprintln!("health cache: key-value: {error:?}");
            None
        }
    }
}

/// Keeps `report` and drops the refresh counter of the report it replaces, so one
/// counter at most outlives its slot.
fn store_report(bucket: &store::Bucket, report: &Report, replaced: Option<&Report>) {
    if let Err(error) = bucket.set(cache::REPORT_KEY, &report.encode()) {
        eprintln!("health cache: key-value: {error:?}");
    }
    if let Some(old) = replaced.filter(|old| old.slot != report.slot)
        && let Err(error) = bucket.delete(&cache::refresh_key(old.slot))
    {
        eprintln!("health cache: key-value: {error:?}");
    }
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
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
