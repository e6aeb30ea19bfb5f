//! The worker pool: claims queued jobs, runs ffmpeg, records the outcome; plus the
//! lease reaper and the retention sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::early::{self, Arrival};
use crate::ffmpeg::{self, ConvertSettings, Failure, Input, Stopped};
use crate::job::JobStatus;
use crate::media::Media;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spool::{Spool, remove_if_exists};
use crate::store::{Claim, JobStore, Lease, Leased, Store};
use crate::units::now_ms;

/// Why a job whose input is gone fails.
const REASON_NO_INPUT: &str = "Input file is missing";
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Idle workers look for due work at least this often, even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How often a running conversion checks free disk space against `--min-free-disk`.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// While the job store is unreachable, workers try again after these delays, doubling.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Everything a worker needs; shared by all workers.
pub struct WorkerContext {
    pub store: Store,
    pub spool: Arc<Spool>,
    /// Below this much free space on the spool, running conversions stop.
    pub min_free_disk: u64,
    /// Where inputs come from and MP3s go: the spool, or object storage.
    pub media: Arc<Media>,
    pub settings: ConvertSettings,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    /// How often a running conversion renews its lease when progress is not enough.
    pub lease_renewal: Duration,
    /// How long in all an early conversion waits for its client (0: no early starts).
    pub early_start_patience: Duration,
    pub registry: Registry,
    /// One permit per worker: held while converting, by a pool worker or by an upload
    /// that started its conversion early.
    pub slots: Arc<Semaphore>,
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
    let mut store_retry = STORE_RETRY_FIRST;
    loop {
        let slot = tokio::select! {
            slot = ctx.slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            _ = ctx.stop.cancelled() => break,
        };
        if ctx.stop.is_cancelled() {
            break;
        }
        let claim = ctx.store.run(|s| s.claim_next(now_ms())).await;
        if claim.is_ok() {
            store_retry = STORE_RETRY_FIRST;
        }
        match claim {
            Ok(Claim::Job(leased)) => {
                ctx.store.announce(&leased.job.id);
                let span = info_span!("job", job_id = %leased.job.id, worker = index);
                process(&ctx, *leased).instrument(span).await;
                drop(slot);
            }
            Ok(Claim::Idle { next_due }) => {
                // Idle workers hold no slot, so an upload may start converting early.
                drop(slot);
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
                drop(slot);
                error!(worker = index, error = %err, retry_in_ms = store_retry.as_millis() as u64, "cannot claim a job; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(store_retry) => {}
                    _ = ctx.stop.cancelled() => break,
                }
                store_retry = (store_retry * 2).min(STORE_RETRY_MAX);
            }
        }
    }
}

