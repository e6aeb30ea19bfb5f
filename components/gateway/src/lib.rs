//! `gateway`: app-level routes that need no state of their own (the edge's rate-limit
//! counters aside).

use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};
use spin_sdk::http_component;
use spinmesh_api::fallback;

/// Every path no component claims comes here and gets the app's JSON 404.
#[http_component]
fn handle(request: Request) -> Response {
    let mut router = Router::new();
    router.get("/health", health);
    fallback::serve(router, &[("/health", &["GET"])], request)
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

fn json(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
