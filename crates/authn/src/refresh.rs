//! Opaque refresh tokens with rotation and reuse detection.
//!
//! The client holds 32 random bytes (base64url); the store holds only their SHA-256, so a
//! leaked table cannot be replayed. Each use replaces the token with a new one in the same
//! family; presenting an already-replaced token means it was copied, so the whole family
//! is revoked (RFC 9700 §4.14.2). Each token lives `Lifetime::ttl_secs`, but never past the
//! family's absolute end, `Lifetime::family_secs` after the login: a session that keeps
//! being used still ends (RFC 9700 §4.14.2 recommends bounding refresh token lifetimes).
//!
//! These functions decide; the caller persists. Mark the old record replaced with a
//! conditional write (`… WHERE token_hash = ? AND replaced_by IS NULL`, checking one row
//! changed) so two concurrent refreshes cannot both rotate.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Error,
    random::{random_array, random_id},
};

/// One stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Shared by every token descended from one login.
    pub family_id: String,
    /// SHA-256 hex of the token; the lookup key.
    pub token_hash: String,
    pub user_id: String,
    pub issued_at: u64,
    pub expires_at: u64,
    /// When the family ends, however often it rotates.
    pub family_expires_at: u64,
    /// Hash of the token that replaced this one; `Some` means already used.
    pub replaced_by: Option<String>,
    /// Set on logout or reuse detection, for every record of the family.
    pub revoked: bool,
}

/// A token to hand to the client, with the record to store for it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    pub token: String,
    pub record: RefreshRecord,
}

impl fmt::Debug for NewRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRefreshToken")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Valid and unused: call [`rotate`] and issue a new access token for `user_id`.
    Rotate,
    /// Already replaced: a copy is in someone else's hands. Revoke every record of
    /// `family_id` and reject.
    ReuseDetected { family_id: String },
    /// The family was revoked (logout or earlier reuse): reject.
    Revoked,
    /// Past `expires_at`: reject; the user logs in again.
    Expired,
    /// No record for this hash: reject.
    Unknown,
}

/// SHA-256 hex of a presented token: what to look the record up by.
pub fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// How long refresh tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Each token, from its issue (`refresh_token_ttl_secs`).
    pub ttl_secs: u64,
    /// A family, from the login that started it (`refresh_family_lifetime_secs`).
    pub family_secs: u64,
}

/// Starts a new family at login.
pub fn issue_refresh_token(
    user_id: &str,
    now: u64,
    lifetime: Lifetime,
) -> Result<NewRefreshToken, Error> {
    let family_expires_at = now.saturating_add(lifetime.family_secs);
    new_token(
        random_id()?,
        user_id.to_owned(),
        now,
        lifetime.ttl_secs,
        family_expires_at,
    )
}

/// Decides what to do with the record found for a presented token (`None`: not found).
///
/// Reuse is checked before expiry: a replaced token is evidence of theft even once it
/// has expired, and the rest of its family may still be live.
pub fn check_refresh(record: Option<&RefreshRecord>, now: u64) -> RefreshDecision {
    match record {
        None => RefreshDecision::Unknown,
        Some(record) if record.revoked => RefreshDecision::Revoked,
        Some(record) if record.replaced_by.is_some() => RefreshDecision::ReuseDetected {
            family_id: record.family_id.clone(),
        },
        Some(record) if now >= record.expires_at => RefreshDecision::Expired,
        Some(_) => RefreshDecision::Rotate,
    }
}

/// The result of a rotation: the successor to hand out and store, and the old record
/// updated to point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub successor: NewRefreshToken,
    pub replaced: RefreshRecord,
}

/// Replaces `current` (which [`check_refresh`] said to `Rotate`) with a new token in the
/// same family, expiring `ttl_secs` from now or at the family's end, whichever is first.
pub fn rotate(current: &RefreshRecord, now: u64, ttl_secs: u64) -> Result<Rotation, Error> {
    let successor = new_token(
        current.family_id.clone(),
        current.user_id.clone(),
        now,
        ttl_secs,
        current.family_expires_at,
    )?;
    let replaced = RefreshRecord {
        replaced_by: Some(successor.record.token_hash.clone()),
        ..current.clone()
    };
    Ok(Rotation {
        successor,
        replaced,
    })
}

/// Marks every record of `family_id` revoked (for stores that hold records in memory;
/// SQL stores do the same with one `UPDATE … WHERE family_id = ?`).
pub fn revoke_family(records: &mut [RefreshRecord], family_id: &str) {
    for record in records.iter_mut().filter(|r| r.family_id == family_id) {
        record.revoked = true;
    }
}

