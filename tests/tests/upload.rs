//! The upload component end to end: the repository's spin.toml served by the host,
//! the real runner and real ffmpeg, media generated here with ffmpeg's test sources.

use std::io::Read;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, RequestBuilder, Response};
use serde_json::Value;
use spinmesh_authn::{Issuer, Role, now_unix};
use spinmesh_e2e::clips::ffmpeg_failing_while_switched_on;
use spinmesh_e2e::{App, client, is_rfc3339_utc};

const BOUNDARY: &str = "spinmesh-test-boundary-7MA4YWxkTrZu0gW";
/// Conversions share two cores with everything else: be patient, never time them.
const JOB_DEADLINE: Duration = Duration::from_secs(300);
/// The long clip takes seconds to convert, so a test can act while it runs.
const LONG_CLIP_SECS: f64 = 3600.0;

// ---------------------------------------------------------------------------------------
// Media

struct Media {
    _dir: tempfile::TempDir,
    /// 3 s of 440 Hz sine and a test pattern, the issue's recipe.
    clip: Vec<u8>,
    /// An hour of 8 kHz mono sine, no video: small, but slow enough to convert.
    long: Vec<u8>,
    /// 8 s of tone and pattern with the index first (`+faststart`), as web tools write
    /// MP4s: the runner can start converting it while it arrives. About 5 MB, so that
    /// several of the upload component's 512 KiB batches reach the runner early.
    faststart: Vec<u8>,
}

fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.mp4");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10:duration=3",
            "-shortest",
            clip.to_str().unwrap(),
        ]);
        let long = dir.path().join("long.mp4");
        let source = format!("sine=frequency=440:sample_rate=8000:duration={LONG_CLIP_SECS}");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &source,
            "-ac",
            "1",
            "-c:a",
            "aac",
            "-b:a",
            "8k",
            long.to_str().unwrap(),
        ]);
        let faststart = dir.path().join("faststart.mp4");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=8",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=25:duration=8",
            "-shortest",
            "-c:v",
            "mpeg4",
            "-q:v",
            "1",
            "-movflags",
            "+faststart",
            faststart.to_str().unwrap(),
        ]);
        Media {
            clip: std::fs::read(&clip).unwrap(),
            long: std::fs::read(&long).unwrap(),
            faststart: std::fs::read(&faststart).unwrap(),
            _dir: dir,
        }
    })
}

fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What ffprobe makes of `bytes`: the format name and duration in seconds.
fn probe(bytes: &[u8]) -> (String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe");
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    let format = &info["format"];
    (
        format["format_name"].as_str().unwrap().to_string(),
        format["duration"].as_str().unwrap().parse().unwrap(),
    )
}

/// A valid `ftyp` box followed by bytes no demuxer can use.
fn corrupt_mp4(len: usize) -> Vec<u8> {
    let mut bytes = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    bytes.extend((0..len - bytes.len()).map(|i| (i * 7 % 251) as u8));
    bytes
}

// ---------------------------------------------------------------------------------------
// HTTP

struct Users {
    alice: String,
    bob: String,
    admin: String,
}

/// Tokens signed with the app's key, as `login` would issue them.
fn users(app: &App) -> Users {
    let issuer = Issuer::new(&app.secrets().auth_signing_key, "spinmesh", "spinmesh", 900).unwrap();
    let token = |id: &str, name: &str, roles: &[Role]| {
        issuer.issue(id, name, roles, now_unix()).unwrap().token
    };
    Users {
        alice: token("101", "alice", &[Role::User]),
        bob: token("102", "bob", &[Role::User]),
        admin: token("1", "admin", &[Role::User, Role::Admin]),
    }
}

/// Without rate limits: the tests poll job status every 50 ms for as long as a conversion
/// takes on a busy machine.
fn start() -> App {
    start_with_runner(&[])
}

/// [`start`], with these runner flags.
fn start_with_runner(flags: &[&str]) -> App {
    flags
        .iter()
        .fold(App::builder().with_runner(), |app, flag| {
            app.runner_arg(flag)
        })
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", "0")
        .start()
}

/// A form with one `file` part.
fn form(filename: &str, bytes: &[u8]) -> Vec<u8> {
    form_with(&[("file", Some(filename), bytes)])
}

fn form_with(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    spinmesh_e2e::multipart_body(BOUNDARY, parts)
}

fn multipart_post(app: &App, path: &str, token: &str) -> RequestBuilder {
    client().post(app.url(path)).bearer_auth(token).header(
        "content-type",
        format!("multipart/form-data; boundary={BOUNDARY}"),
    )
}

