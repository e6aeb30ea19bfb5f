//! Sharing one runner between owners, with real runner processes and real ffmpeg:
//! fair scheduling (SQLite and PostgreSQL), per-owner quotas, output caps, and the free
//! disk check while converting.

mod common;

use std::path::{Path, PathBuf};

use common::postgres::PgCluster;
use common::*;
use serde_json::Value;

/// Uploads `path` for `owner` with a Content-Length; returns the response.
async fn upload_as(runner: &Runner, owner: &str, path: &Path) -> reqwest::Response {
    let name = path.file_name().unwrap().to_str().unwrap();
    auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", owner)
        .header("x-filename", percent_encode(name))
        .body(std::fs::read(path).unwrap())
        .send()
        .await
        .expect("upload request")
}

/// Uploads `path` for `owner`, expecting it to be accepted; returns the job id.
async fn accepted(runner: &Runner, owner: &str, path: &Path) -> String {
    let resp = upload_as(runner, owner, path).await;
    assert_eq!(resp.status(), 202, "{}", runner.log_text());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Checks a refusal's status and JSON error shape; returns its `Retry-After`, if any.
async fn refused(resp: reqwest::Response, status: u16, code: &str) -> Option<String> {
    assert_eq!(resp.status(), status);
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{body}");
    retry_after
}

/// Waits for job `id` to finish and returns its final JSON.
async fn finished(runner: &Runner, id: &str) -> Value {
    poll_job(runner, id, is_finished).await.pop().unwrap()
}

/// Job ids in the order their conversions started, from the runner's log (one worker,
/// so this is the order the jobs were claimed in).
fn start_order(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("conversion started"))
        .filter_map(|line| {
            let at = line.find("job_id=")? + "job_id=".len();
            Some(line[at..].split([' ', '}']).next()?.to_string())
        })
        .collect()
}

/// One owner queues five jobs, each converting for several seconds (ffmpeg at real-time
/// speed); another owner then uploads one. That job must be the next to start once the
/// conversion running when it arrived is done, ahead of the whole backlog.
async fn backlog_does_not_delay_another_owner(runner: &Runner, dir: &Path) {
    let long = make_audio(dir, "long.mp3", 4);
    let short = make_audio(dir, "short.mp3", 1);
    let mut backlog = Vec::new();
    for _ in 0..5 {
        backlog.push(accepted(runner, "alice", &long).await);
    }
    let bob = accepted(runner, "bob", &short).await;

    // What had left the queue when bob's job arrived: the one conversion running (the
    // uploads take milliseconds, each conversion seconds), perhaps one that finished.
    let mut started_before_bob = Vec::new();
    let mut still_queued = 0;
    for id in &backlog {
        let (_, job) = get_json(runner, &format!("/jobs/{id}")).await;
        if status_is(&job, "queued") {
            still_queued += 1;
        } else {
            started_before_bob.push(id.clone());
        }
    }
    assert!(
        still_queued >= 2,
        "alice's backlog was gone before bob uploaded; the test proves nothing"
    );

    for id in backlog.iter().chain([&bob]) {
        assert_eq!(finished(runner, id).await["status"], "completed");
    }
    let order = start_order(&runner.log_text());
    assert_eq!(order.len(), 6, "{order:?}");
    let n = started_before_bob.len();
    assert_eq!(order[..n], started_before_bob[..], "{order:?}");
    assert_eq!(
        order[n], bob,
        "bob waited for more than one conversion: {order:?}"
    );
    // Alice's own jobs keep their order.
    let alices: Vec<&String> = order.iter().filter(|id| **id != bob).collect();
    assert_eq!(alices, backlog.iter().collect::<Vec<_>>());
}

