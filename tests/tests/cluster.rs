//! The production topology (`spinmesh_e2e::cluster`): two hosts behind nginx, two
//! runners on one PostgreSQL job store. What a user relies on when one of the pieces
//! fails while the others keep serving.

use serde_json::json;
use spinmesh_e2e::cluster::Cluster;
use spinmesh_e2e::{Api, client, concurrently, send, status_counts};

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

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn concurrent_orders_over_both_hosts_never_oversell() {
    let cluster = Cluster::builder().start();
    let api = api(&cluster);
    let admin = api.admin();
    let product = api.send_json(
        reqwest::Method::POST,
        "/api/products",
        &admin,
        json!({ "name": "Limited", "price": "5.00", "category": "Drops", "stock": 10 }),
    );
    assert_eq!(product.status, 201, "{}", product.body);
    let id = product.body["id"].clone();
    let buyers: Vec<String> = (0..3).map(|i| api.user(&format!("buyer{i}")).token).collect();
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
