//! What every request goes through, whichever component serves it: a request id, CORS
//! (preflights answered here), the per-address rate limit, security headers and one log
//! line. [`crate::routes`] wraps each component's route table in [`serve`]; a
//! streaming component (`upload`) uses [`Edge`] directly. The per-user limit is charged
//! by [`crate::authenticate`], the one place that knows a verified subject.
//!
//! Variables read (each component must be granted them): `cors_allowed_origins` (only
//! for requests with an `Origin`), `rate_limit_per_address`, `rate_limit_per_user`,
//! `rate_limit_window_secs`, and `trusted_proxies` and `forwarded_header` for the client
//! address ([`crate::client_addr`]). Counters live in the key-value store
//! [`COUNTERS`], apart from the logout denylist in `default`: counters may be evicted
//! (a Redis with an eviction policy), security state must not.

use std::cell::RefCell;
use std::io::Write;
use std::time::Instant;

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use spinmesh_authn::{Claims, Role, now_unix};

use crate::config::{non_negative_u64, positive_u64, var};
use crate::rate_limit::{self, Quota};
use crate::{ApiError, client_addr, cors, expiry, request_id, security_headers};

/// The key-value store of the rate-limit counters; every component is granted it.
pub const COUNTERS: &str = "rate_limits";

/// When a request is charged to its client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressCharge {
    /// Before the handler runs: every route but those below.
    UpFront,
    /// By the handler, through [`charge_address`], on the paths where serving costs more
    /// than the charge (a counter write) itself: `validate` charges every request except
    /// those whose token it finds already verified ([`crate::verify_active_charging_misses`]).
    InHandler,
}

/// Serves `request` with `handler`, adding the edge behaviour. `methods` are those of the
/// route the path matches (`None`: no route, the handler answers 404); they answer
/// `OPTIONS`, which therefore never reaches the handler.
pub fn serve(
    request: Request,
    methods: Option<&[&str]>,
    address_charge: AddressCharge,
    handler: impl FnOnce(Request) -> Response,
) -> Response {
    let edge = Edge::start(&request);
    let response = match edge.intercept(&request, methods, address_charge) {
        Ok(Some(answer)) => answer,
        Ok(None) => handler(request),
        Err(error) => error.into_response(),
    };
    edge.finish(response)
}

/// One request's edge state, from arrival to its log line.
pub struct Edge {
    request_id: String,
    method: Method,
    path: String,
    /// The `Access-Control-Allow-Origin` value when the request's origin is allowed.
    allow_origin: Option<String>,
    /// A deployment mistake found at start (e.g. an ungranted variable), answered as 500.
    config_error: Option<ApiError>,
    started: Instant,
}

/// Rate-limit quotas met while serving the current request. Spin runs every request in a
/// fresh instance, so this is per request; [`Edge::start`] clears it anyway.
#[derive(Default)]
struct Charged {
    window_secs: Option<u64>,
    /// The [`COUNTERS`] store, opened by the first charge and reused by the second.
    counters: Option<store::Bucket>,
    address: Option<Quota>,
    user: Option<(String, Quota)>,
}

thread_local! {
    static CHARGED: RefCell<Charged> = RefCell::default();
}

impl Edge {
    /// Takes or assigns the request id and decides CORS for the request's `Origin`.
    pub fn start(request: &Request) -> Self {
        let origin = header(request, "origin");
        let (allow_origin, config_error) = match origin.map(|origin| (origin, cors_policy())) {
            None => (None, None),
            Some((origin, Ok(policy))) => (
                policy.and_then(|policy| policy.allow_origin(origin).map(str::to_string)),
                None,
            ),
            Some((_, Err(error))) => (None, Some(error)),
        };
        Self::new(request, allow_origin, config_error)
    }

    fn new(
        request: &Request,
        allow_origin: Option<String>,
        config_error: Option<ApiError>,
    ) -> Self {
        CHARGED.with(|charged| *charged.borrow_mut() = Charged::default());
        Self {
            request_id: request_id::accept_or_generate(
                request
                    .header(request_id::HEADER)
                    .map(|value| value.as_bytes()),
            ),
            method: request.method().clone(),
            // The path alone: query strings may carry secrets and do not belong in logs.
            path: request.path().to_string(),
            allow_origin,
            config_error,
            started: Instant::now(),
        }
    }

