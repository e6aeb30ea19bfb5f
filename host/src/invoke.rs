//! Running a component: the linker with every interface the host provides,
//! each component's pre-instantiated form, and one request served by a fresh
//! instance under the request deadline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use hyper::body::Body;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::metrics::ComponentMetrics;
use crate::state::{ComponentContext, RequestState, ServiceChain, Shared};

/// A linker with WASI, wasi:http and Spin's platform interfaces.
pub fn linker(engine: &Engine) -> Result<Linker<RequestState>> {
    let mut linker = Linker::<RequestState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::platform::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// A component ready to be instantiated once per request.
pub struct Runnable {
    pre: ProxyPre<RequestState>,
    pub context: Arc<ComponentContext>,
    /// Shared with the task running each instance.
    pub metrics: Arc<ComponentMetrics>,
}

impl Runnable {
    pub fn new(
        linker: &Linker<RequestState>,
        compiled: &Component,
        context: ComponentContext,
        metrics: ComponentMetrics,
    ) -> Result<Self> {
        let pre = linker
            .instantiate_pre(compiled)
            .and_then(ProxyPre::new)
            .map_err(|err| {
                anyhow!(
                    "component {:?} cannot run on this host: {err:#}",
                    context.id
                )
            })?;
        Ok(Runnable {
            pre,
            context: Arc::new(context),
            metrics: Arc::new(metrics),
        })
    }

    /// Serves one request with a fresh instance; the response head comes back
    /// as soon as the guest sets it, while the guest may go on streaming the body.
    pub async fn invoke<B>(
        &self,
        engine: &Engine,
        shared: &Arc<Shared>,
        chain: Arc<dyn ServiceChain>,
        request: http::Request<B>,
        depth: u32,
    ) -> Result<http::Response<HyperOutgoingBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let state = RequestState::new(Arc::clone(shared), Arc::clone(&self.context), chain, depth);
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        let timeout = shared.limits.request_timeout;
        // The guest yields to the async workers at every epoch tick. A long computation
        // (a password hash takes 50 ms) would otherwise hold its worker the whole time,
        // and a task woken on that worker (a writer whose turn came) would wait behind it:
        // with two workers, concurrent logins ran one at a time. Yielding also lets the
        // request deadline below stop a guest stuck in its own code.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let id = self.context.id.clone();
        let metrics = Arc::clone(&self.metrics);
        // The guest keeps running after it hands over the response head (it may
        // still be streaming the body), so it runs in its own task.
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                let _running = metrics.instance_started();
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err.into()),
                Err(_) => Err(anyhow::Error::new(TimedOut {
                    component: id,
                    timeout,
                })),
            };
            // Counted here because a failure after the response head reaches nobody else.
            match &result {
                Err(err) if is_timeout(err) => metrics.timed_out(),
                Err(_) => metrics.failed(),
                Ok(()) => {}
            }
            result
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => {
                self.metrics.failed();
                bail!("component answered with an error: {code:?}")
            }
            Err(_) => match task.await {
                Ok(Ok(())) => {
                    self.metrics.failed();
                    bail!("component returned without setting a response")
                }
                Ok(Err(err)) => Err(err),
                Err(join) => {
                    self.metrics.failed();
                    Err(anyhow!("component task failed: {join}"))
                }
            },
        }
    }
}

/// Whether a failure was the request deadline, rather than the component failing.
pub fn is_timeout(err: &anyhow::Error) -> bool {
    err.is::<TimedOut>()
}

#[derive(Debug, thiserror::Error)]
#[error("component {component:?} exceeded the {timeout:?} request timeout")]
struct TimedOut {
    component: String,
    timeout: Duration,
}
