//! The production topology (`spinmesh_e2e::cluster`): two hosts behind nginx, two
//! runners on one PostgreSQL job store. What a user relies on when one of the pieces
//! fails while the others keep serving.

use serde_json::json;
use spinmesh_e2e::cluster::Cluster;
use spinmesh_e2e::{Api, client, concurrently, status_counts};

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
