//! Key-value stores, whichever backend holds them: a local SQLite file
//! (`type = "spin"`, Spin's `spin_key_value` table) or a Redis server
//! (`type = "redis"`). Spin's `fermyon:spin/key-value` and `wasi:keyvalue`
//! both work on these, so a label holds the same data through either.
//!
//! Counters and compare-and-swap are atomic in the backend itself (an
//! immediate SQLite transaction, Redis INCRBY and WATCH/MULTI/EXEC), so they
//! stay exact across host processes sharing one store.

mod redis;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::redis::{RedisServer, RedisStore};
pub use self::sqlite::{SCHEMA as SQLITE_SCHEMA, SqliteStore};

/// The most a single call may bring back (listed keys, a batch of values),
/// so a huge store cannot exhaust the host's memory on one request.
const MAX_RESULT_BYTES: usize = 64 << 20;

/// A store failure, worded for the guest: it names no file, URL or secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    fn not_a_counter() -> Self {
        Error::new("the value is not a counter written by increment")
    }

    fn overflow() -> Self {
        Error::new("increment would overflow a 64-bit integer")
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One label's store, as the interfaces see it.
pub type Store = Arc<dyn Backend>;

#[async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()>;
    async fn delete(&self, key: &str) -> Result<()>;
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Every key, sorted.
    async fn keys(&self) -> Result<Vec<String>>;
    /// One entry per requested key, in order; `None` where the key is absent.
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>>;
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<()>;
    async fn delete_many(&self, keys: Vec<String>) -> Result<()>;
    /// Adds `delta` to the counter at `key` (absent counts as 0), atomically,
    /// and returns the new value. The encoding is the backend's, as in Spin:
    /// 8 bytes little-endian in SQLite, decimal text in Redis.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64>;
    /// Starts a compare-and-swap on `key`: remembers its value now.
    async fn watch(&self, key: &str) -> Result<Box<dyn Watch>>;
}

/// A compare-and-swap in progress on one key.
#[async_trait]
pub trait Watch: Send + Sync {
    /// The key's value when the watch began.
    fn current(&self) -> Option<&[u8]>;
    /// Writes `value` only if the key still holds what the watch saw (an
    /// absent key must still be absent; Redis refuses after any write at all);
    /// `Ok(false)` when it does not.
    async fn swap(self: Box<Self>, value: Vec<u8>) -> Result<bool>;
}

/// What one call may still bring back, counted as it is collected.
struct ResultBudget(usize);

impl ResultBudget {
    fn new() -> Self {
        ResultBudget(MAX_RESULT_BYTES)
    }

    fn spend(&mut self, bytes: usize) -> Result<()> {
        self.0 = self.0.checked_sub(bytes).ok_or_else(|| {
            Error::new(format!(
                "the result exceeds the host's limit of {MAX_RESULT_BYTES} bytes"
            ))
        })?;
        Ok(())
    }
}

/// Decodes a counter as Spin's SQLite store writes it (`i64::to_le_bytes`).
fn decode_counter(bytes: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| Error::not_a_counter())?;
    Ok(i64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_eight_bytes_little_endian() {
        assert_eq!(decode_counter(&(-7i64).to_le_bytes()), Ok(-7));
        assert_eq!(decode_counter(b"12"), Err(Error::not_a_counter()));
        assert_eq!(decode_counter(b""), Err(Error::not_a_counter()));
    }

    #[test]
    fn the_budget_refuses_what_exceeds_it() {
        let mut budget = ResultBudget::new();
        assert!(budget.spend(MAX_RESULT_BYTES - 1).is_ok());
        assert!(budget.spend(1).is_ok());
        assert!(budget.spend(1).is_err());
    }
}
