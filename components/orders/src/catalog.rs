//! The order flow's calls to `products` (stock reservations) and to `login` (the service
//! token), by Spin service chaining, never through the public listener. Only sending and
//! receiving happens here; `spinmesh_orders::saga` decides what the answers mean.

use std::time::Duration;

use serde_json::json;
use spin_sdk::http::{Method, Request};
use spinmesh_api::ApiResult;
use spinmesh_api::config::var;
use spinmesh_orders::saga::{Products, Reply};
use spinmesh_orders::{Error, NewOrder, ProductId};
use spinmesh_outbound::{json_request, request, send};

const PRODUCTS: &str = "http://products.spin.internal";
const LOGIN: &str = "http://login.spin.internal";
/// How long one call may take. Products and login answer from local stores in
/// milliseconds; past this, they are as good as down. An order makes at most four calls
/// between its claim and its confirmation, so `order_claim_timeout_secs` must stay
/// above four of these.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
        call(json_request(
            Method::Post,
            &format!("{LOGIN}/api/token"),
            None,
            &body,
        ))
        .await
    }

    async fn reserve(
        &self,
        token: &str,
        order: &NewOrder,
        reference: &str,
    ) -> Result<Reply, Error> {
        let body = json!({ "quantity": order.quantity.get(), "reference": reference });
        let url = format!(
            "{PRODUCTS}/api/products/{}/reservations",
            order.product_id.get()
        );
        call(json_request(Method::Post, &url, Some(token), &body)).await
    }

    async fn release(
        &self,
        token: &str,
        product: ProductId,
        reference: &str,
    ) -> Result<Reply, Error> {
        let url = format!(
            "{PRODUCTS}/api/products/{}/reservations/{reference}",
            product.get()
        );
        call(request(Method::Delete, &url, Some(token)).build()).await
    }
}

/// Sends `request`; not getting an answer in time (refused, unreachable, not granted,
/// hung) is products or login being unavailable.
async fn call(request: Request) -> Result<Reply, Error> {
    let uri = request.uri().to_owned();
    let response = send(request, CALL_TIMEOUT)
        .await
        .map_err(|error| Error::ProductsUnavailable(format!("{uri}: {error}")))?;
    Ok(Reply {
        status: *response.status(),
        body: response.into_body(),
    })
}
