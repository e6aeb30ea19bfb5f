//! `orders`: orders in the `orders` database. Anyone signed in places orders and sees
//! their own; admins see all. Placing one reserves the stock at `products` with the
//! service's own credentials and records the price of that moment.
//!
//! This crate is HTTP glue: placing an order (claim, reserve, confirm and the
//! compensations) is `spinmesh_orders::saga`; `catalog` only carries its calls.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

mod catalog;

use serde::Deserialize;
use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_api::config::positive_u64;
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{
    ApiResult, DEFAULT_MAX_JSON_BODY, Page, caller, json, paginated, param, parse_json, probe,
};
use spinmesh_authn::now_unix;
use spinmesh_orders::saga::OrderFlow;
use spinmesh_orders::service_token::KvTokenCache;
use spinmesh_orders::store::{self, Owner, SqlLedger};
use spinmesh_orders::{Error, IdempotencyKey, NewOrder, Order, OrderId, access};

use crate::catalog::Catalog;

const COLLECTION: [&str; 2] = ["/api/orders", "/orders"];
const ITEM: &str = "/api/orders/:id";
const SEED_CREATE: &str = "/create-order";

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, || probe::token_store_ready(store::open())) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes
        .add(Method::Get, &COLLECTION, list)
        .add_async(Method::Post, &COLLECTION, create)
        .add(Method::Get, &[ITEM], read)
        .add_async(Method::Post, &[SEED_CREATE], create);
    routes.serve(request)
}

/// The seed's body. The price is not the caller's to say.
#[derive(Deserialize)]
struct CreateRequest {
    product_id: i64,
    quantity: u64,
    customer_name: Option<String>,
}

/// `201` with the order. With an `Idempotency-Key`, a retry gets the first order again
/// (header `Idempotent-Replayed: true`) and nothing new is created.
async fn create(request: Request, _params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let body: CreateRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let order = NewOrder::new(
        body.product_id,
        body.quantity,
        body.customer_name.as_deref(),
        &claims.username,
    )?;
    let key = request
        .header("idempotency-key")
        .map(|value| value.as_str().ok_or(Error::InvalidIdempotencyKey))
        .transpose()?
        .map(IdempotencyKey::new)
        .transpose()?;
    let catalog = Catalog::from_variables()?;
    let conn = store::open()?;
    let now = now_unix();
    let ledger = SqlLedger {
        conn: &conn,
        owner: Owner {
            id: &claims.sub,
            name: &claims.username,
        },
        now,
        claim_timeout: positive_u64("order_claim_timeout_secs")?,
    };
    let flow = OrderFlow {
        products: &catalog,
        tokens: &KvTokenCache::open(),
        now,
    };
    let placed = flow.place(&ledger, key.as_ref(), &order).await?;
    Ok(created(&placed.order, placed.replayed))
}

fn created(order: &Order, replayed: bool) -> Response {
    let mut response = json(201, order);
    response.set_header("location", format!("/api/orders/{}", order.id));
    if replayed {
        response.set_header("idempotent-replayed", "true");
    }
    response
}

/// The caller's orders (everyone's for an admin), oldest first.
fn list(request: Request, _params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let page = Page::from_request(&request)?;
    let (total, orders) = store::list(&store::open()?, &access::list_scope(&claims), page)?;
    Ok(paginated(&request, page, total, &orders))
}

fn read(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let id = OrderId::parse(param(&params, "id")?)?;
    let order = store::get(&store::open()?, id)?;
    access::ensure_may_read(&claims, &order.user_id)?;
    Ok(json(200, &order))
}
