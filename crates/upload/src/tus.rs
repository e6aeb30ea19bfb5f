//! The tus 1.0 protocol rules the upload component applies at `/api/uploads`
//! (<https://tus.io/protocols/resumable-upload>): core, creation, termination and
//! expiration. Plain functions over header values, tested natively; the component does
//! the I/O.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use spinmesh_api::ApiError;
use spinmesh_jobs::webhook;

/// The protocol version spoken, in `Tus-Resumable` and `Tus-Version`.
pub const VERSION: &str = "1.0.0";
/// The extensions supported, for `Tus-Extension`.
pub const EXTENSIONS: &str = "creation,termination,expiration";
/// The media type of a `PATCH` body.
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";
/// Longest `Upload-Metadata` accepted: a filename and a few small values.
const MAX_METADATA_BYTES: usize = 4096;

/// A request's `Tus-Resumable` must name the version spoken: `412` (with `Tus-Version`)
/// otherwise, as the protocol says.
pub fn check_version(tus_resumable: Option<&str>) -> Result<(), ApiError> {
    match tus_resumable.map(str::trim) {
        Some(VERSION) => Ok(()),
        _ => Err(ApiError::new(
            412,
            "unsupported_tus_version",
            format!("Tus-Resumable must be {VERSION}"),
        )
        .with_header("tus-version", VERSION)),
    }
}

/// `Upload-Length` or `Upload-Offset`: a non-negative integer.
pub fn parse_size(name: &str, value: Option<&str>) -> Result<u64, ApiError> {
    let value = value
        .map(str::trim)
        .ok_or_else(|| ApiError::new(400, "missing_header", format!("{name} is required")))?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            400,
            "invalid_header",
            format!("{name} must be a non-negative integer"),
        ));
    }
    value
        .parse()
        .map_err(|_| ApiError::new(400, "invalid_header", format!("{name} is too large")))
}

/// What a creation's `Upload-Metadata` carries that we use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub filename: Option<String>,
    /// Where the job's webhook goes, its syntax checked
    /// ([`spinmesh_jobs::webhook::check_callback_url`]); the runner judges its host.
    pub callback_url: Option<String>,
}

/// Parses `Upload-Metadata`: comma-separated pairs of a key and, after a space, its
/// value in base64; keys are unique, a value may be absent. Unknown keys are allowed
/// (clients send `filetype` and their own) and ignored.
pub fn parse_metadata(value: Option<&str>) -> Result<Metadata, ApiError> {
    let invalid =
        |why: &str| ApiError::new(400, "invalid_metadata", format!("Upload-Metadata: {why}"));
    let mut metadata = Metadata::default();
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(metadata);
    };
    if value.len() > MAX_METADATA_BYTES {
        return Err(invalid("too long"));
    }
    let mut keys: Vec<&str> = Vec::new();
    for pair in value.split(',') {
        let pair = pair.trim();
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        if key.is_empty() || key.contains(' ') || !key.is_ascii() {
            return Err(invalid("each pair is a key and an optional base64 value"));
        }
        if keys.contains(&key) {
            return Err(invalid("a key appears twice"));
        }
        keys.push(key);
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| invalid("a value is not base64"))?;
        match key {
            "filename" => {
                let name =
                    String::from_utf8(decoded).map_err(|_| invalid("filename is not UTF-8"))?;
                metadata.filename = Some(name);
            }
            webhook::CALLBACK_URL_FIELD => {
                let url =
                    String::from_utf8(decoded).map_err(|_| invalid("callback_url is not UTF-8"))?;
                webhook::check_callback_url(&url).map_err(|error| {
                    ApiError::new(400, webhook::INVALID_CALLBACK_URL, error.to_string())
                })?;
                metadata.callback_url = Some(url);
            }
            _ => {}
        }
    }
    Ok(metadata)
}

/// `Upload-Expires`: an HTTP date (RFC 9110's IMF-fixdate).
pub fn expires_header(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spoken_version_is_accepted() {
        assert!(check_version(Some("1.0.0")).is_ok());
        for bad in [None, Some("0.2.2"), Some(""), Some("1.0")] {
            let error = check_version(bad).unwrap_err();
            assert_eq!(error.status, 412);
            assert!(
                error
                    .headers()
                    .contains(&("tus-version", "1.0.0".to_string()))
            );
        }
    }

    #[test]
    fn sizes_are_plain_non_negative_integers() {
        assert_eq!(parse_size("Upload-Offset", Some("0")).unwrap(), 0);
        assert_eq!(
            parse_size("Upload-Length", Some(" 314572800 ")).unwrap(),
            314_572_800
        );
        for bad in [Some("-1"), Some("1e3"), Some("0x10"), Some(""), Some("+5")] {
            assert_eq!(
                parse_size("Upload-Offset", bad).unwrap_err().status,
                400,
                "{bad:?}"
            );
        }
        let missing = parse_size("Upload-Length", None).unwrap_err();
        assert_eq!(missing.code, "missing_header");
        let huge = parse_size("Upload-Length", Some("99999999999999999999999")).unwrap_err();
        assert_eq!(huge.code, "invalid_header");
    }

    #[test]
    fn metadata_as_tus_clients_send_it() {
        // tus-js-client: filename and filetype; a key without a value is allowed.
        let parsed = parse_metadata(Some(
            "filename Y2xpcC5tcDQ=,filetype dmlkZW8vbXA0,is_confidential",
        ))
        .unwrap();
        assert_eq!(parsed.filename.as_deref(), Some("clip.mp4"));
        assert_eq!(parse_metadata(None).unwrap(), Metadata::default());
        assert_eq!(parse_metadata(Some("  ")).unwrap(), Metadata::default());
        let utf8 = parse_metadata(Some("filename w6l0w6kubXA0")).unwrap();
        assert_eq!(utf8.filename.as_deref(), Some("été.mp4"));
        // callback_url https://hooks.example.com/done
        let hooked = parse_metadata(Some(
            "filename Y2xpcC5tcDQ=,callback_url aHR0cHM6Ly9ob29rcy5leGFtcGxlLmNvbS9kb25l",
        ))
        .unwrap();
        assert_eq!(
            hooked.callback_url.as_deref(),
            Some("https://hooks.example.com/done")
        );
        // callback_url ftp://x
        let refused = parse_metadata(Some("callback_url ZnRwOi8veA==")).unwrap_err();
        assert_eq!(
            (refused.status, refused.code.as_ref()),
            (400, "invalid_callback_url")
        );
    }

    #[test]
    fn malformed_metadata_is_refused() {
        for bad in [
            "filename !!!",
            "filename Y2xpcC5tcDQ=,filename Y2xpcC5tcDQ=",
            ",filename Y2xpcC5tcDQ=",
            "filename /w==",
        ] {
            let error = parse_metadata(Some(bad)).unwrap_err();
            assert_eq!(
                (error.status, error.code.as_ref()),
                (400, "invalid_metadata"),
                "{bad}"
            );
        }
        let long = format!("filename {}", "A".repeat(MAX_METADATA_BYTES));
        assert!(parse_metadata(Some(&long)).is_err());
    }

    #[test]
    fn expiry_is_an_http_date() {
        assert_eq!(
            expires_header(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }
}
