//! Durable job store.
//!
//! [`JobStore`] is the small synchronous interface the rest of the runner depends on, so
//! a shared backend (DESIGN.md §8) can replace SQLite later. [`Store`] is the async
//! facade: every call runs on tokio's blocking pool, so a slow disk or a busy database
//! never stalls the async workers and no lock is held across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::error::Result;
use crate::job::{Job, JobStatus, NewJob, Stats, Timestamp};

/// Outcome of asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This job is now `running` and belongs to the caller.
    Job(Job),
    /// Nothing is runnable now; `next_due` is when a backed-off job becomes runnable.
    Idle { next_due: Option<i64> },
}

/// What start-up recovery did with jobs a previous process left `running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: Vec<String>,
    pub failed: Vec<String>,
}

/// Storage operations on jobs. All state transitions are conditional on the current
/// status, so racing callers (a worker finishing while a client cancels) cannot undo
/// each other: the loser's update simply reports `false`.
pub trait JobStore: Send + Sync + 'static {
    /// Records a fully received upload as `queued`, or as `running` when its conversion
    /// already started (`started_at`).
    fn insert(&self, job: NewJob) -> Result<Job>;
    fn get(&self, id: &str) -> Result<Option<Job>>;
    /// Jobs newest first, optionally for one owner, plus the total matching count.
    fn list(&self, owner: Option<&str>, limit: u32, offset: u64) -> Result<(Vec<Job>, u64)>;
    /// Atomically moves the oldest runnable `queued` job to `running` (attempts + 1).
    fn claim_next(&self, now: i64) -> Result<Claim>;
    /// Updates progress of a running job; `false` when the job is no longer running.
    fn set_progress(&self, id: &str, progress: u8) -> Result<bool>;
    /// `running` → `completed`.
    fn complete(&self, id: &str, output_bytes: u64, now: i64) -> Result<bool>;
    /// `running` → `failed` with a human-readable reason.
    fn fail(&self, id: &str, reason: &str, now: i64) -> Result<bool>;
    /// `running` → `queued`, runnable again at `not_before` (retry with backoff).
    fn retry_later(&self, id: &str, not_before: i64) -> Result<bool>;
    /// `running` → `queued` without counting the attempt (shutdown interrupted it).
    fn release(&self, id: &str) -> Result<bool>;
    /// `queued`/`running` → `cancelled`; any job is marked as having no files any more.
    /// Returns the updated job, or `None` if it does not exist.
    fn cancel(&self, id: &str, now: i64) -> Result<Option<Job>>;
    /// At start-up: jobs left `running` go back to `queued`, or to `failed` once they
    /// have used `max_attempts`.
    fn recover_interrupted(&self, max_attempts: u32, now: i64) -> Result<Recovered>;
    /// Finished jobs whose files still exist and that finished before `cutoff`.
    fn finished_before(&self, cutoff: i64, limit: u32) -> Result<Vec<String>>;
    /// Records that a job's files were removed.
    fn mark_expired(&self, id: &str) -> Result<()>;
    fn stats(&self) -> Result<Stats>;
}

/// Async handle to a [`JobStore`]; cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<dyn JobStore>);

impl Store {
    pub fn new(inner: Arc<dyn JobStore>) -> Self {
        Store(inner)
    }

    /// Runs `f` against the store on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&dyn JobStore) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&*inner)).await?
    }
}

