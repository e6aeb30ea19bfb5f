//! HTTP routes.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::{Instrument, info, info_span, warn};

use crate::changes::Waiting;
use crate::early::{self, Arrival, Layout};
use crate::error::{Error, Result, error_response};
use crate::events;
use crate::job::{Job, NewJob};
use crate::media::Media;
use crate::metrics::{self, Metrics, Rejection, Snapshot};
use crate::names;
use crate::range::{RangeDecision, parse_range};
use crate::registry::Registry;
use crate::resumable;
use crate::spool::{Spool, remove_if_exists};
use crate::store::{Leased, OwnerQuota, Store};
use crate::units::now_ms;
use crate::webhook::{self, Webhooks};
use crate::worker::{self, WorkerContext};

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub store: Store,
    pub spool: Arc<Spool>,
    /// Where uploads go and MP3s come from: the spool, or object storage.
    pub media: Arc<Media>,
    pub token: String,
    pub max_upload_bytes: u64,
    pub min_free_disk: u64,
    /// What one owner may hold; checked before an upload is read and again as it is
    /// recorded.
    pub quota: OwnerQuota,
    pub registry: Registry,
    /// Wakes an idle worker of this runner when a job is queued.
    pub wake: Arc<Notify>,
    /// Bounds on long polls and event streams.
    pub waiting: Waiting,
    pub metrics: Arc<Metrics>,
    pub ffmpeg_version: String,
    pub workers: usize,
    /// Lets an upload start its conversion while it is still arriving.
    pub conversions: Arc<WorkerContext>,
    /// How long a resumable upload is kept after its last append.
    pub upload_expiry: Duration,
    /// Checks uploads' callback URLs; derives owners' webhook keys.
    pub webhooks: Arc<Webhooks>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 1000;
/// After a rejected upload, read and discard at most this much of the remaining body so
/// the client sees our answer rather than a connection reset.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// While receiving, re-check free disk space every this many bytes.
const DISK_CHECK_EVERY: u64 = 64 << 20;
/// Buffered writes to the spool file.
const WRITE_BUFFER: usize = 256 << 10;

pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{id}", get(get_job).delete(delete_job))
        .route("/jobs/{id}/output", get(download))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/uploads", post(resumable::api::create))
        .route(
            "/uploads/{id}",
            get(resumable::api::status)
                .patch(resumable::api::append)
                .delete(resumable::api::terminate),
        )
        .route("/webhook-secret", get(webhook::secret_route))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));

    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(|| async { Error::RouteNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(CatchPanicLayer::custom(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error".into(),
            )
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Extracts the token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let ok = bearer(req.headers())
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if !ok {
        return Error::Unauthorized.into_response();
    }
    next.run(req).await
}

fn job_id(id: &str) -> Result<&str> {
    if names::is_valid_job_id(id) {
        Ok(id)
    } else {
        Err(Error::JobNotFound)
    }
}

async fn load_job(state: &AppState, id: &str) -> Result<Job> {
    let id = job_id(id)?.to_string();
    state
        .store
        .run(move |s| s.get(&id))
        .await?
        .ok_or(Error::JobNotFound)
}

// ---------------------------------------------------------------------------------------
// Health, stats, metrics

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (stats, media_reachable) =
        tokio::join!(state.store.run(|s| s.stats()), state.media.reachable());
    match stats {
        Ok(_) if !media_reachable => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            "Degraded: the object store is unreachable; uploads are refused until it is back"
                .into(),
        ),
        Ok(stats) => Json(json!({
            "status": "ok",
            "ffmpeg": state.ffmpeg_version,
            "queue_depth": stats.queued,
            "workers": state.workers,
        }))
        .into_response(),
        Err(err) => {
            warn!(error = %err, "health check: job store unavailable");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "degraded",
                "Degraded: the job store is unreachable; the runner keeps retrying".into(),
            )
        }
    }
}

