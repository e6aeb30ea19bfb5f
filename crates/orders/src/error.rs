use spinmesh_api::ApiError;
use spinmesh_catalog::ProductId;

use crate::input;

/// Everything the order flow can refuse or fail with. [`ApiError`] turns it into the
/// response; store failures become the generic 500 (cause logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid order id")]
    InvalidOrderId,
    #[error("invalid product id")]
    InvalidProductId,
    #[error("invalid quantity")]
    InvalidQuantity,
    #[error("invalid customer name")]
    InvalidCustomerName,
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    #[error("not the caller's order")]
    Forbidden,
    #[error("order not found")]
    NotFound,
    #[error("product {} does not exist", .0.get())]
    ProductNotFound(ProductId),
    /// Products' own message (it says how many are available).
    #[error("{0}")]
    InsufficientStock(String),
    /// The key already created an order with other contents.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// An identical request with the same key has not finished yet.
    #[error("idempotent request in progress")]
    IdempotencyInProgress,
    /// Products (or login, for the service token) cannot be reached or misbehaves; the
    /// detail is logged, not shown.
    #[error("products unavailable: {0}")]
    ProductsUnavailable(String),
    #[error("sqlite: {0:?}")]
    Sqlite(#[from] spin_sdk::sqlite::Error),
    /// The database holds something this code did not write (a bug or a foreign schema).
    #[error("unexpected stored data: {0}")]
    Corrupt(&'static str),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidOrderId => ApiError::new(
                400,
                "invalid_order_id",
                "Order id must be a positive integer",
            ),
            Error::InvalidProductId => ApiError::new(
                400,
                "invalid_product_id",
                "product_id must be a positive integer",
            ),
            Error::InvalidQuantity => ApiError::new(
                400,
                "invalid_quantity",
                format!(
                    "quantity must be an integer from 1 to {}",
                    spinmesh_catalog::input::MAX_QUANTITY
                ),
            ),
            Error::InvalidCustomerName => ApiError::new(
                400,
                "invalid_customer_name",
                format!(
                    "customer_name must be at most {} characters on one line",
                    input::MAX_CUSTOMER_NAME
                ),
            ),
            Error::InvalidIdempotencyKey => ApiError::new(
                400,
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {} visible ASCII characters",
                    input::MAX_IDEMPOTENCY_KEY
                ),
            ),
            Error::Forbidden => ApiError::forbidden("You can only view your own orders"),
            Error::NotFound => ApiError::new(404, "order_not_found", "Order not found"),
            Error::ProductNotFound(id) => ApiError::new(
                404,
                "product_not_found",
                format!("Product {} does not exist", id.get()),
            ),
            Error::InsufficientStock(message) => ApiError::new(409, "insufficient_stock", message),
            Error::IdempotencyKeyReused => ApiError::new(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different order",
            ),
            Error::IdempotencyInProgress => ApiError::new(
                409,
                "idempotency_in_progress",
                "A request with this Idempotency-Key is still being processed",
            )
            .with_header("retry-after", "1"),
            Error::ProductsUnavailable(detail) => {
                eprintln!("products unavailable: {detail}");
                ApiError::service_unavailable(
                    "The product service is unavailable; no order was placed",
                )
            }
            error @ (Error::Sqlite(_) | Error::Corrupt(_)) => ApiError::internal_logged(error),
        }
    }
}
