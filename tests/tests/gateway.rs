//! The gateway component over real HTTP, served from the repository's spin.toml.

use serde_json::Value;
use spinmesh_e2e::{App, client, engine_available};

#[test]
fn health_reports_healthy_with_time_and_version() {
    if !engine_available() {
        return;
    }
    let app = App::builder().start();
    let response = client().get(app.url("/health")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z') && timestamp.len() == 20, "RFC 3339 UTC: {timestamp}");
}

#[test]
fn unknown_paths_get_the_json_error_shape() {
    if !engine_available() {
        return;
    }
    let app = App::builder().start();
    let response = client().get(app.url("/no/such/route")).send().unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().unwrap();
    assert_eq!(body, serde_json::json!({ "status": "404", "message": "Not Found", "code": "not_found" }));
}
