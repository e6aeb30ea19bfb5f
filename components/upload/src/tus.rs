//! `/api/uploads`: resumable uploads, tus 1.0 (core, creation, termination, expiration).
//!
//! The protocol's rules are in `spinmesh_upload::tus`; the bytes and offsets are the
//! runner's (`/uploads`), which keeps them durably, so an upload resumes after a restart
//! of this host or the runner, and through any host. A `PATCH` is streamed through in
//! batches like `POST /api/upload`; its first bytes (at offset 0) pass the same content
//! checks first.

use futures::future::{Either, select};
use spin_sdk::http::{Request, Response};
use spinmesh_api::authn::now_unix;
use spinmesh_api::{ApiError, authenticate};
use spinmesh_jobs::{UPLOAD_OFFSET_MISMATCH, Upload};
use spinmesh_media::SNIFF_LEN;
use spinmesh_outbound::{BodyWriter, start, within};
use spinmesh_upload::route::ResumableRoute;
use spinmesh_upload::runner::{self, ANSWER_TIMEOUT, UPLOAD_TIMEOUTS};
use spinmesh_upload::tus;

use crate::config::Config;
use crate::form::{BodyStream, RequestBody};
use crate::reject;
use crate::stream::BATCH_BYTES;

/// The headers a tus server adds to its `OPTIONS` answer, telling clients what it speaks.
pub fn discovery_headers(max_size: Option<u64>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("tus-resumable", tus::VERSION.to_string()),
        ("tus-version", tus::VERSION.to_string()),
        ("tus-extension", tus::EXTENSIONS.to_string()),
    ];
    if let Some(max) = max_size {
        headers.push(("tus-max-size", max.to_string()));
    }
    headers
}

pub async fn handle(head: &Request, route: ResumableRoute<'_>, body: impl BodyStream) -> Response {
    let mut response = match Config::load() {
        Ok(config) => {
            let declared = head
                .header("content-length")
                .and_then(|value| value.as_str()?.trim().parse().ok());
            let mut body = RequestBody::new(body, declared, &config.policy);
            let result = serve(head, route, &mut body, &config).await;
            body.drain().await;
            result.unwrap_or_else(Into::into)
        }
        Err(error) => error.into(),
    };
    // Every answer but `OPTIONS`'s names the protocol version.
    response.set_header("tus-resumable", tus::VERSION);
    response
}

async fn serve<S: BodyStream>(
    head: &Request,
    route: ResumableRoute<'_>,
    body: &mut RequestBody<S>,
    config: &Config,
) -> Result<Response, ApiError> {
    let header = |name| head.header(name).and_then(|value| value.as_str());
    tus::check_version(header("tus-resumable"))?;
    let claims = authenticate(head, &config.verifier, now_unix())?;
    let owner = claims.sub.as_str();
    let runner = &config.runner;
    match route {
        ResumableRoute::Create => {
            if header("upload-defer-length").is_some() {
                return Err(ApiError::new(
                    400,
                    "defer_length_unsupported",
                    "Upload-Length is required: this server does not support deferring it",
                ));
            }
            let length = tus::parse_size("Upload-Length", header("upload-length"))?;
            if length == 0 {
                return Err(reject(spinmesh_media::Error::EmptyFile));
            }
            if length > config.policy.max_file_bytes() {
                return Err(reject(config.policy.too_large()));
            }
            let metadata = tus::parse_metadata(header("upload-metadata"))?;
            let filename = metadata.filename.ok_or_else(|| {
                ApiError::new(
                    400,
                    "missing_filename",
                    "Upload-Metadata must carry the file's name (`filename`)",
                )
            })?;
            let filename = config.policy.check_name(&filename).map_err(reject)?;
            let upload = runner
                .create_upload(owner, &filename, length, metadata.callback_url.as_deref())
                .await?;
            let mut response = progress(201, &upload);
            response.set_header("location", format!("/api/uploads/{}", upload.id));
            Ok(response)
        }
        ResumableRoute::Offset(id) => Ok(progress(200, &runner.upload(id, owner).await?)),
        ResumableRoute::Append(id) => {
            let content_type = header("content-type").unwrap_or_default();
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if !essence.eq_ignore_ascii_case(tus::PATCH_CONTENT_TYPE) {
                return Err(ApiError::new(
                    415,
                    "unsupported_media_type",
                    format!("A PATCH body must be {}", tus::PATCH_CONTENT_TYPE),
                ));
            }
            let offset = tus::parse_size("Upload-Offset", header("upload-offset"))?;
            // Refusals that need no byte of the body come before any is sent.
            let upload = runner.upload(id, owner).await?;
            if upload.offset != offset || upload.job_id.is_some() {
                return Err(ApiError::new(
                    409,
                    UPLOAD_OFFSET_MISMATCH,
                    format!(
                        "Upload-Offset does not match the upload's offset, {}",
                        upload.offset
                    ),
                ));
            }
            let first_bytes = match offset {
                // The file's first bytes: checked against its name before any is stored.
                0 => {
                    let first_bytes = sniff(body).await?;
                    config
                        .policy
                        .check(Some(&upload.source_filename), &first_bytes)
                        .map_err(reject)?;
                    first_bytes
                }
                _ => Vec::new(),
            };
            let upload = append(config, id, owner, offset, first_bytes, body).await?;
            Ok(progress(204, &upload))
        }
        ResumableRoute::Terminate(id) => {
            runner.terminate_upload(id, owner).await?;
            Ok(Response::new(204, ()))
        }
    }
}

