//! The production topology (`spinmesh_e2e::cluster`): two hosts behind nginx, two
//! runners on one PostgreSQL job store. What a user of the app relies on when one of the
//! pieces fails while the others keep serving; the converter's side is
//! `cluster_converter.rs`.

use std::time::{Duration, Instant};

use serde_json::json;
use spinmesh_e2e::cluster::Cluster;
use spinmesh_e2e::{Api, Reply, client, concurrently, send, status_counts};

fn api(cluster: &Cluster) -> Api {
    Api::at(&cluster.url, cluster.secrets(), client())
}

/// Each host directly, bypassing the balancer.
fn host_api(cluster: &Cluster, index: usize) -> Api {
    Api::at(&cluster.host(index).url, cluster.secrets(), client())
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn both_hosts_serve_one_app_behind_the_balancer() {
    let cluster = Cluster::builder().start();
    let api = api(&cluster);
    let alice = api.user("alice");
    // An account made through the balancer signs in on either host, and a token
    // issued by one host is accepted by the other.
    for index in 0..2 {
        let host = host_api(&cluster, index);
        let token = host.token("alice", spinmesh_e2e::PASSWORD);
        host.validate(&alice.token).ok();
        host_api(&cluster, 1 - index).validate(&token).ok();
    }
    let health = api.http.get(cluster.url("/health")).send().unwrap();
    assert_eq!(health.status(), 200, "{:?}", health.text());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_killed_host_is_skipped_and_its_restart_rejoins() {
    let mut cluster = Cluster::builder().start();
    let api = api(&cluster);
    let token = api.user("bob").token;
    cluster.host_kill(0);
    // The balancer moves every request to the surviving host: none fails.
    let statuses = concurrently(40, |_| api.validate(&token).status);
    assert_eq!(status_counts(&statuses), [(200, 40)].into(), "{statuses:?}");
    cluster.host_restart(0);
    host_api(&cluster, 0).validate(&token).ok();
    // Writes work through the balancer too, whichever host takes them.
    let product = api.send_json(
        reqwest::Method::POST,
        "/api/products",
        &api.service(),
        json!({"name": "lamp", "price": "12.50", "category": "home"}),
    );
    assert_eq!(product.status, 201, "{}", product.body);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_per_user_limit_holds_exactly_across_both_hosts() {
    let cluster = Cluster::builder()
        .variable("rate_limit_per_user", "10")
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_window_secs", "3600")
        .start();
    let api = api(&cluster);
    let token = api.user("dana").token;
    // Sent alternately to each host directly, and at once: the counter is shared and
    // atomic, so exactly the limit gets through.
    let hosts = [host_api(&cluster, 0), host_api(&cluster, 1)];
    let statuses = concurrently(30, |i| {
        let reply = hosts[i % 2].get("/api/orders", &token);
        if reply.status != 200 {
            reply.assert_throttled(3600);
        }
        reply.status
    });
    assert_eq!(
        status_counts(&statuses),
        [(200, 10), (429, 20)].into(),
        "{statuses:?}"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_logout_or_a_reused_refresh_token_on_one_host_holds_on_the_other() {
    let cluster = Cluster::builder().start();
    let (first, second) = (host_api(&cluster, 0), host_api(&cluster, 1));
    first.register("erin", "erin@example.com");
    let session = first.login("erin", spinmesh_e2e::PASSWORD).ok();
    let token = session["token"].as_str().unwrap().to_owned();
    // Verified (and cached as verified) on the second host before the logout.
    second.validate(&token).ok();
    first.logout(&token).ok();
    second.validate(&token).assert_error(401, "token_invalid");

    let refresh = first.login("erin", spinmesh_e2e::PASSWORD).ok()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = first.refresh(&refresh).ok()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The old one replayed on the other host: reuse, so the whole family is revoked.
    second
        .refresh(&refresh)
        .assert_error(401, "refresh_token_invalid");
    first
        .refresh(&rotated)
        .assert_error(401, "refresh_token_invalid");
}

/// A new product with `stock` units, created by `admin`; its id.
fn product_with_stock(api: &Api, admin: &str, stock: u64) -> serde_json::Value {
    let product = api.send_json(
        reqwest::Method::POST,
        "/api/products",
        admin,
        json!({ "name": "Limited", "price": "5.00", "category": "Drops", "stock": stock }),
    );
    assert_eq!(product.status, 201, "{}", product.body);
    product.body["id"].clone()
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn concurrent_orders_over_both_hosts_never_oversell() {
    let cluster = Cluster::builder().start();
    let api = api(&cluster);
    let admin = api.admin();
    let id = product_with_stock(&api, &admin, 10);
    let buyers: Vec<String> = (0..3)
        .map(|i| api.user(&format!("buyer{i}")).token)
        .collect();
    let hosts = [host_api(&cluster, 0), host_api(&cluster, 1)];
    let statuses = concurrently(30, |i| {
        let reply = send(
            hosts[i % 2]
                .request(reqwest::Method::POST, "/api/orders", Some(&buyers[i % 3]))
                .json(&json!({ "product_id": id, "quantity": 1 })),
        );
        if reply.status != 201 {
            reply.assert_error(409, "insufficient_stock");
        }
        reply.status
    });
    assert_eq!(status_counts(&statuses), [(201, 10), (409, 20)].into());
    let stock = api.get(&format!("/api/products/{id}"), &admin).ok()["stock"].clone();
    assert_eq!(stock, 0);
}

/// Where host 0 is when it is killed in the middle of an order.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Claimed, waiting for products to reserve: nothing is reserved.
    Reserving,
    /// Reserved, waiting to confirm: the stock is taken, the order still pending.
    Confirming,
}

/// Holds `db`'s write lock until dropped; the hosts' writers wait for it (5 s at most).
fn write_lock(db: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

/// Polls `query` (one integer) on `db` until it returns a row.
fn wait_for_row(db: &std::path::Path, query: &str, key: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        if let Ok(value) = conn.query_row(query, [key], |row| row.get(0)) {
            return value;
        }
        assert!(Instant::now() < deadline, "no row for {key}: {query}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn place_order(api: &Api, token: &str, key: &str, order: &serde_json::Value) -> Reply {
    send(
        api.request(reqwest::Method::POST, "/api/orders", Some(token))
            .header("idempotency-key", key)
            .json(order),
    )
}

/// Sends `order` with `key` to host 0 and kills host 0 at `stage`, then starts it again.
/// On the way, a retry through host 1 while host 0 still holds the claim is told to wait.
/// Returns the id of the order left pending.
fn order_left_pending(
    cluster: &mut Cluster,
    token: &str,
    key: &str,
    order: &serde_json::Value,
    stage: Stage,
) -> i64 {
    let state = cluster.host(0).state_dir();
    let (catalog, orders) = (state.join("catalog.db"), state.join("orders.db"));
    // In an `Option` so that only the confirming stage lets it go before the kill (a
    // closure that dropped it would take it, and so release it, even when not called).
    let mut products_wait = Some(write_lock(&catalog));
    let host0 = host_api(cluster, 0);
    let placing = std::thread::scope(|scope| {
        let request = scope.spawn(|| {
            host0
                .request(reqwest::Method::POST, "/api/orders", Some(token))
                .header("idempotency-key", key)
                .json(order)
                .send()
        });
        let id = wait_for_row(
            &orders,
            "SELECT id FROM orders WHERE idempotency_key = ?1 AND status = 'pending'",
            key,
        );
        place_order(&host_api(cluster, 1), token, key, order)
            .assert_error(409, "idempotency_in_progress");
        let confirm_wait = (stage == Stage::Confirming).then(|| {
            let lock = write_lock(&orders);
            products_wait = None;
            wait_for_row(
                &catalog,
                "SELECT 1 FROM reservations WHERE reference = ?1",
                &format!("order-{id}"),
            );
            lock
        });
        // `products_wait` still held at Reserving; both locks go with the host.
        cluster.host_kill(0);
        drop(confirm_wait);
        drop(products_wait.take());
        (id, request.join().unwrap())
    });
    let (id, answer) = placing;
    assert!(answer.is_err(), "the killed host answered: {answer:?}");
    cluster.host_restart(0);
    id
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn an_order_whose_host_died_is_finished_by_a_retry_or_released_and_stock_adds_up() {
    let mut cluster = Cluster::builder()
        .variable("order_claim_timeout_secs", "3")
        .start();
    let api = api(&cluster);
    let admin = api.admin();
    let product_id = product_with_stock(&api, &admin, 10);
    let alice = api.user("alice").token;
    let order = |quantity: u64| json!({ "product_id": product_id, "quantity": quantity });

    // Retried once the dead request's claim is stale: finished as the same order, its
    // stock taken once whether or not the dead request had reserved it.
    for (key, quantity, stage) in [
        ("before-reserving", 2, Stage::Reserving),
        ("before-confirming", 3, Stage::Confirming),
    ] {
        let id = order_left_pending(&mut cluster, &alice, key, &order(quantity), stage);
        let deadline = Instant::now() + Duration::from_secs(20);
        let finished = loop {
            let reply = place_order(&api, &alice, key, &order(quantity));
            if reply.status != 409 {
                break reply;
            }
            reply.assert_error(409, "idempotency_in_progress");
            assert!(Instant::now() < deadline, "the retry never took over {key}");
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(finished.status, 201, "{key}: {}", finished.body);
        assert_eq!(finished.body["id"], id, "{key}");
        assert_eq!(finished.body["quantity"], quantity, "{key}");
        // And a retry after that is a plain replay.
        let replay = place_order(&api, &alice, key, &order(quantity));
        assert_eq!((replay.status, replay.body["id"].clone()), (201, id.into()));
    }

    // Never retried: the next order anyone places gives its stock back.
    let abandoned = order_left_pending(
        &mut cluster,
        &alice,
        "given-up",
        &order(1),
        Stage::Confirming,
    );
    std::thread::sleep(Duration::from_secs(4));
    let bob = api.user("bob").token;
    let placed = place_order(&api, &bob, "bob-1", &order(1));
    assert_eq!(placed.status, 201, "{}", placed.body);

    let stock = api.get(&format!("/api/products/{product_id}"), &admin).ok()["stock"].clone();
    assert_eq!(
        stock,
        10 - 2 - 3 - 1,
        "the abandoned order's unit came back"
    );
    let catalog =
        rusqlite::Connection::open(cluster.host(0).state_dir().join("catalog.db")).unwrap();
    let left: i64 = catalog
        .query_row(
            "SELECT count(*) FROM reservations WHERE reference = ?1",
            [format!("order-{abandoned}")],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the abandoned order's reservation is gone");
    let pending: i64 = rusqlite::Connection::open(cluster.host(0).state_dir().join("orders.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM orders WHERE status = 'pending'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
    let listed = api.get("/api/orders", &admin).ok();
    let quantities: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|order| order["quantity"].clone())
        .collect();
    assert_eq!(quantities, [2, 3, 1], "{listed}");
}
