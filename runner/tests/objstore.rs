//! Runners whose media live in S3-compatible object storage (moto's server on loopback),
//! sharing one PostgreSQL job store, each with its own scratch directory: any runner
//! serves any job, a killed or stopped runner's job is finished by another, retention
//! and cancels delete the objects, and an object store outage refuses uploads cleanly.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::postgres::PgCluster;
use common::s3::S3Server;
use common::*;
use serde_json::Value;

/// Short leases, so a crashed runner's job is taken over within seconds.
const LEASE_TTL: &str = "3s";

/// PostgreSQL and an S3 server for runners to share.
struct Shared {
    postgres: PgCluster,
    s3: S3Server,
    tmp: tempfile::TempDir,
    runners_started: AtomicUsize,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            postgres: PgCluster::start(),
            s3: S3Server::start(),
            tmp: tempfile::tempdir().unwrap(),
            runners_started: AtomicUsize::new(0),
        }
    }

    /// Starts a runner on the shared database and bucket, with a scratch directory of
    /// its own and (unless `extra` says otherwise) one worker.
    fn runner(&self, extra: &[&str]) -> Runner {
        let url = self.postgres.url();
        let s3 = self.s3.runner_args();
        let mut args = vec!["--database-url", &url, "--lease-ttl", LEASE_TTL];
        args.extend(s3.iter().map(String::as_str));
        if !extra.contains(&"--workers") {
            args.extend(["--workers", "1"]);
        }
        args.extend_from_slice(extra);
        let n = self.runners_started.fetch_add(1, Ordering::Relaxed);
        let scratch = self.tmp.path().join(format!("scratch-{n}"));
        Runner::start_on(&scratch, &args, self.tmp.path())
    }
}

