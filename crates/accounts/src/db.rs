//! The `auth` SQLite database: schema, migrations, transactions.

use spin_sdk::sqlite::{Connection, Value};

use crate::Error;

/// The label granted to `register` and `login` in `spin.toml`.
pub const DATABASE: &str = "auth";

/// Step `i` migrates schema version `i` to `i + 1` (tracked in `PRAGMA user_version`).
/// Append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[&[
    // Ids are v4 UUID strings, as in the seeds. NOCASE makes `Bob` and `bob` one name;
    // admins created from variables have no email (UNIQUE allows many NULLs).
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        email TEXT UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )",
    // Only the SHA-256 of a refresh token is stored. `access_jti` links the access token
    // issued alongside, so logout can find the family to revoke.
    "CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id),
        access_jti TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        replaced_by TEXT,
        revoked INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
    "CREATE INDEX refresh_tokens_access_jti ON refresh_tokens (access_jti)",
    // Failed-login counters: one fixed window per key (account or client address).
    "CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        window_start INTEGER NOT NULL
    )",
    "CREATE INDEX login_failures_window ON login_failures (window_start)",
]];

/// Opens the database, migrating it first if this is the first request on an old schema.
/// The version check is one cheap query; the migration runs once, under the write lock.
pub fn open() -> Result<Connection, Error> {
    let conn = Connection::open(DATABASE)?;
    if schema_version(&conn)? < MIGRATIONS.len() {
        migrate(&conn)?;
    }
    Ok(conn)
}

fn schema_version(conn: &Connection) -> Result<usize, Error> {
    let result = conn.execute("PRAGMA user_version", &[])?;
    result
        .rows
        .first()
        .and_then(|row| row.get::<usize>(0))
        .ok_or(Error::Corrupt("PRAGMA user_version returned no number"))
}

fn migrate(conn: &Connection) -> Result<(), Error> {
    transaction(conn, || {
        // Concurrent first requests all get here; only the first to take the lock migrates.
        let from = schema_version(conn)?;
        for statement in MIGRATIONS.iter().skip(from).flat_map(|step| step.iter()) {
            conn.execute(statement, &[])?;
        }
        conn.execute(&format!("PRAGMA user_version = {}", MIGRATIONS.len()), &[])?;
        Ok(())
    })
}

/// Runs `body` in a write transaction (`BEGIN IMMEDIATE`, so two of them serialise instead
/// of failing on lock upgrade), committing on `Ok` and rolling back on `Err`.
pub fn transaction<T>(
    conn: &Connection,
    body: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
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

/// SQLite integers are signed; Unix times and TTLs fit comfortably.
pub fn integer(value: u64) -> Value {
    Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}
