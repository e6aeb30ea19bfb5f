//! The host's own metrics, in the Prometheus text format, for the admin listener.
//!
//! Handles for each route and component are resolved once at start-up, so a
//! request only looks up its (method, status) counter; label values are the
//! manifest's routes and component ids, never raw paths, to keep cardinality
//! bounded.

use std::time::Duration;

use anyhow::Result;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The exposition format `render` produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request duration histogram: 0.5 ms to 10 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a request reached a component: the public listener or service chaining.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    Public,
    /// `http://<component>.spin.internal`
    Internal,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Public => "public",
            Source::Internal => "internal",
        }
    }
}

/// Why the host answered a request without running a component.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    /// No route matches the path (or a chained call names no component).
    NoRoute,
    /// A public request whose Host is an in-app `*.spin.internal` address.
    InternalHost,
    /// Service chaining nested too deep: a request loop.
    ChainTooDeep,
}

pub struct HostMetrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    instances: IntGaugeVec,
    instantiations: IntCounterVec,
    failures: IntCounterVec,
    rejected_no_route: IntCounter,
    rejected_internal_host: IntCounter,
    rejected_chain_too_deep: IntCounter,
    waiting: IntGauge,
}

impl HostMetrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new_custom(Some("spinmesh_host".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered by a component, by route and response status.",
            ),
            &["component", "route", "source", "method", "status"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from receiving a request to the component's response head (public requests include waiting for a slot).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["component", "route", "source"],
        )?;
        let instances = IntGaugeVec::new(
            Opts::new(
                "instances",
                "Component instances running now (one per request in flight).",
            ),
            &["component"],
        )?;
        let instantiations = IntCounterVec::new(
            Opts::new(
                "instantiations_total",
                "Component instances created (one per request).",
            ),
            &["component"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "component_failures_total",
                "Requests a component did not answer properly: it hit the request timeout, or trapped or gave no response (error).",
            ),
            &["component", "reason"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "requests_rejected_total",
                "Requests the host refused before running any component.",
            ),
            &["reason"],
        )?;
        let waiting = IntGauge::new(
            "requests_waiting",
            "Public requests waiting for a free slot (--max-concurrent-requests).",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(instantiations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(waiting.clone()))?;
        Ok(HostMetrics {
            registry,
            rejected_no_route: rejected.with_label_values(&["no_route"]),
            rejected_internal_host: rejected.with_label_values(&["internal_host"]),
            rejected_chain_too_deep: rejected.with_label_values(&["chain_too_deep"]),
            requests,
            durations,
            instances,
            instantiations,
            failures,
            waiting,
        })
    }

    /// Handles for requests served by `component` through `route` (a manifest
    /// route, or `/...` for service chaining, as Spin reports it).
    pub fn route(&self, component: &str, route: &str, source: Source) -> RouteMetrics {
        RouteMetrics {
            requests: self.requests.clone(),
            component: component.to_string(),
            route: route.to_string(),
            source: source.label(),
            duration: self
                .durations
                .with_label_values(&[component, route, source.label()]),
        }
    }

    pub fn component(&self, component: &str) -> ComponentMetrics {
        ComponentMetrics {
            instances: self.instances.with_label_values(&[component]),
            instantiations: self.instantiations.with_label_values(&[component]),
            timeouts: self.failures.with_label_values(&[component, "timeout"]),
            errors: self.failures.with_label_values(&[component, "error"]),
        }
    }

    pub fn rejected(&self, why: Rejection) {
        match why {
            Rejection::NoRoute => &self.rejected_no_route,
            Rejection::InternalHost => &self.rejected_internal_host,
            Rejection::ChainTooDeep => &self.rejected_chain_too_deep,
        }
        .inc();
    }

    /// Counts a public request as waiting for a slot until the guard is dropped.
    pub fn waiting(&self) -> GaugeGuard {
        GaugeGuard::new(&self.waiting)
    }

    /// Every metric, in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

/// One route's handles.
pub struct RouteMetrics {
    requests: IntCounterVec,
    component: String,
    route: String,
    source: &'static str,
    duration: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, method: &http::Method, status: http::StatusCode, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        self.requests
            .with_label_values(&[
                &self.component,
                &self.route,
                self.source,
                method_label(method),
                status.as_str(),
            ])
            .inc();
    }
}

/// Standard methods by name; any extension method is `OTHER`, so clients
/// cannot mint label values.
fn method_label(method: &http::Method) -> &str {
    match method.as_str() {
        name @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT"
        | "TRACE") => name,
        _ => "OTHER",
    }
}

/// One component's handles.
pub struct ComponentMetrics {
    instances: IntGauge,
    instantiations: IntCounter,
    timeouts: IntCounter,
    errors: IntCounter,
}

impl ComponentMetrics {
    /// Counts an instance as running until the guard is dropped.
    pub fn instance_started(&self) -> GaugeGuard {
        self.instantiations.inc();
        GaugeGuard::new(&self.instances)
    }

    pub fn timed_out(&self) {
        self.timeouts.inc();
    }

    pub fn failed(&self) {
        self.errors.inc();
    }
}

/// Keeps a gauge raised while held, including when the future holding it is dropped.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_resolved_series_with_prefix_and_labels() {
        let metrics = HostMetrics::new().unwrap();
        let route = metrics.route("users", "/api/users/:id", Source::Public);
        let component = metrics.component("users");
        route.record(
            &http::Method::GET,
            http::StatusCode::OK,
            Duration::from_millis(3),
        );
        route.record(
            &http::Method::from_bytes(b"BREW").unwrap(),
            http::StatusCode::NOT_FOUND,
            Duration::from_secs(20),
        );
        drop(component.instance_started());
        component.timed_out();
        metrics.rejected(Rejection::NoRoute);
        let _waiting = metrics.waiting();

        let text = metrics.render().unwrap();
        for line in [
            r#"spinmesh_host_requests_total{component="users",method="GET",route="/api/users/:id",source="public",status="200"} 1"#,
            r#"spinmesh_host_requests_total{component="users",method="OTHER",route="/api/users/:id",source="public",status="404"} 1"#,
            r#"spinmesh_host_request_duration_seconds_bucket{component="users",route="/api/users/:id",source="public",le="0.005"} 1"#,
            r#"spinmesh_host_request_duration_seconds_bucket{component="users",route="/api/users/:id",source="public",le="+Inf"} 2"#,
            r#"spinmesh_host_request_duration_seconds_count{component="users",route="/api/users/:id",source="public"} 2"#,
            r#"spinmesh_host_instances{component="users"} 0"#,
            r#"spinmesh_host_instantiations_total{component="users"} 1"#,
            r#"spinmesh_host_component_failures_total{component="users",reason="timeout"} 1"#,
            r#"spinmesh_host_component_failures_total{component="users",reason="error"} 0"#,
            r#"spinmesh_host_requests_rejected_total{reason="no_route"} 1"#,
            r#"spinmesh_host_requests_rejected_total{reason="internal_host"} 0"#,
            "spinmesh_host_requests_waiting 1",
            "# TYPE spinmesh_host_requests_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