fn one_slow_worker() -> Vec<String> {
    [
        "--workers",
        "1",
        "--ffmpeg",
        slow_ffmpeg().to_str().unwrap(),
        "--early-start-patience",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn one_owners_backlog_delays_another_owner_by_one_conversion_at_most() {
    let args = one_slow_worker();
    let runner = Runner::start(&as_strs(&args));
    let dir = tempfile::tempdir().unwrap();
    backlog_does_not_delay_another_owner(&runner, dir.path()).await;
}

#[tokio::test]
async fn scheduling_is_fair_on_postgres_too() {
    let postgres = PgCluster::start();
    let url = postgres.url();
    let mut args = one_slow_worker();
    args.extend(["--database-url".to_string(), url]);
    let runner = Runner::start(&as_strs(&args));
    let dir = tempfile::tempdir().unwrap();
    backlog_does_not_delay_another_owner(&runner, dir.path()).await;
}

#[tokio::test]
async fn unfinished_jobs_quota_refuses_with_retry_after_until_a_job_finishes() {
    let mut args = one_slow_worker();
    args.extend(["--max-queued-per-owner".to_string(), "2".to_string()]);
    let runner = Runner::start(&as_strs(&args));
    let dir = tempfile::tempdir().unwrap();
    let clip = make_audio(dir.path(), "clip.mp3", 2);

    let first = accepted(&runner, "alice", &clip).await;
    accepted(&runner, "alice", &clip).await;
    let retry_after = refused(
        upload_as(&runner, "alice", &clip).await,
        429,
        "job_quota_exceeded",
    )
    .await;
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(seconds > 0);
    // Chunked, the refusal comes before the body is stored.
    let resp = upload_chunked(&runner, "alice", "clip.mp3", std::fs::read(&clip).unwrap()).await;
    refused(resp, 429, "job_quota_exceeded").await;
    assert!(runner.spool_files("incoming").is_empty());
    // The quota is per owner.
    accepted(&runner, "bob", &clip).await;

    // A finished job frees its place.
    assert_eq!(finished(&runner, &first).await["status"], "completed");
    accepted(&runner, "alice", &clip).await;
    refused(
        upload_as(&runner, "alice", &clip).await,
        429,
        "job_quota_exceeded",
    )
    .await;
    // So does a cancelled one.
    let (_, jobs) = get_json(&runner, "/jobs?owner=alice").await;
    let queued = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|job| status_is(job, "queued"))
        .expect("alice has a queued job")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(delete(&runner, &queued).await.0, 200);
    accepted(&runner, "alice", &clip).await;
}

async fn delete(runner: &Runner, id: &str) -> (u16, Value) {
    let resp = auth(client().delete(runner.url(&format!("/jobs/{id}"))))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stored_bytes_quota_counts_inputs_and_outputs_until_they_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_audio(dir.path(), "clip.mp3", 3);
    let size = std::fs::metadata(&clip).unwrap().len();
    // Room for one input and a bit: the second upload does not fit while the first
    // job's input, then its output, is kept.
    let quota = (size + size / 2).to_string();
    let runner = Runner::start(&["--workers", "1", "--max-spool-bytes-per-owner", &quota]);

    let first = accepted(&runner, "alice", &clip).await;
    let done = finished(&runner, &first).await;
    assert_eq!(done["status"], "completed");
    let output = done["output_bytes"].as_u64().unwrap();
    assert!(
        output + size > size + size / 2,
        "the output alone leaves no room"
    );

    refused(
        upload_as(&runner, "alice", &clip).await,
        507,
        "storage_quota_exceeded",
    )
    .await;
    // Without a Content-Length the upload is stopped once it passes the quota.
    let resp = upload_chunked(&runner, "alice", "clip.mp3", std::fs::read(&clip).unwrap()).await;
    refused(resp, 507, "storage_quota_exceeded").await;
    assert!(runner.spool_files("incoming").is_empty());
    assert!(runner.spool_files("inputs").is_empty());
    accepted(&runner, "bob", &clip).await;

    // Deleting the finished job frees its bytes.
    assert_eq!(delete(&runner, &first).await.0, 200);
    accepted(&runner, "alice", &clip).await;
}

/// An MP3 whose header says it lasts about 4 s while its audio runs for 21: one second
/// at 320 kbit/s, then 20 at 32 kbit/s, without a Xing header, so ffmpeg estimates the
/// duration from the first frames' bitrate.
fn make_lying_mp3(dir: &Path) -> PathBuf {
    let part = |name: &str, seconds: u32, bitrate: &str| {
        let path = dir.join(name);
        let sine = format!("sine=frequency=300:sample_rate=44100:duration={seconds}");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &sine,
            "-c:a",
            "libmp3lame",
            "-b:a",
            bitrate,
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            path.to_str().unwrap(),
        ]);
        std::fs::read(path).unwrap()
    };
    let mut bytes = part("loud.mp3", 1, "320k");
    bytes.extend(part("quiet.mp3", 20, "32k"));
    let path = dir.join("lying.mp3");
    std::fs::write(&path, bytes).unwrap();
    let (_, declared) = probe(&path);
    assert!(declared < 8.0, "ffprobe believes the header: {declared}");
    path
}

