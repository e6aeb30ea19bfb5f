//! The `users` component (profiles with ownership rules) over real HTTP, served from
//! the repository's spin.toml with freshly generated secrets. Accounts and tokens come
//! from the real register and login components.

use reqwest::Method;
use serde_json::{Value, json};
use spinmesh_authn::{Issuer, Role, generate_key_pair, now_unix};
use spinmesh_e2e::{
    Api, App, ORDERS_CLIENT_ID, PASSWORD, Reply, User, concurrently, is_rfc3339_utc, send,
    status_counts,
};

/// A well-formed id no account has.
const UNKNOWN_ID: &str = "00000000-0000-4000-8000-000000000000";

/// Creates `user`'s profile with the default email, as `POST /api/users`.
fn create_profile(api: &Api, user: &User) {
    let reply = api.send_json(
        Method::POST,
        "/api/users",
        &user.token,
        json!({ "email": format!("{}@profiles.example.com", user.username) }),
    );
    assert_eq!(reply.ok()["user_id"], user.id.as_str());
}

fn start() -> (App, Api) {
    let app = App::builder().start();
    let api = Api::new(&app);
    (app, api)
}

/// `{user_id, message}`, the seed's answer to a write.
fn assert_done(reply: Reply, id: &str, message: &str) {
    assert_eq!(reply.ok(), json!({ "user_id": id, "message": message }));
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn profiles_are_created_read_updated_and_deleted_on_every_path() {
    let (_app, api) = start();
    let alice = api.user("alice");

    // The seed's body: user_id and username name the caller.
    let created = api.send_json(
        Method::POST,
        "/api/users",
        &alice.token,
        json!({
            "user_id": alice.id,
            "username": "alice",
            "email": "alice@example.com",
            "full_name": "Alice Smith",
            "bio": "Software developer passionate about Rust",
        }),
    );
    assert_done(created, &alice.id, "Profile created successfully");
    api.send_json(
        Method::POST,
        "/users",
        &alice.token,
        json!({ "email": "other@example.com" }),
    )
    .assert_error(409, "profile_exists");

    let profile = api.get("/api/users/me", &alice.token).ok();
    assert_eq!(
        profile.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "bio",
            "created_at",
            "email",
            "full_name",
            "updated_at",
            "user_id",
            "username"
        ]
    );
    assert_eq!(profile["user_id"], alice.id.as_str());
    assert_eq!(profile["username"], "alice");
    assert_eq!(profile["email"], "alice@example.com");
    assert_eq!(profile["full_name"], "Alice Smith");
    assert_eq!(profile["bio"], "Software developer passionate about Rust");
    assert!(is_rfc3339_utc(&profile["created_at"]), "{profile}");
    assert_eq!(profile["created_at"], profile["updated_at"]);
    // Every read path, ids in any case, shows the same profile.
    for path in [
        format!("/api/users/{}", alice.id),
        format!("/users/{}", alice.id),
        format!("/users/{}", alice.id.to_uppercase()),
        "/users/me".into(),
    ] {
        assert_eq!(api.get(&path, &alice.token).ok(), profile, "{path}");
    }

    // PUT and PATCH are partial updates, on both paths.
    assert_done(
        api.send_json(
            Method::PUT,
            &format!("/users/{}", alice.id),
            &alice.token,
            json!({ "bio": "Senior developer" }),
        ),
        &alice.id,
        "Profile updated successfully",
    );
    assert_done(
        api.send_json(
            Method::PATCH,
            &format!("/api/users/{}", alice.id),
            &alice.token,
            json!({ "full_name": "Alice Q. Smith", "bio": null }),
        ),
        &alice.id,
        "Profile updated successfully",
    );
    api.send_json(
        Method::PUT,
        "/api/users/me",
        &alice.token,
        json!({ "full_name": "" }),
    )
    .ok();
    let updated = api.get("/api/users/me", &alice.token).ok();
    assert_eq!(updated["full_name"], "");
    assert_eq!(updated["bio"], "Senior developer");
    assert_eq!(updated["email"], profile["email"]);
    assert_eq!(updated["created_at"], profile["created_at"]);
    assert!(is_rfc3339_utc(&updated["updated_at"]));
    assert!(updated["updated_at"].as_str() >= updated["created_at"].as_str());

    // A minimal body through the seed path; texts default to empty.
    let bob = api.user("bob");
    assert_done(
        api.send_json(
            Method::POST,
            "/users",
            &bob.token,
            json!({ "email": "bob@example.com" }),
        ),
        &bob.id,
        "Profile created successfully",
    );
    let bob_profile = api
        .get(&format!("/api/users/{}", bob.id), &alice.token)
        .ok();
    assert_eq!(
        (
            bob_profile["full_name"].as_str(),
            bob_profile["bio"].as_str()
        ),
        (Some(""), Some(""))
    );

    assert_done(
        api.delete(&format!("/users/{}", alice.id), &alice.token),
        &alice.id,
        "Profile deleted successfully",
    );
    api.get("/api/users/me", &alice.token)
        .assert_error(404, "not_found");
    api.get(&format!("/users/{}", alice.id), &bob.token)
        .assert_error(404, "not_found");
    api.delete(&format!("/api/users/{}", alice.id), &alice.token)
        .assert_error(404, "not_found");
    api.send_json(
        Method::PATCH,
        "/api/users/me",
        &alice.token,
        json!({ "bio": "x" }),
    )
    .assert_error(404, "not_found");
    // Deleted, it can be created again; DELETE /api/users/me works too.
    create_profile(&api, &alice);
    assert_done(
        api.delete("/api/users/me", &alice.token),
        &alice.id,
        "Profile deleted successfully",
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn only_the_owner_or_an_admin_changes_a_profile() {
    let (app, api) = start();
    let alice = api.user("alice");
    let bob = api.user("bob");
    create_profile(&api, &alice);
    create_profile(&api, &bob);
    let alice_path = format!("/api/users/{}", alice.id);
    let before = api.get(&alice_path, &alice.token).ok();

    for method in [Method::PUT, Method::PATCH] {
        api.send_json(method, &alice_path, &bob.token, json!({ "bio": "hacked" }))
            .assert_error(403, "forbidden");
    }
    api.delete(&format!("/users/{}", alice.id), &bob.token)
        .assert_error(403, "forbidden");
    // Not even revealing whether an id exists.
    api.delete(&format!("/users/{UNKNOWN_ID}"), &bob.token)
        .assert_error(403, "forbidden");
    assert_eq!(api.get(&alice_path, &alice.token).ok(), before);

    // Nobody creates someone else's profile, whatever the body says.
    let carol = api.user("carol");
    for body in [
        json!({ "user_id": alice.id, "email": "c@example.com" }),
        json!({ "username": "alice", "email": "c@example.com" }),
        json!({ "user_id": carol.id, "username": "alice", "email": "c@example.com" }),
        json!({ "user_id": "abc", "email": "c@example.com" }),
    ] {
        api.send_json(Method::POST, "/api/users", &carol.token, body.clone())
            .assert_error(403, "forbidden");
    }
    // The email belongs to one profile.
    api.send_json(
        Method::POST,
        "/api/users",
        &carol.token,
        json!({ "email": "ALICE@profiles.example.com" }),
    )
    .assert_error(409, "email_taken");

    // The admin may change and delete anyone's profile.
    let admin = api.admin();
    assert_done(
        api.send_json(
            Method::PUT,
            &alice_path,
            &admin,
            json!({ "bio": "moderated" }),
        ),
        &alice.id,
        "Profile updated successfully",
    );
    assert_eq!(api.get(&alice_path, &bob.token).ok()["bio"], "moderated");
    assert_done(
        api.delete(&format!("/users/{}", bob.id), &admin),
        &bob.id,
        "Profile deleted successfully",
    );
    api.get(&format!("/users/{}", bob.id), &alice.token)
        .assert_error(404, "not_found");
    api.send_json(
        Method::PATCH,
        &format!("/api/users/{UNKNOWN_ID}"),
        &admin,
        json!({ "bio": "x" }),
    )
    .assert_error(404, "not_found");

    // A service account reads profiles but has none and changes none.
    let service = send(api.http.post(api.url("/api/token")).json(&json!({
        "grant_type": "client_credentials",
        "client_id": ORDERS_CLIENT_ID,
        "client_secret": app.secrets().orders_client_secret,
    })))
    .ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get(&alice_path, &service).ok()["user_id"],
        alice.id.as_str()
    );
    api.get("/api/users/me", &service)
        .assert_error(404, "not_found");
    api.send_json(
        Method::POST,
        "/api/users",
        &service,
        json!({ "email": "s@example.com" }),
    )
    .assert_error(403, "forbidden");
    api.send_json(Method::PUT, &alice_path, &service, json!({ "bio": "x" }))
        .assert_error(403, "forbidden");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn racing_creates_of_one_profile_have_exactly_one_winner() {
    let (_app, api) = start();
    let alice = api.user("alice");
    let statuses = concurrently(6, |i| {
        let body = json!({ "email": format!("alice{i}@example.com") });
        api.send_json(Method::POST, "/api/users", &alice.token, body)
            .status
    });
    assert_eq!(status_counts(&statuses), [(200, 1), (409, 5)].into());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn lists_are_paginated_in_a_stable_order() {
    let (_app, api) = start();
    let users: Vec<User> = (0..5).map(|i| api.user(&format!("user{i}"))).collect();
    for user in &users {
        create_profile(&api, user);
    }
    let token = users[0].token.as_str();
    let ids = |reply: &Reply| -> Vec<String> {
        reply
            .body
            .as_array()
            .expect("a JSON array")
            .iter()
            .map(|p| p["user_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = api.get("/api/users", token);
    assert_eq!(all.status, 200);
    assert_eq!(all.header("x-total-count"), Some("5"));
    assert_eq!(all.header("link"), None);
    let everyone = ids(&all);
    let mut expected: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let mut sorted = everyone.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);

    // Pages tile the full list exactly, in the same order.
    let first = api.get("/api/users?limit=2", token);
    assert_eq!(first.header("x-total-count"), Some("5"));
    assert_eq!(
        first.header("link"),
        Some(r#"</api/users?limit=2&offset=2>; rel="next""#)
    );
    let middle = api.get("/api/users?limit=2&offset=2", token);
    assert_eq!(
        middle.header("link"),
        Some(
            r#"</api/users?limit=2&offset=4>; rel="next", </api/users?limit=2&offset=0>; rel="prev""#
        )
    );
    let last = api.get("/api/users?offset=4&limit=2", token);
    assert_eq!(
        last.header("link"),
        Some(r#"</api/users?limit=2&offset=2>; rel="prev""#)
    );
    let paged: Vec<String> = [&first, &middle, &last].into_iter().flat_map(ids).collect();
    assert_eq!(paged, everyone);
    assert_eq!(
        ids(&api.get("/api/users", token)),
        everyone,
        "the order is stable"
    );

    let beyond = api.get("/api/users?offset=10", token);
    assert_eq!((beyond.status, beyond.body.clone()), (200, json!([])));
    assert_eq!(beyond.header("x-total-count"), Some("5"));
    assert_eq!(ids(&api.get("/api/users?limit=100", token)), everyone);

    // The seed path lists the same, with links to itself.
    let seed = api.get("/users?limit=4", token);
    assert_eq!(ids(&seed), everyone[..4]);
    assert_eq!(
        seed.header("link"),
        Some(r#"</users?limit=4&offset=4>; rel="next""#)
    );

    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "offset=-1",
        "offset=x",
        "limit=1e3",
    ] {
        api.get(&format!("/api/users?{query}"), token)
            .assert_error(400, "invalid_request");
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn bad_ids_and_bodies_get_4xx_never_5xx() {
    let (_app, api) = start();
    let alice = api.user("alice");
    create_profile(&api, &alice);
    let token = alice.token.as_str();

    let long = "9".repeat(5000);
    for id in [
        "abc",
        "-1",
        "0",
        "99999999999999999999999999999999",
        "1e400",
        &long,
        "'%20OR%20'1'='1",
        "%27%3B%20DROP%20TABLE%20profiles%3B--",
        "1;DROP%20TABLE%20profiles",
        "%00",
        "%E2%80%AE",
        "%ZZ",
        "550e8400-e29b-41d4-a716-44665544000g",
        "550e8400e29b41d4a716446655440000",
        "ME",
    ] {
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            for prefix in ["/api/users/", "/users/"] {
                let path = format!("{prefix}{id}");
                let reply = send(
                    api.request(method.clone(), &path, Some(token))
                        .json(&json!({ "bio": "x" })),
                );
                assert!(
                    reply.status == 400 || reply.status == 404,
                    "{method} {path}: {}",
                    reply.body
                );
                if reply.status == 400 {
                    reply.assert_error(400, "invalid_user_id");
                }
            }
        }
    }
    for simple in ["abc", "-1", "99999999999999999999999999999999"] {
        api.get(&format!("/api/users/{simple}"), token)
            .assert_error(400, "invalid_user_id");
    }
    api.get(&format!("/api/users/{UNKNOWN_ID}"), token)
        .assert_error(404, "not_found");
    // The table is still there.
    assert_eq!(
        api.get("/api/users", token).header("x-total-count"),
        Some("1")
    );

    let bob = api.user("bob");
    let create = |body: Value| api.send_json(Method::POST, "/api/users", &bob.token, body);
    let missing = create(json!({ "full_name": "Bob" }));
    missing.assert_error(400, "invalid_request");
    assert!(missing.str("message").contains("email"), "{}", missing.body);
    create(json!({ "email": "not an email" })).assert_error(400, "invalid_email");
    create(json!({ "email": "b@example.com", "full_name": "x".repeat(101) }))
        .assert_error(400, "invalid_full_name");
    create(json!({ "email": "b@example.com", "full_name": "Bob\u{0}" }))
        .assert_error(400, "invalid_full_name");
    create(json!({ "email": "b@example.com", "bio": "x".repeat(501) }))
        .assert_error(400, "invalid_bio");
    let wrong_type = create(json!({ "email": "b@example.com", "bio": 5 }));
    wrong_type.assert_error(400, "invalid_request");
    assert!(
        wrong_type.str("message").contains("bio"),
        "{}",
        wrong_type.body
    );
    create(json!(["b@example.com"])).assert_error(400, "invalid_request");
    send(
        api.request(Method::POST, "/api/users", Some(bob.token.as_str()))
            .header("content-type", "application/json")
            .body("{"),
    )
    .assert_error(400, "invalid_json");
    send(
        api.request(Method::POST, "/users", Some(bob.token.as_str()))
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .assert_error(415, "unsupported_media_type");
    // Limits are characters, not bytes.
    create(
        json!({ "email": "b@example.com", "full_name": "é".repeat(100), "bio": "€".repeat(500) }),
    )
    .ok();

    let update = |body: Value| api.send_json(Method::PUT, "/api/users/me", &bob.token, body);
    update(json!({})).assert_error(400, "invalid_request");
    update(json!({ "bio": null })).assert_error(400, "invalid_request");
    let email = update(json!({ "email": "new@example.com" }));
    email.assert_error(400, "invalid_request");
    assert!(email.str("message").contains("email"), "{}", email.body);
    update(json!({ "bio": "x".repeat(501) })).assert_error(400, "invalid_bio");
    update(json!({ "full_name": "a\nb" })).assert_error(400, "invalid_full_name");
    assert_eq!(
        api.get("/api/users/me", &bob.token).ok()["full_name"],
        "é".repeat(100)
    );

    // Methods a path does not serve: JSON 405 with Allow.
    let not_allowed =
        send(api.request(Method::POST, &format!("/api/users/{}", bob.id), Some(token)));
    not_allowed.assert_error(405, "method_not_allowed");
    assert_eq!(not_allowed.header("allow"), Some("GET, PUT, PATCH, DELETE"));
    let not_allowed = send(api.request(Method::DELETE, "/users", Some(token)));
    not_allowed.assert_error(405, "method_not_allowed");
    assert_eq!(not_allowed.header("allow"), Some("GET, POST"));
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn tokens_are_required_verified_and_revocable() {
    let (app, api) = start();
    let alice = api.user("alice");
    create_profile(&api, &alice);
    let paths = [
        "/api/users",
        "/users",
        "/api/users/me",
        &format!("/users/{}", alice.id),
    ];

    for path in paths {
        let url = api.url(path);
        send(api.http.get(&url)).assert_error(401, "token_missing");
        let reply = send(
            api.http
                .get(&url)
                .header("authorization", "Basic YWxpY2U6eA=="),
        );
        reply.assert_error(401, "invalid_auth_header");
        send(api.http.get(&url).bearer_auth("not.a.token")).assert_error(401, "token_invalid");
    }
    send(
        api.http
            .post(api.url("/api/users"))
            .json(&json!({ "email": "a@example.com" })),
    )
    .assert_error(401, "token_missing");
    send(api.http.delete(api.url(&format!("/users/{}", alice.id))))
        .assert_error(401, "token_missing");

    // Signed with the app's key but expired; signed with another key.
    let secrets = app.secrets();
    let expired = Issuer::new(&secrets.auth_signing_key, "spinmesh", "spinmesh", 60)
        .unwrap()
        .issue(&alice.id, "alice", &[Role::User], now_unix() - 3600)
        .unwrap()
        .token;
    api.get("/api/users/me", &expired)
        .assert_error(401, "token_expired");
    let foreign_key = generate_key_pair().unwrap().signing_key;
    let forged = Issuer::new(&foreign_key, "spinmesh", "spinmesh", 900)
        .unwrap()
        .issue(&alice.id, "alice", &[Role::User, Role::Admin], now_unix())
        .unwrap()
        .token;
    api.get("/api/users/me", &forged)
        .assert_error(401, "token_invalid");
    // A token the app's key signed is honoured: tokens are verified in-process.
    let minted = Issuer::new(&secrets.auth_signing_key, "spinmesh", "spinmesh", 900)
        .unwrap()
        .issue(&alice.id, "alice", &[Role::User], now_unix())
        .unwrap()
        .token;
    assert_eq!(
        api.get("/api/users/me", &minted).ok()["user_id"],
        alice.id.as_str()
    );

    // After logout the token is refused everywhere in the component; a new login works.
    api.logout(&alice.token).ok();
    api.get("/api/users/me", &alice.token)
        .assert_error(401, "token_invalid");
    api.get("/users", &alice.token)
        .assert_error(401, "token_invalid");
    api.send_json(
        Method::PATCH,
        "/api/users/me",
        &alice.token,
        json!({ "bio": "x" }),
    )
    .assert_error(401, "token_invalid");
    api.delete("/api/users/me", &alice.token)
        .assert_error(401, "token_invalid");
    let fresh = api.token("alice", PASSWORD);
    assert_eq!(
        api.get("/api/users/me", &fresh).ok()["user_id"],
        alice.id.as_str()
    );
}
