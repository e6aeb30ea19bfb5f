//! Login throttling and client addresses as a real network sees them (issue #18): one
//! account's failures never lock out another, a lockout ends with its backoff, a known
//! client keeps signing in, and only a trusted proxy's `X-Forwarded-For` names the client
//! (IPv6 counted by /64). Loopback has many IPv4 addresses (`client_from`) but one IPv6
//! one, so IPv6 clients arrive the way they would behind a proxy: in its header.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::json;
use spinmesh_e2e::{App, AppBuilder, Reply, client_from, send};

const PASSWORD: &str = "correct horse battery";
/// Far longer than any test runs, so no window rolls over mid-test.
const LONG_WINDOW: &str = "3600";

/// The repository's app with login throttling tuned for a test.
fn app(max_failures: u64, backoff: u64, max_backoff: u64, per_address: u64) -> AppBuilder {
    App::builder()
        .variable("login_max_failures", &max_failures.to_string())
        .variable("login_backoff_secs", &backoff.to_string())
        .variable("login_backoff_max_secs", &max_backoff.to_string())
        .variable("login_max_failures_per_address", &per_address.to_string())
        .variable("login_failure_window_secs", LONG_WINDOW)
}

fn register(app: &App, username: &str) {
    send(
        client_from("127.0.0.1")
            .post(app.url("/api/register"))
            .json(&json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            })),
    )
    .ok();
}

