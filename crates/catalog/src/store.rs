//! Products and stock reservations in the `catalog` SQLite database.

use serde::Serialize;
use spin_sdk::sqlite::{Connection, Row, Value};
use spinmesh_api::{
    Page,
    db::{self, integer, optional_text, text},
    time::rfc3339,
};

use crate::{
    Error, ListFilter, NewProduct, ProductId, ProductUpdate, Quantity, Reference, price::decimal,
};

/// The label granted to `products` alone in `spin.toml`.
pub const DATABASE: &str = "catalog";

/// See [`spinmesh_api::db::open`]: append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[&[
    // Money in cents; times in Unix seconds; NULL stock is not tracked. The CHECKs are
    // the last line of defence: no statement can leave a negative price or stock behind.
    "CREATE TABLE products (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        category TEXT NOT NULL COLLATE NOCASE,
        price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
        stock INTEGER CHECK (stock >= 0),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
    "CREATE INDEX products_category ON products (category, id)",
    // Every reservation ever taken, by the caller's own reference (its order), so a retried
    // reservation takes stock once and a release gives it back once. Name and price are
    // kept as they were when reserved.
    "CREATE TABLE reservations (
        holder TEXT NOT NULL,
        reference TEXT NOT NULL,
        product_id INTEGER NOT NULL,
        product_name TEXT NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        unit_price_cents INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (holder, reference)
    )",
]];

const COLUMNS: &str = "id, name, description, category, price_cents, stock, created_at, updated_at";

/// A product as the API shows it: `price` is a two-decimal string and `price_cents` the
/// same amount in integer cents; `stock` is `null` when not tracked; times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: String,
    pub price_cents: u64,
    pub stock: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}

/// Stock taken for a caller's reference, at the price of that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub reference: String,
    pub product_id: i64,
    pub product_name: String,
    pub quantity: u64,
    pub unit_price: String,
    pub unit_price_cents: u64,
    pub created_at: String,
}

/// Whether a reservation was taken now or had been taken by an earlier identical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    New,
    Existing,
}

/// Opens the database, migrating it first if needed.
pub fn open() -> Result<Connection, Error> {
    db::open(DATABASE, MIGRATIONS)
}

pub fn create(conn: &Connection, product: &NewProduct, now: u64) -> Result<Product, Error> {
    let created = conn.execute(
        &format!(
            "INSERT INTO products (name, description, category, price_cents, stock, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             RETURNING {COLUMNS}"
        ),
        &[
            text(&product.name),
            text(&product.description),
            text(product.category.as_str()),
            integer(product.price.cents()),
            product.stock.map_or(Value::Null, integer),
            integer(now),
        ],
    )?;
    created
        .rows()
        .next()
        .map_or(Err(Error::Corrupt("INSERT returned no row")), |row| {
            product_from_row(&row)
        })
}

pub fn get(conn: &Connection, id: ProductId) -> Result<Product, Error> {
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM products WHERE id = ?1"),
        &[Value::Integer(id.get())],
    )?;
    result
        .rows()
        .next()
        .map_or(Err(Error::NotFound), |row| product_from_row(&row))
}

/// One page, by id, of the products `filter` lets through, and their total count.
pub fn list(
    conn: &Connection,
    filter: &ListFilter,
    page: Page,
) -> Result<(u64, Vec<Product>), Error> {
    const WHERE: &str = "WHERE (?1 IS NULL OR category = ?1)
        AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\' OR description LIKE ?2 ESCAPE '\\')";
    let filters = [
        optional_text(filter.category.as_ref().map(|c| c.as_str())),
        optional_text(filter.search.as_deref().map(like_pattern).as_deref()),
    ];
    let total = conn
        .execute(&format!("SELECT count(*) FROM products {WHERE}"), &filters)?
        .rows
        .first()
        .and_then(|row| row.get::<u64>(0))
        .ok_or(Error::Corrupt("count(*) returned no number"))?;
    let mut parameters = filters.to_vec();
    parameters.extend([integer(page.limit.into()), integer(page.offset)]);
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM products {WHERE} ORDER BY id LIMIT ?3 OFFSET ?4"),
        &parameters,
    )?;
    let products = result
        .rows()
        .map(|row| product_from_row(&row))
        .collect::<Result<_, _>>()?;
    Ok((total, products))
}

