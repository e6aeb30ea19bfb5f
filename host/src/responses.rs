//! Responses the host writes itself, without a component, and the one place
//! the host's own refusals map to HTTP: the project's JSON error shape
//! `{"status": "413", "message": "...", "code": "payload_too_large"}`.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http_body_util::{BodyExt, Empty, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::BodyFailure;

/// The request-id header, lower-case as spin-sdk stores headers.
pub const REQUEST_ID: &str = "x-request-id";

/// Seconds a client is asked to wait before retrying a request the app was too slow for.
const RETRY_AFTER_SECS: &str = "1";

pub fn empty_response(status: u16) -> http::Response<HyperOutgoingBody> {
    http::Response::builder()
        .status(status)
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("valid status")
}

pub fn text_response(status: u16, text: impl Into<Bytes>) -> http::Response<HyperOutgoingBody> {
    http::Response::builder()
        .status(status)
        .body(
            Full::new(text.into())
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("valid status")
}

/// Why the host answered a request instead of the component.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("the request body stopped arriving")]
    BodyTimeout,
    #[error("the connection failed while the request body was arriving")]
    BodyAborted,
    #[error("the app did not answer in time")]
    AppTimeout,
}

impl From<BodyFailure> for Refusal {
    fn from(failure: BodyFailure) -> Self {
        match failure {
            BodyFailure::TooLarge { limit } => Refusal::PayloadTooLarge { limit },
            BodyFailure::Stalled => Refusal::BodyTimeout,
            BodyFailure::Aborted => Refusal::BodyAborted,
        }
    }
}

impl Refusal {
    fn status_and_code(self) -> (u16, &'static str) {
        match self {
            Refusal::PayloadTooLarge { .. } => (413, "payload_too_large"),
            Refusal::BodyTimeout => (408, "request_timeout"),
            Refusal::BodyAborted => (400, "bad_request"),
            Refusal::AppTimeout => (503, "timeout"),
        }
    }

    /// The JSON error response, carrying the request's id.
    pub fn response(self, request_id: &str) -> http::Response<HyperOutgoingBody> {
        let (status, code) = self.status_and_code();
        let message = match self {
            Refusal::PayloadTooLarge { limit } => format!("Request body exceeds {limit} bytes"),
            Refusal::BodyTimeout => "The request body stopped arriving".to_string(),
            Refusal::BodyAborted => "The request body was cut off".to_string(),
            Refusal::AppTimeout => "The service did not answer in time; try again".to_string(),
        };
        let body =
            serde_json::json!({ "status": status.to_string(), "message": message, "code": code });
        let mut response = text_response(status, body.to_string());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(id) = HeaderValue::try_from(request_id) {
            headers.insert(REQUEST_ID, id);
        }
        match self {
            // The rest of the body will not be read: close once the answer is out.
            Refusal::PayloadTooLarge { .. } | Refusal::BodyTimeout | Refusal::BodyAborted => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Refusal::AppTimeout => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
        }
        response
    }
}
