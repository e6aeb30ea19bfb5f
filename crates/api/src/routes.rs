//! A component's route table: each route written once, as (method, paths, handler), and
//! from that one table the router, the JSON 404 for paths no route takes, the JSON 405
//! with `Allow` for a method a path does not serve, and the methods `OPTIONS` answers with
//! (through the [`edge`](crate::edge)).
//!
//! [`Routes`] is the table itself, for any kind of target (the `upload` component, which
//! takes the raw request to stream it, resolves to its own route kinds); [`RouteTable`] is
//! a table of spin-sdk handlers served through spin-sdk's `Router`.
//!
//! Paths are exact or have `:name` segments, each matching one non-empty segment. The 404
//! is decided here rather than with a `/*` route because routefinder (under spin-sdk's
//! `Router`) orders a wildcard inconsistently against routes with dots such as
//! `/.well-known/jwks.json`, so the wildcard could win over exact routes.

use std::future::Future;

use spin_sdk::http::{IntoResponse, Method, Params, Request, Response, Router};

use crate::ApiError;
use crate::edge::{self, AddressCharge};

struct Entry<T> {
    method: Method,
    path: &'static str,
    target: T,
}

/// Routes to targets of type `T`.
pub struct Routes<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

/// The `:name` segments a path matched, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captures<'p>(Vec<(&'static str, &'p str)>);

impl<'p> Captures<'p> {
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.0
            .iter()
            .find(|(captured, _)| *captured == name)
            .map(|&(_, value)| value)
    }
}

impl<T: Clone> Routes<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `method` on each of `paths` with `target`. `Allow` lists a path's methods in
    /// the order they were added.
    pub fn add(&mut self, method: Method, paths: &[&'static str], target: T) -> &mut Self {
        for &path in paths {
            self.entries.push(Entry {
                method: method.clone(),
                path,
                target: target.clone(),
            });
        }
        self
    }

    /// The methods `path` is served with, `None` when no route takes it.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let mut methods: Vec<String> = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|entry| captures(entry.path, path).is_some())
        {
            let name = entry.method.to_string();
            if !methods.contains(&name) {
                methods.push(name);
            }
        }
        (!methods.is_empty()).then_some(methods)
    }

    /// The target for `method` on `path`, with the path's captures: a JSON 404 for a path
    /// no route takes, a JSON 405 (with `Allow`) for a method the path is not served with.
    pub fn resolve<'p>(
        &self,
        method: &Method,
        path: &'p str,
    ) -> Result<(T, Captures<'p>), ApiError> {
        let allowed = self
            .allowed(path)
            .ok_or_else(|| ApiError::not_found("Not Found"))?;
        self.entries
            .iter()
            .filter(|entry| entry.method == *method)
            .find_map(|entry| {
                captures(entry.path, path).map(|captured| (entry.target.clone(), captured))
            })
            .ok_or_else(|| ApiError::method_not_allowed(&as_strs(&allowed)))
    }

    /// Each distinct path with its methods.
    fn paths(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut paths: Vec<(&'static str, Vec<String>)> = Vec::new();
        for entry in &self.entries {
            let name = entry.method.to_string();
            match paths.iter_mut().find(|(path, _)| *path == entry.path) {
                Some((_, methods)) if methods.contains(&name) => {}
                Some((_, methods)) => methods.push(name),
                None => paths.push((entry.path, vec![name])),
            }
        }
        paths
    }
}