/// `%text%` with LIKE's own wildcards in `text` taken literally (LIKE ignores ASCII case).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Changes the fields `update` has; [`Error::NotFound`] for an unknown id.
pub fn update(
    conn: &Connection,
    id: ProductId,
    update: &ProductUpdate,
    now: u64,
) -> Result<Product, Error> {
    let updated = conn.execute(
        &format!(
            "UPDATE products SET
                name = coalesce(?2, name),
                price_cents = coalesce(?3, price_cents),
                category = coalesce(?4, category),
                stock = coalesce(?5, stock),
                description = coalesce(?6, description),
                updated_at = ?7
             WHERE id = ?1
             RETURNING {COLUMNS}"
        ),
        &[
            Value::Integer(id.get()),
            optional_text(update.name.as_deref()),
            update
                .price
                .map_or(Value::Null, |price| integer(price.cents())),
            optional_text(update.category.as_ref().map(|c| c.as_str())),
            update.stock.map_or(Value::Null, integer),
            optional_text(update.description.as_deref()),
            integer(now),
        ],
    )?;
    updated
        .rows()
        .next()
        .map_or(Err(Error::NotFound), |row| product_from_row(&row))
}

/// [`Error::NotFound`] for an unknown id. Orders keep their own copy of what they bought.
pub fn delete(conn: &Connection, id: ProductId) -> Result<(), Error> {
    let deleted = conn.execute(
        "DELETE FROM products WHERE id = ?1 RETURNING id",
        &[Value::Integer(id.get())],
    )?;
    if deleted.rows.is_empty() {
        Err(Error::NotFound)
    } else {
        Ok(())
    }
}

/// Takes `quantity` of product `id` for `holder`'s `reference`, at the current price.
///
/// The stock check and decrement are one `UPDATE … WHERE stock >= quantity`: of any number
/// of concurrent reservations, only those the stock covers succeed. Untracked stock
/// (`NULL`) stays untracked and never runs out. The same reference
/// again (a retry) returns the first reservation and takes nothing more; with another
/// product or quantity it is [`Error::ReferenceReused`].
pub fn reserve(
    conn: &Connection,
    holder: &str,
    reference: &Reference,
    id: ProductId,
    quantity: Quantity,
    now: u64,
) -> Result<(Reservation, Reserved), Error> {
    db::transaction(conn, || {
        if let Some(existing) = find_reservation(conn, holder, reference)? {
            return if existing.product_id == id.get() && existing.quantity == quantity.get() {
                Ok((existing, Reserved::Existing))
            } else {
                Err(Error::ReferenceReused)
            };
        }
        let taken = conn.execute(
            "UPDATE products SET stock = stock - ?1, updated_at = ?3
             WHERE id = ?2 AND (stock IS NULL OR stock >= ?1)
             RETURNING name, price_cents",
            &[
                integer(quantity.get()),
                Value::Integer(id.get()),
                integer(now),
            ],
        )?;
        let Some(row) = taken.rows().next() else {
            // Nothing taken: say why.
            return Err(match get(conn, id) {
                Ok(product) => Error::InsufficientStock {
                    available: product.stock.unwrap_or(0),
                },
                Err(error) => error,
            });
        };
        let name = row.get::<&str>("name").ok_or(Error::Corrupt("name"))?;
        let price = row
            .get::<u64>("price_cents")
            .ok_or(Error::Corrupt("price_cents"))?;
        let inserted = conn.execute(
            "INSERT INTO reservations (holder, reference, product_id, product_name, quantity, unit_price_cents, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             RETURNING reference, product_id, product_name, quantity, unit_price_cents, created_at",
            &[
                text(holder),
                text(reference.as_str()),
                Value::Integer(id.get()),
                text(name),
                integer(quantity.get()),
                integer(price),
                integer(now),
            ],
        )?;
        let reservation = inserted
            .rows()
            .next()
            .map_or(Err(Error::Corrupt("INSERT returned no row")), |row| {
                reservation_from_row(&row)
            })?;
        Ok((reservation, Reserved::New))
    })
}

