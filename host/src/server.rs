//! The public HTTP listener: accepts connections, answers Spin's reserved
//! `/.well-known/spin/` paths, hands everything else to the app, and drains
//! in-flight requests on shutdown. Also the admin listener, which serves the
//! host's own endpoints (metrics) and never the app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::metrics::{self, Rejection};
use crate::responses::{empty_response, text_response};

/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically EMFILE under load: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let app = Arc::clone(&app);
            async move { Ok::<_, std::convert::Infallible>(route(&app, request, client).await) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%client, "connection ended with an error: {err}");
            }
        });
    }
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

async fn route(
    app: &Arc<App>,
    mut request: http::Request<hyper::body::Incoming>,
    client: SocketAddr,
) -> http::Response<HyperOutgoingBody> {
    let path = request.uri().path();
    if let Some(reserved) = path.strip_prefix("/.well-known/spin/") {
        return match reserved {
            "health" => text_response(200, "OK"),
            "info" => text_response(200, serde_json::json!({ "name": app.name, "host": "spinmesh-host" }).to_string()),
            _ => empty_response(404),
        };
    }
    let host = request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    match host {
        // In-app addresses are for service chaining only; never route them from outside.
        Some(host) if host.split(':').next().unwrap_or(host).ends_with(".spin.internal") => {
            app.metrics().rejected(Rejection::InternalHost);
            return empty_response(400);
        }
        Some(_) => {}
        None => {
            // HTTP/1.0 clients may omit Host; wasi:http needs an authority.
            request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        }
    }
    app.handle_public(request, client).await
}

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` until the
/// process ends. No authentication: bind it to loopback or a private network.
pub async fn serve_admin(app: Arc<App>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!("admin accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let response = admin_route(&app, &request);
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("admin connection ended with an error: {err}");
            }
        });
    }
}

fn admin_route<B>(app: &App, request: &http::Request<B>) -> http::Response<HyperOutgoingBody> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return text_response(404, "not found\n");
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        let mut response = text_response(405, "method not allowed\n");
        response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/healthz" {
        return text_response(200, "OK");
    }
    match app.metrics().render() {
        Ok(text) => {
            let mut response = text_response(200, text);
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(metrics::CONTENT_TYPE));
            response
        }
        Err(err) => {
            tracing::error!("cannot render metrics: {err:#}");
            empty_response(500)
        }
    }
}
