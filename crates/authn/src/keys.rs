//! Ed25519 key material as it travels in Spin variables: unpadded base64url of the
//! 32-byte seed (signing key) or of the 32-byte public key.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Error, random::random_array};

/// A freshly generated key pair, as the strings to put in Spin variables.
#[derive(Clone)]
pub struct GeneratedKeyPair {
    /// Secret: base64url of the 32-byte seed.
    pub signing_key: String,
    /// base64url of the 32-byte public key.
    pub public_key: String,
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
}

impl fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("signing_key", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("kid", &self.kid)
            .finish()
    }
}

/// Generates a new Ed25519 key pair from the OS random source.
pub fn generate_key_pair() -> Result<GeneratedKeyPair, Error> {
    let seed = Zeroizing::new(random_array::<32>()?);
    let signing = SigningKey::from_bytes(&seed);
    let public = PublicKey::from_verifying_key(signing.verifying_key())?;
    Ok(GeneratedKeyPair {
        signing_key: URL_SAFE_NO_PAD.encode(seed.as_slice()),
        public_key: public.to_base64(),
        kid: public.kid,
    })
}

/// Parses the signing-key variable into a dalek key (which wipes itself on drop).
pub(crate) fn parse_signing_key(encoded: &str) -> Result<SigningKey, Error> {
    let seed = Zeroizing::new(
        decode_32(encoded)
            .map_err(|()| Error::KeyConfig("signing key must be 32 bytes of base64url"))?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

/// An Ed25519 public key with its `kid`; all a verifier needs.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

impl PublicKey {
    /// Parses unpadded base64url of the 32-byte key (surrounding whitespace is ignored,
    /// as variables often end with a newline).
    pub fn from_base64(encoded: &str) -> Result<Self, Error> {
        let bytes = decode_32(encoded)
            .map_err(|()| Error::KeyConfig("public key must be 32 bytes of base64url"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::KeyConfig("public key is not a valid Ed25519 point"))?;
        Self::from_verifying_key(key)
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Result<Self, Error> {
        // A small-order key would let anyone forge signatures that verify_strict still rejects,
        // but such a key can only come from a broken or hostile configuration.
        if key.is_weak() {
            return Err(Error::KeyConfig("public key is a weak (small-order) point"));
        }
        let kid = thumbprint(&key);
        Ok(Self { key, kid })
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url), used as the token header's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.as_bytes())
    }

    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: self.to_base64(),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// One entry of a JWKS document (RFC 8037 OKP key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// A JWKS document: `{"keys":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Builds the JWKS for `/.well-known/jwks.json`. Pass the current key first and any
/// key still accepted during a rotation after it.
pub fn jwks(keys: &[PublicKey]) -> Jwks {
    Jwks {
        keys: keys.iter().map(PublicKey::to_jwk).collect(),
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn decode_32(encoded: &str) -> Result<[u8; 32], ()> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded.trim()).map_err(|_| ())?);
    bytes.as_slice().try_into().map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 appendix A.1–A.3.
    const RFC_SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn rfc8037_key_and_thumbprint() {
        let signing = parse_signing_key(RFC_SEED).unwrap();
        let public = PublicKey::from_verifying_key(signing.verifying_key()).unwrap();
        assert_eq!(public.to_base64(), RFC_X);
        assert_eq!(public.kid(), RFC_THUMBPRINT);
        assert_eq!(PublicKey::from_base64(RFC_X).unwrap(), public);
    }

    #[test]
    fn kid_matches_jwt_simple_thumbprint() {
        let generated = generate_key_pair().unwrap();
        let public = jwt_simple::prelude::Ed25519PublicKey::from_bytes(
            &URL_SAFE_NO_PAD.decode(&generated.public_key).unwrap(),
        )
        .unwrap();
        assert_eq!(generated.kid, public.jwk_thumbprint());
    }

    #[test]
    fn generated_pair_round_trips() {
        let generated = generate_key_pair().unwrap();
        let signing = parse_signing_key(&generated.signing_key).unwrap();
        let public = PublicKey::from_base64(&generated.public_key).unwrap();
        assert_eq!(signing.verifying_key(), *public.verifying_key());
        assert_eq!(public.kid(), generated.kid);
        assert_eq!(generated.signing_key.len(), 43);
        assert_ne!(
            generate_key_pair().unwrap().public_key,
            generated.public_key
        );
        assert!(!format!("{generated:?}").contains(&generated.signing_key));
    }

    #[test]
    fn trailing_newline_in_variable_is_tolerated() {
        assert!(PublicKey::from_base64(&format!("{RFC_X}\n")).is_ok());
    }

    #[test]
    fn malformed_keys_are_config_errors() {
        let too_short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let padded = format!("{RFC_X}=");
        let standard_alphabet = RFC_X.replace('_', "/");
        for bad in [
            "",
            "not base64!",
            too_short.as_str(),
            padded.as_str(),
            standard_alphabet.as_str(),
        ] {
            assert!(
                matches!(PublicKey::from_base64(bad), Err(Error::KeyConfig(_))),
                "{bad:?}"
            );
            assert!(
                matches!(parse_signing_key(bad), Err(Error::KeyConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn weak_public_key_is_rejected() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = PublicKey::from_base64(&URL_SAFE_NO_PAD.encode(identity)).unwrap_err();
        assert!(matches!(err, Error::KeyConfig(msg) if msg.contains("weak")));
    }

    #[test]
    fn key_error_messages_do_not_echo_input() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
        let err = parse_signing_key(secret).unwrap_err();
        assert!(!err.to_string().contains(secret));
    }

    #[test]
    fn jwks_lists_every_key_in_order() {
        let first = PublicKey::from_base64(RFC_X).unwrap();
        let second = PublicKey::from_base64(&generate_key_pair().unwrap().public_key).unwrap();
        let doc = serde_json::to_value(jwks(&[first.clone(), second.clone()])).unwrap();
        assert_eq!(
            doc["keys"][0],
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": RFC_X,
                "kid": RFC_THUMBPRINT, "alg": "EdDSA", "use": "sig"
            })
        );
        assert_eq!(doc["keys"][1]["kid"], second.kid());
        assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
        let text = serde_json::to_string(&jwks(&[first])).unwrap();
        assert!(text.starts_with(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"#));
    }
}
