//! CORS per the Fetch standard, without credentials mode (the API takes bearer tokens,
//! never cookies, so `Access-Control-Allow-Credentials` is never sent and `*` is safe).
//!
//! Origins come from the `cors_allowed_origins` variable: comma-separated exact origins
//! (`https://app.example.com`) or `*`; empty turns CORS off. A request from an origin not
//! on the list is served as usual but without CORS headers, so the browser withholds the
//! response from the page.

/// Request headers a cross-origin page may send besides the CORS-safelisted ones.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, X-Request-Id, \
     Range, If-Range, Last-Event-ID, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset";

/// Response headers a cross-origin page may read besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "X-Request-Id, X-Total-Count, Link, Location, Retry-After, \
     RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Content-Disposition, Content-Range, \
     Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Upload-Offset, Upload-Length, \
     Upload-Expires, Job-Id";

/// How long a browser may cache a preflight. Short, so a change of the allowed origins
/// takes effect soon (browsers cap it anyway: Chromium at 2 h, Firefox at 24 h).
pub const MAX_AGE_SECS: &str = "600";

/// `Vary` for every response: whether CORS headers are sent depends on `Origin`.
pub const VARY: &str = "Origin";

/// `Vary` for a preflight answer, which also depends on what was asked for.
pub const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The origins allowed to read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Any,
    /// ASCII-lower-cased origins without a trailing slash, as browsers serialise them.
    Exact(Vec<String>),
}

impl Policy {
    /// Parses `cors_allowed_origins`; `None` when nothing is allowed (CORS off).
    pub fn parse(value: &str) -> Option<Self> {
        let entries = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        let mut origins = Vec::new();
        for entry in entries {
            if entry == "*" {
                return Some(Self::Any);
            }
            // `null` is the origin of sandboxed and file: documents; any page can produce
            // it, so listing it would amount to `*` in disguise.
            if !entry.eq_ignore_ascii_case("null") {
                origins.push(entry.trim_end_matches('/').to_ascii_lowercase());
            }
        }
        (!origins.is_empty()).then_some(Self::Exact(origins))
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed: `*`
    /// or the origin itself.
    pub fn allow_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        match self {
            Self::Any => Some("*"),
            Self::Exact(origins) => origins.iter().any(|o| o == origin).then_some(origin),
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    method.eq_ignore_ascii_case("OPTIONS") && origin.is_some() && request_method.is_some()
}

/// Headers answering a preflight from an allowed origin for a route serving `methods`.
/// The browser itself checks the requested method and headers against them.
pub fn preflight_headers(allow_origin: &str, methods: &[&str]) -> [(&'static str, String); 4] {
    [
        ("access-control-allow-origin", allow_origin.to_string()),
        ("access-control-allow-methods", methods.join(", ")),
        ("access-control-allow-headers", ALLOW_HEADERS.to_string()),
        ("access-control-max-age", MAX_AGE_SECS.to_string()),
    ]
}

/// Headers for an actual (non-preflight) response to an allowed origin.
pub fn response_headers(allow_origin: &str) -> [(&'static str, String); 2] {
    [
        ("access-control-allow-origin", allow_origin.to_string()),
        ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
    ]
}

/// `existing` (a response's own `Vary`) with the names in `add` that it lacks.
pub fn merge_vary(existing: Option<&str>, add: &str) -> String {
    let Some(existing) = existing.map(str::trim).filter(|value| !value.is_empty()) else {
        return add.to_string();
    };
    let listed = |name: &str| {
        existing
            .split(',')
            .any(|present| present.trim() == "*" || present.trim().eq_ignore_ascii_case(name))
    };
    let mut merged = existing.to_string();
    for name in add.split(", ").filter(|name| !listed(name)) {
        merged.push_str(", ");
        merged.push_str(name);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn empty_or_blank_configuration_turns_cors_off() {
        for value in ["", " ", ",", " , ", "null"] {
            assert_eq!(Policy::parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn exact_origins_are_echoed_and_others_refused() {
        let policy = Policy::parse(" https://App.example.com/ ,http://localhost:5173").unwrap();
        assert_eq!(
            policy.allow_origin("https://app.example.com"),
            Some("https://app.example.com")
        );
        assert_eq!(
            policy.allow_origin("http://localhost:5173"),
            Some("http://localhost:5173")
        );
        for other in [
            "https://evil.example.com",
            "https://app.example.com.evil.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "null",
            "",
        ] {
            assert_eq!(policy.allow_origin(other), None, "{other:?}");
        }
    }

    #[test]
    fn wildcard_allows_every_origin_with_a_literal_star() {
        let policy = Policy::parse("https://a.example, *").unwrap();
        assert_eq!(policy, Policy::Any);
        assert_eq!(policy.allow_origin("https://anything.example"), Some("*"));
        assert_eq!(policy.allow_origin("null"), Some("*"));
    }

    #[test]
    fn preflight_needs_options_origin_and_requested_method() {
        assert!(is_preflight("OPTIONS", Some("https://a"), Some("POST")));
        assert!(!is_preflight("OPTIONS", None, Some("POST")));
        assert!(!is_preflight("OPTIONS", Some("https://a"), None));
        assert!(!is_preflight("POST", Some("https://a"), Some("POST")));
    }

    #[test]
    fn preflight_answer_lists_methods_headers_and_max_age() {
        let headers = preflight_headers("https://a.example", &["GET", "POST"]);
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            Some("GET, POST")
        );
        let allowed = header(&headers, "access-control-allow-headers").unwrap();
        // `*` would not cover Authorization (Fetch standard), so it is named.
        for name in [
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "X-Request-Id",
        ] {
            assert!(allowed.split(", ").any(|n| n == name), "{name}");
        }
        assert_eq!(header(&headers, "access-control-max-age"), Some("600"));
        assert_eq!(header(&headers, "access-control-allow-credentials"), None);
    }

    #[test]
    fn actual_responses_expose_the_api_headers() {
        let headers = response_headers("*");
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        let exposed = header(&headers, "access-control-expose-headers").unwrap();
        for name in [
            "X-Request-Id",
            "X-Total-Count",
            "Link",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "Content-Disposition",
        ] {
            assert!(exposed.split(", ").any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn vary_is_merged_without_duplicates() {
        assert_eq!(merge_vary(None, VARY), "Origin");
        assert_eq!(merge_vary(Some(""), VARY), "Origin");
        assert_eq!(
            merge_vary(Some("Accept-Encoding"), VARY),
            "Accept-Encoding, Origin"
        );
        assert_eq!(merge_vary(Some("origin"), VARY), "origin");
        assert_eq!(merge_vary(Some("*"), VARY), "*");
        assert_eq!(
            merge_vary(Some("Origin"), VARY_PREFLIGHT),
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        );
    }
}