/// Uploads with a `Content-Length`.
fn upload(app: &App, token: &str, filename: &str, bytes: &[u8]) -> Response {
    multipart_post(app, "/api/upload", token)
        .body(form(filename, bytes))
        .send()
        .unwrap()
}

/// Uploads chunked: no `Content-Length`, so only counting the bytes can enforce a limit.
fn upload_chunked(app: &App, token: &str, filename: &str, bytes: &[u8]) -> Response {
    let reader = std::io::Cursor::new(form(filename, bytes));
    multipart_post(app, "/api/upload", token)
        .body(Body::new(reader))
        .send()
        .unwrap()
}

/// Uploads and expects the job to be queued; returns its id.
fn queue(app: &App, token: &str, filename: &str, bytes: &[u8]) -> String {
    let response = upload(app, token, filename, bytes);
    assert_eq!(response.status(), 202, "{}", response.text().unwrap());
    let body: Value = response.json().unwrap();
    body["job_id"].as_str().unwrap().to_string()
}

fn get(app: &App, path: &str, token: &str) -> Response {
    client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn json(response: Response, status: u16) -> Value {
    let actual = response.status();
    let text = response.text().unwrap();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let body = json(response, status);
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

fn job(app: &App, token: &str, id: &str) -> Value {
    json(get(app, &format!("/api/jobs/{id}"), token), 200)
}

/// Polls the job until `done` holds, returning every state seen (the last satisfies it).
fn poll(app: &App, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let state = job(app, token, id);
        let finished = done(&state);
        seen.push(state);
        if finished {
            return seen;
        }
        assert!(
            started.elapsed() < JOB_DEADLINE,
            "job {id} never got there; states: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finished(state: &Value) -> bool {
    matches!(
        state["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

fn wait_until_finished(app: &App, token: &str, id: &str) -> Value {
    poll(app, token, id, finished).pop().unwrap()
}

fn download(app: &App, path: &str, token: &str) -> (Response, Vec<u8>) {
    let mut response = get(app, path, token);
    let mut bytes = Vec::new();
    response.read_to_end(&mut bytes).unwrap();
    (response, bytes)
}

fn list(app: &App, token: &str) -> Vec<Value> {
    json(get(app, "/api/jobs", token), 200)
        .as_array()
        .unwrap()
        .clone()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn converts_an_upload_to_an_mp3_of_the_same_length() {
    let app = start();
    let users = users(&app);

    let response = upload(&app, &users.alice, "clip.mp4", &media().clip);
    assert_eq!(response.status(), 202);
    let location = header(&response, "location").to_string();
    let accepted: Value = response.json().unwrap();
    let id = accepted["job_id"].as_str().unwrap();
    assert!(id.starts_with("job_"), "{accepted}");
    assert_eq!(location, format!("/api/jobs/{id}"));
    assert_eq!(
        accepted,
        serde_json::json!({"message": "File uploaded successfully", "job_id": id, "filename": "clip.mp4", "status": "queued"})
    );

    let states = poll(&app, &users.alice, id, finished);
    let progress: Vec<u64> = states
        .iter()
        .map(|s| s["progress"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {progress:?}"
    );
    let done = states.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["job_id"], id);
    assert_eq!(done["filename"], "clip.mp3");
    assert!(
        is_rfc3339_utc(&done["created_at"]) && is_rfc3339_utc(&done["completed_at"]),
        "{done}"
    );
    assert!(done.get("error").is_none(), "{done}");

    let (response, mp3) = download(&app, &format!("/api/jobs/{id}/download"), &users.alice);
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "audio/mpeg");
    assert_eq!(header(&response, "content-length"), mp3.len().to_string());
    assert!(header(&response, "content-disposition").contains("filename=\"clip.mp3\""));
    let (format, duration) = probe(&mp3);
    assert_eq!(format, "mp3");
    assert!((duration - 3.0).abs() < 0.3, "duration {duration}");
    // The edge's headers reach a streamed download too.
    assert_eq!(header(&response, "x-request-id").len(), 36);
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");

    let response = client()
        .get(app.url(&format!("/api/jobs/{id}/download")))
        .bearer_auth(&users.alice)
        .header("range", "bytes=0-99")
        .send()
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes 0-99/{}", mp3.len())
    );
    assert_eq!(response.bytes().unwrap().as_ref(), &mp3[..100]);

    let response = client()
        .get(app.url(&format!("/api/jobs/{id}/download")))
        .bearer_auth(&users.alice)
        .header("range", format!("bytes={}-", mp3.len()))
        .send()
        .unwrap();
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes */{}", mp3.len())
    );
    assert_error(response, 416, "range_not_satisfiable");
}

/// A request body the test hands over piece by piece.
struct HeldBody(std::sync::mpsc::Receiver<Vec<u8>>, std::io::Cursor<Vec<u8>>);

impl Read for HeldBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.1.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.0.recv() {
                Ok(piece) => self.1 = std::io::Cursor::new(piece),
                Err(_) => return Ok(0), // the test dropped its sender: end of body
            }
        }
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_faststart_upload_is_converted_while_it_arrives() {
    let mut app = start();
    let users = users(&app);
    let body = form("web.mp4", &media().faststart);
    let (head, tail) = body.split_at(body.len() - 16 * 1024);

    let (pieces, receiver) = std::sync::mpsc::channel();
    let request = multipart_post(&app, "/api/upload", &users.alice)
        .header("content-length", body.len())
        .body(Body::new(HeldBody(receiver, Default::default())));
    let sending = std::thread::spawn(move || request.send().unwrap());
    pieces.send(head.to_vec()).unwrap();

    // Through the host and the upload component, the runner already runs ffmpeg
    // while the last 16 KiB are still with the client.
    let deadline = Instant::now() + JOB_DEADLINE;
    while !app
        .runner_log()
        .contains("conversion started while the upload is arriving")
    {
        assert!(
            Instant::now() < deadline,
            "no early start:\n{}",
            app.runner_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pieces.send(tail.to_vec()).unwrap();
    drop(pieces);
    let accepted = json(sending.join().unwrap(), 202);
    assert_eq!(accepted["status"], "queued", "the seed's contract");

    let id = accepted["job_id"].as_str().unwrap();
    let done = wait_until_finished(&app, &users.alice, id);
    assert_eq!(done["status"], "completed", "{done}");
    let (response, mp3) = download(&app, &format!("/api/jobs/{id}/download"), &users.alice);
    assert_eq!(response.status(), 200);
    let (format, seconds) = probe(&mp3);
    assert_eq!(format, "mp3");
    assert!((seconds - 8.0).abs() < 0.5, "MP3 lasts {seconds}s");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn seed_routes_serve_the_same_jobs() {
    let app = start();
    let users = users(&app);
    let response = multipart_post(&app, "/upload", &users.alice)
        .body(form("seed.mp4", &media().clip))
        .send()
        .unwrap();
    let accepted = json(response, 202);
    let id = accepted["job_id"].as_str().unwrap();
    assert_eq!(accepted["filename"], "seed.mp4");

    let done = wait_until_finished(&app, &users.alice, id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        json(get(&app, &format!("/status/{id}"), &users.alice), 200),
        done
    );

    let (response, mp3) = download(&app, &format!("/download/{id}"), &users.alice);
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "audio/mpeg");
    assert_eq!(
        mp3,
        download(&app, &format!("/api/jobs/{id}/download"), &users.alice).1
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn files_that_are_not_allowed_videos_are_refused() {
    let app = start();
    let users = users(&app);
    let text = b"This is a text file, not a video.\n".repeat(100);
    assert_error(
        upload(&app, &users.alice, "notes.mp4", &text),
        415,
        "unsupported_file_type",
    );
    assert_error(
        upload(&app, &users.alice, "file", &text),
        415,
        "unsupported_file_type",
    );
    assert_error(
        upload(&app, &users.alice, "notes.txt", &text),
        415,
        "unsupported_file_type",
    );
    let body = assert_error(
        upload(&app, &users.alice, "clip.avi", &media().clip),
        415,
        "unsupported_file_type",
    );
    assert_eq!(
        body["message"],
        "File content does not match its .avi extension"
    );
    assert_error(
        upload(&app, &users.alice, "empty.mp4", b""),
        400,
        "empty_file",
    );
    assert!(list(&app, &users.alice).is_empty());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn malformed_and_unauthenticated_uploads_are_refused() {
    let app = start();
    let users = users(&app);
    let clip = form("clip.mp4", &media().clip);

    let response = client()
        .post(app.url("/api/upload"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(clip.clone())
        .send()
        .unwrap();
    assert_eq!(header(&response, "www-authenticate"), "Bearer");
    assert_error(response, 401, "token_missing");
    assert_error(
        multipart_post(&app, "/api/upload", "not.a.token")
            .body(clip.clone())
            .send()
            .unwrap(),
        401,
        "token_invalid",
    );

    let response = client()
        .post(app.url("/api/upload"))
        .bearer_auth(&users.alice)
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .unwrap();
    assert_error(response, 415, "unsupported_media_type");

    let only_title = form_with(&[("title", None, b"Holiday")]);
    assert_error(
        multipart_post(&app, "/api/upload", &users.alice)
            .body(only_title)
            .send()
            .unwrap(),
        400,
        "missing_file",
    );

    let truncated = &clip[..clip.len() - 20];
    let response = multipart_post(&app, "/api/upload", &users.alice)
        .body(truncated.to_vec())
        .send()
        .unwrap();
    assert_error(response, 400, "malformed_multipart");

    let response = client()
        .get(app.url("/api/upload"))
        .bearer_auth(&users.alice)
        .send()
        .unwrap();
    assert_eq!(header(&response, "allow"), "POST");
    assert_error(response, 405, "method_not_allowed");
    assert!(list(&app, &users.alice).is_empty());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn oversized_uploads_are_refused_up_front_and_while_streaming() {
    let limit = 1_000_000;
    let app = App::builder()
        .with_runner()
        .variable("upload_max_bytes", &limit.to_string())
        .start();
    let users = users(&app);
    // Larger than the limit, and than one batch, so part of it reaches the runner first.
    let big = corrupt_mp4(3 * limit);

    let body = assert_error(
        upload(&app, &users.alice, "big.mp4", &big),
        413,
        "payload_too_large",
    );
    assert_eq!(
        body["message"],
        format!("File exceeds the upload limit of {limit} bytes")
    );
    assert_error(
        upload_chunked(&app, &users.alice, "big.mp4", &big),
        413,
        "payload_too_large",
    );
    // Nothing half-stored: the aborted transfer left no job behind.
    assert!(list(&app, &users.admin).is_empty());

    // Just under the limit is taken (and fails later: the bytes are not a video).
    let id = queue(&app, &users.alice, "fits.mp4", &corrupt_mp4(limit - 1000));
    assert_eq!(list(&app, &users.admin).len(), 1);
    assert_eq!(
        wait_until_finished(&app, &users.alice, &id)["status"],
        "failed"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn path_components_are_stripped_from_filenames() {
    let app = start();
    let users = users(&app);
    let accepted = json(
        upload(&app, &users.alice, "../../etc/passwd.mp4", &media().clip),
        202,
    );
    assert_eq!(accepted["filename"], "passwd.mp4");
    let id = accepted["job_id"].as_str().unwrap();
    let done = wait_until_finished(&app, &users.alice, id);
    assert_eq!(
        (done["status"].as_str(), done["filename"].as_str()),
        (Some("completed"), Some("passwd.mp3"))
    );
    let (response, _) = download(&app, &format!("/api/jobs/{id}/download"), &users.alice);
    let disposition = header(&response, "content-disposition");
    assert!(
        disposition.contains("filename=\"passwd.mp3\"") && !disposition.contains(".."),
        "{disposition}"
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_filename_without_extension_takes_the_detected_one() {
    let app = start();
    let users = users(&app);
    let accepted = json(upload(&app, &users.alice, "file", &media().clip), 202);
    assert_eq!(accepted["filename"], "file.mp4");
    let done = wait_until_finished(&app, &users.alice, accepted["job_id"].as_str().unwrap());
    assert_eq!(
        (done["status"].as_str(), done["filename"].as_str()),
        (Some("completed"), Some("file.mp3"))
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn jobs_are_visible_only_to_their_owner_and_admins() {
    let app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "private.mp4", &media().clip);
    assert_eq!(
        wait_until_finished(&app, &users.alice, &id)["status"],
        "completed"
    );

    for path in [
        format!("/api/jobs/{id}"),
        format!("/status/{id}"),
        format!("/api/jobs/{id}/download"),
        format!("/download/{id}"),
    ] {
        let body = assert_error(get(&app, &path, &users.bob), 404, "not_found");
        assert_eq!(body["message"], "Job not found");
    }
    let response = client()
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&users.bob)
        .send()
        .unwrap();
    assert_error(response, 404, "not_found");
    assert!(list(&app, &users.bob).is_empty());

    assert_eq!(job(&app, &users.admin, &id)["status"], "completed");
    assert_eq!(
        download(&app, &format!("/api/jobs/{id}/download"), &users.admin)
            .0
            .status(),
        200
    );
    let mine = list(&app, &users.alice);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["job_id"], id.as_str());
    assert_eq!(list(&app, &users.admin).len(), 1);

    // Unknown and malformed ids look the same as someone else's.
    for path in [
        "/api/jobs/job_00000000000000000000000000000000",
        "/api/jobs/job_..%2F..%2Fjobs",
        "/status/x",
    ] {
        assert_error(get(&app, path, &users.alice), 404, "not_found");
    }
    let response = client()
        .get(app.url(&format!("/api/jobs/{id}")))
        .send()
        .unwrap();
    assert_error(response, 401, "token_missing");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn the_list_is_newest_first_and_paginated() {
    let app = start();
    let users = users(&app);
    let ids: Vec<String> = (0..3)
        .map(|i| queue(&app, &users.alice, &format!("clip{i}.mp4"), &media().clip))
        .collect();
    queue(&app, &users.bob, "bobs.mp4", &media().clip);

    let response = get(&app, "/api/jobs?limit=2", &users.alice);
    assert_eq!(header(&response, "x-total-count"), "3");
    assert!(header(&response, "link").contains("rel=\"next\""));
    let page: Vec<String> = json(response, 200)
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page, [ids[2].clone(), ids[1].clone()]);
    let rest = json(get(&app, "/api/jobs?limit=2&offset=2", &users.alice), 200);
    assert_eq!(rest[0]["job_id"], ids[0].as_str());
    assert_eq!(
        header(&get(&app, "/api/jobs", &users.admin), "x-total-count"),
        "4"
    );
    assert_error(
        get(&app, "/api/jobs?limit=0", &users.alice),
        400,
        "invalid_request",
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_running_job_can_be_cancelled() {
    let app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "long.mp4", &media().long);

    let response = client()
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&users.alice)
        .send()
        .unwrap();
    let cancelled = json(response, 200);
    assert_eq!(
        (cancelled["job_id"].as_str(), cancelled["status"].as_str()),
        (Some(id.as_str()), Some("cancelled"))
    );
    assert_eq!(job(&app, &users.alice, &id)["status"], "cancelled");
    assert_error(
        get(&app, &format!("/api/jobs/{id}/download"), &users.alice),
        409,
        "job_not_ready",
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_corrupt_mp4_with_valid_magic_fails_with_a_reason() {
    let app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "corrupt.mp4", &corrupt_mp4(50_000));
    let done = wait_until_finished(&app, &users.alice, &id);
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["error"].as_str().unwrap();
    assert!(!reason.is_empty() && !reason.contains('/'), "{reason}");
    assert_error(
        get(&app, &format!("/api/jobs/{id}/download"), &users.alice),
        409,
        "job_not_ready",
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn runner_down_is_503_and_nothing_is_stored() {
    let mut app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "before.mp4", &media().clip);
    app.runner_stop();

    assert_error(
        upload(&app, &users.alice, "clip.mp4", &media().clip),
        503,
        "service_unavailable",
    );
    assert_error(
        upload_chunked(&app, &users.alice, "clip.mp4", &media().clip),
        503,
        "service_unavailable",
    );
    assert_error(
        get(&app, &format!("/api/jobs/{id}"), &users.alice),
        503,
        "service_unavailable",
    );
    assert_error(
        get(&app, "/api/jobs", &users.alice),
        503,
        "service_unavailable",
    );

    app.runner_restart();
    let jobs = list(&app, &users.alice);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job_id"], id.as_str());
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_job_survives_the_runner_being_killed_mid_conversion() {
    let mut app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "long.mp4", &media().long);
    let states = poll(&app, &users.alice, &id, |s| {
        finished(s) || s["progress"].as_u64().unwrap() > 0
    });
    let running = states.last().unwrap();
    assert_eq!(
        running["status"], "running",
        "the job was not caught mid-conversion: {running}"
    );

    app.runner_kill();
    assert_error(
        get(&app, &format!("/api/jobs/{id}"), &users.alice),
        503,
        "service_unavailable",
    );
    app.runner_restart();

    let done = wait_until_finished(&app, &users.alice, &id);
    assert_eq!(done["status"], "completed", "{done}");
    let (response, mp3) = download(&app, &format!("/api/jobs/{id}/download"), &users.alice);
    assert_eq!(response.status(), 200);
    let (format, duration) = probe(&mp3);
    assert_eq!(format, "mp3");
    assert!(
        (duration - LONG_CLIP_SECS).abs() < 1.0,
        "duration {duration}"
    );
}

fn post(app: &App, path: &str, token: &str) -> Response {
    client()
        .post(app.url(path))
        .bearer_auth(token)
        .send()
        .unwrap()
}

/// The events of a `text/event-stream` body read to its end: (id, name, data as JSON).
fn events(response: Response) -> Vec<(u64, String, Value)> {
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let text = response.text().unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            };
            let data = serde_json::from_str(field("data")?).unwrap();
            Some((
                field("id").unwrap().parse().unwrap(),
                field("event").unwrap().to_string(),
                data,
            ))
        })
        .collect()
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_failed_job_is_retried_by_its_owner_and_followed_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (ffmpeg, switch) = ffmpeg_failing_while_switched_on(tmp.path());
    let app = start_with_runner(&["--ffmpeg", ffmpeg.to_str().unwrap(), "--max-attempts", "1"]);
    let users = users(&app);
    let id = queue(&app, &users.alice, "clip.mp4", &media().clip);
    let failed = wait_until_finished(&app, &users.alice, &id);
    assert_eq!(failed["status"], "failed", "{failed}");
    let retry = format!("/api/jobs/{id}/retry");
    let events_path = format!("/api/jobs/{id}/events");

    // Another user's job does not exist for them, whatever they ask of it.
    assert_error(post(&app, &retry, &users.bob), 404, "not_found");
    assert_error(get(&app, &events_path, &users.bob), 404, "not_found");
    assert_error(
        get(&app, &format!("/api/jobs/{id}?wait=1"), &users.bob),
        404,
        "not_found",
    );

    std::fs::remove_file(&switch).unwrap();
    let queued = json(post(&app, &retry, &users.alice), 202);
    assert_eq!(
        (queued["job_id"].as_str(), queued["status"].as_str()),
        (Some(id.as_str()), Some("queued"))
    );
    assert!(queued.get("error").is_none(), "{queued}");

    // The stream, through the component, follows the conversion to its end.
    let seen = events(get(&app, &events_path, &users.alice));
    let (last_id, last_name, last_job) = seen.last().expect("events").clone();
    assert_eq!(last_name, "completed", "{seen:?}");
    assert_eq!(last_job["status"], "completed");
    assert_eq!(last_job["job_id"], id.as_str());
    assert!(
        last_job.get("owner").is_none(),
        "the client's view of a job"
    );
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert!(seen[..seen.len() - 1].iter().all(|e| e.1 == "progress"));
    // Resumed with the last id: nothing more to send.
    let response = client()
        .get(app.url(&events_path))
        .bearer_auth(&users.alice)
        .header("last-event-id", last_id.to_string())
        .send()
        .unwrap();
    assert!(events(response).is_empty());
    let response = client()
        .get(app.url(&events_path))
        .bearer_auth(&users.alice)
        .header("last-event-id", "latest")
        .send()
        .unwrap();
    assert_error(response, 400, "invalid_request");

    let (response, mp3) = download(&app, &format!("/api/jobs/{id}/download"), &users.alice);
    assert_eq!(response.status(), 200);
    assert_eq!(probe(&mp3).0, "mp3");
    assert_error(post(&app, &retry, &users.alice), 409, "job_not_retryable");
    // Deleted: its file is gone, so it cannot be converted again.
    let response = client()
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(&users.alice)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_error(post(&app, &retry, &users.alice), 409, "job_not_retryable");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_status_request_can_wait_for_the_next_change() {
    let app = start();
    let users = users(&app);
    let id = queue(&app, &users.alice, "long.mp4", &media().long);
    let running = poll(&app, &users.alice, &id, |state| {
        state["status"] == "running" && state["progress"].as_u64() > Some(0)
    })
    .pop()
    .unwrap();
    let path = format!("/api/jobs/{id}?wait=20");
    let started = Instant::now();
    let moved = json(get(&app, &path, &users.alice), 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        moved["progress"].as_u64() > running["progress"].as_u64() || finished(&moved),
        "{running} then {moved}"
    );
    for bad in ["0", "31", "soon"] {
        assert_error(
            get(&app, &format!("/api/jobs/{id}?wait={bad}"), &users.alice),
            400,
            "invalid_request",
        );
    }
    let done = wait_until_finished(&app, &users.alice, &id);
    // A finished job has nothing more to wait for.
    let started = Instant::now();
    assert_eq!(json(get(&app, &path, &users.alice), 200), done);
    assert!(started.elapsed() < Duration::from_secs(10));
}
