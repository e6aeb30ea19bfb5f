//! The host under hostile clients, over real sockets against the real host
//! binary: connections that never finish their headers, bodies that trickle
//! in or stop, bodies far over the limit. Each must be bounded and answered
//! (408, 413) while everyone else is still served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use spinmesh_e2e::{App, Engine, client, wait_for, wasm_artifact};

/// Short bounds, so that stalled clients are dealt with quickly here.
const HEADER_READ_TIMEOUT_SECS: u64 = 2;
const BODY_READ_TIMEOUT_SECS: u64 = 3;
/// The limit of the `streamed` component; `buffered` has the default (1 MiB).
const STREAMED_LIMIT: u64 = 4 << 20;
/// Generous: the machine is shared and may be busy.
const ANSWER_BOUND: Duration = Duration::from_secs(5);
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// The conformance fixture twice: `buffered` under the default body limit and
/// `streamed` with a larger one of its own.
fn start() -> (tempfile::TempDir, App) {
    let fixture = wasm_artifact("conformance_fixture.wasm");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "hardening"
[[trigger.http]]
route = "/buffered/..."
component = "buffered"
[[trigger.http]]
route = "/streamed/..."
component = "streamed"
[component.buffered]
source = "{fixture}"
[component.streamed]
source = "{fixture}"
"#,
        fixture = fixture.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    // The host's own defences and flags, whatever engine the suite runs on.
    let app = App::with_manifest(path)
        .engine(Engine::Host)
        .arg("--header-read-timeout")
        .arg(&HEADER_READ_TIMEOUT_SECS.to_string())
        .arg("--body-read-timeout")
        .arg(&BODY_READ_TIMEOUT_SECS.to_string())
        .arg("--component-max-body-bytes")
        .arg(&format!("streamed={STREAMED_LIMIT}"))
        .start();
    (dir, app)
}

fn address(app: &App) -> String {
    app.url.trim_start_matches("http://").to_string()
}

fn connect(address: &str, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Resident memory of a process now, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Everything the server sends until it closes the connection (or `by`
/// passes, which fails the test).
fn read_until_closed(stream: &mut TcpStream, by: Instant) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = by.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the host kept the connection open; got {:?}",
            String::from_utf8_lossy(&received)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            // A reset after the answer still counts as closed.
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return received,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(err) => panic!("reading the answer: {err}"),
        }
    }
}

/// The status and JSON body of the one response in `raw`.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_error(raw: &[u8], status: u16, code: &str) -> String {
    let (got, head, body) = parse_response(raw);
    assert_eq!(got, status, "{head}\n{body}");
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    head
}

#[test]
fn slow_clients_neither_block_others_nor_stay_connected() {
    let (_dir, app) = start();
    let pid = app.host_pid();
    let rss_before = rss_mib(pid);
    let address = address(&app);
    let opened = Instant::now();
    let half_headers: Vec<TcpStream> = (0..300)
        .map(|i| {
            connect(
                &address,
                &format!("GET /buffered/headers HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: "),
            )
        })
        .collect();
    let trickling: Vec<TcpStream> = (0..200)
        .map(|_| {
            connect(
                &address,
                "POST /buffered/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"a\":\"012",
            )
        })
        .collect();

    // While all of them hold on, others are served promptly.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let response = client().get(app.url("/buffered/headers")).send().unwrap();
        assert_eq!(response.status(), 200);
        latencies.push(started.elapsed());
    }
    let health = client()
        .get(app.url("/.well-known/spin/health"))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    let rss_loaded = rss_mib(pid);
    latencies.sort();
    let slowest = *latencies.last().unwrap();
    eprintln!(
        "under 300 half-sent headers + 200 trickling bodies: 20 requests, median {:?}, slowest {slowest:?}; \
         host RSS {rss_before:.1} MiB before, {rss_loaded:.1} MiB under load",
        latencies[latencies.len() / 2]
    );
    assert!(
        slowest < ANSWER_BOUND,
        "a request took {slowest:?} behind slow clients"
    );

    // Then each stalled connection is closed: the trickling ones with a 408.
    let by = opened + CLOSE_BOUND;
    for mut stream in half_headers {
        read_until_closed(&mut stream, by);
    }
    for mut stream in trickling {
        let raw = read_until_closed(&mut stream, by);
        assert_error(&raw, 408, "request_timeout");
    }
    eprintln!(
        "all 500 stalled connections closed after {:?}",
        opened.elapsed()
    );
    assert_eq!(
        client()
            .get(app.url("/buffered/headers"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Sends `head` and then `body_bytes` of body (chunked when `chunked`) from
/// another thread, while this one reads the answer.
fn send_big_body(address: &str, path: &str, body_bytes: usize, chunked: bool) -> Vec<u8> {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {body_bytes}")
    };
    let mut stream = connect(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
        ),
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let piece = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            let result = if chunked {
                writer
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .and_then(|()| writer.write_all(&piece))
                    .and_then(|()| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&piece)
            };
            // The host stops reading once it has refused the body.
            if result.is_err() {
                return;
            }
            sent += piece.len();
        }
        if chunked {
            let _ = writer.write_all(b"0\r\n\r\n");
        }
    });
    let raw = read_until_closed(&mut stream, Instant::now() + CLOSE_BOUND);
    drop(stream);
    sender.join().unwrap();
    raw
}

