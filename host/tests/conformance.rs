//! Host conformance: the embedded host runs a fixture component that exposes
//! each Spin interface over HTTP, and these tests check the host behaves as
//! Spin does — interfaces, grants, routing, headers, limits, start-up errors.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use spinmesh_e2e::{
    App, AppBuilder, Engine, client, engine, log_containing, wait_for, wasm_artifact,
};

/// A manifest using the fixture under several component ids with different grants.
fn manifest(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = wasm_artifact("conformance_fixture.wasm");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "conformance"

[variables]
greeting = {{ default = "hello" }}
region = {{ default = "eu" }}
echo_port = {{ default = "1" }}

[[trigger.http]]
route = "/granted/..."
component = "granted"
[[trigger.http]]
route = "/bare/..."
component = "bare"
[[trigger.http]]
route = "/exact/path"
component = "exact"
[[trigger.http]]
route = "/exact/:param"
component = "param"
[[trigger.http]]
route = "/exact/..."
component = "wild"
[[trigger.http]]
route = {{ private = true }}
component = "hidden"
[[trigger.http]]
route = "/dup"
component = "bare"
[[trigger.http]]
route = "/dup"
component = "exact"

[component.granted]
source = "{fixture}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["http://127.0.0.1:{{{{ echo_port }}}}", "http://hidden.spin.internal"]
environment = {{ FIXTURE_MODE = "granted" }}
[component.granted.variables]
message = "{{{{ greeting }}}}, {{{{ region }}}}!"
literal = "plain"

[component.bare]
source = "{fixture}"
[component.exact]
source = "{fixture}"
[component.param]
source = "{fixture}"
[component.wild]
source = "{fixture}"
[component.hidden]
source = "{fixture}"
{extra}"#,
        fixture = fixture.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn app() -> (tempfile::TempDir, AppBuilder) {
    let (dir, path) = manifest("");
    (dir, App::with_manifest(path))
}

/// The app on the embedded host with a request deadline: the host's own limit, as
/// `spin up` has none.
fn app_with_request_timeout(secs: u32) -> (tempfile::TempDir, App) {
    let (dir, builder) = app();
    let app = builder
        .engine(Engine::Host)
        .arg("--request-timeout")
        .arg(&secs.to_string())
        .start();
    (dir, app)
}

fn get(app: &App, path: &str) -> (u16, Value) {
    let response = client().get(app.url(path)).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn post(app: &App, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
    let response = client().post(app.url(path)).body(body).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn key_value_round_trip_and_grants() {
    let (_dir, builder) = app();
    let app = builder.start();
    assert_eq!(
        post(&app, "/granted/kv/default/set?key=b", "2").1,
        json!({ "ok": null })
    );
    assert_eq!(
        post(&app, "/granted/kv/default/set?key=a", "1").1,
        json!({ "ok": null })
    );
    assert_eq!(
        post(&app, "/granted/kv/default/set?key=a", "one").1,
        json!({ "ok": null })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/get?key=a").1,
        json!({ "ok": "one" })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/get?key=zzz").1,
        json!({ "ok": null })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/exists?key=b").1,
        json!({ "ok": true })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/keys").1,
        json!({ "ok": ["a", "b"] })
    );
    assert_eq!(
        post(&app, "/granted/kv/default/delete?key=b", "").1,
        json!({ "ok": null })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/exists?key=b").1,
        json!({ "ok": false })
    );
    assert_eq!(
        get(&app, "/granted/kv/default/keys").1,
        json!({ "ok": ["a"] })
    );

    // Not listed in the component's key_value_stores: Spin's access-denied.
    assert_eq!(
        get(&app, "/bare/kv/default/get?key=a").1,
        json!({ "error": "access-denied" })
    );
    assert_eq!(
        get(&app, "/granted/kv/other/get?key=a").1,
        json!({ "error": "access-denied" })
    );
}

#[test]
fn sqlite_value_types_parameters_and_transactions() {
    let (_dir, builder) = app();
    let app = builder.start();
    let statements = json!([
        { "sql": "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)" },
        { "sql": "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
          "params": [-9007199254740993i64, 2.5, "it's; DROP TABLE t;--", { "blob": [0, 255, 7] }, null] },
        { "sql": "SELECT i, r, s, b, n FROM t WHERE s = ?1", "params": ["it's; DROP TABLE t;--"] },
        { "sql": "BEGIN" },
        { "sql": "INSERT INTO t (i) VALUES (?1)", "params": [2] },
        { "sql": "ROLLBACK" },
        { "sql": "SELECT count(*) AS c FROM t" },
        { "sql": "SELEC nonsense" },
    ]);
    let (status, results) = post(&app, "/granted/sqlite/default", statements.to_string());
    assert_eq!(status, 200);
    assert_eq!(results[1], json!({ "columns": [], "rows": [] }));
    assert_eq!(
        results[2],
        json!({
            "columns": ["i", "r", "s", "b", "n"],
            "rows": [[
                { "integer": -9007199254740993i64 }, { "real": 2.5 }, { "text": "it's; DROP TABLE t;--" },
                { "blob": [0, 255, 7] }, { "null": null }
            ]],
        })
    );
    assert_eq!(
        results[6],
        json!({ "columns": ["c"], "rows": [[{ "integer": 1 }]] }),
        "rolled back"
    );
    assert!(
        results[7]["error"].as_str().unwrap().starts_with("io:"),
        "{}",
        results[7]
    );

    let (_, denied) = post(&app, "/bare/sqlite/default", "[]");
    assert_eq!(denied, json!({ "error": "access-denied" }));
}

/// Statements too long to finish in place (on the async worker) are interrupted there and
/// run again in full on the blocking pool: the guest sees each statement's effect and
/// answer exactly once.
#[test]
fn long_statements_take_effect_once_and_answer_in_full() {
    let (_dir, builder) = app();
    let app = builder.start();
    let count_to = |n: u32| {
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {n}) SELECT x FROM n"
        )
    };
    let statements = json!([
        { "sql": "CREATE TABLE big (x INTEGER)" },
        { "sql": format!("INSERT INTO big {}", count_to(200_000)) },
        { "sql": "SELECT count(*), sum(x) FROM big" },
        { "sql": "BEGIN IMMEDIATE" },
        { "sql": format!("INSERT INTO big {}", count_to(100_000)) },
        { "sql": "SELECT count(*) FROM big WHERE x % 2 = 0" },
        { "sql": "ROLLBACK" },
        { "sql": "SELECT count(*) FROM big" },
    ]);
    let (status, results) = post(&app, "/granted/sqlite/default", statements.to_string());
    assert_eq!(status, 200);
    assert_eq!(
        results[2]["rows"][0],
        json!([{ "integer": 200_000 }, { "integer": 20_000_100_000i64 }])
    );
    assert_eq!(results[5]["rows"][0], json!([{ "integer": 150_000 }]));
    assert_eq!(
        results[7]["rows"][0],
        json!([{ "integer": 200_000 }]),
        "rolled back"
    );
}

/// Writers queue for the file (the host's write turn, SQLite's lock on Spin): many
/// concurrent write transactions all commit, none answers "database is locked", and a
/// transaction its instance abandoned is rolled back and frees the file for the next.
#[test]
fn concurrent_write_transactions_all_commit_and_an_abandoned_one_frees_the_file() {
    let (_dir, builder) = app();
    let app = builder.start();
    let sqlite = "/granted/sqlite/default";
    let (status, _) = post(
        &app,
        sqlite,
        json!([{ "sql": "CREATE TABLE w (n INTEGER)" }]).to_string(),
    );
    assert_eq!(status, 200);
    let abandoned = json!([{ "sql": "BEGIN IMMEDIATE" }, { "sql": "INSERT INTO w VALUES (-1)" }]);
    let (_, results) = post(&app, sqlite, abandoned.to_string());
    assert_eq!(results[1], json!({ "columns": [], "rows": [] }));

    let transaction = json!([
        { "sql": "BEGIN IMMEDIATE" },
        { "sql": "INSERT INTO w SELECT coalesce(max(n), 0) + 1 FROM w" },
        { "sql": "COMMIT" },
    ])
    .to_string();
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (app.url(sqlite), transaction.clone());
            std::thread::spawn(move || {
                client()
                    .post(url)
                    .body(body)
                    .send()
                    .unwrap()
                    .json::<Value>()
            })
        })
        .collect();
    for writer in writers {
        let results = writer.join().unwrap().unwrap();
        for result in results.as_array().unwrap() {
            assert!(result.get("error").is_none(), "{results}");
        }
    }
    let count = json!([{ "sql": "SELECT count(*), min(n), max(n) FROM w" }]);
    let (_, results) = post(&app, sqlite, count.to_string());
    assert_eq!(
        results[0]["rows"][0],
        json!([{ "integer": 16 }, { "integer": 1 }, { "integer": 16 }]),
        "every transaction committed once, each seeing the one before; the abandoned one is gone"
    );
}

