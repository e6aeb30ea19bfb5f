//! The runner's routes for resumable uploads (`/uploads`, runner/README.md). The upload
//! component speaks tus to clients and these routes to the runner; every call names the
//! owner, and an upload exists only for its owner.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tracing::{Instrument, info, info_span, warn};

use super::{Hold, NewUpload, Upload};
use crate::api::{AppState, drain, filename_header, header_str, owner_header};
use crate::error::{Error, Result};
use crate::metrics::Rejection;
use crate::names;
use crate::units::now_ms;

/// How long an append's hold lasts without a renewal; renewed every third of it while
/// bytes arrive. A runner that dies mid-append blocks the upload this long at most.
const HOLD_TTL: Duration = Duration::from_secs(60);
/// An append whose body sends nothing for this long ends there, keeping what arrived:
/// well inside [`HOLD_TTL`], so a stalled client never outlives its hold (a resumed
/// append could otherwise take the upload over while the stalled one still writes).
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Uploads looked at per sweep round.
const SWEEP_BATCH: u32 = 100;

fn ms(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}

fn parse_u64(headers: &HeaderMap, name: &str) -> Result<u64> {
    let value = header_str(headers, name)?.ok_or_else(|| {
        Error::bad_request("missing_header", format!("{name} header is required"))
    })?;
    // tus: a non-negative integer, digits only.
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(
            "invalid_header",
            format!("{name} must be a non-negative integer"),
        ));
    }
    value
        .parse()
        .map_err(|_| Error::bad_request("invalid_header", format!("{name} is too large")))
}

fn answer(status: StatusCode, upload: &Upload) -> Response {
    (status, Json(upload.to_wire())).into_response()
}

/// The upload `id` if `owner` has it and it has not expired; anything else is the same
/// 404 as an unknown id.
async fn owned(state: &AppState, id: &str, owner: &str) -> Result<Upload> {
    if !names::is_valid_upload_id(id) {
        return Err(Error::UploadNotFound);
    }
    let lookup = id.to_string();
    let upload = state.store.run(move |s| s.upload(&lookup)).await?;
    upload
        .filter(|upload| upload.owner == owner && upload.expires_at >= now_ms())
        .ok_or(Error::UploadNotFound)
}

/// `POST /uploads`: records an upload of `Upload-Length` bytes for the owner.
pub async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response> {
    let owner = owner_header(&headers)?;
    let source_filename = filename_header(&headers)?;
    let length = parse_u64(&headers, "upload-length")?;
    let callback_url = state.webhooks.admit(&headers).await?;
    if length == 0 {
        return Err(Error::bad_request(
            "empty_upload",
            "Upload-Length must not be 0",
        ));
    }
    if length > state.max_upload_bytes {
        state.metrics.upload_rejected(Rejection::TooLarge);
        return Err(Error::PayloadTooLarge {
            limit: state.max_upload_bytes,
        });
    }
    // The spool holds the whole upload until it is complete; object storage only scratch.
    let needed = if state.media.is_local() { length } else { 0 };
    let free = state.spool.free_space()?;
    if free < state.min_free_disk.saturating_add(needed) {
        state.metrics.upload_rejected(Rejection::LowDisk);
        warn!(free_bytes = free, "refusing upload: low disk space");
        return Err(Error::InsufficientStorage);
    }
    let now = now_ms();
    let new = NewUpload {
        id: names::new_upload_id(),
        owner,
        source_filename,
        length,
        job_id: names::new_job_id(),
        created_at: now,
        expires_at: now + ms(state.upload_expiry),
        callback_url,
    };
    let quota = state.quota;
    let upload = state
        .store
        .run(move |s| s.create_upload(new, &quota))
        .await?;
    info!(upload_id = %upload.id, owner = %upload.owner, length, "resumable upload created");
    Ok(answer(StatusCode::CREATED, &upload))
}

