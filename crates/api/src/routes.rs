//! A component's route table: each route written once, as (method, paths, handler), and
//! from that one table the router, the JSON 404 for paths no route takes, the JSON 405
//! with `Allow` for a method a path does not serve, and the methods `OPTIONS` answers with
//! (through the [`edge`](crate::edge)).
//!
//! [`Routes`] is the table itself, for any kind of target (the `upload` component, which
//! takes the raw request to stream it, resolves to its own route kinds); [`RouteTable`] is
//! a table of spin-sdk handlers dispatched through it.
//!
//! Paths are exact or have `:name` segments, each matching one non-empty segment; where
//! several match, literal segments win over captures.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use spin_sdk::http::{IntoResponse, Method, Params, Request, Response};

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

    /// The captures as spin-sdk's [`Params`], which handlers take.
    fn into_params(self) -> Params {
        routefinder::Captures::from(self.0).into_owned()
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
    /// Where several routes match, the most specific wins: segment by segment from the
    /// left, a literal segment beats a `:name` one (`/p/category/:c` over `/p/:id/r`).
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
            .filter_map(|entry| captures(entry.path, path).map(|captured| (entry, captured)))
            .min_by_key(|(entry, _)| capture_positions(entry.path))
            .map(|(entry, captured)| (entry.target.clone(), captured))
            .ok_or_else(|| ApiError::method_not_allowed(&as_strs(&allowed)))
    }
}

/// For each segment of a route pattern, whether it is a `:name` capture: ordering these
/// puts more specific patterns first.
fn capture_positions(pattern: &str) -> Vec<bool> {
    pattern
        .split('/')
        .map(|segment| segment.starts_with(':'))
        .collect()
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

/// A route's handler, sync or async, as [`RouteTable::add`] and
/// [`RouteTable::add_async`] take them.
#[derive(Clone)]
enum Handler {
    Sync(Rc<dyn Fn(Request, Params) -> Response>),
    Async(Rc<dyn Fn(Request, Params) -> ResponseFuture>),
}

/// What an async handler returns, boxed so handlers of different types share one table.
type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

impl Handler {
    fn call(&self, request: Request, params: Params) -> Response {
        match self {
            Handler::Sync(handler) => handler(request, params),
            Handler::Async(handler) => spin_sdk::http::run(handler(request, params)),
        }
    }
}

/// A component's spin-sdk handlers in a [`Routes`] table, served through the edge.
///
/// Dispatch is this table's own [`Routes::resolve`] rather than spin-sdk's `Router`: every
/// request gets a fresh instance, so a `Router` (routefinder parsing and sorting each
/// route) would be rebuilt per request, which measured as most of the guest's time on a
/// no-op route. Handlers keep spin-sdk's `(Request, Params)` signature.
#[derive(Default)]
pub struct RouteTable {
    routes: Routes<Handler>,
    /// Paths whose handlers charge the client address themselves.
    charged_in_handler: Vec<&'static str>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `method` on each of `paths` with `handler`.
    pub fn add<F, Resp>(&mut self, method: Method, paths: &[&'static str], handler: F) -> &mut Self
    where
        F: Fn(Request, Params) -> Resp + 'static,
        Resp: IntoResponse + 'static,
    {
        let handler = move |request, params| handler(request, params).into_response();
        self.routes
            .add(method, paths, Handler::Sync(Rc::new(handler)));
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
        F: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = Resp> + 'static,
        Resp: IntoResponse + 'static,
    {
        let handler = move |request, params| {
            let response = handler(request, params);
            Box::pin(async move { response.await.into_response() }) as ResponseFuture
        };
        self.routes
            .add(method, paths, Handler::Async(Rc::new(handler)));
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
            |request| match self.routes.resolve(request.method(), request.path()) {
                Ok((handler, captured)) => {
                    let params = captured.into_params();
                    handler.call(request, params)
                }
                Err(error) => error.into_response(),
            },
        )
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
    }

    #[test]
    fn a_literal_segment_wins_over_a_capture_whatever_the_order() {
        let mut routes = Routes::new();
        routes
            .add(Method::Get, &["/p/:id/reservations"], "reservations")
            .add(Method::Get, &["/p/category/:name"], "category")
            .add(Method::Get, &["/p/:id"], "item")
            .add(Method::Get, &["/p/new"], "new");
        let target = |path| routes.resolve(&Method::Get, path).unwrap();
        assert_eq!(target("/p/category/reservations").0, "category");
        assert_eq!(target("/p/7/reservations").0, "reservations");
        assert_eq!(target("/p/new").0, "new");
        let (item, captured) = target("/p/7");
        assert_eq!((item, captured.get("id")), ("item", Some("7")));
    }

    fn serve_one(method: Method, path: &str) -> Response {
        let mut table = RouteTable::new();
        table
            .add(
                Method::Get,
                &["/items/:id"],
                |_: Request, params: Params| {
                    Response::new(200, format!("item {}", params.get("id").unwrap_or("?")))
                },
            )
            .add_async(
                Method::Delete,
                &["/items/:id"],
                |_: Request, _: Params| async { Response::new(204, ()) },
            );
        let request = Request::builder().method(method).uri(path).build();
        table.serve(request)
    }

    #[test]
    fn unknown_paths_are_json_404_and_wrong_methods_json_405() {
        let item = serve_one(Method::Get, "/items/7");
        assert_eq!((*item.status(), item.body()), (200, &b"item 7"[..]));
        assert_eq!(*serve_one(Method::Delete, "/items/7").status(), 204);
        let missing = serve_one(Method::Get, "/other");
        assert_eq!(*missing.status(), 404);
        assert!(missing.body().starts_with(br#"{"status":"404""#));
        let wrong = serve_one(Method::Post, "/items/7");
        assert_eq!(*wrong.status(), 405);
        assert!(wrong.body().starts_with(br#"{"status":"405""#));
        assert_eq!(
            wrong.header("allow").and_then(|v| v.as_str()),
            Some("GET, DELETE")
        );
    }

    #[test]
    fn options_is_answered_and_every_answer_carries_the_edge_headers() {
        let options = serve_one(Method::Options, "/items/7");
        assert_eq!(*options.status(), 204);
        assert_eq!(
            options.header("allow").and_then(|v| v.as_str()),
            Some("GET, DELETE, OPTIONS")
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
