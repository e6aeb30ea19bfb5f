//! `login`: password login, refresh-token rotation, logout, and the OAuth 2.0 token
//! endpoint (client credentials and refresh tokens). The only component granted the
//! signing key.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{IntoResponse, Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_accounts::{
    Error,
    clients::{self, ClientAuth, ServiceClients},
    db,
    sessions::{self, Session},
    throttle,
    users::{self, Admin},
};
use spinmesh_api::config::{positive_u64, var};
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{
    ApiError, ApiResult, DEFAULT_MAX_JSON_BODY, client_addr, denylist, json, parse_json, probe,
    verify_bearer,
};
use spinmesh_authn::{Issuer, Role, Verifier, now_unix, refresh::Lifetime};

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, ready) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes
        .add(Method::Post, &["/api/login", "/login"], login)
        .add(Method::Post, &["/api/token/refresh"], refresh)
        .add(Method::Post, &["/api/logout"], logout)
        .add(Method::Post, &["/api/token", "/get-token"], client_token);
    routes.serve(request)
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
        free_failures: positive_u64("login_max_failures")?,
        backoff_secs: positive_u64("login_backoff_secs")?,
        max_backoff_secs: positive_u64("login_backoff_max_secs")?,
        window_secs: positive_u64("login_failure_window_secs")?,
        address_max_failures: positive_u64("login_max_failures_per_address")?,
    };
    let client = client_addr::client_group(&request)?;
    let conn = db::open()?;
    let now = now_unix();
    let user = users::authenticate(
        &conn,
        &body.username,
        &body.password,
        client,
        &admin,
        &policy,
        now,
    )?;
    let session = sessions::start(&conn, &issuer, &user, refresh_lifetime()?, now)?;
    Ok(session_response(&session))
}

fn refresh_lifetime() -> ApiResult<Lifetime> {
    Ok(Lifetime {
        ttl_secs: positive_u64("refresh_token_ttl_secs")?,
        family_secs: positive_u64("refresh_family_lifetime_secs")?,
    })
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

/// Rotation keeps the family's absolute end (set at login), so only the TTL is needed.
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

/// The token endpoint's parameters (RFC 6749 §4.4.2, §6), as a form or a JSON body. The
/// seed's `/get-token` sends `service_name`, accepted as the client id; without a
/// `grant_type` the request is for client credentials, as the seed's is.
#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    #[serde(alias = "service_name")]
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// The OAuth 2.0 token endpoint. Clients authenticate with HTTP Basic or with parameters
/// (§2.3.1); `refresh_token` grants need no client authentication (our refresh tokens
/// come from password logins, not from a client), but credentials sent must be right.
/// Every answer, errors included, is uncacheable and carries §5.2's `error` on failure.
/// (Named for the grant it started with; the route table refers to it by this name.)
fn client_token(request: Request, _params: Params) -> ApiResult<Response> {
    let authorization = request
        .header("authorization")
        .and_then(|value| value.as_str());
    let basic_used = clients::is_basic(authorization);
    let answer = grant(&request, authorization).unwrap_or_else(|error| {
        let error = match error {
            TokenError::Domain(error) => error.at_token_endpoint(basic_used),
            // Malformed bodies, wrong content types, oversized requests.
            TokenError::Api(error) if matches!(error.status, 400 | 413 | 415) => {
                error.with_oauth_error("invalid_request")
            }
            TokenError::Api(error) => error,
        };
        error.into_response()
    });
    Ok(no_store(answer))
}

/// A token endpoint failure: from the auth domain (mapped per RFC 6749 §5.2) or from
/// request parsing and configuration.
enum TokenError {
    Domain(Error),
    Api(ApiError),
}

impl From<Error> for TokenError {
    fn from(error: Error) -> Self {
        Self::Domain(error)
    }
}

impl From<ApiError> for TokenError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

fn grant(request: &Request, authorization: Option<&str>) -> Result<Response, TokenError> {
    let body = parse_token_request(request)?;
    let client = ClientAuth::new(authorization, body.client_id, body.client_secret)?;
    let authenticated = match client.credentials() {
        Some((id, secret)) => {
            let clients = ServiceClients::parse(&var("service_clients")?)?;
            Some(clients.authenticate(id, secret)?.to_owned())
        }
        None => None,
    };
    match body.grant_type.as_deref() {
        None | Some("client_credentials") => {
            let client = authenticated.ok_or(Error::InvalidClient)?;
            // `service:` keeps service subjects apart from user ids.
            let token = issuer()?
                .issue(
                    &format!("service:{client}"),
                    &client,
                    &[Role::Service],
                    now_unix(),
                )
                .map_err(Error::from)?;
            // `access_token` for OAuth clients, `token` for the seed's.
            Ok(json(
                200,
                &json!({
                    "access_token": token.token,
                    "token": token.token,
                    "token_type": "Bearer",
                    "expires_in": token.expires_in,
                }),
            ))
        }
        Some("refresh_token") => {
            let presented = body
                .refresh_token
                .ok_or(Error::InvalidTokenRequest("refresh_token is required"))?;
            let session = sessions::refresh(
                &db::open()?,
                &issuer()?,
                &presented,
                positive_u64("refresh_token_ttl_secs")?,
                now_unix(),
            )?;
            Ok(json(
                200,
                &json!({
                    "access_token": session.access.token,
                    "token": session.access.token,
                    "token_type": "Bearer",
                    "expires_in": session.access.expires_in,
                    "refresh_token": session.refresh_token,
                }),
            ))
        }
        Some(_) => Err(Error::UnsupportedGrantType.into()),
    }
}

fn parse_token_request(request: &Request) -> Result<TokenRequest, ApiError> {
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

/// Token responses must not be cached (RFC 6749 §5.1; `Pragma` for HTTP/1.0 caches).
fn no_store(mut response: Response) -> Response {
    response.set_header("cache-control", "no-store");
    response.set_header("pragma", "no-cache");
    response
}
