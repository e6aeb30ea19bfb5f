//! The orders service's domain, used by the `orders` component.
//!
//! * [`input`] holds the validated inputs: a [`NewOrder`], an [`OrderId`] and an
//!   [`IdempotencyKey`].
//! * [`access`] decides who sees which orders.
//! * [`products`] reads products' answers to a stock reservation.
//! * [`service_token`] is the cached client-credentials token orders calls products with.
//! * [`saga`] places an order: claim, reserve, confirm, and the compensations, over
//!   small traits for the database and the calls to products and login.
//! * [`store`] keeps orders in the `orders` SQLite database, claiming the idempotency key
//!   before any stock is reserved; a claim is a lease that a retry can take over once a
//!   dead request let it go stale.
//!
//! Input, access and reply rules and every path of the saga are unit-tested natively; the
//! store and the token cache run only inside a Spin component and are covered by the
//! end-to-end tests in `tests/tests/catalog.rs`.

pub mod access;
mod error;
pub mod input;
pub mod products;
pub mod saga;
pub mod service_token;
pub mod store;

pub use error::Error;
pub use input::{IdempotencyKey, NewOrder, OrderId};
pub use spinmesh_catalog::ProductId;
pub use store::Order;

pub type Result<T, E = Error> = std::result::Result<T, E>;
