//! Logged-out access tokens, by `jti`, in the `default` key-value store.
//!
//! Every component that accepts tokens reads it (through [`crate::authenticate`]), so it
//! needs `key_value_stores = ["default"]`. An entry only matters until its token's `exp`
//! (after that the signature check already refuses the token); the value records that
//! time for whoever prunes the store.

use spin_sdk::key_value::Store;
use spinmesh_authn::Claims;

use crate::ApiError;

const STORE: &str = "default";

fn key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

fn store() -> Result<Store, ApiError> {
    Store::open(STORE)
        .map_err(|error| ApiError::internal_logged(format_args!("key-value: {error:?}")))
}

/// `Ok` when the store opens: part of a component's readiness [`crate::probe`].
pub fn reachable() -> Result<(), ApiError> {
    store().map(drop)
}

/// Puts the token on the denylist.
pub fn revoke(claims: &Claims) -> Result<(), ApiError> {
    store()?
        .set(&key(&claims.jti), claims.exp.to_string().as_bytes())
        .map_err(|error| ApiError::internal_logged(format_args!("key-value: {error:?}")))
}

/// 401 `token_invalid` when the token was logged out.
pub(crate) fn check(claims: &Claims) -> Result<(), ApiError> {
    let revoked = store()?
        .exists(&key(&claims.jti))
        .map_err(|error| ApiError::internal_logged(format_args!("key-value: {error:?}")))?;
    if revoked {
        Err(ApiError::token_invalid())
    } else {
        Ok(())
    }
}
