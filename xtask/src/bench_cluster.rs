//! The cluster's figures, on the production topology (`spinmesh_e2e::cluster`: runners
//! sharing a PostgreSQL job store and an S3 bucket, two hosts, nginx in front of both):
//! conversion throughput with one runner against two, one worker each, and conversions
//! end to end against bare ffmpeg, measured as `bench_media` measures the single host.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use spinmesh_e2e::cluster::Cluster;

use crate::bench::{BenchApp, sign_up};
use crate::bench_media::{self, Clip};
use crate::bench_report::{ClipLayout, ClusterThroughput, Conversion, Throughput, median};
use crate::build::root;

impl BenchApp for Cluster {
    fn url(&self, path: &str) -> String {
        Cluster::url(self, path)
    }

    fn runner_log(&mut self) -> String {
        (0..self.runner_count())
            .map(|index| self.runner(index).log())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// How the throughput is measured.
pub struct ThroughputPlan {
    /// Jobs uploaded at once in each batch.
    pub jobs: usize,
    /// Batches per configuration.
    pub batches: usize,
}

/// The throughput clip. Conversion time grows with the audio's duration, transfer
/// (client → balancer → host → balancer → runner → bucket, and the bucket back to the
/// converting runner) with the file's size. The 60 s phone clip (47 MB at 6 Mb/s)
/// spends as long uploading to the cluster as in ffmpeg (about 1 s each), which held
/// an earlier two-runner figure to 1.5× while conversion alone scaled 2.2×. Ten minutes
/// of a recorded talk (low-rate video, 96 kb/s audio) is 11 MB for about 7 s of
/// conversion, so conversion bounds a job.
fn throughput_clip() -> Clip {
    Clip::talk(600)
}

/// Status polls during a batch. Completion times come from the runners' logs, so slow
/// polls lose no precision, and fast ones would take CPU from the conversions measured.
const BATCH_POLL_INTERVAL: Duration = Duration::from_secs(1);
const BATCH_DEADLINE: Duration = Duration::from_secs(30 * 60);

pub struct ClusterFigures {
    pub throughput: Result<ClusterThroughput, String>,
    /// `overhead_clip` in each layout, on the two-runner cluster.
    pub conversions: Vec<(ClipLayout, Result<Conversion, String>)>,
}

/// Starts a one-runner and a two-runner cluster side by side (the app configured with
/// `variables`), measures the throughput of both, then `runs` conversions of
/// `overhead_clip` on the two-runner one; whatever fails is reported as not measured.
pub fn figures(
    variables: &[(String, String)],
    plan: &ThroughputPlan,
    overhead_clip: &Clip,
    runs: usize,
) -> ClusterFigures {
    let not_measured = |err: anyhow::Error| {
        let why = format!("{err:#}");
        eprintln!("cluster: not measured: {why}");
        ClusterFigures {
            throughput: Err(why.clone()),
            conversions: ClipLayout::ALL
                .into_iter()
                .map(|layout| (layout, Err(why.clone())))
                .collect(),
        }
    };
    let started = ensure_services()
        .and_then(|()| Ok((start(1, variables, plan)?, start(2, variables, plan)?)));
    let ((mut one, one_token), (mut two, two_token)) = match started {
        Ok(clusters) => clusters,
        Err(err) => return not_measured(err),
    };
    let throughput = throughput((&mut one, &one_token), (&mut two, &two_token), plan)
        .map_err(|err| format!("{err:#}"));
    drop(one);
    ClusterFigures {
        throughput,
        conversions: bench_media::conversions(&mut two, &two_token, overhead_clip, runs),
    }
}

fn ensure_services() -> Result<()> {
    crate::setup::ensure_postgres()?;
    crate::setup::ensure_nginx()?;
    crate::setup::ensure_redis()?;
    crate::setup::ensure_s3_server(&root())
}

/// A cluster of `runners` runners with one worker each, and the benchmark user's token.
fn start(
    runners: usize,
    variables: &[(String, String)],
    plan: &ThroughputPlan,
) -> Result<(Cluster, String)> {
    let builder = variables.iter().fold(
        Cluster::builder().runners(runners),
        |builder, (name, value)| builder.variable(name, value),
    );
    let cluster = builder
        .runner_env("RUNNER_WORKERS", "1")
        // One user uploads each whole batch at once.
        .runner_env("RUNNER_MAX_QUEUED_PER_OWNER", &plan.jobs.to_string())
        .try_start()
        .map_err(|log| anyhow::anyhow!("the {runners}-runner cluster did not start:\n{log}"))?;
    let token = sign_up(&cluster)?;
    Ok((cluster, token))
}

/// Batches on both clusters in the order one, two, two, one, …, so a drift in the
/// machine's load weighs on both alike.
fn throughput(
    one: (&mut Cluster, &str),
    two: (&mut Cluster, &str),
    plan: &ThroughputPlan,
) -> Result<ClusterThroughput> {
    let clip = throughput_clip();
    let bytes = std::fs::read(clip.path(ClipLayout::IndexFirst)?)?;
    let form = bench_media::upload_form(&bytes);
    let empty = |runners| Throughput {
        runners,
        jobs_per_batch: plan.jobs,
        batch_seconds: Vec::new(),
        upload: Vec::new(),
        runner_conversion: Vec::new(),
    };
    let mut figures = [
        (empty(one.0.runner_count()), one),
        (empty(two.0.runner_count()), two),
    ];
    for round in 0..plan.batches {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let (throughput, (cluster, token)) = &mut figures[index];
            batch(cluster, token, &form, throughput)?;
        }
    }
    let [(one_runner, _), (two_runners, _)] = figures;
    Ok(ClusterThroughput {
        clip: clip.description(),
        clip_bytes: bytes.len() as u64,
        one_runner,
        two_runners,
    })
}

/// Uploads `throughput.jobs_per_batch` copies of `form` at once, waits until every job
/// has completed, and adds the batch's figures to `throughput`.
fn batch(
    cluster: &mut Cluster,
    token: &str,
    form: &[u8],
    throughput: &mut Throughput,
) -> Result<()> {
    let upload_url = cluster.url("/api/upload");
    // Every body is ready before the clock starts: it times the app, not the copies.
    let bodies = vec![form.to_vec(); throughput.jobs_per_batch];
    let started_at = SystemTime::now();
    let uploads = std::thread::scope(|scope| {
        let threads: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let upload_url = &upload_url;
                scope.spawn(move || {
                    let started = Instant::now();
                    let job = bench_media::upload(upload_url, token, body)?;
                    Ok((job, started.elapsed().as_secs_f64()))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("an upload thread does not panic"))
            .collect::<Result<Vec<(String, f64)>>>()
    })?;
    let jobs: Vec<&str> = uploads.iter().map(|(job, _)| job.as_str()).collect();
    wait_for_all(cluster, token, &jobs)?;

    let mut last_completed = started_at;
    for job in &jobs {
        let timeline = bench_media::runner_timeline(cluster, job)?;
        last_completed = last_completed.max(timeline.completed);
        throughput.runner_conversion.push(timeline.ffmpeg_seconds);
    }
    let seconds = last_completed
        .duration_since(started_at)
        .context("a job completed before the batch started")?
        .as_secs_f64();
    throughput.batch_seconds.push(seconds);
    throughput
        .upload
        .extend(uploads.iter().map(|(_, uploaded)| uploaded));
    println!(
        "cluster, {} runner(s) × 1 worker: {} jobs in {seconds:.1} s = {:.1} jobs/min (upload {:.2} s, runner's conversion {:.2} s, medians so far)",
        throughput.runners,
        jobs.len(),
        jobs.len() as f64 * 60.0 / seconds,
        median(&throughput.upload).unwrap_or_default(),
        median(&throughput.runner_conversion).unwrap_or_default(),
    );
    Ok(())
}

/// Polls every job through the app until all have completed.
fn wait_for_all(cluster: &Cluster, token: &str, jobs: &[&str]) -> Result<()> {
    let client = spinmesh_e2e::client();
    let deadline = Instant::now() + BATCH_DEADLINE;
    let mut pending = jobs.to_vec();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("{} jobs did not complete in time", pending.len());
        }
        std::thread::sleep(BATCH_POLL_INTERVAL);
        let mut still_pending = Vec::new();
        for job in pending {
            if !bench_media::is_completed(&client, cluster, token, job)? {
                still_pending.push(job);
            }
        }
        pending = still_pending;
    }
    Ok(())
}