/// `GET /uploads/{id}`: the upload's offset (tus `HEAD`). One that has all its bytes
/// but whose job was not recorded (a crash in between) is finished first.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let owner = owner_header(&headers)?;
    let mut upload = owned(&state, &id, &owner).await?;
    if upload.is_received() && upload.completed_at.is_none() {
        upload = finish(&state, upload).await?;
    }
    Ok(answer(StatusCode::OK, &upload))
}

/// `DELETE /uploads/{id}`: terminates the upload (tus termination); its bytes go. An
/// upload that became a job only loses its record; the job stays.
pub async fn terminate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let owner = owner_header(&headers)?;
    let upload = owned(&state, &id, &owner).await?;
    let removed = state
        .store
        .run(move |s| s.remove_upload(&upload.id, now_ms(), None))
        .await?;
    if !removed {
        return Err(Error::UploadLocked);
    }
    state.media.remove_partial(&id).await?;
    info!(upload_id = %id, "resumable upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /uploads/{id}` with `Upload-Offset`: appends the body. Runs to its end even if
/// the caller goes away, so whatever arrived before a dropped connection is kept and
/// the client resumes from there.
pub async fn append(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let span = info_span!("append", upload_id = %id);
    tokio::spawn(
        async move {
            let mut stream = body.into_data_stream();
            let result = append_checked(&state, &id, &headers, &mut stream).await;
            if result.is_err() {
                // Read what remains of a refused body (bounded), so the caller sees the
                // answer rather than a reset connection.
                drain(&mut stream).await;
            }
            result
        }
        .instrument(span),
    )
    .await?
}

async fn append_checked(
    state: &Arc<AppState>,
    id: &str,
    headers: &HeaderMap,
    body: &mut BodyDataStream,
) -> Result<Response> {
    let owner = owner_header(headers)?;
    let offset = parse_u64(headers, "upload-offset")?;
    let upload = owned(state, id, &owner).await?;
    if upload.received != offset || upload.completed_at.is_some() {
        return Err(Error::UploadOffsetMismatch {
            offset: upload.received,
        });
    }
    if upload.is_received() {
        // Nothing to append: an earlier append ended the upload but its job is missing.
        let upload = finish(state, upload).await?;
        return Ok(answer(StatusCode::OK, &upload));
    }
    let hold = Hold {
        upload_id: upload.id.clone(),
        token: names::new_hold_token(),
    };
    let held = {
        let hold = hold.clone();
        let now = now_ms();
        state
            .store
            .run(move |s| s.hold_upload(&hold, offset, now + ms(HOLD_TTL), now))
            .await?
    };
    if !held {
        // Lost a race: another append holds it, or moved the offset on.
        let current = owned(state, &upload.id, &upload.owner).await?;
        return Err(match current.held {
            true => Error::UploadLocked,
            false => Error::UploadOffsetMismatch {
                offset: current.received,
            },
        });
    }
    let received = receive(state, &upload, &hold, offset, body).await;
    // Whatever happened, the hold goes, recording the bytes stored durably.
    let (stored, outcome) = match received {
        Ok(Received::All(n)) => (n, Ok(())),
        Ok(Received::Interrupted(n, cause)) => {
            info!(stored = n, cause = %cause, "append interrupted; keeping what arrived");
            (n, Ok(()))
        }
        Err(err) => (0, Err(err)),
    };
    let released = {
        let hold = hold.clone();
        let expires_at = now_ms() + ms(state.upload_expiry);
        state
            .store
            .run(move |s| s.release_upload_hold(&hold, offset + stored, expires_at))
            .await?
    };
    outcome?;
    if !released {
        warn!("the append's hold expired before it ended; its bytes were not recorded");
        return Err(Error::UploadLocked);
    }
    let mut upload = owned(state, &upload.id, &upload.owner).await?;
    if upload.is_received() {
        upload = finish(state, upload).await?;
    }
    Ok(answer(StatusCode::OK, &upload))
}

/// How an append's body ended, with the bytes stored durably.
enum Received {
    All(u64),
    /// The body broke off (the client went away); what arrived before is kept.
    Interrupted(u64, String),
}

/// Stores the body after `offset`, renewing the hold as it goes.
async fn receive(
    state: &AppState,
    upload: &Upload,
    hold: &Hold,
    offset: u64,
    stream: &mut BodyDataStream,
) -> Result<Received> {
    let room = upload.length - offset;
    let mut appender = state.media.append_at(&upload.id, offset).await?;
    let mut written = 0u64;
    let mut interrupted = None;
    let mut renew_at = tokio::time::Instant::now() + HOLD_TTL / 3;
    loop {
        let chunk = match tokio::time::timeout(STALL_LIMIT, stream.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(err))) => {
                interrupted = Some(err.to_string());
                break;
            }
            Err(_) => {
                interrupted = Some(format!("no bytes for {}s", STALL_LIMIT.as_secs()));
                break;
            }
        };
        written += chunk.len() as u64;
        if written > room {
            state.metrics.upload_rejected(Rejection::TooLarge);
            return Err(Error::UploadLengthExceeded {
                length: upload.length,
            });
        }
        appender.write(chunk).await?;
        if tokio::time::Instant::now() >= renew_at {
            renew_at = tokio::time::Instant::now() + HOLD_TTL / 3;
            let hold = hold.clone();
            let until = now_ms() + ms(HOLD_TTL);
            if !state
                .store
                .run(move |s| s.renew_upload_hold(&hold, until))
                .await?
            {
                return Err(Error::UploadLocked);
            }
        }
    }
    appender.finish().await?;
    Ok(match interrupted {
        None => Received::All(written),
        Some(cause) => Received::Interrupted(written, cause),
    })
}

