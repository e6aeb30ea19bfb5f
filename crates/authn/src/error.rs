use crate::Role;

/// Everything that can go wrong in this crate.
///
/// Messages never contain key material, tokens or passwords: they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A well-formed, correctly signed token whose `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// Anything else wrong with a token: malformed, bad signature, wrong algorithm or key,
    /// wrong issuer or audience, not yet valid. The reason is for logs, not for clients.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// A signing or public key (from configuration) could not be used.
    #[error("key configuration error: {0}")]
    KeyConfig(&'static str),
    /// The caller is authenticated but lacks a role.
    #[error("missing required role `{0}`")]
    Forbidden(Role),
    /// Hashing failed, or a stored password hash is not a usable PHC string.
    #[error("password hashing error: {0}")]
    Password(&'static str),
    /// The platform's secure random source failed.
    #[error("secure random number generator unavailable")]
    Random,
    /// jwt-simple refused to sign the claims.
    #[error("token signing failed")]
    Signing,
}
