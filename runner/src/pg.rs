//! The job store on PostgreSQL, shared by any number of runners, and the listener that
//! carries wake-ups and cancels between them.
//!
//! Claims lock the next runnable row with `FOR UPDATE SKIP LOCKED`, so concurrent
//! runners never wait on, or take, each other's job. Changes another runner must hear of
//! are announced with `pg_notify` inside the same transaction (delivered on commit):
//! [`QUEUED_CHANNEL`] when a job becomes runnable, [`CANCEL_CHANNEL`] with the job id
//! when one is cancelled.

use std::future::{Future, poll_fn};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::job::{Job, JobStatus, NewJob, Stats, Timestamp};
use crate::registry::Registry;
use crate::store::{
    COLUMNS, Claim, FAIR_ORDER, JobStore, Lease, LeaseHolder, Leased, NEXT_REVISION, OwnerQuota,
    OwnerUsage, REASON_INTERRUPTED, Reaped, add_status_row, next_revision_if_progress,
    retry_refusal, retry_update, to_usage, usage_query,
};

pub const QUEUED_CHANNEL: &str = "spinmesh_runner_queued";
pub const CANCEL_CHANNEL: &str = "spinmesh_runner_cancel";

/// Numbered migrations, applied in order at start and recorded in `runner_migrations`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_jobs",
        include_str!("../migrations/postgres/0001_jobs.sql"),
    ),
    (
        2,
        "0002_fair_claims",
        include_str!("../migrations/postgres/0002_fair_claims.sql"),
    ),
    (
        3,
        "0003_revisions",
        include_str!("../migrations/postgres/0003_revisions.sql"),
    ),
    (
        4,
        "0004_uploads",
        include_str!("../migrations/postgres/0004_uploads.sql"),
    ),
    (
        5,
        "0005_webhooks",
        include_str!("../migrations/postgres/0005_webhooks.sql"),
    ),
];

/// Any fixed number: runners starting together take this advisory lock in turn, so only
/// one applies the migrations.
const MIGRATION_LOCK: i64 = 0x5350_4e4d_4553_4801;
/// First key of the per-owner advisory locks (the second is a hash of the owner) that
/// serialise one owner's quota check and insert. The two-key lock space is separate from
/// the one-key space [`MIGRATION_LOCK`] is in.
const OWNER_LOCK_SPACE: i32 = 0x5350_4e51;

/// How long a query may wait for a pooled connection, or to open one, before the store
/// reports itself unavailable.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect delays of the listener: doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Notifications waiting to be handled; the connection stops reading beyond this.
const NOTIFICATION_BACKLOG: usize = 256;

/// Clears the lease columns; spliced into every update that ends a lease.
const NO_LEASE: &str = "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL";
/// The condition every leased update starts with (`$1` job id, `$2` token).
const HOLDS_LEASE: &str = "id = $1 AND status = 'running' AND lease_token = $2";

/// Parses and checks a `postgres://` URL, bounding how long a connection attempt takes.
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| anyhow::anyhow!("invalid --database-url: {err}"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("spinmesh-runner");
    }
    Ok(config)
}

/// [`JobStore`] on PostgreSQL through a connection pool.
///
/// The trait is synchronous and only ever called on tokio's blocking pool (see
/// [`crate::store::Store`]), so each call drives its async query to completion on the
/// runtime it was created in.
pub struct PgJobStore {
    pub(crate) pool: Pool,
    runtime: Handle,
    holder: LeaseHolder,
}

impl PgJobStore {
    /// Connects, applies pending migrations, and returns the store. Must be called
    /// inside a tokio runtime, which then runs every query.
    pub async fn connect(
        config: tokio_postgres::Config,
        max_connections: usize,
        holder: LeaseHolder,
    ) -> Result<Self> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|err| Error::Database(err.to_string()))?;
        let mut client = pool.get().await?;
        migrate(&mut client).await?;
        drop(client);
        Ok(PgJobStore {
            pool,
            runtime: Handle::current(),
            holder,
        })
    }

    pub(crate) fn block_on<R>(&self, f: impl Future<Output = Result<R>>) -> Result<R> {
        self.runtime.block_on(f)
    }

    /// Runs one conditional update of a leased job; `true` if the lease still held.
    fn leased_update(
        &self,
        sql: &str,
        lease: &Lease,
        rest: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        notify_queued: bool,
    ) -> Result<bool> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&lease.job_id, &lease.token];
            values.extend_from_slice(rest);
            let n = tx.execute(sql, &values).await?;
            if n > 0 && notify_queued {
                notify(&tx, QUEUED_CHANNEL, "").await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }
}

