//! Start-up, the service's tasks, and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{AppState, router};
use crate::changes::Waiting;
use crate::config::Config;
use crate::ffmpeg::{self, ConvertSettings};
use crate::media::Media;
use crate::metrics::Metrics;
use crate::pg::{self, PgJobStore};
use crate::registry::Registry;
use crate::resumable;
use crate::spool::{Sharing, Spool};
use crate::store::{LeaseHolder, SqliteJobStore, Store};
use crate::units::{format_duration, now_ms};
use crate::webhook::{self, Deliveries, Webhooks};
use crate::worker::{self, WorkerContext};

/// Runs the service until SIGINT/SIGTERM. Errors are start-up failures, worded for the
/// operator.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let token = config.validate()?;
    if token.len() < 16 {
        warn!("the runner token is shorter than 16 characters; use a long random secret");
    }

    let webhooks = Arc::new(Webhooks::new(&config.webhooks)?);

    let ffmpeg_path = ffmpeg::locate(
        config.ffmpeg.as_deref(),
        std::env::var_os("PATH").as_deref(),
    )?;
    let ffmpeg_version = ffmpeg::check(&ffmpeg_path).await?;
    info!(ffmpeg = %ffmpeg_path.display(), version = %ffmpeg_version, "found ffmpeg");

    let workers = config.worker_count();
    let holder = LeaseHolder {
        runner_id: config.runner_id(),
        ttl: config.lease_ttl,
    };
    let runner_id = holder.runner_id.clone();
    let pg_config = config
        .database_url
        .as_deref()
        .map(pg::parse_url)
        .transpose()?;
    let object_store = config.object_store_settings()?;
    // Runners on one PostgreSQL store share the spool, unless the media are in object
    // storage: then each runner's spool is its own scratch.
    let sharing = match (&pg_config, &object_store) {
        (Some(_), None) => Sharing::Shared,
        _ => Sharing::Exclusive,
    };
    let spool_dir = config.spool_dir.clone();
    let spool =
        Arc::new(tokio::task::spawn_blocking(move || Spool::open(&spool_dir, sharing)).await??);
    // The webhook outbox lives in the job store's database.
    let (store, deliveries) = match &pg_config {
        Some(pg_config) => {
            // Workers, uploads and the API share the pool; a few spare connections keep
            // the API responsive while every worker writes progress.
            let pg = PgJobStore::connect(pg_config.clone(), workers + 8, holder)
                .await
                .context("cannot connect to the job database (--database-url)")?;
            let pg = Arc::new(pg);
            (Store::new(pg.clone()), Deliveries::new(pg))
        }
        None => {
            let sqlite = SqliteJobStore::open(&spool.db_path(), holder).with_context(|| {
                format!("cannot open the job database in {}", spool.root().display())
            })?;
            // As for leases: the exclusive spool lock proves whoever claimed a webhook
            // gone, so its delivery is due now rather than when the claim expires.
            sqlite
                .release_webhook_claims(now_ms())
                .context("cannot recover interrupted webhooks")?;
            let sqlite = Arc::new(sqlite);
            (Store::new(sqlite.clone()), Deliveries::new(sqlite))
        }
    };

    let media = Arc::new(match &object_store {
        None => Media::local(spool.clone()),
        Some(settings) => Media::in_object_store(spool.clone(), settings)
            .await
            .context("cannot reach the object store (--object-store)")?,
    });

    match spool.leftovers_removed() {
        Some(0) => {}
        Some(files) => info!(
            files,
            "removed partial uploads and outputs left by a previous run"
        ),
        None => info!("other runners share the spool; leaving its partial files alone"),
    }
    // With SQLite, the exclusive spool lock proves that whoever holds a lease in this
    // database is gone, so every lease counts as expired now. With PostgreSQL, other
    // runners' leases are honoured until they expire.
    let reap_now = match pg_config {
        None => i64::MAX,
        Some(_) => now_ms(),
    };
    let max_attempts = config.max_attempts;
    let reaped = store
        .run(move |s| s.reap_expired(max_attempts, reap_now))
        .await
        .context("cannot recover interrupted jobs")?;
    worker::log_reaped(&reaped);
    let free = spool.free_space().unwrap_or(0);
    if free < config.min_free_disk {
        warn!(
            free_bytes = free,
            min_free_disk = config.min_free_disk,
            "free disk space is below --min-free-disk; uploads will be refused until space is freed"
        );
    }

    let metrics = Arc::new(Metrics::new()?);
    let registry = Registry::default();
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();

    let ctx = Arc::new(WorkerContext {
        store: store.clone(),
        spool: spool.clone(),
        min_free_disk: config.min_free_disk,
        media: media.clone(),
        settings: ConvertSettings {
            ffmpeg: ffmpeg_path,
            quality: config.quality,
            timeout: config.job_timeout,
            limits: config.output_limits(),
        },
        max_attempts: config.max_attempts,
        retry_backoff: config.retry_backoff,
        lease_renewal: config.lease_ttl / 3,
        early_start_patience: config.early_start_patience,
        registry: registry.clone(),
        slots: Arc::new(Semaphore::new(workers)),
        wake: wake.clone(),
        metrics: metrics.clone(),
        stop: stop.clone(),
        abort: abort.clone(),
    });
    let mut worker_tasks = JoinSet::new();
    for index in 0..workers {
        worker_tasks.spawn(worker::run_worker(index, ctx.clone()));
    }
    let reaper = tokio::spawn(worker::run_reaper(
        store.clone(),
        config.max_attempts,
        config.lease_ttl / 2,
        wake.clone(),
        stop.clone(),
    ));
    // Stays up through shutdown: cancels must still reach conversions that are draining.
    let notifications = pg_config
        .map(|pg_config| tokio::spawn(pg::listen(pg_config, wake.clone(), registry.clone())));
    let sweeper = tokio::spawn(worker::run_sweeper(
        store.clone(),
        media.clone(),
        config.retention,
        config.sweep_interval,
        stop.clone(),
    ));

    webhook::spawn_deliveries(
        &webhooks,
        deliveries,
        store.clone(),
        config.retention,
        metrics.clone(),
        stop.clone(),
    );

    let waiting = Waiting::new(
        store.changes().clone(),
        config.max_waiters,
        config.max_event_streams_per_owner,
        stop.clone(),
    );
    let state = Arc::new(AppState {
        waiting,
        store,
        spool: spool.clone(),
        media: media.clone(),
        token,
        max_upload_bytes: config.max_upload_bytes,
        min_free_disk: config.min_free_disk,
        quota: config.owner_quota(),
        registry,
        wake,
        metrics,
        ffmpeg_version,
        workers,
        conversions: ctx.clone(),
        upload_expiry: config.upload_expiry,
        webhooks,
    });
    let upload_sweeper = tokio::spawn(resumable::api::run_sweeper(
        state.clone(),
        config.sweep_interval,
        stop.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "listening on a non-loopback address; make sure only the upload component can reach it");
    }
    info!(
        %addr,
        spool = %spool.root().display(),
        store = if notifications.is_some() { "postgres" } else { "sqlite" },
        media = media.kind(),
        runner_id = %runner_id,
        workers,
        max_upload_bytes = config.max_upload_bytes,
        job_timeout = %format_duration(config.job_timeout),
        retention = %format_duration(config.retention),
        "spinmesh-runner listening on http://{addr}"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        // Checked first: once a signal arrived, the server finishing is part of shutdown.
        biased;
        _ = shutdown.cancelled() => {}
        result = &mut server => {
            // The server only ends on its own if accepting failed.
            stop.cancel();
            abort.cancel();
            result.context("HTTP server task failed")?.context("HTTP server failed")?;
            return Ok(());
        }
    }

    let grace = config.shutdown_grace;
    info!(grace = %format_duration(grace), "shutting down: no new connections or jobs; waiting for running conversions");
    stop.cancel();
    sweeper.abort();
    upload_sweeper.abort();
    reaper.abort();

    let drain_workers = async {
        if tokio::time::timeout(grace, async {
            while worker_tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            warn!("grace period over; stopping running conversions (their jobs stay queued)");
            abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), async {
                while worker_tasks.join_next().await.is_some() {}
            })
            .await;
        }
    };
    let drain_server = async {
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            warn!("grace period over; closing open connections");
            server.abort();
        }
    };
    tokio::join!(drain_workers, drain_server);
    if let Some(notifications) = notifications {
        notifications.abort();
    }
    info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; a second signal exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    wait_for_signal().await;
    info!("shutdown signal received");
    shutdown.cancel();
    wait_for_signal().await;
    warn!(
        "second signal: exiting immediately; running jobs are re-queued once their leases expire"
    );
    std::process::exit(130);
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGINT");
            term.recv().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