#[test]
fn variables_resolve_with_spin_precedence() {
    let (_dir, builder) = app();
    let app = builder
        .env("SPIN_VARIABLE_REGION", "us")
        .env("SPIN_VARIABLE_GREETING", "hi")
        .variable("greeting", "hey")
        .start();
    // --variable beats SPIN_VARIABLE_*, which beats the default.
    assert_eq!(
        get(&app, "/granted/variables/message").1,
        json!({ "ok": "hey, us!" })
    );
    assert_eq!(
        get(&app, "/granted/variables/literal").1,
        json!({ "ok": "plain" })
    );
    assert_eq!(
        get(&app, "/granted/variables/missing").1,
        json!({ "error": "undefined" })
    );
    assert_eq!(
        get(&app, "/granted/variables/Bad-Name").1,
        json!({ "error": "invalid-name" })
    );
    // Variables are per component: `bare` declares none.
    assert_eq!(
        get(&app, "/bare/variables/message").1,
        json!({ "error": "undefined" })
    );
    assert_eq!(
        get(&app, "/granted/env/FIXTURE_MODE").1,
        json!({ "ok": "granted" })
    );
    assert_eq!(get(&app, "/bare/env/FIXTURE_MODE").1, json!({ "ok": null }));
}

#[test]
fn defaults_apply_without_providers() {
    let (_dir, builder) = app();
    let app = builder.start();
    assert_eq!(
        get(&app, "/granted/variables/message").1,
        json!({ "ok": "hello, eu!" })
    );
}