/// An answer carrying the upload's progress, as a tus client reads it; with `Job-Id`
/// once the upload became a job.
fn progress(status: u16, upload: &Upload) -> Response {
    let mut response = Response::new(status, ());
    response.set_header("upload-offset", upload.offset.to_string());
    response.set_header("upload-length", upload.length.to_string());
    response.set_header("upload-expires", tus::expires_header(upload.expires_unix));
    response.set_header("cache-control", "no-store");
    if let Some(job_id) = &upload.job_id {
        response.set_header("job-id", job_id.as_str());
    }
    response
}

/// The body's first [`SNIFF_LEN`] bytes (fewer if it is shorter).
async fn sniff<S: BodyStream>(body: &mut RequestBody<S>) -> Result<Vec<u8>, ApiError> {
    let mut head = Vec::new();
    while head.len() < SNIFF_LEN {
        match body.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    Ok(head)
}

/// Streams the body to the runner's append at `offset`, `first_bytes` (already read)
/// first. The runner keeps what arrives even if the client goes away part-way, so a
/// broken-off body is ended cleanly rather than aborted.
async fn append<S: BodyStream>(
    config: &Config,
    id: &str,
    owner: &str,
    offset: u64,
    first_bytes: Vec<u8>,
    body: &mut RequestBody<S>,
) -> Result<Upload, ApiError> {
    let request = config.runner.append_request(id, owner, offset)?;
    let writer = BodyWriter::new(request.body().expect("a new request has a body"));
    let response = Box::pin(start(request, UPLOAD_TIMEOUTS).map_err(runner::unavailable)?);
    let pump = Box::pin(pump(body, writer, first_bytes));
    match select(pump, response).await {
        Either::Left(((broken_off, writer), response)) => {
            writer
                .finish()
                .map_err(|error| runner::unavailable(format_args!("{error:?}")))?;
            let answer = within(response, ANSWER_TIMEOUT).await;
            let upload = runner::appended(answer.and_then(|answer| answer)).await?;
            // The client is most likely gone; if not, it learns the offset reached.
            match broken_off {
                Some(error) => Err(error),
                None => Ok(upload),
            }
        }
        // The runner answered before the body was complete: it refused the append.
        Either::Right((response, pump)) => {
            drop(pump);
            runner::appended(response).await
        }
    }
}

/// Copies the body into `writer` in batches until it ends or breaks off (the error,
/// after what came before it was written). Hands the writer back to be finished.
async fn pump<S: BodyStream>(
    body: &mut RequestBody<S>,
    mut writer: BodyWriter,
    first_bytes: Vec<u8>,
) -> (Option<ApiError>, BodyWriter) {
    let mut batch = first_bytes;
    batch.reserve(BATCH_BYTES);
    let broken_off = loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => {
                batch.extend_from_slice(&chunk);
                if batch.len() >= BATCH_BYTES {
                    if writer.write(&batch).await.is_err() {
                        break None;
                    }
                    batch.clear();
                }
            }
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
    };
    if !batch.is_empty() {
        // A refusal shows in the runner's answer.
        let _ = writer.write(&batch).await;
    }
    (broken_off, writer)
}
