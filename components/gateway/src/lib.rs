//! `gateway`: app-level routes — health (DESIGN §3), upload statistics and metrics for
//! admins, the OpenAPI document, the web UI and the API explorer — and the JSON 404 for
//! every path no component claims.
#![allow(unsafe_code, reason = "spin-sdk's #[http_component] expands to unsafe export glue")]

mod admin;
mod health;
mod outbound;
mod web;

use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use spinmesh_api::fallback;

/// The document of every route in `spin.toml` (kept true by `tests/tests/openapi.rs`).
const OPENAPI: &str = include_str!("../openapi.json");

const GET: &[&str] = &["GET"];

/// Every path no component claims comes here and gets the app's JSON 404.
#[http_component]
fn handle(request: Request) -> Response {
    let mut router = Router::new();
    router.get_async("/health", health::summary);
    router.get("/health/live", health::live);
    router.get_async("/health/services", health::detail);
    router.get_async("/stats/uploads", admin::upload_stats);
    router.get_async("/metrics", admin::metrics);
    router.get("/api/openapi.json", openapi);
    web::register(&mut router);
    let allowed: Vec<_> = [
        ("/health", GET),
        ("/health/live", GET),
        ("/health/services", GET),
        ("/stats/uploads", GET),
        ("/metrics", GET),
        ("/api/openapi.json", GET),
    ]
    .into_iter()
    .chain(web::ROUTES)
    .collect();
    fallback::serve(router, &allowed, request)
}

fn openapi(_request: Request, _params: Params) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(OPENAPI)
        .build()
}
