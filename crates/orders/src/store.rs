//! Orders in the `orders` SQLite database.
//!
//! An order is written in two steps around the stock reservation: [`claim`] inserts it
//! `pending` (taking the caller's idempotency key, so concurrent retries cannot both
//! reserve), then [`confirm`] records what was bought, or [`abandon`] removes it when the
//! reservation failed. Only confirmed orders are ever shown.

use serde::Serialize;
use spin_sdk::sqlite::{Connection, Row, Value};
use spinmesh_api::{
    Page,
    db::{self, integer, optional_text, text},
    time::rfc3339,
};
use spinmesh_catalog::{Quantity, price::decimal};

use crate::saga::Ledger;
use crate::{Error, IdempotencyKey, NewOrder, OrderId, access::Scope, products::Reserved};

/// The label granted to `orders` alone in `spin.toml`.
pub const DATABASE: &str = "orders";

/// See [`spinmesh_api::db::open`]: append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[&[
    // Money in cents, as the catalogue charged it when the order was placed; times in
    // Unix seconds. Keys are unique per caller (NULLs, orders without a key, never clash).
    "CREATE TABLE orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        idempotency_key TEXT,
        product_id INTEGER NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        customer_name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        product_name TEXT,
        unit_price_cents INTEGER CHECK (unit_price_cents >= 0),
        total_cents INTEGER CHECK (total_cents >= 0),
        created_at INTEGER NOT NULL,
        UNIQUE (owner_id, idempotency_key)
    )",
    "CREATE INDEX orders_owner ON orders (owner_id, id)",
]];

const COLUMNS: &str = "id, owner_id, owner_name, product_id, product_name, quantity, \
    unit_price_cents, total_cents, customer_name, status, created_at";

/// An order as the API shows it: money as a two-decimal string plus the same amount in
/// integer cents, times RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: i64,
    pub user_id: String,
    pub username: String,
    pub product_id: i64,
    pub product_name: String,
    pub quantity: u64,
    pub unit_price: String,
    pub unit_price_cents: u64,
    pub total_price: String,
    pub total_price_cents: u64,
    pub customer_name: String,
    pub status: String,
    pub created_at: String,
}

/// Who places an order (from the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// A new pending order with this id: reserve its stock next.
    New(i64),
    /// The key already created this order (a retry): answer with it, do nothing else.
    Replay(Box<Order>),
}

/// Opens the database, migrating it first if needed.
pub fn open() -> Result<Connection, Error> {
    db::open(DATABASE, MIGRATIONS)
}

/// The [`Ledger`] of one caller's orders in the `orders` database, at `now` (Unix seconds).
pub struct SqlLedger<'a> {
    pub conn: &'a Connection,
    pub owner: Owner<'a>,
    pub now: u64,
}

impl Ledger for SqlLedger<'_> {
    fn claim(&self, key: Option<&IdempotencyKey>, order: &NewOrder) -> Result<Claim, Error> {
        claim(self.conn, &self.owner, key, order, self.now)
    }

    fn confirm(&self, id: i64, reserved: &Reserved, quantity: Quantity) -> Result<Order, Error> {
        confirm(self.conn, id, reserved, quantity)
    }

    fn abandon(&self, id: i64) -> Result<(), Error> {
        abandon(self.conn, id)
    }
}

/// Inserts `order` as pending, or finds the order `key` already stands for:
/// [`Error::IdempotencyKeyReused`] when that one differs, [`Error::IdempotencyInProgress`]
/// while it is still pending. The unique constraint decides between concurrent requests.
fn claim(
    conn: &Connection,
    owner: &Owner<'_>,
    key: Option<&IdempotencyKey>,
    order: &NewOrder,
    now: u64,
) -> Result<Claim, Error> {
    let inserted = conn.execute(
        "INSERT INTO orders (owner_id, owner_name, idempotency_key, product_id, quantity,
                             customer_name, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)
         ON CONFLICT (owner_id, idempotency_key) DO NOTHING
         RETURNING id",
        &[
            text(owner.id),
            text(owner.name),
            optional_text(key.map(IdempotencyKey::as_str)),
            Value::Integer(order.product_id.get()),
            integer(order.quantity.get()),
            text(&order.customer_name),
            integer(now),
        ],
    )?;
    if let Some(id) = inserted.rows.first().and_then(|row| row.get::<i64>(0)) {
        return Ok(Claim::New(id));
    }
    let key = key.ok_or(Error::Corrupt("an order without a key conflicted"))?;
    let existing = conn.execute(
        &format!("SELECT {COLUMNS} FROM orders WHERE owner_id = ?1 AND idempotency_key = ?2"),
        &[text(owner.id), text(key.as_str())],
    )?;
    let row = existing
        .rows()
        .next()
        // Abandoned between our insert and this read: the caller may simply retry.
        .ok_or(Error::IdempotencyInProgress)?;
    let same = row.get::<i64>("product_id") == Some(order.product_id.get())
        && row.get::<u64>("quantity") == Some(order.quantity.get())
        && row.get::<&str>("customer_name") == Some(order.customer_name.as_str());
    if !same {
        Err(Error::IdempotencyKeyReused)
    } else if row.get::<&str>("status") == Some("pending") {
        Err(Error::IdempotencyInProgress)
    } else {
        order_from_row(&row).map(|order| Claim::Replay(Box::new(order)))
    }
}

