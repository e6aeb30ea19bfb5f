//! `gateway`: app-level routes — health, upload statistics and metrics for
//! admins, the OpenAPI document, the web UI and the API explorer — and the JSON 404 for
//! every path no component claims.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

mod admin;
mod health;
mod outbound;

use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_api::routes::RouteTable;

/// The document of every route in `spin.toml` (kept true by `tests/tests/openapi.rs`).
const OPENAPI: &str = include_str!("../openapi.json");

/// Every path no component claims comes here and gets the app's JSON 404.
#[http_component]
fn handle(request: Request) -> Response {
    let mut routes = RouteTable::new();
    routes
        .add_async(Method::Get, &["/health"], health::summary)
        .add(Method::Get, &["/health/live"], health::live)
        .add_async(Method::Get, &["/health/services"], health::detail)
        .add_async(Method::Get, &["/stats/uploads"], admin::upload_stats)
        .add_async(Method::Get, &["/metrics"], admin::metrics)
        .add(Method::Get, &["/api/openapi.json"], openapi);
    spinmesh_web::register(&mut routes);
    routes.serve(request)
}

fn openapi(_request: Request, _params: Params) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(OPENAPI)
        .build()
}
