//! Component variables (granted per component in `spin.toml`).

use spinmesh_authn::{PublicKey, Verifier};

use crate::ApiError;

/// The value of a component variable. A missing one is a deployment mistake, hence a 500
/// (cause logged).
pub fn var(name: &str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .map_err(|error| ApiError::internal_logged(format_args!("variable `{name}`: {error:?}")))
}

/// The token verifier every protected component uses: the public keys, issuer and
/// audience variables (never the signing key).
pub fn token_verifier() -> Result<Verifier, ApiError> {
    let keys = public_keys()?;
    let (current, previous) = keys
        .split_first()
        .expect("public_keys() has the current key first");
    let verifier = Verifier::new(current.clone(), var("auth_issuer")?, var("auth_audience")?);
    Ok(previous.iter().cloned().fold(verifier, Verifier::with_key))
}

/// The keys tokens may be signed with: `auth_public_key` first, then those of
/// `auth_previous_public_keys` (comma-separated), which keep tokens signed before a key
/// rotation valid until they expire.
pub fn public_keys() -> Result<Vec<PublicKey>, ApiError> {
    let mut keys = vec![PublicKey::from_base64(&var("auth_public_key")?)?];
    for previous in var("auth_previous_public_keys")?
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
    {
        keys.push(PublicKey::from_base64(previous)?);
    }
    Ok(keys)
}

/// A variable holding a positive integer (a lifetime, a limit).
pub fn positive_u64(name: &str) -> Result<u64, ApiError> {
    parse_positive(name, &var(name)?).map_err(ApiError::internal_logged)
}

/// A variable holding an integer where 0 means "off" (a limit that can be disabled).
pub fn non_negative_u64(name: &str) -> Result<u64, ApiError> {
    parse_non_negative(name, &var(name)?).map_err(ApiError::internal_logged)
}

fn parse_positive(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("variable `{name}` must be a positive integer"))
}

fn parse_non_negative(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("variable `{name}` must be a non-negative integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_integers_only() {
        assert_eq!(parse_positive("x", "900").unwrap(), 900);
        assert_eq!(parse_positive("x", " 5\n").unwrap(), 5);
        for bad in ["0", "-1", "", "1.5", "ten"] {
            let error = parse_positive("ttl", bad).unwrap_err();
            assert!(error.contains("`ttl`"), "{error}");
        }
    }

    #[test]
    fn non_negative_integers_include_zero() {
        assert_eq!(parse_non_negative("x", "0").unwrap(), 0);
        assert_eq!(parse_non_negative("x", " 600 ").unwrap(), 600);
        for bad in ["-1", "", "1.5", "off"] {
            let error = parse_non_negative("limit", bad).unwrap_err();
            assert!(error.contains("`limit`"), "{error}");
        }
    }
}
