//! The worker pool: claims queued jobs, runs ffmpeg, records the outcome; plus the
//! retention sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::ffmpeg::{self, ConvertSettings, Failure, Stopped};
use crate::job::{Job, JobStatus};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spool::{Spool, remove_if_exists};
use crate::store::{Claim, Store};
use crate::units::now_ms;

/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Idle workers look for due work at least this often, even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Everything a worker needs; shared by all workers.
pub struct WorkerContext {
    pub store: Store,
    pub spool: Arc<Spool>,
    pub settings: ConvertSettings,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub registry: Registry,
    /// Signalled when a job is queued.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Stop taking new jobs.
    pub stop: CancellationToken,
    /// Stop running jobs now (they go back to the queue).
    pub abort: CancellationToken,
}

/// Delay before retry number `attempt` (1-based count of attempts already made).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// One worker's loop: claim, convert, repeat, until `stop`.
pub async fn run_worker(index: usize, ctx: Arc<WorkerContext>) {
    loop {
        if ctx.stop.is_cancelled() {
            break;
        }
        match ctx.store.run(|s| s.claim_next(now_ms())).await {
            Ok(Claim::Job(job)) => {
                let span = info_span!("job", job_id = %job.id, worker = index);
                process(&ctx, job).instrument(span).await;
            }
            Ok(Claim::Idle { next_due }) => {
                let wait = next_due
                    .map(|due| Duration::from_millis((due - now_ms()).clamp(0, i64::MAX) as u64))
                    .unwrap_or(IDLE_POLL)
                    .min(IDLE_POLL);
                tokio::select! {
                    _ = ctx.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.stop.cancelled() => break,
                }
            }
            Err(err) => {
                error!(worker = index, error = %err, "cannot claim a job; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.stop.cancelled() => break,
                }
            }
        }
    }
}

/// Runs one claimed job to its next state.
async fn process(ctx: &WorkerContext, job: Job) {
    let id = job.id.clone();
    let running = ctx.registry.register(&id);
    let cancel = running.cancel_token().clone();
    let input = ctx.spool.input(&id);
    let partial = ctx.spool.partial_output(&id, job.attempts);
    let output = ctx.spool.output(&id);
    info!(
        attempt = job.attempts,
        size_bytes = job.size_bytes,
        "conversion started"
    );

    // A cancel may have landed between the claim and our registration.
    let lookup_id = id.clone();
    match ctx.store.run(move |s| s.get(&lookup_id)).await {
        Ok(Some(current)) if current.status == JobStatus::Running => {}
        Ok(_) => {
            info!("job was cancelled before it started");
            return;
        }
        Err(err) => warn!(error = %err, "cannot re-read job; continuing"),
    }

    if !input.exists() {
        finish_failed(ctx, &id, "Input file is missing").await;
        return;
    }

    // Progress: the converter publishes whole percents, a writer task persists them.
    let (progress_tx, mut progress_rx) = watch::channel(0u8);
    let writer = {
        let store = ctx.store.clone();
        let id = id.clone();
        let cancel = cancel.clone();
        tokio::spawn(
            async move {
                while progress_rx.changed().await.is_ok() {
                    let pct = *progress_rx.borrow_and_update();
                    let id = id.clone();
                    match store.run(move |s| s.set_progress(&id, pct)).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Cancelled or otherwise taken away from us.
                            cancel.cancel();
                            break;
                        }
                        Err(err) => warn!(error = %err, "cannot record progress"),
                    }
                }
            }
            .in_current_span(),
        )
    };

    let started = Instant::now();
    let result = ffmpeg::convert(
        &ctx.settings,
        &input,
        &partial,
        &progress_tx,
        &cancel,
        &ctx.abort,
    )
    .await;
    drop(progress_tx);
    let _ = writer.await;

    match result {
        Ok(()) => finish_converted(ctx, &job, &partial, &output, started.elapsed()).await,
        Err(stopped) => {
            discard(&partial);
            match stopped {
                Stopped::Cancelled => {
                    ctx.metrics.job_cancelled();
                    // The cancel handler owns the job's files and state now.
                    info!("conversion cancelled");
                }
                Stopped::Shutdown => {
                    let id2 = id.clone();
                    match ctx.store.run(move |s| s.release(&id2)).await {
                        Ok(_) => info!("conversion interrupted by shutdown; job re-queued"),
                        Err(err) => {
                            warn!(error = %err, "cannot re-queue job; it will be recovered at next start")
                        }
                    }
                }
                Stopped::TimedOut => finish_failed(ctx, &id, ffmpeg::REASON_TIMED_OUT).await,
                Stopped::Failed(Failure::Permanent(reason)) => {
                    finish_failed(ctx, &id, &reason).await
                }
                Stopped::Failed(Failure::Transient(reason)) => {
                    retry_or_fail(ctx, &job, &reason).await;
                }
            }
        }
    }
    drop(running);
}