fn new_token(
    family_id: String,
    user_id: String,
    now: u64,
    ttl_secs: u64,
    family_expires_at: u64,
) -> Result<NewRefreshToken, Error> {
    let token = URL_SAFE_NO_PAD.encode(random_array::<32>()?);
    let record = RefreshRecord {
        family_id,
        token_hash: hash_refresh_token(&token),
        user_id,
        issued_at: now,
        expires_at: now.saturating_add(ttl_secs).min(family_expires_at),
        family_expires_at,
        replaced_by: None,
        revoked: false,
    };
    Ok(NewRefreshToken { token, record })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const TTL: u64 = 14 * 24 * 3600;
    const LIFETIME: Lifetime = Lifetime {
        ttl_secs: TTL,
        family_secs: 30 * 24 * 3600,
    };

    /// A toy store: look up by hash, as the real one does.
    fn find<'a>(records: &'a [RefreshRecord], token: &str) -> Option<&'a RefreshRecord> {
        let hash = hash_refresh_token(token);
        records.iter().find(|r| r.token_hash == hash)
    }

    fn save(records: &mut Vec<RefreshRecord>, record: RefreshRecord) {
        match records
            .iter_mut()
            .find(|r| r.token_hash == record.token_hash)
        {
            Some(existing) => *existing = record,
            None => records.push(record),
        }
    }

    #[test]
    fn token_is_32_random_bytes_stored_only_as_sha256_hex() {
        let issued = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&issued.token).unwrap().len(), 32);
        assert_eq!(issued.record.token_hash.len(), 64);
        assert!(
            issued
                .record
                .token_hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(issued.record.token_hash, hash_refresh_token(&issued.token));
        assert!(!format!("{:?}", issued.record).contains(&issued.token));
        assert!(!format!("{issued:?}").contains(&issued.token));
        assert_eq!(issued.record.expires_at, NOW + TTL);
        assert_ne!(
            issue_refresh_token("u1", NOW, LIFETIME)
                .unwrap()
                .record
                .family_id,
            issued.record.family_id
        );
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            hash_refresh_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rotation_chain_then_reuse_revokes_family() {
        let mut store = Vec::new();
        let first = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        save(&mut store, first.record.clone());

        // Legitimate use: rotate.
        let record = find(&store, &first.token).cloned();
        assert_eq!(
            check_refresh(record.as_ref(), NOW + 60),
            RefreshDecision::Rotate
        );
        let rotation = rotate(&record.unwrap(), NOW + 60, TTL).unwrap();
        assert_eq!(rotation.successor.record.family_id, first.record.family_id);
        assert_eq!(rotation.successor.record.user_id, "u1");
        assert_eq!(rotation.successor.record.expires_at, NOW + 60 + TTL);
        assert_eq!(
            rotation.replaced.replaced_by.as_deref(),
            Some(rotation.successor.record.token_hash.as_str())
        );
        save(&mut store, rotation.replaced);
        save(&mut store, rotation.successor.record.clone());
        let second = rotation.successor.token;

        // The old token comes back: someone copied it.
        let decision = check_refresh(find(&store, &first.token), NOW + 120);
        assert_eq!(
            decision,
            RefreshDecision::ReuseDetected {
                family_id: first.record.family_id.clone()
            }
        );
        revoke_family(&mut store, &first.record.family_id);

        // The thief's (or the user's) newer token is now dead too.
        assert_eq!(
            check_refresh(find(&store, &second), NOW + 180),
            RefreshDecision::Revoked
        );
        assert_eq!(
            check_refresh(find(&store, &first.token), NOW + 180),
            RefreshDecision::Revoked
        );
    }

    #[test]
    fn revocation_is_per_family() {
        let mut store = Vec::new();
        let a = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        let b = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        save(&mut store, a.record.clone());
        save(&mut store, b.record.clone());
        revoke_family(&mut store, &a.record.family_id);
        assert_eq!(
            check_refresh(find(&store, &a.token), NOW),
            RefreshDecision::Revoked
        );
        assert_eq!(
            check_refresh(find(&store, &b.token), NOW),
            RefreshDecision::Rotate
        );
    }

    #[test]
    fn expiry_boundary() {
        let issued = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        assert_eq!(
            check_refresh(Some(&issued.record), NOW + TTL - 1),
            RefreshDecision::Rotate
        );
        assert_eq!(
            check_refresh(Some(&issued.record), NOW + TTL),
            RefreshDecision::Expired
        );
    }

    #[test]
    fn reuse_is_detected_even_after_expiry() {
        let issued = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        let replaced = rotate(&issued.record, NOW, TTL).unwrap().replaced;
        assert!(matches!(
            check_refresh(Some(&replaced), NOW + 10 * TTL),
            RefreshDecision::ReuseDetected { .. }
        ));
    }

    #[test]
    fn rotation_never_extends_a_family_past_its_absolute_end() {
        let issued = issue_refresh_token("u1", NOW, LIFETIME).unwrap();
        let family_end = NOW + LIFETIME.family_secs;
        assert_eq!(issued.record.family_expires_at, family_end);
        // Rotated daily, each successor lives a full TTL until the family's end caps it.
        let mut current = issued.record;
        for day in 1..=40u64 {
            let now = NOW + day * 24 * 3600;
            if check_refresh(Some(&current), now) != RefreshDecision::Rotate {
                assert_eq!(check_refresh(Some(&current), now), RefreshDecision::Expired);
                assert!(now >= family_end, "day {day}");
                return;
            }
            let successor = rotate(&current, now, TTL).unwrap().successor.record;
            assert_eq!(
                successor.expires_at,
                (now + TTL).min(family_end),
                "day {day}"
            );
            assert_eq!(successor.family_expires_at, family_end);
            current = successor;
        }
        panic!("the family outlived its absolute lifetime");
    }

    #[test]
    fn a_family_shorter_than_the_ttl_caps_the_first_token() {
        let short = Lifetime {
            ttl_secs: TTL,
            family_secs: 3600,
        };
        let issued = issue_refresh_token("u1", NOW, short).unwrap();
        assert_eq!(issued.record.expires_at, NOW + 3600);
    }

    #[test]
    fn unknown_token() {
        let store = vec![issue_refresh_token("u1", NOW, LIFETIME).unwrap().record];
        assert_eq!(
            check_refresh(find(&store, "made-up"), NOW),
            RefreshDecision::Unknown
        );
        assert_eq!(check_refresh(None, NOW), RefreshDecision::Unknown);
    }

    #[test]
    fn record_round_trips_through_json() {
        let record = issue_refresh_token("u1", NOW, LIFETIME).unwrap().record;
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<RefreshRecord>(&json).unwrap(),
            record
        );
    }
}
