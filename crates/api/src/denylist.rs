//! Logged-out access tokens, by `jti`, in the `default` key-value store.
//!
//! Every component that accepts tokens reads it (through [`crate::authenticate`]), so it
//! needs `key_value_stores = ["default"]`. An entry only matters until its token's `exp`
//! and the verifiers' clock-skew leeway (after that the signature check already refuses
//! the token), so it is listed in the store's [`expiry`] index and deleted once that time
//! has passed.

use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use spinmesh_authn::{Claims, Verifier, now_unix};

use crate::{ApiError, expiry};

const STORE: &str = "default";

fn key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

fn store() -> Result<Bucket, ApiError> {
    store::open(STORE).map_err(key_value_error)
}

fn key_value_error(error: store::Error) -> ApiError {
    ApiError::internal_logged(format_args!("key-value: {error:?}"))
}

/// `Ok` when the store opens: part of a component's readiness [`crate::probe`].
pub fn reachable() -> Result<(), ApiError> {
    store().map(drop)
}

/// Puts the token on the denylist until it expires.
pub fn revoke(claims: &Claims) -> Result<(), ApiError> {
    let bucket = store()?;
    expiry::Index::new(&bucket)?
        .set(
            &key(&claims.jti),
            claims.exp.to_string().as_bytes(),
            // Any verifier accepts the token until then, so the entry must outlive it.
            claims.exp.saturating_add(Verifier::MAX_LEEWAY_SECS),
            now_unix(),
        )
        .map_err(key_value_error)
}

/// 401 `token_invalid` when the token was logged out.
pub(crate) fn check(claims: &Claims) -> Result<(), ApiError> {
    let revoked = store()?
        .exists(&key(&claims.jti))
        .map_err(key_value_error)?;
    if revoked {
        Err(ApiError::token_invalid())
    } else {
        Ok(())
    }
}
