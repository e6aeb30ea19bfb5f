//! The loaded application: compiled components, routes, stores and variables,
//! and the request path from a routed HTTP request to a fresh component
//! instance and back.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use hyper::body::Body;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::manifest::Manifest;
use crate::metrics::{ComponentMetrics, HostMetrics, Rejection, RouteMetrics, Source};
use crate::outbound::OutboundPolicy;
use crate::routes::{RouteMatch, RouteTable};
use crate::runtime_config::{RuntimeConfig, Stores};
use crate::server::empty_response;
use crate::state::{ComponentContext, RequestState};
use crate::variables::{Providers, ResolvedVariables};

/// How often the epoch ticks; request deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Service-chaining hops allowed before a request is treated as a loop.
const MAX_CHAIN_DEPTH: u32 = 8;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a component instance may grow to.
    pub memory_bytes: usize,
    /// Core instances a component may create (a component is several).
    pub instances_per_request: usize,
    /// Wall-clock limit for one request, including streaming its body.
    pub request_timeout: Duration,
    /// Public requests served at once; more wait their turn.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            instances_per_request: 64,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 128,
        }
    }
}

pub struct AppOptions {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub providers: Providers,
    pub limits: Limits,
}

pub struct App {
    pub name: String,
    engine: Engine,
    components: HashMap<String, LoadedComponent>,
    routes: RouteTable,
    pub stores: Stores,
    pub variables: ResolvedVariables,
    pub limits: Limits,
    concurrency: Semaphore,
    metrics: HostMetrics,
    /// Indexed by [`RouteMatch::public_index`].
    route_metrics: Vec<RouteMetrics>,
}

struct LoadedComponent {
    pre: ProxyPre<RequestState>,
    context: Arc<ComponentContext>,
    /// Shared with the task running each instance.
    metrics: Arc<ComponentMetrics>,
    /// Requests reaching it through service chaining.
    internal_metrics: RouteMetrics,
}

impl App {
    /// Loads and validates everything a request could need, so that problems
    /// show up at start-up with the file and key at fault.
    pub fn load(options: AppOptions) -> Result<Arc<App>> {
        let manifest = Manifest::load(&options.manifest)?;
        let variables = ResolvedVariables::resolve(&manifest, &options.providers)?;
        let runtime_config = RuntimeConfig::load(options.runtime_config.as_deref(), &options.state_dir)?;
        let stores = runtime_config.open_stores(&manifest)?;
        let routes = RouteTable::build(&manifest.http_triggers, |warning| tracing::warn!("{warning}"))?;

        let engine = build_engine(&options.limits)?;
        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::platform::add_to_linker(&mut linker)?;

        let metrics = HostMetrics::new()?;
        let route_metrics = routes
            .public_routes()
            .map(|(component, route)| metrics.route(component, route, Source::Public))
            .collect();
        let mut components = HashMap::new();
        for (id, component) in &manifest.components {
            let compiled = load_component(&engine, &options.cache_dir, id, &component.source)?;
            let pre = linker
                .instantiate_pre(&compiled)
                .and_then(ProxyPre::new)
                .map_err(|err| anyhow!("component {id:?} cannot run on this host: {err:#}"))?;
            let outbound = OutboundPolicy::resolve(&component.allowed_outbound_hosts, variables.app_values())
                .with_context(|| format!("component {id:?}: allowed_outbound_hosts"))?;
            let context = Arc::new(ComponentContext::new(component, outbound, &options.state_dir.join("logs"))?);
            let internal_route = RouteTable::route_internal(id, "/").raw_route;
            components.insert(
                id.clone(),
                LoadedComponent {
                    pre,
                    context,
                    metrics: Arc::new(metrics.component(id)),
                    internal_metrics: metrics.route(id, &internal_route, Source::Internal),
                },
            );
        }

        Ok(Arc::new(App {
            name: manifest.application.name,
            engine,
            components,
            routes,
            stores,
            variables,
            concurrency: Semaphore::new(options.limits.max_concurrent_requests),
            limits: options.limits,
            metrics,
            route_metrics,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &HostMetrics {
        &self.metrics
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
        let uri = request.uri().clone();
        set_spin_headers(request.headers_mut(), &uri, &route, &client.to_string());
        let permit = match self.concurrency.try_acquire() {
            Ok(permit) => Ok(permit),
            Err(_) => {
                let _waiting = self.metrics.waiting();
                self.concurrency.acquire().await
            }
        };
        let Ok(_permit) = permit else {
            return empty_response(503);
        };
        let response = self.respond(&route.component, request, 0).await;
        if let Some(metrics) = route.public_index.and_then(|index| self.route_metrics.get(index)) {
            metrics.record(&method, response.status(), started.elapsed());
        }
        log_access(&method, &path, &route.component, response.status().as_u16(), started);
        response
    }

    /// Serves a request a component sent to `http://<target>.spin.internal`.
    pub async fn handle_internal(
        self: &Arc<Self>,
        target: &str,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        depth: u32,
    ) -> wasmtime_wasi_http::Result<http::Response<HyperOutgoingBody>> {
        let started = Instant::now();
        if depth > MAX_CHAIN_DEPTH {
            self.metrics.rejected(Rejection::ChainTooDeep);
            return Err(wasmtime_wasi_http::Error::LoopDetected);
        }
        let Some(loaded) = self.components.get(target) else {
            self.metrics.rejected(Rejection::NoRoute);
            return Err(wasmtime_wasi_http::Error::DestinationNotFound);
        };
        let route = RouteTable::route_internal(target, request.uri().path());
        // Spin drops the `*.spin.internal` Host, so the callee's full URL says localhost.
        request.headers_mut().remove(http::header::HOST);
        let uri = request.uri().clone();
        set_spin_headers(request.headers_mut(), &uri, &route, "0.0.0.0:0");
        let method = request.method().clone();
        let response = self.respond(target, request, depth).await;
        loaded.internal_metrics.record(&method, response.status(), started.elapsed());
        Ok(response)
    }

    /// Runs the component and turns any failure into a 500, logged with the
    /// component's name; the host itself keeps serving.
    async fn respond<B>(self: &Arc<Self>, component: &str, request: http::Request<B>, depth: u32) -> http::Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        match self.invoke(component, request, depth).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(component, "request failed: {err:#}");
                empty_response(500)
            }
        }
    }

    async fn invoke<B>(self: &Arc<Self>, component: &str, request: http::Request<B>, depth: u32) -> Result<http::Response<HyperOutgoingBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let loaded = self.components.get(component).context("unknown component")?;
        let state = RequestState::new(Arc::clone(self), Arc::clone(&loaded.context), depth);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let ticks = (self.limits.request_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = loaded.pre.clone();
        let timeout = self.limits.request_timeout;
        let id = component.to_string();
        let metrics = Arc::clone(&loaded.metrics);
        // The guest keeps running after it hands over the response head (it may
        // still be streaming the body), so it runs in its own task.
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                let _running = metrics.instance_started();
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            };
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime::Error::new(TimedOut { component: id, timeout })),
            };
            // Counted here because a failure after the response head reaches nobody else.
            if let Err(err) = &result {
                // A guest stuck in its own code is stopped by the epoch deadline instead.
                let interrupted = err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt);
                if interrupted || err.is::<TimedOut>() {
                    metrics.timed_out();
                } else {
                    metrics.failed();
                }
            }
            result
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => {
                loaded.metrics.failed();
                bail!("component answered with an error: {code:?}")
            }
            Err(_) => match task.await {
                Ok(Ok(())) => {
                    loaded.metrics.failed();
                    bail!("component returned without setting a response")
                }
                Ok(Err(err)) => Err(err.into()),
                Err(join) => {
                    loaded.metrics.failed();
                    Err(anyhow!("component task failed: {join}"))
                }
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("component {component:?} exceeded the {timeout:?} request timeout")]
struct TimedOut {
    component: String,
    timeout: Duration,
}

