//! `orders`: orders in the `orders` database. Anyone signed in places orders and sees
//! their own; admins see all. Placing one reserves the stock at `products` with the
//! service's own credentials and records the price of that moment.
//!
//! An order never exists without its stock, nor stock stay taken without its order: the
//! order is claimed `pending` first (taking the `Idempotency-Key`), then stock is
//! reserved, then the order is confirmed; a failed step undoes the earlier ones.
#![allow(unsafe_code, reason = "spin-sdk's #[http_component] expands to unsafe export glue")]

mod catalog;

use serde::Deserialize;
use spin_sdk::http::{Params, Request, Response, Router};
use spin_sdk::http_component;
use spinmesh_api::{
    ApiResult, DEFAULT_MAX_JSON_BODY, Page, caller, fallback, json, paginated, param,
    parse_json, probe,
};
use spinmesh_authn::now_unix;
use spinmesh_orders::store::{self, Claim, Owner};
use spinmesh_orders::{Error, IdempotencyKey, NewOrder, Order, OrderId, access, products};

use crate::catalog::Catalog;

const COLLECTION: [&str; 2] = ["/api/orders", "/orders"];
const ITEM: &str = "/api/orders/:id";
const SEED_CREATE: &str = "/create-order";

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, || probe::token_store_ready(store::open())) {
        return response;
    }
    let mut router = Router::new();
    for route in COLLECTION {
        router.get(route, list);
        router.post_async(route, create);
    }
    router.get(ITEM, read);
    router.post_async(SEED_CREATE, create);
    let collection: &[&str] = &["GET", "POST"];
    let allowed = [
        (COLLECTION[0], collection),
        (COLLECTION[1], collection),
        (ITEM, &["GET"][..]),
        (SEED_CREATE, &["POST"][..]),
    ];
    fallback::serve(router, &allowed, request)
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
    let owner = Owner {
        id: &claims.sub,
        name: &claims.username,
    };
    let id = match store::claim(&conn, &owner, key.as_ref(), &order, now_unix())? {
        Claim::Replay(existing) => return Ok(created(&existing, true)),
        Claim::New(id) => id,
    };
    let reference = products::reference(id);
    let reserved = match catalog.reserve(&order, &reference).await {
        Ok(reserved) => reserved,
        Err(error) => {
            // Without an answer, products may still have taken the stock.
            if matches!(error, Error::ProductsUnavailable(_)) {
                catalog.release(&order, &reference).await;
            }
            store::abandon(&conn, id)?;
            return Err(error.into());
        }
    };
    match store::confirm(&conn, id, &reserved, order.quantity) {
        Ok(confirmed) => Ok(created(&confirmed, false)),
        Err(error) => {
            catalog.release(&order, &reference).await;
            if let Err(cleanup) = store::abandon(&conn, id) {
                eprintln!("abandoning order {id}: {cleanup}");
            }
            Err(error.into())
        }
    }
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