    /// What the edge answers itself: `OPTIONS` on a known route (a CORS preflight or a
    /// plain capability query) and, when charged [`AddressCharge::UpFront`], requests over
    /// the per-address limit (`Err`, a 429). `None`: the handler serves the request.
    pub fn intercept(
        &self,
        request: &Request,
        methods: Option<&[&str]>,
        address_charge: AddressCharge,
    ) -> Result<Option<Response>, ApiError> {
        if let Some(error) = &self.config_error {
            return Err(error.clone());
        }
        if let (Method::Options, Some(methods)) = (request.method(), methods) {
            return Ok(Some(self.options(request, methods)));
        }
        if address_charge == AddressCharge::UpFront {
            charge_address(request)?;
        }
        Ok(None)
    }

    /// `204` with `Allow`; for a preflight from an allowed origin also the CORS grant.
    /// A preflight from any other origin gets no CORS headers, so the browser stops there.
    fn options(&self, request: &Request, methods: &[&str]) -> Response {
        let mut builder = Response::builder();
        builder
            .status(204)
            .header("allow", [methods, &["OPTIONS"]].concat().join(", "));
        let preflight = cors::is_preflight(
            "OPTIONS",
            header(request, "origin"),
            header(request, "access-control-request-method"),
        );
        if preflight {
            builder.header("vary", cors::VARY_PREFLIGHT);
            if let Some(allow_origin) = &self.allow_origin {
                for (name, value) in cors::preflight_headers(allow_origin, methods) {
                    builder.header(name, value);
                }
            }
        }
        builder.build()
    }

    /// Adds the edge's headers to a buffered response and logs the request.
    pub fn finish(&self, mut response: Response) -> Response {
        let content_type = response
            .header("content-type")
            .and_then(|value| value.as_str())
            .map(str::to_string);
        let vary = response
            .header("vary")
            .and_then(|value| value.as_str())
            .map(str::to_string);
        let headers = self.response_headers(content_type.as_deref(), vary.as_deref(), &|name| {
            response.header(name).is_some()
        });
        for (name, value) in headers {
            response.set_header(name, value);
        }
        self.log(*response.status());
        response
    }

