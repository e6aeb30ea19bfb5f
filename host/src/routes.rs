//! The HTTP trigger's route table, with Spin's matching rules.
//!
//! Spin routes are `routefinder` patterns once `/...` is written as `/*`: exact
//! segments beat `:name` captures, which beat a trailing wildcard, compared
//! segment by segment. A route declared twice is not an error: the later
//! declaration wins and a warning is printed.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use routefinder::{RouteSpec, Router};

/// Checks that a manifest route is one Spin accepts.
pub fn validate_route(route: &str) -> Result<()> {
    if !route.starts_with('/') {
        bail!("routes must start with `/`");
    }
    if route.starts_with("/.well-known/spin/") || route == "/.well-known/spin" {
        bail!("`/.well-known/spin/` is reserved by Spin");
    }
    let pattern = to_pattern(route);
    if pattern[..pattern.len().saturating_sub(1)].contains('*') {
        bail!("a wildcard (`/...`) may only end a route");
    }
    RouteSpec::try_from(pattern.as_str()).map_err(|err| anyhow!("{err}"))?;
    Ok(())
}

/// `/api/...` → `/api/*`, the form routefinder understands.
fn to_pattern(route: &str) -> String {
    match route.strip_suffix("/...") {
        Some(prefix) => format!("{prefix}/*"),
        None => route.to_string(),
    }
}

/// The part of a route before its trailing wildcard (Spin's "component route").
fn wildcard_prefix(route: &str) -> &str {
    route
        .strip_suffix("/...")
        .or_else(|| route.strip_suffix("/*"))
        .unwrap_or(route)
}

#[derive(Debug, Clone)]
struct RouteEntry {
    component: String,
    /// The route as written in the manifest.
    raw: String,
    /// Position in [`RouteTable::public_routes`].
    index: usize,
}

#[derive(Debug)]
pub struct RouteTable {
    router: Router<RouteEntry>,
    entries: Vec<RouteEntry>,
}

/// The outcome of routing a request path.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub component: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    /// The route without its trailing wildcard (`spin-component-route`).
    pub component_route: String,
    /// The part of the path matched by a trailing wildcard (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures, passed as `spin-path-match-<name>`.
    pub captures: Vec<(String, String)>,
    /// Position of the route in [`RouteTable::public_routes`]; `None` for
    /// service chaining, which has no manifest route.
    pub public_index: Option<usize>,
}

