//! The public HTTP listener: accepts connections (at most `--max-connections`
//! at once), times out clients that are slow to send headers, answers Spin's
//! reserved `/.well-known/spin/` paths, hands everything else to the app, and
//! drains in-flight requests on shutdown. Also the admin listener, which
//! serves the host's own endpoints (metrics) and never the app.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::metrics::{self, Rejection};
use crate::responses::{empty_response, text_response};

/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last response, how long the host keeps reading (and discarding)
/// what a client still sends, so that a client sending a body the host
/// refused reads the answer instead of a connection reset.
const LINGER: Duration = Duration::from_secs(2);
/// At most this much is discarded while lingering.
const LINGER_BYTES: usize = 64 << 20;

pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let connections = Arc::new(Semaphore::new(app.limits().max_connections));
    // Connections hold a receiver; shutdown is announced through the sender and
    // is complete once every receiver is gone.
    let (stop, stopped) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        // At the limit, new clients wait in the listen backlog until one leaves.
        let slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
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
        tokio::spawn(serve_connection(
            Arc::clone(&app),
            stream,
            client,
            stopped.clone(),
            slot,
        ));
    }
    drop(stopped);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop.send(());
    if tokio::time::timeout(DRAIN_TIMEOUT, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

async fn serve_connection(
    app: Arc<App>,
    stream: TcpStream,
    client: SocketAddr,
    mut stop: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let header_read_timeout = app.limits().header_read_timeout;
    let service = service_fn(move |request| {
        let app = Arc::clone(&app);
        // Boxed so the connection can be polled without shutting the socket down.
        Box::pin(
            async move { Ok::<_, std::convert::Infallible>(route(&app, request, client).await) },
        )
    });
    let mut connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut stop_requested = std::pin::pin!(stop.changed());
    let mut stopping = false;
    let served = std::future::poll_fn(|cx| {
        if !stopping && stop_requested.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut connection).graceful_shutdown();
        }
        connection.poll_without_shutdown(cx)
    })
    .await;
    if let Err(err) = served {
        tracing::debug!(%client, "connection ended with an error: {err}");
    }
    linger_close(connection.into_parts().io.into_inner()).await;
}

/// Ends a connection politely: sends FIN after the last response, then reads
/// and discards until the client closes too (bounded in time and bytes).
/// Closing with unread input would reset the connection and could destroy
/// the response before the client reads it.
async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
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
            "info" => text_response(
                200,
                serde_json::json!({ "name": app.name, "host": "spinmesh-host" }).to_string(),
            ),
            _ => empty_response(404),
        };
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        // In-app addresses are for service chaining only; never route them from outside.
        Some(host)
            if host
                .split(':')
                .next()
                .unwrap_or(host)
                .ends_with(".spin.internal") =>
        {
            app.metrics().rejected(Rejection::InternalHost);
            return empty_response(400);
        }
        Some(_) => {}
        None => {
            // HTTP/1.0 clients may omit Host; wasi:http needs an authority.
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
    }
    app.handle_public(request, client).await
}

/// At most this many admin connections at once: scrapers and probes need a few, and an
/// admin port reached by accident must not hold unbounded sockets.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// An admin connection serves one short answer per request; one that stays longer than
/// this (a slow reader, a client that never sends) is closed.
const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` until the
/// process ends. No authentication: bind it to loopback or a private network.
/// Bounded like the public listener: a connection cap, the header read timeout,
/// and a lifetime per connection.
pub async fn serve_admin(app: Arc<App>, listener: TcpListener) {
    let connections = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    loop {
        let slot = Arc::clone(&connections)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!("admin accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let header_read_timeout = app.limits().header_read_timeout;
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let response = admin_route(&app, &request);
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!("admin connection ended with an error: {err}"),
                Err(_) => {
                    tracing::debug!("admin connection closed after {ADMIN_CONNECTION_TIMEOUT:?}")
                }
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
        response.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    if path == "/healthz" {
        return text_response(200, "OK");
    }
    match app.metrics().render() {
        Ok(text) => {
            let mut response = text_response(200, text);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        Err(err) => {
            tracing::error!("cannot render metrics: {err:#}");
            empty_response(500)
        }
    }
}