const COLUMNS: &str = "id, owner, status, progress, filename, source_filename, size_bytes, \
     output_bytes, created_at, started_at, completed_at, error, attempts, expired";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    owner           TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress        INTEGER NOT NULL DEFAULT 0,
    filename        TEXT NOT NULL,
    source_filename TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    output_bytes    INTEGER,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      INTEGER NOT NULL DEFAULT 0,
    expired         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (status, not_before, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (expired, completed_at);
";

/// Keep at most this many idle connections; more are opened on demand under load.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// [`JobStore`] on a SQLite file in WAL mode, with a small connection pool.
pub struct SqliteJobStore {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteJobStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Self::connect(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", 1)?;
        Ok(SqliteJobStore {
            path: path.to_path_buf(),
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
    fn with_conn<R>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> Result<R> {
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
}

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
    fn insert(&self, job: NewJob) -> Result<Job> {
        self.with_conn(|conn| {
            conn.query_row(
                &format!(
                    "INSERT INTO jobs (id, owner, status, filename, source_filename, size_bytes,
                                       created_at, started_at, attempts)
                     VALUES (?1, ?2, CASE WHEN ?7 IS NULL THEN 'queued' ELSE 'running' END,
                             ?3, ?4, ?5, ?6, ?7, CASE WHEN ?7 IS NULL THEN 0 ELSE 1 END)
                     RETURNING {COLUMNS}"
                ),
                params![
                    job.id,
                    job.owner,
                    job.filename,
                    job.source_filename,
                    job.size_bytes as i64,
                    job.created_at,
                    job.started_at
                ],
                row_to_job,
            )
        })
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
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = tx
                .query_row(
                    &format!(
                        "UPDATE jobs
                         SET status = 'running', attempts = attempts + 1, progress = 0,
                             started_at = ?1, error = NULL
                         WHERE seq = (SELECT seq FROM jobs
                                      WHERE status = 'queued' AND not_before <= ?1
                                      ORDER BY seq LIMIT 1)
                         RETURNING {COLUMNS}"
                    ),
                    [now],
                    row_to_job,
                )
                .optional()?;
            let claim = match claimed {
                Some(job) => Claim::Job(job),
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

    fn set_progress(&self, id: &str, progress: u8) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND status = 'running'",
                params![id, progress.min(100)],
            )?;
            Ok(n > 0)
        })
    }

    fn complete(&self, id: &str, output_bytes: u64, now: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET status = 'completed', progress = 100, output_bytes = ?2,
                     completed_at = ?3, error = NULL
                 WHERE id = ?1 AND status = 'running'",
                params![id, output_bytes as i64, now],
            )?;
            Ok(n > 0)
        })
    }

    fn fail(&self, id: &str, reason: &str, now: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET status = 'failed', completed_at = ?3, error = ?2
                 WHERE id = ?1 AND status = 'running'",
                params![id, reason, now],
            )?;
            Ok(n > 0)
        })
    }

    fn retry_later(&self, id: &str, not_before: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, not_before = ?2
                 WHERE id = ?1 AND status = 'running'",
                params![id, not_before],
            )?;
            Ok(n > 0)
        })
    }

    fn release(&self, id: &str) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, started_at = NULL,
                     attempts = MAX(attempts - 1, 0)
                 WHERE id = ?1 AND status = 'running'",
                [id],
            )?;
            Ok(n > 0)
        })
    }

    fn cancel(&self, id: &str, now: i64) -> Result<Option<Job>> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE jobs SET status = 'cancelled', completed_at = ?2, error = NULL
                 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![id, now],
            )?;
            tx.execute("UPDATE jobs SET expired = 1 WHERE id = ?1", [id])?;
            let job = fetch(&tx, id)?;
            tx.commit()?;
            Ok(job)
        })
    }

    fn recover_interrupted(&self, max_attempts: u32, now: i64) -> Result<Recovered> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let failed = {
                let mut stmt = tx.prepare(
                    "UPDATE jobs SET status = 'failed', completed_at = ?2,
                         error = 'Conversion was interrupted too many times'
                     WHERE status = 'running' AND attempts >= ?1
                     RETURNING id",
                )?;
                stmt.query_map(params![max_attempts, now], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?
            };
            let requeued = {
                let mut stmt = tx.prepare(
                    "UPDATE jobs SET status = 'queued', progress = 0, not_before = 0
                     WHERE status = 'running'
                     RETURNING id",
                )?;
                stmt.query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?
            };
            tx.commit()?;
            Ok(Recovered { requeued, failed })
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
                let count: i64 = row.get(1)?;
                let bytes_in: i64 = row.get(2)?;
                let bytes_out: i64 = row.get(3)?;
                if let Some(status) = JobStatus::parse(&status) {
                    *stats.count_mut(status) += count.max(0) as u64;
                }
                stats.total += count.max(0) as u64;
                stats.bytes_in += bytes_in.max(0) as u64;
                stats.bytes_out += bytes_out.max(0) as u64;
            }
            Ok(stats)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::names::new_job_id;

    fn store() -> (tempfile::TempDir, SqliteJobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteJobStore::open(&dir.path().join("jobs.db")).unwrap();
        (dir, store)
    }

    fn new_job(owner: &str, created_at: i64) -> NewJob {
        NewJob {
            id: new_job_id(),
            owner: owner.into(),
            source_filename: "a.mp4".into(),
            filename: "a.mp3".into(),
            size_bytes: 1000,
            created_at,
            started_at: None,
        }
    }

    fn claim(store: &SqliteJobStore, now: i64) -> Option<Job> {
        match store.claim_next(now).unwrap() {
            Claim::Job(job) => Some(job),
            Claim::Idle { .. } => None,
        }
    }

    #[test]
    fn a_job_converted_while_arriving_is_recorded_running_and_can_fall_back() {
        let (_dir, store) = store();
        let job = store
            .insert(NewJob {
                started_at: Some(5),
                ..new_job("alice", 9)
            })
            .unwrap();
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!((job.attempts, job.started_at), (1, Some(Timestamp(5))));
        assert!(claim(&store, 10).is_none(), "nobody else may claim it");
        assert!(store.set_progress(&job.id, 30).unwrap());

        // The head start failed: the job goes to the queue without using up an attempt.
        assert!(store.release(&job.id).unwrap());
        let again = claim(&store, 20).unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (job.id.as_str(), 1));
    }

    #[test]
    fn lifecycle() {
        let (_dir, store) = store();
        let job = store.insert(new_job("alice", 1)).unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.attempts, 0);

        let running = claim(&store, 10).unwrap();
        assert_eq!(running.id, job.id);
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(running.attempts, 1);
        assert_eq!(running.started_at, Some(Timestamp(10)));
        assert!(claim(&store, 10).is_none());

        assert!(store.set_progress(&job.id, 42).unwrap());
        assert!(store.complete(&job.id, 500, 20).unwrap());
        let done = store.get(&job.id).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.progress, 100);
        assert_eq!(done.output_bytes, Some(500));
        assert!(!store.set_progress(&job.id, 50).unwrap());
        assert!(!store.fail(&job.id, "x", 30).unwrap());

        let stats = store.stats().unwrap();
        assert_eq!(
            (
                stats.completed,
                stats.total,
                stats.bytes_in,
                stats.bytes_out
            ),
            (1, 1, 1000, 500)
        );
    }

    #[test]
    fn retries_wait_for_their_backoff() {
        let (_dir, store) = store();
        let job = store.insert(new_job("a", 1)).unwrap();
        claim(&store, 10).unwrap();
        assert!(store.retry_later(&job.id, 100).unwrap());
        assert_eq!(
            store.claim_next(50).unwrap(),
            Claim::Idle {
                next_due: Some(100)
            }
        );
        let again = claim(&store, 100).unwrap();
        assert_eq!(again.attempts, 2);
        assert!(store.release(&job.id).unwrap());
        assert_eq!(store.get(&job.id).unwrap().unwrap().attempts, 1);
    }

    #[test]
    fn cancel_wins_over_a_late_completion() {
        let (_dir, store) = store();
        let job = store.insert(new_job("a", 1)).unwrap();
        claim(&store, 10).unwrap();
        let cancelled = store.cancel(&job.id, 15).unwrap().unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        assert!(cancelled.expired);
        assert!(!store.complete(&job.id, 1, 20).unwrap());
        assert_eq!(
            store.get(&job.id).unwrap().unwrap().status,
            JobStatus::Cancelled
        );
        assert!(store.cancel("job_missing", 1).unwrap().is_none());
    }

    #[test]
    fn recovery_requeues_or_gives_up() {
        let (_dir, store) = store();
        let a = store.insert(new_job("a", 1)).unwrap();
        let b = store.insert(new_job("a", 2)).unwrap();
        claim(&store, 10).unwrap();
        claim(&store, 10).unwrap();
        // b has been interrupted twice already.
        store.release(&b.id).unwrap();
        claim(&store, 10).unwrap();
        store.retry_later(&b.id, 0).unwrap();
        claim(&store, 10).unwrap();
        let recovered = store.recover_interrupted(2, 99).unwrap();
        assert_eq!(recovered.requeued, vec![a.id.clone()]);
        assert_eq!(recovered.failed, vec![b.id.clone()]);
        assert_eq!(store.get(&a.id).unwrap().unwrap().status, JobStatus::Queued);
        assert_eq!(store.get(&b.id).unwrap().unwrap().status, JobStatus::Failed);
    }

    #[test]
    fn list_is_newest_first_and_filtered() {
        let (_dir, store) = store();
        let ids: Vec<String> = (0..5)
            .map(|i| {
                store
                    .insert(new_job(if i % 2 == 0 { "even" } else { "odd" }, i))
                    .unwrap()
                    .id
            })
            .collect();
        let (all, total) = store.list(None, 10, 0).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            all.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            ids.iter().rev().cloned().collect::<Vec<_>>()
        );
        let (even, total) = store.list(Some("even"), 2, 1).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            even.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            vec![ids[2].clone(), ids[0].clone()]
        );
    }

    #[test]
    fn retention_candidates() {
        let (_dir, store) = store();
        let old = store.insert(new_job("a", 1)).unwrap();
        let fresh = store.insert(new_job("a", 2)).unwrap();
        claim(&store, 5).unwrap();
        claim(&store, 5).unwrap();
        store.complete(&old.id, 1, 100).unwrap();
        store.fail(&fresh.id, "bad", 300).unwrap();
        assert_eq!(
            store.finished_before(200, 10).unwrap(),
            vec![old.id.clone()]
        );
        store.mark_expired(&old.id).unwrap();
        assert!(store.finished_before(200, 10).unwrap().is_empty());
        assert!(store.get(&old.id).unwrap().unwrap().expired);
    }

    #[test]
    fn concurrent_claims_never_share_a_job() {
        let (_dir, store) = store();
        let store = Arc::new(store);
        for i in 0..40 {
            store.insert(new_job("a", i)).unwrap();
        }
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(job) = claim(&store, 1000) {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut count = 0;
        for handle in handles {
            for id in handle.join().unwrap() {
                count += 1;
                assert!(seen.insert(id), "a job was claimed twice");
            }
        }
        assert_eq!(count, 40);
    }
}