impl RouteTable {
    /// Builds the table from `(route, component)` pairs in declaration order;
    /// `warn` receives a message for each overridden route.
    pub fn build<'a>(
        public_routes: impl IntoIterator<Item = (&'a str, &'a str)>,
        mut warn: impl FnMut(String),
    ) -> Result<Self> {
        let mut routes: BTreeMap<String, RouteEntry> = BTreeMap::new();
        for (raw, component) in public_routes {
            let entry = RouteEntry {
                component: component.to_string(),
                raw: raw.to_string(),
                index: 0,
            };
            if let Some(previous) = routes.insert(to_pattern(raw), entry) {
                warn(format!(
                    "route {raw:?} is declared twice: component {component:?} replaces {:?}",
                    previous.component
                ));
            }
        }
        let mut router = Router::new();
        let mut entries = Vec::with_capacity(routes.len());
        for (index, (pattern, mut entry)) in routes.into_iter().enumerate() {
            entry.index = index;
            router
                .add(pattern.as_str(), entry.clone())
                .map_err(|err| anyhow!("route {pattern:?}: {err}"))?;
            entries.push(entry);
        }
        Ok(RouteTable { router, entries })
    }

    /// `(component, route as written)` for each public route, in index order.
    pub fn public_routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.component.as_str(), entry.raw.as_str()))
    }

    /// Finds the component serving `path` on the public listener.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let found = self.router.best_match(path)?;
        let captures = found.captures();
        let entry = found.handler();
        let component_route = wildcard_prefix(&entry.raw);
        // Spin keeps trailing slashes in the path info (`/x/a/` under `/x/...`
        // gives `/a/`), which routefinder's capture trims, so cut the prefix off.
        let path_info = match captures.wildcard() {
            Some(_) => path
                .strip_prefix(component_route)
                .unwrap_or(path)
                .to_string(),
            None => String::new(),
        };
        Some(RouteMatch {
            component: entry.component.clone(),
            raw_route: entry.raw.clone(),
            component_route: component_route.to_string(),
            path_info,
            captures: captures
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            public_index: Some(entry.index),
        })
    }

    /// Routing for a request addressed to `http://<component>.spin.internal`:
    /// as in Spin, the component sees a catch-all match of the whole path.
    pub fn route_internal(component: &str, path: &str) -> RouteMatch {
        RouteMatch {
            component: component.to_string(),
            raw_route: "/...".to_string(),
            component_route: String::new(),
            path_info: path.to_string(),
            captures: Vec::new(),
            public_index: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> (RouteTable, Vec<String>) {
        let mut warnings = Vec::new();
        let table = RouteTable::build(routes.iter().copied(), |w| warnings.push(w)).unwrap();
        (table, warnings)
    }

    fn component_for(table: &RouteTable, path: &str) -> Option<String> {
        table.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_beats_param_beats_wildcard() {
        let (t, _) = table(&[
            ("/...", "fallback"),
            ("/api/users/:id", "user"),
            ("/api/users/me", "me"),
            ("/api/...", "api"),
        ]);
        assert_eq!(component_for(&t, "/api/users/me").as_deref(), Some("me"));
        assert_eq!(component_for(&t, "/api/users/42").as_deref(), Some("user"));
        assert_eq!(
            component_for(&t, "/api/users/42/extra").as_deref(),
            Some("api")
        );
        assert_eq!(component_for(&t, "/api").as_deref(), Some("api"));
        assert_eq!(component_for(&t, "/other").as_deref(), Some("fallback"));
    }

    #[test]
    fn longer_wildcard_prefix_wins() {
        let (t, _) = table(&[("/api/...", "api"), ("/api/jobs/...", "jobs")]);
        assert_eq!(
            component_for(&t, "/api/jobs/1/download").as_deref(),
            Some("jobs")
        );
        assert_eq!(component_for(&t, "/api/other").as_deref(), Some("api"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let (t, _) = table(&[("/health", "gateway")]);
        assert_eq!(component_for(&t, "/health").as_deref(), Some("gateway"));
        assert_eq!(component_for(&t, "/healthz"), None);
        assert_eq!(component_for(&t, "/"), None);
    }

    #[test]
    fn reports_captures_path_info_and_routes() {
        let (t, _) = table(&[("/api/users/:id", "users"), ("/static/...", "files")]);
        let m = t.route("/api/users/42").unwrap();
        assert_eq!(m.captures, [("id".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "");
        assert_eq!(m.component_route, "/api/users/:id");
        let m = t.route("/static/css/site.css").unwrap();
        assert_eq!(m.raw_route, "/static/...");
        assert_eq!(m.component_route, "/static");
        assert_eq!(m.path_info, "/css/site.css");
        assert_eq!(t.route("/static").unwrap().path_info, "");
        assert_eq!(t.route("/static/").unwrap().path_info, "/");
        assert_eq!(t.route("/static/a/").unwrap().path_info, "/a/");
    }

    #[test]
    fn public_index_names_the_matched_route() {
        let (t, _) = table(&[("/b", "second"), ("/a/...", "first"), ("/b", "third")]);
        let routes: Vec<_> = t.public_routes().collect();
        assert_eq!(routes, [("first", "/a/..."), ("third", "/b")]);
        assert_eq!(
            routes[t.route("/a/x").unwrap().public_index.unwrap()],
            ("first", "/a/...")
        );
        assert_eq!(
            routes[t.route("/b").unwrap().public_index.unwrap()],
            ("third", "/b")
        );
        assert_eq!(RouteTable::route_internal("first", "/").public_index, None);
    }

    #[test]
    fn duplicate_route_warns_and_later_wins() {
        let (t, warnings) = table(&[("/x", "first"), ("/x", "second")]);
        assert_eq!(component_for(&t, "/x").as_deref(), Some("second"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("second"));
    }

    #[test]
    fn components_without_a_route_are_reached_only_internally() {
        let (t, _) = table(&[("/a", "visible")]);
        assert_eq!(component_for(&t, "/hidden"), None);
        let m = RouteTable::route_internal("hidden", "/anything");
        assert_eq!(m.component, "hidden");
        assert_eq!(m.path_info, "/anything");
    }

    #[test]
    fn validates_routes() {
        validate_route("/").unwrap();
        validate_route("/a/:b/...").unwrap();
        assert!(validate_route("no-slash").is_err());
        assert!(validate_route("/.well-known/spin/info").is_err());
        assert!(validate_route("/a/*/b").is_err());
    }
}
