//! The readiness probe the gateway's `/health` sends to each component over
//! `http://<component>.spin.internal`.
//!
//! A 401 from a protected route only shows that a component instantiates; the probe also
//! runs the component's own check (its database opens and migrates, its variables
//! parse, its key-value store opens). No public route in `spin.toml` leads to
//! [`PATH`], so only calls inside the app reach it; its answer carries no detail either
//! way (the cause of a failure goes to the component log).

use serde_json::json;
use spin_sdk::http::{IntoResponse, Method, Request, Response};

use crate::{ApiError, json};

/// Where every component answers the probe.
pub const PATH: &str = "/internal/probe";

/// Readiness of a component that verifies tokens and keeps its own database: `store`
/// (opening it) succeeded, the token variables parse and the logout denylist opens.
pub fn token_store_ready<T, E: Into<ApiError>>(store: Result<T, E>) -> Result<(), ApiError> {
    store.map_err(Into::into)?;
    crate::config::token_verifier()?;
    crate::denylist::reachable()
}

/// `Some` answer when `request` is the probe: 200 `{"status":"ok"}` when `check`
/// passes, 503 `service_unavailable` when it fails. `None` for any other request.
pub fn answer(request: &Request, check: impl FnOnce() -> Result<(), ApiError>) -> Option<Response> {
    if request.path() != PATH {
        return None;
    }
    if *request.method() != Method::Get {
        return Some(ApiError::method_not_allowed(&["GET"]).into_response());
    }
    Some(match check() {
        Ok(()) => json(200, &json!({ "status": "ok" })),
        Err(_) => ApiError::service_unavailable("Component is not ready").into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Request {
        Request::builder().method(method).uri(path).build()
    }

    #[test]
    fn other_paths_are_left_to_the_component() {
        assert!(answer(&request(Method::Get, "/api/users"), || Ok(())).is_none());
        assert!(answer(&request(Method::Get, "/internal/probe/x"), || Ok(())).is_none());
    }

    #[test]
    fn passing_check_is_200_failing_is_503_without_detail() {
        let ok = answer(&request(Method::Get, PATH), || Ok(())).unwrap();
        assert_eq!(*ok.status(), 200);
        assert_eq!(ok.body(), br#"{"status":"ok"}"#);
        let failed = answer(&request(Method::Get, PATH), || {
            Err(ApiError::internal_logged("sqlite: disk I/O error"))
        })
        .unwrap();
        assert_eq!(*failed.status(), 503);
        let body = String::from_utf8(failed.body().to_vec()).unwrap();
        assert!(
            body.contains("service_unavailable") && !body.contains("sqlite"),
            "{body}"
        );
    }

    #[test]
    fn only_get() {
        let response = answer(&request(Method::Post, PATH), || Ok(())).unwrap();
        assert_eq!(*response.status(), 405);
    }
}
