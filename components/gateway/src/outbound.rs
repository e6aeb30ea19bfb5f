//! Requests from the gateway to components and the runner, each bounded by a timeout so
//! one hung dependency cannot hold a health check or a scrape.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, select};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{Method, Request, Response, send};
use spinmesh_api::ApiError;
use spinmesh_api::config::positive_u64;
use spinmesh_health::Outcome;
use wasi::clocks::monotonic_clock;

/// How long the gateway waits for an answer, from the `gateway_timeout_ms` variable.
pub fn timeout() -> Result<Duration, ApiError> {
    Ok(Duration::from_millis(positive_u64("gateway_timeout_ms")?))
}

/// A GET with an optional bearer token.
pub fn get(url: &str, bearer: Option<&str>) -> Request {
    let mut builder = Request::builder();
    builder.method(Method::Get).uri(url);
    if let Some(token) = bearer {
        builder.header("authorization", format!("Bearer {token}"));
    }
    builder.build()
}

/// Sends `request`; `Err` when it fails or `limit` passes first.
pub async fn fetch(request: Request, limit: Duration) -> Result<Response, Outcome> {
    match with_timeout(send::<_, Response>(request), limit).await {
        Some(Ok(response)) => Ok(response),
        Some(Err(_)) => Err(Outcome::Unreachable),
        None => Err(Outcome::Timeout),
    }
}

/// `None` when `limit` passes before `future` completes (which is then dropped).
async fn with_timeout<T>(future: impl Future<Output = T>, limit: Duration) -> Option<T> {
    match select(pin!(future), pin!(sleep(limit))).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}

/// Completes after `duration`, on the WASI monotonic clock through spin-sdk's executor.
fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline: monotonic_clock::now().saturating_add(nanos),
        registration: None,
    }
}

struct Sleep {
    deadline: monotonic_clock::Instant,
    /// Dropping it unregisters the pollable, e.g. when the request won the race.
    registration: Option<CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        if pollable.ready() {
            return Poll::Ready(());
        }
        let token = spin_executor::push_waker_and_get_token(pollable, context.waker().clone());
        self.registration = Some(token.into());
        Poll::Pending
    }
}
