//! Converting while the upload is still arriving, against the real binary and ffmpeg.
//!
//! Each test holds the last piece of an upload back and looks at the runner meanwhile.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const BUSY: &str = "spinmesh_runner_workers_busy";
const STARTED_EARLY: &str = "spinmesh_runner_conversions_started_early_total";
const FALLBACKS: &str = "spinmesh_runner_early_start_fallbacks_total";

/// Splits a file so that the last 64 KiB can be held back.
fn split_tail(data: &[u8]) -> (&[u8], &[u8]) {
    data.split_at(data.len() - 64 * 1024)
}

/// Starts uploading a 6 s MP4 indexed first, sends all but its last 64 KiB and waits
/// until the runner converts it. Returns the upload and the part held back.
async fn held_faststart_upload(runner: &Runner, tmp: &std::path::Path) -> (HeldUpload, Vec<u8>) {
    let data = std::fs::read(make_faststart_video(tmp, "clip.mp4", 6)).unwrap();
    let (body, tail) = split_tail(&data);
    let upload = HeldUpload::start(runner, "u1", "clip.mp4");
    upload.send(body).await;
    metric_reaches(runner, BUSY, 1.0).await;
    (upload, tail.to_vec())
}

/// Checks that `job` was queued as usual and converted without an early start.
async fn converted_after_the_upload(runner: &Runner, job: Value) {
    assert_eq!(job["status"], "queued");
    let id = job["id"].as_str().unwrap();
    let done = poll_job(runner, id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(metric(runner, STARTED_EARLY).await, 0.0);
}

async fn job_of(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 202);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faststart_mp4_is_converted_while_it_arrives() {
    // Patience well beyond any pause a loaded machine puts between our requests.
    let runner = Runner::start(&["--early-start-patience", "10m"]);
    let tmp = tempfile::tempdir().unwrap();
    // ffmpeg is running before the upload has finished.
    let (upload, tail) = held_faststart_upload(&runner, tmp.path()).await;
    assert_eq!(metric(&runner, STARTED_EARLY).await, 1.0);
    assert!(runner.spool_files("inputs").is_empty(), "still arriving");
    upload.send(&tail).await;
    let job = job_of(upload.finish().await).await;
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["attempts"], 1);
    assert!(job["started_at"].is_string());

    let id = job["id"].as_str().unwrap();
    let done = poll_job(&runner, id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    let seconds = download_duration(&runner, id, tmp.path()).await;
    assert!((seconds - 6.0).abs() < 0.5, "MP3 lasts {seconds}s");
    assert_eq!(metric(&runner, FALLBACKS).await, 0.0);
    assert!(runner.spool_files("inputs").is_empty());
    assert!(
        runner
            .log_text()
            .contains("conversion started while the upload is arriving")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mp4_indexed_at_the_end_waits_for_the_whole_upload() {
    let runner = Runner::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(make_video(tmp.path(), "clip.mp4", 3)).unwrap();
    let (body, tail) = split_tail(&data);

    let upload = HeldUpload::start(&runner, "u1", "clip.mp4");
    upload.send(body).await;
    upload.send(tail).await;
    let job = job_of(upload.finish().await).await;
    // The early-start counter, not a pause, says no conversion began before the last byte.
    converted_after_the_upload(&runner, job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_stops_its_ffmpeg_and_leaves_nothing() {
    let runner = Runner::start(&["--early-start-patience", "10m"]);
    let tmp = tempfile::tempdir().unwrap();
    let (upload, _) = held_faststart_upload(&runner, tmp.path()).await;
    // ffmpeg's command line names its output in the spool; the runner's does not.
    let outputs = runner.spool.join("outputs").to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&outputs).is_empty(),
        "ffmpeg is running"
    );

    let result = upload.abort().await;
    assert!(result.is_err() || result.unwrap().status() == 400);
    metric_reaches(&runner, BUSY, 0.0).await;
    eventually("ffmpeg gone", Duration::from_secs(30), || {
        processes_mentioning(&outputs).is_empty()
    })
    .await;
    eventually("files gone", Duration::from_secs(30), || {
        ["incoming", "inputs", "outputs"]
            .iter()
            .all(|dir| runner.spool_files(dir).is_empty())
    })
    .await;
    assert_eq!(job_count(&runner).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_client_loses_the_head_start_but_not_the_job() {
    let runner = Runner::start(&["--early-start-patience", "300ms"]);
    let tmp = tempfile::tempdir().unwrap();
    let (upload, tail) = held_faststart_upload(&runner, tmp.path()).await;
    // The client goes quiet for longer than the runner's patience: the worker is given
    // back while the upload is still open.
    metric_reaches(&runner, BUSY, 0.0).await;
    upload.send(&tail).await;
    let job = job_of(upload.finish().await).await;
    let id = job["id"].as_str().unwrap();

    let done = poll_job(&runner, id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "the head start is not an attempt");
    assert_eq!(metric(&runner, FALLBACKS).await, 1.0);
    let seconds = download_duration(&runner, id, tmp.path()).await;
    assert!((seconds - 6.0).abs() < 0.5, "MP3 lasts {seconds}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_starts_can_be_turned_off() {
    let runner = Runner::start(&["--early-start-patience", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(make_faststart_video(tmp.path(), "clip.mp4", 2)).unwrap();
    let job = job_of(upload_chunked(&runner, "u", "clip.mp4", data).await).await;
    converted_after_the_upload(&runner, job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_that_looks_streamable_still_fails_with_a_reason() {
    let runner = Runner::start(&[]);
    // `ftyp`, then a `moov` box full of garbage.
    let mut corrupt = vec![0, 0, 0, 0x18];
    corrupt.extend_from_slice(b"ftypmp42\0\0\0\0mp42isom");
    corrupt.extend_from_slice(&[0, 3, 0x0d, 0x48]);
    corrupt.extend_from_slice(b"moov");
    corrupt.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));

    let job = job_of(upload_chunked(&runner, "u", "broken.mp4", corrupt).await).await;
    let id = job["id"].as_str().unwrap();
    let done = poll_job(&runner, id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["error"].as_str().unwrap();
    assert!(
        [
            "Input is not a valid media file",
            "Input has no audio stream"
        ]
        .contains(&reason),
        "{reason}"
    );
    assert_eq!(done["attempts"], 1, "bad input is not retried");
    assert_eq!(metric(&runner, STARTED_EARLY).await, 1.0);
    assert_eq!(metric(&runner, FALLBACKS).await, 1.0);
    assert_eq!(runner.files_of(id), failed_job_files(id));
}