fn build_engine(limits: &Limits) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Epoch interruption lets a request deadline stop a guest stuck in a loop.
    config.epoch_interruption(true);
    let instances = (limits.max_concurrent_requests * 2) as u32;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .max_memory_size(limits.memory_bytes)
        .max_core_instances_per_component(limits.instances_per_request as u32)
        .max_tables_per_component(limits.instances_per_request as u32)
        .max_memories_per_component(4);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Compiles a component, or loads its machine code from the on-disk cache.
/// The cache key covers the `.wasm` bytes and the engine's configuration.
#[allow(unsafe_code, reason = "wasmtime's deserialize trusts its input; each use says why it may")]
fn load_component(engine: &Engine, cache_dir: &Path, id: &str, source: &Path) -> Result<Component> {
    let bytes = std::fs::read(source).map_err(|err| {
        anyhow!(
            "component {id:?}: cannot read {} ({err}); build the components first (`cargo xtask build` or `spin build`)",
            source.display()
        )
    })?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let key = format!("{:x}-{:016x}", Sha256::digest(&bytes), engine_hash.finish());
    let cached = cache_dir.join(format!("{}.cwasm", &key[..48]));
    if cached.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (part of the file name), in the
        // host's own state directory.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(err) => tracing::warn!("ignoring unusable cache entry {}: {err}", cached.display()),
        }
    }
    let started = Instant::now();
    let precompiled = engine
        .precompile_component(&bytes)
        .map_err(|err| anyhow!("component {id:?}: {} is not a valid component: {err}", source.display()))?;
    tracing::info!(component = id, "compiled in {:?}", started.elapsed());
    std::fs::create_dir_all(cache_dir)?;
    // Several hosts may share a cache (tests do): write privately, rename atomically.
    let temp = cached.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, &precompiled)?;
    std::fs::rename(&temp, &cached)?;
    // SAFETY: produced just above by this engine.
    Ok(unsafe { Component::deserialize(engine, &precompiled)? })
}

/// Headers Spin passes to a component about how its request was routed.
/// Client-supplied `spin-*` headers are removed first so none can be forged.
fn set_spin_headers(headers: &mut http::HeaderMap, uri: &http::Uri, route: &RouteMatch, client: &str) {
    let forged: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("spin-")).cloned().collect();
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
        set(&format!("spin-path-match-{}", name.to_ascii_lowercase().replace('_', "-")), value);
    }
}

fn log_access(method: &http::Method, path: &str, component: &str, status: u16, started: Instant) {
    tracing::info!(
        target: "access",
        "{method} {path} {status} {component} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
