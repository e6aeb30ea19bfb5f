//! Resumable uploads, tus 1.0, at `/api/uploads`: the repository's app with the real
//! runner and ffmpeg. A 300 MB upload survives a dropped connection and a host restart;
//! the protocol's refusals; another user's upload; expiry; and tus-js-client, unmodified,
//! as a third-party client.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Response;
use spinmesh_e2e::clips::{SHORT_CLIP_SECS, padded, probe, short_clip};
use spinmesh_e2e::tus::{PATCH_TYPE, TUS, create, created, head, offset_of, patch};
use spinmesh_e2e::{Api, App, repo_root, wait_for};

const MIB: usize = 1 << 20;
const CHUNK: usize = 5 * MIB;

fn start(runner_flags: &[&str]) -> App {
    runner_flags
        .iter()
        .fold(App::builder().with_runner(), |app, flag| {
            app.runner_arg(flag)
        })
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", "0")
        .variable("upload_max_bytes", "400000000")
        .start()
}

fn assert_error(response: Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.to_string(), "{body}");
}

/// A playable MP4 of `length` bytes: the short clip, padded.
fn padded_clip(length: usize) -> Vec<u8> {
    padded(short_clip(), length)
}

/// Sends `bytes` from the upload's current offset in [`CHUNK`]s until all of it is
/// there, as a tus client resumes: `HEAD`, then `PATCH`; a `409` or `423` (the previous
/// append still ending) means asking for the offset again. The last answer.
fn resume(api: &Api, token: &str, path: &str, bytes: &[u8]) -> Response {
    let mut last = None;
    for _ in 0..1000 {
        let offset = offset_of(&head(api, token, path));
        if offset == bytes.len() && last.is_some() {
            break;
        }
        let end = (offset + CHUNK).min(bytes.len());
        let response = patch(api, token, path, offset, &bytes[offset..end]);
        match response.status().as_u16() {
            204 => {
                assert_eq!(offset_of(&response), end);
                let done = end == bytes.len();
                last = Some(response);
                if done {
                    break;
                }
            }
            409 | 423 => std::thread::sleep(Duration::from_millis(100)),
            status => panic!("PATCH at {offset}: {status} {:?}", response.text()),
        }
    }
    last.expect("the upload completed")
}

/// A `PATCH` of `length` bytes from `offset`, of which only `sent` are sent before the
/// connection is dropped.
fn broken_patch(base: &str, token: &str, path: &str, offset: usize, bytes: &[u8], length: usize) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: {PATCH_TYPE}\r\nUpload-Offset: {offset}\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(bytes).unwrap();
    stream.flush().unwrap();
    drop(stream);
}

/// The runner's copy of an upload in progress.
fn stored_bytes(app: &App, path: &str) -> u64 {
    let id = path.rsplit('/').next().unwrap();
    let file = app
        .state_dir()
        .parent()
        .unwrap()
        .join("runner/partial")
        .join(id);
    std::fs::metadata(file).map_or(0, |meta| meta.len())
}

#[test]
fn a_300_mb_upload_survives_a_dropped_connection_and_a_host_restart() {
    let mut app = start(&[]);
    let api = Api::new(&app);
    let alice = api.user("alice");
    let bytes = padded_clip(300_000_000);

    let path = created(create(&api, &alice.token, "holiday.mp4", bytes.len()));
    assert!(path.starts_with("/api/uploads/upl_"), "{path}");
    let first = patch(&api, &alice.token, &path, 0, &bytes[..CHUNK]);
    assert_eq!(first.status(), 204);
    assert_eq!(first.headers()[TUS.0], TUS.1);
    assert_eq!(offset_of(&first), CHUNK);
    assert!(!first.headers().contains_key("job-id"));
    let second = patch(&api, &alice.token, &path, CHUNK, &bytes[CHUNK..2 * CHUNK]);
    assert_eq!(offset_of(&second), 2 * CHUNK);

    // Three MiB of the third chunk reach the runner, then the client goes away and the
    // host dies; what arrived is kept.
    let before = 2 * CHUNK;
    let base = app.url.clone();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            broken_patch(
                &base,
                &alice.token,
                &path,
                before,
                &bytes[before..before + 3 * MIB],
                CHUNK,
            )
        });
        wait_for(
            "the runner to store part of the broken append",
            Duration::from_secs(60),
            || (stored_bytes(&app, &path) > (before + 2 * MIB) as u64).then_some(()),
        );
    });
    app.restart_host();
    let kept = wait_for("the broken append to end", Duration::from_secs(60), || {
        let response = head(&api, &alice.token, &path);
        assert_eq!(response.status(), 200);
        let offset = offset_of(&response);
        (offset > before + 2 * MIB).then_some(offset)
    });
    assert!(kept <= before + 3 * MIB, "{kept}");

    let last = resume(&api, &alice.token, &path, &bytes);
    let job_id = last.headers()["job-id"].to_str().unwrap().to_string();
    assert!(job_id.starts_with("job_"), "{job_id}");
    let listed = api.get("/api/jobs", &alice.token).ok();
    assert!(listed.to_string().contains(&job_id), "{listed}");
    let job = api.finished_job(&alice.token, &job_id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["filename"], "holiday.mp3");
    probe(&api.download(&alice.token, &job_id)).assert_mp3_of(SHORT_CLIP_SECS);
    // Done: the offset says so, and the upload names its job.
    let done = head(&api, &alice.token, &path);
    assert_eq!(offset_of(&done), bytes.len());
    assert_eq!(done.headers()["job-id"], job_id.as_str());
}

