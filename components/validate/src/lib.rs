//! `validate`: token validation for callers outside the app (the seeds' gateway pattern,
//! forward-auth proxies) and the JWKS for third parties. Components inside the app verify
//! tokens in-process instead.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_api::config::{public_keys, token_verifier};
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{
    ApiError, ApiResult, DEFAULT_MAX_JSON_BODY, bearer_token, denylist, json, parse_json, probe,
    verify_active_charging_misses,
};
use spinmesh_authn::{jwks, now_unix};

const VALIDATE: [&str; 2] = ["/api/validate", "/validate"];
const JWKS: &str = "/.well-known/jwks.json";

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, ready) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes
        .add(Method::Get, &VALIDATE, validate_header)
        .add(Method::Post, &VALIDATE, validate_body)
        .add(Method::Get, &[JWKS], publish_jwks)
        // Gateways call validate for every request they pass: a token already verified
        // is answered without the counter write a charge costs.
        .charge_in_handler(&VALIDATE);
    routes.serve(request)
}

/// The public key parses and the denylist store opens.
fn ready() -> ApiResult<()> {
    token_verifier()?;
    denylist::reachable()
}

fn validate_header(request: Request, _params: Params) -> ApiResult<Response> {
    respond(&request, bearer_token(&request))
}

#[derive(Deserialize)]
struct ValidateRequest {
    token: Option<String>,
}

/// The seeds' `{"token": "…"}`. A POST without a body uses the `Authorization` header
/// instead, as proxies doing forward-auth send only headers.
fn validate_body(request: Request, _params: Params) -> ApiResult<Response> {
    if request.body().is_empty() {
        return respond(&request, bearer_token(&request));
    }
    let token = parse_json::<ValidateRequest>(&request, DEFAULT_MAX_JSON_BODY).and_then(|body| {
        body.token
            .filter(|token| !token.is_empty())
            .ok_or_else(ApiError::token_missing)
    });
    respond(&request, token.as_deref().map_err(Clone::clone))
}

/// The claims of `token` (or why there are none), charging the client's address unless
/// the token was already verified.
fn respond(request: &Request, token: Result<&str, ApiError>) -> ApiResult<Response> {
    let claims = verify_active_charging_misses(request, token, &token_verifier()?, now_unix())?;
    let mut response = json(
        200,
        &json!({
            "valid": true,
            "user_id": claims.sub,
            "username": claims.username,
            "roles": claims.roles,
            "exp": claims.exp,
            "user": { "id": claims.sub, "username": claims.username, "roles": claims.roles },
        }),
    );
    // The answer changes at logout: no cache may keep it.
    response.set_header("cache-control", "no-store");
    Ok(response)
}

fn publish_jwks(_request: Request, _params: Params) -> ApiResult<Response> {
    // The previous keys too: a token signed before a rotation still names its key.
    let mut response = json(200, &jwks(&public_keys()?));
    response.set_header("cache-control", "public, max-age=300");
    Ok(response)
}
