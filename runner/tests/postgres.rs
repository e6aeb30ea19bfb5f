//! Several real runner processes sharing one PostgreSQL job store and one spool
//! directory: crash take-over, cancels across runners, no job lost or done twice, and a
//! database restart.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::postgres::PgCluster;
use common::*;
use serde_json::Value;
use spinmesh_e2e::clips::ffmpeg_failing_while_switched_on;

/// Short leases, so a crashed runner's job is taken over within seconds.
const LEASE_TTL: &str = "3s";

/// A PostgreSQL cluster and a spool directory for runners to share.
struct Shared {
    postgres: PgCluster,
    tmp: tempfile::TempDir,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            postgres: PgCluster::start(),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn spool(&self) -> PathBuf {
        self.tmp.path().join("spool")
    }

    /// Starts a runner with one worker on the shared database and spool.
    fn runner(&self, extra: &[&str]) -> Runner {
        let url = self.postgres.url();
        let mut args = vec![
            "--database-url",
            &url,
            "--lease-ttl",
            LEASE_TTL,
            "--workers",
            "1",
        ];
        args.extend_from_slice(extra);
        Runner::start_on(&self.spool(), &args, self.tmp.path())
    }
}

async fn upload(runner: &Runner, path: &std::path::Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    let resp = upload_chunked(runner, "u", name, std::fs::read(path).unwrap()).await;
    assert_eq!(resp.status(), 202, "{}", runner.log_text());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts a slow conversion of a 20 s clip on one runner, starts a second runner (with
/// `extra` flags) while the first holds the job, then SIGKILLs the first. Returns the
/// survivor and the job id.
async fn kill_the_converting_runner(shared: &Shared, extra: &[&str]) -> (Runner, String) {
    let slow = slow_ffmpeg();
    let mut args = vec!["--ffmpeg", slow.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut first = shared.runner(&args);
    let audio = make_audio(shared.tmp.path(), "long.mp3", 20);
    let id = upload(&first, &audio).await;
    poll_job(&first, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;
    let second = shared.runner(extra);
    first.kill();
    (second, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_runner_finishes_the_job_of_a_killed_one() {
    let shared = Shared::new();
    let (second, id) = kill_the_converting_runner(&shared, &[]).await;
    let job = poll_job(&second, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert!(
        second
            .log_text()
            .contains("re-queued job whose runner stopped renewing its lease"),
        "{}",
        second.log_text()
    );
    let duration = download_duration(&second, &id, shared.tmp.path()).await;
    assert!((duration - 20.0).abs() < 1.0, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_gives_up_on_a_job_that_used_its_attempts() {
    let shared = Shared::new();
    let (second, id) = kill_the_converting_runner(&shared, &["--max-attempts", "1"]).await;
    let job = poll_job(&second, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"], "Conversion was interrupted too many times");
    assert_eq!(job["attempts"], 1, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_runner_that_holds_the_job() {
    let shared = Shared::new();
    let slow = slow_ffmpeg();
    let holder = shared.runner(&["--ffmpeg", slow.to_str().unwrap()]);
    let audio = make_audio(shared.tmp.path(), "long.mp3", 120);
    let id = upload(&holder, &audio).await;
    poll_job(&holder, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;
    // Started only now, so the job cannot be claimed by it instead of the holder.
    let other = shared.runner(&[]);
    assert!(
        !processes_mentioning(&id).is_empty(),
        "ffmpeg should be running"
    );

    let resp = auth(client().delete(other.url(&format!("/jobs/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "cancelled");
    // The notification normally arrives in milliseconds; the bound is for a busy machine.
    eventually(
        "ffmpeg on the holding runner killed",
        Duration::from_secs(20),
        || processes_mentioning(&id).is_empty(),
    )
    .await;
    eventually("files removed", Duration::from_secs(30), || {
        holder.files_of(&id).is_empty()
    })
    .await;
    let (_, job) = get_json(&holder, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "cancelled");
    metric_reaches(&holder, "spinmesh_runner_workers_busy", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_to_two_runners_complete_exactly_once() {
    const UPLOADS: usize = 20;
    let shared = Shared::new();
    // One owner uploads them all, more than the default per-owner quota allows.
    let quota = ["--max-queued-per-owner", "20"];
    let runners = [shared.runner(&quota), shared.runner(&quota)];
    let video = make_video(shared.tmp.path(), "clip.mp4", 1);
    let ids = upload_concurrently(&runners, &video, UPLOADS).await;
    for id in &ids {
        let job = poll_job(&runners[0], id, is_finished).await.pop().unwrap();
        assert_eq!(job["status"], "completed", "{job}");
    }
    let (_, list) = get_json(&runners[1], "/jobs?limit=100").await;
    assert_eq!(list.as_array().unwrap().len(), UPLOADS);

    // Each job's conversion was recorded as completed by exactly one runner, once.
    let logs: Vec<String> = runners.iter().map(|r| r.log_text()).collect();
    assert_each_completed_once(&logs, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_ride_out_a_postgres_restart() {
    let shared = Shared::new();
    let slow = slow_ffmpeg();
    let converting = shared.runner(&["--ffmpeg", slow.to_str().unwrap()]);
    let audio = make_audio(shared.tmp.path(), "long.mp3", 8);
    let id = upload(&converting, &audio).await;
    poll_job(&converting, &id, |j| {
        status_is(j, "running") && j["progress"].as_u64() > Some(0)
    })
    .await;
    // Started only now, so the job cannot be claimed by it instead of the slow runner.
    let other = shared.runner(&[]);

    shared.postgres.stop();
    for runner in [&converting, &other] {
        let end = std::time::Instant::now() + JOB_DEADLINE;
        loop {
            let resp = client().get(runner.url("/healthz")).send().await.unwrap();
            if resp.status() == 503 {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["code"], "degraded", "{body}");
                assert_eq!(body["status"], "503", "{body}");
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "/healthz never reported degraded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    shared.postgres.resume();

    // Both runners serve again, the interrupted job completes, and new uploads work.
    let job = poll_job(&other, &id, is_finished).await.pop().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    let video = make_video(shared.tmp.path(), "clip.mp4", 1);
    let later = upload(&other, &video).await;
    let job = poll_job(&converting, &later, is_finished)
        .await
        .pop()
        .unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    for runner in [&converting, &other] {
        let resp = client().get(runner.url("/healthz")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let duration = download_duration(&converting, &id, shared.tmp.path()).await;
    assert!((duration - 8.0).abs() < 1.0, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_once_across_runners_and_followed_from_either() {
    let shared = Shared::new();
    let (ffmpeg, switch) = ffmpeg_failing_while_switched_on(shared.tmp.path());
    let args = ["--ffmpeg", ffmpeg.to_str().unwrap(), "--max-attempts", "1"];
    let first = shared.runner(&args);
    let second = shared.runner(&args);
    let video = make_video(shared.tmp.path(), "clip.mp4", 1);
    let id = upload(&first, &video).await;
    let failed = poll_job(&first, &id, is_finished).await.pop().unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");

    // One retry on each runner at once: the job is re-queued once.
    std::fs::remove_file(&switch).unwrap();
    let (a, b) = tokio::join!(retry(&first, &id), retry(&second, &id));
    let mut answers = [a, b];
    answers.sort_by_key(|(status, _)| *status);
    let [(accepted, job), (refused, refusal)] = answers;
    assert_eq!(
        (accepted, job["status"].as_str()),
        (202, Some("queued")),
        "{job}"
    );
    assert_eq!(refused, 409, "{refusal}");
    assert_eq!(refusal["code"], "job_not_retryable");

    // A long poll on either runner hears of the conversion, wherever it runs.
    let started = std::time::Instant::now();
    let (status, moved) = get_json(&second, &format!("/jobs/{id}?wait=20")).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?} {moved}",
        started.elapsed()
    );
    let done = poll_job(&second, &id, is_finished).await.pop().unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let requeued = [&first, &second]
        .iter()
        .map(|runner| {
            runner
                .log_text()
                .matches("job re-queued on request")
                .count()
        })
        .sum::<usize>();
    assert_eq!(requeued, 1);
    let (status, body) = retry(&first, &id).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("job_not_retryable"))
    );
}
