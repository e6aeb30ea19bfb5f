//! The production topology (`spinmesh_e2e::cluster`): two hosts behind nginx, two
//! runners on one PostgreSQL job store. What a user relies on when one of the pieces
//! fails while the others keep serving.

use std::time::{Duration, Instant};

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

/// An hour of 8 kHz mono AAC at 8 kbit/s: small to upload, long enough to convert that
/// a runner can be killed in the middle of it.
fn long_clip() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=8000:duration=3600")
        .args(["-ac", "1", "-c:a", "aac", "-b:a", "8k"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed");
    assert!(status.success());
    std::fs::read(path).unwrap()
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_runner_killed_mid_conversion_hands_the_job_to_the_other() {
    let mut cluster = Cluster::builder()
        .runner_env("RUNNER_LEASE_TTL", "3s")
        .start();
    let api = api(&cluster);
    let token = api.user("fay").token;
    const BOUNDARY: &str = "cluster-test-boundary";
    let body = spinmesh_e2e::multipart_body(BOUNDARY, &[("file", Some("long.mp4"), &long_clip())]);
    let uploaded = send(
        api.request(reqwest::Method::POST, "/api/upload", Some(&token))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body),
    );
    assert_eq!(uploaded.status, 202, "{}", uploaded.body);
    let id = uploaded.str("job_id").to_owned();
    let path = format!("/api/jobs/{id}");
    let deadline = Instant::now() + Duration::from_secs(180);
    let job = |api: &Api| api.get(&path, &token).ok();

    // Whichever runner converts it is killed while it does.
    let holder = loop {
        assert!(
            Instant::now() < deadline,
            "the job never started converting"
        );
        if job(&api)["status"] == "running"
            && let Some(index) = (0..2).find(|&index| {
                let log = cluster.runner(index).log();
                log.lines()
                    .any(|line| line.contains(&id) && line.contains("conversion started"))
            })
        {
            break index;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    cluster.runner(holder).kill();
    let finished = loop {
        let state = job(&api);
        if state["status"] == "completed" || state["status"] == "failed" {
            break state;
        }
        assert!(Instant::now() < deadline, "the job never finished: {state}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(finished["status"], "completed", "{finished}");
    let other = cluster.runner(1 - holder).log();
    assert!(
        other
            .lines()
            .any(|line| line.contains(&id) && line.contains("conversion started")),
        "the other runner never took the job over:\n{other}"
    );

    // Its MP3 comes from the bucket through either host, whole or in part.
    let download = format!("/api/jobs/{id}/download");
    let whole = api
        .http
        .get(api.url(&download))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/mpeg");
    let whole = whole.bytes().unwrap();
    assert!(whole.len() > 100_000, "{} bytes", whole.len());
    let part = api
        .http
        .get(api.url(&download))
        .bearer_auth(&token)
        .header("range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap(), whole.slice(100..200));
}
