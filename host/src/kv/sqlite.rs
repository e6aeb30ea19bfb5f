//! A key-value store in a local SQLite file, in Spin's `spin_key_value` table
//! (one file may hold several labels, each its own `store` rows), so `spin up`
//! and this host read each other's files.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Backend, Error, Result, ResultBudget, Watch, decode_counter};
use crate::db::{PooledConnection, SqliteFile, WriteTurn, blocking};

/// Spin's table for key-value data.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))";

const SELECT: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

#[derive(Clone)]
pub struct SqliteStore {
    label: Arc<str>,
    file: Arc<SqliteFile>,
}

impl SqliteStore {
    pub fn new(label: &str, file: Arc<SqliteFile>) -> Self {
        SqliteStore {
            label: label.into(),
            file,
        }
    }

    /// Runs a write in this process's turn to write to the file: in place if it can
    /// finish there ([`PooledConnection::in_place`]), else on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        work: impl Fn(&Connection, &str) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        self.try_write(move |conn, label| work(conn, label).map_err(sqlite_error))
            .await
    }

    async fn try_write<T: Send + 'static>(
        &self,
        work: impl Fn(&Connection, &str) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let turn = self
            .file
            .write_turn()
            .await
            .map_err(|locked| Error::new(format!("sqlite: {locked}")))?;
        match self.in_place(&work) {
            Some(done) => done,
            None => self.off_workers(Some(turn), work).await,
        }
    }

    /// Runs a read in place if it can finish there, else on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl Fn(&Connection, &str) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let work = move |conn: &Connection, label: &str| work(conn, label).map_err(sqlite_error);
        match self.in_place(&work) {
            Some(done) => done,
            None => self.off_workers(None, work).await,
        }
    }

    /// `work` on an idle connection, in place; `None` when it must run on the pool.
    /// Every call here is one statement or one transaction of its own, which SQLite
    /// undoes whole if it gives up.
    fn in_place<T>(&self, work: &impl Fn(&Connection, &str) -> Result<T>) -> Option<Result<T>> {
        self.file
            .checkout_idle()?
            .in_place(|conn| work(conn, &self.label))
    }

    fn checkout(&self) -> Result<PooledConnection> {
        self.file.checkout().map_err(|err| {
            tracing::warn!("key-value store {:?}: {err:#}", self.label);
            Error::new("the key-value store cannot be opened")
        })
    }

    /// Runs `work` on a pooled connection on the blocking pool, holding `turn` (if any)
    /// until the connection is back in the pool.
    async fn off_workers<T: Send + 'static>(
        &self,
        turn: Option<WriteTurn>,
        work: impl FnOnce(&Connection, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        blocking(move || {
            let _turn = turn;
            let conn = store.checkout()?;
            work(&conn, &store.label)
        })
        .await
        .map_err(|_| Error::new("the key-value operation failed"))?
    }
}

/// SQLite's messages name no paths; "database is locked" after the busy wait
/// is the one a caller can act on (retry).
fn sqlite_error(err: rusqlite::Error) -> Error {
    Error::new(format!("sqlite: {err}"))
}

