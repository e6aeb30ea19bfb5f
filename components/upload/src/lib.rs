//! `upload`: authenticated uploads streamed to the conversion runner, the caller's
//! jobs (status, list, download streamed, cancel, retry, events), and the key their
//! webhooks are signed with.
//!
//! The handler takes the raw `IncomingRequest` so an upload is never buffered: the
//! multipart body is parsed as it arrives, checked (token, size, extension and magic
//! bytes) before anything is sent on, and forwarded to the runner in batches.
#![allow(
    unsafe_code,
    reason = "spin-sdk's #[http_component] expands to unsafe export glue"
)]

mod config;
mod form;
mod jobs;
mod stream;
mod tus;
mod upload;
mod webhooks;

use spin_sdk::http::{
    IncomingRequest, Method, OutgoingResponse, Request, Response, ResponseOutparam,
};
use spin_sdk::http_component;
use spinmesh_api::edge::{AddressCharge, Edge};
use spinmesh_api::routes::as_strs;
use spinmesh_api::{ApiError, denylist, probe};
use spinmesh_upload::route::{self, Route};

use crate::config::Config;

/// Requests pass the app's edge (request id, CORS, rate limit, headers, log line) like
/// those of components served through `spinmesh_api::routes::RouteTable`.
#[http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    let head = request_head(&request);
    let edge = Edge::start(&head);
    let routes = route::table();
    let allowed = routes.allowed(head.path());
    let methods = allowed.as_deref().map(as_strs);
    match edge.intercept(&head, methods.as_deref(), AddressCharge::UpFront) {
        Ok(None) => {}
        Ok(Some(mut answer)) => {
            if head.path().starts_with("/api/uploads") && *head.method() == Method::Options {
                let max_size = Config::load()
                    .ok()
                    .map(|config| config.policy.max_file_bytes());
                for (name, value) in tus::discovery_headers(max_size) {
                    answer.set_header(name, value);
                }
            }
            return respond(&edge, response_out, answer).await;
        }
        Err(error) => return respond(&edge, response_out, error.into()).await,
    }
    // The runner itself is probed by the gateway directly.
    if let Some(response) =
        probe::answer(&head, || Config::load().and_then(|_| denylist::reachable()))
    {
        return respond(&edge, response_out, response).await;
    }
    match Route::parse(&routes, head.method(), head.path()) {
        Ok(Route::Upload) => {
            let response = upload::handle(&head, request.into_body_stream()).await;
            respond(&edge, response_out, response).await;
        }
        Ok(Route::Jobs(route)) => jobs::handle(&edge, &head, route, response_out).await,
        Ok(Route::Resumable(route)) => {
            let response = tus::handle(&head, route, request.into_body_stream()).await;
            respond(&edge, response_out, response).await;
        }
        Ok(Route::WebhookSecret) => {
            let response = webhooks::secret(&head).await;
            respond(&edge, response_out, response).await;
        }
        Err(error) => respond(&edge, response_out, error.into()).await,
    }
}

/// The request without its body, so the shared helpers of `spinmesh_api` (bearer
/// authentication, pagination) apply while the body stays a stream.
fn request_head(request: &IncomingRequest) -> Request {
    Request::builder()
        .method(request.method())
        .uri(request.uri())
        .headers(request.headers())
        .build()
}

/// Sends a buffered response.
async fn respond(edge: &Edge, response_out: ResponseOutparam, response: Response) {
    let mut response = edge.finish(response);
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        Ok(outgoing) => {
            if let Err(error) = response_out.set_with_body(outgoing, body).await {
                eprintln!("cannot send the response body: {error}");
            }
        }
        Err(error) => eprintln!("cannot build the response: {error}"),
    }
}

/// The error response for an upload refused by policy or malformed.
fn reject(error: spinmesh_media::Error) -> ApiError {
    ApiError::new(error.status(), error.code(), error.to_string())
}
