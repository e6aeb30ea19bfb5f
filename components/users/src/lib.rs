//! `users`: profiles, one per account, in the `users` database. Everyone signed in reads
//! them (emails only their own, admins all); a profile is created by its own account and changed or deleted by its owner or
//! an admin (rules in `spinmesh_profiles::access`).
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Method, Params, Request, Response};
use spin_sdk::http_component;
use spinmesh_api::routes::RouteTable;
use spinmesh_api::{
    ApiResult, DEFAULT_MAX_JSON_BODY, Page, caller, json, paginated, param, parse_json, probe,
};
use spinmesh_authn::now_unix;
use spinmesh_profiles::{NewProfile, ProfileUpdate, UserId, access, store};

/// Canonical routes first, then the seed's.
const COLLECTION: [&str; 2] = ["/api/users", "/users"];
/// `:id` is a user id or `me`.
const ITEM: [&str; 2] = ["/api/users/:id", "/users/:id"];

#[http_component]
fn handle(request: Request) -> Response {
    if let Some(response) = probe::answer(&request, || probe::token_store_ready(store::open())) {
        return response;
    }
    let mut routes = RouteTable::new();
    routes
        .add(Method::Get, &COLLECTION, list)
        .add(Method::Post, &COLLECTION, create)
        .add(Method::Get, &ITEM, read)
        .add(Method::Put, &ITEM, update)
        .add(Method::Patch, &ITEM, update)
        .add(Method::Delete, &ITEM, delete);
    routes.serve(request)
}

/// The seed's body: `user_id` and `username` are optional here (the token says who the
/// caller is) and, when sent, must name the caller.
#[derive(Deserialize)]
struct CreateRequest {
    user_id: Option<String>,
    username: Option<String>,
    email: String,
    full_name: Option<String>,
    bio: Option<String>,
}

fn create(request: Request, _params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let body: CreateRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let owner = access::creator(&claims, body.user_id.as_deref(), body.username.as_deref())?;
    let profile = NewProfile::new(body.email, body.full_name, body.bio)?;
    store::create(&store::open()?, &owner, &profile, now_unix())?;
    // 200, not 201: the seed's documented status.
    Ok(done(&owner.user_id, "Profile created successfully"))
}

fn list(request: Request, _params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let page = Page::from_request(&request)?;
    let (total, profiles) = store::list(&store::open()?, page)?;
    let profiles: Vec<_> = profiles
        .into_iter()
        .map(|profile| access::visible_to(&claims, profile))
        .collect();
    Ok(paginated(&request, page, total, &profiles))
}

fn read(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let id = access::target(&claims, param(&params, "id")?)?;
    let profile = store::get(&store::open()?, &id)?;
    Ok(json(200, &access::visible_to(&claims, profile)))
}

/// Only these fields change; anything else (e.g. `email`) is refused rather than ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    full_name: Option<String>,
    bio: Option<String>,
}

/// PUT and PATCH alike: a partial update, as in the seed.
fn update(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let id = access::target(&claims, param(&params, "id")?)?;
    access::ensure_may_modify(&claims, &id)?;
    let body: UpdateRequest = parse_json(&request, DEFAULT_MAX_JSON_BODY)?;
    let update = ProfileUpdate::new(body.full_name, body.bio)?;
    store::update(&store::open()?, &id, &update, now_unix())?;
    Ok(done(&id, "Profile updated successfully"))
}

fn delete(request: Request, params: Params) -> ApiResult<Response> {
    let claims = caller(&request)?;
    let id = access::target(&claims, param(&params, "id")?)?;
    access::ensure_may_modify(&claims, &id)?;
    store::delete(&store::open()?, &id)?;
    Ok(done(&id, "Profile deleted successfully"))
}

/// The seed's `{user_id, message}` answer to a write.
fn done(id: &UserId, message: &str) -> Response {
    json(200, &json!({ "user_id": id.as_str(), "message": message }))
}
