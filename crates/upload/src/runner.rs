//! The conversion runner's HTTP API (runner/README.md), behind its shared token.

use std::fmt::Display;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use spin_sdk::http::conversions::TryIntoOutgoingRequest;
use spin_sdk::http::{
    IncomingResponse, Method, OutgoingRequest, Request, RequestBuilder, Response,
};
use spinmesh_api::{ApiError, Page};
use spinmesh_jobs::webhook::{CALLBACK_URL_HEADER, WebhookSecret};
use spinmesh_jobs::{PASSED_ON, UPLOAD_NOT_FOUND, Upload, is_upload_id};
use spinmesh_media::job::{RunnerJob, is_job_id, visible_to};
use spinmesh_outbound::{Timeouts, open, send};

/// How long a JSON call to the runner, or its answer to a complete upload, may take: it
/// answers from its job store.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a download may wait for the runner's first byte, and then between bytes;
/// also the longest pause in an event stream, which sends a heartbeat every 15 s.
const DOWNLOAD_STALL: Duration = Duration::from_secs(30);
/// An upload's answer comes only once its body, sent as slowly as the client sends it, is
/// complete; the connection and each byte the runner sends are bounded.
pub const UPLOAD_TIMEOUTS: Timeouts = Timeouts {
    connect: ANSWER_TIMEOUT,
    first_byte: None,
    between_bytes: DOWNLOAD_STALL,
};

pub struct Runner {
    base_url: String,
    token: String,
}

/// The job an upload asks the runner for, besides its bytes.
pub struct NewJob<'a> {
    pub owner: &'a str,
    /// The client's filename, sanitised.
    pub filename: &'a str,
    /// Where the job's webhook goes, its syntax checked
    /// (`spinmesh_jobs::webhook::check_callback_url`); the runner judges its host.
    pub callback_url: Option<&'a str>,
}

