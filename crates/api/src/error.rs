use std::{borrow::Cow, fmt};

use serde::Serialize;
use spin_sdk::http::{IntoResponse, Response};

/// Result of a handler step that may end the request with an error response.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error response: `{"status":"401","message":"Token has expired","code":"token_expired"}`.
///
/// `code` is stable and machine-readable; `message` is for humans and never carries
/// internals (SQL, paths, panics). A handler may return `ApiResult<Response>` directly:
/// spin-sdk turns the `Err` side into a response through [`IntoResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    headers: Vec<(&'static str, String)>,
    /// The RFC 6749 §5.2 `error` code, for answers of an OAuth 2.0 token endpoint.
    oauth_error: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: String,
    message: &'a str,
    code: &'a str,
    /// Token endpoint answers also carry RFC 6749 §5.2's members, so OAuth client
    /// libraries recognise them as errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
            oauth_error: None,
        }
    }

    /// Adds the OAuth 2.0 `error` member (`invalid_request`, `invalid_client`, …), with
    /// `message` as its `error_description`.
    pub fn with_oauth_error(mut self, error: &'static str) -> Self {
        self.oauth_error = Some(error);
        self
    }

    pub fn oauth_error(&self) -> Option<&'static str> {
        self.oauth_error
    }

    /// Adds a response header (e.g. `Allow`, `Retry-After`).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    /// The `Retry-After` seconds of a 429, if set.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse().ok())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, "bad_request", message)
    }

    pub fn invalid_json() -> Self {
        Self::new(400, "invalid_json", "Request body is not valid JSON")
    }

    /// Well-formed input that does not fit: wrong types, missing fields, bad query values.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    /// A 401 without a bearer challenge (e.g. wrong username or password at login).
    pub fn unauthorized(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(401, code, message)
    }

    // The bearer 401s carry the RFC 6750 §3 challenge.

    pub fn token_missing() -> Self {
        Self::unauthorized("token_missing", "Token is missing!")
            .with_header("www-authenticate", "Bearer")
    }

    pub fn invalid_auth_header() -> Self {
        Self::unauthorized(
            "invalid_auth_header",
            "Authorization header must be 'Bearer <token>'",
        )
        .with_header("www-authenticate", r#"Bearer error="invalid_request""#)
    }

    pub fn token_expired() -> Self {
        Self::unauthorized("token_expired", "Token has expired")
            .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
    }

    pub fn token_invalid() -> Self {
        Self::unauthorized("token_invalid", "Invalid or malformed token")
            .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// `allow` lists the methods the resource supports (RFC 9110 requires `Allow` on 405).
    pub fn method_not_allowed(allow: &[&str]) -> Self {
        Self::new(405, "method_not_allowed", "Method not allowed")
            .with_header("allow", allow.join(", "))
    }

    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(409, "conflict", message)
    }

    pub fn payload_too_large(max_bytes: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("Request body exceeds {max_bytes} bytes"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json",
        )
    }

    pub fn unprocessable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(422, "unprocessable_entity", message)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(
            429,
            "too_many_requests",
            "Too many requests, try again later",
        )
        .with_header("retry-after", retry_after_secs.to_string())
    }

    pub fn service_unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(503, "service_unavailable", message)
    }

    /// The generic 500. Never put the cause in the message; see [`ApiError::internal_logged`].
    pub fn internal() -> Self {
        Self::new(500, "internal_error", "Internal server error")
    }

    /// Writes `detail` to stderr (which Spin keeps as the component log) and returns the
    /// generic 500, so the cause is findable without reaching the client.
    pub fn internal_logged(detail: impl fmt::Display) -> Self {
        eprintln!("internal error: {detail}");
        Self::internal()
    }

    /// The JSON body, `status` as a string.
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            status: self.status.to_string(),
            message: &self.message,
            code: &self.code,
            error: self.oauth_error,
            error_description: self.oauth_error.map(|_| self.message.as_ref()),
        })
        .expect("strings always serialize")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut builder = Response::builder();
        builder
            .status(self.status)
            .header("content-type", "application/json");
        for (name, value) in &self.headers {
            builder.header(*name, value.as_str());
        }
        builder.body(self.body()).build()
    }
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        error.into_response()
    }
}