/// Runs one claimed job to its next state.
async fn process(ctx: &WorkerContext, leased: Leased) {
    let Leased { job, lease } = leased;
    let id = job.id.clone();
    let running = ctx.registry.register(&id);
    let cancel = running.cancel_token().clone();
    let partial = ctx.spool.partial_output(&id, job.attempts);
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

    // Renews the lease from here on: fetching a large input can outlast it.
    let (progress_tx, progress_rx) = watch::channel(0u8);
    // Stops ffmpeg when the disk runs low; a client's cancel stops it too.
    let stop = cancel.child_token();
    let writer = tokio::spawn(
        record_progress(
            ctx.store.clone(),
            lease.clone(),
            progress_rx,
            cancel.clone(),
            ctx.lease_renewal,
            Some(DiskWatch::new(ctx, stop.clone())),
        )
        .in_current_span(),
    );
    let started = Instant::now();
    let missing = || Stopped::Failed(Failure::Permanent(REASON_NO_INPUT.into()));
    let fetched = tokio::select! {
        fetched = ctx.media.fetch_input(&id) => fetched.map(|input| input.ok_or_else(missing)),
        _ = cancel.cancelled() => Ok(Err(Stopped::Cancelled)),
        _ = ctx.abort.cancelled() => Ok(Err(Stopped::Shutdown)),
    };
    let result = match fetched {
        Ok(Ok(input)) => {
            ffmpeg::convert(
                &ctx.settings,
                Input::File(input.path()),
                &partial,
                &progress_tx,
                &stop,
                &ctx.abort,
            )
            .await
        }
        Ok(Err(stopped)) => Err(stopped),
        Err(err) => {
            // The object store is down: no runner can convert the job now, so it goes
            // back without using up an attempt, and this worker pauses.
            warn!(error = %err, "cannot fetch the input");
            drop(progress_tx);
            let _ = writer.await;
            requeue(ctx, &lease, "input unavailable").await;
            tokio::select! {
                _ = tokio::time::sleep(STORE_RETRY_MAX) => {}
                _ = ctx.stop.cancelled() => {}
            }
            return;
        }
    };
    drop(progress_tx);
    let low_disk = writer.await.unwrap_or(false);

    let leased = Leased { job, lease };
    match result {
        Ok(()) => finish_converted(ctx, &leased, &partial, started.elapsed()).await,
        Err(_) if low_disk => {
            discard(&partial);
            retry_or_fail(ctx, &leased, ffmpeg::REASON_LOW_DISK).await;
        }
        Err(stopped) => {
            discard(&partial);
            let lease = &leased.lease;
            match stopped {
                Stopped::Cancelled => cancelled(ctx, &id).await,
                Stopped::Shutdown => {
                    requeue(ctx, lease, "conversion interrupted by shutdown").await
                }
                Stopped::TimedOut => finish_failed(ctx, lease, ffmpeg::REASON_TIMED_OUT).await,
                Stopped::Failed(Failure::Permanent(reason)) => {
                    finish_failed(ctx, lease, &reason).await
                }
                Stopped::Failed(Failure::Transient(reason)) => {
                    retry_or_fail(ctx, &leased, &reason).await;
                }
            }
        }
    }
    drop(running);
}

/// Converts an upload that is still arriving (see `early`), holding `slot` meanwhile.
///
/// The upload handler records the job as `running` once the last byte is stored; from
/// then on this task owns it like a worker would. Whatever stops the head start short,
/// the recorded job goes back to the queue and is converted from the stored file.
pub async fn convert_arriving(
    ctx: Arc<WorkerContext>,
    id: String,
    upload: tokio::fs::File,
    arrival: watch::Receiver<Arrival>,
    slot: OwnedSemaphorePermit,
) {
    let running = ctx.registry.register(&id);
    let cancel = running.cancel_token().clone();
    // Fired by the feeder when the head start is over; a client's cancel fires it too.
    let give_up = cancel.child_token();
    let partial = ctx.spool.partial_output(&id, 1);
    ctx.metrics.started_early();
    info!("conversion started while the upload is arriving");

    let started = Instant::now();
    let result = match std::io::pipe() {
        Ok((reader, writer)) => {
            let feeder = tokio::spawn(
                feed_pipe(
                    upload,
                    arrival.clone(),
                    writer,
                    ctx.early_start_patience,
                    give_up.clone(),
                )
                .in_current_span(),
            );
            let (progress_tx, progress_rx) = watch::channel(0u8);
            let writer = tokio::spawn(
                {
                    let store = ctx.store.clone();
                    let (cancel, arrival) = (cancel.clone(), arrival.clone());
                    let renewal = ctx.lease_renewal;
                    // Low disk ends the head start; the stored upload is converted (or
                    // refused for the same reason) by a worker afterwards.
                    let disk = DiskWatch::new(&ctx, give_up.clone());
                    async move {
                        // Nothing to update until the job exists.
                        if let Some(leased) = early::recorded(arrival).await {
                            record_progress(
                                store,
                                leased.lease,
                                progress_rx,
                                cancel,
                                renewal,
                                Some(disk),
                            )
                            .await;
                        }
                    }
                }
                .in_current_span(),
            );
            let result = ffmpeg::convert(
                &ctx.settings,
                Input::Pipe(reader),
                &partial,
                &progress_tx,
                &give_up,
                &ctx.abort,
            )
            .await;
            drop(progress_tx);
            // ffmpeg has exited: whatever the feeder still waits for is of no use.
            feeder.abort();
            writer.abort();
            result
        }
        Err(err) => {
            warn!(error = %err, "cannot create a pipe for ffmpeg");
            Err(Stopped::Failed(Failure::Transient("no pipe".into())))
        }
    };

    // ffmpeg is done: give the worker back now, even if the client is still sending.
    let client_cancelled = cancel.is_cancelled();
    drop(running);
    drop(slot);

    let Some(leased) = early::recorded(arrival).await else {
        discard(&partial);
        info!("upload did not complete; early conversion dropped");
        return;
    };
    match result {
        Ok(()) => finish_converted(&ctx, &leased, &partial, started.elapsed()).await,
        Err(stopped) => {
            discard(&partial);
            match stopped {
                Stopped::Cancelled if client_cancelled => cancelled(&ctx, &id).await,
                Stopped::Shutdown => {
                    requeue(&ctx, &leased.lease, "conversion interrupted by shutdown").await
                }
                other => {
                    ctx.metrics.early_fell_back();
                    info!(outcome = ?other, "early conversion did not finish");
                    requeue(&ctx, &leased.lease, "converting the stored upload instead").await;
                    ctx.wake.notify_one();
                }
            }
        }
    }
}

