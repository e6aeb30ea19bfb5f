//! Request bodies under the host's bounds: a size limit and a read timeout.
//! A body that breaks one ends in an error for whoever reads it (the host or
//! a component), and the reason is kept so the host can answer 413 or 408
//! whatever the component made of the error.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Why the host stopped reading a request body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BodyFailure {
    /// More than `limit` bytes arrived or were announced.
    TooLarge { limit: u64 },
    /// The client sent nothing for longer than the read timeout.
    Stalled,
    /// The client's connection failed mid-body.
    Aborted,
}

impl BodyFailure {
    /// What a component reading the body sees.
    fn to_error(self) -> wasmtime_wasi_http::Error {
        match self {
            BodyFailure::TooLarge { limit } => {
                wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
            }
            BodyFailure::Stalled => wasmtime_wasi_http::Error::ConnectionReadTimeout,
            BodyFailure::Aborted => wasmtime_wasi_http::Error::ConnectionTerminated,
        }
    }
}

/// Where a guarded body records why it failed, for whoever answers the request.
#[derive(Clone, Default)]
pub struct BodyWatch(Arc<OnceLock<BodyFailure>>);

impl BodyWatch {
    pub fn failure(&self) -> Option<BodyFailure> {
        self.0.get().copied()
    }

    /// The first failure is the one reported.
    fn record(&self, failure: BodyFailure) -> BodyFailure {
        *self.0.get_or_init(|| failure)
    }
}

/// A body cut off once it passes `limit` bytes, or once the client pauses for
/// longer than `read_timeout` while it is being read.
pub struct GuardedBody<B> {
    inner: B,
    limit: u64,
    received: u64,
    read_timeout: Duration,
    /// Runs only while the reader waits for the client.
    pause: Option<Pin<Box<Sleep>>>,
    watch: BodyWatch,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, limit: u64, read_timeout: Duration, watch: BodyWatch) -> Self {
        GuardedBody {
            inner,
            limit,
            received: 0,
            read_timeout,
            pause: None,
            watch,
        }
    }

    fn fail(
        &mut self,
        failure: BodyFailure,
    ) -> Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        self.pause = None;
        Poll::Ready(Some(Err(self.watch.record(failure).to_error())))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // Once failed, it stays failed: a reader must never mistake a cut-off body for a whole one.
        if let Some(failure) = this.watch.failure() {
            return this.fail(failure);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.pause = None;
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        return this.fail(BodyFailure::TooLarge { limit: this.limit });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => this.fail(BodyFailure::Aborted),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.read_timeout;
                let pause = this
                    .pause
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if pause.as_mut().poll(cx).is_ready() {
                    return this.fail(BodyFailure::Stalled);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.watch.failure().is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole body of at most `limit` bytes that must arrive within `timeout`.
pub async fn read_to_end<B>(body: B, limit: u64, timeout: Duration) -> Result<Bytes, BodyFailure>
where
    B: Body<Data = Bytes> + Unpin,
{
    let watch = BodyWatch::default();
    let guarded = GuardedBody::new(body, limit, timeout, watch.clone());
    match tokio::time::timeout(timeout, guarded.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(watch.failure().unwrap_or(BodyFailure::Aborted)),
        Err(_) => Err(BodyFailure::Stalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    /// A body of `pieces`, then silence.
    fn trickle(
        pieces: &[&'static [u8]],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = pieces
            .iter()
            .map(|piece| Ok(Frame::data(Bytes::from_static(piece))))
            .collect();
        StreamBody::new(futures::stream::iter(frames).chain(futures::stream::pending()))
    }

    use futures::StreamExt;

    #[tokio::test]
    async fn whole_bodies_within_the_limit_are_read() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(
            read_to_end(body, 10, Duration::from_secs(5)).await.unwrap(),
            &b"0123456789"[..]
        );
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_cut_off() {
        let body = trickle(&[b"01234", b"56789", b"x"]);
        assert_eq!(
            read_to_end(body, 10, Duration::from_secs(5)).await,
            Err(BodyFailure::TooLarge { limit: 10 })
        );
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_and_stays_failed() {
        let watch = BodyWatch::default();
        let mut body = GuardedBody::new(
            trickle(&[b"ab"]),
            100,
            Duration::from_millis(200),
            watch.clone(),
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            &b"ab"[..]
        );
        assert!(matches!(
            body.frame().await,
            Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout))
        ));
        assert_eq!(watch.failure(), Some(BodyFailure::Stalled));
        assert!(body.frame().await.unwrap().is_err());
        assert!(!body.is_end_stream());
    }
}
