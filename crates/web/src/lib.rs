//! The web UI (`/`), the API explorer (`/docs`) and their files (`/assets/:file`), all
//! from `web/` embedded at compile time, so the app serves them itself: no CDN, no
//! build step, nothing to deploy beside the component.
//!
//! `/` is negotiated: browsers (which ask for `text/html`) get the UI, API clients (which
//! ask for `application/json`, `*/*` or nothing) get the seed's JSON root.

use std::hash::{DefaultHasher, Hash, Hasher};

use spin_sdk::http::{IntoResponse, Method, Params, Request, Response};
use spinmesh_api::ApiError;
use spinmesh_api::routes::RouteTable;

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// What the pages may load and do: only this origin's scripts, styles, images and API,
/// no inline code, no plugins, no framing. (Downloads are navigations to `blob:` URLs,
/// which the policy does not govern.)
const PAGE_POLICY: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                           form-action 'self'; frame-ancestors 'none'";

struct File {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! web_file {
    ($name:literal, $content_type:expr) => {
        File {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $name)),
        }
    };
}

const INDEX: File = web_file!("index.html", HTML);
const DOCS: File = web_file!("docs.html", HTML);
/// Served under `/assets/`.
const ASSETS: [File; 7] = [
    web_file!("app.css", CSS),
    web_file!("app.js", JS),
    web_file!("api.js", JS),
    web_file!("catalog.js", JS),
    web_file!("docs.js", JS),
    web_file!("openapi.js", JS),
    web_file!("icon.svg", SVG),
];

pub fn register(routes: &mut RouteTable) {
    for method in [Method::Get, Method::Head] {
        routes
            .add(method.clone(), &["/"], root)
            .add(method.clone(), &["/docs"], docs)
            .add(method, &["/assets/:file"], asset);
    }
}

fn root(request: Request, _params: Params) -> Response {
    let accept = request.header("accept").and_then(|value| value.as_str());
    match negotiate(accept) {
        Some(Representation::Html) => serve(&request, &INDEX),
        Some(Representation::Json) => json_root(),
        None => ApiError::new(
            406,
            "not_acceptable",
            "Only application/json and text/html are available",
        )
        .into_response(),
    }
    .with_vary_accept()
}

fn docs(request: Request, _params: Params) -> Response {
    serve(&request, &DOCS)
}

fn asset(request: Request, params: Params) -> Response {
    let name = params.get("file").unwrap_or_default();
    match ASSETS.iter().find(|file| file.name == name) {
        Some(file) => serve(&request, file),
        None => ApiError::not_found("Not Found").into_response(),
    }
}

/// The seed's root answer (`GET /` of the auth service), listing this app's entry points.
fn json_root() -> Response {
    spinmesh_api::json(
        200,
        &serde_json::json!({
            "status": "ok",
            "message": "API is running",
            "endpoints": {
                "health": "/health",
                "register": "/api/register",
                "login": "/api/login",
                "validate": "/api/validate",
                "users": "/api/users",
                "products": "/api/products",
                "orders": "/api/orders",
                "upload": "/api/upload",
                "jobs": "/api/jobs",
                "docs": "/docs",
                "openapi": "/api/openapi.json",
            },
        }),
    )
}

/// A file with validators: `ETag` from its bytes and `no-cache`, so browsers revalidate
/// (a cheap 304) and never run a stale script against a newer app.
fn serve(request: &Request, file: &File) -> Response {
    let etag = etag(file.body);
    let builder = |status| {
        let mut builder = Response::builder();
        builder
            .status(status)
            .header("etag", etag.as_str())
            .header("cache-control", "no-cache")
            .header("x-content-type-options", "nosniff");
        builder
    };
    if if_none_match(request, &etag) {
        return builder(304).build();
    }
    let mut builder = builder(200);
    builder.header("content-type", file.content_type);
    if file.content_type == HTML {
        builder.header("content-security-policy", PAGE_POLICY);
    }
    // For HEAD too: the HTTP server sends the headers (with the body's length) and drops
    // the body.
    builder.body(file.body.to_vec()).build()
}

