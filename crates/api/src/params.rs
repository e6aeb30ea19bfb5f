use spin_sdk::http::{Params, Request};

use crate::ApiError;

/// A `:name` capture of the Spin route, which Spin passes as header
/// `spin-path-match-<name>` (raw, not percent-decoded).
///
/// Read only names your route declares: for a route without that capture the header is
/// absent, or whatever the client sent. A missing capture is a routing bug, hence 500.
pub fn path_param<'a>(req: &'a Request, name: &str) -> Result<&'a str, ApiError> {
    req.header(&format!("spin-path-match-{name}"))
        .and_then(|value| value.as_str())
        .ok_or_else(|| ApiError::internal_logged(format_args!("route has no `:{name}` capture")))
}

/// A `:name` capture from `spin_sdk::http::Router`'s [`Params`] (taken from the path
/// itself). A missing capture is a routing bug, hence 500.
pub fn param<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .ok_or_else(|| ApiError::internal_logged(format_args!("route has no `:{name}` capture")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spin_path_match_header() {
        let req = Request::builder()
            .uri("/api/users/42")
            .header("spin-path-match-id", "42")
            .build();
        assert_eq!(path_param(&req, "id").unwrap(), "42");
        // Header names are case-insensitive; route names are lower-case in practice.
        assert_eq!(path_param(&req, "ID").unwrap(), "42");
        let error = path_param(&req, "category").unwrap_err();
        assert_eq!((error.status, error.code.as_ref()), (500, "internal_error"));
    }

    #[test]
    fn reads_router_params() {
        let params = Params::from([("id", "42")]);
        assert_eq!(param(&params, "id").unwrap(), "42");
        assert_eq!(param(&params, "other").unwrap_err().status, 500);
    }
}