/// The feeder of an early conversion: copies the growing spool file into ffmpeg's
/// stdin, and calls the head start off (`give_up`) if it cannot deliver all of it.
async fn feed_pipe(
    upload: tokio::fs::File,
    arrival: watch::Receiver<Arrival>,
    writer: std::io::PipeWriter,
    patience: Duration,
    give_up: CancellationToken,
) {
    let sink = match tokio::net::unix::pipe::Sender::from_owned_fd(writer.into()) {
        Ok(sink) => sink,
        Err(err) => {
            warn!(error = %err, "cannot use the pipe to ffmpeg");
            give_up.cancel();
            return;
        }
    };
    match early::feed(upload, arrival, sink, patience).await {
        Ok(_) => {}
        // ffmpeg may stop reading once it has every audio sample; its exit status says
        // whether that was success.
        Err(early::FeedError::ReaderGone) => {}
        Err(err) => {
            info!(reason = %err, "early conversion gives its worker back");
            give_up.cancel();
        }
    }
}

/// The free-space check of a running conversion: below `min_free` on the spool's
/// filesystem, `stop` ends the conversion.
struct DiskWatch {
    spool: Arc<Spool>,
    min_free: u64,
    stop: CancellationToken,
}

impl DiskWatch {
    fn new(ctx: &WorkerContext, stop: CancellationToken) -> Self {
        DiskWatch {
            spool: ctx.spool.clone(),
            min_free: ctx.min_free_disk,
            stop,
        }
    }

    /// Whether space ran low, in which case the conversion is stopped.
    fn stopped_for_low_disk(&self) -> bool {
        match self.spool.free_space() {
            Ok(free) if free < self.min_free => {
                warn!(
                    free_bytes = free,
                    min_free_disk = self.min_free,
                    "stopping the conversion: disk space fell below --min-free-disk"
                );
                self.stop.cancel();
                true
            }
            Ok(_) => false,
            Err(err) => {
                warn!(error = %err, "cannot check free disk space");
                false
            }
        }
    }
}

