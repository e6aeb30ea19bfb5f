//! The `auth` SQLite database and its schema.

use spin_sdk::sqlite::Connection;
use spinmesh_api::db;
pub use spinmesh_api::db::{integer, optional_text, text};

use crate::Error;

/// The label granted to `register` and `login` in `spin.toml`.
pub const DATABASE: &str = "auth";

/// See [`spinmesh_api::db::open`]: append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[
    &[
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
    ],
    &[
        // Login throttling with backoff (see `throttle`) replaces the fixed windows.
        "DROP TABLE login_failures",
        // `since`: an account counter's last failure, an address counter's window start.
        "CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        since INTEGER NOT NULL
    )",
        "CREATE INDEX login_throttle_since ON login_throttle (since)",
        // Address groups an account signed in from: they keep their own failure counter.
        "CREATE TABLE login_known_clients (
        user_id TEXT NOT NULL,
        address TEXT NOT NULL,
        last_login INTEGER NOT NULL,
        PRIMARY KEY (user_id, address)
    )",
        "CREATE INDEX login_known_clients_last ON login_known_clients (last_login)",
        // The absolute end of a refresh family; NULL for families started before it existed.
        "ALTER TABLE refresh_tokens ADD COLUMN family_expires_at INTEGER",
    ],
];

/// Opens the database, migrating it first if needed.
pub fn open() -> Result<Connection, Error> {
    db::open(DATABASE, MIGRATIONS)
}

/// [`db::transaction`] fixed to this crate's error, so closures need no annotations.
pub fn transaction<T>(
    conn: &Connection,
    body: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    db::transaction(conn, body)
}
