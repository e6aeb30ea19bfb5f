//! `POST /api/upload`: checks, then streams the file part to the runner.
//!
//! Nothing reaches the runner before the token, the content type, the announced size,
//! the filename, the file's first bytes and the text fields before the file (a
//! webhook's `callback_url`, whose host the runner then judges) have been checked. The runner request then
//! runs alongside the pump that feeds it; if the upload turns out too large or the form
//! malformed, the runner's body is aborted, so it discards the partial file.

use futures::future::{Either, select};
use spin_sdk::http::{Request, Response};
use spinmesh_api::authn::now_unix;
use spinmesh_api::{ApiError, authenticate, json};
use spinmesh_media::job::{Accepted, RunnerJob};
use spinmesh_media::{UploadPolicy, multipart};
use spinmesh_outbound::{BodyWriter, start, within};
use spinmesh_upload::runner::{self, ANSWER_TIMEOUT, NewJob, Runner, UPLOAD_TIMEOUTS};

use crate::config::Config;
use crate::form::{BodyStream, Form, RequestBody};
use crate::reject;
use crate::stream::BATCH_BYTES;

pub async fn handle(head: &Request, body: impl BodyStream) -> Response {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => return error.into(),
    };
    let declared = head
        .header("content-length")
        .and_then(|value| value.as_str()?.trim().parse().ok());
    let mut body = RequestBody::new(body, declared, &config.policy);
    let result = receive(head, &mut body, &config).await;
    // Whatever remains (all of a refused upload, an accepted one's epilogue) is read, so
    // the client gets to see the answer rather than a reset connection.
    body.drain().await;
    result.unwrap_or_else(Into::into)
}

async fn receive<S: BodyStream>(
    head: &Request,
    body: &mut RequestBody<S>,
    config: &Config,
) -> Result<Response, ApiError> {
    let claims = authenticate(head, &config.verifier, now_unix())?;
    let content_type = head
        .header("content-type")
        .and_then(|value| value.as_str())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type).map_err(reject)?;
    let mut form = Form::new(body, &boundary);
    let (part, fields) = form.file_part().await?;
    let first_bytes = form.sniff().await?;
    let filename = config
        .policy
        .check(part.filename.as_deref(), &first_bytes)
        .map_err(reject)?;
    let new_job = NewJob {
        owner: &claims.sub,
        filename: &filename,
        callback_url: fields.callback_url(),
    };
    let job = forward(
        &config.runner,
        &new_job,
        first_bytes,
        &mut form,
        &config.policy,
    )
    .await?;
    let location = format!("/api/jobs/{}", job.id);
    let mut response = json(202, &Accepted::from(job));
    response.set_header("location", location);
    Ok(response)
}

/// How the pump's side of an upload ended.
enum Delivery {
    /// The whole file was written.
    Complete,
    /// The runner stopped taking the body: its response says why.
    Refused,
}

/// Streams the file part to the runner: the pump and the runner's response are polled
/// together, since the response cannot arrive before the body ends and the body cannot
/// be written unless the request is under way.
async fn forward<S: BodyStream>(
    runner: &Runner,
    new_job: &NewJob<'_>,
    first_bytes: Vec<u8>,
    form: &mut Form<'_, S>,
    policy: &UploadPolicy,
) -> Result<RunnerJob, ApiError> {
    let request = runner.upload_request(new_job)?;
    let writer = BodyWriter::new(request.body().expect("a new request has a body"));
    let response = Box::pin(start(request, UPLOAD_TIMEOUTS).map_err(runner::unavailable)?);
    let pump = Box::pin(pump(form, writer, first_bytes, policy));
    let ((delivery, writer), response) = match select(pump, response).await {
        Either::Left(pumped) => pumped,
        // The runner answered before the body was complete, so it refused the upload;
        // dropping the pump aborts the body.
        Either::Right((response, pump)) => {
            drop(pump);
            return runner::accepted(response).await;
        }
    };
    match delivery {
        Ok(delivery) => {
            match delivery {
                Delivery::Complete => writer
                    .finish()
                    .map_err(|error| runner::unavailable(format_args!("{error:?}")))?,
                Delivery::Refused => drop(writer),
            }
            // With the body ended, the runner answers from its job store.
            let answer = within(response, ANSWER_TIMEOUT).await;
            runner::accepted(answer.and_then(|answer| answer)).await
        }
        Err(error) => {
            // Abort the body, then the request: the runner removes what it received.
            drop(writer);
            drop(response);
            Err(error)
        }
    }
}

/// Copies the file part into `writer` in batches, enforcing the size limit, then reads
/// the rest of the form, which must be complete for the upload to count. Hands the
/// writer back, to be finished or, by dropping it, aborted.
async fn pump<S: BodyStream>(
    form: &mut Form<'_, S>,
    mut writer: BodyWriter,
    first_bytes: Vec<u8>,
    policy: &UploadPolicy,
) -> (Result<Delivery, ApiError>, BodyWriter) {
    let delivery = copy_part(form, &mut writer, first_bytes, policy).await;
    (delivery, writer)
}

async fn copy_part<S: BodyStream>(
    form: &mut Form<'_, S>,
    writer: &mut BodyWriter,
    first_bytes: Vec<u8>,
    policy: &UploadPolicy,
) -> Result<Delivery, ApiError> {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut size = 0u64;
    let mut next = Some(first_bytes);
    while let Some(data) = next {
        size += data.len() as u64;
        if size > policy.max_file_bytes() {
            return Err(reject(policy.too_large()));
        }
        batch.extend_from_slice(&data);
        if batch.len() >= BATCH_BYTES {
            if writer.write(&batch).await.is_err() {
                return Ok(Delivery::Refused);
            }
            batch.clear();
        }
        next = form.data().await?;
    }
    form.finish().await?;
    if writer.write(&batch).await.is_err() {
        return Ok(Delivery::Refused);
    }
    Ok(Delivery::Complete)
}