/// Persists the whole percents a conversion publishes, each write renewing the lease,
/// and renews it every `renewal` meanwhile. Stops, and cancels the conversion, once the
/// lease is gone (a client cancelled the job, or it was reaped from this runner). With a
/// `disk` watch, checks free disk space every [`DISK_CHECK_INTERVAL`]; returns `true` if
/// it stopped the conversion for low disk.
async fn record_progress(
    store: Store,
    lease: Lease,
    mut progress: watch::Receiver<u8>,
    cancel: CancellationToken,
    renewal: Duration,
    disk: Option<DiskWatch>,
) -> bool {
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renewal, renewal);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut disk_check = tokio::time::interval(DISK_CHECK_INTERVAL);
    disk_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let pct = tokio::select! {
            changed = progress.changed() => match changed {
                Ok(()) => Some(*progress.borrow_and_update()),
                Err(_) => return false,
            },
            _ = renew.tick() => None,
            _ = disk_check.tick(), if disk.is_some() => {
                if disk.as_ref().is_some_and(DiskWatch::stopped_for_low_disk) {
                    return true;
                }
                continue;
            }
        };
        let held = lease.clone();
        match store.run(move |s| s.renew(&held, pct, now_ms())).await {
            Ok(true) => {
                if pct.is_some() {
                    store.announce(&lease.job_id);
                }
                renew.reset();
            }
            Ok(false) => {
                cancel.cancel();
                return false;
            }
            Err(err) => warn!(error = %err, "cannot renew the lease or record progress"),
        }
    }
}

/// The conversion was stopped because its lease is gone: by a client's cancel, or
/// because the lease expired and the job went back to the queue.
async fn cancelled(ctx: &WorkerContext, id: &str) {
    let lookup = id.to_string();
    match ctx.store.run(move |s| s.get(&lookup)).await {
        Ok(Some(job)) if job.status != JobStatus::Cancelled => {
            warn!(status = %job.status, "lost the job's lease; leaving it to whoever holds it now");
        }
        _ => {
            ctx.metrics.job_cancelled();
            // The cancel handler owns the job's files and state now.
            info!("conversion cancelled");
        }
    }
}

/// Runs the write that ends `lease`, retrying while the job store is unreachable for as
/// long as the lease could still be ours: a short database outage then does not make
/// a finished conversion run again. Announces the change if the lease held.
async fn persist<F>(ctx: &WorkerContext, lease: &Lease, write: F) -> crate::Result<bool>
where
    F: Fn(&dyn JobStore, &Lease) -> crate::Result<bool> + Clone + Send + 'static,
{
    let give_up = Instant::now() + ctx.lease_renewal * 3;
    let mut delay = STORE_RETRY_FIRST;
    loop {
        let (write, held) = (write.clone(), lease.clone());
        match ctx.store.run(move |s| write(s, &held)).await {
            Err(err) if err.is_store_unreachable() && Instant::now() + delay < give_up => {
                warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "job store unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(STORE_RETRY_MAX);
            }
            result => {
                if let Ok(true) = result {
                    ctx.store.announce(&lease.job_id);
                }
                return result;
            }
        }
    }
}

/// Runs `work` while renewing `lease` every renewal period: storing a long MP3 can
/// outlast it.
async fn renewing<T>(ctx: &WorkerContext, lease: &Lease, work: impl Future<Output = T>) -> T {
    // Never changes: the renewer only renews, until it is stopped.
    let (_progress, unchanged) = watch::channel(100u8);
    let renewer = tokio::spawn(
        record_progress(
            ctx.store.clone(),
            lease.clone(),
            unchanged,
            CancellationToken::new(),
            ctx.lease_renewal,
            // Moving bytes to or from the bucket: ffmpeg is not running to be stopped.
            None,
        )
        .in_current_span(),
    );
    let output = work.await;
    renewer.abort();
    output
}

/// `running` → `queued` without counting the attempt.
async fn requeue(ctx: &WorkerContext, lease: &Lease, why: &str) {
    match persist(ctx, lease, |s, held| s.release(held)).await {
        Ok(_) => info!("{why}; job re-queued"),
        Err(err) => {
            warn!(error = %err, "cannot re-queue job; the reaper will once its lease expires")
        }
    }
}