async fn migrate(client: &mut deadpool_postgres::Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS runner_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Option<i32> = tx
        .query_one("SELECT MAX(version) FROM runner_migrations", &[])
        .await?
        .get(0);
    for &(version, name, sql) in MIGRATIONS {
        if version > applied.unwrap_or(0) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO runner_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            info!(version, name, "applied database migration");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Announces on `channel`; delivered to listeners when `tx` commits.
async fn notify(tx: &Transaction<'_>, channel: &str, payload: &str) -> Result<()> {
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await?;
    Ok(())
}

fn row_to_job(row: &Row) -> Result<Job> {
    let status: String = row.try_get(2)?;
    let status = JobStatus::parse(&status)
        .ok_or_else(|| Error::Database(format!("unknown job status {status:?}")))?;
    let progress: i32 = row.try_get(3)?;
    let size: i64 = row.try_get(6)?;
    let output: Option<i64> = row.try_get(7)?;
    let attempts: i32 = row.try_get(12)?;
    let revision: i64 = row.try_get(14)?;
    Ok(Job {
        id: row.try_get(0)?,
        owner: row.try_get(1)?,
        status,
        progress: progress.clamp(0, 100) as u8,
        filename: row.try_get(4)?,
        source_filename: row.try_get(5)?,
        size_bytes: size.max(0) as u64,
        output_bytes: output.map(|b| b.max(0) as u64),
        created_at: Timestamp(row.try_get(8)?),
        started_at: row.try_get::<_, Option<i64>>(9)?.map(Timestamp),
        completed_at: row.try_get::<_, Option<i64>>(10)?.map(Timestamp),
        error: row.try_get(11)?,
        attempts: attempts.max(0) as u32,
        expired: row.try_get(13)?,
        revision: revision.max(0) as u64,
    })
}

/// Serialises, to the end of `tx`, the quota checks and inserts of one owner: their
/// concurrent uploads check and insert one after the other, so together they cannot
/// overshoot.
pub(crate) async fn lock_owner(tx: &Transaction<'_>, owner: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&OWNER_LOCK_SPACE, &owner],
    )
    .await?;
    Ok(())
}

/// One owner's [`OwnerUsage`], on a pooled client or inside a transaction.
pub(crate) async fn pg_usage(
    client: &impl deadpool_postgres::GenericClient,
    owner: &str,
) -> Result<OwnerUsage> {
    let row = client.query_one(&usage_query("$1"), &[&owner]).await?;
    Ok(to_usage(row.try_get(0)?, row.try_get(1)?))
}

/// Inserts `job`, `running` under the lease (`lease_owner`, `token`, `expires`) when its
/// conversion started early, else `queued` (waking the runners).
pub(crate) async fn pg_insert_job(
    tx: &Transaction<'_>,
    job: &NewJob,
    lease_owner: Option<String>,
    token: Option<String>,
    expires: Option<i64>,
) -> Result<Job> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO jobs (id, owner, status, filename, source_filename,
                                   size_bytes, created_at, started_at, attempts,
                                   lease_owner, lease_token, lease_expires_at, callback_url)
                 VALUES ($1, $2, CASE WHEN $7::BIGINT IS NULL THEN 'queued' ELSE 'running' END,
                         $3, $4, $5, $6, $7,
                         CASE WHEN $7::BIGINT IS NULL THEN 0 ELSE 1 END, $8, $9, $10, $11)
                 RETURNING {COLUMNS}"
            ),
            &[
                &job.id,
                &job.owner,
                &job.filename,
                &job.source_filename,
                &(job.size_bytes.min(i64::MAX as u64) as i64),
                &job.created_at,
                &job.started_at,
                &lease_owner,
                &token,
                &expires,
                &job.callback_url,
            ],
        )
        .await?;
    let job = row_to_job(&row)?;
    if job.status == JobStatus::Queued {
        notify(tx, QUEUED_CHANNEL, "").await?;
    }
    Ok(job)
}

