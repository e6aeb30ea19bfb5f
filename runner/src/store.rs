//! Durable job store.
//!
//! [`JobStore`] is the small synchronous interface the rest of the runner depends on;
//! [`SqliteJobStore`] (the default) and [`crate::pg::PgJobStore`] implement it. [`Store`]
//! is the async facade: every call runs on tokio's blocking pool, so a slow disk or a
//! busy database never stalls the async workers and no lock is held across an `.await`.
//!
//! A running job is held under a lease: the claiming runner's id, a token unique to the
//! claim, and an expiry that progress writes push forward. Every transition of a running
//! job names the lease, so a runner whose lease was reaped cannot overwrite the job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::changes::JobChanges;
use crate::error::{Error, Result};
use crate::job::{Job, JobStatus, NewJob, Stats, Timestamp};
use crate::resumable::UploadStore;

/// Proof that the caller holds a running job: only the claim that issued `token` may
/// move the job on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub token: String,
}

/// A running job together with the caller's lease on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub job: Job,
    pub lease: Lease,
}

/// Outcome of asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This job is now `running` and leased to the caller.
    Job(Box<Leased>),
    /// Nothing is runnable now; `next_due` is when a backed-off job becomes runnable.
    Idle { next_due: Option<i64> },
}

/// What the reaper did with jobs whose lease expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    pub requeued: Vec<String>,
    pub failed: Vec<String>,
}

/// Who takes leases through a store, and for how long each lease (or renewal) lasts.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    pub runner_id: String,
    pub ttl: Duration,
}

impl LeaseHolder {
    pub(crate) fn expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.ttl.as_millis().min(i64::MAX as u128) as i64)
    }

    pub(crate) fn new_token(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// How much one owner may hold on the runner at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerQuota {
    /// Jobs queued or running.
    pub max_unfinished_jobs: u64,
    /// Bytes the owner's jobs keep on the runner: the inputs of queued, running and
    /// failed jobs, the outputs of completed ones until they expire.
    pub max_spooled_bytes: u64,
}

impl OwnerQuota {
    pub const UNLIMITED: OwnerQuota = OwnerQuota {
        max_unfinished_jobs: u64::MAX,
        max_spooled_bytes: u64::MAX,
    };

    /// Whether one more job holding `bytes` fits next to what the owner has: the job
    /// count is checked first, since a finished job frees both.
    pub fn admit(&self, usage: &OwnerUsage, bytes: u64) -> Result<()> {
        if usage.unfinished_jobs >= self.max_unfinished_jobs {
            return Err(Error::JobQuotaExceeded {
                limit: self.max_unfinished_jobs,
            });
        }
        if usage.spooled_bytes.saturating_add(bytes) > self.max_spooled_bytes {
            return Err(Error::StorageQuotaExceeded {
                limit: self.max_spooled_bytes,
            });
        }
        Ok(())
    }
}

/// What one owner holds now, counted from the job rows (so it holds whichever media
/// backend keeps the files, and across runners sharing a PostgreSQL store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerUsage {
    pub unfinished_jobs: u64,
    pub spooled_bytes: u64,
}

/// The reason recorded on a job the reaper gives up on.
pub const REASON_INTERRUPTED: &str = "Conversion was interrupted too many times";

