//! The edge every component passes (crates/api `edge`): CORS, request ids and the log
//! line, rate limits per client address and per user, security headers — over real HTTP.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::json;
use spinmesh_e2e::{Api, App, Reply, client, client_from, log_containing, send};

const ALLOWED: &str = "https://app.example.com";

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn preflight(app: &App, path: &str, origin: &str, method: &str) -> Response {
    client()
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .unwrap()
}

fn listed(value: Option<&str>, name: &str) -> bool {
    value.is_some_and(|value| {
        value
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(name))
    })
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn cors_preflight_and_simple_requests_follow_the_fetch_standard() {
    let app = App::builder()
        .variable(
            "cors_allowed_origins",
            &format!("{ALLOWED}, http://localhost:5173"),
        )
        .start();

    let granted = preflight(&app, "/api/login", ALLOWED, "POST");
    assert_eq!(granted.status(), 204);
    assert_eq!(
        header(&granted, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    assert_eq!(
        header(&granted, "access-control-allow-methods"),
        Some("POST")
    );
    let allowed_headers = header(&granted, "access-control-allow-headers");
    for name in [
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "X-Request-Id",
    ] {
        assert!(listed(allowed_headers, name), "{name}: {allowed_headers:?}");
    }
    assert_eq!(header(&granted, "access-control-max-age"), Some("600"));
    assert_eq!(header(&granted, "access-control-allow-credentials"), None);
    let vary = header(&granted, "vary");
    for name in [
        "Origin",
        "Access-Control-Request-Method",
        "Access-Control-Request-Headers",
    ] {
        assert!(listed(vary, name), "{name}: {vary:?}");
    }
    assert!(header(&granted, "x-request-id").is_some());
    assert!(granted.text().unwrap().is_empty());

    // Another origin gets an answer the browser refuses: no grant at all.
    let refused = preflight(&app, "/api/login", "https://evil.example", "POST");
    assert_eq!(refused.status(), 204);
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert_eq!(header(&refused, name), None, "{name}");
    }
    assert!(listed(header(&refused, "vary"), "Origin"));

    // A route's own methods, from another component; plain OPTIONS is not a 405.
    let item = preflight(&app, "/api/users/me", "http://localhost:5173", "DELETE");
    assert_eq!(item.status(), 204);
    assert_eq!(
        header(&item, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(
        header(&item, "access-control-allow-methods"),
        Some("GET, PUT, PATCH, DELETE")
    );
    let plain = client()
        .request(Method::OPTIONS, app.url("/api/users"))
        .send()
        .unwrap();
    assert_eq!(plain.status(), 204);
    assert_eq!(header(&plain, "allow"), Some("GET, POST, OPTIONS"));
    assert_eq!(header(&plain, "access-control-allow-origin"), None);

    // Actual requests: the error answer is readable by the allowed origin only.
    let login = |origin: &str| {
        send(
            client()
                .post(app.url("/api/login"))
                .header("origin", origin)
                .json(&json!({ "username": "nobody", "password": "wrong password" })),
        )
    };
    let readable = login(ALLOWED);
    readable.assert_error(401, "invalid_credentials");
    assert_eq!(
        readable.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
    let exposed = readable.header("access-control-expose-headers");
    for name in [
        "X-Request-Id",
        "X-Total-Count",
        "Link",
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Content-Disposition",
    ] {
        assert!(listed(exposed, name), "{name}: {exposed:?}");
    }
    assert!(listed(readable.header("vary"), "Origin"));
    let unreadable = login("https://evil.example");
    unreadable.assert_error(401, "invalid_credentials");
    assert_eq!(unreadable.header("access-control-allow-origin"), None);
    assert_eq!(unreadable.header("access-control-expose-headers"), None);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn cors_is_off_by_default() {
    let app = App::builder().start();
    let response = preflight(&app, "/api/login", ALLOWED, "POST");
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let simple = send(
        client()
            .get(app.url("/api/validate"))
            .header("origin", ALLOWED),
    );
    simple.assert_error(401, "token_missing");
    assert_eq!(simple.header("access-control-allow-origin"), None);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn request_ids_are_kept_or_generated_echoed_and_logged() {
    let app = App::builder().start();
    let get = |path: &str, id: Option<&str>| {
        let mut request = client().get(app.url(path));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        send(request)
    };

    let traced = get("/no/such/route?token=very-secret", Some("e2e-trace-0001"));
    traced.assert_error(404, "not_found");
    assert_eq!(traced.header("x-request-id"), Some("e2e-trace-0001"));
    assert_eq!(traced.header("x-content-type-options"), Some("nosniff"));
    // JSON is no page: the page-only headers are not sent.
    assert_eq!(traced.header("content-security-policy"), None);

    let generated = get("/api/validate", None);
    generated.assert_error(401, "token_missing");
    let id = generated.header("x-request-id").unwrap();
    assert!(uuid_v4(id), "{id}");

    let too_long = "x".repeat(129);
    for unsafe_id in ["two words", too_long.as_str()] {
        let replaced = get("/api/validate", Some(unsafe_id));
        let id = replaced.header("x-request-id").unwrap();
        assert!(uuid_v4(id), "{unsafe_id:?} became {id}");
    }

    let logs = app.state_dir().join("logs");
    let gateway = log_containing(
        &logs.join("gateway_stderr.txt"),
        "request_id=e2e-trace-0001",
    );
    let line = gateway
        .lines()
        .find(|line| line.contains("request_id=e2e-trace-0001"))
        .unwrap_or_else(|| panic!("no log line for the request id in:\n{gateway}"));
    for part in [
        "method=GET",
        "path=/no/such/route ",
        "status=404",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(!gateway.contains("very-secret"), "{gateway}");
    log_containing(
        &logs.join("validate_stderr.txt"),
        &format!("request_id={id} method=GET path=/api/validate status=401"),
    );
}

fn uuid_v4(id: &str) -> bool {
    id.len() == 36
        && id.as_bytes()[14] == b'4'
        && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Sends `request()` until the app answers 429 (at most `max` times) and returns the
/// answers. Counting up to the 429 rather than asserting it at a fixed request keeps the
/// test right even if a slow machine lets a window end midway.
fn until_limited(max: usize, request: impl Fn() -> Reply) -> Vec<Reply> {
    let mut replies = Vec::new();
    while replies.len() < max {
        let reply = request();
        let limited = reply.status == 429;
        replies.push(reply);
        if limited {
            return replies;
        }
    }
    panic!("no 429 after {max} requests");
}

/// The last `limit` answers before the 429 counted the quota down to zero.
fn assert_counted_down(replies: &[Reply], limit: u64) {
    let (refused, allowed) = replies.split_last().unwrap();
    assert!(
        allowed.len() as u64 >= limit,
        "refused after {} requests",
        allowed.len()
    );
    let last = &allowed[allowed.len() - limit as usize..];
    for (reply, remaining) in last.iter().zip((0..limit).rev()) {
        assert_eq!(
            reply.header("ratelimit-limit"),
            Some(limit.to_string().as_str())
        );
        assert_eq!(
            reply.header("ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
        let reset: u64 = reply.header("ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset >= 1, "{reset}");
    }
    refused.assert_error(429, "too_many_requests");
    assert_eq!(
        refused.header("ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(
        refused.header("ratelimit-reset"),
        Some(retry_after.to_string().as_str())
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn each_client_address_is_limited_then_recovers_after_the_window() {
    const LIMIT: u64 = 3;
    let app = App::builder()
        .variable("rate_limit_per_address", &LIMIT.to_string())
        .variable("rate_limit_window_secs", "3")
        .variable("cors_allowed_origins", ALLOWED)
        .start();
    let http = client();
    let validate = || send(http.get(app.url("/api/validate")).header("origin", ALLOWED));

    let replies = until_limited(20, validate);
    assert_counted_down(&replies, LIMIT);
    let refused = replies.last().unwrap();
    // Readable cross-origin like any other answer, so a browser app can back off.
    assert_eq!(refused.header("access-control-allow-origin"), Some(ALLOWED));
    assert!(refused.header("x-request-id").is_some());

    // Health probes are never limited; another address has its own counter.
    let health = http.get(app.url("/health/live")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(header(&health, "ratelimit-limit"), None);
    let other = send(client_from("127.0.0.2").get(app.url("/api/validate")));
    other.assert_error(401, "token_missing");
    assert_eq!(
        other.header("ratelimit-remaining"),
        Some((LIMIT - 1).to_string().as_str())
    );

    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(retry_after + 1));
    let recovered = validate();
    recovered.assert_error(401, "token_missing");
    assert_eq!(
        recovered.header("ratelimit-remaining"),
        Some((LIMIT - 1).to_string().as_str())
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn each_signed_in_user_has_a_limit_of_their_own() {
    const LIMIT: u64 = 2;
    let app = App::builder()
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", &LIMIT.to_string())
        .start();
    let http = client();
    let api = Api::new(&app);
    let (alice, bob) = (api.user("alice").token, api.user("bob").token);
    let me = |token: &str| send(http.get(app.url("/api/users/me")).bearer_auth(token));

    let replies = until_limited(20, || me(&alice));
    assert_counted_down(&replies, LIMIT);

    // Bob is not held back by Alice.
    let bobs = me(&bob);
    assert_ne!(bobs.status, 429, "{}", bobs.body);
    assert_eq!(
        bobs.header("ratelimit-remaining"),
        Some((LIMIT - 1).to_string().as_str())
    );
    // Only verified tokens count: a forged one naming Alice is refused as invalid, and
    // could never have used up her quota.
    let forged = format!("{alice}x");
    me(&forged).assert_error(401, "token_invalid");
    // Routes without a signed-in user are not per-user limited.
    let anonymous = send(http.get(app.url("/api/validate")));
    anonymous.assert_error(401, "token_missing");
    assert_eq!(anonymous.header("ratelimit-limit"), None);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn validate_charges_every_request_but_those_with_a_token_already_verified() {
    const LIMIT: u64 = 3;
    let app = App::builder()
        .variable("rate_limit_per_address", &LIMIT.to_string())
        .variable("rate_limit_window_secs", "600")
        .start();
    let api = Api::new(&app);
    // Registering and signing in are charged like any route: 2 of the 3.
    let token = api.user("gina").token;
    let validate = |token: &str| send(api.http.get(api.url("/api/validate")).bearer_auth(token));

    // Its first check verifies the signature and is charged: the last of the 3.
    let first = validate(&token);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("ratelimit-remaining"), Some("0"));
    // Already verified: answered from the cache, not charged, however often.
    for _ in 0..10 {
        let again = validate(&token);
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.header("ratelimit-limit"), None);
    }
    // Everything else is charged before any signature check, so it is refused now: a
    // forged token, no token, a body that does not parse.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    validate(&forged).assert_error(429, "too_many_requests");
    send(api.http.get(api.url("/api/validate"))).assert_error(429, "too_many_requests");
    send(
        api.http
            .post(api.url("/validate"))
            .header("content-type", "application/json")
            .body("{"),
    )
    .assert_error(429, "too_many_requests");
    // The verified token still passes, by header and by body.
    assert_eq!(validate(&token).status, 200);
    let by_body = send(
        api.http
            .post(api.url("/validate"))
            .json(&json!({ "token": token })),
    );
    assert_eq!(by_body.status, 200, "{}", by_body.body);
}
