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
            Error::Token(error) => error.into(),
            error @ (Error::Config(_) | Error::Sqlite(_) | Error::Corrupt(_)) => {
                ApiError::internal_logged(error)
            }
        }
    }
}
