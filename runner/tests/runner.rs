//! End-to-end tests of the real `spinmesh-runner` binary over HTTP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use spinmesh_e2e::clips::ffmpeg_failing_while_switched_on;

fn assert_error(body: &Value, status: &str, code: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converts_uploaded_video_and_serves_the_mp3() {
    let runner = Runner::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let video = make_video(tmp.path(), "clip.mp4", 3);

    let resp = upload_chunked(
        &runner,
        "user-1",
        "Été clip \"live\".mp4",
        std::fs::read(&video).unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let job: Value = resp.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("job_"), "{job}");
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(job["status"], "queued");
    assert_eq!(job["owner"], "user-1");
    assert_eq!(job["source_filename"], "Été clip \"live\".mp4");
    assert_eq!(job["filename"], "Été clip \"live\".mp3");
    assert_eq!(job["size_bytes"], std::fs::metadata(&video).unwrap().len());
    assert_eq!(job["progress"], 0);
    assert!(
        job["output_bytes"].is_null() && job["error"].is_null() && job["completed_at"].is_null()
    );
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    // The client's name never reaches the disk.
    assert!(
        runner
            .spool_files("inputs")
            .iter()
            .all(|f| !f.contains("clip"))
    );

    let seen = poll_job(&runner, &id, is_finished).await;
    let done = seen.last().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["attempts"], 1);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
    let progress: Vec<u64> = seen
        .iter()
        .map(|j| j["progress"].as_u64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {progress:?}"
    );
    // The input is not kept once converted.
    assert!(runner.spool_files("inputs").is_empty());

    // Download it whole.
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "audio/mpeg");
    assert_eq!(h["accept-ranges"], "bytes");
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"_t_ clip _live_.mp3\""),
        "{cd}"
    );
    assert!(
        cd.contains("filename*=UTF-8''%C3%89t%C3%A9%20clip%20%22live%22.mp3"),
        "{cd}"
    );
    let mp3 = resp.bytes().await.unwrap().to_vec();
    assert_eq!(h["content-length"].to_str().unwrap(), mp3.len().to_string());
    assert_eq!(done["output_bytes"], mp3.len() as u64);
    let out = tmp.path().join("out.mp3");
    std::fs::write(&out, &mp3).unwrap();
    let (codec, duration) = probe(&out);
    assert_eq!(codec, "mp3");
    assert!((duration - 3.0).abs() < 0.5, "duration {duration}");

    // Ranges.
    let get_range = |range: String| {
        let url = runner.url(&format!("/jobs/{id}/output"));
        async move {
            auth(client().get(url))
                .header("range", range)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = get_range("bytes=0-99".into()).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 0-99/{}", mp3.len())
    );
    assert_eq!(resp.headers()["content-length"], "100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &mp3[..100]);
    let resp = get_range("bytes=-10".into()).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &mp3[mp3.len() - 10..]);
    let resp = get_range(format!("bytes={}-", mp3.len() - 5)).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &mp3[mp3.len() - 5..]);
    let resp = get_range(format!("bytes={}-", mp3.len())).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{}", mp3.len())
    );
    assert_error(&resp.json().await.unwrap(), "416", "range_not_satisfiable");
    let resp = get_range("bytes=0-1,5-6".into()).await;
    assert_eq!(
        resp.status(),
        200,
        "multiple ranges fall back to the whole file"
    );

    // Listing, stats, metrics, health.
    let resp = auth(client().get(runner.url("/jobs?owner=user-1")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "1");
    let list: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    let resp = auth(client().get(runner.url("/jobs?owner=someone-else")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "0");
    let (status, body) = get_json(&runner, "/jobs?limit=0").await;
    assert_eq!(status, 400);
    assert_error(&body, "400", "invalid_query");

    let (status, stats) = get_json(&runner, "/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["jobs"]["completed"], 1);
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["bytes_out"], mp3.len() as u64);

    let text = metrics_text(&runner).await;
    assert!(
        text.contains("spinmesh_runner_jobs{state=\"completed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("spinmesh_runner_job_duration_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("spinmesh_runner_queue_depth 0"), "{text}");
    assert!(
        text.contains("spinmesh_runner_bytes_received_total"),
        "{text}"
    );

    let health: Value = client()
        .get(runner.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(
        health["ffmpeg"]
            .as_str()
            .unwrap()
            .starts_with("ffmpeg version")
    );
    assert_eq!(health["workers"], 2);
    assert_eq!(health["queue_depth"], 0);

    // Deleting a finished job removes its output.
    let resp = auth(client().delete(runner.url(&format!("/jobs/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(runner.files_of(&id).is_empty());
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    assert_error(&resp.json().await.unwrap(), "410", "output_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requires_the_runner_token() {
    let runner = Runner::start(&[]);
    let c = client();
    for req in [
        c.get(runner.url("/jobs")),
        c.get(runner.url("/jobs")).bearer_auth("wrong-token"),
        c.get(runner.url("/stats")).basic_auth("user", Some(TOKEN)),
        c.get(runner.url("/metrics")).header("authorization", TOKEN),
        c.get(runner.url("/jobs/job_0123456789abcdef0123456789abcdef/output")),
        c.delete(runner.url("/jobs/job_0123456789abcdef0123456789abcdef")),
        c.post(runner.url("/jobs"))
            .header("x-owner-id", "u")
            .header("x-filename", "a.mp4")
            .body("tiny"),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_error(&resp.json().await.unwrap(), "401", "unauthorized");
    }
    assert!(runner.spool_files("inputs").is_empty());

    // Health needs no token; unknown ids and routes are JSON 404s.
    assert_eq!(
        c.get(runner.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let (status, body) = get_json(&runner, "/jobs/job_0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, 404);
    assert_error(&body, "404", "job_not_found");
    let (status, body) = get_json(&runner, "/jobs/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 404);
    assert_error(&body, "404", "job_not_found");
    let (status, body) = get_json(&runner, "/nope").await;
    assert_eq!(status, 404);
    assert_error(&body, "404", "not_found");

    // Missing headers are 400s.
    let resp = auth(c.post(runner.url("/jobs")))
        .header("x-filename", "a.mp4")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_error(&resp.json().await.unwrap(), "400", "missing_owner");
    let resp = auth(c.post(runner.url("/jobs")))
        .header("x-owner-id", "u")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_error(&resp.json().await.unwrap(), "400", "missing_filename");
    let resp = auth(c.post(runner.url("/jobs")))
        .header("x-owner-id", "x".repeat(129))
        .header("x-filename", "a.mp4")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_error(&resp.json().await.unwrap(), "400", "invalid_owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_are_refused_and_leave_nothing() {
    let runner = Runner::start(&["--max-upload-bytes", "1MiB"]);

    // Chunked, no Content-Length: detected while streaming.
    let resp = upload_chunked(&runner, "u", "big.mp4", vec![7u8; 3 << 20]).await;
    assert_eq!(resp.status(), 413);
    assert_error(&resp.json().await.unwrap(), "413", "payload_too_large");

    // With a Content-Length: refused before reading.
    let resp = auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", "u")
        .header("x-filename", "big.mp4")
        .body(vec![7u8; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_error(&resp.json().await.unwrap(), "413", "payload_too_large");

    assert!(runner.spool_files("incoming").is_empty());
    assert!(runner.spool_files("inputs").is_empty());
    assert_eq!(job_count(&runner).await, 0);

    // Just under the limit is fine.
    let resp = upload_chunked(&runner, "u", "ok.bin", vec![7u8; 1 << 20]).await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_uploads_leave_nothing_behind() {
    let runner = Runner::start(&[]);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..16)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 64 * 1024])))
        .chain(std::iter::once(Err(std::io::Error::other(
            "client gave up",
        ))))
        .collect();
    let result = auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", "u")
        .header("x-filename", "a.mp4")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    assert!(result.is_err() || result.unwrap().status() == 400);
    eventually("partial upload removed", Duration::from_secs(30), || {
        runner.spool_files("incoming").is_empty()
    })
    .await;
    assert!(runner.spool_files("inputs").is_empty());
    assert_eq!(job_count(&runner).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_space_refuses_uploads() {
    let runner = Runner::start(&["--min-free-disk", "1000000TB"]);
    let resp = upload_chunked(&runner, "u", "a.mp4", vec![1u8; 1000]).await;
    assert_eq!(resp.status(), 507);
    let body: Value = resp.json().await.unwrap();
    assert_error(&body, "507", "insufficient_storage");
    assert!(body["message"].as_str().unwrap().contains("disk space"));
    assert!(runner.spool_files("incoming").is_empty() && runner.spool_files("inputs").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_fails_with_a_reason() {
    let runner = Runner::start(&[]);
    let tmp = tempfile::tempdir().unwrap();

    // A valid `ftyp` box, then garbage.
    let mut corrupt = vec![0, 0, 0, 0x18];
    corrupt.extend_from_slice(b"ftypmp42\0\0\0\0mp42isom");
    corrupt.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let resp = upload_chunked(&runner, "u", "broken.mp4", corrupt).await;
    assert_eq!(resp.status(), 202);
    let corrupt_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let silent = make_silent_video(tmp.path(), "silent.mp4", 2);
    let resp = upload_chunked(&runner, "u", "silent.mp4", std::fs::read(silent).unwrap()).await;
    assert_eq!(resp.status(), 202);
    let silent_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let job = poll_job(&runner, &corrupt_id, is_finished)
        .await
        .pop()
        .unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Input is not a valid media file");
    assert_eq!(job["attempts"], 1, "bad input is not retried");
    assert!(job["output_bytes"].is_null());

    let job = poll_job(&runner, &silent_id, is_finished)
        .await
        .pop()
        .unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Input has no audio stream");

    let resp = auth(client().get(runner.url(&format!("/jobs/{corrupt_id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_error(&resp.json().await.unwrap(), "409", "job_not_ready");
    // A failed job keeps its input (a retry needs it) until retention; nothing else.
    assert_eq!(runner.files_of(&corrupt_id), failed_job_files(&corrupt_id));
    assert_eq!(runner.files_of(&silent_id), failed_job_files(&silent_id));
    // The runner is still serving.
    assert_eq!(
        client()
            .get(runner.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_kills_ffmpeg_and_removes_files() {
    let slow = slow_ffmpeg();
    let runner = Runner::start(&["--ffmpeg", slow.to_str().unwrap()]);
    let tmp = tempfile::tempdir().unwrap();
    let audio = make_audio(tmp.path(), "long.mp3", 120);

    let resp = upload_chunked(&runner, "u", "long.mp3", std::fs::read(audio).unwrap()).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let running = poll_job(&runner, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await
    .pop()
    .unwrap();
    assert!(running["started_at"].is_string());
    assert!(
        !processes_mentioning(&id).is_empty(),
        "ffmpeg should be running"
    );
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);

    let resp = auth(client().delete(runner.url(&format!("/jobs/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["status"], "cancelled");

    eventually("ffmpeg killed", Duration::from_secs(30), || {
        processes_mentioning(&id).is_empty()
    })
    .await;
    eventually("files removed", Duration::from_secs(30), || {
        runner.files_of(&id).is_empty()
    })
    .await;
    let (_, job) = get_json(&runner, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "cancelled");
    // A second delete is harmless.
    let resp = auth(client().delete(runner.url(&format!("/jobs/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_conversions_time_out() {
    let slow = slow_ffmpeg();
    let runner = Runner::start(&["--ffmpeg", slow.to_str().unwrap(), "--job-timeout", "2s"]);
    let tmp = tempfile::tempdir().unwrap();
    let audio = make_audio(tmp.path(), "long.mp3", 120);
    let resp = upload_chunked(&runner, "u", "long.mp3", std::fs::read(audio).unwrap()).await;
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = poll_job(&runner, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Conversion timed out");
    assert_eq!(job["attempts"], 1);
    eventually("ffmpeg killed", Duration::from_secs(30), || {
        processes_mentioning(&id).is_empty()
    })
    .await;
    assert_eq!(runner.files_of(&id), failed_job_files(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_reported() {
    let crashing = crashing_ffmpeg();
    let runner = Runner::start(&[
        "--ffmpeg",
        crashing.to_str().unwrap(),
        "--max-attempts",
        "3",
        "--retry-backoff",
        "200ms",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let video = make_video(tmp.path(), "clip.mp4", 1);
    let resp = upload_chunked(&runner, "u", "clip.mp4", std::fs::read(video).unwrap()).await;
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = poll_job(&runner, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(
        job["error"],
        "Conversion process was terminated unexpectedly"
    );
    let text = metrics_text(&runner).await;
    assert!(
        text.contains("spinmesh_runner_job_outcomes_total{outcome=\"retried\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_runner_resumes_its_jobs_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let audio = make_audio(tmp.path(), "long.mp3", 60);
    let slow = slow_ffmpeg();

    let mut first = Runner::start_on(&spool, &["--ffmpeg", slow.to_str().unwrap()], tmp.path());
    let resp = upload_chunked(&first, "u", "long.mp3", std::fs::read(&audio).unwrap()).await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    poll_job(&first, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;

    first.kill();
    // Its ffmpeg does not outlive it.
    eventually("orphaned ffmpeg gone", Duration::from_secs(30), || {
        processes_mentioning(&id).is_empty()
    })
    .await;

    let second = Runner::start_on(&spool, &[], tmp.path());
    let job = poll_job(&second, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2);
    assert!(
        second
            .spool_files("outputs")
            .iter()
            .all(|f| !f.ends_with(".part"))
    );

    let mp3 = auth(client().get(second.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let out = tmp.path().join("out.mp3");
    std::fs::write(&out, &mp3).unwrap();
    let (codec, duration) = probe(&out);
    assert_eq!(codec, "mp3");
    assert!((duration - 60.0).abs() < 1.0, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_outputs_are_swept() {
    let runner = Runner::start(&["--retention", "1s", "--sweep-interval", "1s"]);
    let tmp = tempfile::tempdir().unwrap();
    let video = make_video(tmp.path(), "clip.mp4", 1);
    let resp = upload_chunked(&runner, "u", "clip.mp4", std::fs::read(video).unwrap()).await;
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = poll_job(&runner, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");

    poll_job(&runner, &id, |j| j["expired"] == true).await;
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    assert!(runner.files_of(&id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_to_disk_without_growing_memory() {
    let runner = Runner::start(&[]);
    let before = peak_rss_kib(runner.pid());
    let size = 100usize << 20;
    // Generated on the fly, so the test itself does not hold 100 MB either.
    let resp = upload_zeros(&runner, size).await;
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["size_bytes"], size as u64);
    let after = peak_rss_kib(runner.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("peak RSS {before} KiB -> {after} KiB for a 100 MiB upload");
    assert!(
        grown_mib < 40,
        "peak RSS grew by {grown_mib} MiB for a 100 MiB upload ({before} KiB -> {after} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuts_down_gracefully_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let audio = make_audio(tmp.path(), "long.mp3", 60);
    let slow = slow_ffmpeg();

    // A conversion longer than the grace period (2s in the harness) is stopped and its
    // job goes back to the queue, without counting as an attempt.
    let mut first = Runner::start_on(&spool, &["--ffmpeg", slow.to_str().unwrap()], tmp.path());
    let resp = upload_chunked(&first, "u", "long.mp3", std::fs::read(&audio).unwrap()).await;
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    poll_job(&first, &id, |j| status_is(j, "running")).await;
    let status = first.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(60));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        first.log_text()
    );
    let log = first.log_text();
    assert!(
        log.contains("job re-queued") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        processes_mentioning(&id).is_empty(),
        "ffmpeg outlived the runner"
    );

    let second = Runner::start_on(&spool, &[], tmp.path());
    let job = poll_job(&second, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 1);
}

#[test]
fn refuses_to_start_without_ffmpeg() {
    let (status, stderr) = run_to_exit(
        &["--ffmpeg", "/nonexistent/ffmpeg", "--token", TOKEN],
        &[],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("ffmpeg not found"), "{stderr}");
    assert!(
        stderr.contains("apt-get install ffmpeg") && stderr.contains("--ffmpeg"),
        "{stderr}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_exit(
        &["--token", TOKEN],
        &[("PATH", empty.path().to_str().unwrap())],
        &["RUNNER_FFMPEG"],
    );
    assert!(!status.success());
    assert!(stderr.contains("ffmpeg not found on PATH"), "{stderr}");
}

#[test]
fn refuses_to_start_without_a_token() {
    let (status, stderr) = run_to_exit(&[], &[], &["RUNNER_TOKEN"]);
    assert!(!status.success());
    assert!(stderr.contains("RUNNER_TOKEN"), "{stderr}");
}

async fn upload_file(runner: &Runner, owner: &str, path: &std::path::Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    let resp = upload_chunked(runner, owner, name, std::fs::read(path).unwrap()).await;
    assert_eq!(resp.status(), 202, "{}", runner.log_text());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_once_however_many_ask_and_converts() {
    let tmp = tempfile::tempdir().unwrap();
    let (ffmpeg, switch) = ffmpeg_failing_while_switched_on(tmp.path());
    let video = make_video(tmp.path(), "clip.mp4", 1);
    let size = std::fs::metadata(&video).unwrap().len();
    // Room for one input and a half: a kept failed input still counts.
    let quota = (size + size / 2).to_string();
    let runner = Runner::start(&[
        "--ffmpeg",
        ffmpeg.to_str().unwrap(),
        "--max-attempts",
        "1",
        "--max-spool-bytes-per-owner",
        &quota,
    ]);
    let id = upload_file(&runner, "u", &video).await;
    let failed = poll_job(&runner, &id, is_finished).await.pop().unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"],
        "Conversion process was terminated unexpectedly"
    );
    assert_eq!(runner.files_of(&id), failed_job_files(&id));
    let resp = upload_chunked(&runner, "u", "again.mp4", std::fs::read(&video).unwrap()).await;
    assert_eq!(resp.status(), 507, "the failed job's input is counted");
    assert_error(&resp.json().await.unwrap(), "507", "storage_quota_exceeded");

    // Two retries at once: one re-queues the job, the other finds it queued (or running).
    std::fs::remove_file(&switch).unwrap();
    let (first, second) = tokio::join!(retry(&runner, &id), retry(&runner, &id));
    let mut answers = [first, second];
    answers.sort_by_key(|(status, _)| *status);
    let [(accepted, job), (refused, refusal)] = answers;
    assert_eq!(accepted, 202, "{job}");
    assert_eq!(job["status"], "queued", "{job}");
    assert!(
        job["error"].is_null() && job["completed_at"].is_null(),
        "{job}"
    );
    assert_eq!(job["attempts"], 0, "a retry starts the attempts afresh");
    assert_eq!(refused, 409, "{refusal}");
    assert_error(&refusal, "409", "job_not_retryable");

    let done = poll_job(&runner, &id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(
        runner
            .log_text()
            .matches("job re-queued on request")
            .count(),
        1
    );
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().await.unwrap().is_empty());

    // Only a failed job can be retried; unknown ids are not found.
    let (status, body) = retry(&runner, &id).await;
    assert_eq!(status, 409);
    assert_error(&body, "409", "job_not_retryable");
    for unknown in ["job_0123456789abcdef0123456789abcdef", "nope"] {
        let (status, body) = retry(&runner, unknown).await;
        assert_eq!(status, 404, "{unknown}");
        assert_error(&body, "404", "job_not_found");
    }
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/retry"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_jobs_input_is_kept_until_retention_then_retry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ffmpeg, _switch) = ffmpeg_failing_while_switched_on(tmp.path());
    let runner = Runner::start(&[
        "--ffmpeg",
        ffmpeg.to_str().unwrap(),
        "--max-attempts",
        "1",
        "--retention",
        "3s",
        "--sweep-interval",
        "1s",
    ]);
    let video = make_video(tmp.path(), "clip.mp4", 1);
    let swept = upload_file(&runner, "u", &video).await;
    let deleted = upload_file(&runner, "u", &video).await;
    for id in [&swept, &deleted] {
        let job = poll_job(&runner, id, is_finished).await.pop().unwrap();
        assert_eq!(job["status"], "failed", "{job}");
    }
    // Deleting a job removes its input at once; retention removes a failed one's later.
    let resp = auth(client().delete(runner.url(&format!("/jobs/{deleted}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    poll_job(&runner, &swept, |j| j["expired"] == true).await;
    for id in [&swept, &deleted] {
        assert!(runner.files_of(id).is_empty(), "{:?}", runner.files_of(id));
        let (status, body) = retry(&runner, id).await;
        assert_eq!(status, 409, "{body}");
        assert_error(&body, "409", "input_gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_on_a_change_or_when_its_wait_is_over() {
    let slow = slow_ffmpeg();
    let runner = Runner::start(&[
        "--ffmpeg",
        slow.to_str().unwrap(),
        "--workers",
        "1",
        "--max-waiters",
        "1",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let audio = make_audio(tmp.path(), "long.mp3", 30);
    let running = upload_file(&runner, "u", &audio).await;
    let queued = upload_file(&runner, "u", &audio).await;
    poll_job(&runner, &running, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;

    for bad in ["0", "31", "-1", "1.5", "soon", ""] {
        let (status, body) = get_json(&runner, &format!("/jobs/{running}?wait={bad}")).await;
        assert_eq!(status, 400, "wait={bad}: {body}");
        assert_error(&body, "400", "invalid_query");
    }

    // A running conversion moves on within the wait: the answer comes early.
    let (_, before) = get_json(&runner, &format!("/jobs/{running}")).await;
    let started = std::time::Instant::now();
    let (status, job) = get_json(&runner, &format!("/jobs/{running}?wait=20")).await;
    assert_eq!(status, 200, "{job}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        job["progress"].as_u64() > before["progress"].as_u64() || job["status"] != "running",
        "{before} then {job}"
    );

    // A job nothing happens to is answered as it is once the wait is over. Meanwhile the
    // runner's one waiting place is taken.
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let url = runner.url(&format!("/jobs/{queued}?wait=2"));
        async move { auth(client().get(url)).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = auth(client().get(runner.url(&format!("/jobs/{running}?wait=5"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(&resp.json().await.unwrap(), "503", "too_many_waiters");
    let resp = waiting.await.unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["status"], "queued", "{job}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A finished job has nothing more to wait for.
    let resp = auth(client().delete(runner.url(&format!("/jobs/{queued}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let (status, job) = get_json(&runner, &format!("/jobs/{queued}?wait=30")).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("cancelled")));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = get_json(&runner, "/jobs/job_0123456789abcdef0123456789abcdef?wait=1").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_follows_a_job_to_its_end_and_resumes() {
    let slow = slow_ffmpeg();
    let runner = Runner::start(&[
        "--ffmpeg",
        slow.to_str().unwrap(),
        "--max-event-streams-per-owner",
        "1",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let audio = make_audio(tmp.path(), "clip.mp3", 6);
    let id = upload_file(&runner, "u", &audio).await;
    let other = upload_file(&runner, "v", &audio).await;

    let events_url = runner.url(&format!("/jobs/{id}/events"));
    let resp = auth(client().get(&events_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    // The owner's one stream is open: a second is refused, another owner's is not.
    let second = auth(client().get(&events_url)).send().await.unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    assert_error(
        &second.json().await.unwrap(),
        "429",
        "too_many_event_streams",
    );
    let others = auth(client().get(runner.url(&format!("/jobs/{other}/events"))))
        .send()
        .await
        .unwrap();
    assert_eq!(others.status(), 200);
    drop(others);

    let events: Vec<Sse> = read_events(resp, Duration::from_secs(40))
        .await
        .into_iter()
        .filter(|e| e.event.is_some())
        .collect();
    let (last, progress) = events.split_last().expect("some events");
    assert_eq!(last.event.as_deref(), Some("completed"), "{events:?}");
    let done: Value = serde_json::from_str(last.data.as_deref().unwrap()).unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], id.as_str());
    assert!(progress.len() >= 2, "{events:?}");
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let percents: Vec<u64> = progress
        .iter()
        .map(|e| {
            assert_eq!(e.event.as_deref(), Some("progress"));
            let job: Value = serde_json::from_str(e.data.as_deref().unwrap()).unwrap();
            job["progress"].as_u64().unwrap()
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    // Resuming after the last progress event: only the final event is sent again.
    let resume_from = progress.last().unwrap().id.clone().unwrap();
    let resp = auth(client().get(&events_url))
        .header("last-event-id", &resume_from)
        .send()
        .await
        .unwrap();
    let resumed: Vec<Sse> = read_events(resp, Duration::from_secs(10))
        .await
        .into_iter()
        .filter(|e| e.event.is_some())
        .collect();
    assert_eq!(resumed, std::slice::from_ref(last));
    // A client that has everything gets no event; a made-up id is refused.
    let resp = auth(client().get(&events_url))
        .header("last-event-id", last.id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let rest = read_events(resp, Duration::from_secs(10)).await;
    assert!(rest.iter().all(|e| e.event.is_none()), "{rest:?}");
    let resp = auth(client().get(&events_url))
        .header("last-event-id", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = auth(client().get(runner.url("/jobs/job_0123456789abcdef0123456789abcdef/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
