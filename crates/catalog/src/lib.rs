//! The products service's domain, used by the `products` component.
//!
//! * [`price`] is money: a [`Price`] in integer cents, parsed from a JSON number or a
//!   decimal string and shown as a two-decimal string.
//! * [`input`] holds the validated inputs (product fields, filters, reservations).
//! * [`access`] decides who may create, change, delete and reserve.
//! * [`store`] keeps products in the `catalog` SQLite database; a stock reservation is
//!   one conditional `UPDATE`, so stock never goes negative.
//!
//! Prices, input and access rules are unit-tested natively; the store runs only inside a
//! Spin component and is covered by the end-to-end tests in `tests/tests/catalog.rs`.

pub mod access;
mod error;
pub mod input;
pub mod price;
pub mod store;

pub use error::Error;
pub use input::{Category, ListFilter, NewProduct, ProductId, ProductUpdate, Quantity, Reference};
pub use price::{Price, PriceError};
pub use store::{Product, Reservation};

pub type Result<T, E = Error> = std::result::Result<T, E>;
