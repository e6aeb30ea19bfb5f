//! The gateway component over real HTTP, served from the repository's spin.toml: health
//! (with the runner stopped and restarted), upload statistics and metrics for admins,
//! the OpenAPI document, and the JSON 404.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use spinmesh_e2e::{Api, App, client, is_rfc3339_utc, send};

const SERVICES: [&str; 5] = ["auth", "users", "catalog", "orders", "converter"];

fn health(http: &Client, app: &App, path: &str) -> (u16, Value) {
    let reply = send(http.get(app.url(path)));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    (reply.status, reply.body)
}

/// The aggregate is reused for `health_cache_ms` (1 s), and a stale one may be served
/// while it is refreshed: a change shows within a few seconds, not at once.
fn health_becomes(http: &Client, app: &App, path: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (seen, body) = health(http, app, path);
        if seen == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {seen}, not {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many chained requests `component` has served, from the host's own metrics (`None`
/// on real Spin, which has no such listener).
fn internal_calls(http: &Client, app: &App, component: &str) -> Option<u64> {
    let url = app.admin_url("/metrics")?;
    let text = http.get(url).send().unwrap().text().unwrap();
    let prefix = format!("spinmesh_host_requests_total{{component=\"{component}\"");
    Some(
        text.lines()
            .filter(|line| line.starts_with(&prefix) && line.contains("source=\"internal\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn health_goes_degraded_when_the_runner_stops_and_back_when_it_returns() {
    let mut app = App::builder().with_runner().start();
    let http = client();

    let (status, body) = health(&http, &app, "/health");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(is_rfc3339_utc(&body["timestamp"]), "{body}");
    for service in SERVICES {
        assert_eq!(body["services"][service], "connected", "{body}");
    }

    app.runner_stop();
    let body = health_becomes(&http, &app, "/health", 503);
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["services"]["converter"], "disconnected");
    assert_eq!(body["services"]["auth"], "connected");
    let detail = health_becomes(&http, &app, "/health/services", 503);
    let runner = &detail["services"]["converter"]["checks"]["runner"];
    assert_eq!(
        (runner["status"].as_str(), runner["error"].as_str()),
        (Some("down"), Some("unreachable")),
        "{detail}"
    );
    assert_eq!(
        detail["services"]["converter"]["checks"]["upload"]["status"],
        "up"
    );

    app.runner_restart();
    let body = health_becomes(&http, &app, "/health", 200);
    assert_eq!(body["status"], "healthy", "{body}");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_burst_of_health_checks_probes_once_per_interval_and_starves_nothing() {
    let app = App::builder().with_runner().start();
    let http = client();
    assert_eq!(health(&http, &app, "/health").0, 200);
    // Past `health_cache_ms`: the kept report is stale, so the burst races to refresh it.
    std::thread::sleep(Duration::from_millis(1100));
    let before = internal_calls(&http, &app, "validate");
    let started = Instant::now();
    let url = app.url("/health");
    let (healths, others) = std::thread::scope(|scope| {
        let healths: Vec<_> = (0..64)
            .map(|_| {
                scope.spawn(|| {
                    let reply = send(client().get(&url));
                    (reply.status, reply.body)
                })
            })
            .collect();
        let others: Vec<u16> = (0..20)
            .flat_map(|_| ["/health/live", "/.well-known/jwks.json"])
            .map(|path| send(http.get(app.url(path))).status)
            .collect();
        let healths: Vec<(u16, Value)> = healths.into_iter().map(|h| h.join().unwrap()).collect();
        (healths, others)
    });
    let elapsed = started.elapsed();
    for (status, body) in &healths {
        assert_eq!(
            (*status, body["status"].as_str()),
            (200, Some("healthy")),
            "{body}"
        );
    }
    assert!(others.iter().all(|status| *status == 200), "{others:?}");
    // One refresh per 1 s interval at most (plus the one that may straddle the start).
    if let (Some(before), Some(after)) = (before, internal_calls(&http, &app, "validate")) {
        let probes = after - before;
        let bound = elapsed.as_secs() + 2;
        eprintln!("64 concurrent /health in {elapsed:?}: {probes} probe(s) of validate");
        assert!(probes <= bound, "{probes} probes in {elapsed:?}");
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn health_services_reports_each_check_with_its_latency() {
    let app = App::builder().with_runner().start();
    let (status, body) = health(&client(), &app, "/health/services");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    let expected_checks = [
        ("auth", &["register", "login", "validate"][..]),
        ("users", &["users"]),
        ("catalog", &["products"]),
        ("orders", &["orders"]),
        ("converter", &["upload", "runner"]),
    ];
    for (service, checks) in expected_checks {
        let entry = &body["services"][service];
        assert_eq!(entry["status"], "connected", "{body}");
        let latency = entry["latency_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("{service}: {entry}"));
        let names: Vec<&String> = entry["checks"].as_object().unwrap().keys().collect();
        assert_eq!(names.len(), checks.len(), "{entry}");
        for check in checks {
            let check = &entry["checks"][check];
            assert_eq!(check["status"], "up", "{entry}");
            // The service's latency is its slowest check (they run concurrently).
            assert!(check["latency_ms"].as_u64().unwrap() <= latency, "{entry}");
        }
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn liveness_needs_no_dependency() {
    // No runner, and a runner URL where nothing listens.
    let app = App::builder()
        .variable("runner_url", "http://127.0.0.1:9")
        .start();
    let (status, body) = health(&client(), &app, "/health/live");
    assert_eq!((status, body), (200, json!({ "status": "ok" })));
    let (status, body) = health(&client(), &app, "/health");
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("degraded")),
        "{body}"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn upload_stats_are_for_admins() {
    let mut app = App::builder().with_runner().start();
    let (http, api) = (client(), Api::new(&app));
    send(http.get(app.url("/stats/uploads"))).assert_error(401, "token_missing");
    let user = api.user("alice").token;
    send(http.get(app.url("/stats/uploads")).bearer_auth(&user)).assert_error(403, "forbidden");

    let admin = api.admin();
    let stats = send(http.get(app.url("/stats/uploads")).bearer_auth(&admin)).ok();
    assert_eq!(
        stats,
        json!({
            "jobs": { "queued": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0 },
            "total": 0, "bytes_in": 0, "bytes_out": 0,
        })
    );

    app.runner_stop();
    send(http.get(app.url("/stats/uploads")).bearer_auth(&admin))
        .assert_error(503, "service_unavailable");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn metrics_are_for_admins_and_include_the_runner() {
    let mut app = App::builder().with_runner().start();
    let (http, api) = (client(), Api::new(&app));
    send(http.get(app.url("/metrics"))).assert_error(401, "token_missing");
    let user = api.user("alice").token;
    send(http.get(app.url("/metrics")).bearer_auth(&user)).assert_error(403, "forbidden");

    let admin = api.admin();
    let url = app.url("/metrics");
    let scrape = |http: &Client| {
        let response = http.get(&url).bearer_auth(&admin).send().unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        response.text().unwrap()
    };
    let text = scrape(&http);
    assert!(
        text.lines()
            .any(|line| line.starts_with("spinmesh_runner_")),
        "{text}"
    );
    assert!(
        text.contains("spinmesh_metrics_source_up{source=\"runner\"} 1\n"),
        "{text}"
    );
    // The embedded host's admin listener (the harness starts one; real Spin has none,
    // and then the gauge says so).
    if app.admin_url("/metrics").is_some() {
        assert!(
            text.contains("spinmesh_metrics_source_up{source=\"host\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("spinmesh_host_requests_total{component=\"gateway\""),
            "{text}"
        );
    } else {
        assert!(
            text.contains("spinmesh_metrics_source_up{source=\"host\"} 0\n"),
            "{text}"
        );
    }

    // One source down: the rest still comes back.
    app.runner_stop();
    let text = scrape(&http);
    assert!(!text.contains("spinmesh_runner_"), "{text}");
    assert!(
        text.contains("spinmesh_metrics_source_up{source=\"runner\"} 0\n"),
        "{text}"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn openapi_document_is_served_as_json() {
    let app = App::builder().start();
    let reply = send(client().get(app.url("/api/openapi.json")));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.str("openapi").starts_with("3.1."), "{}", reply.body);
    assert!(reply.body["paths"]["/api/openapi.json"]["get"].is_object());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn unknown_paths_and_the_internal_probe_get_the_json_404() {
    let app = App::builder().start();
    for path in ["/no/such/route", "/internal/probe"] {
        let response = client().get(app.url(path)).send().unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().unwrap();
        assert_eq!(
            body,
            json!({ "status": "404", "message": "Not Found", "code": "not_found" })
        );
    }
}
