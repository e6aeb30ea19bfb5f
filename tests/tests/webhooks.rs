//! Webhooks end to end: a callback named in the upload form goes through the host and
//! the upload component to the real runner, which POSTs the signed job to a receiver run
//! here once it is converted. The signature is checked with an HMAC implementation of
//! its own (`hmac-sha256`), as a receiver would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Response;
use serde_json::Value;
use spinmesh_authn::{Issuer, Role, now_unix};
use spinmesh_e2e::clips::short_clip;
use spinmesh_e2e::{App, client};

const BOUNDARY: &str = "spinmesh-webhook-boundary-Qx81";
const SECRET: &str = "e2e-webhook-secret-0123456789abcdef";
/// Conversions share two cores with everything else: be patient, never time them.
const DEADLINE: Duration = Duration::from_secs(300);

/// The app and its runner, which may call receivers on 127.0.0.1 (and no other
/// loopback address) and retries quickly.
fn start() -> App {
    [
        "--webhook-secret",
        SECRET,
        "--webhook-allow-cidr",
        "127.0.0.1/32",
        "--webhook-retry-base",
        "200ms",
    ]
    .iter()
    .fold(App::builder().with_runner(), |app, flag| {
        app.runner_arg(flag)
    })
    .variable("rate_limit_per_address", "0")
    .variable("rate_limit_per_user", "0")
    .start()
}

fn token(app: &App, user_id: &str) -> String {
    Issuer::new(&app.secrets().auth_signing_key, "spinmesh", "spinmesh", 900)
        .unwrap()
        .issue(user_id, "alice", &[Role::User], now_unix())
        .unwrap()
        .token
}