impl Runner {
    pub fn new(url: &str, token: String) -> Self {
        Self {
            base_url: url.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn request(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        let url = format!("{}{path_and_query}", self.base_url);
        spinmesh_outbound::request(method, &url, Some(&self.token))
    }

    async fn call(&self, request: Request) -> Result<Response, ApiError> {
        send(request, ANSWER_TIMEOUT).await.map_err(unavailable)
    }

    /// The job `id` when `user_id` (or an admin) may see it. To anyone else, and for a
    /// string that is not a job id, it is the same 404 as an unknown job.
    pub async fn visible_job(
        &self,
        id: &str,
        user_id: &str,
        is_admin: bool,
    ) -> Result<RunnerJob, ApiError> {
        let not_found = || ApiError::not_found("Job not found");
        if !is_job_id(id) {
            return Err(not_found());
        }
        let job = self.job(id).await?;
        if visible_to(&job, user_id, is_admin) {
            Ok(job)
        } else {
            Err(not_found())
        }
    }

    /// `id` must be a valid job id.
    async fn job(&self, id: &str) -> Result<RunnerJob, ApiError> {
        let response = self
            .call(self.request(Method::Get, &format!("/jobs/{id}")).build())
            .await?;
        expect_json(&response, 200)
    }

    /// The job `id` (a valid id) once its status or progress differs from when the
    /// runner got the request, or as it is after `wait_secs`: the call may take that
    /// long on top of the usual answer time.
    pub async fn job_when_changed(&self, id: &str, wait_secs: u64) -> Result<RunnerJob, ApiError> {
        let request = self
            .request(Method::Get, &format!("/jobs/{id}?wait={wait_secs}"))
            .build();
        let limit = ANSWER_TIMEOUT + Duration::from_secs(wait_secs);
        let response = send(request, limit).await.map_err(unavailable)?;
        expect_json(&response, 200)
    }

    /// Puts a failed job (a valid id) back in the queue.
    pub async fn retry(&self, id: &str) -> Result<RunnerJob, ApiError> {
        let response = self
            .call(
                self.request(Method::Post, &format!("/jobs/{id}/retry"))
                    .build(),
            )
            .await?;
        expect_json(&response, 202)
    }

    /// The event stream of job `id` (a valid id), resumed after event `last_event_id`,
    /// with its body unread.
    pub async fn events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Result<IncomingResponse, ApiError> {
        let mut request = self.request(Method::Get, &format!("/jobs/{id}/events"));
        if let Some(seen) = last_event_id {
            request.header("last-event-id", seen.to_string());
        }
        let timeouts = Timeouts {
            connect: ANSWER_TIMEOUT,
            first_byte: Some(ANSWER_TIMEOUT),
            between_bytes: DOWNLOAD_STALL,
        };
        let response = open(request.build(), timeouts).await.map_err(unavailable)?;
        match response.status() {
            200 => Ok(response),
            _ => Err(refused(response).await),
        }
    }

    /// One page of jobs, newest first, of `owner` (everyone's for `None`), and the total.
    pub async fn jobs(
        &self,
        owner: Option<&str>,
        page: Page,
    ) -> Result<(Vec<RunnerJob>, u64), ApiError> {
        let owner =
            owner.map(|owner| format!("owner={}&", utf8_percent_encode(owner, NON_ALPHANUMERIC)));
        let query = format!(
            "/jobs?{}limit={}&offset={}",
            owner.unwrap_or_default(),
            page.limit,
            page.offset
        );
        let response = self.call(self.request(Method::Get, &query).build()).await?;
        let jobs: Vec<RunnerJob> = expect_json(&response, 200)?;
        let total = response
            .header("x-total-count")
            .and_then(|value| value.as_str()?.parse().ok())
            .unwrap_or(jobs.len() as u64);
        Ok((jobs, total))
    }

    /// Cancels a queued or running job and removes the files of any job.
    pub async fn cancel(&self, id: &str) -> Result<RunnerJob, ApiError> {
        let response = self
            .call(self.request(Method::Delete, &format!("/jobs/{id}")).build())
            .await?;
        expect_json(&response, 200)
    }

    /// The MP3 of a completed job, `200` or `206` for a `range`, with its body unread.
    pub async fn output(
        &self,
        id: &str,
        range: Option<&str>,
        if_range: Option<&str>,
    ) -> Result<IncomingResponse, ApiError> {
        let mut request = self.request(Method::Get, &format!("/jobs/{id}/output"));
        for (name, value) in [("range", range), ("if-range", if_range)] {
            if let Some(value) = value {
                request.header(name, value);
            }
        }
        let timeouts = Timeouts {
            connect: ANSWER_TIMEOUT,
            first_byte: Some(DOWNLOAD_STALL),
            between_bytes: DOWNLOAD_STALL,
        };
        let response = open(request.build(), timeouts).await.map_err(unavailable)?;
        match response.status() {
            200 | 206 => Ok(response),
            416 => {
                let content_range = response.headers().get("content-range").into_iter().next();
                let error = failure(416);
                Err(
                    match content_range.and_then(|value| String::from_utf8(value).ok()) {
                        Some(value) => error.with_header("content-range", value),
                        None => error,
                    },
                )
            }
            status => Err(failure(status)),
        }
    }

    /// The key `owner`'s webhooks are signed with; 404 `webhooks_disabled` (passed on)
    /// when the runner has no webhook secret.
    pub async fn webhook_secret(&self, owner: &str) -> Result<WebhookSecret, ApiError> {
        let mut request = self.request(Method::Get, "/webhook-secret");
        request.header("x-owner-id", owner);
        let response = self.call(request.build()).await?;
        expect_json(&response, 200)
    }

    /// A `POST /jobs` for `job`, its body still to be written.
    pub fn upload_request(&self, job: &NewJob<'_>) -> Result<OutgoingRequest, ApiError> {
        let mut request = self.request(Method::Post, "/jobs");
        request
            .header("content-type", "application/octet-stream")
            .header("x-owner-id", job.owner)
            .header("x-filename", encode_filename(job.filename));
        with_callback_url(&mut request, job.callback_url);
        streaming(request)
    }

    /// Records a resumable upload of `length` bytes of `owner`'s file `filename`, whose
    /// job's webhook goes to `callback_url`.
    pub async fn create_upload(
        &self,
        owner: &str,
        filename: &str,
        length: u64,
        callback_url: Option<&str>,
    ) -> Result<Upload, ApiError> {
        let mut request = self.request(Method::Post, "/uploads");
        request
            .header("x-owner-id", owner)
            .header("x-filename", encode_filename(filename))
            .header("upload-length", length.to_string());
        with_callback_url(&mut request, callback_url);
        let response = self.call(request.build()).await?;
        expect_json(&response, 201)
    }

    /// `owner`'s resumable upload `id`; anything else (another user's, or a string that is
    /// not an upload id) is the same 404 as an unknown upload.
    pub async fn upload(&self, id: &str, owner: &str) -> Result<Upload, ApiError> {
        let id = upload_id(id)?;
        let mut request = self.request(Method::Get, &format!("/uploads/{id}"));
        request.header("x-owner-id", owner);
        let response = self.call(request.build()).await?;
        expect_json(&response, 200)
    }

    /// A `PATCH /uploads/{id}` appending at `offset`, its body still to be written.
    pub fn append_request(
        &self,
        id: &str,
        owner: &str,
        offset: u64,
    ) -> Result<OutgoingRequest, ApiError> {
        let id = upload_id(id)?;
        let mut request = self.request(Method::Patch, &format!("/uploads/{id}"));
        request
            .header("content-type", "application/octet-stream")
            .header("x-owner-id", owner)
            .header("upload-offset", offset.to_string());
        streaming(request)
    }

    /// Terminates `owner`'s resumable upload `id`.
    pub async fn terminate_upload(&self, id: &str, owner: &str) -> Result<(), ApiError> {
        let id = upload_id(id)?;
        let mut request = self.request(Method::Delete, &format!("/uploads/{id}"));
        request.header("x-owner-id", owner);
        let response = self.call(request.build()).await?;
        match *response.status() {
            204 => Ok(()),
            _ => expect_json::<serde_json::Value>(&response, 204).map(drop),
        }
    }
}

fn encode_filename(filename: &str) -> String {
    utf8_percent_encode(filename, NON_ALPHANUMERIC).to_string()
}

/// `id` when it is an upload id, so it can go into a runner URL as it is.
fn upload_id(id: &str) -> Result<&str, ApiError> {
    if is_upload_id(id) {
        Ok(id)
    } else {
        Err(ApiError::new(404, UPLOAD_NOT_FOUND, "Upload not found"))
    }
}

/// `request` as an outgoing request whose body the caller streams.
fn streaming(request: RequestBuilder) -> Result<OutgoingRequest, ApiError> {
    let mut request = request;
    // The request is built with an empty buffered body that is never written: the caller
    // streams the real one through `OutgoingRequest::body`.
    let (request, _empty) = request
        .build()
        .try_into_outgoing_request()
        .map_err(|error| ApiError::internal_logged(format_args!("runner request: {error}")))?;
    Ok(request)
}

/// The upload as the runner has it after an append, or why the append was refused.
pub async fn appended(sent: Result<IncomingResponse, impl Display>) -> Result<Upload, ApiError> {
    let response = sent.map_err(unavailable)?;
    match response.status() {
        200 => {
            let body = response
                .into_body()
                .await
                .map_err(|error| unavailable(error.to_debug_string()))?;
            parse(&body)
        }
        _ => Err(refused(response).await),
    }
}

/// Tells the runner where a job's webhook goes (`X-Callback-Url`), on any request that
/// creates a job from an upload. The runner answers 400 `callback_not_allowed` (or
/// `invalid_callback_url`, `webhooks_disabled`) before it reads the body, and
/// [`accepted`] passes that on.
pub fn with_callback_url(request: &mut RequestBuilder, callback_url: Option<&str>) {
    if let Some(url) = callback_url {
        request.header(CALLBACK_URL_HEADER, url);
    }
}

/// The job the runner created from an upload, or why it did not.
pub async fn accepted(sent: Result<IncomingResponse, impl Display>) -> Result<RunnerJob, ApiError> {
    let response = sent.map_err(unavailable)?;
    match response.status() {
        202 => {
            let body = response
                .into_body()
                .await
                .map_err(|error| unavailable(error.to_debug_string()))?;
            parse(&body)
        }
        400 | 429 | 507 => Err(refused(response).await),
        status => Err(failure(status)),
    }
}

/// The client's error for the runner's refusal `response`: passed on when it concerns
/// the user ([`passed_on`]), else the usual [`failure`].
async fn refused(response: IncomingResponse) -> ApiError {
    let status = response.status();
    let retry_after = header_value(&response, "retry-after");
    match response.into_body().await {
        Ok(body) => passed_on(status, &body, retry_after).unwrap_or_else(|| failure(status)),
        Err(error) => unavailable(error.to_debug_string()),
    }
}

fn header_value(response: &IncomingResponse, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|value| String::from_utf8(value).ok())
}

/// A refusal of the runner's that concerns the user's own use or jobs ([`PASSED_ON`]),
/// passed on as it is: its code and message are written for them.
fn passed_on(status: u16, body: &[u8], retry_after: Option<String>) -> Option<ApiError> {
    #[derive(Deserialize)]
    struct Refusal {
        code: String,
        message: String,
    }
    let refusal: Refusal = serde_json::from_slice(body).ok()?;
    let code = PASSED_ON.into_iter().find(|code| *code == refusal.code)?;
    let error = ApiError::new(status, code, refusal.message);
    // Only delay-seconds, so nothing else the runner sends ends up in a header.
    let retry_after =
        retry_after.filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()));
    Some(match retry_after {
        Some(seconds) => error.with_header("retry-after", seconds),
        None => error,
    })
}