/// A write transaction that holds SQLite's write lock from its first
/// statement, so what it reads cannot change before it writes — in this
/// process or any other sharing the file. (A deferred one would read, then
/// fail to upgrade when another writer got in between.)
fn write_transaction(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

#[async_trait]
impl Backend for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |conn, label| {
            conn.prepare_cached(SELECT)?
                .query_row((label, &key), |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let key = key.to_owned();
        self.write(move |conn, label| {
            conn.prepare_cached(UPSERT)?
                .execute((label, &key, &value))
                .map(drop)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.write(move |conn, label| {
            conn.prepare_cached(DELETE)?
                .execute((label, &key))
                .map(drop)
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.read(move |conn, label| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
            )?
            .query_row((label, &key), |row| row.get(0))
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>> {
        self.off_workers(None, move |conn, label| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")
                .map_err(sqlite_error)?;
            let mut rows = stmt.query([label]).map_err(sqlite_error)?;
            let mut budget = ResultBudget::new();
            let mut keys = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                let key: String = row.get(0).map_err(sqlite_error)?;
                budget.spend(key.len())?;
                keys.push(key);
            }
            Ok(keys)
        })
        .await
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        self.off_workers(None, move |conn, label| {
            let mut stmt = conn.prepare_cached(SELECT).map_err(sqlite_error)?;
            let mut budget = ResultBudget::new();
            keys.into_iter()
                .map(|key| {
                    let value: Option<Vec<u8>> = stmt
                        .query_row((label, &key), |row| row.get(0))
                        .optional()
                        .map_err(sqlite_error)?;
                    budget.spend(key.len() + value.as_ref().map_or(0, Vec::len))?;
                    Ok((key, value))
                })
                .collect()
        })
        .await
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        // One transaction: one commit (one fsync) for the whole batch.
        self.write(move |conn, label| {
            let tx = write_transaction(conn)?;
            let mut stmt = tx.prepare_cached(UPSERT)?;
            for (key, value) in &entries {
                stmt.execute((label, key, value))?;
            }
            drop(stmt);
            tx.commit()
        })
        .await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        self.write(move |conn, label| {
            let tx = write_transaction(conn)?;
            let mut stmt = tx.prepare_cached(DELETE)?;
            for key in &keys {
                stmt.execute((label, key))?;
            }
            drop(stmt);
            tx.commit()
        })
        .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        let key = key.to_owned();
        self.try_write(move |conn, label| {
            let tx = write_transaction(conn).map_err(sqlite_error)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached(SELECT)
                .and_then(|mut stmt| stmt.query_row((label, &key), |row| row.get(0)).optional())
                .map_err(sqlite_error)?;
            let current = current.as_deref().map(decode_counter).transpose()?;
            let next = current
                .unwrap_or(0)
                .checked_add(delta)
                .ok_or_else(Error::overflow)?;
            tx.prepare_cached(UPSERT)
                .and_then(|mut stmt| stmt.execute((label, &key, next.to_le_bytes())))
                .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(next)
        })
        .await
    }

    async fn watch(&self, key: &str) -> Result<Box<dyn Watch>> {
        let current = self.get(key).await?;
        Ok(Box::new(SqliteWatch {
            store: self.clone(),
            key: key.to_owned(),
            current,
        }))
    }
}

/// A compare-and-swap as one conditional statement: the write happens only
/// where the row still holds the value seen (or, for an absent key, where no
/// row exists yet), which SQLite decides under its write lock.
struct SqliteWatch {
    store: SqliteStore,
    key: String,
    current: Option<Vec<u8>>,
}

#[async_trait]
impl Watch for SqliteWatch {
    fn current(&self) -> Option<&[u8]> {
        self.current.as_deref()
    }

    async fn swap(self: Box<Self>, value: Vec<u8>) -> Result<bool> {
        let SqliteWatch {
            store,
            key,
            current,
            ..
        } = *self;
        store
            .write(move |conn, label| {
                let changed = match &current {
                    Some(seen) => conn
                        .prepare_cached(
                            "UPDATE spin_key_value SET value = ?4
                             WHERE store = ?1 AND key = ?2 AND value = ?3",
                        )?
                        .execute((label, &key, seen, &value))?,
                    None => conn
                        .prepare_cached(
                            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                             ON CONFLICT (store, key) DO NOTHING",
                        )?
                        .execute((label, &key, &value))?,
                };
                Ok(changed == 1)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir, label: &str) -> SqliteStore {
        let file = SqliteFile::open(&dir.path().join("kv.db")).unwrap();
        file.checkout().unwrap().execute_batch(SCHEMA).unwrap();
        SqliteStore::new(label, file)
    }

    #[tokio::test]
    async fn labels_in_one_file_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (store(&dir, "a"), store(&dir, "b"));
        a.set("k", b"1".to_vec()).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(a.keys().await.unwrap(), ["k"]);
        assert!(b.keys().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn increment_refuses_what_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, "a");
        assert_eq!(store.increment("n", 5).await, Ok(5));
        assert_eq!(
            store.get("n").await.unwrap(),
            Some(5i64.to_le_bytes().to_vec())
        );
        store.set("text", b"5".to_vec()).await.unwrap();
        assert_eq!(
            store.increment("text", 1).await,
            Err(Error::not_a_counter())
        );
        store
            .set("max", i64::MAX.to_le_bytes().to_vec())
            .await
            .unwrap();
        assert_eq!(store.increment("max", 1).await, Err(Error::overflow()));
        assert_eq!(store.increment("max", -1).await, Ok(i64::MAX - 1));
    }

    #[tokio::test]
    async fn a_swap_on_an_absent_key_loses_to_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, "a");
        let watch = store.watch("k").await.unwrap();
        assert_eq!(watch.current(), None);
        store.set("k", b"first".to_vec()).await.unwrap();
        assert_eq!(watch.swap(b"second".to_vec()).await, Ok(false));
        assert_eq!(store.get("k").await.unwrap(), Some(b"first".to_vec()));
    }
}
