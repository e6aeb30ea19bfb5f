//! Key-value conformance on both backends: `wasi:keyvalue` (store, atomics,
//! batch) and Spin's key-value, driven through the fixture component against
//! a SQLite file and a real Redis server (Debian's `redis-server`, one
//! throwaway instance per test). Counters and compare-and-swap are checked
//! across two host processes sharing one store.
//!
//! They run on the embedded host even under `SPINMESH_ENGINE=spin`: where
//! Spin's own stores stray from the WIT (`get-many` leaving out absent keys, a
//! swap on an absent key overwriting a newer value, increment on a
//! non-counter panicking in its SQLite store) the host follows the WIT, and that is checked here.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spinmesh_e2e::services::redis::Redis;
use spinmesh_e2e::{App, AppBuilder, Engine, client, concurrently, wasm_artifact};

fn host_app(dir: &Path) -> AppBuilder {
    App::with_manifest(manifest(dir)).engine(Engine::Host)
}

/// The fixture as `granted` (the `default` and `shared` stores) and `bare` (none).
fn manifest(dir: &Path) -> PathBuf {
    let fixture = wasm_artifact("conformance_fixture.wasm");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "keyvalue"

[[trigger.http]]
route = "/granted/..."
component = "granted"
[[trigger.http]]
route = "/bare/..."
component = "bare"

[component.granted]
source = "{fixture}"
key_value_stores = ["default", "shared", "alias"]
[component.bare]
source = "{fixture}"
"#,
        fixture = fixture.display()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Backend {
    Sqlite,
    Redis,
}

/// `default` and `shared` are separate stores; `alias` is configured exactly
/// like `default` (same file, or same server and database).
fn sqlite_config(shared_file: &Path) -> String {
    let shared = shared_file.display();
    format!(
        r#"[key_value_store.default]
type = "spin"
path = ".spin/kv.db"
[key_value_store.alias]
type = "spin"
path = ".spin/kv.db"
[key_value_store.shared]
type = "spin"
path = "{shared}"
"#
    )
}

fn redis_config(redis: &Redis) -> String {
    let url = redis.url();
    format!(
        r#"[key_value_store.default]
type = "redis"
url = "{url}/0"
[key_value_store.alias]
type = "redis"
url = "{url}/0"
[key_value_store.shared]
type = "redis"
url = "{url}/1"
"#
    )
}

/// One backend with its server (for Redis) and the app's directory.
struct Setup {
    redis: Option<Redis>,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(backend: Backend) -> Setup {
        Setup {
            redis: (backend == Backend::Redis).then(Redis::start),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn runtime_config(&self) -> String {
        match &self.redis {
            Some(redis) => redis_config(redis),
            None => sqlite_config(&self.dir.path().join("shared.db")),
        }
    }

    fn start(&self) -> App {
        host_app(self.dir.path())
            .runtime_config(&self.runtime_config())
            .start()
    }
}

/// Requests go to a base URL rather than an `App`, so that threads can share it.
fn call(base: &str, method: &str, path: &str, body: &str) -> Value {
    let url = format!("{base}{path}");
    let request = match method {
        "GET" => client().get(url),
        _ => client().post(url).body(body.to_string()),
    };
    let response = request.send().unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().unwrap()
}

fn wasi(base: &str, op_and_query: &str, body: &str) -> Value {
    call(
        base,
        "POST",
        &format!("/granted/wasi-kv/{op_and_query}"),
        body,
    )
}

fn ok(value: Value) -> Value {
    json!({ "ok": value })
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

fn every_operation(backend: Backend) {
    let setup = Setup::new(backend);
    let app = setup.start();

    // store
    assert_eq!(wasi(&app.url, "default/get?key=a", ""), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/exists?key=a", ""), ok(json!(false)));
    assert_eq!(wasi(&app.url, "default/set?key=a", "one"), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/set?key=b", "two"), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/set?key=a", "uno"), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/get?key=a", ""), ok(json!("uno")));
    assert_eq!(wasi(&app.url, "default/exists?key=a", ""), ok(json!(true)));
    assert_eq!(
        wasi(&app.url, "default/list", ""),
        ok(json!({ "keys": ["a", "b"], "cursor": null }))
    );
    // Spin hands out no cursor and refuses one.
    assert_eq!(
        wasi(&app.url, "default/list?cursor=a", ""),
        error("other: list_keys: cursor not supported")
    );
    assert_eq!(wasi(&app.url, "default/delete?key=b", ""), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/delete?key=b", ""), ok(json!(null)));
    assert_eq!(wasi(&app.url, "default/exists?key=b", ""), ok(json!(false)));

    // The same label through Spin's key-value holds the same data.
    assert_eq!(
        call(&app.url, "GET", "/granted/kv/default/get?key=a", ""),
        ok(json!("uno"))
    );
    call(&app.url, "POST", "/granted/kv/default/set?key=c", "tres");
    assert_eq!(wasi(&app.url, "default/get?key=c", ""), ok(json!("tres")));
    // Labels configured alike share their data, as in Spin (no per-label
    // prefix on Redis; one table keyed by label in SQLite, so there they don't).
    let alias = wasi(&app.url, "alias/get?key=a", "");
    match backend {
        Backend::Redis => assert_eq!(alias, ok(json!("uno"))),
        Backend::Sqlite => assert_eq!(alias, ok(json!(null))),
    }
    // A separately configured label is a separate store.
    assert_eq!(wasi(&app.url, "shared/get?key=a", ""), ok(json!(null)));

    // batch
    assert_eq!(
        wasi(&app.url, "default/set-many", r#"{"x": "1", "y": "2"}"#),
        ok(json!(null))
    );
    assert_eq!(
        wasi(&app.url, "default/get-many", r#"["y", "missing", "x"]"#),
        ok(json!([["y", "2"], ["missing", null], ["x", "1"]]))
    );
    assert_eq!(wasi(&app.url, "default/get-many", "[]"), ok(json!([])));
    assert_eq!(
        wasi(&app.url, "default/delete-many", r#"["x", "missing", "c"]"#),
        ok(json!(null))
    );
    assert_eq!(
        wasi(&app.url, "default/list", ""),
        ok(json!({ "keys": ["a", "y"], "cursor": null }))
    );

    // atomics: increment
    assert_eq!(
        wasi(&app.url, "default/increment?key=n&delta=5", ""),
        ok(json!(5))
    );
    assert_eq!(
        wasi(&app.url, "default/increment?key=n&delta=-7", ""),
        ok(json!(-2))
    );
    // Each backend stores the number as Spin's does.
    let stored = wasi(&app.url, "default/get-bytes?key=n", "");
    match backend {
        Backend::Sqlite => assert_eq!(stored, ok(json!((-2i64).to_le_bytes()))),
        Backend::Redis => assert_eq!(stored, ok(json!(b"-2"))),
    }
    assert_eq!(
        wasi(&app.url, "default/increment?key=a&delta=1", ""),
        error("other: the value is not a counter written by increment")
    );
    let max = match backend {
        Backend::Sqlite => i64::MAX.to_le_bytes().to_vec(),
        Backend::Redis => i64::MAX.to_string().into_bytes(),
    };
    let response = client()
        .post(app.url("/granted/wasi-kv/default/set?key=max"))
        .body(max)
        .send()
        .unwrap();
    assert_eq!(response.json::<Value>().unwrap(), ok(json!(null)));
    assert_eq!(
        wasi(&app.url, "default/increment?key=max&delta=1", ""),
        error("other: increment would overflow a 64-bit integer")
    );

    // atomics: compare-and-swap, on an absent key and on a present one. A
    // write between `current` and `swap` makes the swap fail; the handle it
    // hands back has seen that write, and its swap succeeds.
    for (key, seen) in [("fresh", json!(null)), ("a", json!("uno"))] {
        assert_eq!(
            wasi(&app.url, &format!("default/cas-conflict?key={key}"), ""),
            ok(json!({
                "seen": seen,
                "first_swap": "conflict",
                "retry_seen": "intruder",
                "final": "mine",
            })),
            "{key}"
        );
    }
    assert_eq!(
        wasi(&app.url, "default/cas-add?key=cas&delta=3", ""),
        ok(json!({ "value": 3, "conflicts": 0 }))
    );
    assert_eq!(wasi(&app.url, "default/get?key=cas", ""), ok(json!("3")));

    // Grants: the same store is refused to a component that does not list it.
    for op in ["get?key=a", "increment?key=n", "get-many", "cas-add?key=n"] {
        assert_eq!(
            call(
                &app.url,
                "POST",
                &format!("/bare/wasi-kv/default/{op}"),
                "[]"
            ),
            error("access-denied"),
            "{op}"
        );
    }
    assert_eq!(
        wasi(&app.url, "undefined/get?key=a", ""),
        error("access-denied")
    );
}

#[test]
fn every_operation_on_sqlite() {
    every_operation(Backend::Sqlite);
}

#[test]
fn every_operation_on_redis() {
    every_operation(Backend::Redis);
}

/// Many requests at once, spread over two hosts sharing the `shared` store:
/// increments hand out every total exactly once, and compare-and-swap
/// additions lose no update.
fn exact_across_two_hosts(backend: Backend) {
    let setup = Setup::new(backend);
    let hosts = [setup.start(), setup.start()];
    let urls = hosts.each_ref().map(|host| host.url.clone());
    const WORKERS: usize = 8;
    const PER_WORKER: usize = 25;
    let totals: Vec<i64> = concurrently(WORKERS, |worker| {
        (0..PER_WORKER)
            .map(|i| {
                let host = &urls[(worker + i) % 2];
                wasi(host, "shared/increment?key=hits&delta=1", "")["ok"]
                    .as_i64()
                    .expect("an increment result")
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let total = (WORKERS * PER_WORKER) as i64;
    assert_eq!(
        totals.iter().copied().collect::<BTreeSet<_>>(),
        (1..=total).collect::<BTreeSet<_>>(),
        "every increment saw a distinct total"
    );
    for host in &urls {
        assert_eq!(
            wasi(host, "shared/increment?key=hits&delta=0", ""),
            ok(json!(total))
        );
    }

    const CAS_PER_WORKER: usize = 8;
    concurrently(WORKERS, |worker| {
        for i in 0..CAS_PER_WORKER {
            let host = &urls[(worker + i) % 2];
            let result = wasi(host, "shared/cas-add?key=sum&delta=1", "");
            assert!(result["ok"]["value"].is_i64(), "{result}");
        }
    });
    assert_eq!(
        wasi(&urls[0], "shared/get?key=sum", ""),
        ok(json!((WORKERS * CAS_PER_WORKER).to_string()))
    );
}

#[test]
fn exact_across_two_hosts_on_sqlite() {
    exact_across_two_hosts(Backend::Sqlite);
}

#[test]
fn exact_across_two_hosts_on_redis() {
    exact_across_two_hosts(Backend::Redis);
}

/// How long a guest may wait on a store that is gone: the host's own bound
/// is 5 s per operation; this leaves room for a busy machine.
const OUTAGE_BOUND: Duration = Duration::from_secs(20);

#[test]
fn redis_down_is_an_error_for_the_guest_and_the_store_comes_back() {
    let setup = Setup::new(Backend::Redis);
    let mut app = setup.start();
    assert_eq!(wasi(&app.url, "default/set?key=k", "v"), ok(json!(null)));

    let mut redis = setup.redis.expect("a redis server");
    redis.stop();
    for op in ["get?key=k", "increment?key=n", "cas-add?key=n", "list"] {
        let started = Instant::now();
        let result = wasi(&app.url, &format!("default/{op}"), "");
        assert!(
            started.elapsed() < OUTAGE_BOUND,
            "{op} took {:?}",
            started.elapsed()
        );
        let message = result["error"].as_str().unwrap_or_default();
        assert!(message.starts_with("other: redis: "), "{op}: {result}");
    }
    // Spin's key-value on the same store fails the same way.
    let result = call(&app.url, "GET", "/granted/kv/default/get?key=k", "");
    assert!(
        result["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("other: redis: "),
        "{result}"
    );
    assert!(app.host_is_running());

    // Started again (empty: it keeps nothing), the store works without a host restart.
    redis.restart();
    let deadline = Instant::now() + OUTAGE_BOUND;
    while wasi(&app.url, "default/set?key=k", "again") != ok(json!(null)) {
        assert!(Instant::now() < deadline, "the store did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(wasi(&app.url, "default/get?key=k", ""), ok(json!("again")));
}

#[test]
fn a_redis_that_never_answers_times_out() {
    // Accepts connections and never replies.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().flatten().collect();
        drop(held);
    });
    let dir = tempfile::tempdir().unwrap();
    let app = host_app(dir.path())
        .runtime_config(&format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n\
             [key_value_store.alias]\ntype = \"spin\"\npath = \"a.db\"\n\
             [key_value_store.shared]\ntype = \"spin\"\npath = \"s.db\"\n"
        ))
        .start();
    let started = Instant::now();
    let result = wasi(&app.url, "default/get?key=k", "");
    assert!(
        started.elapsed() < OUTAGE_BOUND,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(result, error("other: redis: timed out"));
    // Stores on other backends are unaffected.
    assert_eq!(wasi(&app.url, "shared/set?key=k", "v"), ok(json!(null)));
}

#[test]
fn redis_errors_never_show_the_password() {
    let mut redis = Redis::start_with(Some("right-horse-battery"));
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(&redis);
    // Wrong password for `default`; the right one for `shared`.
    let config = config.replacen("right-horse-battery", "wrong-staple-secret", 2);
    let mut app = host_app(dir.path()).runtime_config(&config).start();
    let result = wasi(&app.url, "default/get?key=k", "");
    let message = result["error"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with("other: redis: "), "{result}");
    assert!(!message.contains("wrong-staple-secret"), "{message}");
    assert_eq!(wasi(&app.url, "shared/set?key=k", "v"), ok(json!(null)));
    redis.stop();
    let result = wasi(&app.url, "shared/get?key=k", "");
    assert!(
        !result.to_string().contains("right-horse-battery"),
        "{result}"
    );
    let log = app.log();
    assert!(
        !log.contains("wrong-staple-secret") && !log.contains("right-horse-battery"),
        "{log}"
    );
}
