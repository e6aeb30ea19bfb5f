//! Timeouts in the guest, on the WASI monotonic clock through spin-sdk's executor.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, select};
use spin_executor::CancelOnDropToken;
use wasi::clocks::monotonic_clock;

use crate::Error;

/// `future`'s output, or [`Error::Timeout`] when `limit` passes first (`future` is then
/// dropped, which cancels an outbound call).
pub async fn within<T>(future: impl Future<Output = T>, limit: Duration) -> Result<T, Error> {
    match select(pin!(future), pin!(sleep(limit))).await {
        Either::Left((value, _)) => Ok(value),
        Either::Right(((), _)) => Err(Error::Timeout(limit)),
    }
}

/// Completes after `duration`.
fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep {
        deadline: monotonic_clock::now().saturating_add(nanos),
        registration: None,
    }
}

struct Sleep {
    deadline: monotonic_clock::Instant,
    /// Dropping it unregisters the pollable, e.g. when the call won the race.
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
