//! Streaming bodies out: request bodies to the runner, response bodies to the client.

use std::future::poll_fn;
use std::task::Poll;

use futures::StreamExt;
use spin_executor::{CancelOnDropToken, push_waker_and_get_token};
use spin_sdk::http::{
    ErrorCode, Headers, IncomingResponse, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use spinmesh_api::edge::Edge;
use wasi::io::streams::{OutputStream, StreamError};

/// Bytes gathered before each write: small writes cost throughput (DESIGN §6).
pub const BATCH_BYTES: usize = 512 * 1024;

/// The runner's download headers passed on to the client.
const DOWNLOAD_HEADERS: [&str; 9] = [
    "content-type",
    "content-length",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "cache-control",
    "x-content-type-options",
];

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

/// Streams the runner's download response to the client: its status, the
/// [`DOWNLOAD_HEADERS`] it has plus the edge's, and its body in batches.
pub async fn forward_download(
    edge: &Edge,
    response: IncomingResponse,
    response_out: ResponseOutparam,
) {
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| DOWNLOAD_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        .collect();
    let value = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    };
    let edge_headers =
        edge.response_headers(value("content-type"), None, &|name| value(name).is_some());
    headers.extend(
        edge_headers
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into_bytes())),
    );
    let outgoing = match Headers::from_list(&headers) {
        Ok(headers) => OutgoingResponse::new(headers),
        Err(error) => {
            let error = spinmesh_api::ApiError::internal_logged(format_args!(
                "download headers: {error:?}"
            ));
            return crate::respond(edge, response_out, error.into()).await;
        }
    };
    outgoing
        .set_status_code(response.status())
        .expect("the runner's status is a valid status");
    let mut writer = BodyWriter::new(outgoing.body().expect("a new response has a body"));
    response_out.set(outgoing);
    // Logged once the headers are out: the duration is the time to the first byte.
    edge.log(response.status());
    match copy(&response, &mut writer).await {
        Ok(()) => {
            if let Err(error) = writer.finish() {
                eprintln!("download: cannot end the response: {error:?}");
            }
        }
        // Dropping the writer aborts the response, so the client sees it is incomplete.
        Err(error) => eprintln!("download interrupted: {error}"),
    }
}

async fn copy(response: &IncomingResponse, writer: &mut BodyWriter) -> Result<(), &'static str> {
    let mut body = response.take_body_stream();
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Some(chunk) = body.next().await {
        batch.extend_from_slice(&chunk.map_err(|_| "the runner's response broke off")?);
        if batch.len() >= BATCH_BYTES {
            writer
                .write(&batch)
                .await
                .map_err(|_| "the client went away")?;
            batch.clear();
        }
    }
    writer
        .write(&batch)
        .await
        .map_err(|_| "the client went away")
}
