//! The web UI's files and the negotiated root over real HTTP, from the repository's
//! spin.toml (the browser itself is driven in browser.rs).

use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, IF_NONE_MATCH};
use serde_json::Value;
use spinmesh_e2e::{App, client};

const CHROME_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn root_is_the_ui_for_browsers_and_the_seed_json_for_api_clients() {
    let app = App::builder().start();
    let page = client()
        .get(app.url("/"))
        .header(ACCEPT, CHROME_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert!(
        header(&page, "vary")
            .split(',')
            .any(|name| name.trim() == "accept"),
        "Vary names Accept"
    );
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
    let html = page.text().unwrap();
    assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));

    for accept in [Some("application/json"), Some("*/*"), None] {
        let mut request = client().get(app.url("/"));
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let root = request.send().unwrap();
        assert_eq!(root.status(), 200, "{accept:?}");
        assert_eq!(header(&root, "content-type"), "application/json");
        let body: Value = root.json().unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["message"], "API is running");
        assert_eq!(body["endpoints"]["register"], "/api/register");
        assert_eq!(body["endpoints"]["docs"], "/docs");
    }

    let refused = client()
        .get(app.url("/"))
        .header(ACCEPT, "image/png")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 406);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "not_acceptable");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn assets_are_typed_revalidated_and_nothing_else_is_served() {
    let app = App::builder().start();
    let docs = client().get(app.url("/docs")).send().unwrap();
    assert_eq!(docs.status(), 200);
    assert_eq!(header(&docs, "content-type"), "text/html; charset=utf-8");
    assert!(docs.text().unwrap().contains("/assets/docs.js"));

    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/openapi.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let response = client().get(app.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        let etag = header(&response, "etag").to_string();
        assert!(!response.bytes().unwrap().is_empty(), "{path}");

        let cached = client()
            .get(app.url(path))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .unwrap();
        assert_eq!(cached.status(), 304, "{path}");
        assert_eq!(header(&cached, "etag"), etag);
        assert!(cached.bytes().unwrap().is_empty());

        let head = client().head(app.url(path)).send().unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(header(&head, "content-type"), content_type, "{path}");
        assert_eq!(header(&head, "etag"), etag, "{path}");
        assert!(head.bytes().unwrap().is_empty(), "{path}");
    }

    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/app.js/x",
        "/assets/..%2Fspin.toml",
        "/web/app.js",
    ] {
        let response = client().get(app.url(path)).send().unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.json::<Value>().unwrap()["code"],
            "not_found",
            "{path}"
        );
    }
    let post = client().post(app.url("/docs")).send().unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(header(&post, "allow"), "GET, HEAD");
}