fn ids(rows: &[Row]) -> Result<Vec<String>> {
    rows.iter()
        .map(|row| Ok(row.try_get::<_, String>(0)?))
        .collect()
}

fn to_i32(n: u32) -> i32 {
    n.min(i32::MAX as u32) as i32
}

impl JobStore for PgJobStore {
    fn insert(&self, job: NewJob, quota: &OwnerQuota, now: i64) -> Result<(Job, Option<Lease>)> {
        let lease = job.started_at.map(|_| Lease {
            job_id: job.id.clone(),
            token: self.holder.new_token(),
        });
        let expires = lease.as_ref().map(|_| self.holder.expiry(now));
        let owner = lease.as_ref().map(|_| self.holder.runner_id.clone());
        let token = lease.as_ref().map(|l| l.token.clone());
        let job = self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            lock_owner(&tx, &job.owner).await?;
            quota.admit(&pg_usage(&tx, &job.owner).await?, job.size_bytes)?;
            let job = pg_insert_job(&tx, &job, owner, token, expires).await?;
            tx.commit().await?;
            Ok(job)
        })?;
        Ok((job, lease))
    }

    fn usage(&self, owner: &str) -> Result<OwnerUsage> {
        self.block_on(async {
            let client = self.pool.get().await?;
            pg_usage(&client, owner).await
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let row = client
                .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id])
                .await?;
            row.as_ref().map(row_to_job).transpose()
        })
    }

    fn list(&self, owner: Option<&str>, limit: u32, offset: u64) -> Result<(Vec<Job>, u64)> {
        let offset = offset.min(i64::MAX as u64) as i64;
        let limit = i64::from(limit);
        self.block_on(async {
            let mut client = self.pool.get().await?;
            // One snapshot for the page and the count.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR owner = $1)
                         ORDER BY seq DESC LIMIT $2 OFFSET $3"
                    ),
                    &[&owner, &limit, &offset],
                )
                .await?;
            let total: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM jobs WHERE ($1::TEXT IS NULL OR owner = $1)",
                    &[&owner],
                )
                .await?
                .try_get(0)?;
            tx.commit().await?;
            let jobs = rows.iter().map(row_to_job).collect::<Result<Vec<_>>>()?;
            Ok((jobs, total.max(0) as u64))
        })
    }

    fn claim_next(&self, now: i64) -> Result<Claim> {
        let token = self.holder.new_token();
        let expires = self.holder.expiry(now);
        self.block_on(async {
            let client = self.pool.get().await?;
            let claimed = client
                .query_opt(
                    &format!(
                        "WITH next AS (
                             SELECT q.seq FROM jobs q
                             WHERE q.status = 'queued' AND q.not_before <= $1
                             ORDER BY {FAIR_ORDER} LIMIT 1
                             FOR UPDATE OF q SKIP LOCKED)
                         UPDATE jobs
                         SET status = 'running', attempts = attempts + 1, progress = 0,
                             started_at = $1, error = NULL, {NEXT_REVISION},
                             lease_owner = $2, lease_token = $3, lease_expires_at = $4
                         FROM next WHERE jobs.seq = next.seq
                         RETURNING {}",
                        qualified_columns(),
                    ),
                    &[&now, &self.holder.runner_id, &token, &expires],
                )
                .await?;
            match claimed {
                Some(row) => {
                    let job = row_to_job(&row)?;
                    Ok(Claim::Job(Box::new(Leased {
                        lease: Lease {
                            job_id: job.id.clone(),
                            token,
                        },
                        job,
                    })))
                }
                None => {
                    let next_due: Option<i64> = client
                        .query_one(
                            "SELECT MIN(not_before) FROM jobs WHERE status = 'queued'",
                            &[],
                        )
                        .await?
                        .try_get(0)?;
                    Ok(Claim::Idle { next_due })
                }
            }
        })
    }

    fn renew(&self, lease: &Lease, progress: Option<u8>, now: i64) -> Result<bool> {
        let progress = progress.map(|p| i32::from(p.min(100)));
        self.leased_update(
            &format!(
                "UPDATE jobs SET progress = COALESCE($3, progress), lease_expires_at = $4,
                     {}
                 WHERE {HOLDS_LEASE}",
                next_revision_if_progress("$3")
            ),
            lease,
            &[&progress, &self.holder.expiry(now)],
            false,
        )
    }

    fn complete(&self, lease: &Lease, output_bytes: u64, now: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'completed', progress = 100, output_bytes = $3,
                     completed_at = $4, error = NULL, {NEXT_REVISION}, {NO_LEASE}
                 WHERE {HOLDS_LEASE}"
            ),
            lease,
            &[&(output_bytes.min(i64::MAX as u64) as i64), &now],
            false,
        )
    }

    fn fail(&self, lease: &Lease, reason: &str, now: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'failed', completed_at = $4, error = $3, {NEXT_REVISION},
                     {NO_LEASE}
                 WHERE {HOLDS_LEASE}"
            ),
            lease,
            &[&reason, &now],
            false,
        )
    }

    fn retry_later(&self, lease: &Lease, not_before: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'queued', progress = 0, not_before = $3, {NEXT_REVISION},
                     {NO_LEASE}
                 WHERE {HOLDS_LEASE}"
            ),
            lease,
            &[&not_before],
            true,
        )
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'queued', progress = 0, started_at = NULL,
                     attempts = GREATEST(attempts - 1, 0), {NEXT_REVISION}, {NO_LEASE}
                 WHERE {HOLDS_LEASE}"
            ),
            lease,
            &[],
            true,
        )
    }

    fn retry(&self, id: &str, quota: &OwnerQuota) -> Result<Option<Job>> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // The row lock makes a concurrent retry wait, then find the job queued.
            let Some(row) = tx
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"),
                    &[&id],
                )
                .await?
            else {
                return Ok(None);
            };
            let job = row_to_job(&row)?;
            if let Some(refusal) = retry_refusal(&job) {
                return Err(refusal);
            }
            // Serialised with this owner's uploads, as in `insert`; the input is already
            // counted in the owner's bytes, only the job count grows.
            lock_owner(&tx, &job.owner).await?;
            quota.admit(&pg_usage(&tx, &job.owner).await?, 0)?;
            let row = tx.query_opt(&retry_update("$1"), &[&id]).await?;
            if row.is_some() {
                notify(&tx, QUEUED_CHANNEL, "").await?;
            }
            tx.commit().await?;
            row.as_ref().map(row_to_job).transpose()
        })
    }

    fn cancel(&self, id: &str, now: i64) -> Result<Option<Job>> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let previous: Option<String> = tx
                .query_opt("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", &[&id])
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'cancelled', completed_at = $2, error = NULL,
                         {NEXT_REVISION}, {NO_LEASE}
                     WHERE id = $1 AND status IN ('queued', 'running')"
                ),
                &[&id, &now],
            )
            .await?;
            let row = tx
                .query_opt(
                    &format!("UPDATE jobs SET expired = TRUE WHERE id = $1 RETURNING {COLUMNS}"),
                    &[&id],
                )
                .await?;
            if previous.as_deref() == Some("running") {
                notify(&tx, CANCEL_CHANNEL, id).await?;
            }
            tx.commit().await?;
            row.as_ref().map(row_to_job).transpose()
        })
    }

    fn reap_expired(&self, max_attempts: u32, now: i64) -> Result<Reaped> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let failed = tx
                .query(
                    &format!(
                        "UPDATE jobs SET status = 'failed', completed_at = $2, error = $3,
                             {NEXT_REVISION}, {NO_LEASE}
                         WHERE status = 'running' AND COALESCE(lease_expires_at, 0) < $2
                           AND attempts >= $1
                         RETURNING id"
                    ),
                    &[&to_i32(max_attempts), &now, &REASON_INTERRUPTED],
                )
                .await?;
            let requeued = tx
                .query(
                    &format!(
                        "UPDATE jobs SET status = 'queued', progress = 0, not_before = 0,
                             {NEXT_REVISION}, {NO_LEASE}
                         WHERE status = 'running' AND COALESCE(lease_expires_at, 0) < $1
                         RETURNING id"
                    ),
                    &[&now],
                )
                .await?;
            if !requeued.is_empty() {
                notify(&tx, QUEUED_CHANNEL, "").await?;
            }
            tx.commit().await?;
            Ok(Reaped {
                requeued: ids(&requeued)?,
                failed: ids(&failed)?,
            })
        })
    }

    fn finished_before(&self, cutoff: i64, limit: u32) -> Result<Vec<String>> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT id FROM jobs
                     WHERE NOT expired AND completed_at IS NOT NULL AND completed_at < $1
                       AND status IN ('completed', 'failed', 'cancelled')
                     ORDER BY completed_at LIMIT $2",
                    &[&cutoff, &i64::from(limit)],
                )
                .await?;
            ids(&rows)
        })
    }

    fn mark_expired(&self, id: &str) -> Result<()> {
        self.block_on(async {
            let client = self.pool.get().await?;
            client
                .execute("UPDATE jobs SET expired = TRUE WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    fn stats(&self) -> Result<Stats> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT status, COUNT(*), COALESCE(SUM(size_bytes), 0)::BIGINT,
                            COALESCE(SUM(output_bytes), 0)::BIGINT
                     FROM jobs GROUP BY status",
                    &[],
                )
                .await?;
            let mut stats = Stats::default();
            for row in rows {
                let status: String = row.try_get(0)?;
                add_status_row(
                    &mut stats,
                    &status,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                );
            }
            Ok(stats)
        })
    }
}

