use serde::{Serialize, de::DeserializeOwned};
use serde_json::error::Category;
use spin_sdk::http::{Request, Response};

use crate::ApiError;

/// A sensible cap for JSON API bodies; pass something else to [`parse_json`] where needed.
pub const DEFAULT_MAX_JSON_BODY: usize = 64 * 1024;

/// Longest client-facing message derived from a serde error (they may quote the input).
const MAX_MESSAGE_LEN: usize = 200;

/// `application/json` or any `application/…+json`, parameters (e.g. `charset`) allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application")
        && (subtype == "json" || (subtype.len() > "+json".len() && subtype.ends_with("+json")))
        && !subtype.contains(['/', ' '])
}

/// Parses the request body as JSON into `T`.
///
/// Wrong content type → 415, body over `max_bytes` → 413, malformed JSON → 400
/// `invalid_json`, well-formed JSON of the wrong shape → 400 `invalid_request` naming
/// the field.
pub fn parse_json<T: DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, ApiError> {
    let content_type = req.header("content-type").and_then(|v| v.as_str());
    if !content_type.is_some_and(is_json_content_type) {
        return Err(ApiError::unsupported_media_type());
    }
    let body = req.body();
    if body.len() > max_bytes {
        return Err(ApiError::payload_too_large(max_bytes));
    }
    // Syntax first (trailing data included), so "{} x" is malformed JSON rather
    // than a complaint about a missing field.
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::invalid_json())?;
    // serde would happily fill a struct from an array, by position.
    if !document.is_object() {
        return Err(ApiError::invalid_request(
            "Request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(document).map_err(|error| match error.inner().classify() {
        Category::Data => ApiError::invalid_request(describe(&error)),
        Category::Syntax | Category::Eof | Category::Io => ApiError::invalid_json(),
    })
}