/// A one-shot HTTP server answering every request with `pong`.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong",
            );
        }
    });
    port
}

#[test]
fn outbound_http_is_limited_to_allowed_hosts() {
    let port = echo_server();
    let (_dir, builder) = app();
    let app = builder.variable("echo_port", &port.to_string()).start();
    let allowed = format!("/granted/outbound?url=http://127.0.0.1:{port}/x");
    assert_eq!(
        get(&app, &allowed).1,
        json!({ "status": 200, "body": "pong" })
    );

    let other_port = format!(
        "/granted/outbound?url=http://127.0.0.1:{}/x",
        port.wrapping_add(1)
    );
    assert!(
        get(&app, &other_port).1["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied")
    );
    let no_grant = format!("/bare/outbound?url=http://127.0.0.1:{port}/x");
    assert!(
        get(&app, &no_grant).1["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied")
    );
}

#[test]
fn service_chaining_reaches_private_components_in_process() {
    let (_dir, builder) = app();
    let app = builder.start();
    let (_, chained) = get(
        &app,
        "/granted/outbound?url=http://hidden.spin.internal/inner/path%3Fq=1",
    );
    assert_eq!(chained["status"], 200, "{chained}");
    let inner: Value = serde_json::from_str(chained["body"].as_str().unwrap()).unwrap();
    let headers = &inner["headers"];
    assert_eq!(headers["spin-path-info"], "/inner/path");
    assert_eq!(headers["spin-matched-route"], "/...");
    assert_eq!(headers["spin-full-url"], "http://localhost/inner/path?q=1");
    assert_eq!(headers["spin-client-addr"], "0.0.0.0:0");

    // Chaining needs its own grant, and the private component has no public route.
    let (_, denied) = get(&app, "/bare/outbound?url=http://hidden.spin.internal/");
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{denied}"
    );
    assert_eq!(
        client().get(app.url("/hidden")).send().unwrap().status(),
        404
    );
    // A Host naming an in-app address is refused from outside. (Spin drops such a
    // request unanswered; the host says why.)
    if engine() == Engine::Spin {
        return;
    }
    let spoofed = client()
        .get(app.url("/granted/headers"))
        .header("host", "hidden.spin.internal")
        .send()
        .unwrap();
    assert_eq!(spoofed.status(), 400);
}

