//! Per-request store data: WASI and wasi:http contexts plus the component's
//! identity and grants. One `RequestState` lives exactly as long as one
//! component instance (Spin's isolation model: a fresh instance per request).

use std::collections::HashSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::limits::Limits;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};

use crate::logs::ComponentOutput;
use crate::manifest::Component;
use crate::outbound::{Destination, OutboundPolicy};
use crate::runtime_config::Stores;
use crate::variables::ResolvedVariables;

/// What the host knows about a component, fixed at start-up.
#[derive(Debug)]
pub struct ComponentContext {
    pub id: String,
    pub key_value_stores: HashSet<String>,
    pub sqlite_databases: HashSet<String>,
    pub outbound: OutboundPolicy,
    pub environment: Vec<(String, String)>,
    pub stdout: ComponentOutput,
    pub stderr: ComponentOutput,
    /// Kept with the outputs: dropped, they write out what is queued.
    _output_writers: [WorkerGuard; 2],
}

impl ComponentContext {
    pub fn new(
        component: &Component,
        outbound: OutboundPolicy,
        logs_dir: &Path,
        console: &NonBlocking,
    ) -> anyhow::Result<Self> {
        let (stdout, stdout_writer) =
            ComponentOutput::open(logs_dir, &component.id, "stdout", console)?;
        let (stderr, stderr_writer) =
            ComponentOutput::open(logs_dir, &component.id, "stderr", console)?;
        Ok(ComponentContext {
            id: component.id.clone(),
            key_value_stores: component.key_value_stores.iter().cloned().collect(),
            sqlite_databases: component.sqlite_databases.iter().cloned().collect(),
            outbound,
            environment: component.environment.clone().into_iter().collect(),
            stdout,
            stderr,
            _output_writers: [stdout_writer, stderr_writer],
        })
    }
}

/// What every instance of the app shares.
pub struct Shared {
    pub stores: Stores,
    pub variables: ResolvedVariables,
    pub limits: Limits,
}

pub type InternalResponse = wasmtime_wasi_http::Result<http::Response<HyperOutgoingBody>>;

/// Serves a request a component sends to `http://<target>.spin.internal`.
/// The app implements it; instances only hold it, so this module needs no
/// knowledge of routing or dispatch.
pub trait ServiceChain: Send + Sync {
    fn call(
        self: Arc<Self>,
        target: String,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        depth: u32,
    ) -> Pin<Box<dyn Future<Output = InternalResponse> + Send>>;
}

pub struct RequestState {
    pub shared: Arc<Shared>,
    pub component: Arc<ComponentContext>,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
}

impl RequestState {
    /// `depth` counts service-chaining hops, to stop request loops.
    pub fn new(
        shared: Arc<Shared>,
        component: Arc<ComponentContext>,
        chain: Arc<dyn ServiceChain>,
        depth: u32,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(component.stdout.clone())
            .stderr(component.stderr.clone())
            .envs(&component.environment)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(shared.limits.memory_bytes)
            .instances(shared.limits.instances_per_request)
            .build();
        let hooks = OutboundHooks {
            chain,
            component: Arc::clone(&component),
            depth,
        };
        RequestState {
            shared,
            component,
            table: ResourceTable::new(),
            limits,
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP: every request passes the component's outbound policy;
/// `*.spin.internal` requests are served in-process by the target component.
struct OutboundHooks {
    chain: Arc<dyn ServiceChain>,
    component: Arc<ComponentContext>,
    depth: u32,
}

type BoxedIo = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;
type SendResult = wasmtime_wasi_http::Result<(http::Response<HyperOutgoingBody>, BoxedIo)>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: BoxedIo,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        match self
            .component
            .outbound
            .authorize(&self.component.id, request.uri())
        {
            Err(denied) => Box::new(async { Err(denied) }),
            Ok(Destination::Internal(target)) => {
                let chain = Arc::clone(&self.chain);
                let depth = self.depth + 1;
                // No connection is made in-process, so the guest's connect and
                // first-byte timeouts together bound the wait for the callee's answer.
                let deadline = options.and_then(|options| {
                    match (options.connect_timeout, options.first_byte_timeout) {
                        (Some(connect), Some(first_byte)) => Some(connect + first_byte),
                        (connect, first_byte) => connect.or(first_byte),
                    }
                });
                Box::new(async move {
                    let call = chain.call(target, request, depth);
                    let response = match deadline {
                        Some(deadline) => tokio::time::timeout(deadline, call)
                            .await
                            .map_err(|_| wasmtime_wasi_http::Error::ConnectionReadTimeout)??,
                        None => call.await?,
                    };
                    Ok((response, Box::new(async { Ok(()) }) as BoxedIo))
                })
            }
            Ok(Destination::External) => {
                let _ = fut;
                Box::new(async move {
                    use http_body_util::BodyExt;
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as BoxedIo))
                })
            }
        }
    }
}
