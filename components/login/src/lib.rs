//! `login`: password login, refresh-token rotation, logout and client-credentials tokens.
//! The only component granted the signing key.
#![allow(unsafe_code, reason = "spin-sdk's #[http_component] expands to unsafe export glue")]

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use spinmesh_accounts::{
    Error,
    clients::ServiceClients,
    db,
    sessions::{self, Session},
    throttle,
    users::{self, Admin},
};
use spinmesh_api::config::{positive_u64, var};
use spinmesh_api::{
    ApiError, ApiResult, DEFAULT_MAX_JSON_BODY, denylist, fallback, json, parse_json, probe,
    verify_bearer,
};
use spinmesh_authn::{Issuer, Role, Verifier, now_unix};

type Handler = fn(Request, Params) -> ApiResult<Response>;

const ROUTES: [(&str, Handler); 6] = [
    ("/api/login", login),
    ("/login", login),
    ("/api/token/refresh", refresh),
    ("/api/logout", logout),
    ("/api/token", client_token),
    ("/get-token", client_token),
];

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, ready) {
        return response;
    }
    let mut router = Router::new();
    for (route, handler) in ROUTES {
        router.post(route, handler);
    }
    fallback::serve(
        router,
        &ROUTES.map(|(route, _)| (route, &["POST"][..])),
        request,
    )
}

/// The `auth` database and the denylist store open; the signing key and the client
/// secrets parse.
fn ready() -> ApiResult<()> {
    db::open()?;
    denylist::reachable()?;
    issuer()?;
    ServiceClients::parse(&var("service_clients")?)?;
    Ok(())
}

/// `username` may also be the account's email.
#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

fn login(request: Request, _params: Params) -> ApiResult<Response> {
    let body: LoginRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let issuer = issuer()?;
    let admin = Admin {
        username: var("admin_username")?,
        password: var("admin_password")?,
    };
    let policy = throttle::Policy {
        max_failures: positive_u64("login_max_failures")?,
        window_secs: positive_u64("login_failure_window_secs")?,
    };
    // Set by Spin from the connection's peer; clients cannot forge `spin-*` headers.
    let client_addr = request
        .header("spin-client-addr")
        .and_then(|value| value.as_str());
    let conn = db::open()?;
    let now = now_unix();
    let user = users::authenticate(
        &conn,
        &body.username,
        &body.password,
        client_addr,
        &admin,
        &policy,
        now,
    )?;
    let session = sessions::start(
        &conn,
        &issuer,
        &user,
        positive_u64("refresh_token_ttl_secs")?,
        now,
    )?;
    Ok(session_response(&session))
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

fn refresh(request: Request, _params: Params) -> ApiResult<Response> {
    let body: RefreshRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let issuer = issuer()?;
    let ttl = positive_u64("refresh_token_ttl_secs")?;
    let session = sessions::refresh(&db::open()?, &issuer, &body.refresh_token, ttl, now_unix())?;
    Ok(session_response(&session))
}

/// Revokes the bearer token (until it expires) and the refresh family it came with.
fn logout(request: Request, _params: Params) -> ApiResult<Response> {
    // Our own tokens are checked against the signing key's public half, so this component
    // needs no public-key variable.
    let verifier = Verifier::new(
        issuer()?.public_key().clone(),
        var("auth_issuer")?,
        var("auth_audience")?,
    );
    // Signature only: logging out an already revoked token again is harmless.
    let claims = verify_bearer(&request, &verifier, now_unix())?;
    denylist::revoke(&claims)?;
    sessions::end(&db::open()?, &claims.jti)?;
    Ok(json(200, &json!({ "message": "Logged out successfully" })))
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4) in a JSON or form body. The seed's
/// `/get-token` sends `service_name`, accepted as the client id; the secret is required.
#[derive(Deserialize)]
struct ClientCredentials {
    grant_type: Option<String>,
    #[serde(alias = "service_name")]
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn client_token(request: Request, _params: Params) -> ApiResult<Response> {
    let body = parse_client_credentials(&request)?;
    if body
        .grant_type
        .as_deref()
        .is_some_and(|grant| grant != "client_credentials")
    {
        return Err(ApiError::new(
            400,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        ));
    }
    let (Some(client_id), Some(secret)) = (body.client_id, body.client_secret) else {
        return Err(Error::InvalidClient.into());
    };
    let clients = ServiceClients::parse(&var("service_clients")?)?;
    let client = clients.authenticate(&client_id, &secret)?;
    // `service:` keeps service subjects apart from user ids.
    let token = issuer()?.issue(
        &format!("service:{client}"),
        client,
        &[Role::Service],
        now_unix(),
    )?;
    // `access_token` for OAuth clients, `token` for the seed's.
    Ok(no_store(json(
        200,
        &json!({
            "access_token": token.token,
            "token": token.token,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
        }),
    )))
}

fn parse_client_credentials(request: &Request) -> Result<ClientCredentials, ApiError> {
    let is_form = request
        .header("content-type")
        .and_then(|value| value.as_str())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return parse_json(request, DEFAULT_MAX_JSON_BODY).map_err(|error| match error.status {
            415 => ApiError::new(
                415,
                "unsupported_media_type",
                "Content-Type must be application/json or application/x-www-form-urlencoded",
            ),
            _ => error,
        });
    }
    if request.body().len() > DEFAULT_MAX_JSON_BODY {
        return Err(ApiError::payload_too_large(DEFAULT_MAX_JSON_BODY));
    }
    serde_urlencoded::from_bytes(request.body())
        .map_err(|_| ApiError::invalid_request("Malformed form body"))
}

fn issuer() -> ApiResult<Issuer> {
    Ok(Issuer::new(
        &var("auth_signing_key")?,
        var("auth_issuer")?,
        var("auth_audience")?,
        positive_u64("access_token_ttl_secs")?,
    )?)
}

fn session_response(session: &Session) -> Response {
    no_store(json(
        200,
        &json!({
            "token": session.access.token,
            "token_type": "Bearer",
            "expires_in": session.access.expires_in,
            "refresh_token": session.refresh_token,
        }),
    ))
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    response.set_header("cache-control", "no-store");
    response
}
