//! Streaming the runner's answers to the client: downloads and job event streams.

use futures::StreamExt;
use spin_sdk::http::{Headers, IncomingResponse, OutgoingResponse, ResponseOutparam};
use spinmesh_api::edge::Edge;
use spinmesh_outbound::BodyWriter;
use spinmesh_upload::follow::EventTranslator;

/// Bytes gathered before each write: small writes cost throughput (256 KiB–4 MiB batches ran at twice the rate of 16 KiB writes).
pub const BATCH_BYTES: usize = 512 * 1024;

/// How one kind of the runner's answers is passed on.
pub struct Passing {
    what: &'static str,
    /// The runner's headers passed on to the client.
    headers: &'static [&'static str],
    /// Bytes gathered before each write.
    batch_bytes: usize,
    /// The body is the runner's job events, shown to the client as it sees jobs.
    events: bool,
}

pub const DOWNLOAD: Passing = Passing {
    what: "download",
    headers: &[
        "content-type",
        "content-length",
        "content-disposition",
        "content-range",
        "accept-ranges",
        "etag",
        "last-modified",
        "cache-control",
        "x-content-type-options",
    ],
    batch_bytes: BATCH_BYTES,
    events: false,
};

/// Each event goes out as it comes: a batch would hold it back.
pub const EVENTS: Passing = Passing {
    what: "event stream",
    headers: &["content-type", "cache-control", "x-accel-buffering"],
    batch_bytes: 0,
    events: true,
};

/// Streams the runner's response to the client as `passing` says: its status, the
/// headers `passing` names that it has plus the edge's, and its body.
pub async fn forward(
    edge: &Edge,
    response: IncomingResponse,
    response_out: ResponseOutparam,
    passing: &Passing,
) {
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(name, _)| {
            passing
                .headers
                .contains(&name.to_ascii_lowercase().as_str())
        })
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
                "{} headers: {error:?}",
                passing.what
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
    match copy(&response, &mut writer, passing).await {
        Ok(()) => {
            if let Err(error) = writer.finish() {
                eprintln!("{}: cannot end the response: {error:?}", passing.what);
            }
        }
        // Dropping the writer aborts the response, so the client sees it is incomplete.
        Err(error) => eprintln!("{} interrupted: {error}", passing.what),
    }
}

async fn copy(
    response: &IncomingResponse,
    writer: &mut BodyWriter,
    passing: &Passing,
) -> Result<(), &'static str> {
    let mut body = response.take_body_stream();
    let mut batch = Vec::with_capacity(passing.batch_bytes);
    let mut events = passing.events.then(EventTranslator::default);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| "the runner's response broke off")?;
        match events.as_mut() {
            Some(events) => batch.extend(events.push(&chunk)?),
            None => batch.extend_from_slice(&chunk),
        }
        if !batch.is_empty() && batch.len() >= passing.batch_bytes {
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
