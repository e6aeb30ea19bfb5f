use spinmesh_api::ApiError;

/// Everything the auth domain can refuse or fail with. [`ApiError`] turns it into the
/// response; store and configuration failures become the generic 500 (cause logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid username")]
    InvalidUsername,
    #[error("invalid email")]
    InvalidEmail,
    #[error("invalid password")]
    InvalidPassword,
    #[error("username already exists")]
    UsernameTaken,
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {retry_after}s")]
    Throttled { retry_after: u64 },
    /// Unknown, revoked or already-used refresh token.
    #[error("invalid refresh token")]
    RefreshInvalid,
    #[error("refresh token expired")]
    RefreshExpired,
    #[error("invalid client credentials")]
    InvalidClient,
    /// A token request missing a parameter or mixing authentication methods.
    #[error("invalid token request: {0}")]
    InvalidTokenRequest(&'static str),
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error(transparent)]
    Token(#[from] spinmesh_authn::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("sqlite: {0:?}")]
    Sqlite(#[from] spin_sdk::sqlite::Error),
    /// The database holds something this code did not write (a bug or a foreign schema).
    #[error("unexpected stored data: {0}")]
    Corrupt(&'static str),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidUsername => ApiError::new(
                400,
                "invalid_username",
                "Username must be 3 to 32 characters: letters, digits, '_', '.' or '-'",
            ),
            Error::InvalidEmail => {
                ApiError::new(400, "invalid_email", "Email address is not valid")
            }
            Error::InvalidPassword => ApiError::new(
                400,
                "invalid_password",
                "Password must be 8 to 128 characters",
            ),
            Error::UsernameTaken => ApiError::new(409, "username_taken", "Username already exists"),
            Error::EmailTaken => ApiError::new(409, "email_taken", "Email already registered"),
            Error::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", "Invalid username or password")
            }
            Error::Throttled { retry_after } => ApiError::too_many_requests(retry_after),
            Error::RefreshInvalid => {
                ApiError::unauthorized("refresh_token_invalid", "Invalid or revoked refresh token")
            }
            Error::RefreshExpired => {
                ApiError::unauthorized("refresh_token_expired", "Refresh token has expired")
            }
            Error::InvalidClient => {
                ApiError::unauthorized("invalid_client", "Invalid client credentials")
            }
            Error::InvalidTokenRequest(message) => ApiError::invalid_request(message),
            Error::UnsupportedGrantType => ApiError::new(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials or refresh_token",
            ),
            Error::Token(error) => error.into(),
            error @ (Error::Config(_) | Error::Sqlite(_) | Error::Corrupt(_)) => {
                ApiError::internal_logged(error)
            }
        }
    }
}

impl Error {
    /// The answer of the OAuth 2.0 token endpoint (RFC 6749 §5.2): our error shape plus
    /// `error` and `error_description`. A refresh token that does not work is a 400
    /// `invalid_grant` there (a 401 at `/api/token/refresh`); a failed HTTP Basic client
    /// authentication carries the Basic challenge.
    pub fn at_token_endpoint(self, basic_used: bool) -> ApiError {
        match self {
            Error::InvalidClient => {
                let error = ApiError::from(self).with_oauth_error("invalid_client");
                if basic_used {
                    error.with_header("www-authenticate", r#"Basic realm="spinmesh""#)
                } else {
                    error
                }
            }
            Error::RefreshInvalid | Error::RefreshExpired => {
                let error = ApiError::from(self);
                ApiError::new(400, error.code, error.message).with_oauth_error("invalid_grant")
            }
            Error::UnsupportedGrantType => {
                ApiError::from(self).with_oauth_error("unsupported_grant_type")
            }
            Error::InvalidTokenRequest(_) => {
                ApiError::from(self).with_oauth_error("invalid_request")
            }
            other => ApiError::from(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoint_errors_carry_their_oauth_code() {
        let cases = [
            (
                Error::InvalidClient,
                401,
                "invalid_client",
                "invalid_client",
            ),
            (
                Error::RefreshInvalid,
                400,
                "refresh_token_invalid",
                "invalid_grant",
            ),
            (
                Error::RefreshExpired,
                400,
                "refresh_token_expired",
                "invalid_grant",
            ),
            (
                Error::UnsupportedGrantType,
                400,
                "unsupported_grant_type",
                "unsupported_grant_type",
            ),
            (
                Error::InvalidTokenRequest("x"),
                400,
                "invalid_request",
                "invalid_request",
            ),
        ];
        for (error, status, code, oauth) in cases {
            let api = error.at_token_endpoint(false);
            assert_eq!(
                (api.status, api.code.as_ref(), api.oauth_error()),
                (status, code, Some(oauth))
            );
            assert!(api.headers().is_empty(), "{code}");
        }
        let basic = Error::InvalidClient.at_token_endpoint(true);
        assert_eq!(
            basic.headers(),
            [("www-authenticate", r#"Basic realm="spinmesh""#.to_string())]
        );
        assert_eq!(
            Error::Throttled { retry_after: 3 }
                .at_token_endpoint(true)
                .oauth_error(),
            None
        );
    }
}
