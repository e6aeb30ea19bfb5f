//! Webhook signatures, Stripe's scheme: `Spinmesh-Signature: t=<unix seconds>,v1=<hex>`
//! where the hex is HMAC-SHA256 over `"<t>.<raw body>"`, keyed with the owner's secret
//! (`whsec_…`, the whole string). The timestamp is the attempt's, so a receiver can
//! refuse old replays; while a previous runner secret is configured (rotation), a
//! second `v1=` made with the owner's previous key follows, and a receiver accepts
//! either.
//!
//! An owner's key is derived from the runner's secret and the owner's id, so owners
//! never share one and none can sign as another: HMAC-SHA256(secret,
//! `"spinmesh webhook key\0" + owner`), hex, with the prefix `whsec_`.

use std::fmt::Write;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of an owner's key, as Stripe's.
const KEY_PREFIX: &str = "whsec_";
/// Separates the derivation of owners' keys from any other use of the runner's secret.
const KEY_CONTEXT: &[u8] = b"spinmesh webhook key\0";

/// The runner's webhook secret (and the one it replaces, during a rotation), from which
/// every owner's key is derived.
pub struct SigningSecrets {
    current: String,
    previous: Option<String>,
}

impl SigningSecrets {
    pub fn new(current: String, previous: Option<String>) -> Self {
        SigningSecrets { current, previous }
    }

    /// The key `owner`'s webhooks are signed with, as they are shown it.
    pub fn owner_key(&self, owner: &str) -> String {
        owner_key(&self.current, owner)
    }

    /// The `Spinmesh-Signature` of `body` sent to `owner` at `timestamp` (unix seconds).
    pub fn header(&self, owner: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = format!("t={timestamp}");
        for secret in std::iter::once(&self.current).chain(&self.previous) {
            let signature = sign(&owner_key(secret, owner), timestamp, body);
            let _ = write!(header, ",v1={signature}");
        }
        header
    }
}

fn owner_key(secret: &str, owner: &str) -> String {
    format!(
        "{KEY_PREFIX}{}",
        hmac_sha256_hex(secret.as_bytes(), &[KEY_CONTEXT, owner.as_bytes()])
    )
}

/// The `v1` signature: HMAC-SHA256 keyed with the owner's key over `"<t>.<body>"`.
pub fn sign(owner_key: &str, timestamp: i64, body: &[u8]) -> String {
    hmac_sha256_hex(
        owner_key.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body],
    )
}

/// HMAC-SHA256 of the concatenated `parts`, lower-case hex.
fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn owner_keys_are_derived_per_owner() {
        // Computed independently (Python's hmac module).
        let secrets = SigningSecrets::new("test-webhook-secret".into(), None);
        assert_eq!(
            secrets.owner_key("42"),
            "whsec_328c3b5f05e8d621aa3771b6e0977d8f7da0c3b9574746e58bf5aa9314f8bc95"
        );
        assert_ne!(secrets.owner_key("42"), secrets.owner_key("43"));
        assert_ne!(
            secrets.owner_key("42"),
            SigningSecrets::new("another secret".into(), None).owner_key("42")
        );
    }

    /// What a receiver does: split the header, recompute, compare.
    fn verifies(header: &str, key: &str, body: &[u8]) -> bool {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            match item.split_once('=') {
                Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                Some(("v1", signature)) => signatures.push(signature.to_string()),
                _ => return false,
            }
        }
        let Some(timestamp) = timestamp else {
            return false;
        };
        signatures.contains(&sign(key, timestamp, body))
    }

    #[test]
    fn the_header_carries_the_time_and_a_signature_a_receiver_can_check() {
        let secrets = SigningSecrets::new("test-webhook-secret".into(), None);
        let body = br#"{"a":1}"#;
        let header = secrets.header("42", 1_700_000_000, body);
        // Computed independently (Python's hmac module).
        assert_eq!(
            header,
            "t=1700000000,v1=f06e842ac85c15d4e7956794dcc520303b4281f95db5638d115a4ee5a9a92123"
        );
        let key = secrets.owner_key("42");
        assert!(verifies(&header, &key, body));
        assert!(!verifies(&header, &key, br#"{"a":2}"#));
        assert!(!verifies(&header, &secrets.owner_key("43"), body));
        let replayed = header.replace("t=1700000000", "t=1700000001");
        assert!(!verifies(&replayed, &key, body));
    }

    #[test]
    fn during_a_rotation_both_keys_sign() {
        let old = SigningSecrets::new("old secret".into(), None);
        let rotating = SigningSecrets::new("new secret".into(), Some("old secret".into()));
        let header = rotating.header("42", 1_700_000_000, b"{}");
        assert_eq!(header.matches(",v1=").count(), 2, "{header}");
        assert!(verifies(&header, &old.owner_key("42"), b"{}"));
        assert!(verifies(&header, &rotating.owner_key("42"), b"{}"));
    }
}