/// Records what the pending order `id` bought, making it visible.
fn confirm(
    conn: &Connection,
    id: i64,
    reserved: &Reserved,
    quantity: Quantity,
) -> Result<Order, Error> {
    let confirmed = conn.execute(
        &format!(
            "UPDATE orders SET status = 'confirmed', product_name = ?2, unit_price_cents = ?3,
                               total_cents = ?4
             WHERE id = ?1 AND status = 'pending'
             RETURNING {COLUMNS}"
        ),
        &[
            Value::Integer(id),
            text(&reserved.product_name),
            integer(reserved.unit_price.cents()),
            integer(reserved.total_cents(quantity)),
        ],
    )?;
    confirmed
        .rows()
        .next()
        .map_or(Err(Error::Corrupt("pending order vanished")), |row| {
            order_from_row(&row)
        })
}

/// Removes the pending order `id` whose stock could not be reserved (its key is free again).
fn abandon(conn: &Connection, id: i64) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM orders WHERE id = ?1 AND status = 'pending'",
        &[Value::Integer(id)],
    )?;
    Ok(())
}

/// A confirmed order; [`Error::NotFound`] otherwise.
pub fn get(conn: &Connection, id: OrderId) -> Result<Order, Error> {
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM orders WHERE id = ?1 AND status = 'confirmed'"),
        &[Value::Integer(id.get())],
    )?;
    result
        .rows()
        .next()
        .map_or(Err(Error::NotFound), |row| order_from_row(&row))
}

/// One page, oldest first, of the confirmed orders in `scope`, and their total count.
pub fn list(conn: &Connection, scope: &Scope, page: Page) -> Result<(u64, Vec<Order>), Error> {
    const WHERE: &str = "WHERE status = 'confirmed' AND (?1 IS NULL OR owner_id = ?1)";
    let owner = match scope {
        Scope::Everyone => Value::Null,
        Scope::Owner(id) => text(id),
    };
    let total = conn
        .execute(
            &format!("SELECT count(*) FROM orders {WHERE}"),
            std::slice::from_ref(&owner),
        )?
        .rows
        .first()
        .and_then(|row| row.get::<u64>(0))
        .ok_or(Error::Corrupt("count(*) returned no number"))?;
    let result = conn.execute(
        &format!("SELECT {COLUMNS} FROM orders {WHERE} ORDER BY id LIMIT ?2 OFFSET ?3"),
        &[owner, integer(page.limit.into()), integer(page.offset)],
    )?;
    let orders = result
        .rows()
        .map(|row| order_from_row(&row))
        .collect::<Result<_, _>>()?;
    Ok((total, orders))
}

fn order_from_row(row: &Row<'_>) -> Result<Order, Error> {
    let string = |name: &'static str| {
        row.get::<&str>(name)
            .map(str::to_owned)
            .ok_or(Error::Corrupt(name))
    };
    let number = |name: &'static str| row.get::<u64>(name).ok_or(Error::Corrupt(name));
    let unit_price_cents = number("unit_price_cents")?;
    let total_price_cents = number("total_cents")?;
    Ok(Order {
        id: row.get::<i64>("id").ok_or(Error::Corrupt("id"))?,
        user_id: string("owner_id")?,
        username: string("owner_name")?,
        product_id: row
            .get::<i64>("product_id")
            .ok_or(Error::Corrupt("product_id"))?,
        product_name: string("product_name")?,
        quantity: number("quantity")?,
        unit_price: decimal(unit_price_cents),
        unit_price_cents,
        total_price: decimal(total_price_cents),
        total_price_cents,
        customer_name: string("customer_name")?,
        status: string("status")?,
        created_at: row
            .get::<i64>("created_at")
            .and_then(rfc3339)
            .ok_or(Error::Corrupt("created_at"))?,
    })
}
