//! Streaming the runner's downloads to the client.

use futures::StreamExt;
use spin_sdk::http::{Headers, IncomingResponse, OutgoingResponse, ResponseOutparam};
use spinmesh_api::edge::Edge;
use spinmesh_outbound::BodyWriter;

/// Bytes gathered before each write: small writes cost throughput (256 KiB–4 MiB batches ran at twice the rate of 16 KiB writes).
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
