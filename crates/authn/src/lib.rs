//! Authentication primitives shared by every spinmesh component.
//!
//! * [`Issuer`] signs access tokens (EdDSA JWTs via `jwt-simple`); only `login` builds one.
//! * [`Verifier`] checks them with the public key alone, using ed25519-dalek's
//!   `verify_strict`, which is ~3.5× faster than jwt-simple's verifier in wasm32 (figures in docs/architecture.md).
//! * [`password`] hashes with argon2id, [`refresh`] rotates opaque refresh tokens (with an
//!   absolute family lifetime),
//!   [`Role`] gates access.
//!
//! Time is always passed in as Unix seconds (`now`), so behaviour is deterministic in tests;
//! [`now_unix`] reads the real clock.

mod error;
mod keys;
pub mod password;
mod random;
pub mod refresh;
mod role;
mod secret;
mod token;

pub use error::Error;
pub use keys::{GeneratedKeyPair, Jwk, Jwks, PublicKey, generate_key_pair, jwks};
pub use role::{Role, UnknownRole, has_role, require_role};
pub use secret::secrets_equal;
pub use token::{Claims, IssuedToken, Issuer, Verifier, now_unix};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
