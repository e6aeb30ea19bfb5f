//! Every public route in `spin.toml` reaches a component whose route table knows it:
//! `OPTIONS` there is answered `204` with the route's methods in `Allow`, never the JSON
//! 404 of a path no table holds. Over real HTTP, against the built app.

use reqwest::Method;
use spinmesh_e2e::{App, client, repo_root};

/// A request path for each public route: `:name` segments get a sample value, and a
/// trailing wildcard its bare prefix.
fn manifest_paths() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    let manifest: toml::Table = text.parse().expect("spin.toml parses");
    let mut paths = Vec::new();
    for trigger in manifest["trigger"]["http"].as_array().unwrap() {
        // `route = { private = true }` has no public path.
        let Some(route) = trigger["route"].as_str() else {
            continue;
        };
        let path = match route.strip_suffix("/...") {
            Some(prefix) => format!("{prefix}/"),
            None => route
                .split('/')
                .map(|segment| {
                    if segment.starts_with(':') {
                        "1"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/"),
        };
        paths.push((route.to_string(), path));
    }
    paths
}

fn options(app: &App, path: &str) -> (u16, Option<String>) {
    let response = client()
        .request(Method::OPTIONS, app.url(path))
        .send()
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (response.status().as_u16(), allow)
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn options_on_every_manifest_route_names_its_methods() {
    let app = App::builder().start();
    let paths = manifest_paths();
    assert!(paths.len() > 40, "only {} routes found", paths.len());
    for (route, path) in paths {
        let (status, allow) = options(&app, &path);
        assert_eq!(status, 204, "OPTIONS {path} (route {route}): {allow:?}");
        let allow = allow.unwrap_or_else(|| panic!("OPTIONS {path}: no Allow"));
        let methods: Vec<&str> = allow.split(", ").collect();
        assert_eq!(methods.last(), Some(&"OPTIONS"), "{path}: {allow}");
        assert!(methods.len() > 1, "{path} serves no method: {allow}");
    }
    // A path no component's table holds is the JSON 404, OPTIONS or not.
    assert_eq!(options(&app, "/no/such/route"), (404, None));
}