    /// The headers [`Edge::finish`] adds, for a response streamed by the component
    /// itself: `content_type` and `vary` are the response's own, `present` tells which
    /// headers it already has (a handler's own security header wins).
    pub fn response_headers(
        &self,
        content_type: Option<&str>,
        vary: Option<&str>,
        present: &dyn Fn(&str) -> bool,
    ) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (request_id::HEADER, self.request_id.clone()),
            ("vary", cors::merge_vary(vary, cors::VARY)),
        ];
        // A preflight answer already carries its grant (and no expose list).
        if let Some(allow_origin) = self
            .allow_origin
            .as_deref()
            .filter(|_| !present("access-control-allow-origin"))
        {
            headers.extend(cors::response_headers(allow_origin));
        }
        let (address, user) = CHARGED.with(|charged| {
            let charged = charged.borrow();
            (
                charged.address,
                charged.user.as_ref().map(|(_, quota)| *quota),
            )
        });
        if let Some(quota) = Quota::most_restrictive(address, user) {
            headers.extend(quota.headers());
        }
        for &(name, value) in security_headers::for_content_type(content_type) {
            if !present(name) {
                headers.push((name, value.to_string()));
            }
        }
        headers
    }

    /// One line per request on stderr, which Spin keeps as the component's log.
    pub fn log(&self, status: u16) {
        let line = format!(
            "request_id={} method={} path={} status={status} duration_ms={:.1}\n",
            self.request_id,
            self.method,
            self.path,
            self.started.elapsed().as_secs_f64() * 1000.0
        );
        // One write: `eprintln!` writes each formatted piece separately, and every write
        // is a call into the host (measured: ~100 µs of host CPU per request here).
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Charges `request` to its client address (`rate_limit_per_address`); a 429 once the
/// address is over the limit. Health probes are never charged.
pub fn charge_address(request: &Request) -> Result<(), ApiError> {
    if rate_limit::is_exempt(request.path()) {
        return Ok(());
    }
    let Some(group) = client_addr::client_group(request)? else {
        return Ok(());
    };
    let key = rate_limit::address_key(&group);
    let Some(quota) = charge(&key, "rate_limit_per_address", now_unix())? else {
        return Ok(());
    };
    CHARGED.with(|charged| charged.borrow_mut().address = Some(quota));
    if quota.limited {
        return Err(ApiError::too_many_requests(quota.reset_secs));
    }
    Ok(())
}

/// Charges a request to the verified `claims`' subject (`rate_limit_per_user`); a 429
/// once the subject is over the limit. Keyed on the verified subject only: keying on an
/// unverified token would let anyone exhaust someone else's quota. Service accounts are
/// exempt: their calls act for users already counted.
pub(crate) fn charge_user(claims: &Claims, now: u64) -> Result<(), ApiError> {
    if claims.has_role(Role::Service) {
        return Ok(());
    }
    let charged = CHARGED.with(|charged| {
        charged
            .borrow()
            .user
            .as_ref()
            .filter(|(subject, _)| *subject == claims.sub)
            .map(|(_, quota)| *quota)
    });
    // A request that authenticates twice is counted once.
    let quota = match charged {
        Some(quota) => quota,
        None => {
            let Some(quota) = charge(
                &rate_limit::user_key(&claims.sub),
                "rate_limit_per_user",
                now,
            )?
            else {
                return Ok(());
            };
            CHARGED.with(|charged| charged.borrow_mut().user = Some((claims.sub.clone(), quota)));
            quota
        }
    };
    if quota.limited {
        Err(ApiError::too_many_requests(quota.reset_secs))
    } else {
        Ok(())
    }
}

/// Counts a request against `key` under the limit in variable `limit_variable` (0: no
/// limit, `None`): one atomic increment of the key's counter for the current window in
/// the [`COUNTERS`] store, so concurrent requests on any number of hosts are each counted
/// once. The limiter fails open: a key-value outage must not turn into refusing every
/// request (the outage is logged).
fn charge(key: &str, limit_variable: &str, now: u64) -> Result<Option<Quota>, ApiError> {
    let limit = non_negative_u64(limit_variable)?;
    if limit == 0 {
        return Ok(None);
    }
    let window_secs = match CHARGED.with(|charged| charged.borrow().window_secs) {
        Some(secs) => secs,
        None => {
            let secs = positive_u64("rate_limit_window_secs")?;
            CHARGED.with(|charged| charged.borrow_mut().window_secs = Some(secs));
            secs
        }
    };
    let policy = rate_limit::Policy { limit, window_secs };
    let window = policy.window(now);
    let counted = CHARGED.with(|charged| {
        let counters = &mut charged.borrow_mut().counters;
        if counters.is_none() {
            *counters = Some(store::open(COUNTERS)?);
        }
        let counters = counters.as_ref().expect("opened above");
        let count = atomics::increment(counters, &rate_limit::counter_key(key, window), 1)?;
        let count = u64::try_from(count).unwrap_or(0);
        // The key's first request in this window lists its counter for deletion once the
        // window ends (and may sweep ended ones): one more write per key and window.
        if count == 1 {
            let ends = (window + 1).saturating_mul(window_secs);
            let listed = expiry::Index::new(counters).map(|index| {
                index
                    .list(&rate_limit::counter_key(key, window), ends)
                    .and_then(|()| index.sweep_once_per_window(now))
            });
            match listed {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("rate limit: key-value: {error:?}"),
                Err(error) => eprintln!("rate limit: {error}"),
            }
        }
        Ok::<_, store::Error>(count)
    });
    match counted {
        Ok(count) => Ok(Some(policy.quota(count, now))),
        Err(error) => {
            eprintln!("rate limit: key-value: {error:?}");
            Ok(None)
        }
    }
}

/// `cors_allowed_origins` as a policy; `None` when CORS is off.
fn cors_policy() -> Result<Option<cors::Policy>, ApiError> {
    Ok(cors::Policy::parse(&var("cors_allowed_origins")?))
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.header(name).and_then(|value| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example.com";

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder();
        builder.method(method).uri("/api/login?secret=1");
        for (name, value) in headers {
            builder.header(*name, *value);
        }
        builder.build()
    }

    /// Serves like [`serve`] with a fixed CORS policy instead of the variable.
    fn serve_with(policy: &str, request: Request, methods: Option<&[&str]>) -> Response {
        let allow_origin = header(&request, "origin").and_then(|origin| {
            cors::Policy::parse(policy)?
                .allow_origin(origin)
                .map(str::to_string)
        });
        let edge = Edge::new(&request, allow_origin, None);
        let response = match edge.intercept(&request, methods, AddressCharge::UpFront) {
            Ok(Some(answer)) => answer,
            Ok(None) => Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body("{}")
                .build(),
            Err(error) => error.into_response(),
        };
        edge.finish(response)
    }

    fn get<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.header(name).and_then(|value| value.as_str())
    }

    const POST: Option<&[&str]> = Some(&["POST"]);

    fn preflight(origin: &str) -> Request {
        request(
            Method::Options,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, authorization",
                ),
            ],
        )
    }

    #[test]
    fn preflight_from_an_allowed_origin_is_granted() {
        let response = serve_with(ORIGIN, preflight(ORIGIN), POST);
        assert_eq!(*response.status(), 204);
        assert!(response.body().is_empty());
        assert_eq!(get(&response, "access-control-allow-origin"), Some(ORIGIN));
        assert_eq!(get(&response, "access-control-allow-methods"), Some("POST"));
        assert!(
            get(&response, "access-control-allow-headers")
                .unwrap()
                .contains("Authorization")
        );
        assert_eq!(get(&response, "access-control-max-age"), Some("600"));
        assert_eq!(get(&response, "vary"), Some(cors::VARY_PREFLIGHT));
        assert_eq!(get(&response, "allow"), Some("POST, OPTIONS"));
        assert_eq!(get(&response, "access-control-expose-headers"), None);
        assert!(get(&response, "x-request-id").is_some());
    }

    #[test]
    fn preflight_from_another_origin_gets_no_grant() {
        for policy in [ORIGIN, ""] {
            let response = serve_with(policy, preflight("https://evil.example"), POST);
            assert_eq!(*response.status(), 204, "{policy:?}");
            assert_eq!(get(&response, "access-control-allow-origin"), None);
            assert_eq!(get(&response, "access-control-allow-methods"), None);
            assert_eq!(get(&response, "vary"), Some(cors::VARY_PREFLIGHT));
        }
    }

    #[test]
    fn wildcard_policy_grants_a_star() {
        let response = serve_with("*", preflight("https://any.example"), POST);
        assert_eq!(get(&response, "access-control-allow-origin"), Some("*"));
        let simple = serve_with(
            "*",
            request(Method::Post, &[("origin", "https://any.example")]),
            POST,
        );
        assert_eq!(get(&simple, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&simple, "access-control-allow-credentials"), None);
    }

    #[test]
    fn plain_options_lists_the_methods_without_cors() {
        let response = serve_with(
            ORIGIN,
            request(Method::Options, &[]),
            Some(&["GET", "POST"]),
        );
        assert_eq!(*response.status(), 204);
        assert_eq!(get(&response, "allow"), Some("GET, POST, OPTIONS"));
        assert_eq!(get(&response, "access-control-allow-origin"), None);
        assert_eq!(get(&response, "vary"), Some("Origin"));
    }

    #[test]
    fn options_on_an_unknown_path_reaches_the_handler() {
        let response = serve_with(ORIGIN, preflight(ORIGIN), None);
        assert_eq!(*response.status(), 200);
    }

    #[test]
    fn actual_requests_from_an_allowed_origin_get_acao_and_exposed_headers() {
        let response = serve_with(ORIGIN, request(Method::Post, &[("origin", ORIGIN)]), POST);
        assert_eq!(*response.status(), 200);
        assert_eq!(get(&response, "access-control-allow-origin"), Some(ORIGIN));
        assert_eq!(
            get(&response, "access-control-expose-headers"),
            Some(cors::EXPOSE_HEADERS)
        );
        assert_eq!(get(&response, "vary"), Some("Origin"));

        let denied = serve_with(
            ORIGIN,
            request(Method::Post, &[("origin", "https://evil.example")]),
            POST,
        );
        assert_eq!(*denied.status(), 200);
        assert_eq!(get(&denied, "access-control-allow-origin"), None);
        assert_eq!(get(&denied, "access-control-expose-headers"), None);
        assert_eq!(get(&denied, "vary"), Some("Origin"));
    }

    #[test]
    fn request_ids_are_echoed_or_generated() {
        let echoed = serve_with(
            "",
            request(Method::Post, &[("x-request-id", "abc-123")]),
            POST,
        );
        assert_eq!(get(&echoed, "x-request-id"), Some("abc-123"));
        let replaced = serve_with(
            "",
            request(Method::Post, &[("x-request-id", "bad id")]),
            POST,
        );
        let generated = get(&replaced, "x-request-id").unwrap();
        assert_ne!(generated, "bad id");
        assert_eq!(generated.len(), 36);
    }

    #[test]
    fn every_response_gets_nosniff_and_html_the_page_headers() {
        let json = serve_with("", request(Method::Post, &[]), POST);
        assert_eq!(get(&json, "x-content-type-options"), Some("nosniff"));
        assert_eq!(get(&json, "content-security-policy"), None);

        let edge = Edge::new(&request(Method::Get, &[]), None, None);
        let own_policy = "default-src 'none'";
        let page = edge.finish(
            Response::builder()
                .status(200)
                .header("content-type", "text/html; charset=utf-8")
                .header("content-security-policy", own_policy)
                .header("vary", "Accept-Encoding")
                .body("<!doctype html>")
                .build(),
        );
        assert_eq!(get(&page, "x-frame-options"), Some("DENY"));
        assert_eq!(get(&page, "referrer-policy"), Some("no-referrer"));
        assert_eq!(get(&page, "content-security-policy"), Some(own_policy));
        assert_eq!(get(&page, "vary"), Some("Accept-Encoding, Origin"));
    }

    #[test]
    fn a_configuration_error_is_a_generic_500() {
        let request = request(Method::Post, &[("origin", ORIGIN)]);
        let edge = Edge::new(&request, None, Some(ApiError::internal()));
        let response = edge.finish(
            edge.intercept(&request, POST, AddressCharge::UpFront)
                .unwrap_err()
                .into_response(),
        );
        assert_eq!(*response.status(), 500);
        assert!(get(&response, "x-request-id").is_some());
    }

    #[test]
    fn rate_limit_headers_report_the_tightest_quota() {
        let request = request(Method::Get, &[]);
        let edge = Edge::new(&request, None, None);
        let address = Quota {
            limit: 100,
            remaining: 50,
            reset_secs: 30,
            limited: false,
        };
        let user = Quota {
            limit: 10,
            remaining: 0,
            reset_secs: 20,
            limited: true,
        };
        CHARGED.with(|charged| {
            let mut charged = charged.borrow_mut();
            charged.address = Some(address);
            charged.user = Some(("7".into(), user));
        });
        let response = edge.finish(ApiError::too_many_requests(20).into_response());
        assert_eq!(*response.status(), 429);
        assert_eq!(get(&response, "retry-after"), Some("20"));
        assert_eq!(get(&response, "ratelimit-limit"), Some("10"));
        assert_eq!(get(&response, "ratelimit-remaining"), Some("0"));
        assert_eq!(get(&response, "ratelimit-reset"), Some("20"));
    }
}
