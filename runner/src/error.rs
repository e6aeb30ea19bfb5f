//! The crate's error type and its mapping to the HTTP error shape the whole app uses:
//! `{"status": "404", "message": "Job not found", "code": "job_not_found"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use spinmesh_jobs::webhook;

use crate::job::JobStatus;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or invalid runner token")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("job not found")]
    JobNotFound,
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("job is {0}, not completed")]
    JobNotReady(JobStatus),
    #[error("output expired")]
    OutputExpired,
    #[error("job is {0}; only failed jobs can be retried")]
    JobNotRetryable(JobStatus),
    #[error("job's input was removed")]
    InputGone,
    #[error("too many requests waiting for jobs to change")]
    TooManyWaiters,
    #[error("owner has {limit} event streams open")]
    TooManyEventStreams { limit: usize },
    #[error("upload larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("range not satisfiable for {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("not enough free disk space")]
    InsufficientStorage,
    #[error("owner has {limit} unfinished jobs")]
    JobQuotaExceeded { limit: u64 },
    #[error("owner's files would exceed {limit} bytes")]
    StorageQuotaExceeded { limit: u64 },
    #[error("resumable upload not found")]
    UploadNotFound,
    #[error("resumable upload is at offset {offset}")]
    UploadOffsetMismatch { offset: u64 },
    #[error("resumable upload is being written by another request")]
    UploadLocked,
    #[error("append goes beyond the upload's length of {length} bytes")]
    UploadLengthExceeded { length: u64 },
    #[error("upload body ended early: {0}")]
    UploadIncomplete(String),
    #[error("invalid callback URL: {0}")]
    InvalidCallbackUrl(spinmesh_jobs::webhook::CallbackUrlError),
    /// The callback's host is not one webhooks may go to (the reason is logged).
    #[error("callback URL not allowed")]
    CallbackNotAllowed,
    /// An upload named a callback URL, but no webhook secret is configured.
    #[error("webhooks are off")]
    WebhooksDisabled,
    /// The webhook secret was asked for, but none is configured.
    #[error("no webhook secret")]
    NoWebhookSecret,
    #[error("job store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("job store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("job store connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database returned something the runner cannot use (or the pool could not be
    /// set up).
    #[error("job database: {0}")]
    Database(String),
    /// The object store holding the media failed or could not be reached.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// Whether the underlying cause is a full disk.
    fn is_disk_full(&self) -> bool {
        match self {
            Error::Io(err) => err.kind() == std::io::ErrorKind::StorageFull,
            Error::Store(rusqlite::Error::SqliteFailure(err, _)) => {
                err.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }

    fn is_store_busy(&self) -> bool {
        matches!(
            self,
            Error::Store(rusqlite::Error::SqliteFailure(err, _))
                if matches!(err.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// Whether the job store cannot be reached (connection lost, server shutting down or
    /// starting): worth retrying, unlike an error the server reports about a query.
    pub fn is_store_unreachable(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Postgres(err) => match err.as_db_error() {
                None => true,
                // Classes 08 (connection exception) and 57 (operator intervention).
                Some(db) => matches!(&db.code().code()[..2], "08" | "57"),
            },
            _ => false,
        }
    }

    /// HTTP status, stable code and a client-safe message (no paths, SQL or internals).
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Error::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid runner token".into(),
            ),
            Error::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            Error::JobNotFound => (
                StatusCode::NOT_FOUND,
                "job_not_found",
                "Job not found".into(),
            ),
            Error::RouteNotFound => (StatusCode::NOT_FOUND, "not_found", "Not found".into()),
            Error::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed".into(),
            ),
            Error::JobNotReady(status) => {
                let message = match status {
                    JobStatus::Queued | JobStatus::Running => {
                        format!("Job is not completed yet (status: {status})")
                    }
                    JobStatus::Failed => "Job failed; there is no output".into(),
                    JobStatus::Cancelled => "Job was cancelled; there is no output".into(),
                    JobStatus::Completed => "Job output is not available".into(),
                };
                (StatusCode::CONFLICT, "job_not_ready", message)
            }
            Error::OutputExpired => (
                StatusCode::GONE,
                "output_expired",
                "Job output has expired and was removed".into(),
            ),
            Error::JobNotRetryable(status) => (
                StatusCode::CONFLICT,
                spinmesh_jobs::JOB_NOT_RETRYABLE,
                format!("Job is {status}; only a failed job can be retried"),
            ),
            Error::InputGone => (
                StatusCode::CONFLICT,
                spinmesh_jobs::INPUT_GONE,
                "The job's uploaded file was removed; upload it again".into(),
            ),
            Error::TooManyWaiters => (
                StatusCode::SERVICE_UNAVAILABLE,
                spinmesh_jobs::TOO_MANY_WAITERS,
                "Too many requests are waiting for jobs to change; retry shortly".into(),
            ),
            Error::TooManyEventStreams { limit } => (
                StatusCode::TOO_MANY_REQUESTS,
                spinmesh_jobs::TOO_MANY_EVENT_STREAMS,
                format!("You already have {limit} job event streams open, the most allowed"),
            ),
            Error::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("Upload exceeds the limit of {limit} bytes"),
            ),
            Error::UploadNotFound => (
                StatusCode::NOT_FOUND,
                spinmesh_jobs::UPLOAD_NOT_FOUND,
                "Upload not found".into(),
            ),
            Error::UploadOffsetMismatch { offset } => (
                StatusCode::CONFLICT,
                spinmesh_jobs::UPLOAD_OFFSET_MISMATCH,
                format!("Upload-Offset does not match the upload's offset, {offset}"),
            ),
            Error::UploadLocked => (
                StatusCode::LOCKED,
                spinmesh_jobs::UPLOAD_LOCKED,
                "Another request is writing to this upload; retry after checking its offset".into(),
            ),
            Error::UploadLengthExceeded { length } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                spinmesh_jobs::UPLOAD_LENGTH_EXCEEDED,
                format!("The data goes beyond the upload's length of {length} bytes"),
            ),
            Error::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                "Requested range is not satisfiable".into(),
            ),
            Error::InvalidCallbackUrl(reason) => (
                StatusCode::BAD_REQUEST,
                webhook::INVALID_CALLBACK_URL,
                reason.to_string(),
            ),
            Error::CallbackNotAllowed => (
                StatusCode::BAD_REQUEST,
                webhook::CALLBACK_NOT_ALLOWED,
                "callback_url's host may not be called: it must resolve to public \
                 addresses only"
                    .into(),
            ),
            Error::WebhooksDisabled => (
                StatusCode::BAD_REQUEST,
                webhook::WEBHOOKS_DISABLED,
                "Webhooks are not enabled on this service; upload without callback_url".into(),
            ),
            Error::NoWebhookSecret => (
                StatusCode::NOT_FOUND,
                webhook::WEBHOOKS_DISABLED,
                "Webhooks are not enabled on this service, so there is no signing secret".into(),
            ),
            Error::UploadIncomplete(_) => (
                StatusCode::BAD_REQUEST,
                "upload_incomplete",
                "Upload body ended before it was complete".into(),
            ),
            Error::JobQuotaExceeded { limit } => (
                StatusCode::TOO_MANY_REQUESTS,
                spinmesh_jobs::JOB_QUOTA_EXCEEDED,
                format!(
                    "You already have {limit} conversions queued or running, the most allowed \
                     at a time; upload again once one has finished"
                ),
            ),
            Error::StorageQuotaExceeded { limit } => (
                StatusCode::INSUFFICIENT_STORAGE,
                spinmesh_jobs::STORAGE_QUOTA_EXCEEDED,
                format!(
                    "Your files on the conversion service would take more than the {limit} \
                     bytes allowed; delete finished jobs or wait for them to expire"
                ),
            ),
            Error::InsufficientStorage => insufficient_storage(),
            err if err.is_disk_full() => insufficient_storage(),
            err if err.is_store_busy() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_busy",
                "Job store is busy; retry shortly".into(),
            ),
            err if err.is_store_unreachable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Job store is unavailable; retry shortly".into(),
            ),
            Error::ObjectStore(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "Media storage is unavailable; retry shortly".into(),
            ),
            Error::Store(_)
            | Error::Postgres(_)
            | Error::Pool(_)
            | Error::Database(_)
            | Error::Task(_)
            | Error::Io(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error".into(),
            ),
        }
    }
}

