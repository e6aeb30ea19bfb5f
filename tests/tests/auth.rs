//! The auth components (register, login, validate) over real HTTP, served from the
//! repository's spin.toml with freshly generated secrets.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    Claims, Duration as JwtDuration, Ed25519KeyPair, EdDSAKeyPairLike, HS256Key, MACLike,
};
use serde_json::{Value, json};
use spinmesh_authn::{Issuer, Role, generate_key_pair, now_unix};
use spinmesh_e2e::{
    Api, App, ORDERS_CLIENT_ID, PASSWORD, Reply, client_from, concurrently, send, status_counts,
};

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn register_login_validate_refresh_logout() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let registered = auth.register("alice", "alice@example.com").ok();
    assert_eq!(registered["username"], "alice");
    assert_eq!(registered["message"], "User registered successfully");
    let user_id = registered["user_id"].as_str().unwrap().to_owned();
    assert_eq!(user_id.len(), 36, "a UUID, as in the seeds: {user_id}");

    let login = auth.login("alice", PASSWORD);
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let session = login.ok();
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    let token = session["token"].as_str().unwrap().to_owned();
    let refresh_token = session["refresh_token"].as_str().unwrap().to_owned();

    // The token is an EdDSA JWT with the documented claims.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_segment(parts[0]);
    assert_eq!(header["alg"], "EdDSA");
    let claims = decode_segment(parts[1]);
    assert_eq!(
        (claims["sub"].as_str(), claims["username"].as_str()),
        (Some(user_id.as_str()), Some("alice"))
    );
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("spinmesh"), Some("spinmesh"))
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));

    // Every validate route and shape accepts it.
    let expected = json!({
        "valid": true,
        "user_id": user_id,
        "username": "alice",
        "roles": ["user"],
        "exp": claims["exp"],
        "user": { "id": user_id, "username": "alice", "roles": ["user"] },
    });
    for path in ["/api/validate", "/validate"] {
        let by_header = send(auth.http.get(auth.url(path)).bearer_auth(&token));
        assert_eq!(by_header.header("cache-control"), Some("no-store"));
        assert_eq!(by_header.ok(), expected, "GET {path}");
        assert_eq!(
            auth.post(path, json!({ "token": token })).ok(),
            expected,
            "POST {path}"
        );
        // A body-less POST (forward-auth proxies) falls back to the header.
        assert_eq!(
            send(auth.http.post(auth.url(path)).bearer_auth(&token)).ok(),
            expected
        );
    }

    // Login by email, in any case, is the same account; a second, independent session.
    let other_session = auth.login("ALICE@example.com", PASSWORD).ok();
    assert_eq!(
        auth.validate(other_session["token"].as_str().unwrap()).ok()["user_id"],
        user_id.as_str()
    );

    // Refresh rotates: new access and refresh tokens, both usable.
    let rotated = auth.refresh(&refresh_token).ok();
    let token2 = rotated["token"].as_str().unwrap().to_owned();
    let refresh_token2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(token2, token);
    assert_ne!(refresh_token2, refresh_token);
    assert_eq!(rotated["token_type"], "Bearer");
    assert_eq!(auth.validate(&token2).ok()["username"], "alice");

    // Logout revokes that access token and its refresh family, not the other session.
    assert_eq!(
        auth.logout(&token2).ok()["message"],
        "Logged out successfully"
    );
    let revoked = auth.validate(&token2);
    revoked.assert_error(401, "token_invalid");
    assert_eq!(revoked.str("message"), "Invalid or malformed token");
    auth.post("/validate", json!({ "token": token2 }))
        .assert_error(401, "token_invalid");
    auth.refresh(&refresh_token2)
        .assert_error(401, "refresh_token_invalid");
    auth.refresh(other_session["refresh_token"].as_str().unwrap())
        .ok();
    // A repeated logout is harmless.
    auth.logout(&token2).ok();

    // Logout needs a token.
    send(auth.http.post(auth.url("/api/logout"))).assert_error(401, "token_missing");
    send(
        auth.http
            .post(auth.url("/api/logout"))
            .bearer_auth("not.a.token"),
    )
    .assert_error(401, "token_invalid");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    auth.registered("bob");
    let first = auth.login("bob", PASSWORD).ok()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = auth.refresh(&first).ok()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The old token comes back: someone copied it. Both it and its successor die.
    let reused = auth.refresh(&first);
    reused.assert_error(401, "refresh_token_invalid");
    auth.refresh(&second)
        .assert_error(401, "refresh_token_invalid");

    auth.refresh("made-up-token")
        .assert_error(401, "refresh_token_invalid");
    auth.refresh("").assert_error(401, "refresh_token_invalid");
    auth.post("/api/token/refresh", json!({}))
        .assert_error(400, "invalid_request");
    auth.post("/api/token/refresh", json!({ "refresh_token": 7 }))
        .assert_error(400, "invalid_request");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn racing_refreshes_of_one_token_rotate_once() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    auth.registered("carol");
    let refresh_token = auth.login("carol", PASSWORD).ok()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let statuses = concurrently(8, |_| auth.refresh(&refresh_token).status);
    assert_eq!(status_counts(&statuses), [(200, 1), (401, 7)].into());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn duplicate_usernames_and_emails_conflict_case_insensitively() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    auth.register("dave", "dave@example.com").ok();
    for (username, email, code, message) in [
        (
            "dave",
            "other@example.com",
            "username_taken",
            "Username already exists",
        ),
        (
            "DAVE",
            "other@example.com",
            "username_taken",
            "Username already exists",
        ),
        (
            "dave2",
            "dave@example.com",
            "email_taken",
            "Email already registered",
        ),
        (
            "dave2",
            "Dave@EXAMPLE.com",
            "email_taken",
            "Email already registered",
        ),
        // Both clash: the username is reported.
        (
            "Dave",
            "DAVE@example.com",
            "username_taken",
            "Username already exists",
        ),
    ] {
        let reply = auth.register(username, email);
        reply.assert_error(409, code);
        assert_eq!(reply.str("message"), message);
    }
    // The seed alias behaves the same.
    send(auth.http.post(auth.url("/register")).json(&json!({
        "username": "dave", "email": "x@example.com", "password": PASSWORD
    })))
    .assert_error(409, "username_taken");
    // Nothing was created by the failures: the original still logs in, the others do not exist.
    auth.login("dave", PASSWORD).ok();
    auth.login("dave2", PASSWORD)
        .assert_error(401, "invalid_credentials");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn concurrent_registrations_of_one_name_have_exactly_one_winner() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let replies = concurrently(20, |i| {
        auth.post(
            "/api/register",
            json!({ "username": "erin", "email": format!("erin{i}@example.com"), "password": format!("password-{i}") }),
        )
    });
    let winners: Vec<usize> = (0..20).filter(|i| replies[*i].status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let winner = winners[0];
    for (_, reply) in replies.iter().enumerate().filter(|(i, _)| *i != winner) {
        reply.assert_error(409, "username_taken");
    }
    // The winner's password is the one stored, and a loser's email was not taken.
    auth.login("erin", &format!("password-{winner}")).ok();
    auth.register("erin-2", &format!("erin{}@example.com", (winner + 1) % 20))
        .ok();
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn registration_input_is_validated() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let long = "x".repeat(33);
    let long_password = "p".repeat(129);
    let cases = [
        (
            json!({ "username": "ab", "email": "a@example.com", "password": PASSWORD }),
            "invalid_username",
        ),
        (
            json!({ "username": long, "email": "a@example.com", "password": PASSWORD }),
            "invalid_username",
        ),
        (
            json!({ "username": "bad name", "email": "a@example.com", "password": PASSWORD }),
            "invalid_username",
        ),
        (
            json!({ "username": "a@b", "email": "a@example.com", "password": PASSWORD }),
            "invalid_username",
        ),
        (
            json!({ "username": "frank", "email": "not-an-email", "password": PASSWORD }),
            "invalid_email",
        ),
        (
            json!({ "username": "frank", "email": "frank@localhost", "password": PASSWORD }),
            "invalid_email",
        ),
        (
            json!({ "username": "frank", "email": "frank@example.com", "password": "short" }),
            "invalid_password",
        ),
        (
            json!({ "username": "frank", "email": "frank@example.com", "password": long_password }),
            "invalid_password",
        ),
        (
            json!({ "username": 5, "email": "frank@example.com", "password": PASSWORD }),
            "invalid_request",
        ),
        (
            json!({ "username": "frank", "email": ["frank@example.com"], "password": PASSWORD }),
            "invalid_request",
        ),
        (
            json!({ "username": "frank", "email": "frank@example.com", "password": null }),
            "invalid_request",
        ),
        (
            json!({ "username": "frank", "email": "frank@example.com" }),
            "invalid_request",
        ),
        (json!(["frank"]), "invalid_request"),
    ];
    for (body, code) in cases {
        let reply = auth.post("/api/register", body.clone());
        assert_eq!(reply.status, 400, "{body} → {}", reply.body);
        reply.assert_error(400, code);
    }
    // None of those created the account; unknown fields are ignored.
    auth.post(
        "/api/register",
        json!({ "username": "frank", "email": "frank@example.com", "password": PASSWORD, "role": "admin", "x": 1 }),
    )
    .ok();
    let token = auth.login("frank", PASSWORD).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        auth.validate(&token).ok()["roles"],
        json!(["user"]),
        "a client cannot pick its roles"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn expired_tampered_foreign_and_confused_tokens_are_rejected() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let secrets = app.secrets().clone();
    auth.registered("grace");
    let good = auth.login("grace", PASSWORD).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    auth.validate(&good).ok();
    let parts: Vec<&str> = good.split('.').collect();
    let (header, claims) = (decode_segment(parts[0]), decode_segment(parts[1]));
    let now = now_unix();

    let sign_with = |signing_key: &str, iss: &str, aud: &str, issued_at: u64| {
        Issuer::new(signing_key, iss, aud, 60)
            .unwrap()
            .issue("1", "grace", &[Role::Admin], issued_at)
            .unwrap()
            .token
    };
    // Expired well beyond any clock-skew leeway, signed with the real key.
    let expired = sign_with(
        &secrets.auth_signing_key,
        "spinmesh",
        "spinmesh",
        now - 3600,
    );

    // Payload changed (roles escalated), signature kept.
    let mut escalated = claims.clone();
    escalated["roles"] = json!(["admin", "user"]);
    let tampered_payload = format!("{}.{}.{}", parts[0], b64_json(&escalated), parts[2]);
    // Signature of a different token.
    let other = auth.login("grace", PASSWORD).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.split('.').nth(2).unwrap()
    );

    // Another key pair, naming its own key id or claiming ours.
    let wrong_key = sign_with(
        &generate_key_pair().unwrap().signing_key,
        "spinmesh",
        "spinmesh",
        now,
    );
    let forged_claims = Claims::with_custom_claims(
        json!({ "username": "grace", "roles": ["admin"] }),
        JwtDuration::from_secs(60),
    )
    .with_issuer("spinmesh")
    .with_audience("spinmesh")
    .with_subject(claims["sub"].as_str().unwrap())
    .with_jwt_id("forged");
    let wrong_key_our_kid = Ed25519KeyPair::generate()
        .with_key_id(header["kid"].as_str().unwrap())
        .sign(forged_claims)
        .unwrap();
    let wrong_audience = sign_with(&secrets.auth_signing_key, "spinmesh", "someone-else", now);
    let wrong_issuer = sign_with(&secrets.auth_signing_key, "evil", "spinmesh", now);

    // `alg: none` with no signature, and with the original one.
    let none_header = b64_json(&json!({ "alg": "none", "typ": "JWT" }));
    let alg_none = format!("{none_header}.{}.", parts[1]);
    let alg_none_signed = format!("{none_header}.{}.{}", parts[1], parts[2]);

    // HS256 "keyed" with the public key: raw bytes and the base64 text as published.
    let public_bytes = URL_SAFE_NO_PAD.decode(&secrets.auth_public_key).unwrap();
    let hs256 = |secret: &[u8]| {
        let mut hs_header = header.clone();
        hs_header["alg"] = json!("HS256");
        let signing_input = format!("{}.{}", b64_json(&hs_header), parts[1]);
        let tag = HS256Key::from_bytes(secret).authentication_tag(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag))
    };
    let hs256_raw = hs256(&public_bytes);
    let hs256_text = hs256(secrets.auth_public_key.as_bytes());

    let invalid = [
        ("tampered payload", tampered_payload),
        ("tampered signature", tampered_signature),
        ("wrong key", wrong_key),
        ("wrong key claiming our kid", wrong_key_our_kid),
        ("wrong audience", wrong_audience),
        ("wrong issuer", wrong_issuer),
        ("alg none", alg_none),
        ("alg none, signed", alg_none_signed),
        ("HS256 with the public key", hs256_raw),
        ("HS256 with the public key text", hs256_text),
        ("garbage", "garbage".to_owned()),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
    ];
    for (what, token) in &invalid {
        for reply in [
            auth.validate(token),
            auth.post("/api/validate", json!({ "token": token })),
            auth.post("/validate", json!({ "token": token })),
        ] {
            assert_eq!(reply.status, 401, "{what}: {}", reply.body);
            reply.assert_error(401, "token_invalid");
            assert_eq!(reply.str("message"), "Invalid or malformed token", "{what}");
        }
    }
    for reply in [
        auth.validate(&expired),
        auth.post("/validate", json!({ "token": expired })),
    ] {
        reply.assert_error(401, "token_expired");
        assert_eq!(reply.str("message"), "Token has expired");
    }

    // Missing tokens, in every form.
    for reply in [
        send(auth.http.get(auth.url("/api/validate"))),
        auth.post("/api/validate", json!({})),
        auth.post("/validate", json!({ "token": "" })),
        auth.post("/validate", json!({ "token": null })),
    ] {
        reply.assert_error(401, "token_missing");
        assert_eq!(reply.str("message"), "Token is missing!");
    }
    send(
        auth.http
            .get(auth.url("/validate"))
            .basic_auth("grace", Some(PASSWORD)),
    )
    .assert_error(401, "invalid_auth_header");
    auth.post("/validate", json!({ "token": 42 }))
        .assert_error(400, "invalid_request");

    // The genuine token still passes after all that.
    auth.validate(&good).ok();
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn failed_logins_are_throttled_per_account_and_per_address_then_recover() {
    const WINDOW: u64 = 3;
    let app = App::builder()
        .variable("login_max_failures", "3")
        .variable("login_failure_window_secs", &WINDOW.to_string())
        .variable("login_backoff_secs", &WINDOW.to_string())
        .variable("login_backoff_max_secs", &WINDOW.to_string())
        .variable("login_max_failures_per_address", "3")
        .start();
    let auth = Api::new(&app);
    auth.registered("heidi");
    auth.registered("ivan");
    let login_from = |ip: &str, username: &str, password: &str| {
        send(
            client_from(ip)
                .post(auth.url("/api/login"))
                .json(&json!({ "username": username, "password": password })),
        )
    };

    // Per account: three failures from one address lock heidi, even from another address
    // and even with the right password; ivan is unaffected there.
    for _ in 0..3 {
        login_from("127.0.0.2", "heidi", "wrong password").assert_error(401, "invalid_credentials");
    }
    login_from("127.0.0.2", "heidi", PASSWORD).assert_throttled(WINDOW);
    login_from("127.0.0.3", "heidi", PASSWORD).assert_throttled(WINDOW);
    login_from("127.0.0.3", "HEIDI@example.com", PASSWORD).assert_throttled(WINDOW);
    login_from("127.0.0.3", "ivan", PASSWORD).ok();

    // Per address: failures on three different (even unknown) accounts lock the address.
    let address_window = Instant::now();
    for username in ["nobody-1", "nobody-2", "ivan"] {
        login_from("127.0.0.4", username, "wrong password")
            .assert_error(401, "invalid_credentials");
    }
    login_from("127.0.0.4", "ivan", PASSWORD).assert_throttled(WINDOW);
    login_from("127.0.0.5", "ivan", PASSWORD).ok();

    // Recovery once the windows have passed. Windows are whole seconds from the first
    // failure, so a second's margin after the last one began is enough.
    std::thread::sleep(Duration::from_secs(WINDOW + 1).saturating_sub(address_window.elapsed()));
    login_from("127.0.0.2", "heidi", PASSWORD).ok();
    login_from("127.0.0.4", "ivan", PASSWORD).ok();
}

