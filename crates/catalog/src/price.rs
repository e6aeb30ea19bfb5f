//! Money as integer minor units: parsed from a JSON number or a decimal
//! string, never through a float, and shown as a two-decimal string.

use std::fmt;

use serde_json::Value;

/// A price in cents, from 0 up to [`Price::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(u64);

/// Why a price was refused; the message is the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price must be a number or a decimal string such as \"19.99\"")]
    NotADecimal,
    #[error("price must not be negative")]
    Negative,
    #[error("price must have at most 2 decimal places")]
    TooPrecise,
    #[error("price must be at most 1000000000.00")]
    TooLarge,
}

impl Price {
    /// One billion in major units: far above any real product, far below overflow
    /// when multiplied by an order quantity.
    pub const MAX: Price = Price(100_000_000_000);

    pub fn from_cents(cents: u64) -> Result<Self, PriceError> {
        if cents > Self::MAX.0 {
            Err(PriceError::TooLarge)
        } else {
            Ok(Self(cents))
        }
    }

    pub fn cents(self) -> u64 {
        self.0
    }

    /// A JSON number (`50000`, `19.99`) or decimal string (`"50000"`, `"19.99"`).
    ///
    /// A fractional JSON number reaches us as the nearest `f64`; its shortest decimal
    /// form (what `Display` prints, e.g. `19.99`) is the number the client wrote, so it is
    /// parsed as text like a string price and no float arithmetic touches the amount.
    pub fn from_json(value: &Value) -> Result<Self, PriceError> {
        match value {
            Value::String(text) => text.parse(),
            Value::Number(number) => {
                if let Some(whole) = number.as_u64() {
                    whole
                        .checked_mul(100)
                        .ok_or(PriceError::TooLarge)
                        .and_then(Self::from_cents)
                } else if number.is_i64() {
                    Err(PriceError::Negative)
                } else {
                    number
                        .as_f64()
                        .ok_or(PriceError::NotADecimal)?
                        .to_string()
                        .parse()
                }
            }
            _ => Err(PriceError::NotADecimal),
        }
    }
}

/// Digits, optionally a point and one or two more digits; nothing else (no sign, exponent,
/// spaces, separators, `NaN` or `inf`).
impl std::str::FromStr for Price {
    type Err = PriceError;

    fn from_str(text: &str) -> Result<Self, PriceError> {
        if let Some(rest) = text.strip_prefix('-') {
            // "-5" is negative; "-", "-x" are just not numbers.
            return Err(match rest.parse::<Price>() {
                Ok(_) | Err(PriceError::TooPrecise | PriceError::TooLarge) => PriceError::Negative,
                Err(error) => error,
            });
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(PriceError::NotADecimal);
        }
        if fraction.len() > 2 {
            return Err(PriceError::TooPrecise);
        }
        let whole = whole.trim_start_matches('0');
        // Longer than MAX's whole part even before parsing (also keeps u64 from overflowing).
        if whole.len() > 10 {
            return Err(PriceError::TooLarge);
        }
        let units: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| PriceError::NotADecimal)?
        };
        let cents: u64 = format!("{fraction:0<2}")
            .parse()
            .map_err(|_| PriceError::NotADecimal)?;
        Self::from_cents(units * 100 + cents)
    }
}

/// Always two decimals: `50000.00`, `19.90`, `0.05`.
impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal(self.0))
    }
}

/// A cent amount (a price or an order total) as a two-decimal string.
pub fn decimal(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cents(value: Value) -> Result<u64, PriceError> {
        Price::from_json(&value).map(Price::cents)
    }

    #[test]
    fn numbers_and_strings_become_cents() {
        for (value, expected) in [
            (json!(50000), 5_000_000),
            (json!("50000"), 5_000_000),
            (json!(19.99), 1999),
            (json!("19.99"), 1999),
            (json!("19.9"), 1990),
            (json!(19.9), 1990),
            (json!(0.1), 10),
            (json!(0.07), 7),
            (json!("0.07"), 7),
            (json!(0), 0),
            (json!("0"), 0),
            (json!("0.00"), 0),
            (json!(1e3), 100_000),
            (json!("007.50"), 750),
            (json!(1_000_000_000), 100_000_000_000),
            (json!("1000000000.00"), 100_000_000_000),
            (json!(999_999_999.99), 99_999_999_999),
        ] {
            assert_eq!(cents(value.clone()), Ok(expected), "{value}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_price() {
        for (value, error) in [
            (json!(-1), PriceError::Negative),
            (json!(-0.5), PriceError::Negative),
            (json!("-19.99"), PriceError::Negative),
            (json!("-19.999"), PriceError::Negative),
            (json!(19.999), PriceError::TooPrecise),
            (json!("19.999"), PriceError::TooPrecise),
            (json!("0.001"), PriceError::TooPrecise),
            (json!(1e-7), PriceError::TooPrecise),
            (json!(1_000_000_000.01), PriceError::TooLarge),
            (json!("1000000000.01"), PriceError::TooLarge),
            (json!(u64::MAX), PriceError::TooLarge),
            (json!(1e300), PriceError::TooLarge),
            (json!("99999999999999999999999"), PriceError::TooLarge),
            (json!("NaN"), PriceError::NotADecimal),
            (json!("nan"), PriceError::NotADecimal),
            (json!("inf"), PriceError::NotADecimal),
            (json!("Infinity"), PriceError::NotADecimal),
            (json!("-"), PriceError::NotADecimal),
            (json!(""), PriceError::NotADecimal),
            (json!(" 5"), PriceError::NotADecimal),
            (json!("5 "), PriceError::NotADecimal),
            (json!("+5"), PriceError::NotADecimal),
            (json!("1e5"), PriceError::NotADecimal),
            (json!("1,000"), PriceError::NotADecimal),
            (json!("0x10"), PriceError::NotADecimal),
            (json!("5."), PriceError::NotADecimal),
            (json!(".5"), PriceError::NotADecimal),
            (json!("1.2.3"), PriceError::NotADecimal),
            (json!("١٢"), PriceError::NotADecimal),
            (json!(null), PriceError::NotADecimal),
            (json!(true), PriceError::NotADecimal),
            (json!([1]), PriceError::NotADecimal),
            (json!({"amount": 1}), PriceError::NotADecimal),
        ] {
            assert_eq!(cents(value.clone()), Err(error), "{value}");
        }
    }

    #[test]
    fn shown_with_two_decimals() {
        assert_eq!(
            Price::from_cents(5_000_000).unwrap().to_string(),
            "50000.00"
        );
        assert_eq!(Price::from_cents(1990).unwrap().to_string(), "19.90");
        assert_eq!(Price::from_cents(5).unwrap().to_string(), "0.05");
        assert_eq!(decimal(0), "0.00");
        assert_eq!(decimal(123_456_789_012_345), "1234567890123.45");
        assert_eq!(
            Price::from_cents(Price::MAX.cents() + 1),
            Err(PriceError::TooLarge)
        );
    }

    #[test]
    fn shown_prices_parse_back_unchanged() {
        for cents in [0, 1, 99, 100, 1999, 5_000_000, Price::MAX.cents()] {
            let price = Price::from_cents(cents).unwrap();
            assert_eq!(price.to_string().parse::<Price>(), Ok(price));
        }
    }
}