/// Storage operations on jobs. All state transitions are conditional on the current
/// status (and, for running jobs, on the lease), so racing callers (a worker finishing
/// while a client cancels, two runners) cannot undo each other: the loser's update
/// simply reports `false`.
pub trait JobStore: UploadStore + Send + Sync + 'static {
    /// Records a fully received upload as `queued`, or as `running` and leased to the
    /// caller when its conversion already started (`started_at`). The owner's
    /// [`OwnerQuota`] is checked in the same transaction (serialised per owner), so
    /// concurrent uploads cannot overshoot it; a refusal is a quota error.
    fn insert(&self, job: NewJob, quota: &OwnerQuota, now: i64) -> Result<(Job, Option<Lease>)>;
    /// What `owner` holds now (see [`OwnerQuota`]).
    fn usage(&self, owner: &str) -> Result<OwnerUsage>;
    fn get(&self, id: &str) -> Result<Option<Job>>;
    /// Jobs newest first, optionally for one owner, plus the total matching count.
    fn list(&self, owner: Option<&str>, limit: u32, offset: u64) -> Result<(Vec<Job>, u64)>;
    /// Atomically moves the next runnable `queued` job to `running` (attempts + 1),
    /// leased to the caller. The next job is the oldest runnable one of the owner with
    /// the fewest running jobs; among those, of the owner who least recently started
    /// one (see [`FAIR_ORDER`]).
    fn claim_next(&self, now: i64) -> Result<Claim>;
    /// Extends the lease, recording `progress` if given; `false` when the lease is gone
    /// (the job was cancelled, or reaped and perhaps claimed by another runner).
    fn renew(&self, lease: &Lease, progress: Option<u8>, now: i64) -> Result<bool>;
    /// `running` → `completed`.
    fn complete(&self, lease: &Lease, output_bytes: u64, now: i64) -> Result<bool>;
    /// `running` → `failed` with a human-readable reason.
    fn fail(&self, lease: &Lease, reason: &str, now: i64) -> Result<bool>;
    /// `running` → `queued`, runnable again at `not_before` (retry with backoff).
    fn retry_later(&self, lease: &Lease, not_before: i64) -> Result<bool>;
    /// `running` → `queued` without counting the attempt (shutdown interrupted it).
    fn release(&self, lease: &Lease) -> Result<bool>;
    /// `failed` → `queued` with a fresh set of attempts, if its input is still kept
    /// (not expired; a cancelled job's files are removed at once, so it never is). The
    /// owner's job quota is checked in the same transaction, as for [`JobStore::insert`];
    /// a refusal ([`retry_refusal`] or the quota) is an error. `None` if the job does not
    /// exist.
    fn retry(&self, id: &str, quota: &OwnerQuota) -> Result<Option<Job>>;
    /// `queued`/`running` → `cancelled`; any job is marked as having no files any more.
    /// Returns the updated job, or `None` if it does not exist.
    fn cancel(&self, id: &str, now: i64) -> Result<Option<Job>>;
    /// Jobs whose lease expired before `now` go back to `queued`, or to `failed` once
    /// they have used `max_attempts`.
    fn reap_expired(&self, max_attempts: u32, now: i64) -> Result<Reaped>;
    /// Finished jobs whose files still exist and that finished before `cutoff`.
    fn finished_before(&self, cutoff: i64, limit: u32) -> Result<Vec<String>>;
    /// Records that a job's files were removed.
    fn mark_expired(&self, id: &str) -> Result<()>;
    fn stats(&self) -> Result<Stats>;
}

/// Async handle to a [`JobStore`], with the announcements of the changes this runner
/// makes to jobs; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn JobStore>,
    changes: JobChanges,
}

impl Store {
    pub fn new(inner: Arc<dyn JobStore>) -> Self {
        Store {
            inner,
            changes: JobChanges::default(),
        }
    }

    pub fn changes(&self) -> &JobChanges {
        &self.changes
    }

    /// Tells whoever waits on job `id` that it changed (status or progress).
    pub fn announce(&self, id: &str) {
        self.changes.announce(id);
    }

    /// Runs `f` against the store on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&dyn JobStore) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&*inner)).await?
    }
}

/// Columns in the order [`crate::job::Job`] is read from, shared by both backends.
pub(crate) const COLUMNS: &str = "id, owner, status, progress, filename, source_filename, size_bytes, \
     output_bytes, created_at, started_at, completed_at, error, attempts, expired, revision";

/// Counts one change a client can see (status or progress); spliced into every update
/// that makes one, in both backends.
pub(crate) const NEXT_REVISION: &str = "revision = revision + 1";
/// [`NEXT_REVISION`] for a progress write (`param` the new progress or NULL), which may
/// change nothing.
pub(crate) fn next_revision_if_progress(param: &str) -> String {
    format!(
        "revision = revision + CASE WHEN COALESCE({param}, progress) <> progress THEN 1 ELSE 0 END"
    )
}