async fn stats(State(state): State<Arc<AppState>>) -> Result<Response> {
    let stats = state.store.run(|s| s.stats()).await?;
    Ok(Json(json!({
        "jobs": {
            "queued": stats.queued,
            "running": stats.running,
            "completed": stats.completed,
            "failed": stats.failed,
            "cancelled": stats.cancelled,
        },
        "total": stats.total,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
    }))
    .into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response> {
    let stats = state.store.run(|s| s.stats()).await?;
    let body = state
        .metrics
        .render(&Snapshot {
            stats: &stats,
            workers: state.workers,
            busy_workers: state.registry.running(),
        })
        .map_err(|err| Error::Io(std::io::Error::other(err)))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response())
}

// ---------------------------------------------------------------------------------------
// Jobs

#[derive(Deserialize)]
struct ListParams {
    owner: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn parse_number<T: std::str::FromStr>(name: &str, value: Option<&str>, default: T) -> Result<T> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::bad_request(
                "invalid_query",
                format!("{name} must be a non-negative integer"),
            )
        }),
    }
}

async fn list_jobs(
    State(state): State<Arc<AppState>>,
    params: std::result::Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(params) =
        params.map_err(|_| Error::bad_request("invalid_query", "Malformed query string"))?;
    let limit: u32 = parse_number("limit", params.limit.as_deref(), DEFAULT_PAGE)?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let offset: u64 = parse_number("offset", params.offset.as_deref(), 0)?;
    let owner = params.owner.filter(|o| !o.is_empty());
    let (jobs, total) = state
        .store
        .run(move |s| s.list(owner.as_deref(), limit, offset))
        .await?;
    Ok(([("x-total-count", total.to_string())], Json(jobs)).into_response())
}

#[derive(Deserialize)]
struct GetParams {
    wait: Option<String>,
}

/// The `?wait=` of a long poll (the rule is `spinmesh_jobs`, shared with the upload side).
fn parse_wait(value: Option<&str>) -> Result<Option<Duration>> {
    value
        .map(|value| {
            spinmesh_jobs::parse_wait(value)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    Error::bad_request(
                        "invalid_query",
                        format!(
                            "wait must be a whole number of seconds from 1 to {}",
                            spinmesh_jobs::MAX_WAIT_SECS
                        ),
                    )
                })
        })
        .transpose()
}

async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: std::result::Result<Query<GetParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Job>> {
    let Query(params) =
        params.map_err(|_| Error::bad_request("invalid_query", "Malformed query string"))?;
    let Some(wait) = parse_wait(params.wait.as_deref())? else {
        return Ok(Json(load_job(&state, &id).await?));
    };
    let deadline = tokio::time::Instant::now() + wait;
    // Listening before the first read: a change in between is not missed.
    let mut waiter = state.waiting.wait_on(job_id(&id)?)?;
    let arrived = load_job(&state, &id).await?;
    if arrived.status.is_finished() {
        return Ok(Json(arrived));
    }
    loop {
        let last_look = tokio::select! {
            waiting = waiter.next_change() => !waiting,
            _ = tokio::time::sleep_until(deadline) => true,
        };
        let job = load_job(&state, &id).await?;
        if last_look || job.moved_on_from(&arrived) {
            return Ok(Json(job));
        }
    }
}

