//! `POST /api/token` as an OAuth 2.0 token endpoint (RFC 6749), driven by the `oauth2`
//! crate, a client library written independently of this project: both client
//! authentication methods, the refresh-token grant, and RFC 6749 §5.2 errors.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, ResourceOwnerPassword,
    ResourceOwnerUsername, TokenResponse, TokenUrl,
};
use serde_json::json;
use spinmesh_e2e::{App, ORDERS_CLIENT_ID, Reply, client, send};

const PASSWORD: &str = "correct horse battery";

/// An `oauth2` HTTP client as its documentation advises: no redirects followed.
fn oauth_http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

fn validate(app: &App, token: &str) -> Reply {
    send(client().get(app.url("/api/validate")).bearer_auth(token))
}

/// The §5.2 members next to our own error shape, and the no-cache headers.
fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["error"], error, "{}", reply.body);
    assert_eq!(
        reply.body["error_description"], reply.body["message"],
        "{}",
        reply.body
    );
    assert_eq!(reply.body["status"], status.to_string());
    assert!(reply.body["code"].is_string(), "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_standard_client_gets_tokens_with_either_authentication_method() {
    let app = App::builder().start();
    let http = oauth_http();
    let secret = app.secrets().orders_client_secret.clone();
    let token_url = TokenUrl::new(app.url("/api/token")).unwrap();
    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let oauth = BasicClient::new(ClientId::new(ORDERS_CLIENT_ID.into()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_token_uri(token_url.clone())
            .set_auth_type(auth_type.clone());
        let token = oauth
            .exchange_client_credentials()
            .request(&http)
            .unwrap_or_else(|error| panic!("{auth_type:?}: {error:?}"));
        assert_eq!(*token.token_type(), BasicTokenType::Bearer);
        assert_eq!(token.expires_in(), Some(Duration::from_secs(900)));
        // Client credentials come without a refresh token (RFC 6749 §4.4.3).
        assert!(token.refresh_token().is_none());
        let validated = validate(&app, token.access_token().secret()).ok();
        assert_eq!(validated["roles"], json!(["service"]), "{auth_type:?}");
        assert_eq!(validated["username"], ORDERS_CLIENT_ID);

        // A wrong secret is `invalid_client`, which the library reports as the server's
        // error instead of mistaking the body for a token.
        let wrong = BasicClient::new(ClientId::new(ORDERS_CLIENT_ID.into()))
            .set_client_secret(ClientSecret::new("wrong".into()))
            .set_token_uri(token_url.clone())
            .set_auth_type(auth_type.clone());
        match wrong.exchange_client_credentials().request(&http) {
            Err(RequestTokenError::ServerResponse(response)) => {
                assert_eq!(
                    *response.error(),
                    BasicErrorResponseType::InvalidClient,
                    "{auth_type:?}"
                );
            }
            other => panic!("{auth_type:?}: expected invalid_client, got {other:?}"),
        }
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_standard_client_refreshes_through_the_token_endpoint() {
    let app = App::builder().start();
    let http = client();
    send(http.post(app.url("/api/register")).json(&json!({
        "username": "olivia", "email": "olivia@example.com", "password": PASSWORD,
    })))
    .ok();
    let login = send(
        http.post(app.url("/api/login"))
            .json(&json!({ "username": "olivia", "password": PASSWORD })),
    )
    .ok();
    let first = RefreshToken::new(login["refresh_token"].as_str().unwrap().into());

    // Our refresh tokens belong to a password login, not to a client: a public client
    // (an id, no secret) refreshes them, and so does a confidential one.
    let token_url = TokenUrl::new(app.url("/api/token")).unwrap();
    let public = BasicClient::new(ClientId::new("web".into())).set_token_uri(token_url.clone());
    let refreshed = public
        .exchange_refresh_token(&first)
        .request(&oauth_http())
        .expect("refresh");
    let validated = validate(&app, refreshed.access_token().secret()).ok();
    assert_eq!(validated["username"], "olivia");
    let second = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second.secret(), first.secret());

    let confidential = BasicClient::new(ClientId::new(ORDERS_CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(
            app.secrets().orders_client_secret.clone(),
        ))
        .set_token_uri(token_url.clone())
        .set_auth_type(AuthType::BasicAuth);
    let third = confidential
        .exchange_refresh_token(&second)
        .request(&oauth_http())
        .expect("refresh with client authentication");
    assert!(third.refresh_token().is_some());

    // The first token was rotated away: presenting it again is `invalid_grant` (and, as
    // reuse, revokes the family, so the latest token is dead too).
    for stale in [&first, third.refresh_token().unwrap()] {
        match public.exchange_refresh_token(stale).request(&oauth_http()) {
            Err(RequestTokenError::ServerResponse(response)) => {
                assert_eq!(*response.error(), BasicErrorResponseType::InvalidGrant);
            }
            other => panic!("expected invalid_grant, got {other:?}"),
        }
    }
    // The password grant is not offered.
    let username = ResourceOwnerUsername::new("olivia".into());
    let password = ResourceOwnerPassword::new(PASSWORD.into());
    match public
        .exchange_password(&username, &password)
        .request(&oauth_http())
    {
        Err(RequestTokenError::ServerResponse(response)) => {
            assert_eq!(
                *response.error(),
                BasicErrorResponseType::UnsupportedGrantType
            );
        }
        other => panic!("expected unsupported_grant_type, got {other:?}"),
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn token_endpoint_errors_follow_rfc_6749() {
    let app = App::builder().start();
    let http = client();
    let secret = app.secrets().orders_client_secret.clone();
    let token = || http.post(app.url("/api/token"));

    // A failed Basic authentication is a 401 with the Basic challenge (§5.2).
    let reply = send(
        token()
            .basic_auth(ORDERS_CLIENT_ID, Some("wrong"))
            .form(&[("grant_type", "client_credentials")]),
    );
    assert_oauth_error(&reply, 401, "invalid_client");
    assert_eq!(reply.body["code"], "invalid_client");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    // Malformed Basic credentials are a failed authentication too.
    let reply = send(
        token()
            .header("authorization", "Basic !!!")
            .form(&[("grant_type", "client_credentials")]),
    );
    assert_oauth_error(&reply, 401, "invalid_client");
    // Without Basic, no Basic challenge.
    let reply = send(token().form(&[
        ("grant_type", "client_credentials"),
        ("client_id", ORDERS_CLIENT_ID),
        ("client_secret", "wrong"),
    ]));
    assert_oauth_error(&reply, 401, "invalid_client");
    assert_eq!(reply.header("www-authenticate"), None);

    // Two authentication methods at once, a missing refresh token, a malformed body.
    let reply = send(token().basic_auth(ORDERS_CLIENT_ID, Some(&secret)).form(&[
        ("grant_type", "client_credentials"),
        ("client_secret", secret.as_str()),
    ]));
    assert_oauth_error(&reply, 400, "invalid_request");
    let reply = send(token().form(&[("grant_type", "refresh_token")]));
    assert_oauth_error(&reply, 400, "invalid_request");
    let reply = send(
        token()
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=a&grant_type=b"),
    );
    assert_oauth_error(&reply, 400, "invalid_request");
    let reply = send(token().header("content-type", "text/plain").body("x"));
    assert_oauth_error(&reply, 415, "invalid_request");

    // An unknown refresh token, and a grant we do not offer.
    let reply = send(token().form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "made-up"),
    ]));
    assert_oauth_error(&reply, 400, "invalid_grant");
    assert_eq!(reply.body["code"], "refresh_token_invalid");
    let reply = send(token().form(&[("grant_type", "authorization_code"), ("code", "x")]));
    assert_oauth_error(&reply, 400, "unsupported_grant_type");

    // Successes are uncacheable too, and the seed's JSON body still works.
    let reply = send(
        http.post(app.url("/get-token"))
            .json(&json!({ "service_name": ORDERS_CLIENT_ID, "client_secret": secret })),
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    assert_eq!(reply.ok()["token_type"], "Bearer");
}
