//! Password hashing: argon2id with OWASP's minimum (m = 19 MiB, t = 2, p = 1), PHC strings.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::{self, SaltString},
};

use crate::{Error, random::random_array};

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// A hash of a random, discarded password under the parameters above, so that
/// [`verify_dummy_password`] costs exactly what a real verification costs. It is a
/// constant rather than computed at start-up because every Spin request runs in a fresh
/// instance: computing it there would double the work on the unknown-user path.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$9gFLYkD7m96F1jyMYfb+eg$puaeSRcrK7COh7TxsBoHfblFO8xRdKHpvcX/ozBoqoU";

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh random salt; returns the PHC string to store.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::encode_b64(&random_array::<16>()?)
        .map_err(|_| Error::Password("salt encoding failed"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| Error::Password("hashing failed"))
}

/// Checks `password` against a stored PHC string (using the parameters recorded in it).
///
/// `Ok(false)` is a wrong password; `Err` means the stored hash itself is unusable.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, Error> {
    let hash = PasswordHash::new(phc).map_err(|_| Error::Password("malformed stored hash"))?;
    match argon2().verify_password(password.as_bytes(), &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(_) => Err(Error::Password("unusable stored hash")),
    }
}

/// Spends the time of a real verification and returns `false`: call it when the user
/// does not exist, so response time does not reveal which usernames are registered.
pub fn verify_dummy_password(password: &str) -> bool {
    // Whatever the outcome, the answer for an unknown user is "no".
    let _ = verify_password(password, DUMMY_HASH);
    false
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            verify_password("correct horse battery staple", &phc),
            Ok(true)
        );
        assert_eq!(
            verify_password("Correct horse battery staple", &phc),
            Ok(false)
        );
        assert_eq!(verify_password("", &phc), Ok(false));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(
            hash_password("same").unwrap(),
            hash_password("same").unwrap()
        );
    }

    #[test]
    fn malformed_stored_hash_is_an_error_not_a_mismatch() {
        for bad in ["", "plaintext", "$argon2id$v=19$m=19456,t=2,p=1$"] {
            assert!(
                matches!(verify_password("x", bad), Err(Error::Password(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dummy_hash_uses_the_current_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let fresh_phc = hash_password("x").unwrap();
        let fresh = PasswordHash::new(&fresh_phc).unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.version, fresh.version);
        assert_eq!(dummy.params, fresh.params);
        assert_eq!(dummy.hash.map(|h| h.len()), fresh.hash.map(|h| h.len()));
        assert_eq!(dummy.salt.map(|s| s.len()), fresh.salt.map(|s| s.len()));
    }

    #[test]
    fn dummy_verification_rejects_and_costs_a_real_verification() {
        let phc = hash_password("pw").unwrap();
        // Medians of three runs and wide bounds keep this stable on a busy 2-core CI machine;
        // it catches a dummy that skips the work (parameters are checked above).
        let time = |f: &dyn Fn()| {
            let mut runs: Vec<_> = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed()
                })
                .collect();
            runs.sort();
            runs[1]
        };
        let real = time(&|| assert_eq!(verify_password("guess", &phc), Ok(false)));
        let dummy = time(&|| assert!(!verify_dummy_password("guess")));
        let ratio = dummy.as_secs_f64() / real.as_secs_f64();
        assert!(
            (0.33..3.0).contains(&ratio),
            "real {real:?}, dummy {dummy:?}"
        );
    }
}