async fn finish_converted(
    ctx: &WorkerContext,
    job: &Job,
    partial: &std::path::Path,
    output: &std::path::Path,
    took: Duration,
) {
    let size = match tokio::fs::metadata(partial).await {
        Ok(meta) => meta.len(),
        Err(err) => {
            warn!(error = %err, "ffmpeg succeeded but its output is unreadable");
            retry_or_fail(ctx, job, "Runner could not read the converted file").await;
            return;
        }
    };
    if size == 0 {
        discard(partial);
        finish_failed(ctx, &job.id, ffmpeg::REASON_EMPTY_OUTPUT).await;
        return;
    }
    if let Err(err) = tokio::fs::rename(partial, output).await {
        warn!(error = %err, "cannot move output into place");
        discard(partial);
        retry_or_fail(ctx, job, "Runner could not store the converted file").await;
        return;
    }
    let id = job.id.clone();
    match ctx
        .store
        .run(move |s| s.complete(&id, size, now_ms()))
        .await
    {
        Ok(true) => {
            ctx.metrics.job_completed(took);
            discard(&ctx.spool.input(&job.id));
            info!(
                output_bytes = size,
                seconds = took.as_secs_f64(),
                "conversion completed"
            );
        }
        Ok(false) => {
            // Cancelled while we were finishing: do not leave the output behind.
            discard(output);
            info!("conversion finished after the job was cancelled; output discarded");
        }
        Err(err) => {
            // Leave the job `running`: start-up recovery will convert it again.
            error!(error = %err, "cannot record completion");
        }
    }
}

async fn finish_failed(ctx: &WorkerContext, id: &str, reason: &str) {
    let (id_owned, reason_owned) = (id.to_string(), reason.to_string());
    match ctx
        .store
        .run(move |s| s.fail(&id_owned, &reason_owned, now_ms()))
        .await
    {
        Ok(true) => {
            ctx.metrics.job_failed();
            discard(&ctx.spool.input(id));
            info!(reason, "conversion failed");
        }
        Ok(false) => info!("job changed state before it could be marked failed"),
        Err(err) => error!(error = %err, "cannot record failure"),
    }
}

async fn retry_or_fail(ctx: &WorkerContext, job: &Job, reason: &str) {
    if job.attempts >= ctx.max_attempts {
        finish_failed(ctx, &job.id, reason).await;
        return;
    }
    let delay = backoff(ctx.retry_backoff, job.attempts);
    let not_before = now_ms().saturating_add(delay.as_millis() as i64);
    let id = job.id.clone();
    match ctx.store.run(move |s| s.retry_later(&id, not_before)).await {
        Ok(true) => {
            ctx.metrics.job_retried();
            warn!(
                reason,
                attempt = job.attempts,
                retry_in_ms = delay.as_millis() as u64,
                "conversion failed; will retry"
            );
        }
        Ok(false) => info!("job changed state before it could be retried"),
        Err(err) => error!(error = %err, "cannot schedule retry"),
    }
}

fn discard(path: &std::path::Path) {
    if let Err(err) = remove_if_exists(path) {
        warn!(error = %err, file = %path.display(), "cannot remove file");
    }
}

/// Deletes the files of jobs that finished more than `retention` ago.
pub async fn sweep_expired(
    store: &Store,
    spool: &Spool,
    retention: Duration,
) -> crate::Result<usize> {
    let cutoff = now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    let mut removed = 0;
    loop {
        let ids = store.run(move |s| s.finished_before(cutoff, 200)).await?;
        if ids.is_empty() {
            return Ok(removed);
        }
        for id in ids {
            if let Err(err) = spool.remove_job_files(&id) {
                warn!(job_id = %id, error = %err, "cannot remove expired files; will retry next sweep");
                return Ok(removed);
            }
            let id2 = id.clone();
            store.run(move |s| s.mark_expired(&id2)).await?;
            info!(job_id = %id, "expired job files removed");
            removed += 1;
        }
    }
}

/// Runs the retention sweep now and then every `interval` until `stop`.
pub async fn run_sweeper(
    store: Store,
    spool: Arc<Spool>,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        if let Err(err) = sweep_expired(&store, &spool, retention).await {
            warn!(error = %err, "retention sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(2);
        assert_eq!(backoff(base, 1), Duration::from_secs(2));
        assert_eq!(backoff(base, 2), Duration::from_secs(4));
        assert_eq!(backoff(base, 3), Duration::from_secs(8));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
        assert_eq!(backoff(base, 0), Duration::from_secs(2));
    }
}