/// Gives the stock of `holder`'s reservation `reference` on product `id` back, once:
/// [`Error::ReservationNotFound`] when there is none (never taken, or already released).
pub fn release(
    conn: &Connection,
    holder: &str,
    reference: &Reference,
    id: ProductId,
    now: u64,
) -> Result<Reservation, Error> {
    db::transaction(conn, || {
        let deleted = conn.execute(
            "DELETE FROM reservations WHERE holder = ?1 AND reference = ?2 AND product_id = ?3
             RETURNING reference, product_id, product_name, quantity, unit_price_cents, created_at",
            &[
                text(holder),
                text(reference.as_str()),
                Value::Integer(id.get()),
            ],
        )?;
        let reservation = deleted
            .rows()
            .next()
            .map_or(Err(Error::ReservationNotFound), |row| {
                reservation_from_row(&row)
            })?;
        // A product deleted meanwhile has no stock to return to.
        conn.execute(
            "UPDATE products SET stock = stock + ?1, updated_at = ?3 WHERE id = ?2",
            &[
                integer(reservation.quantity),
                Value::Integer(id.get()),
                integer(now),
            ],
        )?;
        Ok(reservation)
    })
}

fn find_reservation(
    conn: &Connection,
    holder: &str,
    reference: &Reference,
) -> Result<Option<Reservation>, Error> {
    let result = conn.execute(
        "SELECT reference, product_id, product_name, quantity, unit_price_cents, created_at
         FROM reservations WHERE holder = ?1 AND reference = ?2",
        &[text(holder), text(reference.as_str())],
    )?;
    result
        .rows()
        .next()
        .map(|row| reservation_from_row(&row))
        .transpose()
}

fn product_from_row(row: &Row<'_>) -> Result<Product, Error> {
    let price_cents = cents(row, "price_cents")?;
    Ok(Product {
        id: row.get::<i64>("id").ok_or(Error::Corrupt("id"))?,
        name: string(row, "name")?,
        description: string(row, "description")?,
        category: string(row, "category")?,
        price: decimal(price_cents),
        price_cents,
        // NULL: not tracked. The CHECK keeps anything else a non-negative integer.
        stock: row.get::<u64>("stock"),
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn reservation_from_row(row: &Row<'_>) -> Result<Reservation, Error> {
    let unit_price_cents = cents(row, "unit_price_cents")?;
    Ok(Reservation {
        reference: string(row, "reference")?,
        product_id: row
            .get::<i64>("product_id")
            .ok_or(Error::Corrupt("product_id"))?,
        product_name: string(row, "product_name")?,
        quantity: row
            .get::<u64>("quantity")
            .ok_or(Error::Corrupt("quantity"))?,
        unit_price: decimal(unit_price_cents),
        unit_price_cents,
        created_at: time(row, "created_at")?,
    })
}

fn string(row: &Row<'_>, name: &'static str) -> Result<String, Error> {
    row.get::<&str>(name)
        .map(str::to_owned)
        .ok_or(Error::Corrupt(name))
}

fn cents(row: &Row<'_>, name: &'static str) -> Result<u64, Error> {
    row.get::<u64>(name).ok_or(Error::Corrupt(name))
}

fn time(row: &Row<'_>, name: &'static str) -> Result<String, Error> {
    row.get::<i64>(name)
        .and_then(rfc3339)
        .ok_or(Error::Corrupt(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_literal_inside_like() {
        assert_eq!(like_pattern("phone"), "%phone%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
