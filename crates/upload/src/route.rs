use spin_sdk::http::Method;
use spinmesh_api::ApiError;
use spinmesh_api::routes::Routes;

/// What a request asks for, from its method and path (the routes `spin.toml` sends here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /api/upload`, `POST /upload`.
    Upload,
    Jobs(JobRoute<'a>),
    /// `/api/uploads`: resumable uploads (tus).
    Resumable(ResumableRoute<'a>),
    /// `GET /api/webhooks/secret`: the key the caller's webhooks are signed with.
    WebhookSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumableRoute<'a> {
    /// `POST /api/uploads`.
    Create,
    /// `HEAD /api/uploads/:id`.
    Offset(&'a str),
    /// `PATCH /api/uploads/:id`.
    Append(&'a str),
    /// `DELETE /api/uploads/:id`.
    Terminate(&'a str),
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
    /// `POST /api/jobs/:id/retry`.
    Retry(&'a str),
    /// `GET /api/jobs/:id/events`.
    Events(&'a str),
}

/// A route without its job id, as the table holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Upload,
    List,
    Status,
    Cancel,
    Download,
    Retry,
    Events,
    CreateUpload,
    UploadOffset,
    Append,
    Terminate,
    WebhookSecret,
}

/// The component's routes, each written once.
pub fn table() -> Routes<Kind> {
    let mut routes = Routes::new();
    routes
        .add(Method::Post, &["/api/upload", "/upload"], Kind::Upload)
        .add(Method::Get, &["/api/jobs"], Kind::List)
        .add(Method::Get, &["/api/jobs/:id", "/status/:id"], Kind::Status)
        .add(Method::Delete, &["/api/jobs/:id"], Kind::Cancel)
        .add(
            Method::Get,
            &["/api/jobs/:id/download", "/download/:id"],
            Kind::Download,
        )
        .add(Method::Post, &["/api/jobs/:id/retry"], Kind::Retry)
        .add(Method::Get, &["/api/jobs/:id/events"], Kind::Events)
        .add(Method::Post, &["/api/uploads"], Kind::CreateUpload)
        .add(Method::Head, &["/api/uploads/:id"], Kind::UploadOffset)
        .add(Method::Patch, &["/api/uploads/:id"], Kind::Append)
        .add(Method::Delete, &["/api/uploads/:id"], Kind::Terminate)
        .add(Method::Get, &["/api/webhooks/secret"], Kind::WebhookSecret);
    routes
}

impl<'a> Route<'a> {
    /// 404 for a path that is not ours, 405 (with `Allow`) for a method a path does not serve.
    pub fn parse(routes: &Routes<Kind>, method: &Method, path: &'a str) -> Result<Self, ApiError> {
        let (kind, captured) = routes.resolve(method, path)?;
        let id = || captured.get("id").unwrap_or_default();
        Ok(match kind {
            Kind::Upload => Route::Upload,
            Kind::List => Route::Jobs(JobRoute::List),
            Kind::Status => Route::Jobs(JobRoute::Status(id())),
            Kind::Cancel => Route::Jobs(JobRoute::Cancel(id())),
            Kind::Download => Route::Jobs(JobRoute::Download(id())),
            Kind::Retry => Route::Jobs(JobRoute::Retry(id())),
            Kind::Events => Route::Jobs(JobRoute::Events(id())),
            Kind::CreateUpload => Route::Resumable(ResumableRoute::Create),
            Kind::UploadOffset => Route::Resumable(ResumableRoute::Offset(id())),
            Kind::Append => Route::Resumable(ResumableRoute::Append(id())),
            Kind::Terminate => Route::Resumable(ResumableRoute::Terminate(id())),
            Kind::WebhookSecret => Route::WebhookSecret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "job_0123456789abcdef0123456789abcdef";

    fn parse(method: Method, path: &str) -> Result<Route<'_>, (u16, Option<String>)> {
        Route::parse(&table(), &method, path).map_err(|error| {
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
        let retry = format!("/api/jobs/{ID}/retry");
        assert_eq!(
            parse(Method::Post, &retry),
            Ok(Route::Jobs(JobRoute::Retry(ID)))
        );
        assert_eq!(parse(Method::Get, &retry), Err((405, Some("POST".into()))));
        let events = format!("/api/jobs/{ID}/events");
        assert_eq!(
            parse(Method::Get, &events),
            Ok(Route::Jobs(JobRoute::Events(ID)))
        );
        assert_eq!(
            parse(Method::Get, "/api/webhooks/secret"),
            Ok(Route::WebhookSecret)
        );
        assert_eq!(
            parse(Method::Post, "/api/webhooks/secret"),
            Err((405, Some("GET".into())))
        );
    }

    #[test]
    fn resumable_upload_routes() {
        const UPLOAD: &str = "upl_0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse(Method::Post, "/api/uploads"),
            Ok(Route::Resumable(ResumableRoute::Create))
        );
        let path = format!("/api/uploads/{UPLOAD}");
        assert_eq!(
            parse(Method::Head, &path),
            Ok(Route::Resumable(ResumableRoute::Offset(UPLOAD)))
        );
        assert_eq!(
            parse(Method::Patch, &path),
            Ok(Route::Resumable(ResumableRoute::Append(UPLOAD)))
        );
        assert_eq!(
            parse(Method::Delete, &path),
            Ok(Route::Resumable(ResumableRoute::Terminate(UPLOAD)))
        );
        assert_eq!(
            parse(Method::Get, &path),
            Err((405, Some("HEAD, PATCH, DELETE".into())))
        );
        assert_eq!(
            parse(Method::Get, "/api/uploads"),
            Err((405, Some("POST".into())))
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
            "/api/uploads/a/b",
            "/download/a/b",
        ] {
            assert_eq!(parse(Method::Get, path), Err((404, None)), "{path}");
        }
    }
}