/// The order runnable jobs (`q`) are claimed in, shared by both backends: owners with
/// fewer running jobs first, then the owner whose last start is the longest ago (round
/// robin: with one worker, running counts are always equal), then the oldest job. One
/// owner's backlog thus delays another owner's job by at most the conversion already
/// running. Only live rows count (`expired = FALSE`, which the partial indexes of the
/// fair-claims migration cover); expired ones are long finished.
pub(crate) const FAIR_ORDER: &str = "(SELECT COUNT(*) FROM jobs r
          WHERE r.owner = q.owner AND r.expired = FALSE AND r.status = 'running'),
         (SELECT COALESCE(MAX(s.started_at), 0) FROM jobs s
          WHERE s.owner = q.owner AND s.expired = FALSE),
         q.seq";

/// The query for one owner's [`OwnerUsage`] (two BIGINT columns), `param` being the
/// backend's placeholder for the owner. Queued and running jobs keep their input, and so
/// do failed ones until retention (a retry needs it); completed ones keep their output;
/// cancelled and expired ones were removed. An unfinished resumable upload counts as a
/// job that holds its whole announced length.
pub(crate) fn usage_query(param: &str) -> String {
    format!(
        "SELECT CAST(j.unfinished + u.unfinished AS BIGINT), CAST(j.bytes + u.bytes AS BIGINT)
         FROM (SELECT COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 END), 0)
                        AS unfinished,
                      COALESCE(SUM(CASE WHEN status IN ('queued', 'running', 'failed') THEN size_bytes
                                        WHEN status = 'completed' THEN COALESCE(output_bytes, 0)
                                        ELSE 0 END), 0) AS bytes
               FROM jobs WHERE owner = {param} AND expired = FALSE) j,
              (SELECT COUNT(*) AS unfinished, COALESCE(SUM(length), 0) AS bytes
               FROM uploads WHERE owner = {param} AND completed_at IS NULL) u"
    )
}

/// Why `job` cannot be retried, if it cannot: only a finished, unsuccessful job whose
/// input is still kept can.
pub fn retry_refusal(job: &Job) -> Option<Error> {
    match job.status {
        JobStatus::Failed | JobStatus::Cancelled if job.expired => Some(Error::InputGone),
        JobStatus::Failed | JobStatus::Cancelled => None,
        status => Some(Error::JobNotRetryable(status)),
    }
}

/// The conditional update behind [`JobStore::retry`], `param` being the backend's
/// placeholder for the id: a fresh start, as if just uploaded. Conditional on the state
/// [`retry_refusal`] accepts, so of two concurrent retries one re-queues the job.
pub(crate) fn retry_update(param: &str) -> String {
    format!(
        "UPDATE jobs SET status = 'queued', progress = 0, attempts = 0, not_before = 0,
             error = NULL, started_at = NULL, completed_at = NULL, output_bytes = NULL,
             {NEXT_REVISION}
         WHERE id = {param} AND status IN ('failed', 'cancelled') AND expired = FALSE
         RETURNING {COLUMNS}"
    )
}

pub(crate) fn to_usage(unfinished_jobs: i64, spooled_bytes: i64) -> OwnerUsage {
    OwnerUsage {
        unfinished_jobs: unfinished_jobs.max(0) as u64,
        spooled_bytes: spooled_bytes.max(0) as u64,
    }
}

/// Adds one `GROUP BY status` row (count and byte sums) to `stats`; both backends read
/// their statistics this way.
pub(crate) fn add_status_row(
    stats: &mut Stats,
    status: &str,
    count: i64,
    bytes_in: i64,
    bytes_out: i64,
) {
    if let Some(status) = JobStatus::parse(status) {
        *stats.count_mut(status) += count.max(0) as u64;
    }
    stats.total += count.max(0) as u64;
    stats.bytes_in += bytes_in.max(0) as u64;
    stats.bytes_out += bytes_out.max(0) as u64;
}

/// Schema versions of the SQLite database, applied in order; `PRAGMA user_version`
/// records the last one applied.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_jobs.sql"),
    include_str!("../migrations/sqlite/0002_leases.sql"),
    include_str!("../migrations/sqlite/0003_fair_claims.sql"),
    include_str!("../migrations/sqlite/0004_revisions.sql"),
    include_str!("../migrations/sqlite/0005_uploads.sql"),
    include_str!("../migrations/sqlite/0006_webhooks.sql"),
];

