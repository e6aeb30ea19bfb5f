//! Webhooks, the parts both ends share: a job's callback URL (where the runner POSTs
//! the job once it finishes), its codes, and the JSON of an owner's signing secret.
//!
//! A callback URL's syntax has one rule, checked on both ends: by the upload side before anything is
//! sent on (so a typo is a 400 before the file is streamed), and by the runner, which
//! takes it from any caller holding its token. Whether the runner may call the host is
//! the runner's decision alone (its allow-list, `runner/src/webhook/address.rs`): it
//! resolves the name, which the upload component cannot.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The runner's `POST /jobs` header that carries the callback URL.
pub const CALLBACK_URL_HEADER: &str = "x-callback-url";
/// The form field of `POST /api/upload` that carries it; it must come before the file.
pub const CALLBACK_URL_FIELD: &str = "callback_url";
/// The longest callback URL accepted, in bytes.
pub const MAX_CALLBACK_URL_LEN: usize = 2048;

/// The `code` of a callback URL that breaks [`check_callback_url`]'s rule (`400`).
pub const INVALID_CALLBACK_URL: &str = "invalid_callback_url";
/// The `code` of a callback URL whose host the runner may not call (`400`): it resolves
/// to a loopback, private, link-local or otherwise non-public address outside the
/// runner's allow-list, or does not resolve.
pub const CALLBACK_NOT_ALLOWED: &str = "callback_not_allowed";
/// The `code` of a callback URL (`400`), or a request for the webhook secret (`404`),
/// on a runner without a webhook secret.
pub const WEBHOOKS_DISABLED: &str = "webhooks_disabled";

/// Why a callback URL is refused. The messages are written for the end user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackUrlError {
    TooLong,
    /// Spaces, controls or non-ASCII characters: the URL travels in an HTTP header.
    NotPrintableAscii,
    NotHttp,
    UserInfo,
    Fragment,
    InvalidHost,
    InvalidPort,
}

impl fmt::Display for CallbackUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            Self::TooLong => "callback_url is longer than 2048 characters",
            Self::NotPrintableAscii => {
                "callback_url must be printable ASCII without spaces: percent-encode other \
                 characters and write international domain names in punycode"
            }
            Self::NotHttp => "callback_url must be an absolute http:// or https:// URL",
            Self::UserInfo => "callback_url must not contain a user name or password",
            Self::Fragment => "callback_url must not have a #fragment",
            Self::InvalidHost => "callback_url has no valid host",
            Self::InvalidPort => "callback_url has an invalid port",
        };
        f.write_str(message)
    }
}

impl std::error::Error for CallbackUrlError {}

/// The runner's answer to `GET /webhook-secret`, passed on to the owner as it is: the
/// key their webhooks are signed with (`whsec_` and 64 hex digits), used whole as the
/// HMAC key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecret {
    pub secret: String,
}

/// Checks the syntax of a callback URL: absolute `http` or `https`, a host (a DNS name
/// or an IP literal), an optional port 1–65535, no user info, no fragment, printable
/// ASCII, at most [`MAX_CALLBACK_URL_LEN`] bytes.
pub fn check_callback_url(url: &str) -> Result<(), CallbackUrlError> {
    if url.len() > MAX_CALLBACK_URL_LEN {
        return Err(CallbackUrlError::TooLong);
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CallbackUrlError::NotPrintableAscii);
    }
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"))
        .ok_or(CallbackUrlError::NotHttp)?;
    if rest.contains('#') {
        return Err(CallbackUrlError::Fragment);
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(CallbackUrlError::UserInfo);
    }
    let (host, port) = split_port(authority)?;
    if let Some(port) = port {
        check_port(port)?;
    }
    check_host(host)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `host[:port]`, where an IPv6 literal's colons are inside brackets.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), CallbackUrlError> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(CallbackUrlError::InvalidHost)?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or(CallbackUrlError::InvalidHost),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn check_port(port: &str) -> Result<(), CallbackUrlError> {
    let valid = (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    valid.then_some(()).ok_or(CallbackUrlError::InvalidPort)
}

/// A DNS name (letters, digits, `-`, `_`, dots between non-empty labels, at most 253
/// bytes, an optional final dot) or a bracketed IPv6 literal. Dotted IPv4 literals are
/// names by this rule; the runner reads them as addresses.
fn check_host(host: &str) -> Result<(), CallbackUrlError> {
    let valid = match host.strip_prefix('[') {
        Some(literal) => literal.strip_suffix(']').is_some_and(|inner| {
            inner.contains(':')
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }),
        None => {
            let name = host.strip_suffix('.').unwrap_or(host);
            (1..=253).contains(&name.len())
                && name.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        }
    };
    valid.then_some(()).ok_or(CallbackUrlError::InvalidHost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_http_urls_pass() {
        for url in [
            "https://hooks.example.com/spinmesh",
            "http://hooks.example.com",
            "HTTPS://Hooks.Example.COM:8443/a/b?c=d&e=%20f",
            "http://203.0.113.7:8080/hook",
            "http://[2001:db8::1]:8080/hook",
            "http://[::ffff:192.0.2.1]/",
            "https://example.com./trailing-dot",
            "https://under_score.example.com/",
        ] {
            assert_eq!(check_callback_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        use CallbackUrlError::*;
        let long = format!("https://example.com/{}", "a".repeat(MAX_CALLBACK_URL_LEN));
        for (url, reason) in [
            (long.as_str(), TooLong),
            ("https://example.com/a b", NotPrintableAscii),
            ("https://exämple.com/", NotPrintableAscii),
            ("https://example.com/\n", NotPrintableAscii),
            ("ftp://example.com/", NotHttp),
            ("//example.com/", NotHttp),
            ("/relative", NotHttp),
            ("https:/example.com", NotHttp),
            ("javascript:alert(1)", NotHttp),
            ("https://user:pass@example.com/", UserInfo),
            ("https://user@example.com/", UserInfo),
            ("https://example.com/#frag", Fragment),
            ("https://", InvalidHost),
            ("https:///path", InvalidHost),
            ("https://exa%6dple.com/", InvalidHost),
            ("https://a..b/", InvalidHost),
            ("https://[::1/", InvalidHost),
            ("https://[::1]x/", InvalidHost),
            ("https://[example]/", InvalidHost),
            ("https://example.com:0/", InvalidPort),
            ("https://example.com:65536/", InvalidPort),
            ("https://example.com:/", InvalidPort),
            ("https://example.com:80a/", InvalidPort),
            ("https://[::1]:99999/", InvalidPort),
        ] {
            assert_eq!(check_callback_url(url), Err(reason), "{url}");
        }
    }

    #[test]
    fn the_longest_url_allowed_is_max_len() {
        let prefix = "https://example.com/";
        let url = format!(
            "{prefix}{}",
            "a".repeat(MAX_CALLBACK_URL_LEN - prefix.len())
        );
        assert_eq!(check_callback_url(&url), Ok(()));
        assert_eq!(
            check_callback_url(&format!("{url}a")),
            Err(CallbackUrlError::TooLong)
        );
    }

    #[test]
    fn messages_name_the_field() {
        assert!(
            CallbackUrlError::UserInfo
                .to_string()
                .starts_with("callback_url")
        );
    }
}