async fn finish_converted(
    ctx: &WorkerContext,
    leased: &Leased,
    partial: &std::path::Path,
    took: Duration,
) {
    let Leased { job, lease } = leased;
    let size = match tokio::fs::metadata(partial).await {
        Ok(meta) => meta.len(),
        Err(err) => {
            warn!(error = %err, "ffmpeg succeeded but its output is unreadable");
            retry_or_fail(ctx, leased, "Runner could not read the converted file").await;
            return;
        }
    };
    if size == 0 {
        discard(partial);
        finish_failed(ctx, lease, ffmpeg::REASON_EMPTY_OUTPUT).await;
        return;
    }
    // Another runner may own the job by now; its output must not be replaced.
    let held = lease.clone();
    if let Ok(false) = ctx.store.run(move |s| s.renew(&held, None, now_ms())).await {
        discard(partial);
        cancelled(ctx, &job.id).await;
        return;
    }
    let stored = renewing(
        ctx,
        lease,
        ctx.media.store_output(&job.id, job.attempts, partial),
    )
    .await;
    if let Err(err) = stored {
        warn!(error = %err, "cannot store the output");
        discard(partial);
        retry_or_fail(ctx, leased, "Runner could not store the converted file").await;
        return;
    }
    match persist(ctx, lease, move |s, held| s.complete(held, size, now_ms())).await {
        Ok(true) => {
            // Logged as soon as it is recorded: the log is the record of who completed it.
            info!(
                output_bytes = size,
                seconds = took.as_secs_f64(),
                "conversion completed"
            );
            ctx.metrics.job_completed(took);
            ctx.media.discard_input(&job.id).await;
        }
        Ok(false) => {
            // Cancelled while we were finishing: do not leave the output behind. (If the
            // lease went to another runner that completed the job, its output stays.)
            let lookup = job.id.clone();
            let now = ctx.store.run(move |s| s.get(&lookup)).await;
            ctx.media
                .discard_unrecorded_output(&job.id, job.attempts, now.ok().flatten().as_ref())
                .await;
            info!("conversion finished after the job was cancelled or reaped; not recorded");
        }
        Err(err) => {
            // Leave the job `running`: the reaper re-queues it once the lease expires.
            error!(error = %err, "cannot record completion");
        }
    }
}

async fn finish_failed(ctx: &WorkerContext, lease: &Lease, reason: &str) {
    let reason_owned = reason.to_string();
    match persist(ctx, lease, move |s, held| {
        s.fail(held, &reason_owned, now_ms())
    })
    .await
    {
        Ok(true) => {
            // The input stays until retention removes it: a retry converts it again.
            ctx.metrics.job_failed();
            info!(reason, "conversion failed");
        }
        Ok(false) => info!("job changed state before it could be marked failed"),
        Err(err) => error!(error = %err, "cannot record failure"),
    }
}

async fn retry_or_fail(ctx: &WorkerContext, leased: &Leased, reason: &str) {
    let Leased { job, lease } = leased;
    if job.attempts >= ctx.max_attempts {
        finish_failed(ctx, lease, reason).await;
        return;
    }
    let delay = backoff(ctx.retry_backoff, job.attempts);
    let not_before = now_ms().saturating_add(delay.as_millis() as i64);
    match persist(ctx, lease, move |s, held| s.retry_later(held, not_before)).await {
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

/// Re-queues (or fails, past `max_attempts`) jobs whose lease expired, now and then
/// every `interval` until `stop`, waking a worker for each job it re-queued.
pub async fn run_reaper(
    store: Store,
    max_attempts: u32,
    interval: Duration,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        match store
            .run(move |s| s.reap_expired(max_attempts, now_ms()))
            .await
        {
            Ok(reaped) => {
                log_reaped(&reaped);
                for id in &reaped.requeued {
                    store.announce(id);
                    wake.notify_one();
                }
                for id in &reaped.failed {
                    store.announce(id);
                }
            }
            Err(err) => warn!(error = %err, "cannot look for expired leases"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

pub fn log_reaped(reaped: &crate::store::Reaped) {
    for id in &reaped.requeued {
        info!(job_id = %id, "re-queued job whose runner stopped renewing its lease");
    }
    for id in &reaped.failed {
        warn!(job_id = %id, "job was interrupted too many times; marked failed");
    }
}

/// Deletes the files (or objects) of jobs that finished more than `retention` ago.
pub async fn sweep_expired(
    store: &Store,
    media: &Media,
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
            if let Err(err) = media.remove_job(&id).await {
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
    media: Arc<Media>,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        if let Err(err) = sweep_expired(&store, &media, retention).await {
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
