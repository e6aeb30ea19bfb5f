//! `GET /api/webhooks/secret`: the key the caller's webhooks are signed with. The runner
//! derives it from its secret and the caller's id, so it is the caller's alone; this
//! component only authenticates and asks.

use spin_sdk::http::{Request, Response};
use spinmesh_api::authn::now_unix;
use spinmesh_api::{ApiError, authenticate, json};

use crate::config::Config;

pub async fn secret(head: &Request) -> Response {
    answer(head).await.unwrap_or_else(Into::into)
}

async fn answer(head: &Request) -> Result<Response, ApiError> {
    let config = Config::load()?;
    let claims = authenticate(head, &config.verifier, now_unix())?;
    let secret = config.runner.webhook_secret(&claims.sub).await?;
    let mut response = json(200, &secret);
    // A credential: kept out of caches.
    response.set_header("cache-control", "no-store");
    Ok(response)
}
