//! Validated inputs: each type can only hold values that passed its rule.

use serde_json::Value;

use crate::{Error, Price};

/// Longest product name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest category, in characters.
pub const MAX_CATEGORY: usize = 50;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;
/// Largest stock level of one product.
pub const MAX_STOCK: u64 = 1_000_000_000;
/// Largest quantity of one reservation (and so of one order).
pub const MAX_QUANTITY: u64 = 10_000;
/// Longest search text (`q`), in characters.
pub const MAX_SEARCH: usize = 100;
/// Longest reservation reference.
pub const MAX_REFERENCE: usize = 64;

/// A product id: a positive integer (SQLite rowid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductId(i64);

impl ProductId {
    /// From a path segment: ASCII digits only, so path junk never reaches SQL.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidProductId);
        }
        raw.parse::<i64>()
            .map_err(|_| Error::InvalidProductId)
            .and_then(Self::new)
    }

    pub fn new(id: i64) -> Result<Self, Error> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err(Error::InvalidProductId)
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A product category: one trimmed line of 1..=[`MAX_CATEGORY`] characters without `/`
/// (it is a path segment of `/api/products/category/:category`). Compared without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category(String);

impl Category {
    pub fn new(raw: &str) -> Result<Self, Error> {
        let value = raw.trim();
        let length = value.chars().count();
        if (1..=MAX_CATEGORY).contains(&length)
            && !value.chars().any(|c| c.is_control() || c == '/')
        {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::InvalidCategory)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many units a reservation takes: 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u64);

impl Quantity {
    pub fn new(quantity: u64) -> Result<Self, Error> {
        if (1..=MAX_QUANTITY).contains(&quantity) {
            Ok(Self(quantity))
        } else {
            Err(Error::InvalidQuantity)
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// The caller's name for a reservation (the order it is for), unique per caller:
/// 1..=[`MAX_REFERENCE`] of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub fn new(raw: &str) -> Result<Self, Error> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        if (1..=MAX_REFERENCE).contains(&raw.len()) && raw.bytes().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidReference)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fields of a new product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub price: Price,
    pub category: Category,
    /// `None`: stock is not tracked (the seed's products have none) and never runs out.
    pub stock: Option<u64>,
    pub description: String,
}

impl NewProduct {
    /// Checks name, price, category, stock, description in that order; an absent
    /// description is empty.
    pub fn new(
        name: &str,
        price: &Value,
        category: &str,
        stock: Option<u64>,
        description: Option<&str>,
    ) -> Result<Self, Error> {
        Ok(Self {
            name: name_rule(name)?,
            price: Price::from_json(price)?,
            category: Category::new(category)?,
            stock: stock.map(stock_rule).transpose()?,
            description: description
                .map(description_rule)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// A partial update: at least one field, each valid. `stock` sets the level outright (and
/// starts tracking it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductUpdate {
    pub name: Option<String>,
    pub price: Option<Price>,
    pub category: Option<Category>,
    pub stock: Option<u64>,
    pub description: Option<String>,
}

impl ProductUpdate {
    pub fn new(
        name: Option<&str>,
        price: Option<&Value>,
        category: Option<&str>,
        stock: Option<u64>,
        description: Option<&str>,
    ) -> Result<Self, Error> {
        let update = Self {
            name: name.map(name_rule).transpose()?,
            price: price.map(Price::from_json).transpose()?,
            category: category.map(Category::new).transpose()?,
            stock: stock.map(stock_rule).transpose()?,
            description: description.map(description_rule).transpose()?,
        };
        if update == Self::default() {
            Err(Error::EmptyUpdate)
        } else {
            Ok(update)
        }
    }
}

/// What `GET /api/products` narrows the list to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilter {
    pub category: Option<Category>,
    /// Case-insensitive text to find in the name or description.
    pub search: Option<String>,
}

impl ListFilter {
    /// Empty values mean "no filter".
    pub fn new(category: Option<&str>, search: Option<&str>) -> Result<Self, Error> {
        fn present(value: Option<&str>) -> Option<&str> {
            value.map(str::trim).filter(|value| !value.is_empty())
        }
        let search = present(search)
            .map(|text| {
                if text.chars().count() <= MAX_SEARCH && !text.chars().any(char::is_control) {
                    Ok(text.to_owned())
                } else {
                    Err(Error::InvalidSearch)
                }
            })
            .transpose()?;
        Ok(Self {
            category: present(category).map(Category::new).transpose()?,
            search,
        })
    }
}

/// One trimmed line of 1..=[`MAX_NAME`] characters.
fn name_rule(raw: &str) -> Result<String, Error> {
    let value = raw.trim();
    let length = value.chars().count();
    if (1..=MAX_NAME).contains(&length) && !value.chars().any(char::is_control) {
        Ok(value.to_owned())
    } else {
        Err(Error::InvalidName)
    }
}

/// At most [`MAX_DESCRIPTION`] characters; line breaks and tabs are the only control characters.
fn description_rule(raw: &str) -> Result<String, Error> {
    let allowed = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    if raw.chars().count() <= MAX_DESCRIPTION && raw.chars().all(allowed) {
        Ok(raw.to_owned())
    } else {
        Err(Error::InvalidDescription)
    }
}

fn stock_rule(stock: u64) -> Result<u64, Error> {
    if stock <= MAX_STOCK {
        Ok(stock)
    } else {
        Err(Error::InvalidStock)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::PriceError;

    #[test]
    fn product_ids_are_positive_integers() {
        assert_eq!(ProductId::parse("1").unwrap().get(), 1);
        assert_eq!(ProductId::parse("0042").unwrap().get(), 42);
        assert_eq!(
            ProductId::parse("9223372036854775807").unwrap().get(),
            i64::MAX
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            "abc",
            " 1",
            "9223372036854775808",
            "1;DROP",
            "%31",
            "١",
        ] {
            assert!(
                matches!(ProductId::parse(bad), Err(Error::InvalidProductId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_products_check_every_field() {
        let product =
            NewProduct::new(" iPhone ", &json!("50000"), "Electronics", None, None).unwrap();
        assert_eq!(product.name, "iPhone");
        assert_eq!(product.price.cents(), 5_000_000);
        assert_eq!(product.category.as_str(), "Electronics");
        assert_eq!((product.stock, product.description.as_str()), (None, ""));
        let product = NewProduct::new(
            "Pen",
            &json!(1.5),
            "Office",
            Some(MAX_STOCK),
            Some("Blue\nink"),
        )
        .unwrap();
        assert_eq!(
            (product.price.cents(), product.stock),
            (150, Some(MAX_STOCK))
        );

        let error = |name: &str,
                     price: Value,
                     category: &str,
                     stock: Option<u64>,
                     description: Option<&str>| {
            NewProduct::new(name, &price, category, stock, description).unwrap_err()
        };
        assert!(matches!(
            error(" ", json!(1), "c", None, None),
            Error::InvalidName
        ));
        assert!(matches!(
            error(&"n".repeat(MAX_NAME + 1), json!(1), "c", None, None),
            Error::InvalidName
        ));
        assert!(matches!(
            error("a\u{0}b", json!(1), "c", None, None),
            Error::InvalidName
        ));
        assert!(matches!(
            error("n", json!(-1), "c", None, None),
            Error::InvalidPrice(PriceError::Negative)
        ));
        assert!(matches!(
            error("n", json!(1), "", None, None),
            Error::InvalidCategory
        ));
        assert!(matches!(
            error("n", json!(1), "a/b", None, None),
            Error::InvalidCategory
        ));
        assert!(matches!(
            error("n", json!(1), "c", Some(MAX_STOCK + 1), None),
            Error::InvalidStock
        ));
        assert!(matches!(
            error("n", json!(1), "c", None, Some("\u{1b}[31m")),
            Error::InvalidDescription
        ));
        assert!(
            NewProduct::new(
                &"é".repeat(MAX_NAME),
                &json!(1),
                &"ü".repeat(MAX_CATEGORY),
                None,
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn updates_need_a_field_and_check_what_they_have() {
        assert!(matches!(
            ProductUpdate::new(None, None, None, None, None),
            Err(Error::EmptyUpdate)
        ));
        let update = ProductUpdate::new(None, Some(&json!("60000")), None, None, None).unwrap();
        assert_eq!(update.price.map(Price::cents), Some(6_000_000));
        assert_eq!(
            ProductUpdate::new(None, None, None, Some(0), None)
                .unwrap()
                .stock,
            Some(0)
        );
        assert_eq!(
            ProductUpdate::new(None, None, None, None, Some(""))
                .unwrap()
                .description
                .as_deref(),
            Some("")
        );
        assert!(matches!(
            ProductUpdate::new(None, Some(&json!("1.234")), None, None, None),
            Err(Error::InvalidPrice(PriceError::TooPrecise))
        ));
        assert!(matches!(
            ProductUpdate::new(Some(""), None, None, None, None),
            Err(Error::InvalidName)
        ));
    }

    #[test]
    fn quantities_and_references() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert!(Quantity::new(MAX_QUANTITY).is_ok());
        assert!(matches!(Quantity::new(0), Err(Error::InvalidQuantity)));
        assert!(matches!(
            Quantity::new(MAX_QUANTITY + 1),
            Err(Error::InvalidQuantity)
        ));
        assert_eq!(Reference::new("order-17").unwrap().as_str(), "order-17");
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(MAX_REFERENCE + 1)] {
            assert!(
                matches!(Reference::new(bad), Err(Error::InvalidReference)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_filters_ignore_empty_values() {
        assert_eq!(ListFilter::new(None, None).unwrap(), ListFilter::default());
        assert_eq!(
            ListFilter::new(Some(""), Some("  ")).unwrap(),
            ListFilter::default()
        );
        let filter = ListFilter::new(Some("Books"), Some(" 50% off ")).unwrap();
        assert_eq!(filter.category.unwrap().as_str(), "Books");
        assert_eq!(filter.search.as_deref(), Some("50% off"));
        assert!(matches!(
            ListFilter::new(None, Some(&"q".repeat(MAX_SEARCH + 1))),
            Err(Error::InvalidSearch)
        ));
        assert!(matches!(
            ListFilter::new(Some("a/b"), None),
            Err(Error::InvalidCategory)
        ));
    }
}