#[tokio::test]
async fn audio_longer_than_the_limit_fails_with_the_reason() {
    let runner = Runner::start(&["--max-output-duration", "10s"]);
    let dir = tempfile::tempdir().unwrap();
    let reason = "Audio is longer than the 10s limit";

    // The header says 12 s: refused as soon as ffmpeg has read it.
    let long = accepted(&runner, "alice", &make_audio(dir.path(), "long.mp3", 12)).await;
    // The header says 4 s but the audio runs for 21: ffmpeg is stopped at the limit, and
    // the job fails rather than keeping a truncated file.
    let lying = accepted(&runner, "alice", &make_lying_mp3(dir.path())).await;
    let fine = accepted(&runner, "alice", &make_audio(dir.path(), "fine.mp3", 9)).await;
    for id in [&long, &lying] {
        let job = finished(&runner, id).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"], reason, "{job}");
        assert_eq!(
            job["attempts"], 1,
            "a permanent failure is not retried: {job}"
        );
        assert_eq!(runner.files_of(id), failed_job_files(id));
    }
    assert_eq!(finished(&runner, &fine).await["status"], "completed");
    let seconds = download_duration(&runner, &fine, dir.path()).await;
    assert!((seconds - 9.0).abs() < 0.5, "{seconds}");
}

#[tokio::test]
async fn output_larger_than_the_limit_fails_with_the_reason() {
    let runner = Runner::start(&["--max-output-bytes", "8000"]);
    let dir = tempfile::tempdir().unwrap();
    let big = accepted(&runner, "alice", &make_audio(dir.path(), "big.mp3", 9)).await;
    let small = accepted(&runner, "alice", &make_audio(dir.path(), "small.mp3", 1)).await;
    let job = finished(&runner, &big).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "Converted audio is larger than the 8000-byte limit"
    );
    assert_eq!(runner.files_of(&big), failed_job_files(&big));
    assert_eq!(finished(&runner, &small).await["status"], "completed");
}

/// Free bytes on the filesystem holding `path`, as the runner computes them.
fn free_space(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path).unwrap();
    #[allow(
        clippy::unnecessary_cast,
        reason = "the field types differ between platforms"
    )]
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    free
}

#[tokio::test]
async fn a_conversion_stops_when_free_disk_runs_low_and_keeps_only_its_input() {
    // The threshold sits well below the free space now, so the upload is accepted; then
    // a file reserving twice that margin takes the filesystem below it mid-conversion.
    // The margins are wide because other processes share the disk.
    const MARGIN: u64 = 2 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let free = free_space(tmp.path());
    assert!(
        free > 4 * MARGIN,
        "the test needs {} GiB of free disk",
        (4 * MARGIN) >> 30
    );
    let min_free = (free - MARGIN).to_string();
    let slow = slow_ffmpeg();
    let runner = Runner::start_on(
        &tmp.path().join("spool"),
        &[
            "--workers",
            "1",
            "--ffmpeg",
            slow.to_str().unwrap(),
            "--max-attempts",
            "1",
            "--min-free-disk",
            &min_free,
        ],
        tmp.path(),
    );
    let clip = make_audio(tmp.path(), "clip.mp3", 30);
    let id = accepted(&runner, "alice", &clip).await;
    poll_job(&runner, &id, |job| {
        status_is(job, "running") && job["progress"].as_u64() > Some(0)
    })
    .await;
    assert!(
        runner.files_of(&id).iter().any(|f| f.ends_with(".part")),
        "ffmpeg is writing its output: {:?}",
        runner.files_of(&id)
    );

    let filler_path = tmp.path().join("filler");
    let filler = std::fs::File::create(&filler_path).unwrap();
    nix::fcntl::fallocate(
        &filler,
        nix::fcntl::FallocateFlags::empty(),
        0,
        (2 * MARGIN) as i64,
    )
    .expect("the filesystem supports fallocate");
    let job = finished(&runner, &id).await;
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();

    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Not enough disk space on the runner", "{job}");
    assert!(job["progress"].as_u64() < Some(100), "{job}");
    // The partial output is gone; the input stays for a retry.
    assert_eq!(runner.files_of(&id), failed_job_files(&id));
}
