//! Validated inputs: each type can only hold values that passed its rule.

use spinmesh_catalog::{ProductId, Quantity};

use crate::Error;

/// Longest `customer_name`, in characters.
pub const MAX_CUSTOMER_NAME: usize = 100;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// An order id: a positive integer (SQLite rowid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderId(i64);

impl OrderId {
    /// From a path segment: ASCII digits only, so path junk never reaches SQL.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidOrderId);
        }
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(Error::InvalidOrderId),
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// What the caller orders. The price is not theirs to say: it comes from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub customer_name: String,
}

impl NewOrder {
    /// `customer_name` defaults to `username`, the caller's own.
    pub fn new(
        product_id: i64,
        quantity: u64,
        customer_name: Option<&str>,
        username: &str,
    ) -> Result<Self, Error> {
        let product_id = ProductId::new(product_id).map_err(|_| Error::InvalidProductId)?;
        let quantity = Quantity::new(quantity).map_err(|_| Error::InvalidQuantity)?;
        let customer_name = match customer_name.map(str::trim) {
            None | Some("") => username.to_owned(),
            Some(name)
                if name.chars().count() <= MAX_CUSTOMER_NAME
                    && !name.chars().any(char::is_control) =>
            {
                name.to_owned()
            }
            Some(_) => return Err(Error::InvalidCustomerName),
        };
        Ok(Self {
            product_id,
            quantity,
            customer_name,
        })
    }
}

/// The `Idempotency-Key` header: 1..=[`MAX_IDEMPOTENCY_KEY`] visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(raw: &str) -> Result<Self, Error> {
        if (1..=MAX_IDEMPOTENCY_KEY).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_graphic())
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidIdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_positive_integers() {
        assert_eq!(OrderId::parse("17").unwrap().get(), 17);
        for bad in ["", "0", "-1", "1e3", "x", "9223372036854775808", "1 "] {
            assert!(
                matches!(OrderId::parse(bad), Err(Error::InvalidOrderId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_orders_check_product_quantity_and_name() {
        let order = NewOrder::new(1, 2, Some("John Doe"), "john").unwrap();
        assert_eq!((order.product_id.get(), order.quantity.get()), (1, 2));
        assert_eq!(order.customer_name, "John Doe");
        assert_eq!(
            NewOrder::new(1, 1, None, "john").unwrap().customer_name,
            "john"
        );
        assert_eq!(
            NewOrder::new(1, 1, Some("  "), "john")
                .unwrap()
                .customer_name,
            "john"
        );
        assert!(matches!(
            NewOrder::new(0, 1, None, "j"),
            Err(Error::InvalidProductId)
        ));
        assert!(matches!(
            NewOrder::new(-3, 1, None, "j"),
            Err(Error::InvalidProductId)
        ));
        assert!(matches!(
            NewOrder::new(1, 0, None, "j"),
            Err(Error::InvalidQuantity)
        ));
        assert!(matches!(
            NewOrder::new(1, spinmesh_catalog::input::MAX_QUANTITY + 1, None, "j"),
            Err(Error::InvalidQuantity)
        ));
        assert!(matches!(
            NewOrder::new(1, 1, Some("a\nb"), "j"),
            Err(Error::InvalidCustomerName)
        ));
        assert!(matches!(
            NewOrder::new(1, 1, Some(&"n".repeat(MAX_CUSTOMER_NAME + 1)), "j"),
            Err(Error::InvalidCustomerName)
        ));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert_eq!(
            IdempotencyKey::new("9f1c-4e2a").unwrap().as_str(),
            "9f1c-4e2a"
        );
        assert!(IdempotencyKey::new(&"k".repeat(MAX_IDEMPOTENCY_KEY)).is_ok());
        for bad in ["", "a b", "é", "a\tb", &"k".repeat(MAX_IDEMPOTENCY_KEY + 1)] {
            assert!(
                matches!(IdempotencyKey::new(bad), Err(Error::InvalidIdempotencyKey)),
                "{bad:?}"
            );
        }
    }
}
