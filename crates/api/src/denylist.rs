//! Logged-out access tokens, by `jti`, in the `default` key-value store.
//!
//! An entry only matters until its token's `exp` (after that the signature check already
//! refuses the token); the value records that time for whoever prunes the store.

use spin_sdk::key_value::Store;
use spinmesh_authn::Claims;

use crate::Error;

const STORE: &str = "default";

fn key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

/// Puts the token on the denylist.
pub fn revoke(claims: &Claims) -> Result<(), Error> {
    Store::open(STORE)?.set(&key(&claims.jti), claims.exp.to_string().as_bytes())?;
    Ok(())
}

/// [`Error::Revoked`] when the token was logged out.
pub fn check(claims: &Claims) -> Result<(), Error> {
    if Store::open(STORE)?.exists(&key(&claims.jti))? {
        Err(Error::Revoked)
    } else {
        Ok(())
    }
}
