//! The platform interfaces a guest may import (WIT under `wit/spin/`): Spin's
//! `fermyon:spin/*@2.0.0` key-value, SQLite and variables, and
//! `wasi:keyvalue@0.2.0-draft2` (in `keyvalue`), with the component's grants
//! enforced.
//!
//! SQLite work is blocking I/O: it runs in place when it can finish there quickly and
//! without waiting, else on tokio's blocking pool (see `crate::db`).

mod keyvalue;

use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use wasmtime::component::Resource;

use crate::db::{PooledConnection, SqliteFile, WriteTurn, blocking};
use crate::kv;
use crate::state::RequestState;

wasmtime::component::bindgen!({
    path: "../wit/spin",
    world: "fermyon:spin/platform",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": KeyValueStore,
        "fermyon:spin/sqlite.connection": SqliteConnection,
        "wasi:keyvalue/store.bucket": keyvalue::Bucket,
        "wasi:keyvalue/atomics.cas": keyvalue::Cas,
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
    keyvalue::add_to_linker(linker)?;
    Ok(())
}

/// Why a key-value label cannot be opened; both interfaces have these errors.
enum OpenRefused {
    AccessDenied,
    NoSuchStore,
}

impl RequestState {
    /// The store behind a label, if the component is granted it (Spin checks
    /// the grant first, so an ungranted unknown label is `access-denied`).
    fn open_key_value(&self, label: &str) -> Result<kv::Store, OpenRefused> {
        if !self.component.key_value_stores.contains(label) {
            return Err(OpenRefused::AccessDenied);
        }
        self.shared
            .stores
            .key_value
            .get(label)
            .cloned()
            .ok_or(OpenRefused::NoSuchStore)
    }
}

/// An open Spin key-value store.
pub struct KeyValueStore {
    store: kv::Store,
}

/// An open SQLite connection. It keeps one pooled connection for its lifetime
/// so a guest's `BEGIN … COMMIT` spans its `execute` calls.
pub struct SqliteConnection {
    conn: Arc<Mutex<PooledConnection>>,
    file: Arc<SqliteFile>,
    /// This process's turn to write to the file ([`SqliteFile::write_turn`]), held from
    /// the first statement that takes SQLite's write lock until the transaction ends.
    /// Declared after `conn`, so a connection dropped mid-transaction is rolled back
    /// before the next writer's turn.
    turn: Option<WriteTurn>,
}

fn kv_error(err: kv::Error) -> key_value::Error {
    key_value::Error::Other(err.to_string())
}

impl key_value::Host for RequestState {}

impl key_value::HostStore for RequestState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KeyValueStore>, key_value::Error>> {
        match self.open_key_value(&label) {
            Ok(store) => Ok(Ok(self.table.push(KeyValueStore { store })?)),
            Err(OpenRefused::AccessDenied) => Ok(Err(key_value::Error::AccessDenied)),
            Err(OpenRefused::NoSuchStore) => Ok(Err(key_value::Error::NoSuchStore)),
        }
    }

    async fn get(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.spin_store(&store)?;
        Ok(store.get(&key).await.map_err(kv_error))
    }

    async fn set(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.spin_store(&store)?;
        Ok(store.set(&key, value).await.map_err(kv_error))
    }

    async fn delete(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.spin_store(&store)?;
        Ok(store.delete(&key).await.map_err(kv_error))
    }

    async fn exists(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.spin_store(&store)?;
        Ok(store.exists(&key).await.map_err(kv_error))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KeyValueStore>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.spin_store(&store)?;
        Ok(store.keys().await.map_err(kv_error))
    }

    async fn drop(&mut self, store: Resource<KeyValueStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl RequestState {
    fn spin_store(&self, store: &Resource<KeyValueStore>) -> wasmtime::Result<kv::Store> {
        Ok(Arc::clone(&self.table.get(store)?.store))
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
        let checkout = match file.checkout_idle() {
            Some(idle) => Ok(idle),
            None => {
                let pool = Arc::clone(&file);
                blocking(move || pool.checkout()).await?
            }
        };
        match checkout {
            Ok(conn) => Ok(Ok(self.table.push(SqliteConnection {
                conn: Arc::new(Mutex::new(conn)),
                file,
                turn: None,
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
        let open = self.table.get(&connection)?;
        let conn = Arc::clone(&open.conn);
        let (writes, in_transaction) = {
            let conn = conn.lock().expect("connection lock");
            (takes_write_lock(&conn, &statement), !conn.is_autocommit())
        };
        if writes && open.turn.is_none() {
            let file = Arc::clone(&open.file);
            match file.write_turn().await {
                Ok(turn) => self.table.get_mut(&connection)?.turn = Some(turn),
                Err(locked) => return Ok(Err(sqlite::Error::Io(locked.to_string()))),
            }
        }
        // A write inside the guest's transaction runs on the pool: SQLite could not
        // interrupt it in place without rolling the whole transaction back.
        let in_place = if writes && in_transaction {
            None
        } else {
            let conn = conn.lock().expect("connection lock");
            conn.in_place(|conn| execute_statement(conn, &statement, &parameters))
                .map(|result| (result, conn.is_autocommit()))
        };
        let (result, transaction_ended) = match in_place {
            Some(done) => done,
            None => {
                blocking(move || {
                    let conn = conn.lock().expect("connection lock");
                    let result = execute_statement(&conn, &statement, &parameters);
                    (result, conn.is_autocommit())
                })
                .await?
            }
        };
        if transaction_ended {
            self.table.get_mut(&connection)?.turn = None;
        }
        Ok(result.map_err(sqlite_error))
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

/// Whether `statement` takes SQLite's write lock: it changes the database, or it is a
/// `BEGIN IMMEDIATE` / `EXCLUSIVE`. One that does not prepare is left to `execute`,
/// which reports the error.
fn takes_write_lock(conn: &rusqlite::Connection, statement: &str) -> bool {
    conn.prepare_cached(statement)
        .is_ok_and(|prepared| !prepared.readonly())
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
