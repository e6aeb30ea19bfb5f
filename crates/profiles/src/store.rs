//! Profiles in the `users` SQLite database.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use spin_sdk::sqlite::{Connection, Row};
use spinmesh_api::{
    Page,
    db::{self, integer, text},
};

use crate::{Error, NewProfile, ProfileUpdate, UserId, access::Owner};

/// The label granted to `users` alone in `spin.toml`.
pub const DATABASE: &str = "users";

/// See [`spinmesh_api::db::open`]: append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[&[
    // One profile per account, keyed by the account's id. Times are Unix seconds.
    "CREATE TABLE profiles (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        full_name TEXT NOT NULL,
        bio TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
    // The list order: oldest first, ties broken by id, so pages never overlap or skip.
    "CREATE INDEX profiles_order ON profiles (created_at, user_id)",
]];

const COLUMNS: &str = "user_id, username, email, full_name, bio, created_at, updated_at";

/// A profile as the API shows it (the seed's shape plus `updated_at`), times RFC 3339 UTC.
/// `email` is `None` once [`crate::access::visible_to`] has withheld it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub user_id: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub full_name: String,
    pub bio: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Opens the database, migrating it first if needed.
pub fn open() -> Result<Connection, Error> {
    db::open(DATABASE, MIGRATIONS)
}

/// Creates `owner`'s profile: [`Error::AlreadyExists`] if they have one,
/// [`Error::EmailTaken`] if another profile uses the email. The constraints decide races.
pub fn create(
    conn: &Connection,
    owner: &Owner,
    profile: &NewProfile,
    now: u64,
) -> Result<(), Error> {
    let inserted = conn.execute(
        "INSERT INTO profiles (user_id, username, email, full_name, bio, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT DO NOTHING
         RETURNING user_id",
        &[
            text(owner.user_id.as_str()),
            text(&owner.username),
            text(&profile.email),
            text(&profile.full_name),
            text(&profile.bio),
            integer(now),
        ],
    )?;
    if !inserted.rows.is_empty() {
        return Ok(());
    }
    // The username follows the id (both come from the same token), so a clash that is
    // not the id is the email.
    let existing = conn.execute(
        "SELECT 1 FROM profiles WHERE user_id = ?1 OR username = ?2",
        &[text(owner.user_id.as_str()), text(&owner.username)],
    )?;
    if existing.rows.is_empty() {
        Err(Error::EmailTaken)
    } else {
        Err(Error::AlreadyExists)
    }
}

pub fn get(conn: &Connection, id: &UserId) -> Result<Profile, Error> {
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM profiles WHERE user_id = ?1"),
        &[text(id.as_str())],
    )?;
    result
        .rows()
        .next()
        .map_or(Err(Error::NotFound), |row| profile_from_row(&row))
}

/// One page in the stable list order, and the total count.
pub fn list(conn: &Connection, page: Page) -> Result<(u64, Vec<Profile>), Error> {
    let total = conn
        .execute("SELECT count(*) FROM profiles", &[])?
        .rows
        .first()
        .and_then(|row| row.get::<u64>(0))
        .ok_or(Error::Corrupt("count(*) returned no number"))?;
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM profiles ORDER BY created_at, user_id LIMIT ?1 OFFSET ?2"),
        &[integer(page.limit.into()), integer(page.offset)],
    )?;
    let profiles = result
        .rows()
        .map(|row| profile_from_row(&row))
        .collect::<Result<_, _>>()?;
    Ok((total, profiles))
}

/// Changes the fields `update` has; [`Error::NotFound`] for an unknown id.
pub fn update(
    conn: &Connection,
    id: &UserId,
    update: &ProfileUpdate,
    now: u64,
) -> Result<(), Error> {
    let optional = |value: &Option<String>| db::optional_text(value.as_deref());
    let updated = conn.execute(
        "UPDATE profiles
         SET full_name = coalesce(?2, full_name), bio = coalesce(?3, bio), updated_at = ?4
         WHERE user_id = ?1
         RETURNING user_id",
        &[
            text(id.as_str()),
            optional(&update.full_name),
            optional(&update.bio),
            integer(now),
        ],
    )?;
    if updated.rows.is_empty() {
        Err(Error::NotFound)
    } else {
        Ok(())
    }
}

/// [`Error::NotFound`] for an unknown id.
pub fn delete(conn: &Connection, id: &UserId) -> Result<(), Error> {
    let deleted = conn.execute(
        "DELETE FROM profiles WHERE user_id = ?1 RETURNING user_id",
        &[text(id.as_str())],
    )?;
    if deleted.rows.is_empty() {
        Err(Error::NotFound)
    } else {
        Ok(())
    }
}

fn profile_from_row(row: &Row<'_>) -> Result<Profile, Error> {
    let field = |name: &'static str| {
        row.get::<&str>(name)
            .map(str::to_owned)
            .ok_or(Error::Corrupt(name))
    };
    let time = |name: &'static str| {
        row.get::<i64>(name)
            .and_then(rfc3339)
            .ok_or(Error::Corrupt(name))
    };
    Ok(Profile {
        user_id: field("user_id")?,
        username: field("username")?,
        email: Some(field("email")?),
        full_name: field("full_name")?,
        bio: field("bio")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

/// Unix seconds as RFC 3339 UTC (`2024-01-15T10:30:00Z`); `None` out of chrono's range.
fn rfc3339(secs: i64) -> Option<String> {
    DateTime::from_timestamp(secs, 0).map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_seconds() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_705_314_600).as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
    }
}