#[test]
fn routes_follow_spin_precedence_and_set_spin_headers() {
    let (_dir, builder) = app();
    let mut app = builder.start();
    let headers_of = |path: &str| get(&app, path).1["headers"].clone();

    let exact = headers_of("/exact/path");
    assert_eq!(exact["spin-matched-route"], "/exact/path");
    let param = headers_of("/exact/other?x=1");
    assert_eq!(param["spin-matched-route"], "/exact/:param");
    assert_eq!(param["spin-path-match-param"], "other");
    assert_eq!(param["spin-path-info"], "");
    let wild = headers_of("/exact/a/b/");
    assert_eq!(wild["spin-matched-route"], "/exact/...");
    assert_eq!(wild["spin-raw-component-route"], "/exact/...");
    assert_eq!(wild["spin-component-route"], "/exact");
    assert_eq!(wild["spin-path-info"], "/a/b/");
    assert_eq!(wild["spin-base-path"], "/");
    let host = app.url.trim_start_matches("http://").to_string();
    assert_eq!(
        param["spin-full-url"],
        format!("http://{host}/exact/other?x=1")
    );
    assert!(
        param["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // Client-sent spin-* headers never reach the component.
    let forged = client()
        .get(app.url("/exact/path"))
        .header("spin-client-addr", "6.6.6.6:1")
        .send()
        .unwrap();
    let forged: Value = forged.json().unwrap();
    assert!(
        forged["headers"]["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // A duplicated route: the later declaration wins, with a warning (in each engine's
    // words).
    let (_, dup) = get(&app, "/dup");
    assert_eq!(dup["headers"]["spin-matched-route"], "/dup");
    let warning = match engine() {
        Engine::Host => "declared twice",
        Engine::Spin => "duplicates and will never be used",
    };
    // Log lines are written off the request path: wait for it.
    wait_for(warning, Duration::from_secs(10), || {
        app.log().contains(warning).then_some(())
    });
    assert_eq!(
        client()
            .get(app.url("/nothing-here"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client()
            .get(app.url("/.well-known/spin/health"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "OK"
    );
}

#[test]
fn trap_gives_500_and_the_host_keeps_serving() {
    let (_dir, builder) = app();
    let mut app = builder.start();
    assert_eq!(
        client().get(app.url("/bare/trap")).send().unwrap().status(),
        500
    );
    assert_eq!(get(&app, "/bare/headers").0, 200);
    assert!(app.host_is_running());
    // The component's output lands in its own log files, as with `spin up`.
    let logs = app.state_dir().join("logs");
    log_containing(&logs.join("bare_stdout.txt"), "about to trap");
    log_containing(&logs.join("bare_stderr.txt"), "deliberate trap");
}

#[test]
fn runaway_component_is_stopped_by_the_timeout() {
    let (_dir, app) = app_with_request_timeout(2);
    let started = std::time::Instant::now();
    // The app was too slow, not broken: 503, and worth retrying.
    let response = client().get(app.url("/bare/spin")).send().unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().unwrap();
    assert_eq!(
        (body["status"].as_str(), body["code"].as_str()),
        (Some("503"), Some("timeout")),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(get(&app, "/bare/headers").0, 200);
}

/// A guest computing for long yields its worker at every epoch tick: with more runaway
/// guests than the host has async workers, other requests are still served while the
/// runaways run (they end only at the request deadline).
#[test]
fn runaway_components_do_not_hold_up_other_requests() {
    let (_dir, app) = app_with_request_timeout(8);
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let runaways: Vec<_> = (0..workers * 2)
        .map(|_| {
            let url = app.url("/bare/spin");
            std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()))
        })
        .collect();
    // Every runaway has reached its guest: the host counts them as running instances.
    let metrics_url = app.admin_url("/metrics").expect("the embedded host");
    wait_for("the runaways to run", Duration::from_secs(10), || {
        let metrics = client().get(&metrics_url).send().ok()?.text().ok()?;
        metrics
            .lines()
            .find(|line| line.starts_with("spinmesh_host_instances{component=\"bare\"}"))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|running| *running >= (workers * 2) as f64)
    });
    for _ in 0..5 {
        assert_eq!(get(&app, "/granted/headers").0, 200);
    }
    assert!(
        runaways.iter().all(|runaway| !runaway.is_finished()),
        "the other requests were answered while the runaways still ran"
    );
    for runaway in runaways {
        assert_eq!(runaway.join().unwrap().unwrap(), 503);
    }
}

#[test]
fn memory_is_capped_per_instance() {
    let (_dir, builder) = app();
    // `spin up`'s flag, which the host takes too.
    let app = builder
        .arg("--max-instance-memory")
        .arg(&(64 << 20).to_string())
        .start();
    let (status, body) = get(&app, "/bare/memory");
    assert_eq!(status, 200);
    let allocated = body["allocated_mib"].as_u64().unwrap();
    assert!(
        allocated < 64,
        "allocated {allocated} MiB past a 64 MiB cap"
    );
}

fn startup_error(extra: &str, edit: impl Fn(String) -> String) -> String {
    let (dir, path) = manifest(extra);
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    // The host's own start-up messages, which say how to mend the app.
    let result = App::with_manifest(path).engine(Engine::Host).try_start();
    drop(dir);
    match result {
        Ok(_) => panic!("the host started with a broken manifest"),
        Err(log) => log,
    }
}

#[test]
fn startup_errors_name_the_problem() {
    let log = startup_error("", |m| {
        m.replacen("conformance_fixture.wasm", "missing.wasm", 1)
    });
    assert!(
        log.contains("missing.wasm") && log.contains("cargo xtask build"),
        "{log}"
    );

    let log = startup_error("", |m| {
        m.replace("[component.bare]", "[component.bare]\nunknown_key = 1")
    });
    assert!(
        log.contains("unknown_key") && log.contains("spin.toml"),
        "{log}"
    );

    let log = startup_error("", |m| {
        m.replace("route = \"/bare/...\"", "route = \"bare\"")
    });
    assert!(log.contains("route"), "{log}");

    let log = startup_error("", |m| {
        m.replace(
            "region = { default = \"eu\" }",
            "region = { required = true }",
        )
    });
    assert!(
        log.contains("region") && log.contains("SPIN_VARIABLE_REGION"),
        "{log}"
    );

    let log = startup_error("", |m| {
        m.replace(
            "key_value_stores = [\"default\"]",
            "key_value_stores = [\"cache\"]",
        )
    });
    assert!(
        log.contains("unknown key_value_stores label \"cache\" for component \"granted\""),
        "{log}"
    );
}