async fn upload(runner: &Runner, path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    let resp = upload_chunked(runner, "u", name, std::fs::read(path).unwrap()).await;
    assert_eq!(resp.status(), 202, "{}", runner.log_text());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn completed(runner: &Runner, id: &str) -> Value {
    let job = poll_job(runner, id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    job
}

fn output_key(id: &str, attempt: u64) -> String {
    format!("{}/jobs/{id}/output.{attempt}.mp3", common::s3::PREFIX)
}

/// `GET /jobs/{id}/output` with extra headers: (status, headers, body).
async fn get_output(
    runner: &Runner,
    id: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = auth(client().get(runner.url(&format!("/jobs/{id}/output"))));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {headers:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_received_by_one_runner_downloads_through_the_other() {
    let shared = Shared::new();
    let (a, b) = (shared.runner(&[]), shared.runner(&[]));
    // Indexed first, so the receiving runner converts it while it arrives.
    let video = make_faststart_video(shared.tmp.path(), "clip.mp4", 3);
    let id = upload(&a, &video).await;
    let job = completed(&b, &id).await;
    assert_eq!(
        metric(&a, "spinmesh_runner_conversions_started_early_total").await,
        1.0
    );
    let len = job["output_bytes"].as_u64().unwrap();

    // The whole MP3 through the runner that did not receive the upload.
    let (status, headers, full) = get_output(&b, &id, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(full.len() as u64, len);
    assert_eq!(header(&headers, "content-type"), "audio/mpeg");
    assert_eq!(header(&headers, "content-length"), len.to_string());
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert!(header(&headers, "content-disposition").contains("clip.mp3"));
    let etag = header(&headers, "etag").to_string();
    let mp3 = shared.tmp.path().join("out.mp3");
    std::fs::write(&mp3, &full).unwrap();
    let (codec, seconds) = probe(&mp3);
    assert_eq!(codec, "mp3");
    assert!((seconds - 3.0).abs() < 1.0, "duration {seconds}");
    // Both runners describe the one object the same way.
    let (_, a_headers, a_full) = get_output(&a, &id, &[]).await;
    assert_eq!(a_full, full);
    assert_eq!(header(&a_headers, "etag"), etag);
    assert_eq!(
        header(&a_headers, "last-modified"),
        header(&headers, "last-modified")
    );

    // Single ranges, streamed from the object store.
    let (status, headers, part) = get_output(&b, &id, &[("range", "bytes=100-1099")]).await;
    assert_eq!(status, 206);
    assert_eq!(part, full[100..1100]);
    assert_eq!(
        header(&headers, "content-range"),
        format!("bytes 100-1099/{len}")
    );
    assert_eq!(header(&headers, "content-length"), "1000");
    let (status, _, tail) = get_output(&a, &id, &[("range", "bytes=-500")]).await;
    assert_eq!(status, 206);
    assert_eq!(tail, full[full.len() - 500..]);
    let (status, _, rest) =
        get_output(&b, &id, &[("range", "bytes=1000-"), ("if-range", &etag)]).await;
    assert_eq!(status, 206);
    assert_eq!(rest, full[1000..]);
    let (status, _, whole) = get_output(
        &b,
        &id,
        &[("range", "bytes=1000-"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!((status, whole.len()), (200, full.len()));
    let (status, headers, _) = get_output(&b, &id, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), format!("bytes */{len}"));

    // The finished job keeps its MP3 only, and no runner keeps scratch files of it.
    assert_eq!(shared.s3.keys_of(&id).await, [output_key(&id, 1)]);
    eventually("scratch files removed", Duration::from_secs(30), || {
        a.files_of(&id).is_empty() && b.files_of(&id).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_runner_finishes_the_job_of_a_killed_one() {
    let shared = Shared::new();
    let slow = slow_ffmpeg();
    let mut first = shared.runner(&["--ffmpeg", slow.to_str().unwrap()]);
    let audio = make_audio(shared.tmp.path(), "long.mp3", 20);
    let id = upload(&first, &audio).await;
    poll_job(&first, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;
    // Started only now, so the job cannot be claimed by it instead of the first.
    let second = shared.runner(&[]);
    first.kill();

    let job = completed(&second, &id).await;
    assert_eq!(job["attempts"], 2, "{job}");
    let duration = download_duration(&second, &id, shared.tmp.path()).await;
    assert!((duration - 20.0).abs() < 1.0, "duration {duration}");
    assert_eq!(shared.s3.keys_of(&id).await, [output_key(&id, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_stopped_by_sigterm_hands_its_job_back() {
    let shared = Shared::new();
    let slow = slow_ffmpeg();
    // The fixture's shutdown grace (2 s) is far shorter than the conversion.
    let mut first = shared.runner(&["--ffmpeg", slow.to_str().unwrap()]);
    let audio = make_audio(shared.tmp.path(), "long.mp3", 30);
    let id = upload(&first, &audio).await;
    poll_job(&first, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;
    let second = shared.runner(&[]);
    let status = first.signal_and_wait(nix::sys::signal::Signal::SIGTERM, JOB_DEADLINE);
    assert!(status.success(), "{status}");
    assert!(
        first
            .log_text()
            .contains("conversion interrupted by shutdown; job re-queued"),
        "{}",
        first.log_text()
    );

    // Released, not reaped: the interrupted attempt was not counted.
    let job = completed(&second, &id).await;
    assert_eq!(job["attempts"], 1, "{job}");
    let duration = download_duration(&second, &id, shared.tmp.path()).await;
    assert!((duration - 30.0).abs() < 1.0, "duration {duration}");
    assert!(first.files_of(&id).is_empty(), "{:?}", first.files_of(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_cancels_delete_the_objects() {
    let shared = Shared::new();
    let slow = slow_ffmpeg();
    let runner = shared.runner(&[
        "--ffmpeg",
        slow.to_str().unwrap(),
        "--workers",
        "2",
        "--retention",
        "3s",
        "--sweep-interval",
        "1s",
    ]);
    let short = make_audio(shared.tmp.path(), "short.mp3", 1);
    let long = make_audio(shared.tmp.path(), "long.mp3", 120);

    let kept = upload(&runner, &short).await;
    completed(&runner, &kept).await;
    // A failed job's input stays for a retry, until retention.
    let resp = upload_zeros(&runner, 256 << 10).await;
    let failed = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = poll_job(&runner, &failed, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    let cancelled = upload(&runner, &long).await;
    poll_job(&runner, &cancelled, |j| status_is(j, "running")).await;
    assert_eq!(
        shared.s3.keys_of(&cancelled).await,
        [format!("{}/jobs/{cancelled}/input", common::s3::PREFIX)]
    );
    let resp = auth(client().delete(runner.url(&format!("/jobs/{cancelled}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(shared.s3.keys_of(&cancelled).await.is_empty());

    // Retention: the finished job's MP3 goes, and its download answers 410.
    let job = poll_job(&runner, &kept, |j| j["expired"] == true)
        .await
        .pop()
        .unwrap();
    assert_eq!(job["status"], "completed");
    let (status, _, body) = get_output(&runner, &kept, &[]).await;
    assert_eq!(status, 410);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "output_expired");
    poll_job(&runner, &failed, |j| j["expired"] == true).await;
    // The sweep of the cancelled job (it expired too), the completed and the failed one
    // leave an empty bucket.
    let end = std::time::Instant::now() + JOB_DEADLINE;
    loop {
        let keys = shared.s3.keys().await;
        if keys.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < end, "objects left: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_503_while_the_object_store_is_down() {
    let mut shared = Shared::new();
    let (a, b) = (shared.runner(&[]), shared.runner(&[]));
    let audio = make_audio(shared.tmp.path(), "clip.mp3", 2);
    let data = std::fs::read(&audio).unwrap();

    shared.s3.stop();
    let resp = upload_chunked(&a, "u", "clip.mp3", data.clone()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "503", "{body}");
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    assert!(
        !body["message"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    assert_eq!(job_count(&b).await, 0, "no job may be recorded");
    assert!(a.spool_files("incoming").is_empty());
    for runner in [&a, &b] {
        let resp = client().get(runner.url("/healthz")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "degraded", "{body}");
    }

    // Back (empty, as moto starts): health and uploads recover.
    shared.s3.resume();
    for runner in [&a, &b] {
        let end = std::time::Instant::now() + JOB_DEADLINE;
        while client()
            .get(runner.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {
            assert!(std::time::Instant::now() < end, "/healthz stayed degraded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let id = upload(&b, &audio).await;
    completed(&a, &id).await;
    let duration = download_duration(&a, &id, shared.tmp.path()).await;
    assert!((duration - 2.0).abs() < 1.0, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_leaves_no_multipart_upload_behind() {
    let shared = Shared::new();
    let runner = shared.runner(&[]);
    let upload = HeldUpload::start(&runner, "u", "big.bin");
    // More than two parts' worth, so parts were sent before the client goes.
    let data: Vec<u8> = (0..12u32 << 20).map(|n| (n % 251) as u8).collect();
    upload.send(&data).await;
    eventually(
        "a multipart upload in progress",
        Duration::from_secs(60),
        || shared.s3.open_multipart_uploads() == 1,
    )
    .await;
    // The runner answers or the connection breaks; either way the upload is over.
    let _ = upload.abort().await;

    eventually(
        "the multipart upload aborted",
        Duration::from_secs(60),
        || shared.s3.open_multipart_uploads() == 0,
    )
    .await;
    assert!(shared.s3.keys().await.is_empty());
    assert_eq!(job_count(&runner).await, 0);
    eventually("scratch removed", Duration::from_secs(30), || {
        runner.spool_files("incoming").is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_to_two_runners_complete_exactly_once() {
    const UPLOADS: usize = 20;
    let shared = Shared::new();
    // One owner uploads them all at once: past the default per-owner quota on purpose.
    let quota = ["--max-queued-per-owner", "20"];
    let runners = [shared.runner(&quota), shared.runner(&quota)];
    let video = make_video(shared.tmp.path(), "clip.mp4", 1);
    let ids = upload_concurrently(&runners, &video, UPLOADS).await;
    for (n, id) in ids.iter().enumerate() {
        let job = completed(&runners[n % 2], id).await;
        let attempt = job["attempts"].as_u64().unwrap();
        assert_eq!(shared.s3.keys_of(id).await, [output_key(id, attempt)]);
    }

    // Each job's conversion was recorded as completed by exactly one runner, once.
    let logs: Vec<String> = runners.iter().map(|r| r.log_text()).collect();
    assert_each_completed_once(&logs, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_to_the_object_store_without_growing_memory() {
    let shared = Shared::new();
    let runner = shared.runner(&[]);
    let before = peak_rss_kib(runner.pid());
    let size = 100usize << 20;
    // Generated on the fly, so the test itself does not hold 100 MB either.
    let resp = upload_zeros(&runner, size).await;
    assert_eq!(resp.status(), 202, "{}", runner.log_text());
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["size_bytes"], size as u64);
    let after = peak_rss_kib(runner.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("peak RSS {before} KiB -> {after} KiB for a 100 MiB upload to the object store");
    // Parts in flight take 15 MiB at most.
    assert!(
        grown_mib < 40,
        "peak RSS grew by {grown_mib} MiB for a 100 MiB upload ({before} KiB -> {after} KiB)"
    );
    // A worker fetched all of it for ffmpeg, which found no media in it; a failed job
    // keeps its input object (a retry converts it again) until retention, nothing else.
    let id = job["id"].as_str().unwrap();
    let job = poll_job(&runner, id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Input is not a valid media file", "{job}");
    assert_eq!(
        shared.s3.keys_of(id).await,
        [format!("{}/jobs/{id}/input", common::s3::PREFIX)]
    );
}
