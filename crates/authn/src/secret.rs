use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Compares a presented client secret with the configured one in constant time.
///
/// Both sides are hashed first so neither the content nor the length of the expected
/// secret leaks through timing. An empty expected secret (a misconfiguration) never matches.
pub fn secrets_equal(provided: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let provided = Sha256::digest(provided.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    provided.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_match() {
        assert!(secrets_equal("s3cret-value", "s3cret-value"));
    }

    #[test]
    fn different_secrets_do_not_match() {
        assert!(!secrets_equal("s3cret-valuE", "s3cret-value"));
        assert!(!secrets_equal("s3cret", "s3cret-value"));
        assert!(!secrets_equal("", "s3cret-value"));
    }

    #[test]
    fn empty_expected_secret_never_matches() {
        assert!(!secrets_equal("", ""));
        assert!(!secrets_equal("anything", ""));
    }
}
