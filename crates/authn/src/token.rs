//! Access tokens: issued with jwt-simple, verified with ed25519-dalek.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::Signature;
use jwt_simple::prelude::{Audiences, Duration, Ed25519KeyPair, EdDSAKeyPairLike, JWTClaims};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::{
    Error, PublicKey, Role,
    keys::parse_signing_key,
    random::random_id,
    role::{has_role, require_role},
};

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The verified contents of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub username: String,
    pub roles: Vec<Role>,
    pub iss: String,
    /// The audience the token was accepted for.
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// Unique token id, the key of the logout denylist.
    pub jti: String,
}

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        has_role(&self.roles, role)
    }

    /// `Ok` when the token carries `role`, else [`Error::Forbidden`].
    pub fn require(&self, role: Role) -> Result<(), Error> {
        require_role(&self.roles, role)
    }
}

/// The non-registered claims jwt-simple serialises next to the registered ones.
#[derive(Serialize)]
struct CustomClaims<'a> {
    username: &'a str,
    roles: &'a [Role],
}

/// A signed access token and what the login response needs to describe it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
    /// Lifetime in seconds (the `expires_in` of the login response).
    pub expires_in: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Signs access tokens. Holds the private key: build it only in `login`.
pub struct Issuer {
    key_pair: Ed25519KeyPair,
    public_key: PublicKey,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.public_key.kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// `signing_key` is the base64url seed from the Spin variable; `ttl_secs` the access
    /// token lifetime.
    pub fn new(
        signing_key: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl_secs: u64,
    ) -> Result<Self, Error> {
        if ttl_secs == 0 {
            return Err(Error::KeyConfig("token lifetime must be positive"));
        }
        let signing = parse_signing_key(signing_key)?;
        let public_key = PublicKey::from_verifying_key(signing.verifying_key())?;
        // jwt-simple wants seed ‖ public key.
        let keypair_bytes = Zeroizing::new(signing.to_keypair_bytes());
        let key_pair = Ed25519KeyPair::from_bytes(keypair_bytes.as_slice())
            .map_err(|_| Error::KeyConfig("signing key rejected"))?
            .with_key_id(public_key.kid());
        Ok(Self {
            key_pair,
            public_key,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs,
        })
    }

    /// The public half, for the JWKS and for checking it matches the configured public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Signs a token for `user_id`, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        user_id: &str,
        username: &str,
        roles: &[Role],
        now: u64,
    ) -> Result<IssuedToken, Error> {
        let jti = random_id()?;
        let expires_at = now.saturating_add(self.ttl_secs);
        // Built field by field (not `Claims::with_custom_claims`) so `now` comes from the caller.
        let claims = JWTClaims {
            issued_at: Some(Duration::from_secs(now)),
            expires_at: Some(Duration::from_secs(expires_at)),
            invalid_before: Some(Duration::from_secs(now)),
            issuer: Some(self.issuer.clone()),
            subject: Some(user_id.to_owned()),
            audiences: Some(Audiences::AsString(self.audience.clone())),
            jwt_id: Some(jti.clone()),
            nonce: None,
            custom: CustomClaims { username, roles },
        };
        let token = self.key_pair.sign(claims).map_err(|_| Error::Signing)?;
        Ok(IssuedToken {
            token,
            jti,
            expires_at,
            expires_in: self.ttl_secs,
        })
    }
}

/// Verifies access tokens with public keys only.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<PublicKey>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

/// The only header members we accept; anything else (`jwk`, `jku`, `x5u`, `crit`, …)
/// asks us to trust something we don't, so the token is rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// RFC 7519 allows `aud` to be a string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    username: String,
    roles: Vec<Role>,
    iss: String,
    aud: Audience,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

impl Verifier {
    /// Tokens longer than this are rejected before any decoding.
    pub const MAX_TOKEN_LEN: usize = 8 * 1024;
    /// Upper bound for clock-skew tolerance.
    pub const MAX_LEEWAY_SECS: u64 = 60;
    pub const DEFAULT_LEEWAY_SECS: u64 = 30;

