//! The order flow's calls to `products` (stock reservations) and to `login` (the service
//! token), by Spin service chaining, never through the public listener. Only sending and
//! receiving happens here; `spinmesh_orders::saga` decides what the answers mean.

use serde_json::json;
use spin_sdk::http::{Method, Request, RequestBuilder, Response, send};
use spinmesh_api::ApiResult;
use spinmesh_api::config::var;
use spinmesh_orders::saga::{Products, Reply};
use spinmesh_orders::{Error, NewOrder};

const PRODUCTS: &str = "http://products.spin.internal";
const LOGIN: &str = "http://login.spin.internal";

/// Products and login, called as the orders service account
/// (`orders_client_id`/`orders_client_secret` variables).
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
}

impl Products for Catalog {
    async fn request_token(&self) -> Result<Reply, Error> {
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        });
        let mut request = Request::builder();
        request
            .method(Method::Post)
            .uri(format!("{LOGIN}/api/token"))
            .header("content-type", "application/json")
            .body(body.to_string());
        call(request.build()).await
    }

    async fn reserve(&self, token: &str, order: &NewOrder, reference: &str) -> Result<Reply, Error> {
        let body = json!({ "quantity": order.quantity.get(), "reference": reference });
        let path = format!("/api/products/{}/reservations", order.product_id.get());
        let request = products_request(Method::Post, &path, token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .build();
        call(request).await
    }

    async fn release(&self, token: &str, order: &NewOrder, reference: &str) -> Result<Reply, Error> {
        let path = format!(
            "/api/products/{}/reservations/{reference}",
            order.product_id.get()
        );
        call(products_request(Method::Delete, &path, token).build()).await
    }
}

fn products_request(method: Method, path: &str, token: &str) -> RequestBuilder {
    let mut request = Request::builder();
    request
        .method(method)
        .uri(format!("{PRODUCTS}{path}"))
        .header("authorization", format!("Bearer {token}"));
    request
}

/// Sends `request`; not getting an answer (refused, unreachable, not granted) is products
/// or login being unavailable.
async fn call(request: Request) -> Result<Reply, Error> {
    let uri = request.uri().to_owned();
    let response: Response = send(request)
        .await
        .map_err(|error| Error::ProductsUnavailable(format!("{uri}: {error}")))?;
    Ok(Reply {
        status: *response.status(),
        body: response.into_body(),
    })
}