fn insufficient_storage() -> (StatusCode, &'static str, String) {
    (
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
        "The runner is low on disk space and cannot accept uploads right now; retry later".into(),
    )
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub status: String,
    pub message: String,
    pub code: &'static str,
}

/// Builds an error response in the shared shape.
pub fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = ErrorBody {
        status: status.as_u16().to_string(),
        message,
        code,
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        }
        let mut response = error_response(status, code, message);
        let headers = response.headers_mut();
        match &self {
            Error::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::RangeNotSatisfiable { size } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            Error::TooManyWaiters | Error::TooManyEventStreams { .. } => {
                // A wait or a stream ends within seconds to minutes; no need to back off long.
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::INSUFFICIENT_STORAGE
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_do_not_leak_internals() {
        let io = Error::Io(std::io::Error::other(
            "/secret/path/runner.db: permission denied",
        ));
        let (status, code, message) = io.parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "internal_error");
        assert!(!message.contains("secret"));
    }

    #[test]
    fn disk_full_maps_to_507() {
        let err = Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(err.parts().0, StatusCode::INSUFFICIENT_STORAGE);
        let err = Error::Store(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert_eq!(err.parts().1, "insufficient_storage");
    }

    #[test]
    fn quota_refusals_say_which_quota_and_when_to_retry() {
        let response = Error::JobQuotaExceeded { limit: 5 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        let (status, code, message) = Error::StorageQuotaExceeded { limit: 2048 }.parts();
        assert_eq!(
            (status, code),
            (StatusCode::INSUFFICIENT_STORAGE, "storage_quota_exceeded")
        );
        assert!(message.contains("2048 bytes"), "{message}");
        assert_eq!(
            Error::JobQuotaExceeded { limit: 5 }.parts().1,
            "job_quota_exceeded"
        );
    }

    #[test]
    fn webhook_refusals_have_their_codes() {
        let cases = [
            (
                Error::InvalidCallbackUrl(webhook::CallbackUrlError::UserInfo),
                StatusCode::BAD_REQUEST,
                "invalid_callback_url",
            ),
            (
                Error::CallbackNotAllowed,
                StatusCode::BAD_REQUEST,
                "callback_not_allowed",
            ),
            (
                Error::WebhooksDisabled,
                StatusCode::BAD_REQUEST,
                "webhooks_disabled",
            ),
            (
                Error::NoWebhookSecret,
                StatusCode::NOT_FOUND,
                "webhooks_disabled",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(
                (error.parts().0, error.parts().1),
                (status, code),
                "{error:?}"
            );
        }
        let (_, _, message) =
            Error::InvalidCallbackUrl(webhook::CallbackUrlError::UserInfo).parts();
        assert!(message.contains("user name"), "{message}");
    }

    #[test]
    fn busy_store_maps_to_503() {
        let err = Error::Store(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert_eq!(err.parts().0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn object_store_failures_map_to_503_without_details() {
        let err = Error::ObjectStore(object_store::Error::Generic {
            store: "S3",
            source: "connection refused to http://10.0.0.1/bucket".into(),
        });
        let (status, code, message) = err.parts();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "storage_unavailable");
        assert!(!message.contains("10.0.0.1"), "{message}");
    }

    #[test]
    fn status_is_a_string_in_the_body() {
        let body = ErrorBody {
            status: "404".into(),
            message: "Job not found".into(),
            code: "job_not_found",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"status":"404","message":"Job not found","code":"job_not_found"}"#
        );
    }
}
