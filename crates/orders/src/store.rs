//! Orders in the `orders` SQLite database.
//!
//! An order is written in two steps around the stock reservation: [`claim`] inserts it
//! `pending` (taking the caller's idempotency key, so concurrent retries cannot both
//! reserve), then [`confirm`] records what was bought, or [`abandon`] removes it when the
//! reservation failed. Only confirmed orders are ever shown.
//!
//! A claim is a lease: the pending row carries the attempt that holds it and when it was
//! claimed. A request that died (its host killed) between claim and confirmation leaves
//! a pending row whose lease goes stale after the claim timeout; then a retry with the
//! same key takes it over ([`claim`]) or [`take_stale`] hands it to whoever reconciles.
//! Every later step is conditional on the attempt, so a request that lost its lease
//! changes nothing.

use serde::Serialize;
use spin_sdk::sqlite::{Connection, Row, Value};
use spinmesh_api::{
    Page,
    db::{self, integer, optional_text, text},
    time::rfc3339,
};
use spinmesh_catalog::{ProductId, Quantity, price::decimal};

use crate::saga::Ledger;
use crate::{Error, IdempotencyKey, NewOrder, OrderId, access::Scope, products::Reserved};

/// The label granted to `orders` alone in `spin.toml`.
pub const DATABASE: &str = "orders";

/// See [`spinmesh_api::db::open`]: append new steps; never edit one that has shipped.
const MIGRATIONS: &[&[&str]] = &[
    &[
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
    ],
    &[
        // The lease of a pending order (see the module's comment). Orders pending from
        // before this step have claimed_at 0: stale at once, as they should be.
        "ALTER TABLE orders ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX orders_pending ON orders (claimed_at) WHERE status = 'pending'",
    ],
];

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

/// The hold of one request on a pending order: every step after the claim names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub order_id: i64,
    pub attempt: i64,
}

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// A pending order now held by this request (new, or taken over from one that
    /// died): reserve its stock next.
    New(Lease),
    /// The key already created this order (a retry): answer with it, do nothing else.
    Replay(Box<Order>),
}

/// Opens the database, migrating it first if needed.
pub fn open() -> Result<Connection, Error> {
    db::open(DATABASE, MIGRATIONS)
}

/// A pending order whose lease went stale, now leased to the caller of [`take_stale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub lease: Lease,
    pub product_id: ProductId,
}

/// The [`Ledger`] of one caller's orders in the `orders` database, at `now` (Unix seconds).
/// A lease older than `claim_timeout` seconds is stale: it must be longer than a request
/// can take from its claim to its confirmation.
pub struct SqlLedger<'a> {
    pub conn: &'a Connection,
    pub owner: Owner<'a>,
    pub now: u64,
    pub claim_timeout: u64,
}

impl SqlLedger<'_> {
    /// Leases older than this (Unix seconds) are stale.
    fn stale_before(&self) -> u64 {
        self.now.saturating_sub(self.claim_timeout)
    }
}

impl Ledger for SqlLedger<'_> {
    fn claim(&self, key: Option<&IdempotencyKey>, order: &NewOrder) -> Result<Claim, Error> {
        claim(self, key, order)
    }

    fn confirm(
        &self,
        lease: Lease,
        reserved: &Reserved,
        quantity: Quantity,
    ) -> Result<Option<Order>, Error> {
        confirm(self.conn, lease, reserved, quantity)
    }

    fn abandon(&self, lease: Lease) -> Result<(), Error> {
        self.conn.execute(
            "DELETE FROM orders WHERE id = ?1 AND attempt = ?2 AND status = 'pending'",
            &lease_values(lease),
        )?;
        Ok(())
    }

    fn expire(&self, lease: Lease) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE orders SET claimed_at = 0
             WHERE id = ?1 AND attempt = ?2 AND status = 'pending'",
            &lease_values(lease),
        )?;
        Ok(())
    }

    fn take_stale(&self) -> Result<Option<Stale>, Error> {
        take_stale(self)
    }
}

fn lease_values(lease: Lease) -> [Value; 2] {
    [
        Value::Integer(lease.order_id),
        Value::Integer(lease.attempt),
    ]
}

/// Moves the lease of pending order `id` from `attempt` to the next one, claimed `now`;
/// `None` when someone else moved it first.
fn take_over(ledger: &SqlLedger<'_>, id: i64, attempt: i64) -> Result<Option<Lease>, Error> {
    let taken = ledger.conn.execute(
        "UPDATE orders SET attempt = attempt + 1, claimed_at = ?3
         WHERE id = ?1 AND attempt = ?2 AND status = 'pending'
         RETURNING attempt",
        &[
            Value::Integer(id),
            Value::Integer(attempt),
            integer(ledger.now),
        ],
    )?;
    Ok(taken
        .rows
        .first()
        .and_then(|row| row.get::<i64>(0))
        .map(|attempt| Lease {
            order_id: id,
            attempt,
        }))
}

