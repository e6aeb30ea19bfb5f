//! Outbound HTTP for components, every call bounded in time.
//!
//! `spin_sdk::http::send` passes no `wasi:http` request options, so a peer that accepts
//! the connection and never answers holds the caller until the host gives up on the whole
//! request. Here every call goes out through `wasi:http/outgoing-handler` with
//! [`Timeouts`] as `request-options` (connect, first byte, between bytes), and buffered
//! calls are also raced against a timer in the guest: hosts may ignore the options, or
//! apply only some of them (the embedded host bounds a `*.spin.internal` call, which it
//! dispatches in-process, by connect + first byte only).
//!
//! [`send`] is a whole buffered exchange; [`open`] leaves the answer's body to stream;
//! [`start`] leaves the request's body to the caller's [`BodyWriter`]. Also here: request
//! builders ([`request`], [`json_request`]) and [`within`], a timeout for any future.

mod body;
mod timer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use spin_executor::CancelOnDropToken;
use spin_sdk::http::conversions::TryIntoOutgoingRequest;
use spin_sdk::http::{
    ErrorCode, IncomingResponse, Method, OutgoingRequest, Request, RequestBuilder, Response,
};
// spin-sdk's own bindings of wasi:http, the only ones whose types its `OutgoingRequest`
// and `IncomingResponse` are; hidden in its docs but public, and the version is pinned.
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{FutureIncomingResponse, RequestOptions};

pub use body::BodyWriter;
pub use timer::within;

/// Largest buffered answer read: the JSON of the app's services is far smaller.
pub const MAX_BUFFERED_RESPONSE: usize = 1024 * 1024;

/// Why an outbound call got no (usable) answer. Callers map it to their own error: for
/// the client it is the peer being unavailable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot build the request: {0}")]
    Request(String),
    #[error("request failed: {0:?}")]
    Http(ErrorCode),
    #[error("the request body could not be sent")]
    RequestBody,
    #[error("the answer's body broke off")]
    ResponseBody,
    #[error("the answer's body is over {MAX_BUFFERED_RESPONSE} bytes")]
    ResponseTooLarge,
}

/// How long each stage of a call may take. `first_byte` is `None` for a request whose body
/// is streamed for as long as it takes (an upload): its answer only comes after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Option<Duration>,
    pub between_bytes: Duration,
}

impl Timeouts {
    /// Every stage bounded by `limit`.
    pub fn uniform(limit: Duration) -> Self {
        Self {
            connect: limit,
            first_byte: Some(limit),
            between_bytes: limit,
        }
    }

    fn options(&self) -> RequestOptions {
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let options = RequestOptions::new();
        // A host that cannot honour one refuses to set it; the guest-side timers still hold.
        let _ = options.set_connect_timeout(Some(nanos(self.connect)));
        let _ = options.set_first_byte_timeout(self.first_byte.map(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos(self.between_bytes)));
        options
    }
}

/// A request to `url`, with `Authorization: Bearer` when `bearer` is given.
pub fn request(method: Method, url: &str, bearer: Option<&str>) -> RequestBuilder {
    let mut builder = Request::builder();
    builder.method(method).uri(url);
    if let Some(token) = bearer {
        builder.header("authorization", format!("Bearer {token}"));
    }
    builder
}

