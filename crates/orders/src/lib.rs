//! The orders service's domain, used by the `orders` component.
//!
//! * [`input`] holds the validated inputs: a [`NewOrder`], an [`OrderId`] and an
//!   [`IdempotencyKey`].
//! * [`access`] decides who sees which orders.
//! * [`products`] reads products' answers to a stock reservation.
//! * [`service_token`] is the cached client-credentials token orders calls products with.
//! * [`store`] keeps orders in the `orders` SQLite database, claiming the idempotency key
//!   before any stock is reserved.
//!
//! Input, access and reply rules are unit-tested natively; the store runs only inside a
//! Spin component and is covered by the end-to-end tests in `tests/tests/catalog.rs`.

pub mod access;
mod error;
pub mod input;
pub mod products;
pub mod service_token;
pub mod store;

pub use error::Error;
pub use input::{IdempotencyKey, NewOrder, OrderId};
pub use store::Order;

pub type Result<T, E = Error> = std::result::Result<T, E>;
