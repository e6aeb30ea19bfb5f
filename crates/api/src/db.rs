//! SQLite plumbing for components that own a database: open with idempotent migrations,
//! write transactions, parameter values.

use spin_sdk::sqlite::{Connection, Error, Value};

/// Opens the database `label` (granted in `spin.toml`), migrating it first if this is the
/// first request on an old schema. Step `i` of `migrations` takes schema version `i` to
/// `i + 1` (tracked in `PRAGMA user_version`): append steps, never edit a shipped one.
/// The version check is one cheap query; a migration runs once, under the write lock.
pub fn open<E: From<Error>>(label: &str, migrations: &[&[&str]]) -> Result<Connection, E> {
    let conn = Connection::open(label)?;
    if schema_version(&conn)? < migrations.len() {
        migrate(&conn, migrations)?;
    }
    Ok(conn)
}

fn schema_version(conn: &Connection) -> Result<usize, Error> {
    let result = conn.execute("PRAGMA user_version", &[])?;
    result
        .rows
        .first()
        .and_then(|row| row.get::<usize>(0))
        .ok_or_else(|| Error::Io("PRAGMA user_version returned no number".into()))
}

fn migrate(conn: &Connection, migrations: &[&[&str]]) -> Result<(), Error> {
    transaction(conn, || {
        // Concurrent first requests all get here; only the first to take the lock migrates.
        let from = schema_version(conn)?;
        for statement in migrations.iter().skip(from).flat_map(|step| step.iter()) {
            conn.execute(statement, &[])?;
        }
        conn.execute(&format!("PRAGMA user_version = {}", migrations.len()), &[])?;
        Ok(())
    })
}

/// Runs `body` in a write transaction (`BEGIN IMMEDIATE`, so two of them serialise instead
/// of failing on lock upgrade), committing on `Ok` and rolling back on `Err`.
pub fn transaction<T, E: From<Error>>(
    conn: &Connection,
    body: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute("BEGIN IMMEDIATE", &[])?;
    let outcome = body().and_then(|value| {
        conn.execute("COMMIT", &[])?;
        Ok(value)
    });
    if outcome.is_err() {
        // Best effort: the host also rolls back a connection returned mid-transaction.
        let _ = conn.execute("ROLLBACK", &[]);
    }
    outcome
}

pub fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

pub fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

/// SQLite integers are signed; Unix times, TTLs and offsets fit comfortably.
pub fn integer(value: u64) -> Value {
    Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}
