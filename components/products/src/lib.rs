//! `products`: the catalogue in the `catalog` database. Everyone signed in reads it;
//! admins and services add products; admins change and delete them; services (orders)
//! reserve stock and release it (rules in `spinmesh_catalog::access`).
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{
    ApiError, ApiResult, DEFAULT_MAX_JSON_BODY, Page, caller, json, paginated, param, parse_json,
    probe,
};
use spinmesh_authn::now_unix;
use spinmesh_catalog::store::{self, Reserved};
use spinmesh_catalog::{
    Error, ListFilter, NewProduct, ProductId, ProductUpdate, Quantity, Reference, access,
};

/// Canonical routes first, then the seed's.
const COLLECTION: [&str; 2] = ["/api/products", "/products"];
const ITEM: &str = "/api/products/:id";
const CATEGORY: [&str; 2] = [
    "/api/products/category/:category",
    "/products/category/:category",
];
const SEED_CREATE: &str = "/create-product";
const SEED_UPDATE: &str = "/update-product/:id";
/// Service-only: `orders` takes and gives back stock here.
const RESERVATIONS: &str = "/api/products/:id/reservations";
const RESERVATION: &str = "/api/products/:id/reservations/:reference";

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, || probe::token_store_ready(store::open())) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes
        .add(Method::Get, &COLLECTION, list)
        .add(Method::Post, &COLLECTION, create)
        .add(Method::Get, &[ITEM], read)
        .add(Method::Put, &[ITEM, SEED_UPDATE], update)
        .add(Method::Patch, &[ITEM], update)
        .add(Method::Delete, &[ITEM], delete)
        .add(Method::Get, &CATEGORY, list_category)
        .add(Method::Post, &[SEED_CREATE], create)
        .add(Method::Post, &[RESERVATIONS], reserve)
        .add(Method::Delete, &[RESERVATION], release);
    routes.serve(request)
}

/// The list filters; `limit`/`offset` are read by [`Page`].
#[derive(Deserialize)]
struct ListQuery {
    category: Option<String>,
    q: Option<String>,
}

fn list_query(request: &Request) -> ApiResult<ListQuery> {
    serde_urlencoded::from_str(request.query())
        .map_err(|_| ApiError::invalid_request("Malformed query string"))
}

fn list(request: Request, _params: Params) -> ApiResult<Response> {
    caller(&request)?;
    let query = list_query(&request)?;
    let filter = ListFilter::new(query.category.as_deref(), query.q.as_deref())?;
    respond_list(&request, &filter)
}

/// The category comes from the path (percent-encoded there); `q` still applies.
fn list_category(request: Request, params: Params) -> ApiResult<Response> {
    caller(&request)?;
    let category = percent_decode_str(param(&params, "category")?)
        .decode_utf8()
        .map_err(|_| Error::InvalidCategory)?;
    let query = list_query(&request)?;
    let filter = ListFilter::new(Some(&category), query.q.as_deref())?;
    if filter.category.is_none() {
        return Err(Error::InvalidCategory.into());
    }
    respond_list(&request, &filter)
}

fn respond_list(request: &Request, filter: &ListFilter) -> ApiResult<Response> {
    let page = Page::from_request(request)?;
    let (total, products) = store::list(&store::open()?, filter, page)?;
    Ok(paginated(request, page, total, &products))
}

fn read(request: Request, params: Params) -> ApiResult<Response> {
    caller(&request)?;
    let id = ProductId::parse(param(&params, "id")?)?;
    Ok(json(200, &store::get(&store::open()?, id)?))
}

/// `price` is a JSON number or a decimal string (the seed sends `"50000"`).
#[derive(Deserialize)]
struct CreateRequest {
    name: String,
    price: Value,
    category: String,
    stock: Option<u64>,
    description: Option<String>,
}

fn create(request: Request, _params: Params) -> ApiResult<Response> {
    access::ensure_may_create(&caller(&request)?)?;
    let body: CreateRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let product = NewProduct::new(
        &body.name,
        &body.price,
        &body.category,
        body.stock,
        body.description.as_deref(),
    )?;
    let created = store::create(&store::open()?, &product, now_unix())?;
    let mut response = json(201, &created);
    response.set_header("location", format!("/api/products/{}", created.id));
    Ok(response)
}

/// Only these fields change; anything else is refused rather than ignored. `null` leaves
/// a field as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    name: Option<String>,
    price: Option<Value>,
    category: Option<String>,
    stock: Option<u64>,
    description: Option<String>,
}

/// PUT and PATCH alike: a partial update (the seed's `PUT /update-product/:id {price}`).
fn update(request: Request, params: Params) -> ApiResult<Response> {
    access::ensure_may_modify(&caller(&request)?)?;
    let id = ProductId::parse(param(&params, "id")?)?;
    let body: UpdateRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let update = ProductUpdate::new(
        body.name.as_deref(),
        body.price.as_ref(),
        body.category.as_deref(),
        body.stock,
        body.description.as_deref(),
    )?;
    Ok(json(
        200,
        &store::update(&store::open()?, id, &update, now_unix())?,
    ))
}

fn delete(request: Request, params: Params) -> ApiResult<Response> {
    access::ensure_may_modify(&caller(&request)?)?;
    let id = ProductId::parse(param(&params, "id")?)?;
    store::delete(&store::open()?, id)?;
    Ok(json(
        200,
        &json!({ "id": id.get(), "message": "Product deleted successfully" }),
    ))
}

#[derive(Deserialize)]
struct ReserveRequest {
    quantity: u64,
    reference: String,
}

/// `201` with the reservation; `200` with the same one when the reference was already
/// reserved by an identical request (a retry).
fn reserve(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    access::ensure_may_reserve(&claims)?;
    let id = ProductId::parse(param(&params, "id")?)?;
    let body: ReserveRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let quantity = Quantity::new(body.quantity)?;
    let reference = Reference::new(&body.reference)?;
    let (reservation, reserved) = store::reserve(
        &store::open()?,
        &claims.sub,
        &reference,
        id,
        quantity,
        now_unix(),
    )?;
    let status = match reserved {
        Reserved::New => 201,
        Reserved::Existing => 200,
    };
    Ok(json(status, &reservation))
}

/// Gives the stock back: the compensation when the order cannot be stored.
fn release(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    access::ensure_may_reserve(&claims)?;
    let id = ProductId::parse(param(&params, "id")?)?;
    let reference = Reference::new(param(&params, "reference")?)?;
    let released = store::release(&store::open()?, &claims.sub, &reference, id, now_unix())?;
    Ok(json(200, &released))
}
