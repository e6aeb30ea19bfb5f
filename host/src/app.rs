//! The loaded application and its dispatch: which component serves a request
//! (public route or service chaining), the Spin headers and request id it
//! gets, the body and concurrency bounds it is served under, metrics and the
//! access log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use tokio::sync::Semaphore;
use tracing_appender::non_blocking::NonBlocking;
use wasmtime::Engine;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::{BodyWatch, GuardedBody};
use crate::invoke::Runnable;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::metrics::{HostMetrics, Rejection, RouteMetrics, Source};
use crate::outbound::OutboundPolicy;
use crate::responses::{REQUEST_ID, Refusal, empty_response};
use crate::routes::{RouteMatch, RouteTable};
use crate::runtime_config::RuntimeConfig;
use crate::state::{ComponentContext, InternalResponse, ServiceChain, Shared};
use crate::variables::{Providers, ResolvedVariables};

/// Service-chaining hops allowed before a request is treated as a loop.
const MAX_CHAIN_DEPTH: u32 = 8;

pub struct AppOptions {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub providers: Providers,
    pub limits: Limits,
    /// The host's stderr ([`crate::logs::console`]), where components' output is echoed.
    pub console: NonBlocking,
}

pub struct App {
    pub name: String,
    engine: Engine,
    components: HashMap<String, LoadedComponent>,
    routes: RouteTable,
    shared: Arc<Shared>,
    /// Instance slots for public requests.
    concurrency: Semaphore,
    /// Instance slots for public requests whose bodies stream in.
    streaming: Semaphore,
    /// Instance slots for service chaining, apart from the public ones so a
    /// chained call never waits behind the public requests that made it.
    chain_concurrency: Semaphore,
    metrics: HostMetrics,
    /// Indexed by [`RouteMatch::public_index`].
    route_metrics: Vec<RouteMetrics>,
}

struct LoadedComponent {
    runnable: Runnable,
    /// Requests reaching it through service chaining.
    internal_metrics: RouteMetrics,
}

impl App {
    /// Loads and validates everything a request could need, so that problems
    /// show up at start-up with the file and key at fault.
    pub fn load(options: AppOptions) -> Result<Arc<App>> {
        let manifest = Manifest::load(&options.manifest)?;
        let variables = ResolvedVariables::resolve(&manifest, &options.providers)?;
        let runtime_config =
            RuntimeConfig::load(options.runtime_config.as_deref(), &options.state_dir)?;
        let stores = runtime_config.open_stores(&manifest)?;
        let routes = RouteTable::build(manifest.public_routes(), |warning| {
            tracing::warn!("{warning}")
        })?;

        let engine = crate::engine::start(&options.limits)?;
        let linker = crate::invoke::linker(&engine)?;
        let metrics = HostMetrics::new()?;
        let route_metrics = routes
            .public_routes()
            .map(|(component, route)| metrics.route(component, route, Source::Public))
            .collect();
        for id in options.limits.component_max_body_bytes.keys() {
            if !manifest.components.contains_key(id) {
                bail!("--component-max-body-bytes {id}=…: the manifest has no component {id:?}");
            }
        }
        let mut components = HashMap::new();
        for (id, component) in &manifest.components {
            let compiled =
                crate::engine::load_component(&engine, &options.cache_dir, id, &component.source)?;
            let outbound =
                OutboundPolicy::resolve(&component.allowed_outbound_hosts, variables.app_values())
                    .with_context(|| format!("component {id:?}: allowed_outbound_hosts"))?;
            let context = ComponentContext::new(
                component,
                outbound,
                &options.state_dir.join("logs"),
                &options.console,
            )?;
            let runnable = Runnable::new(&linker, &compiled, context, metrics.component(id))?;
            let internal_route = RouteTable::route_internal(id, "/").raw_route;
            components.insert(
                id.clone(),
                LoadedComponent {
                    runnable,
                    internal_metrics: metrics.route(id, &internal_route, Source::Internal),
                },
            );
        }

        Ok(Arc::new(App {
            name: manifest.application.name,
            engine,
            components,
            routes,
            concurrency: Semaphore::new(options.limits.max_concurrent_requests),
            streaming: Semaphore::new(options.limits.max_streaming_requests),
            chain_concurrency: Semaphore::new(options.limits.max_concurrent_requests),
            shared: Arc::new(Shared {
                stores,
                variables,
                limits: options.limits,
            }),
            metrics,
            route_metrics,
        }))
    }