/// What a caller can tell from outside: nothing. (That an unknown user also costs a full
/// password verification, the dummy hash, is checked where it lives, in crates/authn.)
#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    // The address budget is what unknown names could dodge, so it is the one set low.
    let app = App::builder()
        .variable("login_max_failures", "100")
        .variable("login_max_failures_per_address", "3")
        .start();
    let auth = Api::new(&app);
    auth.registered("judy");
    let shape = |reply: Reply| {
        reply.assert_error(401, "invalid_credentials");
        let mut headers: Vec<String> = reply.headers.keys().map(|name| name.to_string()).collect();
        headers.retain(|name| !["date", "x-request-id", "content-length"].contains(&name.as_str()));
        headers.sort();
        (reply.body, headers)
    };
    let known = shape(auth.login("judy", "wrong password"));
    assert_eq!(shape(auth.login("nobody", "wrong password")), known);
    assert_eq!(
        shape(auth.login("NOBODY@example.com", "wrong password")),
        known
    );
    // Unknown names count against the address like wrong passwords do: after three
    // failures of either kind the address's failure budget is spent.
    auth.login("judy", "wrong password")
        .assert_error(429, "too_many_requests");
    auth.login("nobody-else", "wrong password")
        .assert_error(429, "too_many_requests");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn service_accounts_get_tokens_with_client_credentials() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let secret = app.secrets().orders_client_secret.clone();

    let expect_service_token = |reply: Reply| {
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let body = reply.ok();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["access_token"], body["token"]);
        let validated = auth.validate(body["token"].as_str().unwrap()).ok();
        assert_eq!(validated["roles"], json!(["service"]));
        assert_eq!(validated["username"], ORDERS_CLIENT_ID);
        assert_eq!(validated["user_id"], format!("service:{ORDERS_CLIENT_ID}"));
    };
    expect_service_token(auth.post(
        "/api/token",
        json!({ "grant_type": "client_credentials", "client_id": ORDERS_CLIENT_ID, "client_secret": secret }),
    ));
    expect_service_token(send(auth.http.post(auth.url("/api/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", ORDERS_CLIENT_ID),
        ("client_secret", secret.as_str()),
    ])));
    // The seed's /get-token body, plus the secret it now requires.
    expect_service_token(auth.post(
        "/get-token",
        json!({ "service_name": ORDERS_CLIENT_ID, "client_secret": secret }),
    ));

    for (path, body) in [
        (
            "/api/token",
            json!({ "client_id": ORDERS_CLIENT_ID, "client_secret": "wrong" }),
        ),
        (
            "/api/token",
            json!({ "client_id": "nobody", "client_secret": secret }),
        ),
        ("/api/token", json!({ "client_id": ORDERS_CLIENT_ID })),
        ("/get-token", json!({ "service_name": "order-service" })),
        (
            "/get-token",
            json!({ "service_name": ORDERS_CLIENT_ID, "client_secret": "" }),
        ),
    ] {
        auth.post(path, body).assert_error(401, "invalid_client");
    }
    auth.post(
        "/api/token",
        json!({ "grant_type": "password", "client_id": ORDERS_CLIENT_ID, "client_secret": secret }),
    )
    .assert_error(400, "unsupported_grant_type");
    auth.post(
        "/api/token",
        json!({ "client_id": 1, "client_secret": secret }),
    )
    .assert_error(400, "invalid_request");
    send(
        auth.http
            .post(auth.url("/api/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("client_id=a&client_id=b"),
    )
    .assert_error(400, "invalid_request");
    send(
        auth.http
            .post(auth.url("/get-token"))
            .header("content-type", "text/plain")
            .body("orders"),
    )
    .assert_error(415, "unsupported_media_type");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn the_first_admin_comes_from_variables() {
    let app = App::builder().variable("admin_username", "root").start();
    let auth = Api::new(&app);
    let admin_password = app.secrets().admin_password.clone();
    // Nobody can claim the admin's name before the admin first logs in.
    auth.register("ROOT", "root@example.com")
        .assert_error(409, "username_taken");
    auth.login("root", "wrong password")
        .assert_error(401, "invalid_credentials");

    let token = auth.login("root", &admin_password).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let validated = auth.validate(&token).ok();
    assert_eq!(validated["roles"], json!(["admin", "user"]));
    assert_eq!(validated["username"], "root");
    // Created once: the same account next time.
    let again = auth.login("Root", &admin_password).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth.validate(&again).ok()["user_id"], validated["user_id"]);
    // `admin` is an ordinary name when it is not the configured one.
    auth.registered("admin");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn bad_requests_get_4xx_in_the_error_shape() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let json_routes = [
        "/api/register",
        "/register",
        "/api/login",
        "/login",
        "/api/token/refresh",
        "/api/token",
        "/get-token",
        "/api/validate",
        "/validate",
    ];
    let oversized = json!({ "username": "x".repeat(100 * 1024), "password": "y" }).to_string();
    for path in json_routes {
        let post = |content_type: Option<&str>, body: &str| {
            let mut request = auth.http.post(auth.url(path)).body(body.to_owned());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            send(request)
        };
        let cases = [
            (
                Some("application/json"),
                "{\"username\": ",
                400,
                "invalid_json",
            ),
            (Some("application/json"), "[1, 2]", 400, "invalid_request"),
            (Some("application/json"), "\"text\"", 400, "invalid_request"),
            (Some("text/plain"), "{}", 415, "unsupported_media_type"),
            (None, "{}", 415, "unsupported_media_type"),
            (
                Some("application/json"),
                oversized.as_str(),
                413,
                "payload_too_large",
            ),
        ];
        for (content_type, body, status, code) in cases {
            let reply = post(content_type, body);
            assert!(
                reply.status < 500,
                "{path} {content_type:?}: {}",
                reply.body
            );
            assert_eq!(
                reply.status,
                status,
                "{path} {content_type:?} {:?}: {}",
                &body[..body.len().min(20)],
                reply.body
            );
            reply.assert_error(status, code);
        }
        let wrong_method = send(auth.http.delete(auth.url(path)));
        wrong_method.assert_error(405, "method_not_allowed");
        let allow = if path.ends_with("validate") {
            "GET, POST"
        } else {
            "POST"
        };
        assert_eq!(wrong_method.header("allow"), Some(allow), "{path}");
    }
    // GET is not a way to log in; the JWKS is read-only.
    send(auth.http.get(auth.url("/api/login"))).assert_error(405, "method_not_allowed");
    send(auth.http.post(auth.url("/.well-known/jwks.json")))
        .assert_error(405, "method_not_allowed");
    // Login with the wrong JSON types is a 400, with an empty password a plain 401.
    auth.post(
        "/api/login",
        json!({ "username": "x", "password": 12345678 }),
    )
    .assert_error(400, "invalid_request");
    auth.post("/api/login", json!({ "username": "", "password": "" }))
        .assert_error(401, "invalid_credentials");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn jwks_publishes_the_verification_key() {
    let app = App::builder().start();
    let auth = Api::new(&app);
    let reply = send(auth.http.get(auth.url("/.well-known/jwks.json")));
    assert!(
        reply
            .header("cache-control")
            .is_some_and(|value| value.contains("max-age"))
    );
    let jwks = reply.ok();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(
        (key["alg"].as_str(), key["use"].as_str()),
        (Some("EdDSA"), Some("sig"))
    );
    assert_eq!(key["x"], app.secrets().auth_public_key.as_str());
    // Tokens name this key.
    auth.registered("kim");
    let token = auth.login("kim", PASSWORD).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        decode_segment(token.split('.').next().unwrap())["kid"],
        key["kid"]
    );
}

/// A key rotation: the app restarts with a new key pair and the old public key in
/// `auth_previous_public_keys`. Tokens the old key signed stay valid until they expire
/// and the JWKS publishes both keys; without the overlap they are refused.
#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn tokens_signed_before_a_key_rotation_stay_valid_during_the_overlap() {
    let before = App::builder().start();
    let old = Api::new(&before);
    old.registered("rotated");
    let token = old.login("rotated", PASSWORD).ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_key = before.secrets().auth_public_key.clone();

    let overlapping = App::builder()
        .variable("auth_previous_public_keys", &old_key)
        .start();
    assert_ne!(
        overlapping.secrets().auth_public_key,
        old_key,
        "a new key pair"
    );
    let api = Api::new(&overlapping);
    let valid = api.validate(&token).ok();
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["username"], "rotated");
    let jwks = send(api.http.get(api.url("/.well-known/jwks.json"))).ok();
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["x"].as_str().unwrap())
        .collect();
    assert_eq!(
        published,
        [
            overlapping.secrets().auth_public_key.as_str(),
            old_key.as_str()
        ]
    );

    let after_overlap = App::builder().start();
    Api::new(&after_overlap)
        .validate(&token)
        .assert_error(401, "token_invalid");
}

