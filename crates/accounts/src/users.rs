//! Accounts in the `auth` database: registration and password login.

use spin_sdk::sqlite::{Connection, Row};
use spinmesh_api::client_addr::AddressGroup;
use spinmesh_authn::{
    Role,
    password::{hash_password, verify_dummy_password, verify_password},
};

use crate::{
    Error, NewAccount,
    db::{integer, optional_text, text},
    throttle,
    validation::{validate_password, validate_username},
};

/// An account as tokens describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub roles: Vec<Role>,
}

/// The administrator created on first use from the `admin_username`/`admin_password` variables.
pub struct Admin {
    pub username: String,
    pub password: String,
}

/// Creates an account with role `user`. `reserved_username` (the configured admin name)
/// is refused as taken, so nobody can claim it before the admin first logs in.
pub fn register(
    conn: &Connection,
    account: &NewAccount,
    reserved_username: &str,
    now: u64,
) -> Result<User, Error> {
    if account.username.eq_ignore_ascii_case(reserved_username) {
        return Err(Error::UsernameTaken);
    }
    // Spares the ~60 ms hash for an obvious duplicate; the UNIQUE constraints decide races.
    ensure_available(conn, &account.username, &account.email)?;
    let phc = hash_password(&account.password)?;
    match insert(
        conn,
        &account.username,
        Some(&account.email),
        &phc,
        &[Role::User],
        now,
    )? {
        Some(user) => Ok(user),
        // Someone registered the name or email between the check and the insert.
        None => {
            ensure_available(conn, &account.username, &account.email)?;
            Err(Error::Corrupt(
                "insert conflicted on neither username nor email",
            ))
        }
    }
}

/// `Err(UsernameTaken)` or `Err(EmailTaken)` (username first) when either is in use,
/// compared case-insensitively.
fn ensure_available(conn: &Connection, username: &str, email: &str) -> Result<(), Error> {
    // One row per clash; `max` folds them to 1 if any is the username, NULL if none.
    let result = conn.execute(
        "SELECT max(username = ?1) FROM users WHERE username = ?1 OR email = ?2",
        &[text(username), text(email)],
    )?;
    match result.rows.first().and_then(|row| row.get::<bool>(0)) {
        None => Ok(()),
        Some(true) => Err(Error::UsernameTaken),
        Some(false) => Err(Error::EmailTaken),
    }
}

/// Inserts unless the username or email exists; `None` when it did.
fn insert(
    conn: &Connection,
    username: &str,
    email: Option<&str>,
    password_hash: &str,
    roles: &[Role],
    now: u64,
) -> Result<Option<User>, Error> {
    let id = new_user_id()?;
    let roles_json = serde_json::to_string(roles).expect("roles always serialize");
    let result = conn.execute(
        "INSERT INTO users (id, username, email, password_hash, roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING
         RETURNING id",
        &[
            text(&id),
            text(username),
            optional_text(email),
            text(password_hash),
            text(&roles_json),
            integer(now),
        ],
    )?;
    Ok((!result.rows.is_empty()).then(|| User {
        id,
        username: username.to_owned(),
        roles: roles.to_vec(),
    }))
}

/// Checks a password login by username or email, charging the attempt to the throttle's
/// counters first (429 while the account backs off or the address is over its budget).
///
/// Known and unknown users cost the same: one lookup, the counters, one argon2 verification.
pub fn authenticate(
    conn: &Connection,
    login: &str,
    password: &str,
    client: Option<AddressGroup>,
    admin: &Admin,
    policy: &throttle::Policy,
    now: u64,
) -> Result<User, Error> {
    let mut found = find_for_login(conn, login)?;
    if found.is_none() && login.eq_ignore_ascii_case(&admin.username) {
        create_admin(conn, admin, now)?;
        found = find_for_login(conn, login)?;
    }
    let attempt = throttle::Attempt::new(
        found.as_ref().map(|(user, _)| user.id.as_str()),
        login,
        client,
    );
    let charged = throttle::charge(conn, &attempt, policy, now)?;
    let user = match found {
        Some((user, phc)) if verify_password(password, &phc)? => Some(user),
        Some(_) => None,
        None => {
            verify_dummy_password(password);
            None
        }
    };
    let user = user.ok_or(Error::InvalidCredentials)?;
    throttle::refund(conn, &attempt, &charged, now)?;
    Ok(user)
}

/// Creates the configured admin (roles `admin` and `user`) if absent; racing first logins
/// create one.
fn create_admin(conn: &Connection, admin: &Admin, now: u64) -> Result<(), Error> {
    validate_username(&admin.username)
        .map_err(|_| Error::Config("variable `admin_username` is not a valid username".into()))?;
    validate_password(&admin.password).map_err(|_| {
        Error::Config("variable `admin_password` must be 8 to 128 characters".into())
    })?;
    let phc = hash_password(&admin.password)?;
    insert(
        conn,
        &admin.username,
        None,
        &phc,
        &[Role::Admin, Role::User],
        now,
    )?;
    Ok(())
}

/// The user and stored password hash for a username or (case-insensitive) email.
fn find_for_login(conn: &Connection, login: &str) -> Result<Option<(User, String)>, Error> {
    let result = conn.execute(
        "SELECT id, username, roles, password_hash FROM users WHERE username = ?1 OR email = ?1 LIMIT 1",
        &[text(login)],
    )?;
    result
        .rows()
        .next()
        .map(|row| {
            let phc = row
                .get::<&str>("password_hash")
                .ok_or(Error::Corrupt("password_hash"))?;
            Ok((user_from_row(&row)?, phc.to_owned()))
        })
        .transpose()
}

pub fn find_by_id(conn: &Connection, id: &str) -> Result<Option<User>, Error> {
    let result = conn.execute(
        "SELECT id, username, roles FROM users WHERE id = ?1",
        &[text(id)],
    )?;
    result
        .rows()
        .next()
        .map(|row| user_from_row(&row))
        .transpose()
}

fn user_from_row(row: &Row<'_>) -> Result<User, Error> {
    let field = |name: &'static str| row.get::<&str>(name).ok_or(Error::Corrupt(name));
    Ok(User {
        id: field("id")?.to_owned(),
        username: field("username")?.to_owned(),
        roles: serde_json::from_str(field("roles")?).map_err(|_| Error::Corrupt("roles"))?,
    })
}

/// A random (v4) UUID, the seeds' user id format.
fn new_user_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| spinmesh_authn::Error::Random)?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}