/// A login from `http`'s address, through a proxy's `X-Forwarded-For` when given.
fn login(
    app: &App,
    http: &Client,
    forwarded_for: Option<&str>,
    username: &str,
    password: &str,
) -> Reply {
    let mut request = http
        .post(app.url("/api/login"))
        .json(&json!({ "username": username, "password": password }));
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    send(request)
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn failures_on_one_account_leave_others_alone_and_its_lockout_ends_with_the_backoff() {
    const MAX_BACKOFF: u64 = 2;
    let app = app(3, 1, MAX_BACKOFF, 100).start();
    register(&app, "xavier");
    register(&app, "yasmin");
    let attacker = client_from("127.0.0.2");

    // 25 wrong passwords for xavier from one address: the first three are checked, then
    // xavier backs off (429) and later failures only lengthen the wait, up to the cap.
    let mut last_failure = Instant::now();
    let mut refused = 0;
    for attempt in 0..25 {
        let reply = login(&app, &attacker, None, "xavier", "wrong password");
        if attempt < 3 || reply.status == 401 {
            reply.assert_error(401, "invalid_credentials");
            last_failure = Instant::now();
        } else {
            reply.assert_throttled(MAX_BACKOFF);
            refused += 1;
        }
    }
    assert!(refused > 0, "xavier never backed off");

    // Another account signs in from the very same address at once.
    login(&app, &attacker, None, "yasmin", PASSWORD).ok();
    // Xavier waits no longer than the largest backoff after the last failure.
    let reply = login(&app, &attacker, None, "xavier", PASSWORD);
    if reply.status != 200 {
        reply.assert_throttled(MAX_BACKOFF);
    }
    std::thread::sleep(Duration::from_secs(MAX_BACKOFF + 1).saturating_sub(last_failure.elapsed()));
    login(&app, &attacker, None, "xavier", PASSWORD).ok();
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_stranger_cannot_lock_an_account_out_of_where_it_signed_in_before() {
    // A backoff far longer than the test: only the known-client path can let walter in.
    let app = app(3, 3000, 3000, 100).start();
    register(&app, "walter");
    let home = client_from("127.0.0.2");
    login(&app, &home, None, "walter", PASSWORD).ok();

    for _ in 0..3 {
        login(
            &app,
            &client_from("127.0.0.3"),
            None,
            "walter",
            "wrong password",
        )
        .assert_error(401, "invalid_credentials");
    }
    // Strangers, even with the right password, wait…
    login(&app, &client_from("127.0.0.3"), None, "walter", PASSWORD).assert_throttled(3000);
    login(&app, &client_from("127.0.0.4"), None, "walter", PASSWORD).assert_throttled(3000);
    // …walter, from where he signed in before, does not.
    login(&app, &home, None, "walter", PASSWORD).ok();
    // Guesses from his own address count against that address's own allowance only.
    for _ in 0..3 {
        login(&app, &home, None, "walter", "wrong password")
            .assert_error(401, "invalid_credentials");
    }
    login(&app, &home, None, "walter", PASSWORD).assert_throttled(3000);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn an_address_is_charged_for_failures_not_for_successes() {
    let app = app(100, 1, 1, 5).start();
    register(&app, "vera");
    let office = client_from("127.0.0.5");
    // Successes cost nothing.
    for _ in 0..8 {
        login(&app, &office, None, "vera", PASSWORD).ok();
    }
    // Five failures across accounts exhaust the address's budget. Without a trusted proxy
    // an `X-Forwarded-For` is the client's own claim and changes nothing.
    for i in 0..5 {
        let forged = format!("198.51.100.{i}");
        login(
            &app,
            &office,
            Some(&forged),
            &format!("nobody-{i}"),
            "wrong password",
        )
        .assert_error(401, "invalid_credentials");
    }
    let reply = login(&app, &office, Some("198.51.100.99"), "vera", PASSWORD);
    reply.assert_throttled(3600);
    // Another address is unaffected.
    login(&app, &client_from("127.0.0.6"), None, "vera", PASSWORD).ok();
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_trusted_proxy_names_the_client_and_ipv6_counts_by_64() {
    let app = app(100, 1, 1, 2)
        .variable("trusted_proxies", "127.0.0.1/32")
        .start();
    let proxy = client_from("127.0.0.1");
    let fail = |http: &Client, forwarded_for: &str, username: &str| {
        login(&app, http, Some(forwarded_for), username, "wrong password")
    };

    // The proxy's header decides: 198.51.100.7 uses up its budget…
    fail(&proxy, "198.51.100.7", "nobody-1").assert_error(401, "invalid_credentials");
    fail(&proxy, "198.51.100.7", "nobody-2").assert_error(401, "invalid_credentials");
    fail(&proxy, "198.51.100.7", "nobody-3").assert_throttled(3600);
    // …also when it arrives IPv4-mapped, or behind entries a client wrote itself…
    fail(&proxy, "::ffff:198.51.100.7", "nobody-3").assert_throttled(3600);
    fail(&proxy, "203.0.113.1, 198.51.100.7", "nobody-3").assert_throttled(3600);
    // …while the next address through the same proxy has its own.
    fail(&proxy, "198.51.100.8", "nobody-3").assert_error(401, "invalid_credentials");

    // IPv6 addresses in one /64 share a budget; the next /64 does not.
    fail(&proxy, "2001:db8:1:2::1", "nobody-4").assert_error(401, "invalid_credentials");
    fail(&proxy, "[2001:db8:1:2:ffff::2]:4711", "nobody-5")
        .assert_error(401, "invalid_credentials");
    fail(&proxy, "2001:db8:1:2:abcd::3", "nobody-6").assert_throttled(3600);
    fail(&proxy, "2001:db8:1:3::1", "nobody-6").assert_error(401, "invalid_credentials");

    // From a peer that is not a trusted proxy the header is ignored: the peer counts.
    let direct = client_from("127.0.0.2");
    fail(&direct, "192.0.2.1", "nobody-7").assert_error(401, "invalid_credentials");
    fail(&direct, "192.0.2.2", "nobody-8").assert_error(401, "invalid_credentials");
    fail(&direct, "192.0.2.3", "nobody-9").assert_throttled(3600);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn the_edge_limiter_counts_the_client_a_trusted_proxy_names() {
    let app = App::builder()
        .variable("trusted_proxies", "127.0.0.1")
        .variable("rate_limit_per_address", "3")
        .variable("rate_limit_window_secs", LONG_WINDOW)
        .start();
    let get = |http: &Client, forwarded_for: &str| {
        send(
            http.get(app.url("/.well-known/jwks.json"))
                .header("x-forwarded-for", forwarded_for),
        )
    };
    let proxy = client_from("127.0.0.1");
    for _ in 0..3 {
        assert_eq!(get(&proxy, "198.51.100.1").status, 200);
    }
    get(&proxy, "198.51.100.1").assert_throttled(3600);
    assert_eq!(get(&proxy, "198.51.100.2").status, 200);
    // One /64, one budget.
    for host in 1..=3 {
        assert_eq!(get(&proxy, &format!("2001:db8:5:6::{host}")).status, 200);
    }
    get(&proxy, "2001:db8:5:6:ffff::9").assert_throttled(3600);
    // An untrusted peer's header changes nothing.
    let direct = client_from("127.0.0.2");
    for i in 0..3 {
        assert_eq!(get(&direct, &format!("192.0.2.{i}")).status, 200);
    }
    get(&direct, "192.0.2.200").assert_throttled(3600);
}
