//! The tus 1.0 requests of the resumable-upload suites (`/api/uploads`), shared by the
//! single-host and cluster tests.

use reqwest::Method;
use reqwest::blocking::Response;

use crate::Api;

/// The protocol version header every tus request and answer carries.
pub const TUS: (&str, &str) = ("tus-resumable", "1.0.0");
/// The media type of a `PATCH` body.
pub const PATCH_TYPE: &str = "application/offset+octet-stream";
/// A value of `Upload-Metadata`: base64.
fn metadata_value(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `POST /api/uploads` for `filename` of `length` bytes.
pub fn create(api: &Api, token: &str, filename: &str, length: usize) -> Response {
    api.request(Method::POST, "/api/uploads", Some(token))
        .header(TUS.0, TUS.1)
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!("filename {}", metadata_value(filename)),
        )
        .send()
        .unwrap()
}

/// The upload's path, from a creation that must have succeeded.
pub fn created(response: Response) -> String {
    assert_eq!(response.status(), 201, "{:?}", response.text());
    assert_eq!(response.headers()[TUS.0], TUS.1);
    assert!(response.headers().contains_key("upload-expires"));
    response.headers()["location"].to_str().unwrap().to_string()
}

/// `HEAD` of an upload: its offset.
pub fn head(api: &Api, token: &str, path: &str) -> Response {
    api.request(Method::HEAD, path, Some(token))
        .header(TUS.0, TUS.1)
        .send()
        .unwrap()
}

/// An answer's `Upload-Offset`.
pub fn offset_of(response: &Response) -> usize {
    response.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `PATCH` of `bytes` at `offset`.
pub fn patch(api: &Api, token: &str, path: &str, offset: usize, bytes: &[u8]) -> Response {
    api.request(Method::PATCH, path, Some(token))
        .header(TUS.0, TUS.1)
        .header("content-type", PATCH_TYPE)
        .header("upload-offset", offset.to_string())
        .body(bytes.to_vec())
        .send()
        .unwrap()
}
