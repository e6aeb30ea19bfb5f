//! Sessions: an access token with a rotating refresh token. `spinmesh_authn::refresh`
//! decides what a presented refresh token is worth; this module persists the outcome.

use spin_sdk::sqlite::Connection;
use spinmesh_authn::{
    IssuedToken, Issuer,
    refresh::{
        Lifetime, RefreshDecision, RefreshRecord, check_refresh, hash_refresh_token,
        issue_refresh_token, rotate,
    },
};

use crate::{
    Error,
    db::{integer, optional_text, text, transaction},
    users::{self, User},
};

/// What a client gets at login and at each refresh.
#[derive(Debug)]
pub struct Session {
    pub access: IssuedToken,
    pub refresh_token: String,
}

/// Starts a new refresh-token family for `user`.
pub fn start(
    conn: &Connection,
    issuer: &Issuer,
    user: &User,
    lifetime: Lifetime,
    now: u64,
) -> Result<Session, Error> {
    // Records a full lifetime past expiry can no longer reveal anything useful about reuse.
    conn.execute(
        "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
        &[integer(now.saturating_sub(lifetime.ttl_secs))],
    )?;
    let access = issue(issuer, user, now)?;
    let refresh = issue_refresh_token(&user.id, now, lifetime)?;
    insert(conn, &refresh.record, &access.jti)?;
    Ok(Session {
        access,
        refresh_token: refresh.token,
    })
}

/// Exchanges a refresh token for a new session in the same family, its token living
/// `refresh_ttl` but never past the family's absolute end. Presenting a token that was
/// already exchanged revokes the whole family.
pub fn refresh(
    conn: &Connection,
    issuer: &Issuer,
    presented: &str,
    refresh_ttl: u64,
    now: u64,
) -> Result<Session, Error> {
    let hash = hash_refresh_token(presented);
    // The inner result is the verdict, committed either way (a reuse must stay revoked);
    // the outer one is a failure that rolls back.
    transaction(conn, || {
        let Some(current) = find(conn, &hash)? else {
            return Ok(Err(Error::RefreshInvalid));
        };
        match check_refresh(Some(&current), now) {
            RefreshDecision::Rotate => {}
            RefreshDecision::ReuseDetected { family_id } => {
                eprintln!("refresh token reuse: family {family_id} revoked");
                revoke_family(conn, &family_id)?;
                return Ok(Err(Error::RefreshInvalid));
            }
            RefreshDecision::Expired => return Ok(Err(Error::RefreshExpired)),
            RefreshDecision::Revoked | RefreshDecision::Unknown => {
                return Ok(Err(Error::RefreshInvalid));
            }
        }
        let Some(user) = users::find_by_id(conn, &current.user_id)? else {
            return Ok(Err(Error::RefreshInvalid));
        };
        let rotation = rotate(&current, now, refresh_ttl)?;
        // Conditional on the record still being unused, so that even without the
        // transaction's lock two racing refreshes could not both rotate.
        let updated = conn.execute(
            "UPDATE refresh_tokens SET replaced_by = ?1
             WHERE token_hash = ?2 AND replaced_by IS NULL AND revoked = 0
             RETURNING token_hash",
            &[
                optional_text(rotation.replaced.replaced_by.as_deref()),
                text(&hash),
            ],
        )?;
        if updated.rows.is_empty() {
            return Ok(Err(Error::RefreshInvalid));
        }
        let access = issue(issuer, &user, now)?;
        insert(conn, &rotation.successor.record, &access.jti)?;
        Ok(Ok(Session {
            access,
            refresh_token: rotation.successor.token,
        }))
    })?
}

/// Logout: revokes the refresh family the access token `access_jti` was issued with
/// (nothing for tokens without one, such as service tokens).
pub fn end(conn: &Connection, access_jti: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked = 1
         WHERE family_id IN (SELECT family_id FROM refresh_tokens WHERE access_jti = ?1)",
        &[text(access_jti)],
    )?;
    Ok(())
}

fn issue(issuer: &Issuer, user: &User, now: u64) -> Result<IssuedToken, Error> {
    Ok(issuer.issue(&user.id, &user.username, &user.roles, now)?)
}

fn revoke_family(conn: &Connection, family_id: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1",
        &[text(family_id)],
    )?;
    Ok(())
}

fn insert(conn: &Connection, record: &RefreshRecord, access_jti: &str) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO refresh_tokens
             (token_hash, family_id, user_id, access_jti, issued_at, expires_at, replaced_by, revoked,
              family_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            text(&record.token_hash),
            text(&record.family_id),
            text(&record.user_id),
            text(access_jti),
            integer(record.issued_at),
            integer(record.expires_at),
            optional_text(record.replaced_by.as_deref()),
            integer(u64::from(record.revoked)),
            integer(record.family_expires_at),
        ],
    )?;
    Ok(())
}

fn find(conn: &Connection, token_hash: &str) -> Result<Option<RefreshRecord>, Error> {
    let result = conn.execute(
        "SELECT family_id, token_hash, user_id, issued_at, expires_at, replaced_by, revoked,
             family_expires_at
         FROM refresh_tokens WHERE token_hash = ?1",
        &[text(token_hash)],
    )?;
    let Some(row) = result.rows().next() else {
        return Ok(None);
    };
    let text = |name: &'static str| {
        row.get::<&str>(name)
            .map(str::to_owned)
            .ok_or(Error::Corrupt(name))
    };
    let number = |name: &'static str| row.get::<u64>(name).ok_or(Error::Corrupt(name));
    let expires_at = number("expires_at")?;
    Ok(Some(RefreshRecord {
        family_id: text("family_id")?,
        token_hash: text("token_hash")?,
        user_id: text("user_id")?,
        issued_at: number("issued_at")?,
        expires_at,
        // A family from before absolute lifetimes ends when its current token does.
        family_expires_at: row.get::<u64>("family_expires_at").unwrap_or(expires_at),
        replaced_by: row.get::<&str>("replaced_by").map(str::to_owned),
        revoked: row
            .get::<bool>("revoked")
            .ok_or(Error::Corrupt("revoked"))?,
    }))
}