/// Keep at most this many idle connections; more are opened on demand under load.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// [`JobStore`] on a SQLite file in WAL mode, with a small connection pool.
pub struct SqliteJobStore {
    path: PathBuf,
    holder: LeaseHolder,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteJobStore {
    /// Opens (creating and migrating if needed) the database at `path`; leases taken
    /// through this handle belong to `holder`.
    pub fn open(path: &Path, holder: LeaseHolder) -> Result<Self> {
        let mut conn = Self::connect(path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        for (index, sql) in SQLITE_MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version > applied {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", version)?;
            }
        }
        tx.commit()?;
        Ok(SqliteJobStore {
            path: path.to_path_buf(),
            holder,
            idle: Mutex::new(vec![conn]),
        })
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }

    /// Runs `f` on a pooled connection. The pool mutex is held only to take or return a
    /// connection, never while a query runs.
    pub(crate) fn with_conn<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<R> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => Self::connect(&self.path)?,
        };
        let result = f(&mut conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
        Ok(result?)
    }

    /// Runs one conditional update of a leased job; `true` if the lease still held.
    fn leased_update(
        &self,
        sql: &str,
        lease: &Lease,
        rest: &[&dyn rusqlite::ToSql],
    ) -> Result<bool> {
        self.with_conn(|conn| {
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&lease.job_id, &lease.token];
            values.extend_from_slice(rest);
            let n = conn.execute(sql, values.as_slice())?;
            Ok(n > 0)
        })
    }
}

/// Clears the lease columns; spliced into every update that ends a lease.
const SQLITE_NO_LEASE: &str = "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL";
/// The condition every leased update starts with (`?1` job id, `?2` token).
const SQLITE_HOLDS_LEASE: &str = "id = ?1 AND status = 'running' AND lease_token = ?2";

fn row_to_job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(2)?;
    let status = JobStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown job status {status:?}").into(),
        )
    })?;
    let progress: i64 = row.get(3)?;
    let size: i64 = row.get(6)?;
    let output: Option<i64> = row.get(7)?;
    let attempts: i64 = row.get(12)?;
    let revision: i64 = row.get(14)?;
    Ok(Job {
        id: row.get(0)?,
        owner: row.get(1)?,
        status,
        progress: progress.clamp(0, 100) as u8,
        filename: row.get(4)?,
        source_filename: row.get(5)?,
        size_bytes: size.max(0) as u64,
        output_bytes: output.map(|b| b.max(0) as u64),
        created_at: Timestamp(row.get(8)?),
        started_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        completed_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
        error: row.get(11)?,
        attempts: attempts.max(0) as u32,
        expired: row.get::<_, i64>(13)? != 0,
        revision: revision.max(0) as u64,
    })
}

/// Inserts `job`, `running` under the lease (`lease_owner`, `token`, `expires`) when its
/// conversion started early, else `queued`.
pub(crate) fn sqlite_insert_job(
    conn: &Connection,
    job: &NewJob,
    lease_owner: Option<&str>,
    token: Option<&str>,
    expires: Option<i64>,
) -> rusqlite::Result<Job> {
    conn.query_row(
        &format!(
            "INSERT INTO jobs (id, owner, status, filename, source_filename, size_bytes,
                               created_at, started_at, attempts,
                               lease_owner, lease_token, lease_expires_at, callback_url)
             VALUES (?1, ?2, CASE WHEN ?7 IS NULL THEN 'queued' ELSE 'running' END,
                     ?3, ?4, ?5, ?6, ?7, CASE WHEN ?7 IS NULL THEN 0 ELSE 1 END,
                     ?8, ?9, ?10, ?11)
             RETURNING {COLUMNS}"
        ),
        params![
            job.id,
            job.owner,
            job.filename,
            job.source_filename,
            job.size_bytes as i64,
            job.created_at,
            job.started_at,
            lease_owner,
            token,
            expires,
            job.callback_url
        ],
        row_to_job,
    )
}

pub(crate) fn sqlite_usage(conn: &Connection, owner: &str) -> rusqlite::Result<OwnerUsage> {
    conn.query_row(&usage_query("?1"), [owner], |row| {
        Ok(to_usage(row.get(0)?, row.get(1)?))
    })
}

fn fetch(conn: &Connection, id: &str) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        row_to_job,
    )
    .optional()
}

