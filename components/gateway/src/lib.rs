//! `gateway`: app-level routes that need no state, the web UI and the API explorer.

mod web;

use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};
use spin_sdk::http_component;
use spinmesh_api::fallback;

#[http_component]
fn handle(request: Request) -> Response {
    let mut router = Router::new();
    router.get("/health", health);
    web::register(&mut router);
    let routes: Vec<_> = [("/health", &["GET"][..])].into_iter().chain(web::ROUTES).collect();
    // Every path no component claims gets the app's JSON 404 (and wrong methods a 405).
    fallback::serve(router, &routes, request)
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