/// Turns a fully received upload into its job: its bytes become the job's input, then
/// the job is recorded. Safe to repeat and to race: the job is recorded once.
async fn finish(state: &AppState, upload: Upload) -> Result<Upload> {
    state
        .media
        .place_received(&upload.id, upload.length, &upload.job_id)
        .await?;
    let job = upload.new_job();
    let id = upload.id.clone();
    let expires_at = now_ms() + ms(state.upload_expiry);
    let recorded = state
        .store
        .run(move |s| s.complete_upload(&id, job, expires_at))
        .await?;
    if let Some(job) = recorded {
        state.metrics.upload_accepted(upload.length);
        state.wake.notify_one();
        info!(
            upload_id = %upload.id,
            job_id = %job.id,
            owner = %job.owner,
            size_bytes = upload.length,
            "resumable upload complete; job recorded"
        );
        if let Err(err) = state.media.remove_partial(&upload.id).await {
            warn!(upload_id = %upload.id, error = %err, "cannot remove the upload's appends; its expiry will");
        }
    }
    let id = upload.id.clone();
    state
        .store
        .run(move |s| s.upload(&id))
        .await?
        .ok_or(Error::UploadNotFound)
}

/// Removes expired uploads every `interval` until `stop`; one that has all its bytes
/// (its job not recorded because of a crash) becomes its job instead.
pub async fn run_sweeper(
    state: Arc<AppState>,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(err) = sweep(&state).await {
            warn!(error = %err, "resumable upload sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn sweep(state: &AppState) -> Result<()> {
    let now = now_ms();
    let expired = state
        .store
        .run(move |s| s.expired_uploads(now, SWEEP_BATCH))
        .await?;
    for id in expired {
        let lookup = id.clone();
        let Some(upload) = state.store.run(move |s| s.upload(&lookup)).await? else {
            continue;
        };
        if upload.is_received() && upload.completed_at.is_none() {
            finish(state, upload).await?;
            continue;
        }
        let removing = id.clone();
        if state
            .store
            .run(move |s| s.remove_upload(&removing, now, Some(now)))
            .await?
        {
            state.media.remove_partial(&id).await?;
            if upload.completed_at.is_none() {
                info!(upload_id = %id, received = upload.received, length = upload.length, "resumable upload expired; removed");
            }
        }
    }
    Ok(())
}