impl JobStore for SqliteJobStore {
    fn insert(&self, job: NewJob, quota: &OwnerQuota, now: i64) -> Result<(Job, Option<Lease>)> {
        let lease = job.started_at.map(|_| Lease {
            job_id: job.id.clone(),
            token: self.holder.new_token(),
        });
        let expires = lease.as_ref().map(|_| self.holder.expiry(now));
        let owner = lease.as_ref().map(|_| self.holder.runner_id.as_str());
        let token = lease.as_ref().map(|l| l.token.as_str());
        let inserted = self.with_conn(|conn| {
            // Immediate: the quota check and the insert see no other writer in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let usage = sqlite_usage(&tx, &job.owner)?;
            if let Err(refusal) = quota.admit(&usage, job.size_bytes) {
                return Ok(Err(refusal));
            }
            let job = sqlite_insert_job(&tx, &job, owner, token, expires)?;
            tx.commit()?;
            Ok(Ok(job))
        })?;
        Ok((inserted?, lease))
    }

    fn usage(&self, owner: &str) -> Result<OwnerUsage> {
        self.with_conn(|conn| sqlite_usage(conn, owner))
    }

    fn get(&self, id: &str) -> Result<Option<Job>> {
        self.with_conn(|conn| fetch(conn, id))
    }