#[test]
fn the_protocol_s_refusals_and_another_user_s_upload() {
    let app = start(&[]);
    let api = Api::new(&app);
    let alice = api.user("alice");
    let bob = api.user("bob");
    let clip = short_clip();

    // Discovery.
    let options = api
        .request(Method::OPTIONS, "/api/uploads", None)
        .send()
        .unwrap();
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert_eq!(
        options.headers()["tus-extension"],
        "creation,termination,expiration"
    );
    assert_eq!(options.headers()["tus-max-size"], "400000000");

    // Every request names the protocol version.
    let unversioned = api
        .request(Method::POST, "/api/uploads", Some(&alice.token))
        .header("upload-length", "10")
        .send()
        .unwrap();
    assert_eq!(unversioned.headers()["tus-version"], "1.0.0");
    assert_error(unversioned, 412, "unsupported_tus_version");
    let anonymous = api
        .request(Method::POST, "/api/uploads", None)
        .header(TUS.0, TUS.1)
        .header("upload-length", "10")
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Creation checks what can be checked before any byte.
    assert_error(
        create(&api, &alice.token, "song.mp3", 10),
        415,
        "unsupported_file_type",
    );
    assert_error(
        create(&api, &alice.token, "empty.mp4", 0),
        400,
        "empty_file",
    );
    assert_error(
        create(&api, &alice.token, "big.mp4", 400_000_001),
        413,
        "payload_too_large",
    );
    let nameless = api
        .request(Method::POST, "/api/uploads", Some(&alice.token))
        .header(TUS.0, TUS.1)
        .header("upload-length", "10")
        .send()
        .unwrap();
    assert_error(nameless, 400, "missing_filename");

    // The first bytes must be what the name says.
    let path = created(create(&api, &alice.token, "clip.mp4", clip.len()));
    assert_error(
        patch(
            &api,
            &alice.token,
            &path,
            0,
            b"#!/bin/sh\nrm -rf /\n-------",
        ),
        415,
        "unsupported_file_type",
    );
    let wrong_type = api
        .request(Method::PATCH, &path, Some(&alice.token))
        .header(TUS.0, TUS.1)
        .header("content-type", "application/octet-stream")
        .header("upload-offset", "0")
        .body(clip.clone())
        .send()
        .unwrap();
    assert_error(wrong_type, 415, "unsupported_media_type");

    let half = clip.len() / 2;
    assert_eq!(
        patch(&api, &alice.token, &path, 0, &clip[..half]).status(),
        204
    );
    // A wrong offset is a conflict and changes nothing.
    assert_error(
        patch(&api, &alice.token, &path, 0, &clip[..half]),
        409,
        "upload_offset_mismatch",
    );
    assert_error(
        patch(
            &api,
            &alice.token,
            &path,
            half,
            &[clip.as_slice(), b"extra"].concat()[half..],
        ),
        413,
        "upload_length_exceeded",
    );
    // Another user's upload does not exist for them.
    assert_eq!(head(&api, &bob.token, &path).status(), 404);
    assert_error(
        patch(&api, &bob.token, &path, half, &clip[half..]),
        404,
        "upload_not_found",
    );
    let bobs_delete = api
        .request(Method::DELETE, &path, Some(&bob.token))
        .header(TUS.0, TUS.1)
        .send()
        .unwrap();
    assert_error(bobs_delete, 404, "upload_not_found");
    assert_eq!(offset_of(&head(&api, &alice.token, &path)), half);

    // Terminated: gone.
    let delete = api
        .request(Method::DELETE, &path, Some(&alice.token))
        .header(TUS.0, TUS.1)
        .send()
        .unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(head(&api, &alice.token, &path).status(), 404);
    assert_error(
        patch(&api, &alice.token, "/api/uploads/not-an-id", 0, &clip),
        404,
        "upload_not_found",
    );
}

#[test]
fn an_abandoned_upload_expires() {
    let app = start(&["--upload-expiry", "2s", "--sweep-interval", "1s"]);
    let api = Api::new(&app);
    let alice = api.user("alice");
    let clip = short_clip();
    let path = created(create(&api, &alice.token, "clip.mp4", clip.len()));
    let response = patch(&api, &alice.token, &path, 0, &clip[..clip.len() / 2]);
    assert_eq!(response.status(), 204);
    let expires =
        httpdate::parse_http_date(response.headers()["upload-expires"].to_str().unwrap()).unwrap();
    assert!(expires > std::time::SystemTime::now());
    wait_for("the upload to expire", Duration::from_secs(30), || {
        (head(&api, &alice.token, &path).status() == 404).then_some(())
    });
    assert_error(
        patch(
            &api,
            &alice.token,
            &path,
            clip.len() / 2,
            &clip[clip.len() / 2..],
        ),
        404,
        "upload_not_found",
    );
    wait_for(
        "the sweep to remove its bytes",
        Duration::from_secs(30),
        || (stored_bytes(&app, &path) == 0).then_some(()),
    );
}

#[test]
fn tus_js_client_uploads_unmodified() {
    let app = start(&[]);
    let api = Api::new(&app);
    let alice = api.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("from tus-js-client.mp4");
    std::fs::write(&file, padded_clip(3 * MIB)).unwrap();

    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/tus-client.mjs"))
        .arg(&app.url)
        .arg(&alice.token)
        .arg(&file)
        .arg((MIB).to_string())
        .current_dir(repo_root().join("tests/browser"))
        .output()
        .expect("node is installed (cargo xtask test installs it)");
    assert!(
        output.status.success(),
        "tus-js-client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let job_id = result["jobId"].as_str().expect("Job-Id seen by the client");
    let job = api.finished_job(&alice.token, job_id);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["filename"], "from tus-js-client.mp3");
    probe(&api.download(&alice.token, job_id)).assert_mp3_of(SHORT_CLIP_SECS);
}