async fn job_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let seen = events::parse_last_event_id(header_str(&headers, "last-event-id")?)?;
    let id = job_id(&id)?;
    // Listening before the first read: a change in between is not missed. The owner's
    // limit needs the owner, so the job is read for it first.
    let owner = load_job(&state, id).await?.owner;
    let waiter = state.waiting.stream_on(id, &owner)?;
    let job = load_job(&state, id).await?;
    let body = Body::from_stream(events::stream(state.store.clone(), waiter, job, seen));
    Ok((
        [
            (header::CONTENT_TYPE, events::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
            // nginx and the like would otherwise hold events back in their buffers.
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

async fn retry_job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response> {
    let id = job_id(&id)?.to_string();
    let (lookup, quota) = (id.clone(), state.quota);
    let job = state
        .store
        .run(move |s| s.retry(&lookup, &quota))
        .await?
        .ok_or(Error::JobNotFound)?;
    state.store.announce(&id);
    state.wake.notify_one();
    info!(job_id = %id, owner = %job.owner, "job re-queued on request");
    Ok(accepted(job))
}

/// `202` with the job queued (or started) and where to follow it.
fn accepted(job: Job) -> Response {
    let location = HeaderValue::from_str(&format!("/jobs/{}", job.id)).expect("job ids are ASCII");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response()
}

async fn delete_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Job>> {
    let id = job_id(&id)?.to_string();
    let lookup = id.clone();
    let job = state
        .store
        .run(move |s| s.cancel(&lookup, now_ms()))
        .await?
        .ok_or(Error::JobNotFound)?;
    // Stop a running conversion and wait briefly for the worker to clean up, so that when
    // we answer, ffmpeg is gone as well as the files.
    state.store.announce(&id);
    let was_running = state.registry.cancel(&id, Duration::from_secs(15)).await;
    state.media.remove_job(&id).await?;
    info!(job_id = %id, status = %job.status, was_running, "job deleted");
    Ok(Json(job))
}

// ---------------------------------------------------------------------------------------
// Upload

/// Removes the upload's spool file on drop: whatever way an upload ends (error, limit,
/// client gone and the handler dropped, or moved into place), nothing is left behind.
struct FileGuard {
    path: Option<std::path::PathBuf>,
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(err) = remove_if_exists(&path)
        {
            warn!(error = %err, file = %path.display(), "cannot remove abandoned upload");
        }
    }
}

/// The owner the upload component names (`X-Owner-Id`), checked.
pub(crate) fn owner_header(headers: &HeaderMap) -> Result<String> {
    let owner = header_str(headers, "x-owner-id")?
        .ok_or_else(|| Error::bad_request("missing_owner", "X-Owner-Id header is required"))?;
    Ok(names::validate_owner(owner.trim())
        .map_err(|m| Error::bad_request("invalid_owner", m))?
        .to_string())
}

/// The client's filename (`X-Filename`, percent-encoded), sanitised.
pub(crate) fn filename_header(headers: &HeaderMap) -> Result<String> {
    let raw_name = header_str(headers, "x-filename")?
        .ok_or_else(|| Error::bad_request("missing_filename", "X-Filename header is required"))?;
    let decoded = names::decode_filename_header(raw_name).ok_or_else(|| {
        Error::bad_request(
            "invalid_filename",
            "X-Filename must be percent-encoded UTF-8",
        )
    })?;
    Ok(names::sanitize_source_filename(&decoded))
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            Error::bad_request("invalid_header", format!("{name} must be visible ASCII"))
        }),
    }
}

/// Reads and discards up to [`DRAIN_BYTES`] / [`DRAIN_TIME`] of a body we will not use.
pub(crate) async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut drained = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Drains the body of an upload refused before it was read, unless the client waits for
/// `100 Continue` (it sent nothing) or announced more than [`DRAIN_BYTES`].
async fn drain_refused(
    stream: &mut axum::body::BodyDataStream,
    expects_continue: bool,
    declared: Option<u64>,
) {
    if !expects_continue && declared.is_none_or(|n| n <= DRAIN_BYTES) {
        drain(stream).await;
    }
}

