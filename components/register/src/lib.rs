//! `register`: creates user accounts.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_accounts::{NewAccount, db, users};
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{ApiResult, DEFAULT_MAX_JSON_BODY, config, json, parse_json, probe};
use spinmesh_authn::now_unix;

const ROUTES: [&str; 2] = ["/api/register", "/register"];

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, ready) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes.add(Method::Post, &ROUTES, register);
    routes.serve(request)
}

/// The `auth` database opens (and is migrated) and the variable parses.
fn ready() -> ApiResult<()> {
    db::open()?;
    config::var("admin_username")?;
    Ok(())
}

/// Unknown fields are ignored (serde's default), as clients of the seeds may send extras.
#[derive(Deserialize)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
}

fn register(request: Request, _params: Params) -> ApiResult<Response> {
    let body: RegisterRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let account = NewAccount::new(body.username, body.email, body.password)?;
    let admin_username = config::var("admin_username")?;
    let user = users::register(&db::open()?, &account, &admin_username, now_unix())?;
    // 200, not 201: the seed's documented status.
    Ok(json(
        200,
        &json!({
            "user_id": user.id,
            "username": user.username,
            "message": "User registered successfully",
        }),
    ))
}
