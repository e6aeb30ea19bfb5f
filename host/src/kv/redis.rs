//! A key-value store on a Redis server, kept the way Spin's `type = "redis"`
//! keeps one: keys exactly as the guest names them (no per-label prefix, so
//! labels pointed at one server and database share its keys, as in Spin),
//! values as Redis strings, counters by INCRBY (so they read as decimal
//! text), compare-and-swap by WATCH/MULTI/EXEC.
//!
//! Every call is bounded: connecting, each reply, and the whole operation
//! with any reconnection; a server that is down costs a request an error,
//! never a hang. Errors never carry the URL's password.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use anyhow::bail;
use async_trait::async_trait;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::{Backend, Error, Result, ResultBudget, Watch};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// One operation from start to finish, a reconnection included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Compare-and-swaps in progress at once per server. WATCH belongs to a
/// connection, so each holds a connection of its own until it swaps.
const MAX_WATCHES: usize = 64;
/// Keys asked for per SCAN step when listing.
const SCAN_BATCH: usize = 1000;

/// A Redis server from a store's `url`, checked when the config is read.
#[derive(Clone)]
pub struct RedisServer {
    client: Client,
    /// The whole URL, only to recognise labels that share a server.
    url: Arc<str>,
    password: Option<Arc<str>>,
}

impl RedisServer {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        // The parser's own messages may quote the URL, password and all.
        if url.starts_with("rediss://") {
            bail!("`url`: TLS (rediss://) is not supported by the embedded host; use redis://")
        }
        let Ok(client) = Client::open(url) else {
            bail!("`url` is not a valid redis://host:port/db URL")
        };
        let password = client
            .get_connection_info()
            .redis_settings()
            .password()
            .filter(|password| !password.is_empty())
            .map(Arc::from);
        Ok(RedisServer {
            client,
            url: url.into(),
            password,
        })
    }

    /// Where the server is, without credentials.
    pub fn address(&self) -> String {
        let info = self.client.get_connection_info();
        format!("{}/{}", info.addr(), info.redis_settings().db())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one operation under the overall bound.
    async fn bounded<T>(&self, operation: impl Future<Output = RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(result) => result.map_err(|err| self.error(&err)),
            Err(_) => {
                tracing::warn!(server = %self.address(), "redis: no answer within {OPERATION_TIMEOUT:?}");
                Err(Error::new("redis: timed out"))
            }
        }
    }

    fn error(&self, err: &RedisError) -> Error {
        let mut detail = err.to_string();
        if let Some(password) = &self.password {
            detail = detail.replace(&**password, "***");
        }
        if err.is_timeout() || err.is_io_error() || err.is_connection_refusal() {
            tracing::warn!(server = %self.address(), "redis: {detail}");
            let what = if err.is_timeout() {
                "timed out"
            } else {
                "unreachable"
            };
            return Error::new(format!("redis: {what}"));
        }
        Error::new(format!("redis: {detail}"))
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis at {}", self.address())
    }
}

/// The store: one multiplexed connection, reconnected when it breaks,
/// opened on first use so the host starts even while Redis is down.
pub struct RedisStore {
    server: RedisServer,
    connection: OnceCell<ConnectionManager>,
    watches: Arc<Semaphore>,
}

impl RedisStore {
    pub fn new(server: RedisServer) -> Self {
        RedisStore {
            server,
            connection: OnceCell::new(),
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                // One quick retry: the operation's own bound must cover it.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.server.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|err| self.server.error(&err))
    }

    async fn query<T: ::redis::FromRedisValue>(&self, command: &::redis::Cmd) -> Result<T> {
        let mut connection = self.connection().await?;
        self.server
            .bounded(command.query_async(&mut connection))
            .await
    }
}

fn cmd(name: &str) -> ::redis::Cmd {
    ::redis::cmd(name)
}

#[async_trait]
impl Backend for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.query(cmd("GET").arg(key)).await
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        self.query(cmd("SET").arg(key).arg(value)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.query(cmd("DEL").arg(key)).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.query(cmd("EXISTS").arg(key)).await
    }

    /// SCAN rather than KEYS, which would stall a shared server on a big database.
    async fn keys(&self) -> Result<Vec<String>> {
        let mut keys = BTreeSet::new();
        let mut budget = ResultBudget::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(cmd("SCAN").arg(cursor).arg("COUNT").arg(SCAN_BATCH))
                .await?;
            for key in batch {
                // SCAN may return a key twice; count it once.
                if !keys.contains(&key) {
                    budget.spend(key.len())?;
                    keys.insert(key);
                }
            }
            if next == 0 {
                return Ok(keys.into_iter().collect());
            }
            cursor = next;
        }
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<Vec<u8>>> = self.query(cmd("MGET").arg(&keys)).await?;
        let mut budget = ResultBudget::new();
        for (key, value) in keys.iter().zip(&values) {
            budget.spend(key.len() + value.as_ref().map_or(0, Vec::len))?;
        }
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.query(cmd("MSET").arg(&entries)).await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.query(cmd("DEL").arg(&keys)).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.query(cmd("INCRBY").arg(key).arg(delta))
            .await
            .map_err(|err| {
                // Worded as the SQLite store words them.
                if err.0.contains("not an integer") {
                    Error::not_a_counter()
                } else if err.0.contains("overflow") {
                    Error::overflow()
                } else {
                    err
                }
            })
    }

    async fn watch(&self, key: &str) -> Result<Box<dyn Watch>> {
        let Ok(Ok(slot)) =
            tokio::time::timeout(OPERATION_TIMEOUT, Arc::clone(&self.watches).acquire_owned())
                .await
        else {
            return Err(Error::new(
                "too many compare-and-swap operations in progress",
            ));
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let server = &self.server;
        let mut connection = server
            .bounded(
                server
                    .client
                    .get_multiplexed_async_connection_with_config(&config),
            )
            .await?;
        server
            .bounded(cmd("WATCH").arg(key).exec_async(&mut connection))
            .await?;
        let current = server
            .bounded(cmd("GET").arg(key).query_async(&mut connection))
            .await?;
        Ok(Box::new(RedisWatch {
            server: server.clone(),
            connection,
            key: key.to_owned(),
            current,
            _slot: slot,
        }))
    }
}

/// A WATCH on its own connection; dropping it closes the connection, which
/// ends the WATCH on the server.
struct RedisWatch {
    server: RedisServer,
    connection: MultiplexedConnection,
    key: String,
    current: Option<Vec<u8>>,
    _slot: OwnedSemaphorePermit,
}

#[async_trait]
impl Watch for RedisWatch {
    fn current(&self) -> Option<&[u8]> {
        self.current.as_deref()
    }

    async fn swap(mut self: Box<Self>, value: Vec<u8>) -> Result<bool> {
        // EXEC answers nil, not the SET's reply, when the watched key changed.
        let applied: Option<()> = self
            .server
            .bounded(
                ::redis::pipe()
                    .atomic()
                    .set(&self.key, value)
                    .query_async(&mut self.connection),
            )
            .await?;
        Ok(applied.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_checked_and_its_password_never_shown() {
        let server = RedisServer::parse("redis://user:s3cret@127.0.0.1:6390/2").unwrap();
        assert_eq!(server.address(), "127.0.0.1:6390/2");
        assert!(!format!("{server:?}").contains("s3cret"));
        let err = RedisServer::parse("http://user:s3cret@x").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = RedisServer::parse("rediss://user:s3cret@x").unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
