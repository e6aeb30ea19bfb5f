use spin_sdk::http::Request;
use spinmesh_authn::{Claims, Verifier};

use crate::token_cache::TokenCache;
use crate::{ApiError, denylist, edge};

/// The token of an `Authorization: Bearer <token>` header.
///
/// No header (or an empty one) → 401 `token_missing`; anything other than the Bearer
/// scheme (matched case-insensitively, RFC 7235) followed by one token → 401
/// `invalid_auth_header`.
pub fn bearer_token(req: &Request) -> Result<&str, ApiError> {
    let Some(value) = req.header("authorization") else {
        return Err(ApiError::token_missing());
    };
    let value = value
        .as_str()
        .ok_or_else(ApiError::invalid_auth_header)?
        .trim();
    if value.is_empty() {
        return Err(ApiError::token_missing());
    }
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(ApiError::invalid_auth_header)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(ApiError::invalid_auth_header());
    }
    Ok(token)
}

/// Extracts the bearer token, verifies it at `now` (Unix seconds), refuses a logged-out
/// one and charges the request to the caller's per-user rate limit (429 when over it).
/// Every protected route calls this, so the component needs `key_value_stores =
/// ["default"]` (see [`crate::denylist`]) and the rate-limit variables (see
/// [`crate::edge`]).
/// The verified, not logged-out caller, checked with the app's token variables
/// ([`crate::config::token_verifier`]) at the current time.
pub fn caller(req: &Request) -> Result<Claims, ApiError> {
    authenticate(
        req,
        &crate::config::token_verifier()?,
        spinmesh_authn::now_unix(),
    )
}

pub fn authenticate(req: &Request, verifier: &Verifier, now: u64) -> Result<Claims, ApiError> {
    let claims = verify_active(bearer_token(req)?, verifier, now)?;
    edge::charge_user(&claims, now)?;
    Ok(claims)
}

/// Verifies `token` at `now` and refuses a logged-out one: [`authenticate`] for a token
/// that arrives in a body (`POST /validate {token}`).
pub fn verify_active(token: &str, verifier: &Verifier, now: u64) -> Result<Claims, ApiError> {
    let claims = TokenCache::open().verify(verifier, token, now)?;
    denylist::check(&claims)?;
    Ok(claims)
}

/// [`verify_active`] on a route whose handler charges the client address
/// ([`crate::routes::RouteTable::charge_in_handler`]): `validate`, which gateways call
/// for every request they pass, all from their own address. A token found in the
/// verified-token cache costs two key-value reads, less than the counter write a charge
/// is (BENCHMARKS.md), and is not charged; anything else (no token, a body that does not
/// parse, a token not verified yet or a forged one) is charged to the client's address
/// before any signature check, so the costly path stays limited.
pub fn verify_active_charging_misses(
    request: &Request,
    token: Result<&str, ApiError>,
    verifier: &Verifier,
    now: u64,
) -> Result<Claims, ApiError> {
    let cache = TokenCache::open();
    let cached = token
        .as_ref()
        .ok()
        .and_then(|token| cache.lookup(verifier, token, now));
    let claims = match cached {
        Some(claims) => claims,
        None => {
            edge::charge_address(request)?;
            cache.verify_and_remember(verifier, token?, now)?
        }
    };
    denylist::check(&claims)?;
    Ok(claims)
}

/// The signature and time checks alone, without the denylist: only for logout, where
/// revoking a token again is harmless. Protected routes use [`authenticate`].
pub fn verify_bearer(req: &Request, verifier: &Verifier, now: u64) -> Result<Claims, ApiError> {
    Ok(verifier.verify(bearer_token(req)?, now)?)
}

#[cfg(test)]
mod tests {
    use spinmesh_authn::{Issuer, Role, generate_key_pair};

    use super::*;

    const NOW: u64 = 1_750_000_000;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = Request::builder();
        builder.uri("/api/users/me");
        if let Some(value) = authorization {
            builder.header("authorization", value);
        }
        builder.build()
    }

    fn code(result: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let error = result.unwrap_err();
        (error.status, error.code.into_owned())
    }

    #[test]
    fn extracts_the_token() {
        for header in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
            " Bearer abc.def.ghi ",
        ] {
            assert_eq!(
                bearer_token(&request(Some(header))).unwrap(),
                "abc.def.ghi",
                "{header:?}"
            );
        }
    }

    #[test]
    fn missing_header_is_token_missing() {
        let error = bearer_token(&request(None)).unwrap_err();
        assert_eq!(error.code, "token_missing");
        assert_eq!(error.message, "Token is missing!");
        assert_eq!(error.status, 401);
        assert_eq!(
            code(bearer_token(&request(Some("")))),
            (401, "token_missing".into())
        );
        assert_eq!(
            code(bearer_token(&request(Some("   ")))),
            (401, "token_missing".into())
        );
    }

    #[test]
    fn malformed_header_is_invalid_auth_header() {
        for header in [
            "abc.def.ghi",
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer\tabc",
            "Token abc",
            "Bearerabc",
        ] {
            assert_eq!(
                code(bearer_token(&request(Some(header)))),
                (401, "invalid_auth_header".into()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn verify_bearer_verifies_and_maps_errors() {
        let keys = generate_key_pair().unwrap();
        let issuer = Issuer::new(&keys.signing_key, "spinmesh", "spinmesh-api", 900).unwrap();
        let verifier = Verifier::from_base64(&keys.public_key, "spinmesh", "spinmesh-api")
            .unwrap()
            .with_leeway(0);
        let token = issuer
            .issue("7", "alice", &[Role::User], NOW)
            .unwrap()
            .token;
        let header = format!("Bearer {token}");

        let claims = verify_bearer(&request(Some(&header)), &verifier, NOW).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.username.as_str()),
            ("7", "alice")
        );

        let expired = verify_bearer(&request(Some(&header)), &verifier, NOW + 900).unwrap_err();
        assert_eq!(
            (expired.status, expired.code.as_ref()),
            (401, "token_expired")
        );
        assert_eq!(expired.message, "Token has expired");

        let tampered = format!("Bearer {token}x");
        let invalid = verify_bearer(&request(Some(&tampered)), &verifier, NOW).unwrap_err();
        assert_eq!(
            (invalid.status, invalid.code.as_ref()),
            (401, "token_invalid")
        );
        assert_eq!(invalid.message, "Invalid or malformed token");

        assert_eq!(
            code(verify_bearer(&request(None), &verifier, NOW)),
            (401, "token_missing".into())
        );
    }
}
