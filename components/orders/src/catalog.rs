//! Calls to `products` (stock reservations) and to `login` (the service token), both by
//! Spin service chaining, never through the public listener.

use serde_json::json;
use spin_sdk::http::{Method, Request, Response, send};
use spin_sdk::key_value::Store;
use spinmesh_api::ApiResult;
use spinmesh_api::config::var;
use spinmesh_authn::now_unix;
use spinmesh_orders::products::{Outcome, Reserved, reservation_outcome};
use spinmesh_orders::service_token::CachedToken;
use spinmesh_orders::{Error, NewOrder};

const PRODUCTS: &str = "http://products.spin.internal";
const LOGIN: &str = "http://login.spin.internal";
/// Granted to `orders` alone: whoever reads the token acts as the orders service.
const TOKEN_STORE: &str = "orders_cache";
const TOKEN_KEY: &str = "service-token";

/// The orders service account (`orders_client_id`/`orders_client_secret` variables).
pub struct Catalog {
    client_id: String,
    client_secret: String,
}

impl Catalog {
    pub fn from_variables() -> ApiResult<Self> {
        Ok(Self {
            client_id: var("orders_client_id")?,
            client_secret: var("orders_client_secret")?,
        })
    }

    /// Reserves `order`'s stock under `reference`. A refused token (revoked, keys rotated)
    /// is replaced once.
    pub async fn reserve(&self, order: &NewOrder, reference: &str) -> Result<Reserved, Error> {
        let body = json!({ "quantity": order.quantity.get(), "reference": reference });
        let path = format!("/api/products/{}/reservations", order.product_id.get());
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let response = call(
                products_request(Method::Post, &path, &token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .build(),
            )
            .await?;
            match reservation_outcome(order, *response.status(), response.body()) {
                Outcome::Reserved(reserved) => return Ok(reserved),
                Outcome::TokenRefused if !renew => renew = true,
                Outcome::TokenRefused => {
                    return Err(Error::ProductsUnavailable(
                        "products refused a fresh service token".into(),
                    ));
                }
                Outcome::Refused(error) => return Err(error),
            }
        }
    }

    /// Gives back the stock of `reference`, if it was taken: the compensation when the
    /// order cannot be completed. Best effort; what fails is logged.
    pub async fn release(&self, order: &NewOrder, reference: &str) {
        let path = format!(
            "/api/products/{}/reservations/{reference}",
            order.product_id.get()
        );
        let outcome = match self.token(false).await {
            Ok(token) => call(products_request(Method::Delete, &path, &token).build())
                .await
                .map(|response| *response.status()),
            Err(error) => Err(error),
        };
        match outcome {
            // 404: nothing was reserved.
            Ok(200 | 404) => {}
            Ok(status) => eprintln!("releasing {reference}: products answered {status}"),
            Err(error) => eprintln!("releasing {reference}: {error}"),
        }
    }

    /// The cached service token, or a new one from `login` when there is none, it is about
    /// to expire or `renew` is set. A broken cache only costs a token request.
    async fn token(&self, renew: bool) -> Result<String, Error> {
        let now = now_unix();
        let store = Store::open(TOKEN_STORE)
            .map_err(|error| eprintln!("service token cache: {error:?}"))
            .ok();
        if !renew {
            let cached = store
                .as_ref()
                .and_then(|store| store.get_json::<CachedToken>(TOKEN_KEY).ok().flatten());
            if let Some(cached) = cached.filter(|cached| cached.usable(now)) {
                return Ok(cached.token);
            }
        }
        let mut request = Request::builder();
        request
            .method(Method::Post)
            .uri(format!("{LOGIN}/api/token"))
            .header("content-type", "application/json")
            .body(
                json!({
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                })
                .to_string(),
            );
        let response = call(request.build()).await?;
        let token = match *response.status() {
            200 => CachedToken::from_reply(response.body(), now),
            _ => None,
        }
        .ok_or_else(|| {
            Error::ProductsUnavailable(format!(
                "no service token: login answered {}",
                response.status()
            ))
        })?;
        if let Some(store) = store
            && let Err(error) = store.set_json(TOKEN_KEY, &token)
        {
            eprintln!("service token cache: {error:?}");
        }
        Ok(token.token)
    }
}

fn products_request(method: Method, path: &str, token: &str) -> spin_sdk::http::RequestBuilder {
    let mut request = Request::builder();
    request
        .method(method)
        .uri(format!("{PRODUCTS}{path}"))
        .header("authorization", format!("Bearer {token}"));
    request
}

/// Sends `request`; not getting an answer (refused, unreachable, not granted) is products
/// or login being unavailable.
async fn call(request: Request) -> Result<Response, Error> {
    let uri = request.uri().to_owned();
    send(request)
        .await
        .map_err(|error| Error::ProductsUnavailable(format!("{uri}: {error}")))
}