    pub fn new(
        public_key: PublicKey,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            keys: vec![public_key],
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
        }
    }

    /// Like [`Verifier::new`], parsing the public-key variable.
    pub fn from_base64(
        public_key: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, Error> {
        Ok(Self::new(
            PublicKey::from_base64(public_key)?,
            issuer,
            audience,
        ))
    }

    /// Also accepts tokens signed by `key` (rotation overlap).
    pub fn with_key(mut self, key: PublicKey) -> Self {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    /// Clock-skew tolerance for `exp`, `nbf` and `iat`; clamped to [`Self::MAX_LEEWAY_SECS`].
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs.min(Self::MAX_LEEWAY_SECS);
        self
    }

    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Verifies `token` at time `now` (Unix seconds) and returns its claims.
    ///
    /// Order matters: size, then shape and header, then the signature over the raw
    /// `header.payload` bytes, and only then is the payload parsed.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Error> {
        self.verify_keyed(token, now).map(|(claims, _)| claims)
    }

    /// [`Verifier::verify`], also naming the key (`kid`) whose signature verified.
    pub fn verify_keyed(&self, token: &str, now: u64) -> Result<(Claims, String), Error> {
        if token.len() > Self::MAX_TOKEN_LEN {
            return Err(Error::Invalid("token too long"));
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(Error::Invalid("token must have three segments"));
        };

        let header: Header = decode_json(header_b64, "malformed header")?;
        if header.alg != "EdDSA" {
            return Err(Error::Invalid("unexpected algorithm"));
        }
        if header.typ.as_deref().is_some_and(|typ| typ != "JWT") {
            return Err(Error::Invalid("unexpected token type"));
        }
        let candidates: Vec<&PublicKey> = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().filter(|key| key.kid() == kid).collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(Error::Invalid("unknown key id"));
        }

        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(Error::Invalid("malformed signature"))?;
        let signature = Signature::from_bytes(&signature);
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let Some(key) = candidates.into_iter().find(|key| {
            key.verifying_key()
                .verify_strict(signed, &signature)
                .is_ok()
        }) else {
            return Err(Error::Invalid("bad signature"));
        };

        let claims: TokenClaims = decode_json(payload_b64, "malformed claims")?;
        Ok((self.validate(claims, now)?, key.kid().to_string()))
    }

    /// Re-checks `claims` that a verifier with these settings verified earlier, signed
    /// by the key `kid` — for a cache of verified tokens, so no signature check: the key
    /// is still trusted, issuer and audience match, and the token is valid at `now`.
    pub fn recheck(&self, claims: &Claims, kid: &str, now: u64) -> Result<(), Error> {
        if !self.keys.iter().any(|key| key.kid() == kid) {
            return Err(Error::Invalid("unknown key id"));
        }
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(Error::Invalid("wrong issuer or audience"));
        }
        self.check_times(claims.nbf, claims.iat, claims.exp, now)
    }

    /// `nbf`, `iat` and `exp` at `now`, with the clock-skew leeway.
    fn check_times(&self, nbf: u64, iat: u64, exp: u64, now: u64) -> Result<(), Error> {
        let leeway = self.leeway_secs;
        if nbf > now.saturating_add(leeway) {
            return Err(Error::Invalid("not yet valid"));
        }
        if iat > now.saturating_add(leeway) {
            return Err(Error::Invalid("issued in the future"));
        }
        // `exp` is the first second at which the token is no longer valid (RFC 7519 §4.1.4).
        if now >= exp.saturating_add(leeway) {
            return Err(Error::Expired);
        }
        Ok(())
    }

    fn validate(&self, claims: TokenClaims, now: u64) -> Result<Claims, Error> {
        if claims.iss != self.issuer {
            return Err(Error::Invalid("wrong issuer"));
        }
        let audience_ok = match &claims.aud {
            Audience::One(aud) => *aud == self.audience,
            Audience::Many(auds) => auds.contains(&self.audience),
        };
        if !audience_ok {
            return Err(Error::Invalid("wrong audience"));
        }
        if claims.sub.is_empty() || claims.jti.is_empty() {
            return Err(Error::Invalid("empty subject or token id"));
        }
        self.check_times(claims.nbf, claims.iat, claims.exp, now)?;
        Ok(Claims {
            sub: claims.sub,
            username: claims.username,
            roles: claims.roles,
            iss: claims.iss,
            aud: self.audience.clone(),
            iat: claims.iat,
            nbf: claims.nbf,
            exp: claims.exp,
            jti: claims.jti,
        })
    }
}

/// Strict base64url (no padding, canonical trailing bits) then JSON.
fn decode_json<T: DeserializeOwned>(segment: &str, what: &'static str) -> Result<T, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::Invalid(what))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Invalid(what))
}

#[cfg(test)]
mod tests;