/// [`request`] with `body` as JSON.
pub fn json_request(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> Request {
    request(method, url, bearer)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

/// Sends a buffered `request` and reads the whole answer (at most
/// [`MAX_BUFFERED_RESPONSE`] bytes), all within `limit`.
pub async fn send(request: Request, limit: Duration) -> Result<Response, Error> {
    within(exchange(request, Timeouts::uniform(limit)), limit)
        .await
        .and_then(|result| result)
}

/// Sends a buffered `request` and waits for the answer's head (within `first_byte`, when
/// set); its body is left to the caller to stream.
pub async fn open(request: Request, timeouts: Timeouts) -> Result<IncomingResponse, Error> {
    let (outgoing, body) = request
        .try_into_outgoing_request()
        .map_err(|error| Error::Request(error.to_string()))?;
    let writer = BodyWriter::new(outgoing.body().map_err(|()| Error::RequestBody)?);
    let response = start(outgoing, timeouts)?;
    // The body goes out before the answer is awaited, as the peer reads it first.
    let sent = write_all(writer, body).await;
    let answer = match timeouts.first_byte {
        Some(limit) => within(response, limit).await.and_then(|answer| answer),
        None => response.await,
    };
    outcome(sent, answer)
}

/// Writes `body` (when there is one) and ends it.
async fn write_all(mut writer: BodyWriter, body: Option<Vec<u8>>) -> Result<(), Error> {
    if let Some(body) = body {
        writer.write(&body).await.map_err(|_| Error::RequestBody)?;
    }
    writer.finish().map_err(Error::Http)
}

/// A call's result from how writing its body went (`sent`) and what came back: an answer
/// that arrived stands even if the body could not be written. A peer may answer before
/// the body has been written and close the connection, which then fails the rest of the
/// body, even an empty one (nginx does: 5 of 3200 job-status reads through it failed so
/// in the cluster suite). Without an answer, the body's failure, which came first.
fn outcome<R>(sent: Result<(), Error>, answer: Result<R, Error>) -> Result<R, Error> {
    match (sent, answer) {
        (_, Ok(answer)) => Ok(answer),
        (Err(unsent), Err(_)) => Err(unsent),
        (Ok(()), Err(failed)) => Err(failed),
    }
}

async fn exchange(request: Request, timeouts: Timeouts) -> Result<Response, Error> {
    let response = open(request, timeouts).await?;
    let mut builder = Response::builder();
    builder
        .status(response.status())
        .headers(response.headers());
    let mut body = Vec::new();
    let mut stream = response.take_body_stream();
    while let Some(chunk) = stream.next().await {
        body.extend(chunk.map_err(|_| Error::ResponseBody)?);
        if body.len() > MAX_BUFFERED_RESPONSE {
            return Err(Error::ResponseTooLarge);
        }
    }
    Ok(builder.body(body).build())
}

/// Sends `request` with `timeouts`; its body (taken with [`BodyWriter::new`] before) is
/// written by the caller while the returned future waits for the answer's head.
pub fn start(request: OutgoingRequest, timeouts: Timeouts) -> Result<PendingResponse, Error> {
    let response =
        outgoing_handler::handle(request, Some(timeouts.options())).map_err(Error::Http)?;
    Ok(PendingResponse {
        registration: None,
        response,
    })
}

/// The head of an answer still to come.
pub struct PendingResponse {
    // Fields drop in order: the pollable before the response it watches.
    registration: Option<CancelOnDropToken>,
    response: FutureIncomingResponse,
}

impl Future for PendingResponse {
    type Output = Result<IncomingResponse, Error>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.response.get() {
            Some(Ok(Ok(response))) => Poll::Ready(Ok(response)),
            Some(Ok(Err(code))) => Poll::Ready(Err(Error::Http(code))),
            // Only a second `get` after a result yields this; the result was taken.
            Some(Err(())) => Poll::Ready(Err(Error::ResponseBody)),
            None => {
                let pollable = self.response.subscribe();
                let token =
                    spin_executor::push_waker_and_get_token(pollable, context.waker().clone());
                self.registration = Some(token.into());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request.header(name).and_then(|value| value.as_str())
    }

    #[test]
    fn requests_carry_the_bearer_only_when_given() {
        let with = request(Method::Get, "http://runner.test/jobs", Some("t0k")).build();
        assert_eq!(with.uri(), "http://runner.test/jobs");
        assert_eq!(header(&with, "authorization"), Some("Bearer t0k"));
        let without = request(Method::Delete, "http://x.test/", None).build();
        assert_eq!(header(&without, "authorization"), None);
        assert_eq!(*without.method(), Method::Delete);
    }

    #[test]
    fn an_answer_that_arrived_stands_even_if_the_body_was_not_sent() {
        let limit = Duration::from_secs(1);
        assert_eq!(outcome(Err(Error::RequestBody), Ok(200)).unwrap(), 200);
        assert_eq!(outcome(Ok(()), Ok(200)).unwrap(), 200);
        // Without an answer the first failure is reported.
        let unanswered = outcome::<u16>(Err(Error::RequestBody), Err(Error::Timeout(limit)));
        assert!(
            matches!(unanswered, Err(Error::RequestBody)),
            "{unanswered:?}"
        );
        let timed_out = outcome::<u16>(Ok(()), Err(Error::Timeout(limit)));
        assert!(matches!(timed_out, Err(Error::Timeout(_))), "{timed_out:?}");
    }

    #[test]
    fn json_requests_say_so() {
        let body = serde_json::json!({"quantity": 2});
        let sent = json_request(Method::Post, "http://products.test/r", Some("t"), &body);
        assert_eq!(header(&sent, "content-type"), Some("application/json"));
        assert_eq!(sent.body(), br#"{"quantity":2}"#);
    }
}