/// `POST /api/upload` with `fields` before the file part.
fn upload(app: &App, token: &str, fields: &[(&str, &[u8])], clip: &[u8]) -> Response {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = fields
        .iter()
        .map(|(name, value)| (*name, None, *value))
        .collect();
    parts.push(("file", Some("clip.mp4"), clip));
    client()
        .post(app.url("/api/upload"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(spinmesh_e2e::multipart_body(BOUNDARY, &parts))
        .send()
        .unwrap()
}

fn json(response: Response, status: u16) -> Value {
    let actual = response.status();
    let text = response.text().unwrap();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn assert_error(response: Response, status: u16, code: &str) {
    let body = json(response, status);
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn jobs(app: &App, token: &str) -> Vec<Value> {
    let response = client()
        .get(app.url("/api/jobs"))
        .bearer_auth(token)
        .send()
        .unwrap();
    json(response, 200).as_array().unwrap().clone()
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    request_line: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header: {self:?}"))
    }
}

/// A webhook receiver on 127.0.0.1: plain HTTP/1.1, one request per connection,
/// answering the given statuses in turn and then 200.
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(answers: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let recorded = hits.clone();
        let mut answers = answers.to_vec();
        answers.reverse();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let answered = answers.pop().unwrap_or(200);
                if let Some(hit) = read_request(&mut stream, answered) {
                    recorded.lock().unwrap().push(hit);
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {answered} Webhook\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn wait_for(&self, count: usize, app: &mut App) -> Vec<Hit> {
        let end = Instant::now() + DEADLINE;
        loop {
            let hits = self.hits();
            if hits.len() >= count {
                return hits;
            }
            assert!(
                Instant::now() < end,
                "the receiver got {} of {count} requests\n{}",
                hits.len(),
                app.runner_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_request(stream: &mut std::net::TcpStream, answered: u16) -> Option<Hit> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Hit {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
        answered,
    })
}

/// Checks `hit`'s `Spinmesh-Signature` as a receiver does: a recent `t`, and a `v1`
/// equal to HMAC-SHA256(key, "<t>.<body>").
fn assert_signed(hit: &Hit, key: &str) {
    let header = hit.header("spinmesh-signature");
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<u64>().unwrap()),
            Some(("v1", v1)) => signatures.push(v1.to_string()),
            _ => panic!("unexpected item {item:?} in {header}"),
        }
    }
    let timestamp = timestamp.expect("a timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(timestamp) < 300, "t={timestamp} is not recent");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&hit.body);
    let expected: String = hmac_sha256::HMAC::mac(&signed, key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(signatures, vec![expected], "{header}");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_receiver_gets_one_signed_completion_retried_after_a_first_500() {
    let mut app = start();
    let alice = token(&app, "101");
    let receiver = Receiver::start(&[500]);

    let secret = client()
        .get(app.url("/api/webhooks/secret"))
        .bearer_auth(&alice)
        .send()
        .unwrap();
    assert_eq!(secret.headers()["cache-control"], "no-store");
    let key = json(secret, 200)["secret"].as_str().unwrap().to_string();
    assert!(key.starts_with("whsec_") && key.len() == 70, "{key}");
    let bob_key = json(
        client()
            .get(app.url("/api/webhooks/secret"))
            .bearer_auth(token(&app, "102"))
            .send()
            .unwrap(),
        200,
    );
    assert_ne!(
        bob_key["secret"].as_str(),
        Some(key.as_str()),
        "keys are per user"
    );

    let callback = format!("http://127.0.0.1:{}/hooks/spinmesh", receiver.port);
    let accepted = json(
        upload(
            &app,
            &alice,
            &[("callback_url", callback.as_bytes())],
            &short_clip(),
        ),
        202,
    );
    let id = accepted["job_id"].as_str().unwrap().to_string();

    let hits = receiver.wait_for(2, &mut app);
    let (failed, delivered) = (&hits[0], &hits[1]);
    assert_eq!((failed.answered, delivered.answered), (500, 200));
    for hit in &hits {
        assert_eq!(hit.request_line, "POST /hooks/spinmesh HTTP/1.1");
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("user-agent"), "spinmesh-webhook/1");
        assert_eq!(hit.header("spinmesh-event"), "job.completed");
        assert_signed(hit, &key);
    }
    let delivery = delivered.header("spinmesh-delivery");
    assert_eq!(
        failed.header("spinmesh-delivery"),
        delivery,
        "one delivery, retried"
    );
    let body: Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(body["event"], "job.completed");
    assert_eq!(body["delivery_id"], delivery);
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    // The job as its owner sees it from the API, with the event and delivery added.
    let mut seen = json(
        client()
            .get(app.url(&format!("/api/jobs/{id}")))
            .bearer_auth(&alice)
            .send()
            .unwrap(),
        200,
    );
    seen["event"] = body["event"].clone();
    seen["delivery_id"] = body["delivery_id"].clone();
    assert_eq!(body, seen);

    // Exactly one completion: once the runner has it delivered, no attempt follows.
    let log = spinmesh_e2e::wait_for("the delivery to be recorded", DEADLINE, || {
        let log = app.runner_log();
        log.contains("webhook delivered").then_some(log)
    });
    assert_eq!(log.matches("webhook delivered").count(), 1, "{log}");
    assert_eq!(receiver.hits().len(), 2);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn callbacks_that_are_not_allowed_are_refused_at_upload_time() {
    let app = start();
    let alice = token(&app, "101");
    let clip = short_clip();
    // 127.0.0.2 is loopback, and only 127.0.0.1 is allowed.
    for (callback, code) in [
        ("http://127.0.0.2:8080/hook", "callback_not_allowed"),
        ("http://[::1]:8080/hook", "callback_not_allowed"),
        (
            "http://169.254.169.254/latest/meta-data",
            "callback_not_allowed",
        ),
        ("http://192.168.1.1/hook", "callback_not_allowed"),
        ("ftp://example.com/hook", "invalid_callback_url"),
        (
            "https://user:secret@example.com/hook",
            "invalid_callback_url",
        ),
    ] {
        let response = upload(
            &app,
            &alice,
            &[("callback_url", callback.as_bytes())],
            &clip,
        );
        assert_error(response, 400, code);
    }
    // The field must come before the file, which is sent on as it arrives.
    let late = spinmesh_e2e::multipart_body(
        BOUNDARY,
        &[
            ("file", Some("clip.mp4"), &clip),
            ("callback_url", None, b"https://example.com/hook"),
        ],
    );
    let response = client()
        .post(app.url("/api/upload"))
        .bearer_auth(&alice)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(late)
        .send()
        .unwrap();
    assert_error(response, 400, "field_after_file");
    assert!(jobs(&app, &alice).is_empty(), "no job was recorded");

    // An empty field is no callback.
    json(upload(&app, &alice, &[("callback_url", b"")], &clip), 202);
    assert_eq!(jobs(&app, &alice).len(), 1);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn without_a_runner_secret_there_are_no_webhooks() {
    let app = App::builder()
        .with_runner()
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", "0")
        .start();
    let alice = token(&app, "101");
    let response = upload(
        &app,
        &alice,
        &[("callback_url", b"https://example.com/hook")],
        &short_clip(),
    );
    assert_error(response, 400, "webhooks_disabled");
    let response = client()
        .get(app.url("/api/webhooks/secret"))
        .bearer_auth(&alice)
        .send()
        .unwrap();
    assert_error(response, 404, "webhooks_disabled");
    let response = client()
        .get(app.url("/api/webhooks/secret"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_resumable_upload_names_its_callback_in_its_metadata() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use spinmesh_e2e::Api;
    use spinmesh_e2e::tus::{TUS, created, head, offset_of, patch};

    let mut app = start();
    let api = Api::new(&app);
    let alice = token(&app, "101");
    let key = json(
        client()
            .get(app.url("/api/webhooks/secret"))
            .bearer_auth(&alice)
            .send()
            .unwrap(),
        200,
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let receiver = Receiver::start(&[]);
    let clip = short_clip();
    let create = |callback: &str| {
        api.request(reqwest::Method::POST, "/api/uploads", Some(&alice))
            .header(TUS.0, TUS.1)
            .header("upload-length", clip.len().to_string())
            .header(
                "upload-metadata",
                format!(
                    "filename {},callback_url {}",
                    STANDARD.encode("clip.mp4"),
                    STANDARD.encode(callback)
                ),
            )
            .send()
            .unwrap()
    };

    // Refused at creation, before any byte: another loopback address than the allowed
    // one, and a URL that is not one.
    assert_error(
        create("http://127.0.0.2:9/hook"),
        400,
        "callback_not_allowed",
    );
    assert_error(create("ftp://127.0.0.1/hook"), 400, "invalid_callback_url");

    let callback = format!("http://127.0.0.1:{}/hooks/tus", receiver.port);
    let path = created(create(&callback));
    let half = clip.len() / 2;
    assert_eq!(patch(&api, &alice, &path, 0, &clip[..half]).status(), 204);
    assert_eq!(offset_of(&head(&api, &alice, &path)), half);
    let last = patch(&api, &alice, &path, half, &clip[half..]);
    let job_id = last.headers()["job-id"].to_str().unwrap().to_string();

    let hits = receiver.wait_for(1, &mut app);
    let hit = &hits[0];
    assert_eq!(hit.request_line, "POST /hooks/tus HTTP/1.1");
    assert_signed(hit, &key);
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["job_id"].as_str()),
        (Some("job.completed"), Some(job_id.as_str()))
    );
}