/// Strong validator; stable for a given build, which is all a cache needs.
fn etag(body: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// RFC 9110 §13.1.2: `*` or any listed tag matches (weak comparison).
fn if_none_match(request: &Request, etag: &str) -> bool {
    let Some(header) = request
        .header("if-none-match")
        .and_then(|value| value.as_str())
    else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    Json,
    Html,
}

/// Picks by the client's quality values (RFC 9110 §12.5.1). JSON wins ties, so `*/*` and
/// a missing `Accept` (curl, seed clients) keep the seed's JSON; `None` when neither is
/// acceptable.
fn negotiate(accept: Option<&str>) -> Option<Representation> {
    let Some(accept) = accept.filter(|accept| !accept.trim().is_empty()) else {
        return Some(Representation::Json);
    };
    let json = quality(accept, "application", "json");
    let html = quality(accept, "text", "html");
    if html > json {
        Some(Representation::Html)
    } else if json > 0 {
        Some(Representation::Json)
    } else {
        None
    }
}

/// The quality (in thousandths) the most specific matching range gives `type/subtype`.
fn quality(accept: &str, type_: &str, subtype: &str) -> u16 {
    accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let (range_type, range_subtype) = parts.next()?.split_once('/')?;
            let specificity = match (range_type, range_subtype) {
                ("*", "*") => 0,
                (t, "*") if t.eq_ignore_ascii_case(type_) => 1,
                (t, s) if t.eq_ignore_ascii_case(type_) && s.eq_ignore_ascii_case(subtype) => 2,
                _ => return None,
            };
            let q = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, value)| parse_qvalue(value.trim()))?;
            Some((specificity, q))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map_or(0, |(_, q)| q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`; anything else is ignored.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

trait VaryAccept {
    fn with_vary_accept(self) -> Self;
}

impl VaryAccept for Response {
    /// The answer to `/` depends on `Accept`, so shared caches must key on it.
    fn with_vary_accept(mut self) -> Self {
        self.set_header("vary", "accept");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut routes = RouteTable::new();
        register(&mut routes);
        let mut request = Request::builder();
        request.method(Method::Get).uri(path);
        for (name, value) in headers {
            request.header(*name, *value);
        }
        routes.serve(request.build())
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.header(name).and_then(|value| value.as_str())
    }

    #[test]
    fn browsers_get_the_ui_and_api_clients_json() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                      image/webp,*/*;q=0.8";
        assert_eq!(negotiate(Some(chrome)), Some(Representation::Html));
        assert_eq!(negotiate(Some("text/html")), Some(Representation::Html));
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("application/json"),
            Some("application/*"),
            Some("text/html;q=0.5, application/json"),
            Some("text/html, application/json"),
            Some("TEXT/HTML;q=0.1, */*;q=0.2"),
        ] {
            assert_eq!(negotiate(accept), Some(Representation::Json), "{accept:?}");
        }
        assert_eq!(
            negotiate(Some("application/json;q=0.2, text/*;q=0.3")),
            Some(Representation::Html)
        );
        for accept in [
            "image/png",
            "application/json;q=0, text/html;q=0",
            "text/plain",
        ] {
            assert_eq!(negotiate(Some(accept)), None, "{accept}");
        }
    }

    #[test]
    fn the_most_specific_range_sets_the_quality() {
        assert_eq!(
            quality("text/*;q=0.5, text/html;q=0.2", "text", "html"),
            200
        );
        assert_eq!(quality("*/*;q=0.1, text/*", "text", "html"), 1000);
        assert_eq!(quality("text/html;level=1;q=0.25", "text", "html"), 250);
        // An invalid qvalue voids its range rather than counting as 1.
        assert_eq!(quality("text/html;q=2", "text", "html"), 0);
        assert_eq!(quality("text/html;q=0.1234", "text", "html"), 0);
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("-0"), None);
    }

    /// The edge adds `Origin` to `Vary`; `accept` must stay listed.
    fn varies_on_accept(response: &Response) -> bool {
        header(response, "vary").is_some_and(|vary| {
            vary.split(',')
                .any(|name| name.trim().eq_ignore_ascii_case("accept"))
        })
    }

    #[test]
    fn root_answers_json_or_html_and_varies_on_accept() {
        let json = get("/", &[("accept", "application/json")]);
        assert_eq!(*json.status(), 200);
        assert_eq!(header(&json, "content-type"), Some("application/json"));
        assert!(varies_on_accept(&json));
        let body: serde_json::Value = serde_json::from_slice(json.body()).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["endpoints"]["upload"], "/api/upload");

        let html = get("/", &[("accept", "text/html")]);
        assert_eq!(*html.status(), 200);
        assert_eq!(header(&html, "content-type"), Some(HTML));
        assert!(varies_on_accept(&html));
        assert!(header(&html, "content-security-policy").is_some());
        assert!(html.body().starts_with(b"<!doctype html>"));

        let refused = get("/", &[("accept", "image/png")]);
        assert_eq!(*refused.status(), 406);
        assert!(refused.body().starts_with(br#"{"status":"406""#));
    }

    #[test]
    fn files_are_typed_and_revalidated_with_etags() {
        let docs = get("/docs", &[]);
        assert_eq!(*docs.status(), 200);
        assert_eq!(header(&docs, "content-type"), Some(HTML));
        let script = get("/assets/app.js", &[]);
        assert_eq!(*script.status(), 200);
        assert_eq!(header(&script, "content-type"), Some(JS));
        assert_eq!(header(&script, "cache-control"), Some("no-cache"));
        assert_eq!(header(&script, "x-content-type-options"), Some("nosniff"));
        assert!(header(&script, "content-security-policy").is_none());
        let etag = header(&script, "etag").unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'));

        let unchanged = get(
            "/assets/app.js",
            &[("if-none-match", &format!("\"x\", W/{etag}"))],
        );
        assert_eq!(*unchanged.status(), 304);
        assert!(unchanged.body().is_empty());
        assert_eq!(header(&unchanged, "etag"), Some(etag.as_str()));
        let changed = get("/assets/app.js", &[("if-none-match", "\"other\"")]);
        assert_eq!(*changed.status(), 200);
        assert_ne!(
            header(&get("/assets/app.css", &[]), "etag"),
            Some(etag.as_str())
        );
    }

    #[test]
    fn only_embedded_files_are_served() {
        for path in [
            "/assets/nope.js",
            "/assets/..%2Fspin.toml",
            "/assets/index.html",
        ] {
            assert_eq!(*get(path, &[]).status(), 404, "{path}");
        }
    }
}