/// [`COLUMNS`] prefixed with the table, for statements that join another relation.
fn qualified_columns() -> String {
    COLUMNS
        .split(',')
        .map(|column| format!("jobs.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps a `LISTEN` connection open (until the task is aborted): queued-job
/// notifications wake a local worker, cancels stop the local conversion of that job (if
/// this runner has it). Reconnects with backoff after any failure, and then wakes every
/// worker once, since notifications sent meanwhile are lost.
pub async fn listen(
    config: tokio_postgres::Config,
    wake: std::sync::Arc<Notify>,
    registry: Registry,
) {
    let mut delay = RECONNECT_FIRST;
    loop {
        match listen_once(&config, &wake, &registry).await {
            Ok(()) => {
                warn!("notification connection closed; reconnecting");
                delay = RECONNECT_FIRST;
            }
            Err(err) => warn!(
                error = %err,
                retry_in_ms = delay.as_millis() as u64,
                "notification connection failed; reconnecting"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// One listening connection, until it breaks.
async fn listen_once(
    config: &tokio_postgres::Config,
    wake: &Notify,
    registry: &Registry,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut notifications) = mpsc::channel(NOTIFICATION_BACKLOG);
    let driver = tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            // Notices are logged by the server already; only notifications matter.
            if let AsyncMessage::Notification(n) = message?
                && sender.send(n).await.is_err()
            {
                break;
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    client
        .batch_execute(&format!("LISTEN {QUEUED_CHANNEL}; LISTEN {CANCEL_CHANNEL}"))
        .await?;
    info!("listening for job notifications");
    // Anything queued while we were not listening is picked up now.
    wake.notify_waiters();
    wake.notify_one();
    while let Some(n) = notifications.recv().await {
        if n.channel() == QUEUED_CHANNEL {
            wake.notify_one();
        } else if n.channel() == CANCEL_CHANNEL && crate::names::is_valid_job_id(n.payload()) {
            let registry = registry.clone();
            let id = n.payload().to_string();
            // Waiting for the worker to clean up must not hold up other notifications.
            tokio::spawn(async move { registry.cancel(&id, Duration::from_secs(15)).await });
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
