//! The orders service's own access token (client credentials at `login`), cached until
//! shortly before it expires so an order costs no token request.

use serde::{Deserialize, Serialize};
use spin_sdk::key_value::Store;

use crate::saga::TokenCache;

/// A cached token is not used in its last seconds: it must still be valid when products
/// checks it, after the request has travelled.
pub const EXPIRY_MARGIN_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
}

impl CachedToken {
    /// From `POST /api/token`'s JSON reply received at `now`; `None` if it is not one.
    pub fn from_reply(body: &[u8], now: u64) -> Option<Self> {
        let reply: TokenReply = serde_json::from_slice(body).ok()?;
        (!reply.access_token.is_empty()).then(|| Self {
            token: reply.access_token,
            expires_at: now.saturating_add(reply.expires_in),
        })
    }

    /// Whether the cached token may still be sent at `now`.
    pub fn usable(&self, now: u64) -> bool {
        now.saturating_add(EXPIRY_MARGIN_SECS) < self.expires_at
    }
}

/// The token in the `orders_cache` key-value store, granted to `orders` alone: whoever
/// reads it acts as the orders service. Failures are logged and cost a token request.
pub struct KvTokenCache(Option<Store>);

const TOKEN_STORE: &str = "orders_cache";
const TOKEN_KEY: &str = "service-token";

impl KvTokenCache {
    pub fn open() -> Self {
        Self(
            Store::open(TOKEN_STORE)
                .map_err(|error| eprintln!("service token cache: {error:?}"))
                .ok(),
        )
    }
}

impl TokenCache for KvTokenCache {
    fn load(&self) -> Option<CachedToken> {
        self.0
            .as_ref()?
            .get_json::<CachedToken>(TOKEN_KEY)
            .ok()
            .flatten()
    }

    fn save(&self, token: &CachedToken) {
        if let Some(store) = &self.0
            && let Err(error) = store.set_json(TOKEN_KEY, token)
        {
            eprintln!("service token cache: {error:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_token_reply() {
        let body =
            br#"{"access_token":"abc","token":"abc","token_type":"Bearer","expires_in":900}"#;
        let cached = CachedToken::from_reply(body, 1000).unwrap();
        assert_eq!(
            cached,
            CachedToken {
                token: "abc".into(),
                expires_at: 1900
            }
        );
        assert_eq!(
            CachedToken::from_reply(br#"{"access_token":"","expires_in":900}"#, 0),
            None
        );
        assert_eq!(CachedToken::from_reply(br#"{"token":"abc"}"#, 0), None);
        assert_eq!(CachedToken::from_reply(b"oops", 0), None);
    }

    #[test]
    fn used_until_shortly_before_expiry() {
        let cached = CachedToken {
            token: "abc".into(),
            expires_at: 1900,
        };
        assert!(cached.usable(1000));
        assert!(cached.usable(1900 - EXPIRY_MARGIN_SECS - 1));
        assert!(!cached.usable(1900 - EXPIRY_MARGIN_SECS));
        assert!(!cached.usable(5000));
    }
}
