//! The auth service's domain, shared by the `register`, `login` and `validate` components.
//!
//! * [`db`] opens the `auth` SQLite database and migrates its schema.
//! * [`users`] registers accounts and checks passwords (with the first admin created on
//!   first use); [`throttle`] counts failed logins per account (with backoff) and per
//!   client address.
//! * [`sessions`] issues access tokens with rotating refresh tokens and ends them.
//! * [`clients`] checks service-account client credentials.
//!
//! Pure rules (input validation, throttle windows, client lists) are unit-tested natively;
//! the store-backed functions run only inside a Spin component and are covered by the
//! end-to-end tests in `tests/tests/auth.rs`.

pub mod clients;
pub mod db;
mod error;
pub mod sessions;
pub mod throttle;
pub mod users;
mod validation;

pub use error::Error;
pub use validation::{NewAccount, validate_email, validate_username};

pub type Result<T, E = Error> = std::result::Result<T, E>;
