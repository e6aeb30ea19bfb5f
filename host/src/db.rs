//! SQLite files behind the key-value and SQLite interfaces.
//!
//! Each store or database label owns one file and a small pool of connections,
//! so concurrent requests do not queue behind one connection (and
//! `last_insert_rowid()` stays per-connection).
//!
//! SQLite calls block, so they would belong on tokio's blocking pool; but the hand-off
//! there and back costs more than most statements (see [`PooledConnection::in_place`]).
//! Work is first tried in place, on the async worker, where SQLite may neither wait for
//! a lock nor run long; what cannot finish that way runs again on the blocking pool.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use rusqlite::hooks::Wal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Runs blocking SQLite work off the async workers, on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> wasmtime::Result<T> {
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// Idle connections kept per file; more are opened on demand and closed after use.
const MAX_IDLE: usize = 16;

/// How long a call waits for another connection's write lock before SQLite
/// reports "database is locked".
const BUSY_WAIT_LIMIT: Duration = Duration::from_secs(5);
const BUSY_PAUSE: Duration = Duration::from_micros(250);

/// How long work run in place may take before SQLite interrupts it and it runs again
/// on the blocking pool: ten times the hand-off it saves (about 25 µs there and back).
/// Work that overruns loses at most this, and only work already ten hand-offs long.
const IN_PLACE_BUDGET: Duration = Duration::from_micros(250);

/// SQLite calls the progress handler about every this many VM instructions (a few µs).
const PROGRESS_INTERVAL_OPS: c_int = 1000;

/// WAL size, in pages, at which a commit checkpoints: SQLite's auto-checkpoint default.
const CHECKPOINT_PAGES: c_int = 1000;

/// SQLite's own busy timeout backs off to 100 ms sleeps, so a request that
/// loses a race for the write lock waits far longer than the writer holds it
/// (seen as a 1.3 s p99 on order creation). Short, even pauses keep the wait
/// close to the lock's real hold time.
fn wait_while_busy(attempt: i32) -> bool {
    let waited = BUSY_PAUSE * u32::try_from(attempt).unwrap_or(u32::MAX);
    if waited >= BUSY_WAIT_LIMIT {
        return false;
    }
    std::thread::sleep(BUSY_PAUSE);
    true
}

/// The busy handler of every connection: in place, refuse to wait (the work is run
/// again on the blocking pool); elsewhere, wait.
fn on_busy(attempt: i32) -> bool {
    !IN_PLACE.with(InPlace::give_up_if_active) && wait_while_busy(attempt)
}

/// The WAL hook of every connection, in place of SQLite's auto-checkpoint (same
/// threshold, same passive mode). A checkpoint writes the database file and syncs it,
/// which is no work for an async worker: in place, it is left to the blocking pool.
fn checkpoint_when_due(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages >= CHECKPOINT_PAGES && !IN_PLACE.with(InPlace::defer_checkpoint) {
        // An error here would fail the statement although its commit is done. One
        // checkpoint at a time runs per file and the others get SQLITE_BUSY; like
        // SQLite's own, this one is then left to a later commit.
        if let Err(err) = wal.checkpoint()
            && err.sqlite_error_code() != Some(rusqlite::ErrorCode::DatabaseBusy)
        {
            tracing::warn!("checkpoint: {err}");
        }
    }
    Ok(())
}

thread_local! {
    /// The work this thread runs in place, if any. SQLite calls the handlers above on
    /// the thread that runs the statement, so they find it here.
    static IN_PLACE: InPlace = const { InPlace::idle() };
}

struct InPlace {
    /// When the work's budget runs out; `None` when no work runs in place.
    deadline: Cell<Option<Instant>>,
    /// SQLite was refused a wait, or interrupted: the work failed and must run again.
    gave_up: Cell<bool>,
    /// A commit left the WAL due for a checkpoint.
    checkpoint_due: Cell<bool>,
}

impl InPlace {
    const fn idle() -> Self {
        InPlace {
            deadline: Cell::new(None),
            gave_up: Cell::new(false),
            checkpoint_due: Cell::new(false),
        }
    }

