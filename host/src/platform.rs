//! Spin's platform interfaces (`fermyon:spin/*@2.0.0`, WIT under `wit/spin/`):
//! key-value, SQLite and variables, with the component's grants enforced.
//!
//! Store work is blocking SQLite I/O, so it runs on tokio's blocking pool.

use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use wasmtime::component::Resource;

use crate::db::{PooledConnection, SqliteFile};
use crate::state::RequestState;

wasmtime::component::bindgen!({
    path: "../wit/spin",
    world: "fermyon:spin/platform",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": KeyValueStore,
        "fermyon:spin/sqlite.connection": SqliteConnection,
    },
});

use fermyon::spin::{key_value, sqlite, variables};

/// Adds the platform interfaces to a linker.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<RequestState>,
) -> wasmtime::Result<()> {
    type Data = wasmtime::component::HasSelf<RequestState>;
    key_value::add_to_linker::<_, Data>(linker, |state| state)?;
    sqlite::add_to_linker::<_, Data>(linker, |state| state)?;
    variables::add_to_linker::<_, Data>(linker, |state| state)?;
    Ok(())
}

/// An open key-value store: the label's file and the store name inside it.
pub struct KeyValueStore {
    label: String,
    file: Arc<SqliteFile>,
}

/// An open SQLite connection. It keeps one pooled connection for its lifetime
/// so a guest's `BEGIN … COMMIT` spans its `execute` calls.
pub struct SqliteConnection {
    conn: Arc<Mutex<PooledConnection>>,
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> wasmtime::Result<T> {
    Ok(tokio::task::spawn_blocking(work).await?)
}

fn kv_error(err: impl std::fmt::Display) -> key_value::Error {
    key_value::Error::Other(err.to_string())
}

impl key_value::Host for RequestState {}

impl key_value::HostStore for RequestState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KeyValueStore>, key_value::Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        let Some(file) = self.shared.stores.key_value.get(&label).cloned() else {
            return Ok(Err(key_value::Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(KeyValueStore { label, file })?))
    }

    async fn get(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let (label, file) = self.kv(&store)?;
        blocking(move || {
            let conn = file.checkout().map_err(kv_error)?;
            let mut stmt = conn
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .map_err(kv_error)?;
            let mut rows = stmt.query((label, key)).map_err(kv_error)?;
            match rows.next().map_err(kv_error)? {
                Some(row) => Ok(Some(row.get(0).map_err(kv_error)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn set(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let (label, file) = self.kv(&store)?;
        blocking(move || {
            let conn = file.checkout().map_err(kv_error)?;
            conn.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute((label, key, value)))
            .map(drop)
            .map_err(kv_error)
        })
        .await
    }

    async fn delete(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let (label, file) = self.kv(&store)?;
        blocking(move || {
            let conn = file.checkout().map_err(kv_error)?;
            conn.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
                .and_then(|mut stmt| stmt.execute((label, key)))
                .map(drop)
                .map_err(kv_error)
        })
        .await
    }

    async fn exists(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let (label, file) = self.kv(&store)?;
        blocking(move || {
            let conn = file.checkout().map_err(kv_error)?;
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
            )
            .and_then(|mut stmt| stmt.query_row((label, key), |row| row.get(0)))
            .map_err(kv_error)
        })
        .await
    }

    async fn get_keys(
        &mut self,
        store: Resource<KeyValueStore>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let (label, file) = self.kv(&store)?;
        blocking(move || {
            let conn = file.checkout().map_err(kv_error)?;
            let mut stmt = conn
                .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")
                .map_err(kv_error)?;
            let keys = stmt
                .query_map([label], |row| row.get(0))
                .map_err(kv_error)?;
            keys.collect::<Result<Vec<String>, _>>().map_err(kv_error)
        })
        .await
    }

    async fn drop(&mut self, store: Resource<KeyValueStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl RequestState {
    fn kv(&self, store: &Resource<KeyValueStore>) -> wasmtime::Result<(String, Arc<SqliteFile>)> {
        let store = self.table.get(store)?;
        Ok((store.label.clone(), Arc::clone(&store.file)))
    }
}

impl sqlite::Host for RequestState {}

impl sqlite::HostConnection for RequestState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        if !self.component.sqlite_databases.contains(&database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        let Some(file) = self.shared.stores.sqlite.get(&database).cloned() else {
            return Ok(Err(sqlite::Error::NoSuchDatabase));
        };
        match blocking(move || file.checkout()).await? {
            Ok(conn) => Ok(Ok(self.table.push(SqliteConnection {
                conn: Arc::new(Mutex::new(conn)),
            })?)),
            Err(err) => Ok(Err(sqlite::Error::Io(err.to_string()))),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = Arc::clone(&self.table.get(&connection)?.conn);
        blocking(move || {
            let conn = conn.lock().expect("connection lock");
            execute_statement(&conn, &statement, &parameters).map_err(sqlite_error)
        })
        .await
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

fn sqlite_error(err: rusqlite::Error) -> sqlite::Error {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => sqlite::Error::DatabaseFull,
        _ => sqlite::Error::Io(err.to_string()),
    }
}

impl rusqlite::ToSql for sqlite::Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            sqlite::Value::Integer(i) => ValueRef::Integer(*i),
            sqlite::Value::Real(f) => ValueRef::Real(*f),
            sqlite::Value::Text(s) => ValueRef::Text(s.as_bytes()),
            sqlite::Value::Blob(b) => ValueRef::Blob(b),
            sqlite::Value::Null => ValueRef::Null,
        }))
    }
}

fn to_value(value: ValueRef<'_>) -> sqlite::Value {
    match value {
        ValueRef::Null => sqlite::Value::Null,
        ValueRef::Integer(i) => sqlite::Value::Integer(i),
        ValueRef::Real(f) => sqlite::Value::Real(f),
        ValueRef::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

fn execute_statement(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: &[sqlite::Value],
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
    let columns: Vec<String> = stmt
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(parameters))?;
    let mut results = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(to_value))
            .collect::<Result<_, _>>()?;
        results.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult {
        columns,
        rows: results,
    })
}

impl variables::Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        use crate::variables::VariableError;
        Ok(self
            .shared
            .variables
            .get(&self.component.id, &name)
            .map_err(|err| match err {
                VariableError::InvalidName(name) => variables::Error::InvalidName(name),
                VariableError::Undefined(name) => variables::Error::Undefined(name),
            }))
    }
}
