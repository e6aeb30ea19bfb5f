use spinmesh_api::ApiError;

use crate::{PriceError, input};

/// Everything the catalogue can refuse or fail with. [`ApiError`] turns it into the
/// response; store failures become the generic 500 (cause logged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid product id")]
    InvalidProductId,
    #[error("invalid name")]
    InvalidName,
    #[error("invalid price: {0}")]
    InvalidPrice(#[from] PriceError),
    #[error("invalid category")]
    InvalidCategory,
    #[error("invalid stock")]
    InvalidStock,
    #[error("invalid description")]
    InvalidDescription,
    #[error("invalid search text")]
    InvalidSearch,
    #[error("invalid quantity")]
    InvalidQuantity,
    #[error("invalid reservation reference")]
    InvalidReference,
    #[error("nothing to update")]
    EmptyUpdate,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("product not found")]
    NotFound,
    #[error("insufficient stock: {available} available")]
    InsufficientStock { available: u64 },
    #[error("reservation not found")]
    ReservationNotFound,
    /// The reference already names a reservation of another product or quantity.
    #[error("reservation reference reused")]
    ReferenceReused,
    #[error("sqlite: {0:?}")]
    Sqlite(#[from] spin_sdk::sqlite::Error),
    /// The database holds something this code did not write (a bug or a foreign schema).
    #[error("unexpected stored data: {0}")]
    Corrupt(&'static str),
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidProductId => ApiError::new(
                400,
                "invalid_product_id",
                "Product id must be a positive integer",
            ),
            Error::InvalidName => ApiError::new(
                400,
                "invalid_name",
                format!(
                    "name must be 1 to {} characters on one line",
                    input::MAX_NAME
                ),
            ),
            Error::InvalidPrice(reason) => ApiError::new(400, "invalid_price", reason.to_string()),
            Error::InvalidCategory => ApiError::new(
                400,
                "invalid_category",
                format!(
                    "category must be 1 to {} characters, without '/' or control characters",
                    input::MAX_CATEGORY
                ),
            ),
            Error::InvalidStock => ApiError::new(
                400,
                "invalid_stock",
                format!("stock must be an integer from 0 to {}", input::MAX_STOCK),
            ),
            Error::InvalidDescription => ApiError::new(
                400,
                "invalid_description",
                format!(
                    "description must be at most {} characters, without control characters other than line breaks and tabs",
                    input::MAX_DESCRIPTION
                ),
            ),
            Error::InvalidSearch => ApiError::invalid_request(format!(
                "q must be at most {} characters, without control characters",
                input::MAX_SEARCH
            )),
            Error::InvalidQuantity => ApiError::new(
                400,
                "invalid_quantity",
                format!(
                    "quantity must be an integer from 1 to {}",
                    input::MAX_QUANTITY
                ),
            ),
            Error::InvalidReference => ApiError::new(
                400,
                "invalid_reference",
                format!(
                    "reference must be 1 to {} characters of A-Z a-z 0-9 . _ : -",
                    input::MAX_REFERENCE
                ),
            ),
            Error::EmptyUpdate => ApiError::invalid_request(
                "Nothing to update: provide name, price, category, stock or description",
            ),
            Error::Forbidden(message) => ApiError::forbidden(message),
            Error::NotFound => ApiError::new(404, "product_not_found", "Product not found"),
            Error::InsufficientStock { available } => ApiError::new(
                409,
                "insufficient_stock",
                format!("Insufficient stock: {available} available"),
            ),
            Error::ReservationNotFound => {
                ApiError::new(404, "reservation_not_found", "Reservation not found")
            }
            Error::ReferenceReused => ApiError::new(
                409,
                "reservation_conflict",
                "This reference already reserves a different product or quantity",
            ),
            error @ (Error::Sqlite(_) | Error::Corrupt(_)) => ApiError::internal_logged(error),
        }
    }
}
