//! The JSON error shape for requests no route takes (spin-sdk's `Router` answers those
//! with plain-text 404/405).

use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};
use spinmesh_api::ApiError;

/// Serves `request` with `router` after adding a JSON 405 (with `Allow`) for each
/// `(path, allowed methods)` and answering any other path with a JSON 404.
///
/// The 404 is decided here rather than with a `/*` route because routefinder (under
/// spin-sdk's `Router`) orders a wildcard inconsistently against routes with dots such as
/// `/.well-known/jwks.json`, so the wildcard can win over exact routes. Paths compare
/// exactly: these components declare only exact routes.
pub fn serve(
    mut router: Router,
    routes: &[(&str, &'static [&'static str])],
    request: Request,
) -> Response {
    if !routes.iter().any(|(path, _)| *path == request.path()) {
        return ApiError::not_found("Not Found").into_response();
    }
    for &(path, allow) in routes {
        router.any(path, move |_: Request, _: Params| {
            ApiError::method_not_allowed(allow)
        });
    }
    router.handle(request)
}
