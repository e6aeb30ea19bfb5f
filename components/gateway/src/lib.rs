//! `gateway`: app-level routes that need no state.

use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    let mut router = Router::new();
    router.get("/health", health);
    router.any("/*", not_found);
    router.handle(request)
}

fn health(_request: Request, _params: Params) -> impl IntoResponse {
    json(
        200,
        serde_json::json!({
            "status": "healthy",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// Every path no component claims gets the app's JSON error shape.
fn not_found(_request: Request, _params: Params) -> impl IntoResponse {
    json(404, serde_json::json!({ "status": "404", "message": "Not Found", "code": "not_found" }))
}

fn json(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