/// The stores hold password hashes and refresh tokens: only this user may read them.
#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn the_app_state_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::builder().start();
    Api::new(&app).registered("olga");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let state = app.state_dir();
    assert_eq!(mode(&state), 0o700, "{}", state.display());
    let stores: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "db"))
        .collect();
    assert!(
        stores.iter().any(|path| path.ends_with("auth.db")),
        "{stores:?}"
    );
    for store in stores {
        assert_eq!(mode(&store), 0o600, "{}", store.display());
    }
}

/// The `(key, value)` pairs of key-value store `store`, kept in the app's SQLite file
/// `file` (the local key-value backend, Spin's schema).
fn stored(app: &App, file: &str, store: &str) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(app.state_dir().join(file)).unwrap();
    let mut query = conn
        .prepare("SELECT key, value FROM spin_key_value WHERE store = ?1")
        .unwrap();
    query
        .query_map([store], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// How many entries of the stores still mention a user (their token's `jti`, their id):
/// in the token cache, the denylist and the rate-limit counters.
fn traces_of(app: &App, jti: &str, user_id: &str) -> [usize; 3] {
    let mentions = |file: &str, store: &str, needle: &str| {
        stored(app, file, store)
            .iter()
            .filter(|(key, value)| {
                key.contains(needle) || String::from_utf8_lossy(value).contains(needle)
            })
            .count()
    };
    [
        mentions("token_cache.db", "token_cache", jti),
        mentions("sqlite_key_value.db", "default", jti),
        mentions("rate_limits.db", "rate_limits", user_id),
    ]
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn entries_about_a_token_leave_the_stores_once_it_has_expired() {
    let app = App::builder()
        .variable("access_token_ttl_secs", "2")
        .variable("rate_limit_window_secs", "1")
        .variable("expiry_window_secs", "1")
        .start();
    let api = Api::new(&app);
    let alice = api.user("alice");
    let jti = decode_segment(alice.token.split('.').nth(1).unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    api.get("/api/orders", &alice.token).ok();
    api.logout(&alice.token).ok();
    let traces = traces_of(&app, &jti, &alice.id);
    assert!(
        traces.iter().all(|&count| count >= 1),
        "verified, counted and logged out: {traces:?}"
    );

    // Expired, but within the verifiers' clock-skew leeway: still refused as logged out.
    let exp = decode_segment(alice.token.split('.').nth(1).unwrap())["exp"]
        .as_u64()
        .unwrap();
    api.registered("bob");
    while now_unix() < exp + 3 {
        std::thread::sleep(Duration::from_millis(200));
    }
    api.get("/api/orders", &alice.token)
        .assert_error(401, "token_invalid");

    // Other users keep writing; the first write of each second sweeps what has ended,
    // which the entries have a minute after the token's `exp` (the largest leeway).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let bob = api.token("bob", PASSWORD);
        api.get("/api/orders", &bob).ok();
        api.logout(&bob).ok();
        if traces_of(&app, &jti, &alice.id) == [0, 0, 0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there: {:?}",
            traces_of(&app, &jti, &alice.id)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(now_unix() >= exp + 60, "gone before the leeway ended");
    // A logged-out token stays refused after its entry went: it has expired.
    api.get("/api/orders", &alice.token)
        .assert_error(401, "token_expired");
    // The indexes go too: none lists a window that ended more than a sweep ago.
    let swept_up_to = now_unix() - 3;
    for (file, store) in [
        ("token_cache.db", "token_cache"),
        ("sqlite_key_value.db", "default"),
        ("rate_limits.db", "rate_limits"),
    ] {
        for (key, _) in stored(&app, file, store) {
            let window = key
                .strip_prefix("expiry:")
                .and_then(|rest| rest.trim_start_matches("swept:").split(':').next())
                .and_then(|window| window.parse::<u64>().ok());
            assert!(
                window.is_none_or(|window| window >= swept_up_to),
                "{store}: {key}"
            );
        }
    }
}
