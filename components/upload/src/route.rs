use spin_sdk::http::Method;
use spinmesh_api::ApiError;

/// What a request asks for, from its method and path (the routes `spin.toml` sends here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /api/upload`, `POST /upload`.
    Upload,
    Jobs(JobRoute<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRoute<'a> {
    /// `GET /api/jobs`.
    List,
    /// `GET /api/jobs/:id`, `GET /status/:id`.
    Status(&'a str),
    /// `DELETE /api/jobs/:id`.
    Cancel(&'a str),
    /// `GET /api/jobs/:id/download`, `GET /download/:id`.
    Download(&'a str),
}

impl<'a> Route<'a> {
    /// 404 for a path that is not ours, 405 (with `Allow`) for a method a path does not serve.
    pub fn parse(method: &Method, path: &'a str) -> Result<Self, ApiError> {
        let allow = allowed_methods(path).ok_or_else(|| ApiError::not_found("Not Found"))?;
        let route = match (method, segments(path).as_slice()) {
            (Method::Post, ["api", "upload"] | ["upload"]) => Route::Upload,
            (Method::Get, ["api", "jobs"]) => Route::Jobs(JobRoute::List),
            (Method::Get, ["api", "jobs", id] | ["status", id]) => {
                Route::Jobs(JobRoute::Status(id))
            }
            (Method::Delete, ["api", "jobs", id]) => Route::Jobs(JobRoute::Cancel(id)),
            (Method::Get, ["api", "jobs", id, "download"] | ["download", id]) => {
                Route::Jobs(JobRoute::Download(id))
            }
            _ => return Err(ApiError::method_not_allowed(allow)),
        };
        Ok(route)
    }
}

/// The methods a path serves; `None` for a path that is not ours.
pub fn allowed_methods(path: &str) -> Option<&'static [&'static str]> {
    match segments(path).as_slice() {
        ["api", "upload"] | ["upload"] => Some(&["POST"]),
        ["api", "jobs"] => Some(&["GET"]),
        ["api", "jobs", _] => Some(&["GET", "DELETE"]),
        ["status", _] | ["api", "jobs", _, "download"] | ["download", _] => Some(&["GET"]),
        _ => None,
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "job_0123456789abcdef0123456789abcdef";

    fn parse(method: Method, path: &str) -> Result<Route<'_>, (u16, Option<String>)> {
        Route::parse(&method, path).map_err(|error| {
            let allow = error
                .headers()
                .iter()
                .find(|(name, _)| *name == "allow")
                .map(|(_, value)| value.clone());
            (error.status, allow)
        })
    }

    #[test]
    fn canonical_routes_and_seed_aliases() {
        assert_eq!(parse(Method::Post, "/api/upload"), Ok(Route::Upload));
        assert_eq!(parse(Method::Post, "/upload"), Ok(Route::Upload));
        assert_eq!(
            parse(Method::Get, "/api/jobs"),
            Ok(Route::Jobs(JobRoute::List))
        );
        let path = format!("/api/jobs/{ID}");
        assert_eq!(
            parse(Method::Get, &path),
            Ok(Route::Jobs(JobRoute::Status(ID)))
        );
        assert_eq!(
            parse(Method::Delete, &path),
            Ok(Route::Jobs(JobRoute::Cancel(ID)))
        );
        let status = format!("/status/{ID}");
        assert_eq!(
            parse(Method::Get, &status),
            Ok(Route::Jobs(JobRoute::Status(ID)))
        );
        let download = format!("/api/jobs/{ID}/download");
        assert_eq!(
            parse(Method::Get, &download),
            Ok(Route::Jobs(JobRoute::Download(ID)))
        );
        let alias = format!("/download/{ID}");
        assert_eq!(
            parse(Method::Get, &alias),
            Ok(Route::Jobs(JobRoute::Download(ID)))
        );
    }

    #[test]
    fn wrong_methods_name_the_allowed_ones() {
        assert_eq!(
            parse(Method::Get, "/upload"),
            Err((405, Some("POST".into())))
        );
        assert_eq!(
            parse(Method::Post, "/api/jobs"),
            Err((405, Some("GET".into())))
        );
        let path = format!("/api/jobs/{ID}");
        assert_eq!(
            parse(Method::Put, &path),
            Err((405, Some("GET, DELETE".into())))
        );
        let status = format!("/status/{ID}");
        assert_eq!(
            parse(Method::Delete, &status),
            Err((405, Some("GET".into())))
        );
    }

    #[test]
    fn other_paths_are_not_found() {
        for path in [
            "/",
            "/api",
            "/api/jobs/x/y",
            "/status",
            "/api/uploads",
            "/download/a/b",
        ] {
            assert_eq!(parse(Method::Get, path), Err((404, None)), "{path}");
        }
    }
}
