//! The users service's domain, used by the `users` component.
//!
//! * [`input`] holds the validated inputs: a [`UserId`], a [`NewProfile`] and a
//!   [`ProfileUpdate`] can only be built from values that pass the rules.
//! * [`access`] decides who may create, change or delete which profile.
//! * [`store`] keeps profiles in the `users` SQLite database.
//!
//! Input and access rules are unit-tested natively; the store runs only inside a Spin
//! component and is covered by the end-to-end tests in `tests/tests/users.rs`.

pub mod access;
mod error;
pub mod input;
pub mod store;

pub use error::Error;
pub use input::{NewProfile, ProfileUpdate, UserId};
pub use store::Profile;

pub type Result<T, E = Error> = std::result::Result<T, E>;