/// Method names as the `&[&str]` the edge and [`ApiError::method_not_allowed`] take.
pub fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// What `path` captures under the route `pattern`, `None` if it does not match.
fn captures<'p>(pattern: &'static str, path: &'p str) -> Option<Captures<'p>> {
    let mut captured = Vec::new();
    let mut patterns = pattern.split('/');
    let mut segments = path.split('/');
    loop {
        match (patterns.next(), segments.next()) {
            (None, None) => return Some(Captures(captured)),
            (Some(pattern), Some(segment)) => match pattern.strip_prefix(':') {
                Some(name) if !segment.is_empty() => captured.push((name, segment)),
                None if pattern == segment => {}
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// A spin-sdk `Router` built from its [`Routes`], served through the edge.
pub struct RouteTable {
    router: Router,
    routes: Routes<()>,
    /// Paths whose handlers charge the client address themselves.
    charged_in_handler: Vec<&'static str>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            router: Router::new(),
            routes: Routes::new(),
            charged_in_handler: Vec::new(),
        }
    }
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `method` on each of `paths` with `handler`.
    pub fn add<F, Resp>(&mut self, method: Method, paths: &[&'static str], handler: F) -> &mut Self
    where
        F: Fn(Request, Params) -> Resp + Copy + 'static,
        Resp: IntoResponse + 'static,
    {
        for path in paths {
            self.router.add(path, method.clone(), handler);
        }
        self.routes.add(method, paths, ());
        self
    }

    /// [`RouteTable::add`] for an async handler.
    pub fn add_async<F, Fut, Resp>(
        &mut self,
        method: Method,
        paths: &[&'static str],
        handler: F,
    ) -> &mut Self
    where
        F: Fn(Request, Params) -> Fut + Copy + 'static,
        Fut: Future<Output = Resp> + 'static,
        Resp: IntoResponse + 'static,
    {
        for path in paths {
            self.router.add_async(path, method.clone(), handler);
        }
        self.routes.add(method, paths, ());
        self
    }

    /// The methods `path` is served with, `None` when no route takes it.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        self.routes.allowed(path)
    }

    /// Leaves the per-address charge of requests to `paths` to their handlers
    /// ([`AddressCharge::InHandler`]), which must call [`edge::charge_address`].
    pub fn charge_in_handler(&mut self, paths: &[&'static str]) -> &mut Self {
        self.charged_in_handler.extend_from_slice(paths);
        self
    }

    /// Serves `request` through the [`edge`](crate::edge) (request id, CORS and `OPTIONS`,
    /// rate limit, security headers, log line), answering a path no route takes with a
    /// JSON 404 and a method a route is not served with by a JSON 405.
    pub fn serve(self, request: Request) -> Response {
        let allowed = self.routes.allowed(request.path());
        let methods = allowed.as_deref().map(as_strs);
        let address_charge = if self
            .charged_in_handler
            .iter()
            .any(|pattern| captures(pattern, request.path()).is_some())
        {
            AddressCharge::InHandler
        } else {
            AddressCharge::UpFront
        };
        edge::serve(
            request,
            methods.as_deref(),
            address_charge,
            |request| match methods {
                Some(_) => self.dispatch(request),
                None => ApiError::not_found("Not Found").into_response(),
            },
        )
    }

    fn dispatch(mut self, request: Request) -> Response {
        for (path, methods) in self.routes.paths() {
            self.router.any(path, move |_: Request, _: Params| {
                ApiError::method_not_allowed(&as_strs(&methods))
            });
        }
        self.router.handle(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_exactly_or_by_segment() {
        assert!(captures("/api/login", "/api/login").is_some());
        let matched = captures("/api/users/:id", "/api/users/a%20b").unwrap();
        assert_eq!(matched.get("id"), Some("a%20b"));
        assert_eq!(matched.get("other"), None);
        for path in ["/api/login/", "/api/logi", "/api", "/api/login/x"] {
            assert!(captures("/api/login", path).is_none(), "{path}");
        }
        for path in ["/api/users/", "/api/users", "/api/users/1/2"] {
            assert!(captures("/api/users/:id", path).is_none(), "{path}");
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Read,
        Remove,
        Create,
    }

    fn table() -> Routes<Kind> {
        let mut routes = Routes::new();
        routes
            .add(Method::Get, &["/items/:id", "/seed/:id"], Kind::Read)
            .add(Method::Delete, &["/items/:id"], Kind::Remove)
            .add(Method::Post, &["/items"], Kind::Create);
        routes
    }

    fn allow(error: &ApiError) -> Option<&str> {
        error
            .headers()
            .iter()
            .find(|(name, _)| *name == "allow")
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn one_table_resolves_and_answers_404_and_405() {
        let routes = table();
        let (kind, captured) = routes.resolve(&Method::Delete, "/items/7").unwrap();
        assert_eq!((kind, captured.get("id")), (Kind::Remove, Some("7")));
        assert_eq!(
            routes.resolve(&Method::Get, "/seed/x").unwrap().0,
            Kind::Read
        );
        assert_eq!(
            routes.resolve(&Method::Post, "/items").unwrap().0,
            Kind::Create
        );
        let wrong = routes.resolve(&Method::Put, "/items/7").unwrap_err();
        assert_eq!((wrong.status, allow(&wrong)), (405, Some("GET, DELETE")));
        let wrong = routes.resolve(&Method::Get, "/items").unwrap_err();
        assert_eq!((wrong.status, allow(&wrong)), (405, Some("POST")));
        for path in ["/", "/items/7/x", "/seed", "/items/"] {
            let missing = routes.resolve(&Method::Get, path).unwrap_err();
            assert_eq!((missing.status, allow(&missing)), (404, None), "{path}");
        }
        assert_eq!(
            routes.paths(),
            [
                ("/items/:id", vec!["GET".to_string(), "DELETE".to_string()]),
                ("/seed/:id", vec!["GET".to_string()]),
                ("/items", vec!["POST".to_string()]),
            ]
        );
    }

    fn serve_one(method: Method, path: &str) -> Response {
        let mut table = RouteTable::new();
        table.add(Method::Get, &["/items/:id"], |_: Request, _: Params| {
            Response::new(200, "item")
        });
        let request = Request::builder().method(method).uri(path).build();
        table.serve(request)
    }

    #[test]
    fn unknown_paths_are_json_404_and_wrong_methods_json_405() {
        assert_eq!(*serve_one(Method::Get, "/items/7").status(), 200);
        let missing = serve_one(Method::Get, "/other");
        assert_eq!(*missing.status(), 404);
        assert!(missing.body().starts_with(br#"{"status":"404""#));
        let wrong = serve_one(Method::Post, "/items/7");
        assert_eq!(*wrong.status(), 405);
        assert!(wrong.body().starts_with(br#"{"status":"405""#));
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