    fn list(&self, owner: Option<&str>, limit: u32, offset: u64) -> Result<(Vec<Job>, u64)> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let offset = offset.min(i64::MAX as u64) as i64;
            let (jobs, total) = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR owner = ?1)
                     ORDER BY seq DESC LIMIT ?2 OFFSET ?3"
                ))?;
                let jobs = stmt
                    .query_map(params![owner, limit, offset], row_to_job)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let total: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE (?1 IS NULL OR owner = ?1)",
                    params![owner],
                    |row| row.get(0),
                )?;
                (jobs, total.max(0) as u64)
            };
            tx.commit()?;
            Ok((jobs, total))
        })
    }

    fn claim_next(&self, now: i64) -> Result<Claim> {
        let token = self.holder.new_token();
        let expires = self.holder.expiry(now);
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = tx
                .query_row(
                    &format!(
                        "UPDATE jobs
                         SET status = 'running', attempts = attempts + 1, progress = 0,
                             started_at = ?1, error = NULL, {NEXT_REVISION},
                             lease_owner = ?2, lease_token = ?3, lease_expires_at = ?4
                         WHERE seq = (SELECT q.seq FROM jobs q
                                      WHERE q.status = 'queued' AND q.not_before <= ?1
                                      ORDER BY {FAIR_ORDER} LIMIT 1)
                         RETURNING {COLUMNS}"
                    ),
                    params![now, self.holder.runner_id, token, expires],
                    row_to_job,
                )
                .optional()?;
            let claim = match claimed {
                Some(job) => Claim::Job(Box::new(Leased {
                    lease: Lease {
                        job_id: job.id.clone(),
                        token,
                    },
                    job,
                })),
                None => Claim::Idle {
                    next_due: tx.query_row(
                        "SELECT MIN(not_before) FROM jobs WHERE status = 'queued'",
                        [],
                        |row| row.get(0),
                    )?,
                },
            };
            tx.commit()?;
            Ok(claim)
        })
    }

    fn renew(&self, lease: &Lease, progress: Option<u8>, now: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET progress = COALESCE(?3, progress), lease_expires_at = ?4,
                     {}
                 WHERE {SQLITE_HOLDS_LEASE}",
                next_revision_if_progress("?3")
            ),
            lease,
            &[&progress.map(|p| p.min(100)), &self.holder.expiry(now)],
        )
    }

    fn complete(&self, lease: &Lease, output_bytes: u64, now: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'completed', progress = 100, output_bytes = ?3,
                     completed_at = ?4, error = NULL, {NEXT_REVISION}, {SQLITE_NO_LEASE}
                 WHERE {SQLITE_HOLDS_LEASE}"
            ),
            lease,
            &[&(output_bytes as i64), &now],
        )
    }

    fn fail(&self, lease: &Lease, reason: &str, now: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'failed', completed_at = ?4, error = ?3, {NEXT_REVISION},
                     {SQLITE_NO_LEASE}
                 WHERE {SQLITE_HOLDS_LEASE}"
            ),
            lease,
            &[&reason, &now],
        )
    }

    fn retry_later(&self, lease: &Lease, not_before: i64) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'queued', progress = 0, not_before = ?3, {NEXT_REVISION},
                     {SQLITE_NO_LEASE}
                 WHERE {SQLITE_HOLDS_LEASE}"
            ),
            lease,
            &[&not_before],
        )
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        self.leased_update(
            &format!(
                "UPDATE jobs SET status = 'queued', progress = 0, started_at = NULL,
                     attempts = MAX(attempts - 1, 0), {NEXT_REVISION}, {SQLITE_NO_LEASE}
                 WHERE {SQLITE_HOLDS_LEASE}"
            ),
            lease,
            &[],
        )
    }

    fn retry(&self, id: &str, quota: &OwnerQuota) -> Result<Option<Job>> {
        self.with_conn(|conn| {
            // Immediate: the checks and the update see no other writer in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(job) = fetch(&tx, id)? else {
                return Ok(Ok(None));
            };
            if let Some(refusal) = retry_refusal(&job) {
                return Ok(Err(refusal));
            }
            // The input is already counted in the owner's bytes; only the job count grows.
            if let Err(refusal) = quota.admit(&sqlite_usage(&tx, &job.owner)?, 0) {
                return Ok(Err(refusal));
            }
            let job = tx
                .query_row(&retry_update("?1"), [id], row_to_job)
                .optional()?;
            tx.commit()?;
            Ok(Ok(job))
        })?
    }

    fn cancel(&self, id: &str, now: i64) -> Result<Option<Job>> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'cancelled', completed_at = ?2, error = NULL,
                         {NEXT_REVISION}, {SQLITE_NO_LEASE}
                     WHERE id = ?1 AND status IN ('queued', 'running')"
                ),
                params![id, now],
            )?;
            tx.execute("UPDATE jobs SET expired = 1 WHERE id = ?1", [id])?;
            let job = fetch(&tx, id)?;
            tx.commit()?;
            Ok(job)
        })
    }

    fn reap_expired(&self, max_attempts: u32, now: i64) -> Result<Reaped> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let failed = {
                let mut stmt = tx.prepare(&format!(
                    "UPDATE jobs SET status = 'failed', completed_at = ?2, error = ?3,
                         {NEXT_REVISION}, {SQLITE_NO_LEASE}
                     WHERE status = 'running' AND COALESCE(lease_expires_at, 0) < ?2
                       AND attempts >= ?1
                     RETURNING id"
                ))?;
                stmt.query_map(params![max_attempts, now, REASON_INTERRUPTED], |row| {
                    row.get(0)
                })?
                .collect::<rusqlite::Result<Vec<String>>>()?
            };
            let requeued = {
                let mut stmt = tx.prepare(&format!(
                    "UPDATE jobs SET status = 'queued', progress = 0, not_before = 0,
                         {NEXT_REVISION}, {SQLITE_NO_LEASE}
                     WHERE status = 'running' AND COALESCE(lease_expires_at, 0) < ?1
                     RETURNING id"
                ))?;
                stmt.query_map([now], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?
            };
            tx.commit()?;
            Ok(Reaped { requeued, failed })
        })
    }

    fn finished_before(&self, cutoff: i64, limit: u32) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM jobs
                 WHERE expired = 0 AND completed_at IS NOT NULL AND completed_at < ?1
                   AND status IN ('completed', 'failed', 'cancelled')
                 ORDER BY completed_at LIMIT ?2",
            )?;
            stmt.query_map(params![cutoff, limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
    }

    fn mark_expired(&self, id: &str) -> Result<()> {
        self.with_conn(|conn| {
            conn.execute("UPDATE jobs SET expired = 1 WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn stats(&self) -> Result<Stats> {
        self.with_conn(|conn| {
            let mut stats = Stats::default();
            let mut stmt = conn.prepare_cached(
                "SELECT status, COUNT(*), COALESCE(SUM(size_bytes), 0), COALESCE(SUM(output_bytes), 0)
                 FROM jobs GROUP BY status",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let status: String = row.get(0)?;
                add_status_row(&mut stats, &status, row.get(1)?, row.get(2)?, row.get(3)?);
            }
            Ok(stats)
        })
    }
}
