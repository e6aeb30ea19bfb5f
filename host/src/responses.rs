//! Responses the host writes itself, without a component.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub fn empty_response(status: u16) -> http::Response<HyperOutgoingBody> {
    http::Response::builder()
        .status(status)
        .body(Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync())
        .expect("valid status")
}

pub fn text_response(status: u16, text: impl Into<Bytes>) -> http::Response<HyperOutgoingBody> {
    http::Response::builder()
        .status(status)
        .body(Full::new(text.into()).map_err(|never| match never {}).boxed_unsync())
        .expect("valid status")
}
