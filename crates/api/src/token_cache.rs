//! Tokens already verified, remembered in the `token_cache` key-value store until they
//! expire, so a token presented again costs a store read instead of an Ed25519 check in
//! WASM (the largest part of `validate`'s time; BENCHMARKS.md).
//!
//! Entries are keyed by the SHA-256 of the whole token, so an altered token never finds
//! one. A hit is still re-checked by the verifier at hand ([`Verifier::recheck`]): the
//! signing key must still be trusted (a rotation drops old entries), issuer, audience
//! and validity times must hold. Revocation is unaffected: callers check the logout
//! denylist after this. Whoever may write the store can vouch for a token, so it is
//! granted only to the components that verify tokens (`spin.toml`). A component
//! without the grant simply verifies every time. Entries are listed in the store's
//! [`crate::expiry`] index and deleted once no verifier accepts their token any more
//! (its `exp` plus the largest clock-skew leeway).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use spinmesh_authn::{Claims, Error, Verifier};

use crate::expiry;

const STORE: &str = "token_cache";

#[derive(Serialize, Deserialize)]
struct Entry {
    /// The key whose signature verified the token.
    kid: String,
    claims: Claims,
}

/// The `token_cache` store, opened once per request; `None` when it cannot be (not
/// granted, unreachable): then every token is verified.
pub(crate) struct TokenCache(Option<Bucket>);

impl TokenCache {
    pub(crate) fn open() -> Self {
        Self(store::open(STORE).ok())
    }

    /// [`Verifier::verify`], answered from the cache when `token` was verified before.
    pub(crate) fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<Claims, Error> {
        match self.lookup(verifier, token, now) {
            Some(claims) => Ok(claims),
            None => self.verify_and_remember(verifier, token, now),
        }
    }

    /// The claims of `token` if it was verified before and still passes the checks at
    /// hand.
    pub(crate) fn lookup(&self, verifier: &Verifier, token: &str, now: u64) -> Option<Claims> {
        cached(self.0.as_ref()?, &cache_key(token), verifier, now)
    }

    /// [`Verifier::verify`], remembering a token that passes.
    pub(crate) fn verify_and_remember(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<Claims, Error> {
        let (claims, kid) = verifier.verify_keyed(token, now)?;
        if let Some(store) = &self.0 {
            remember(store, token, kid, &claims, now);
        }
        Ok(claims)
    }
}

/// Best effort: a failed write only costs the next request a signature check. Without
/// its index an entry would never go, so nothing is written without one.
fn remember(store: &Bucket, token: &str, kid: String, claims: &Claims, now: u64) {
    if let Ok(index) = expiry::Index::new(store)
        && let Ok(entry) = serde_json::to_vec(&Entry {
            kid,
            claims: claims.clone(),
        })
        && let Err(error) = index.set(
            &cache_key(token),
            &entry,
            claims.exp.saturating_add(Verifier::MAX_LEEWAY_SECS),
            now,
        )
    {
        eprintln!("token cache: key-value: {error:?}");
    }
}

fn cached(store: &Bucket, key: &str, verifier: &Verifier, now: u64) -> Option<Claims> {
    let entry: Entry = serde_json::from_slice(&store.get(key).ok()??).ok()?;
    verifier.recheck(&entry.claims, &entry.kid, now).ok()?;
    Some(entry.claims)
}

fn cache_key(token: &str) -> String {
    format!(
        "token:{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_for_any_change_to_the_token_and_stay_short() {
        let key = cache_key("header.payload.signature");
        assert_eq!(key, cache_key("header.payload.signature"));
        assert_ne!(key, cache_key("header.payload.signaturf"));
        assert_eq!(key.len(), "token:".len() + 43);
    }
}
