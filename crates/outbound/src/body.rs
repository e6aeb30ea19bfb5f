//! Streamed outgoing bodies, written in the sizes the caller chooses.

use std::future::poll_fn;
use std::task::Poll;

use spin_executor::{CancelOnDropToken, push_waker_and_get_token};
use spin_sdk::http::{ErrorCode, OutgoingBody};
use wasi::io::streams::{OutputStream, StreamError};

/// Writes an outgoing body. [`BodyWriter::finish`] completes it; dropping the writer
/// instead aborts it, which wasi-http delivers to the receiver as a broken transfer.
/// (spin-sdk's `take_body()` sink finishes the body whenever it is dropped, so a
/// truncated upload would look complete to the runner.)
pub struct BodyWriter {
    // Fields drop in order: the pollable before its stream, the stream before its body.
    waiting: Option<CancelOnDropToken>,
    stream: OutputStream,
    body: OutgoingBody,
}

impl BodyWriter {
    pub fn new(body: OutgoingBody) -> Self {
        let stream = body.write().expect("a new outgoing body is writable");
        Self {
            waiting: None,
            stream,
            body,
        }
    }

    /// Writes all of `bytes` and flushes, waiting whenever the receiver is not ready.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let mut offset = 0;
        let mut flushing = false;
        poll_fn(|context| {
            loop {
                let permit = match self.stream.check_write() {
                    Ok(0) => {
                        let ready = self.stream.subscribe();
                        self.waiting =
                            Some(push_waker_and_get_token(ready, context.waker().clone()).into());
                        return Poll::Pending;
                    }
                    Ok(permit) => usize::try_from(permit).unwrap_or(usize::MAX),
                    Err(error) => return Poll::Ready(Err(error)),
                };
                if offset < bytes.len() {
                    let end = offset + permit.min(bytes.len() - offset);
                    if let Err(error) = self.stream.write(&bytes[offset..end]) {
                        return Poll::Ready(Err(error));
                    }
                    offset = end;
                } else if flushing {
                    return Poll::Ready(Ok(()));
                } else if let Err(error) = self.stream.flush() {
                    return Poll::Ready(Err(error));
                } else {
                    flushing = true;
                }
            }
        })
        .await
    }

    /// Ends the body normally.
    pub fn finish(self) -> Result<(), ErrorCode> {
        let Self {
            waiting,
            stream,
            body,
        } = self;
        drop(waiting);
        drop(stream);
        OutgoingBody::finish(body, None)
    }
}
