use spinmesh_api::ApiError;

/// Everything the profile domain can refuse or fail with. [`ApiError`] turns it into the
/// response; store failures become the generic 500 (cause logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid user id")]
    InvalidUserId,
    #[error("invalid email")]
    InvalidEmail,
    #[error("invalid full_name")]
    InvalidFullName,
    #[error("invalid bio")]
    InvalidBio,
    #[error("nothing to update")]
    EmptyUpdate,
    /// The caller may not act on this profile.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("profile not found")]
    NotFound,
    #[error("profile already exists")]
    AlreadyExists,
    #[error("email used by another profile")]
    EmailTaken,
    #[error("sqlite: {0:?}")]
    Sqlite(#[from] spin_sdk::sqlite::Error),
    /// The database holds something this code did not write (a bug or a foreign schema).
    #[error("unexpected stored data: {0}")]
    Corrupt(&'static str),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidUserId => ApiError::new(400, "invalid_user_id", "user_id must be a UUID"),
            Error::InvalidEmail => {
                ApiError::new(400, "invalid_email", "Email address is not valid")
            }
            Error::InvalidFullName => ApiError::new(
                400,
                "invalid_full_name",
                format!(
                    "full_name must be at most {} characters, without control characters",
                    crate::input::MAX_FULL_NAME
                ),
            ),
            Error::InvalidBio => ApiError::new(
                400,
                "invalid_bio",
                format!(
                    "bio must be at most {} characters, without control characters other than line breaks and tabs",
                    crate::input::MAX_BIO
                ),
            ),
            Error::EmptyUpdate => {
                ApiError::invalid_request("Nothing to update: provide full_name or bio")
            }
            Error::Forbidden(message) => ApiError::forbidden(message),
            Error::NotFound => ApiError::not_found("User not found"),
            Error::AlreadyExists => ApiError::new(409, "profile_exists", "Profile already exists"),
            Error::EmailTaken => {
                ApiError::new(409, "email_taken", "Email already used by another profile")
            }
            error @ (Error::Sqlite(_) | Error::Corrupt(_)) => ApiError::internal_logged(error),
        }
    }
}
