//! The OpenAPI document the gateway serves (`components/gateway/openapi.json`) against
//! `spin.toml`: every route has its path and every path a route, each operation names
//! the component that serves it, documents its responses with schemas, and declares
//! bearer security unless it is one of the public operations. No app is started.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use spinmesh_e2e::repo_root;

/// Operations anyone may call.
const PUBLIC: [&str; 14] = [
    "GET /health",
    "GET /health/live",
    "GET /health/services",
    "GET /api/openapi.json",
    "GET /.well-known/jwks.json",
    "POST /api/register",
    "POST /register",
    "POST /api/login",
    "POST /login",
    "POST /api/token/refresh",
    "POST /api/token",
    "POST /get-token",
    // The token to check is in the body (or, with an empty body, the bearer header).
    "POST /api/validate",
    "POST /validate",
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("components/gateway/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// Path (in OpenAPI form) → component, for every non-wildcard public route.
fn manifest_routes() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    let manifest: toml::Table = text.parse().expect("spin.toml parses");
    let mut routes = BTreeMap::new();
    for trigger in manifest["trigger"]["http"].as_array().unwrap() {
        // `route = { private = true }` has no public path.
        let Some(route) = trigger["route"].as_str() else {
            continue;
        };
        if route.ends_with("/...") {
            continue;
        }
        let path = route
            .split('/')
            .map(|segment| match segment.strip_prefix(':') {
                Some(name) => format!("{{{name}}}"),
                None => segment.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let component = trigger["component"].as_str().unwrap().to_string();
        assert!(
            routes.insert(path.clone(), component).is_none(),
            "{route} is routed twice"
        );
    }
    routes
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: `{method}` is not an HTTP method"
            );
            ops.push((method.to_uppercase(), path.clone(), operation));
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local reference");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"))
        }
        None => value,
    }
}

#[test]
fn every_route_in_spin_toml_is_documented_and_nothing_else() {
    let doc = document();
    let routes = manifest_routes();
    let documented: BTreeMap<String, String> = operations(&doc)
        .into_iter()
        .map(|(method, path, operation)| {
            let component = operation["x-spin-component"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no x-spin-component"));
            (path, component.to_string())
        })
        .collect();

    for (path, component) in &routes {
        assert_eq!(
            documented.get(path),
            Some(component),
            "spin.toml routes {path} to `{component}`; the document must say so"
        );
    }
    for (path, component) in &documented {
        assert_eq!(
            routes.get(path),
            Some(component),
            "the document has {path} (`{component}`), spin.toml does not route it there"
        );
    }
    // Every operation of a path names the same component.
    for (method, path, operation) in operations(&doc) {
        assert_eq!(
            operation["x-spin-component"].as_str(),
            documented.get(&path).map(String::as_str),
            "{method} {path}"
        );
    }
}

#[test]
fn every_operation_documents_its_responses_and_security() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(
        error["required"],
        serde_json::json!(["status", "message", "code"])
    );
    let public: BTreeSet<&str> = PUBLIC.into_iter().collect();
    let mut operation_ids = BTreeSet::new();
    let mut seen_public = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let name = format!("{method} {path}");
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no operationId"));
        assert!(
            operation_ids.insert(id.to_string()),
            "{name}: operationId {id} is used twice"
        );
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no responses"));
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{name}: no success response"
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            // A HEAD answer, a 204 and a tus answer (whose meaning is in its headers)
            // have no content; every other response documents it.
            let Some(content) = response["content"].as_object() else {
                assert!(
                    method == "HEAD" || status == "204" || response["headers"].is_object(),
                    "{name} {status}: no content"
                );
                continue;
            };
            for (media_type, media) in content {
                assert!(
                    media["schema"].is_object(),
                    "{name} {status} {media_type}: no schema"
                );
            }
            // (A 503 from /health is its report, so only client errors are checked.)
            if status.starts_with('4') {
                let schema = &content["application/json"]["schema"];
                assert_eq!(
                    resolve(&doc, schema),
                    error,
                    "{name} {status}: client errors use the Error schema"
                );
            }
        }
        assert!(
            responses.contains_key("429"),
            "{name}: every route may be throttled"
        );
        // Path parameters are declared.
        for segment in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let declared = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|parameter| {
                    let parameter = resolve(&doc, parameter);
                    parameter["in"] == "path" && parameter["name"] == segment
                });
            assert!(
                declared,
                "{name}: path parameter `{segment}` is not declared"
            );
        }
        let security = operation["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no security (use [] for public)"));
        if public.contains(name.as_str()) {
            seen_public.insert(name.clone());
            assert!(security.is_empty(), "{name} is public");
        } else {
            assert_eq!(
                security,
                &vec![serde_json::json!({ "bearerAuth": [] })],
                "{name} needs bearerAuth"
            );
            assert!(
                responses.contains_key("401"),
                "{name}: a protected operation documents 401"
            );
        }
    }
    assert_eq!(
        seen_public,
        public.iter().map(|s| s.to_string()).collect(),
        "PUBLIC names operations the document lacks"
    );
}