async fn create_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let owner = owner_header(&headers)?;
    let source_filename = filename_header(&headers)?;
    let declared: Option<u64> = match header_str(&headers, "content-length")? {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| Error::bad_request("invalid_header", "Invalid Content-Length"))?,
        ),
    };

    let mut stream = body.into_data_stream();
    let expects_continue = headers.contains_key(header::EXPECT);

    if declared.is_some_and(|n| n > state.max_upload_bytes) {
        state.metrics.upload_rejected(Rejection::TooLarge);
        if !expects_continue && declared.is_some_and(|n| n <= DRAIN_BYTES) {
            drain(&mut stream).await;
        }
        return Err(Error::PayloadTooLarge {
            limit: state.max_upload_bytes,
        });
    }

    let callback_url = match state.webhooks.admit(&headers).await {
        Ok(callback_url) => callback_url,
        Err(refusal) => {
            drain_refused(&mut stream, expects_continue, declared).await;
            return Err(refusal);
        }
    };

    // The owner's quotas, from the job store, so they hold across runners sharing it.
    let lookup = owner.clone();
    let usage = state.store.run(move |s| s.usage(&lookup)).await?;
    if let Err(refusal) = state.quota.admit(&usage, declared.unwrap_or(0)) {
        info!(owner = %owner, usage = ?usage, reason = %refusal, "refusing upload: owner quota");
        drain_refused(&mut stream, expects_continue, declared).await;
        return Err(refusal);
    }
    // What this upload may add to the owner's stored bytes (a chunked upload has not
    // said how much it brings).
    let storage_left = state
        .quota
        .max_spooled_bytes
        .saturating_sub(usage.spooled_bytes);

    let free = state.spool.free_space()?;
    if free < state.min_free_disk.saturating_add(declared.unwrap_or(0)) {
        state.metrics.upload_rejected(Rejection::LowDisk);
        warn!(
            free_bytes = free,
            min_free_disk = state.min_free_disk,
            "refusing upload: low disk space"
        );
        return Err(Error::InsufficientStorage);
    }

    let id = names::new_job_id();
    // With object storage the upload streams there as it arrives; dropping this
    // (any early return) aborts it.
    let mut object = match state.media.begin_upload(&id).await {
        Ok(object) => object,
        Err(err) => {
            warn!(error = %err, "refusing upload: cannot start it in the object store");
            drain_refused(&mut stream, expects_continue, declared).await;
            return Err(err);
        }
    };
    let started = Instant::now();
    let incoming = state.spool.incoming(&id);
    let guard = FileGuard {
        path: Some(incoming.clone()),
    };
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&incoming)
        .await?;
    let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut received: u64 = 0;
    let mut next_disk_check = DISK_CHECK_EVERY;
    // The first bytes, kept until they tell whether ffmpeg can start on a pipe now.
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    // Set when a conversion started early; dropping it tells that conversion the
    // upload was abandoned.
    let mut arrival: Option<watch::Sender<Arrival>> = None;

    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                state.metrics.upload_rejected(Rejection::Incomplete);
                info!(job_id = %id, received, error = %err, "upload aborted by the client");
                return Err(Error::UploadIncomplete(err.to_string()));
            }
        };
        received += chunk.len() as u64;
        if received > state.max_upload_bytes {
            state.metrics.upload_rejected(Rejection::TooLarge);
            drop(arrival.take());
            drop(writer);
            drop(guard); // remove the partial file before draining
            drop(object.take());
            drain(&mut stream).await;
            return Err(Error::PayloadTooLarge {
                limit: state.max_upload_bytes,
            });
        }
        if received > storage_left {
            info!(job_id = %id, received, "aborting upload: owner's storage quota reached");
            drop(arrival.take());
            drop(writer);
            drop(guard);
            drain(&mut stream).await;
            return Err(Error::StorageQuotaExceeded {
                limit: state.quota.max_spooled_bytes,
            });
        }
        writer.write_all(&chunk).await?;
        if let Some(object) = object.as_mut() {
            object.write(chunk.clone()).await?;
        }
        if let Some(bytes) = head.as_mut() {
            let room = early::SNIFF_LIMIT.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            match early::layout(bytes) {
                Layout::Unknown => {}
                Layout::NeedsSeeking => head = None,
                Layout::Sequential => {
                    head = None;
                    arrival = start_early(&state, &id, &incoming).await;
                }
            }
        }
        if let Some(arrival) = &arrival {
            // What the buffered writer still holds is not in the file yet.
            let on_disk = received - writer.buffer().len() as u64;
            arrival.send_replace(Arrival::Receiving { on_disk });
        }
        if received >= next_disk_check {
            next_disk_check = received.saturating_add(DISK_CHECK_EVERY);
            if state.spool.free_space()? < state.min_free_disk {
                state.metrics.upload_rejected(Rejection::LowDisk);
                warn!(job_id = %id, received, "aborting upload: disk space fell below --min-free-disk");
                return Err(Error::InsufficientStorage);
            }
        }
    }
    if declared.is_some_and(|n| n != received) {
        state.metrics.upload_rejected(Rejection::Incomplete);
        return Err(Error::UploadIncomplete("length mismatch".into()));
    }
    if received == 0 {
        return Err(Error::bad_request("empty_upload", "Upload body is empty"));
    }
    writer.flush().await?;
    if let Some(arrival) = &arrival {
        arrival.send_replace(Arrival::Received { total: received });
    }
    let file = writer.into_inner();
    file.sync_all().await?;
    drop(file);

    // The upload is complete: put it where every worker finds it, then record the job.
    // (The guard then removes the spool file if it is only scratch.)
    let placed = state.media.place_upload(&id, &incoming, object).await?;
    let new_job = NewJob {
        id: id.clone(),
        owner,
        filename: names::output_filename(&source_filename),
        source_filename,
        size_bytes: received,
        created_at: now_ms(),
        started_at: arrival
            .is_some()
            .then(|| now_ms() - started.elapsed().as_millis() as i64),
        callback_url,
    };
    // Checked again with the insert: concurrent uploads of one owner may all have
    // passed the check at admission.
    let quota = state.quota;
    let (job, lease) = state
        .store
        .run(move |s| s.insert(new_job, &quota, now_ms()))
        .await?;
    placed.keep();
    drop(guard);
    state.metrics.upload_accepted(received);
    match (arrival, lease) {
        (Some(arrival), Some(lease)) => {
            let leased = Leased {
                job: job.clone(),
                lease,
            };
            arrival.send_replace(Arrival::Recorded(Box::new(leased)));
        }
        // Without a lease nobody converts it early; a queued job wakes a worker.
        _ => state.wake.notify_one(),
    }
    info!(
        job_id = %job.id,
        owner = %job.owner,
        size_bytes = received,
        seconds = started.elapsed().as_secs_f64(),
        status = %job.status,
        "upload received; job recorded"
    );
    Ok(accepted(job))
}

