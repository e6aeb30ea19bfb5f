//! Browser hardening headers. Every response gets `X-Content-Type-Options: nosniff` (a
//! JSON error must never be sniffed as HTML); HTML pages also get a Content Security
//! Policy for an app serving its own scripts and styles (no CDN, no inline code), and are
//! kept out of frames and from leaking URLs in `Referer`.

/// The page's own origin only; `data:` images for small inline icons; no plugins, no
/// `<base>` tricks, forms post back to the app; no framing (CSP's successor to
/// `X-Frame-Options`, sent too for older browsers).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

const EVERY_RESPONSE: [(&str, &str); 1] = [("x-content-type-options", "nosniff")];

const HTML: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The headers for a response of this `Content-Type`. A handler's own value for any of
/// them wins (the caller sets only those absent).
pub fn for_content_type(content_type: Option<&str>) -> &'static [(&'static str, &'static str)] {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("text/html")
        || essence.eq_ignore_ascii_case("application/xhtml+xml")
    {
        &HTML
    } else {
        &EVERY_RESPONSE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(headers: &[(&str, &str)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }

    #[test]
    fn html_pages_get_csp_frame_deny_and_referrer_policy() {
        for content_type in [
            "text/html",
            "text/html; charset=utf-8",
            "Text/HTML;charset=UTF-8",
        ] {
            let headers = for_content_type(Some(content_type));
            assert_eq!(value(headers, "x-frame-options").as_deref(), Some("DENY"));
            assert_eq!(
                value(headers, "x-content-type-options").as_deref(),
                Some("nosniff")
            );
            assert_eq!(
                value(headers, "referrer-policy").as_deref(),
                Some("no-referrer")
            );
            let csp = value(headers, "content-security-policy").unwrap();
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
        }
    }

    #[test]
    fn other_responses_get_nosniff_only() {
        for content_type in [
            Some("application/json"),
            Some("audio/mpeg"),
            Some("text/plain"),
            None,
        ] {
            assert_eq!(
                for_content_type(content_type),
                &[("x-content-type-options", "nosniff")],
                "{content_type:?}"
            );
        }
    }
}
