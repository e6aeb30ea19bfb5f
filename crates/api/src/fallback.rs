//! Every component's entry point: the [`edge`](crate::edge) behaviour around its router,
//! and the JSON error shape for requests no route takes (spin-sdk's `Router` answers those
//! with plain-text 404/405).

use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};

use crate::{ApiError, edge};

/// Serves `request` with `router` through the [`edge`](crate::edge) (request id, CORS and
/// `OPTIONS`, rate limit, security headers, log line), after adding a JSON 405 (with
/// `Allow`) for each `(route, allowed methods)` and answering any other path with a JSON
/// 404.
///
/// The 404 is decided here rather than with a `/*` route because routefinder (under
/// spin-sdk's `Router`) orders a wildcard inconsistently against routes with dots such as
/// `/.well-known/jwks.json`, so the wildcard can win over exact routes. Routes are exact
/// paths or have `:name` segments, each matching one non-empty path segment.
pub fn serve(
    router: Router,
    routes: &[(&str, &'static [&'static str])],
    request: Request,
) -> Response {
    let methods = routes
        .iter()
        .find(|(route, _)| route_matches(route, request.path()))
        .map(|&(_, methods)| methods);
    edge::serve(request, methods, |request| match methods {
        Some(_) => dispatch(router, routes, request),
        None => ApiError::not_found("Not Found").into_response(),
    })
}

fn dispatch(
    mut router: Router,
    routes: &[(&str, &'static [&'static str])],
    request: Request,
) -> Response {
    for &(route, allow) in routes {
        router.any(route, move |_: Request, _: Params| {
            ApiError::method_not_allowed(allow)
        });
    }
    router.handle(request)
}

fn route_matches(route: &str, path: &str) -> bool {
    let mut route = route.split('/');
    let mut path = path.split('/');
    loop {
        match (route.next(), path.next()) {
            (None, None) => return true,
            (Some(pattern), Some(segment)) if pattern.starts_with(':') && !segment.is_empty() => {}
            (Some(pattern), Some(segment)) if pattern == segment => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use spin_sdk::http::Method;

    use super::*;

    #[test]
    fn routes_match_exactly_or_by_segment() {
        assert!(route_matches("/api/login", "/api/login"));
        assert!(route_matches("/api/users/:id", "/api/users/42"));
        assert!(route_matches("/api/users/:id", "/api/users/a%20b"));
        for path in ["/api/login/", "/api/logi", "/api", "/api/login/x"] {
            assert!(!route_matches("/api/login", path), "{path}");
        }
        for path in ["/api/users/", "/api/users", "/api/users/1/2"] {
            assert!(!route_matches("/api/users/:id", path), "{path}");
        }
    }

    fn serve_one(method: Method, path: &str) -> Response {
        let mut router = Router::new();
        router.get("/items/:id", |_: Request, _: Params| {
            Response::new(200, "item")
        });
        let request = Request::builder().method(method).uri(path).build();
        serve(router, &[("/items/:id", &["GET"])], request)
    }

    #[test]
    fn unknown_paths_are_json_404_and_wrong_methods_json_405() {
        assert_eq!(*serve_one(Method::Get, "/items/7").status(), 200);
        let missing = serve_one(Method::Get, "/other");
        assert_eq!(*missing.status(), 404);
        assert!(missing.body().starts_with(br#"{"status":"404""#));
        let wrong = serve_one(Method::Post, "/items/7");
        assert_eq!(*wrong.status(), 405);
        assert_eq!(wrong.header("allow").and_then(|v| v.as_str()), Some("GET"));
    }

    #[test]
    fn options_is_answered_and_every_answer_carries_the_edge_headers() {
        let options = serve_one(Method::Options, "/items/7");
        assert_eq!(*options.status(), 204);
        assert_eq!(
            options.header("allow").and_then(|v| v.as_str()),
            Some("GET, OPTIONS")
        );
        for response in [
            options,
            serve_one(Method::Get, "/items/7"),
            serve_one(Method::Get, "/other"),
        ] {
            assert!(response.header("x-request-id").is_some());
            assert!(response.header("x-content-type-options").is_some());
        }
        assert_eq!(*serve_one(Method::Options, "/other").status(), 404);
    }
}
