//! What the gateway's `/health`, `/health/services` and `/metrics` decide, as plain data
//! so it is unit-tested natively; the gateway component only sends the requests.
//!
//! * [`TARGETS`]: what is probed for each service the seed's `/health` names;
//! * [`Health`]: the probes' outcomes, the status rule and the two JSON reports;
//! * [`cache`]: the report kept between requests, so a burst of callers probes once;
//! * [`metrics`]: Prometheus text from several sources, with a gauge for each.

pub mod cache;
pub mod metrics;

use serde::Serialize;
use serde_json::{Value, json};

/// A service as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Auth,
    Users,
    Catalog,
    Orders,
    Converter,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Auth,
        Service::Users,
        Service::Catalog,
        Service::Orders,
        Service::Converter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Users => "users",
            Service::Catalog => "catalog",
            Service::Orders => "orders",
            Service::Converter => "converter",
        }
    }

    /// Without tokens nothing else can be used, so an auth outage makes the app
    /// unhealthy; any other service down leaves it degraded.
    fn is_core(self) -> bool {
        self == Service::Auth
    }
}

/// What is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A component, over `http://<id>.spin.internal` at its readiness probe.
    Component(&'static str),
    /// The conversion runner's `/healthz`.
    Runner,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Component(id) => id,
            Target::Runner => "runner",
        }
    }
}

/// Every check behind `/health`: a service is up when all of its checks pass.
pub const TARGETS: [(Service, Target); 8] = [
    (Service::Auth, Target::Component("register")),
    (Service::Auth, Target::Component("login")),
    (Service::Auth, Target::Component("validate")),
    (Service::Users, Target::Component("users")),
    (Service::Catalog, Target::Component("products")),
    (Service::Orders, Target::Component("orders")),
    (Service::Converter, Target::Component("upload")),
    (Service::Converter, Target::Runner),
];

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered 200.
    Up,
    /// Answered with another status (e.g. 503 from a failing probe, 404 from a
    /// component without one).
    Status(u16),
    /// Refused or failed the request: not running, no such component, not granted.
    Unreachable,
    /// No answer within the timeout.
    Timeout,
}

impl Outcome {
    pub fn is_up(self) -> bool {
        self == Outcome::Up
    }

    /// A stable, detail-free reason for the report.
    fn reason(self) -> Option<&'static str> {
        match self {
            Outcome::Up => None,
            Outcome::Status(_) => Some("unexpected_status"),
            Outcome::Unreachable => Some("unreachable"),
            Outcome::Timeout => Some("timeout"),
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub service: Service,
    pub target: Target,
    pub outcome: Outcome,
    pub latency_ms: u64,
}

/// The app's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    /// 200 only when everything is up, so load balancers and orchestrators act on it.
    pub fn http_status(self) -> u16 {
        match self {
            Status::Healthy => 200,
            Status::Degraded | Status::Unhealthy => 503,
        }
    }
}

/// The outcomes of every check in [`TARGETS`], at one moment.
#[derive(Debug, Clone)]
pub struct Health {
    pub checks: Vec<Check>,
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub version: String,
}

impl Health {
    fn service_up(&self, service: Service) -> bool {
        self.checks
            .iter()
            .filter(|check| check.service == service)
            .all(|check| check.outcome.is_up())
    }

    /// Core service ([`Service::Auth`]) down → unhealthy; any other down → degraded.
    pub fn status(&self) -> Status {
        let down: Vec<Service> = Service::ALL
            .into_iter()
            .filter(|service| !self.service_up(*service))
            .collect();
        if down.iter().any(|service| service.is_core()) {
            Status::Unhealthy
        } else if down.is_empty() {
            Status::Healthy
        } else {
            Status::Degraded
        }
    }