impl From<spinmesh_authn::Error> for ApiError {
    fn from(error: spinmesh_authn::Error) -> Self {
        use spinmesh_authn::Error as E;
        match error {
            E::Expired => Self::token_expired(),
            E::Invalid(_) => Self::token_invalid(),
            E::Forbidden(role) => Self::forbidden(format!(
                "Insufficient permissions: requires the {role} role"
            )),
            other @ (E::KeyConfig(_) | E::Password(_) | E::Random | E::Signing) => {
                Self::internal_logged(other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use spinmesh_authn::{Error as AuthError, Role};

    use super::*;

    fn parts(error: ApiError) -> (u16, Value, Response) {
        let response: Response = error.into();
        let body = serde_json::from_slice(response.body()).unwrap();
        (*response.status(), body, response)
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.header(name).and_then(|v| v.as_str())
    }

    #[test]
    fn body_shape_is_exact() {
        assert_eq!(
            ApiError::token_expired().body(),
            r#"{"status":"401","message":"Token has expired","code":"token_expired"}"#
        );
    }

    #[test]
    fn oauth_errors_add_the_rfc_6749_members() {
        let error = ApiError::unauthorized("invalid_client", "Invalid client credentials")
            .with_oauth_error("invalid_client");
        assert_eq!(
            serde_json::from_str::<Value>(&error.body()).unwrap(),
            json!({
                "status": "401",
                "message": "Invalid client credentials",
                "code": "invalid_client",
                "error": "invalid_client",
                "error_description": "Invalid client credentials",
            })
        );
    }

    #[test]
    fn response_carries_status_content_type_and_body() {
        let (status, body, response) = parts(ApiError::not_found("User not found"));
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"status": "404", "message": "User not found", "code": "not_found"})
        );
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "retry-after"), None);
    }

    #[test]
    fn every_constructor_has_its_status_and_code() {
        let cases = [
            (ApiError::bad_request("x"), 400, "bad_request"),
            (ApiError::invalid_json(), 400, "invalid_json"),
            (ApiError::invalid_request("x"), 400, "invalid_request"),
            (
                ApiError::unauthorized("invalid_credentials", "x"),
                401,
                "invalid_credentials",
            ),
            (ApiError::token_missing(), 401, "token_missing"),
            (ApiError::invalid_auth_header(), 401, "invalid_auth_header"),
            (ApiError::token_expired(), 401, "token_expired"),
            (ApiError::token_invalid(), 401, "token_invalid"),
            (ApiError::forbidden("x"), 403, "forbidden"),
            (ApiError::not_found("x"), 404, "not_found"),
            (
                ApiError::method_not_allowed(&["GET"]),
                405,
                "method_not_allowed",
            ),
            (ApiError::conflict("x"), 409, "conflict"),
            (ApiError::payload_too_large(10), 413, "payload_too_large"),
            (
                ApiError::unsupported_media_type(),
                415,
                "unsupported_media_type",
            ),
            (ApiError::unprocessable("x"), 422, "unprocessable_entity"),
            (ApiError::too_many_requests(3), 429, "too_many_requests"),
            (
                ApiError::service_unavailable("x"),
                503,
                "service_unavailable",
            ),
            (ApiError::internal(), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            let (got_status, body, _) = parts(error);
            assert_eq!(got_status, status, "{code}");
            assert_eq!(body["code"], code);
            assert_eq!(body["status"], status.to_string());
        }
    }

    #[test]
    fn too_many_requests_sets_retry_after() {
        let error = ApiError::too_many_requests(30);
        assert_eq!(error.retry_after(), Some(30));
        let (_, _, response) = parts(error);
        assert_eq!(header(&response, "retry-after"), Some("30"));
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let (_, _, response) = parts(ApiError::method_not_allowed(&["GET", "POST"]));
        assert_eq!(header(&response, "allow"), Some("GET, POST"));
    }

    #[test]
    fn bearer_errors_carry_a_challenge() {
        let (_, _, response) = parts(ApiError::token_missing());
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
        let (_, _, response) = parts(ApiError::token_invalid());
        assert_eq!(
            header(&response, "www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
    }

    #[test]
    fn authn_errors_map_to_the_contract() {
        let (status, body, _) = parts(AuthError::Expired.into());
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"status": "401", "message": "Token has expired", "code": "token_expired"})
        );
        let (status, body, _) = parts(AuthError::Invalid("bad signature").into());
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"status": "401", "message": "Invalid or malformed token", "code": "token_invalid"})
        );
        let (status, body, _) = parts(AuthError::Forbidden(Role::Admin).into());
        assert_eq!(status, 403);
        assert_eq!(body["code"], "forbidden");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        for error in [
            AuthError::KeyConfig("public key must be 32 bytes of base64url"),
            AuthError::Password("malformed stored hash"),
            AuthError::Random,
            AuthError::Signing,
        ] {
            let (status, body, _) = parts(error.into());
            assert_eq!(status, 500);
            assert_eq!(
                body,
                json!({"status": "500", "message": "Internal server error", "code": "internal_error"})
            );
        }
    }

    #[test]
    fn handler_result_converts_through_into_response() {
        let result: ApiResult<Response> = Err(ApiError::conflict("Username already exists"));
        let response = result.into_response();
        assert_eq!(*response.status(), 409);
    }

    #[test]
    fn display_is_compact() {
        assert_eq!(
            ApiError::conflict("Username already exists").to_string(),
            "409 conflict: Username already exists"
        );
    }
}
