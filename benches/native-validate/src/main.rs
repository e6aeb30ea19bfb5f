//! The native ceiling for `cargo xtask bench`: `GET /validate` (Bearer) and
//! `POST /validate {token}` verifying with the same `spinmesh_authn::Verifier` the
//! `validate` component uses, in a plain axum service on all cores. What it leaves
//! out, so the ceiling stays a ceiling: no WASM instance per request, the verifier is
//! built once rather than from variables per request, and there is no logout
//! denylist lookup. `GET /health` is its no-op route.
//!
//! Configuration (environment): `AUTH_PUBLIC_KEY` (base64url), `AUTH_ISSUER`,
//! `AUTH_AUDIENCE`; the first argument is the listen address (default
//! `127.0.0.1:0`). Prints `listening on http://…` once it accepts connections.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use spinmesh_authn::{Error, Verifier, now_unix};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let variable =
        |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let verifier = Verifier::from_base64(
        &variable("AUTH_PUBLIC_KEY")?,
        variable("AUTH_ISSUER")?,
        variable("AUTH_AUDIENCE")?,
    )?;
    let app = Router::new()
        .route("/validate", get(validate_header).post(validate_body))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .with_state(Arc::new(verifier));
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn validate_header(State(verifier): State<Arc<Verifier>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    respond(&verifier, token)
}

#[derive(Deserialize)]
struct ValidateRequest {
    token: Option<String>,
}

async fn validate_body(
    State(verifier): State<Arc<Verifier>>,
    Json(body): Json<ValidateRequest>,
) -> Response {
    respond(&verifier, body.token.as_deref())
}

fn respond(verifier: &Verifier, token: Option<&str>) -> Response {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return unauthorized("Token is missing!", "token_missing");
    };
    match verifier.verify(token, now_unix()) {
        Ok(claims) => Json(json!({
            "valid": true,
            "user_id": claims.sub,
            "username": claims.username,
            "roles": claims.roles,
            "exp": claims.exp,
            "user": { "id": claims.sub, "username": claims.username, "roles": claims.roles },
        }))
        .into_response(),
        Err(Error::Expired) => unauthorized("Token has expired", "token_expired"),
        Err(_) => unauthorized("Invalid or malformed token", "token_invalid"),
    }
}

fn unauthorized(message: &str, code: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "status": "401", "message": message, "code": code })),
    )
        .into_response()
}
