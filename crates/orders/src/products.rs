//! What `products` answers to a stock reservation, as the order flow needs it. The HTTP
//! call itself is the component's; deciding what a reply means is here, tested natively.

use serde::Deserialize;
use spinmesh_catalog::{Price, Quantity};

use crate::{Error, NewOrder};

/// The reservation that backs the order with id `order_id` (unique per order, so a
/// retried reservation takes stock once).
pub fn reference(order_id: i64) -> String {
    format!("order-{order_id}")
}

/// Stock reserved for an order, at the catalogue's price of that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub product_name: String,
    pub unit_price: Price,
}

impl Reserved {
    /// The order's total in cents. Prices and quantities are bounded well below overflow.
    pub fn total_cents(&self, quantity: Quantity) -> u64 {
        self.unit_price.cents() * quantity.get()
    }
}

/// What a reservation reply means.
#[derive(Debug)]
pub enum Outcome {
    Reserved(Reserved),
    /// `401`: the service token was refused (revoked, or keys rotated): get a new one, retry.
    TokenRefused,
    Refused(Error),
}

#[derive(Deserialize)]
struct ReservationBody {
    product_id: i64,
    product_name: String,
    quantity: u64,
    unit_price_cents: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

/// Reads `POST /api/products/:id/reservations`' reply (`status`, JSON `body`) for `order`.
/// Anything but the documented answers means products is not working as it should, which
/// for the caller is the same as products being down.
pub fn reservation_outcome(order: &NewOrder, status: u16, body: &[u8]) -> Outcome {
    let code = || serde_json::from_slice::<ErrorBody>(body).ok();
    match status {
        200 | 201 => match serde_json::from_slice::<ReservationBody>(body) {
            Ok(reply)
                if reply.product_id == order.product_id.get()
                    && reply.quantity == order.quantity.get() =>
            {
                match Price::from_cents(reply.unit_price_cents) {
                    Ok(unit_price) => Outcome::Reserved(Reserved {
                        product_name: reply.product_name,
                        unit_price,
                    }),
                    Err(_) => unexpected("a price out of range"),
                }
            }
            _ => unexpected("a reservation of another shape"),
        },
        401 => Outcome::TokenRefused,
        404 => match code() {
            Some(error) if error.code == "product_not_found" => {
                Outcome::Refused(Error::ProductNotFound(order.product_id))
            }
            _ => unexpected("404 without product_not_found"),
        },
        409 => match code() {
            Some(error) if error.code == "insufficient_stock" => {
                Outcome::Refused(Error::InsufficientStock(error.message))
            }
            _ => unexpected("409 without insufficient_stock"),
        },
        _ => Outcome::Refused(Error::ProductsUnavailable(format!(
            "products answered {status}"
        ))),
    }
}

fn unexpected(what: &str) -> Outcome {
    Outcome::Refused(Error::ProductsUnavailable(format!(
        "products answered with {what}"
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order() -> NewOrder {
        NewOrder::new(7, 3, None, "alice").unwrap()
    }

    fn outcome(status: u16, body: serde_json::Value) -> Outcome {
        reservation_outcome(&order(), status, body.to_string().as_bytes())
    }

    fn reservation(product_id: i64, quantity: u64, unit_price_cents: u64) -> serde_json::Value {
        json!({
            "reference": "order-1", "product_id": product_id, "product_name": "Pen",
            "quantity": quantity, "unit_price": "1.50", "unit_price_cents": unit_price_cents,
            "created_at": "2026-01-01T00:00:00Z",
        })
    }

    #[test]
    fn reservations_give_name_price_and_total() {
        for status in [200, 201] {
            let Outcome::Reserved(reserved) = outcome(status, reservation(7, 3, 150)) else {
                panic!("not reserved");
            };
            assert_eq!(reserved.product_name, "Pen");
            assert_eq!(reserved.unit_price.cents(), 150);
            assert_eq!(reserved.total_cents(order().quantity), 450);
        }
        assert_eq!(reference(42), "order-42");
    }

    #[test]
    fn refusals_keep_their_meaning() {
        let error = |status, body| match outcome(status, body) {
            Outcome::Refused(error) => error,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            error(404, json!({"status": "404", "code": "product_not_found", "message": "Product not found"})),
            Error::ProductNotFound(id) if id.get() == 7
        ));
        assert!(matches!(
            error(409, json!({"status": "409", "code": "insufficient_stock", "message": "Insufficient stock: 2 available"})),
            Error::InsufficientStock(message) if message == "Insufficient stock: 2 available"
        ));
        assert!(matches!(outcome(401, json!({})), Outcome::TokenRefused));
    }

    #[test]
    fn anything_else_is_products_unavailable() {
        for (status, body) in [
            (
                500,
                json!({"status": "500", "code": "internal_error", "message": "x"}),
            ),
            (503, json!(null)),
            (
                403,
                json!({"status": "403", "code": "forbidden", "message": "x"}),
            ),
            (
                404,
                json!({"status": "404", "code": "not_found", "message": "Not Found"}),
            ),
            (
                409,
                json!({"status": "409", "code": "reservation_conflict", "message": "x"}),
            ),
            (201, reservation(8, 3, 150)),
            (201, reservation(7, 2, 150)),
            (201, reservation(7, 3, Price::MAX.cents() + 1)),
            (201, json!({"product_id": 7})),
            (200, json!("ok")),
        ] {
            assert!(
                matches!(
                    outcome(status, body.clone()),
                    Outcome::Refused(Error::ProductsUnavailable(_))
                ),
                "{status} {body}"
            );
        }
        assert!(matches!(
            reservation_outcome(&order(), 201, b"<html>"),
            Outcome::Refused(Error::ProductsUnavailable(_))
        ));
    }
}