    pub fn metrics(&self) -> &HostMetrics {
        &self.metrics
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Serves a request from the public listener.
    pub async fn handle_public(
        self: &Arc<Self>,
        mut request: http::Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> http::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let Some(route) = self.routes.route(&path) else {
            self.metrics.rejected(Rejection::NoRoute);
            log_access(&method, &path, "-", 404, started);
            return empty_response(404);
        };
        let request_id = accept_or_generate_request_id(request.headers_mut());
        let uri = request.uri().clone();
        set_spin_headers(request.headers_mut(), &uri, &route, &client.to_string());
        let response = match self
            .serve_public(&route.component, request, &request_id)
            .await
        {
            Ok(response) => response,
            Err(refusal) => {
                tracing::warn!(component = %route.component, request_id, "{method} {path}: {refusal}");
                refusal.response(&request_id)
            }
        };
        if let Some(metrics) = route
            .public_index
            .and_then(|index| self.route_metrics.get(index))
        {
            metrics.record(&method, response.status(), started.elapsed());
        }
        log_access(
            &method,
            &path,
            &route.component,
            response.status().as_u16(),
            started,
        );
        response
    }

    /// Bounds the body by the component's policy, then runs the component in
    /// a public instance slot. A body the host receives in full arrives before
    /// a slot is taken, so clients trickling bodies in hold no slot.
    async fn serve_public(
        self: &Arc<Self>,
        component: &str,
        request: http::Request<hyper::body::Incoming>,
        request_id: &str,
    ) -> Result<http::Response<HyperOutgoingBody>, Refusal> {
        let limits = &self.shared.limits;
        let policy = limits.body_policy(component);
        if request.body().size_hint().lower() > policy.limit {
            return Err(Refusal::PayloadTooLarge {
                limit: policy.limit,
            });
        }
        if policy.streamed {
            let _slot = self.slot(&self.streaming).await?;
            self.run_guarded(component, request, 0, request_id).await
        } else {
            let (parts, body) = request.into_parts();
            let body =
                crate::body::read_to_end(body, policy.limit, limits.body_read_timeout).await?;
            let body =
                Full::new(body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
            let _slot = self.slot(&self.concurrency).await?;
            self.run(
                component,
                http::Request::from_parts(parts, body),
                0,
                request_id,
            )
            .await
        }
    }

    /// A slot in `pool` (public or streaming), waiting for one if need be.
    async fn slot<'a>(
        &self,
        pool: &'a Semaphore,
    ) -> Result<tokio::sync::SemaphorePermit<'a>, Refusal> {
        if let Ok(slot) = pool.try_acquire() {
            return Ok(slot);
        }
        let _waiting = self.metrics.waiting();
        // Never closed; a closed semaphore could only mean shutting down.
        pool.acquire().await.map_err(|_| Refusal::AppTimeout)
    }

    /// Serves a request a component sent to `http://<target>.spin.internal`.
    async fn handle_internal(
        self: Arc<Self>,
        target: String,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        depth: u32,
    ) -> InternalResponse {
        let started = Instant::now();
        if depth > MAX_CHAIN_DEPTH {
            self.metrics.rejected(Rejection::ChainTooDeep);
            return Err(wasmtime_wasi_http::Error::LoopDetected);
        }
        let Some(loaded) = self.components.get(&target) else {
            self.metrics.rejected(Rejection::NoRoute);
            return Err(wasmtime_wasi_http::Error::DestinationNotFound);
        };
        let route = RouteTable::route_internal(&target, request.uri().path());
        // Spin drops the `*.spin.internal` Host, so the callee's full URL says localhost.
        request.headers_mut().remove(http::header::HOST);
        let uri = request.uri().clone();
        set_spin_headers(request.headers_mut(), &uri, &route, "0.0.0.0:0");
        let method = request.method().clone();
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let served = match self.chain_concurrency.acquire().await {
            Ok(_slot) => self.run_guarded(&target, request, depth, &request_id).await,
            Err(_) => Err(Refusal::AppTimeout),
        };
        let response = served.unwrap_or_else(|refusal| {
            tracing::warn!(component = %target, request_id, "chained {method} {}: {refusal}", uri.path());
            refusal.response(&request_id)
        });
        loaded
            .internal_metrics
            .record(&method, response.status(), started.elapsed());
        Ok(response)
    }