/// "Invalid field `items[0].qty`: invalid type: string \"2\", expected u32", without
/// serde's position suffix or Rust type names.
fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let mut detail = error.inner().to_string();
    if let Some(at) = detail.rfind(" at line ") {
        detail.truncate(at);
    }
    if let Some(at) = detail.find("expected struct ") {
        detail.replace_range(at.., "expected an object");
    } else if let Some(at) = detail.find("expected enum ") {
        detail.replace_range(at.., "expected one of the allowed values");
    }
    let path = error.path().to_string();
    let mut message = if path == "." {
        let mut chars = detail.chars();
        chars
            .next()
            .map(|first| first.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    } else {
        format!("Invalid field `{path}`: {detail}")
    };
    if message.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// A JSON response with `status`. Serialization failure (a bug) becomes the generic 500.
pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Err(error) => {
            ApiError::internal_logged(format_args!("response serialization: {error}")).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::{Value, json};
    use spin_sdk::http::Method;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Login {
        username: String,
        password: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        product_id: u64,
        quantity: u32,
    }

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = Request::builder();
        builder.method(Method::Post).uri("/api/login").body(body);
        if let Some(content_type) = content_type {
            builder.header("content-type", content_type);
        }
        builder.build()
    }

    fn parse<T: DeserializeOwned>(content_type: Option<&str>, body: &str) -> Result<T, ApiError> {
        parse_json(&request(content_type, body), DEFAULT_MAX_JSON_BODY)
    }

    const LOGIN: &str = r#"{"username":"alice","password":"pw"}"#;

    #[test]
    fn parses_valid_json() {
        let login: Login = parse(Some("application/json"), LOGIN).unwrap();
        assert_eq!(login.username, "alice");
    }

    #[test]
    fn content_type_variants() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            " application/json ",
            "application/merge-patch+json",
            "application/vnd.spinmesh.v1+json",
        ] {
            assert!(is_json_content_type(ok), "{ok:?}");
        }
        for bad in [
            "",
            "text/plain",
            "text/json",
            "application/jsonp",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/+json",
            "application/json/x",
            "json",
            "text/x+json",
        ] {
            assert!(!is_json_content_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn wrong_or_missing_content_type_is_415() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let error = parse::<Login>(content_type, LOGIN).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (415, "unsupported_media_type")
            );
        }
    }

    #[test]
    fn only_an_object_fills_a_struct() {
        let error = parse::<Login>(Some("application/json"), r#"["alice","pw"]"#).unwrap_err();
        assert_eq!(
            (error.status, error.code.as_ref()),
            (400, "invalid_request")
        );
        assert!(error.message.contains("JSON object"), "{}", error.message);
    }

    #[test]
    fn trailing_data_is_malformed_json_even_with_missing_fields() {
        let error = parse::<Login>(Some("application/json"), "{} trailing").unwrap_err();
        assert_eq!((error.status, error.code.as_ref()), (400, "invalid_json"));
    }

    #[test]
    fn oversized_body_is_413() {
        let error = parse_json::<Login>(&request(Some("application/json"), LOGIN), 10).unwrap_err();
        assert_eq!(
            (error.status, error.code.as_ref()),
            (413, "payload_too_large")
        );
        assert!(
            parse_json::<Login>(&request(Some("application/json"), LOGIN), LOGIN.len()).is_ok()
        );
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in [
            "",
            "{",
            "{\"username\":}",
            "not json",
            "{}{}",
            "{\"a\":1} x",
            "\u{feff}{}",
        ] {
            let error = parse::<Value>(Some("application/json"), body).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (400, "invalid_json"),
                "{body:?}"
            );
        }
        let invalid_utf8 = Request::builder()
            .method(Method::Post)
            .header("content-type", "application/json")
            .body(vec![b'"', 0xff, b'"'])
            .build();
        let error = parse_json::<String>(&invalid_utf8, 100).unwrap_err();
        assert_eq!(error.code, "invalid_json");
    }

    #[test]
    fn missing_field_is_named() {
        let error =
            parse::<Login>(Some("application/json"), r#"{"username":"alice"}"#).unwrap_err();
        assert_eq!(
            (error.status, error.code.as_ref()),
            (400, "invalid_request")
        );
        assert_eq!(error.message, "Missing field `password`");
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let error = parse::<Login>(Some("application/json"), r#"{"username":5,"password":"x"}"#)
            .unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert_eq!(
            error.message,
            "Invalid field `username`: invalid type: integer `5`, expected a string"
        );
        let error = parse::<Order>(
            Some("application/json"),
            r#"{"items":[{"product_id":1,"quantity":"2"}]}"#,
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("Invalid field `items[0].quantity`: invalid type: string"),
            "{}",
            error.message
        );
        let error = parse::<Order>(
            Some("application/json"),
            r#"{"items":[{"product_id":1,"quantity":-2}]}"#,
        )
        .unwrap_err();
        assert!(
            error.message.contains("items[0].quantity"),
            "{}",
            error.message
        );
    }

    #[test]
    fn messages_hide_rust_type_names_and_positions() {
        let error = parse::<Login>(Some("application/json"), r#"["alice"]"#).unwrap_err();
        assert_eq!(error.code, "invalid_request");
        assert!(!error.message.contains("Login"), "{}", error.message);
        let error = parse::<Order>(Some("application/json"), r#"{"items":["alice"]}"#).unwrap_err();
        assert_eq!(
            error.message,
            "Invalid field `items[0]`: invalid type: string \"alice\", expected an object"
        );
        assert!(!error.message.contains("line"));
    }

    #[test]
    fn long_messages_are_truncated() {
        let long = "x".repeat(1000);
        let body = json!({"username": 1, "password": long}).to_string();
        let error = parse::<BTreeMap<String, u8>>(Some("application/json"), &body).unwrap_err();
        assert!(
            error.message.chars().count() <= MAX_MESSAGE_LEN + 1,
            "{}",
            error.message
        );
    }

    #[test]
    fn json_response_helper() {
        let response = json(201, &json!({"user_id": 7}));
        assert_eq!(*response.status(), 201);
        assert_eq!(
            response.header("content-type").and_then(|v| v.as_str()),
            Some("application/json")
        );
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body, json!({"user_id": 7}));
        let list = json(200, &[1, 2, 3][..]);
        assert_eq!(list.body(), b"[1,2,3]");
    }

    #[test]
    fn json_response_serialization_failure_is_generic_500() {
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1); // non-string map keys cannot be JSON
        let response = json(200, &bad);
        assert_eq!(*response.status(), 500);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["code"], "internal_error");
    }
}