/// Leases the oldest pending order (anyone's) whose lease is stale, if there is one.
fn take_stale(ledger: &SqlLedger<'_>) -> Result<Option<Stale>, Error> {
    let found = ledger.conn.execute(
        "SELECT id, attempt, product_id FROM orders
         WHERE status = 'pending' AND claimed_at <= ?1
         ORDER BY claimed_at LIMIT 1",
        &[integer(ledger.stale_before())],
    )?;
    let Some(row) = found.rows().next() else {
        return Ok(None);
    };
    let (Some(id), Some(attempt), Some(product_id)) = (
        row.get::<i64>("id"),
        row.get::<i64>("attempt"),
        row.get::<i64>("product_id"),
    ) else {
        return Err(Error::Corrupt("pending order"));
    };
    let product_id = ProductId::new(product_id).map_err(|_| Error::Corrupt("product_id"))?;
    Ok(take_over(ledger, id, attempt)?.map(|lease| Stale { lease, product_id }))
}

/// Inserts `order` as pending, or finds the order `key` already stands for:
/// [`Error::IdempotencyKeyReused`] when that one differs, [`Error::IdempotencyInProgress`]
/// while it is pending under a live lease; a stale lease is taken over. The unique
/// constraint decides between concurrent requests, the attempt between concurrent
/// takeovers.
fn claim(
    ledger: &SqlLedger<'_>,
    key: Option<&IdempotencyKey>,
    order: &NewOrder,
) -> Result<Claim, Error> {
    let inserted = ledger.conn.execute(
        "INSERT INTO orders (owner_id, owner_name, idempotency_key, product_id, quantity,
                             customer_name, status, created_at, claimed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)
         ON CONFLICT (owner_id, idempotency_key) DO NOTHING
         RETURNING id, attempt",
        &[
            text(ledger.owner.id),
            text(ledger.owner.name),
            optional_text(key.map(IdempotencyKey::as_str)),
            Value::Integer(order.product_id.get()),
            integer(order.quantity.get()),
            text(&order.customer_name),
            integer(ledger.now),
        ],
    )?;
    if let Some(row) = inserted.rows.first() {
        let (Some(order_id), Some(attempt)) = (row.get::<i64>(0), row.get::<i64>(1)) else {
            return Err(Error::Corrupt("inserted order"));
        };
        return Ok(Claim::New(Lease { order_id, attempt }));
    }
    let key = key.ok_or(Error::Corrupt("an order without a key conflicted"))?;
    let existing = ledger.conn.execute(
        &format!(
            "SELECT {COLUMNS}, claimed_at, attempt FROM orders
             WHERE owner_id = ?1 AND idempotency_key = ?2"
        ),
        &[text(ledger.owner.id), text(key.as_str())],
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
        return Err(Error::IdempotencyKeyReused);
    }
    if row.get::<&str>("status") != Some("pending") {
        return order_from_row(&row).map(|order| Claim::Replay(Box::new(order)));
    }
    let (Some(id), Some(claimed_at), Some(attempt)) = (
        row.get::<i64>("id"),
        row.get::<u64>("claimed_at"),
        row.get::<i64>("attempt"),
    ) else {
        return Err(Error::Corrupt("pending order"));
    };
    if claimed_at > ledger.stale_before() {
        return Err(Error::IdempotencyInProgress);
    }
    take_over(ledger, id, attempt)?
        .map(Claim::New)
        .ok_or(Error::IdempotencyInProgress)
}

/// Records what the pending order bought, making it visible; `None` when `lease` no
/// longer holds it.
fn confirm(
    conn: &Connection,
    lease: Lease,
    reserved: &Reserved,
    quantity: Quantity,
) -> Result<Option<Order>, Error> {
    let confirmed = conn.execute(
        &format!(
            "UPDATE orders SET status = 'confirmed', product_name = ?3, unit_price_cents = ?4,
                               total_cents = ?5
             WHERE id = ?1 AND attempt = ?2 AND status = 'pending'
             RETURNING {COLUMNS}"
        ),
        &[
            Value::Integer(lease.order_id),
            Value::Integer(lease.attempt),
            text(&reserved.product_name),
            integer(reserved.unit_price.cents()),
            integer(reserved.total_cents(quantity)),
        ],
    )?;
    confirmed
        .rows()
        .next()
        .map(|row| order_from_row(&row))
        .transpose()
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