/// Starts converting the upload being written to `incoming` if a worker is free.
/// Returns the channel that keeps that conversion informed.
async fn start_early(
    state: &AppState,
    id: &str,
    incoming: &std::path::Path,
) -> Option<watch::Sender<Arrival>> {
    let ctx = &state.conversions;
    if ctx.early_start_patience.is_zero() || ctx.stop.is_cancelled() {
        return None;
    }
    let slot = ctx.slots.clone().try_acquire_owned().ok()?;
    // Opened here, before the handler can rename the file into `inputs/`.
    let upload = match tokio::fs::File::open(incoming).await {
        Ok(file) => file,
        Err(err) => {
            warn!(job_id = %id, error = %err, "cannot reopen the upload; converting it afterwards");
            return None;
        }
    };
    let (sender, receiver) = watch::channel(Arrival::Receiving { on_disk: 0 });
    tokio::spawn(
        worker::convert_arriving(ctx.clone(), id.to_string(), upload, receiver, slot)
            .instrument(info_span!("job", job_id = %id, worker = "early")),
    );
    Some(sender)
}

// ---------------------------------------------------------------------------------------
// Download

async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let job = load_job(&state, &id).await?;
    if job.status != crate::job::JobStatus::Completed {
        return Err(Error::JobNotReady(job.status));
    }
    if job.expired {
        return Err(Error::OutputExpired);
    }
    let output = state
        .media
        .open_output(&job)
        .await?
        .ok_or(Error::OutputExpired)?;
    let (len, modified) = (output.len, output.modified);
    let mtime_secs = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{}-{len:x}-{mtime_secs:x}\"", &job.id[4..]);

    // Honour Range only if If-Range (when sent) still matches this representation.
    let if_range_ok = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) if v.trim() == etag => true,
        Some(v) => match (httpdate::parse_http_date(v.trim()), modified) {
            (Ok(date), Some(modified)) => {
                let secs = |t: std::time::SystemTime| {
                    t.duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                };
                secs(date) == secs(modified)
            }
            _ => false,
        },
    };
    let decision = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if if_range_ok => parse_range(range, len),
        _ => RangeDecision::Full,
    };
    let (status, start, count) = match decision {
        RangeDecision::Full => (StatusCode::OK, 0, len),
        RangeDecision::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeDecision::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size: len }),
    };
    let body = output.body(start, count).await?;

    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&names::content_disposition(&job.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(modified) = modified
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        h.insert(header::LAST_MODIFIED, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_optional_and_a_bad_one_refused() {
        assert_eq!(parse_wait(None).unwrap(), None);
        assert_eq!(
            parse_wait(Some("30")).unwrap(),
            Some(Duration::from_secs(30))
        );
        let refusal = parse_wait(Some("0")).unwrap_err();
        assert_eq!(refusal.parts().1, "invalid_query");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_extraction() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer(&h), None);
    }
}