    /// Runs the component on a body streamed to it under the component's
    /// limit and the body read timeout. When the host cut the body off, that
    /// is the answer, whatever the component made of the error it read.
    async fn run_guarded<B>(
        self: &Arc<Self>,
        component: &str,
        request: http::Request<B>,
        depth: u32,
        request_id: &str,
    ) -> Result<http::Response<HyperOutgoingBody>, Refusal>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
    {
        let limits = &self.shared.limits;
        let policy = limits.body_policy(component);
        let watch = BodyWatch::default();
        let request = request.map(|body| {
            GuardedBody::new(body, policy.limit, limits.body_read_timeout, watch.clone())
        });
        let result = self.run(component, request, depth, request_id).await;
        match watch.failure() {
            Some(failure) => Err(failure.into()),
            None => result,
        }
    }

    /// Runs the component. A component too slow to answer is a refusal (503);
    /// any other failure is a 500, logged with the component's name; the host
    /// itself keeps serving.
    async fn run<B>(
        self: &Arc<Self>,
        component: &str,
        request: http::Request<B>,
        depth: u32,
        request_id: &str,
    ) -> Result<http::Response<HyperOutgoingBody>, Refusal>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(loaded) = self.components.get(component) else {
            tracing::error!(component, request_id, "request for an unknown component");
            return Ok(empty_response(500));
        };
        let chain: Arc<dyn ServiceChain> = Arc::clone(self) as Arc<dyn ServiceChain>;
        match loaded
            .runnable
            .invoke(&self.engine, &self.shared, chain, request, depth)
            .await
        {
            Ok(response) => Ok(response),
            Err(err) if crate::invoke::is_timeout(&err) => {
                tracing::warn!(component, request_id, "{err:#}");
                Err(Refusal::AppTimeout)
            }
            Err(err) => {
                tracing::error!(component, request_id, "request failed: {err:#}");
                Ok(empty_response(500))
            }
        }
    }
}

impl ServiceChain for App {
    fn call(
        self: Arc<Self>,
        target: String,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        depth: u32,
    ) -> Pin<Box<dyn Future<Output = InternalResponse> + Send>> {
        Box::pin(self.handle_internal(target, request, depth))
    }
}

/// Headers Spin passes to a component about how its request was routed.
/// Client-supplied `spin-*` headers are removed first so none can be forged.
fn set_spin_headers(
    headers: &mut http::HeaderMap,
    uri: &http::Uri,
    route: &RouteMatch,
    client: &str,
) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    };
    set("spin-full-url", &format!("http://{host}{path_and_query}"));
    set("spin-path-info", &route.path_info);
    set("spin-matched-route", &route.raw_route);
    set("spin-raw-component-route", &route.raw_route);
    set("spin-component-route", &route.component_route);
    set("spin-base-path", "/");
    set("spin-client-addr", client);
    for (name, value) in &route.captures {
        // Spin derives the header from the capture name: `:user_id` → `spin-path-match-user-id`.
        set(
            &format!(
                "spin-path-match-{}",
                name.to_ascii_lowercase().replace('_', "-")
            ),
            value,
        );
    }
}

/// The client's `X-Request-Id` when it is 1 to 128 visible ASCII characters
/// (nothing that could split or forge a log line), else a fresh id; set on
/// the request so the component logs and echoes the same id. The components'
/// edge (`crates/api`) applies the same rule, so it keeps this id.
fn accept_or_generate_request_id(headers: &mut http::HeaderMap) -> String {
    let sane = |id: &&HeaderValue| {
        let bytes = id.as_bytes();
        !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic)
    };
    if let Some(id) = headers
        .get(REQUEST_ID)
        .filter(sane)
        .and_then(|id| id.to_str().ok())
    {
        return id.to_string();
    }
    let id = fresh_request_id();
    headers.insert(
        REQUEST_ID,
        HeaderValue::try_from(id.as_str()).expect("a UUID is a valid header value"),
    );
    id
}

/// A random (v4) UUID, the form the components' edge generates too, so a request
/// id looks the same whichever side made it.
fn fresh_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn log_access(method: &http::Method, path: &str, component: &str, status: u16, started: Instant) {
    tracing::info!(
        target: "access",
        "{method} {path} {status} {component} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
