//! SQLite files behind the key-value and SQLite interfaces.
//!
//! Each store or database label owns one file and a small pool of connections,
//! so concurrent requests do not queue behind one connection (and
//! `last_insert_rowid()` stays per-connection). Calls run on tokio's blocking
//! pool, except key-value point reads (`kv::SqliteStore`), which wait for nobody.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;
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

#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One writer at a time among this process's connections (see [`SqliteFile::write_turn`]).
    writer: Arc<Semaphore>,
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
        });
        let first = file.connect()?;
        file.idle.lock().expect("pool lock").push(first);
        Ok(file)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path)
            .with_context(|| format!("cannot open SQLite file {}", self.path.display()))?;
        conn.busy_handler(Some(wait_while_busy))?;
        // WAL lets readers proceed during writes; NORMAL is durable across
        // application crashes, which is what a local store needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
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

    /// Takes a connection from the pool (or opens one).
    pub fn checkout(self: &Arc<Self>) -> Result<PooledConnection> {
        let conn = match self.idle.lock().expect("pool lock").pop() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            file: Arc::clone(self),
        })
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