    fn connection(&self, service: Service) -> &'static str {
        if self.service_up(service) {
            "connected"
        } else {
            "disconnected"
        }
    }

    /// `GET /health`: the seed's shape, each service `connected` or `disconnected`.
    pub fn summary(&self) -> Value {
        let services: serde_json::Map<String, Value> = Service::ALL
            .into_iter()
            .map(|service| (service.name().into(), self.connection(service).into()))
            .collect();
        json!({
            "status": self.status(),
            "timestamp": self.timestamp,
            "version": self.version,
            "services": services,
        })
    }

    /// `GET /health/services`: per service its state, latency (its slowest check; they
    /// run concurrently) and each check with its own latency and, when down, a reason.
    pub fn detail(&self) -> Value {
        let services: serde_json::Map<String, Value> = Service::ALL
            .into_iter()
            .map(|service| {
                let checks: Vec<&Check> = self
                    .checks
                    .iter()
                    .filter(|check| check.service == service)
                    .collect();
                let latency = checks
                    .iter()
                    .map(|check| check.latency_ms)
                    .max()
                    .unwrap_or(0);
                let checks: serde_json::Map<String, Value> = checks
                    .into_iter()
                    .map(|check| (check.target.name().into(), check_json(check)))
                    .collect();
                let value = json!({
                    "status": self.connection(service),
                    "latency_ms": latency,
                    "checks": checks,
                });
                (service.name().into(), value)
            })
            .collect();
        json!({
            "status": self.status(),
            "timestamp": self.timestamp,
            "version": self.version,
            "services": services,
        })
    }
}

fn check_json(check: &Check) -> Value {
    let mut value = json!({
        "status": if check.outcome.is_up() { "up" } else { "down" },
        "latency_ms": check.latency_ms,
    });
    if let Some(reason) = check.outcome.reason() {
        value["error"] = reason.into();
    }
    if let Outcome::Status(status) = check.outcome {
        value["http_status"] = status.into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(outcome: impl Fn(Target) -> Outcome) -> Health {
        Health {
            checks: TARGETS
                .iter()
                .enumerate()
                .map(|(i, &(service, target))| Check {
                    service,
                    target,
                    outcome: outcome(target),
                    latency_ms: i as u64,
                })
                .collect(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            version: "0.1.0".into(),
        }
    }

    fn down_only(name: &'static str, outcome: Outcome) -> Health {
        health(move |target| {
            if target.name() == name {
                outcome
            } else {
                Outcome::Up
            }
        })
    }

    #[test]
    fn every_service_has_a_check() {
        for service in Service::ALL {
            assert!(TARGETS.iter().any(|(s, _)| *s == service), "{service:?}");
        }
    }

    #[test]
    fn all_up_is_healthy_200() {
        let health = health(|_| Outcome::Up);
        assert_eq!(health.status(), Status::Healthy);
        assert_eq!(health.status().http_status(), 200);
        assert_eq!(
            health.summary(),
            json!({
                "status": "healthy",
                "timestamp": "2025-01-01T00:00:00Z",
                "version": "0.1.0",
                "services": {"auth": "connected", "users": "connected", "catalog": "connected",
                             "orders": "connected", "converter": "connected"},
            })
        );
    }

    #[test]
    fn runner_down_is_degraded_503() {
        let health = down_only("runner", Outcome::Unreachable);
        assert_eq!(health.status(), Status::Degraded);
        assert_eq!(health.status().http_status(), 503);
        assert_eq!(health.summary()["services"]["converter"], "disconnected");
        assert_eq!(health.summary()["services"]["auth"], "connected");
    }

    #[test]
    fn any_auth_component_down_is_unhealthy() {
        for name in ["register", "login", "validate"] {
            let health = down_only(name, Outcome::Timeout);
            assert_eq!(health.status(), Status::Unhealthy, "{name}");
            assert_eq!(health.summary()["services"]["auth"], "disconnected");
        }
    }

    #[test]
    fn a_missing_component_counts_as_down() {
        for name in ["products", "orders", "users", "upload"] {
            let health = down_only(name, Outcome::Status(404));
            assert_eq!(health.status(), Status::Degraded, "{name}");
        }
    }

    #[test]
    fn detail_names_each_check_with_reason_and_latency() {
        let detail = down_only("runner", Outcome::Status(503)).detail();
        let converter = &detail["services"]["converter"];
        assert_eq!(converter["status"], "disconnected");
        assert_eq!(converter["latency_ms"], 7);
        assert_eq!(
            converter["checks"]["upload"],
            json!({"status": "up", "latency_ms": 6})
        );
        assert_eq!(
            converter["checks"]["runner"],
            json!({"status": "down", "latency_ms": 7, "error": "unexpected_status", "http_status": 503})
        );
        let auth = &detail["services"]["auth"];
        assert_eq!(auth["latency_ms"], 2);
        assert_eq!(auth["checks"].as_object().unwrap().len(), 3);
        assert_eq!(detail["status"], "degraded");
    }
}