#[test]
fn big_bodies_get_413_and_memory_stays_bounded() {
    let (_dir, app) = start();
    let pid = app.host_pid();
    let rss_before = rss_mib(pid);
    let fifty_mb = 50_000_000;
    let address = address(&app);
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..24)
            .map(|i| {
                let address = address.as_str();
                scope.spawn(move || {
                    // Declared and chunked, to a route the host reads first and to a streamed one.
                    let path = if i % 4 < 2 {
                        "/buffered/echo"
                    } else {
                        "/streamed/echo"
                    };
                    let raw = send_big_body(address, path, fifty_mb, i % 2 == 1);
                    assert_error(&raw, 413, "payload_too_large");
                    assert!(parse_response(&raw).1.contains("\r\nconnection: close"));
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
    });
    let peak = spinmesh_e2e::peak_rss_mib(pid).unwrap();
    eprintln!(
        "24 concurrent 50 MB bodies: host RSS {rss_before:.1} MiB before, peak {peak:.1} MiB"
    );
    assert!(
        peak - rss_before < 256.0,
        "RSS grew from {rss_before:.1} to {peak:.1} MiB"
    );
    assert_eq!(
        client()
            .get(app.url("/buffered/headers"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn a_client_that_stops_mid_body_gets_408() {
    let (_dir, mut app) = start();
    let address = address(&app);
    for (path, id) in [
        ("/buffered/echo", "stalled-buffered-1"),
        ("/streamed/echo", "stalled-streamed-1"),
    ] {
        let mut stream = connect(
            &address,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"half\": "
            ),
        );
        let raw = read_until_closed(&mut stream, Instant::now() + CLOSE_BOUND);
        let head = assert_error(&raw, 408, "request_timeout");
        assert!(head.contains(&format!("\r\nx-request-id: {id}")), "{head}");
    }
    // Log lines are written off the request path: wait for them.
    for id in ["stalled-buffered-1", "stalled-streamed-1"] {
        wait_for(id, Duration::from_secs(10), || {
            app.log()
                .lines()
                .any(|line| line.contains(id) && line.contains("stopped arriving"))
                .then_some(())
        });
    }
}

#[test]
fn bodies_within_the_limits_reach_the_component() {
    let (_dir, app) = start();
    // The fixture answers with the headers it got, for any path it has no endpoint for.
    for (path, size) in [
        ("/buffered/echo", 1 << 20),
        ("/streamed/echo", STREAMED_LIMIT as usize),
    ] {
        let response = client()
            .post(app.url(path))
            .body(vec![b'x'; size])
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let echoed: Value = response.json().unwrap();
        assert_eq!(
            echoed["headers"]["content-length"],
            size.to_string(),
            "{path}"
        );
    }
}

#[test]
fn slow_uploaders_cannot_take_the_slots_other_routes_need() {
    let (_dir, app) = start();
    let address = address(&app);
    // Far more uploads than the streaming pool has slots, each kept alive by a byte
    // well within the pause allowed, for longer than the answer bound.
    let mut uploads: Vec<TcpStream> = (0..150)
        .map(|_| {
            connect(
                &address,
                "POST /streamed/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n0",
            )
        })
        .collect();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < ANSWER_BOUND + Duration::from_secs(2) {
        for stream in &mut uploads {
            let _ = stream.write_all(b"0");
        }
        let asked = Instant::now();
        let response = client().get(app.url("/buffered/headers")).send().unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("behind 150 slow uploads, the slowest other request took {slowest:?}");
    assert!(
        slowest < ANSWER_BOUND,
        "a request took {slowest:?} behind slow uploads"
    );
}

#[test]
fn the_admin_listener_closes_stalled_connections_and_keeps_answering() {
    let (_dir, app) = start();
    let metrics = app
        .admin_url("/metrics")
        .expect("the harness gives the host an admin port");
    let admin = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let opened = Instant::now();
    // More than the admin listener's connection cap, all stuck in their headers.
    let stalled: Vec<TcpStream> = (0..100)
        .map(|i| {
            connect(
                &admin,
                &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: "),
            )
        })
        .collect();
    let by = opened + CLOSE_BOUND;
    for mut stream in stalled {
        read_until_closed(&mut stream, by);
    }
    eprintln!(
        "100 stalled admin connections closed after {:?}",
        opened.elapsed()
    );
    let response = client().get(&metrics).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("# TYPE"));
}