fn expect_json<T: DeserializeOwned>(response: &Response, expected: u16) -> Result<T, ApiError> {
    match *response.status() {
        status if status == expected => parse(response.body()),
        status => {
            let retry_after = response
                .header("retry-after")
                .and_then(|value| value.as_str())
                .map(str::to_string);
            Err(passed_on(status, response.body(), retry_after).unwrap_or_else(|| failure(status)))
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::internal_logged(format_args!("runner sent unexpected JSON: {error}"))
    })
}

/// The runner could not be reached or failed: logged, and a 503 for the client.
pub fn unavailable(cause: impl Display) -> ApiError {
    eprintln!("conversion runner unavailable: {cause}");
    ApiError::service_unavailable("Conversion service is unavailable")
}

/// The client-facing error for a runner status other than the expected one.
fn failure(status: u16) -> ApiError {
    match status {
        404 => ApiError::not_found("Job not found"),
        409 => ApiError::new(409, "job_not_ready", "The job has not completed yet"),
        410 => ApiError::new(
            410,
            "output_expired",
            "The converted file is no longer available",
        ),
        413 => ApiError::new(
            413,
            "payload_too_large",
            "File is too large for the conversion service",
        ),
        416 => ApiError::new(
            416,
            "range_not_satisfiable",
            "The requested range is not satisfiable",
        ),
        507 => ApiError::new(
            507,
            "insufficient_storage",
            "The conversion service is out of storage; try again later",
        ),
        500..=599 => unavailable(format_args!("it answered {status}")),
        // 400 and 401 mean this component sent a bad request or the wrong token.
        _ => ApiError::internal_logged(format_args!("conversion runner answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_statuses_map_to_client_errors() {
        let cases = [
            (404, 404, "not_found"),
            (409, 409, "job_not_ready"),
            (410, 410, "output_expired"),
            (413, 413, "payload_too_large"),
            (416, 416, "range_not_satisfiable"),
            (507, 507, "insufficient_storage"),
            (500, 503, "service_unavailable"),
            (503, 503, "service_unavailable"),
            (400, 500, "internal_error"),
            (401, 500, "internal_error"),
            (200, 500, "internal_error"),
        ];
        for (runner_status, status, code) in cases {
            let error = failure(runner_status);
            assert_eq!(
                (error.status, error.code.as_ref()),
                (status, code),
                "{runner_status}"
            );
        }
    }

    #[test]
    fn refusals_about_the_users_jobs_reach_them_as_the_runner_worded_them() {
        let body =
            br#"{"status":"429","message":"You already have 5","code":"job_quota_exceeded"}"#;
        let error = passed_on(429, body, Some("30".into())).unwrap();
        assert_eq!(
            (error.status, error.code.as_ref(), error.message.as_ref()),
            (429, "job_quota_exceeded", "You already have 5")
        );
        assert_eq!(error.retry_after(), Some(30));
        let body = br#"{"status":"507","message":"Your files","code":"storage_quota_exceeded"}"#;
        let error = passed_on(507, body, Some("soon".into())).unwrap();
        assert_eq!(
            (error.status, error.code.as_ref()),
            (507, "storage_quota_exceeded")
        );
        assert_eq!(
            error.retry_after(),
            None,
            "only delay-seconds are passed on"
        );
        // The runner's own trouble keeps the component's wording.
        let body =
            br#"{"status":"507","message":"The runner is low","code":"insufficient_storage"}"#;
        assert!(passed_on(507, body, None).is_none());
        assert!(passed_on(429, b"not json", None).is_none());
        let body = br#"{"status":"409","message":"The job's uploaded file was removed","code":"input_gone"}"#;
        let error = passed_on(409, body, None).unwrap();
        assert_eq!((error.status, error.code.as_ref()), (409, "input_gone"));
        let body = br#"{"status":"503","message":"Too many","code":"too_many_waiters"}"#;
        let error = passed_on(503, body, Some("5".into())).unwrap();
        assert_eq!(error.retry_after(), Some(5));
    }

    #[test]
    fn refused_callbacks_reach_the_user_and_other_bad_requests_do_not() {
        let body = br#"{"status":"400","message":"callback_url's host is private","code":"callback_not_allowed"}"#;
        let error = passed_on(400, body, None).unwrap();
        assert_eq!(
            (error.status, error.code.as_ref(), error.message.as_ref()),
            (
                400,
                "callback_not_allowed",
                "callback_url's host is private"
            )
        );
        for code in ["invalid_callback_url", "webhooks_disabled"] {
            let body = format!(r#"{{"status":"400","message":"m","code":"{code}"}}"#);
            assert!(passed_on(400, body.as_bytes(), None).is_some(), "{code}");
        }
        // A header the component got wrong stays the component's fault.
        let body = br#"{"status":"400","message":"X-Owner-Id","code":"invalid_owner"}"#;
        assert!(passed_on(400, body, None).is_none());
        let body = br#"{"status":"404","message":"No secret","code":"webhooks_disabled"}"#;
        assert_eq!(passed_on(404, body, None).unwrap().status, 404);
    }

    #[test]
    fn messages_reveal_nothing_about_the_runner() {
        for status in [400, 401, 500, 502] {
            let error = failure(status);
            assert!(
                !error.message.contains(&status.to_string()),
                "{}",
                error.message
            );
            assert!(!error.message.contains("runner"), "{}", error.message);
        }
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        let runner = Runner::new("http://127.0.0.1:3001/", "t".into());
        assert_eq!(runner.base_url, "http://127.0.0.1:3001");
    }
}