    fn give_up_if_active(&self) -> bool {
        let active = self.deadline.get().is_some();
        if active {
            self.gave_up.set(true);
        }
        active
    }

    fn over_budget(&self) -> bool {
        let over = self.deadline.get().is_some_and(|end| Instant::now() >= end);
        if over {
            self.gave_up.set(true);
        }
        over
    }

    fn defer_checkpoint(&self) -> bool {
        let active = self.deadline.get().is_some();
        if active {
            self.checkpoint_due.set(true);
        }
        active
    }
}

/// Marks this thread's work as in place until dropped (also on a panic).
struct InPlaceScope;

impl InPlaceScope {
    fn enter() -> Self {
        IN_PLACE.with(|state| {
            state.deadline.set(Some(Instant::now() + IN_PLACE_BUDGET));
            state.gave_up.set(false);
            state.checkpoint_due.set(false);
        });
        InPlaceScope
    }

    /// Ends the scope: whether the work gave up, and whether a checkpoint is due.
    fn leave(self) -> (bool, bool) {
        IN_PLACE.with(|state| (state.gave_up.get(), state.checkpoint_due.get()))
    }
}

impl Drop for InPlaceScope {
    fn drop(&mut self) {
        IN_PLACE.with(|state| state.deadline.set(None));
    }
}

#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One writer at a time among this process's connections (see [`SqliteFile::write_turn`]).
    writer: Arc<Semaphore>,
    /// A checkpoint is queued or running on the blocking pool.
    checkpointing: AtomicBool,
}

/// The right to write to a file, among this process's connections, until dropped.
pub type WriteTurn = OwnedSemaphorePermit;

/// No write turn came within [`BUSY_WAIT_LIMIT`]: the same outcome as SQLite's
/// "database is locked" after its busy wait.
#[derive(Debug, thiserror::Error)]
#[error("database is locked")]
pub struct Locked;

