//! Per-request store data: WASI and wasi:http contexts plus the component's
//! identity and grants. One `RequestState` lives exactly as long as one
//! component instance (Spin's isolation model: a fresh instance per request).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::app::App;
use crate::logs::ComponentOutput;
use crate::manifest::Component;
use crate::outbound::OutboundPolicy;

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
}

impl ComponentContext {
    pub fn new(component: &Component, outbound: OutboundPolicy, logs_dir: &Path) -> anyhow::Result<Self> {
        Ok(ComponentContext {
            id: component.id.clone(),
            key_value_stores: component.key_value_stores.iter().cloned().collect(),
            sqlite_databases: component.sqlite_databases.iter().cloned().collect(),
            outbound,
            environment: component.environment.clone().into_iter().collect(),
            stdout: ComponentOutput::open(logs_dir, &component.id, "stdout")?,
            stderr: ComponentOutput::open(logs_dir, &component.id, "stderr")?,
        })
    }
}

pub struct RequestState {
    pub app: Arc<App>,
    pub component: Arc<ComponentContext>,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
}

impl RequestState {
    /// `depth` counts service-chaining hops, to stop request loops.
    pub fn new(app: Arc<App>, component: Arc<ComponentContext>, depth: u32) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(component.stdout.clone())
            .stderr(component.stderr.clone())
            .envs(&component.environment)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(app.limits.memory_bytes)
            .instances(app.limits.instances_per_request)
            .build();
        let hooks = OutboundHooks { app: Arc::clone(&app), component: Arc::clone(&component), depth };
        RequestState {
            app,
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
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Outbound HTTP: the component's allow-list is enforced here, and
/// `*.spin.internal` requests are served in-process by the target component.
struct OutboundHooks {
    app: Arc<App>,
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
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16();
        if !self.component.outbound.allows(&scheme, &host, port) {
            tracing::warn!(
                component = %self.component.id,
                "outbound request to {scheme}://{host}{} denied: not in allowed_outbound_hosts",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some(target) = host.strip_suffix(".spin.internal") {
            let app = Arc::clone(&self.app);
            let target = target.to_string();
            let depth = self.depth + 1;
            return Box::new(async move {
                let response = app.handle_internal(&target, request, depth).await?;
                Ok((response, Box::new(async { Ok(()) }) as BoxedIo))
            });
        }
        let _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as BoxedIo))
        })
    }
}