impl SqliteFile {
    /// Opens (creating if needed) the file and checks that it is usable, so a
    /// bad path fails at start-up rather than on the first request.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let file = Arc::new(SqliteFile {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            writer: Arc::new(Semaphore::new(1)),
            checkpointing: AtomicBool::new(false),
        });
        let first = file.connect()?;
        file.idle.lock().expect("pool lock").push(first);
        Ok(file)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path)
            .with_context(|| format!("cannot open SQLite file {}", self.path.display()))?;
        conn.busy_handler(Some(on_busy))?;
        // Work in place is interrupted once over budget. Through `sqlite3_interrupt`, not
        // by returning `true`: SQLite honours that even after a statement has finished,
        // reporting an error for a commit that took place, while an interrupt is acted on
        // only where the statement still runs (and is then undone with it).
        let interrupt = conn.get_interrupt_handle();
        conn.progress_handler(
            PROGRESS_INTERVAL_OPS,
            Some(move || {
                if IN_PLACE.with(InPlace::over_budget) {
                    interrupt.interrupt();
                }
                false
            }),
        );
        // WAL lets readers proceed during writes; NORMAL is durable across
        // application crashes, which is what a local store needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.wal_hook(Some(checkpoint_when_due));
        Ok(conn)
    }

    /// Waits, in line, for this process's turn to write. SQLite lets one writer in at a
    /// time and the others poll for the lock (the busy handler); with dozens of requests
    /// writing at once that polling cost more CPU than the writes (order creation: 5 ms of
    /// CPU per order at 32 connections, mostly context switches). Writers of this process
    /// queue here instead and are woken once, in order; the busy handler remains for
    /// other processes sharing the file.
    pub async fn write_turn(&self) -> Result<WriteTurn, Locked> {
        tokio::time::timeout(BUSY_WAIT_LIMIT, Arc::clone(&self.writer).acquire_owned())
            .await
            .map_err(|_| Locked)?
            .map_err(|_| Locked)
    }

    /// Takes a connection from the pool (or opens one, which is file I/O).
    pub fn checkout(self: &Arc<Self>) -> Result<PooledConnection> {
        match self.checkout_idle() {
            Some(conn) => Ok(conn),
            None => Ok(self.pooled(self.connect()?)),
        }
    }

    /// Takes an idle connection from the pool, if there is one: no I/O.
    pub fn checkout_idle(self: &Arc<Self>) -> Option<PooledConnection> {
        let conn = self.idle.lock().expect("pool lock").pop()?;
        Some(self.pooled(conn))
    }

    fn pooled(self: &Arc<Self>, conn: Connection) -> PooledConnection {
        PooledConnection {
            conn: Some(conn),
            file: Arc::clone(self),
        }
    }

    /// Checkpoints the WAL on the blocking pool (here, outside a runtime), once at a time.
    fn checkpoint_off_workers(self: &Arc<Self>) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let file = Arc::clone(self);
        let checkpoint = move || {
            let done = file.checkout().and_then(|conn| {
                // A passive checkpoint never waits: it copies what no reader still needs.
                Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?)
            });
            if let Err(err) = done {
                tracing::warn!("checkpoint of {}: {err:#}", file.path.display());
            }
            file.checkpointing.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(checkpoint)),
            Err(_) => checkpoint(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A connection that goes back to its pool when dropped.
#[derive(Debug)]
pub struct PooledConnection {
    conn: Option<Connection>,
    file: Arc<SqliteFile>,
}

impl PooledConnection {
    /// Runs `work` here, on the calling async worker, instead of handing it to the
    /// blocking pool: that hand-off and back measured about 25 µs, more than most
    /// statements take (a create-order request makes about twenty). Here SQLite may not
    /// wait for another connection's lock and is interrupted after [`IN_PLACE_BUDGET`];
    /// either way it undoes the work and this returns `None`, for the caller to run it
    /// again on the blocking pool. A checkpoint it makes due runs there too.
    ///
    /// Only for work SQLite undoes whole when it fails: reads, and writes begun outside a
    /// transaction. (An interrupted write inside a transaction rolls the whole
    /// transaction back.)
    pub fn in_place<T, E>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        let scope = InPlaceScope::enter();
        let result = work(self);
        let (gave_up, checkpoint_due) = scope.leave();
        if checkpoint_due {
            self.file.checkpoint_off_workers();
        }
        (!(gave_up && result.is_err())).then_some(result)
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A guest that ends with a transaction open must not leak it into the
        // next request that gets this connection.
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        let mut idle = self.file.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_transactions_are_rolled_back_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile::open(&dir.path().join("t.db")).unwrap();
        {
            let conn = file.checkout().unwrap();
            conn.execute_batch("CREATE TABLE t (x INTEGER); BEGIN; INSERT INTO t VALUES (1);")
                .unwrap();
        }
        let conn = file.checkout().unwrap();
        assert!(conn.is_autocommit());
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn connections_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile::open(&dir.path().join("t.db")).unwrap();
        drop(file.checkout().unwrap());
        assert_eq!(file.idle.lock().unwrap().len(), 1);
        let (a, b) = (file.checkout().unwrap(), file.checkout().unwrap());
        drop((a, b));
        assert_eq!(file.idle.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_writer_waits_for_another_connections_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile::open(&dir.path().join("t.db")).unwrap();
        file.checkout()
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let holder = file.checkout().unwrap();
        holder
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let waiter = {
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                file.checkout()
                    .unwrap()
                    .execute("INSERT INTO t VALUES (2)", [])
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 1);
        let count: i64 = holder
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 2);
    }

    fn file_with_table(dir: &tempfile::TempDir) -> Arc<SqliteFile> {
        let file = SqliteFile::open(&dir.path().join("t.db")).unwrap();
        file.checkout()
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        file
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    /// Counts to `n` in a loop of SQLite's: far longer than the budget for large `n`.
    fn counting_to(n: u32) -> String {
        format!(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {n}) SELECT x FROM n"
        )
    }

    #[test]
    fn work_in_place_does_not_wait_for_another_connections_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_with_table(&dir);
        let holder = file.checkout().unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let conn = file.checkout().unwrap();
        let write = conn.in_place(|conn| conn.execute("INSERT INTO t VALUES (1)", []));
        assert!(write.is_none(), "left to the pool, where it may wait");
        let read = conn
            .in_place(|conn| conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)));
        assert_eq!(read.unwrap().unwrap(), 0, "a WAL read waits for no writer");
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(
            conn.in_place(|conn| conn.execute("INSERT INTO t VALUES (1)", []))
                .unwrap()
                .unwrap(),
            1
        );
    }

    #[test]
    fn work_in_place_over_budget_is_interrupted_and_undone() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_with_table(&dir);
        let conn = file.checkout().unwrap();
        let long_write = format!("INSERT INTO t {}", counting_to(1_000_000));
        assert!(
            conn.in_place(|conn| conn.execute(&long_write, []))
                .is_none()
        );
        assert_eq!(count(&conn), 0, "the interrupted write left nothing");
        let long_read = format!("SELECT count(*) FROM ({})", counting_to(1_000_000));
        let read = |conn: &Connection| conn.query_row(&long_read, [], |row| row.get::<_, i64>(0));
        assert!(conn.in_place(read).is_none());
        assert_eq!(
            read(&conn).unwrap(),
            1_000_000,
            "the same read runs in full off the workers"
        );

        conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        assert!(conn.in_place(read).is_none());
        assert!(
            !conn.is_autocommit(),
            "an interrupted read keeps the transaction"
        );
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn over_budget_never_fails_a_statement_that_finished() {
        // SQLite consults the progress handler once more as a statement returns, after it
        // committed; an interrupt requested then must not turn that commit into an error.
        let dir = tempfile::tempdir().unwrap();
        let file = file_with_table(&dir);
        let conn = file.checkout().unwrap();
        let succeeded = Cell::new(0);
        let outcome = conn.in_place(|conn| {
            std::thread::sleep(IN_PLACE_BUDGET * 2);
            // Cached statements, as the guest's are: SQLite counts their instructions
            // across runs, so the progress handler comes at a different point each time.
            let run = |sql: &str, params: &[i64]| {
                conn.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(params))
            };
            for i in 0..3000 {
                run("BEGIN IMMEDIATE", &[])?;
                run("INSERT INTO t VALUES (?1)", &[i])?;
                run("COMMIT", &[])?;
                succeeded.set(succeeded.get() + 1);
            }
            Ok::<_, rusqlite::Error>(())
        });
        assert!(conn.is_autocommit());
        assert_eq!(count(&conn), succeeded.get(), "{outcome:?}");
        assert!(matches!(outcome, Some(Ok(()))), "{outcome:?}");
    }

    #[test]
    fn a_checkpoint_made_due_in_place_runs_on_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = file_with_table(&dir);
        let db_size = || std::fs::metadata(file.path()).unwrap().len();
        let before = db_size();
        runtime.block_on(async {
            // The only blocking thread waits, so a checkpoint can only queue behind it.
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let blocker = tokio::task::spawn_blocking(move || wait.recv());
            let conn = file.checkout().unwrap();
            for _ in 0..600 {
                // Two pages or more each: past the checkpoint threshold in all.
                let _ = conn
                    .in_place(|conn| conn.execute("INSERT INTO t VALUES (randomblob(6000))", []));
            }
            assert_eq!(db_size(), before, "no checkpoint in place");
            release.send(()).unwrap();
            blocker.await.unwrap().unwrap();
            for _ in 0..200 {
                if db_size() > before {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the checkpoint never ran");
        });
    }

    #[test]
    fn sqlite_counts_what_takes_the_write_lock_as_not_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile::open(&dir.path().join("t.db")).unwrap();
        let conn = file.checkout().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let read_only = |sql: &str| conn.prepare(sql).unwrap().readonly();
        for writes in [
            "BEGIN IMMEDIATE",
            "BEGIN EXCLUSIVE TRANSACTION",
            "INSERT INTO t VALUES (1)",
            "WITH v(x) AS (SELECT 1) INSERT INTO t SELECT x FROM v",
            "DELETE FROM t",
        ] {
            assert!(!read_only(writes), "{writes}");
        }
        for reads in ["SELECT * FROM t", "BEGIN", "COMMIT", "ROLLBACK"] {
            assert!(read_only(reads), "{reads}");
        }
    }
}
