//! `spinmesh-host`: `spin up` for this app, on wasmtime. The flags mirror
//! `spin up`'s so the two can be swapped freely.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use spinmesh_host::app::{App, AppOptions};
use spinmesh_host::limits::Limits;
use spinmesh_host::variables::{Providers, parse_cli_variable};
use tracing_appender::non_blocking::NonBlocking;

#[derive(Parser)]
#[command(
    version,
    about = "Runs a Spin HTTP application (spin.toml, manifest v2) on wasmtime"
)]
struct Args {
    /// The application manifest, or a directory containing spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Runtime configuration (key-value stores, SQLite databases).
    #[arg(long, env = "RUNTIME_CONFIG_FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Local state (default stores, compiled-component cache). Default: `.spin` beside the manifest.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Compiled-component cache (host-specific). Default: `<state-dir>/cache`.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Sets an application variable: NAME=VALUE or NAME=@file. Repeatable.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// Wall-clock limit per request, in seconds.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Linear memory limit per component instance, in MiB.
    #[arg(long, default_value_t = 128)]
    max_instance_memory_mb: usize,
    /// The same limit in bytes, under `spin up`'s name for it; wins when given.
    #[arg(
        long,
        env = "SPIN_MAX_INSTANCE_MEMORY",
        conflicts_with = "max_instance_memory_mb"
    )]
    max_instance_memory: Option<usize>,
    /// Requests served at once (and, separately, service-chaining requests); more wait.
    #[arg(long, default_value_t = 128)]
    max_concurrent_requests: usize,
    /// Requests whose bodies stream to their component (uploads) served at once,
    /// apart from the others: slow uploaders cannot hold the slots other routes need.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_streaming_requests: u32,
    /// Client connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client may take to send a request's headers; also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds a request body may take to arrive when the host reads it before
    /// starting the component, and the longest pause in a body streamed to a
    /// component; then the client gets 408.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout: u64,
    /// Largest request body, in bytes, for components without their own limit;
    /// such bodies are received in full before the component starts.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: u64,
    /// A component's own body limit, COMPONENT=BYTES; above --max-body-bytes,
    /// its bodies are streamed to it as they arrive. Repeatable, or comma-separated.
    #[arg(long = "component-max-body-bytes", env = "SPINMESH_COMPONENT_MAX_BODY_BYTES", value_name = "COMPONENT=BYTES",
          value_delimiter = ',', value_parser = parse_component_limit)]
    component_max_body_bytes: Vec<(String, u64)>,
    /// Admin listener for the host's own endpoints: `GET /metrics` (Prometheus
    /// text) and `GET /healthz`; never the app. It has no authentication, so
    /// keep it on loopback or a private network. `off` disables it.
    #[arg(long, env = "SPINMESH_ADMIN_LISTEN", default_value = "127.0.0.1:3002", value_name = "ADDR|off", value_parser = parse_admin_listen)]
    admin_listen: ::std::option::Option<SocketAddr>,
}

fn parse_component_limit(value: &str) -> Result<(String, u64), String> {
    let (component, bytes) = value.split_once('=').ok_or("expected COMPONENT=BYTES")?;
    let bytes = bytes
        .trim()
        .parse()
        .map_err(|err| format!("{bytes:?} is not a number of bytes: {err}"))?;
    Ok((component.trim().to_string(), bytes))
}

fn parse_admin_listen(value: &str) -> Result<Option<SocketAddr>, String> {
    match value.trim() {
        "" | "off" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|err| format!("expected ADDR:PORT or `off`: {err}")),
    }
}

fn main() -> Result<()> {
    // Held to the end of `main`: its drop writes out what is still queued.
    let (console, _console_writer) = spinmesh_host::logs::console();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime_wasi_http=warn,cranelift=warn".into()),
        )
        .with_writer(console.clone())
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(args, console));
    // The app, and with it the components' log writers, goes with the runtime's tasks.
    drop(runtime);
    result
}

async fn run(args: Args, console: NonBlocking) -> Result<()> {
    let manifest = if args.from.is_dir() {
        args.from.join("spin.toml")
    } else {
        args.from.clone()
    };
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => manifest
            .parent()
            .map(|p| p.join(".spin"))
            .unwrap_or_else(|| ".spin".into()),
    };
    let cache_dir = args.cache_dir.unwrap_or_else(|| state_dir.join("cache"));
    let cli_variables: HashMap<String, String> = args
        .variables
        .iter()
        .map(|flag| parse_cli_variable(flag))
        .collect::<Result<_>>()?;
    let limits = Limits {
        memory_bytes: args
            .max_instance_memory
            .unwrap_or(args.max_instance_memory_mb << 20),
        request_timeout: Duration::from_secs(args.request_timeout),
        max_concurrent_requests: args.max_concurrent_requests,
        max_streaming_requests: args.max_streaming_requests as usize,
        max_connections: args.max_connections as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        max_body_bytes: args.max_body_bytes,
        component_max_body_bytes: args.component_max_body_bytes.into_iter().collect(),
        ..Limits::default()
    };
    let app = App::load(AppOptions {
        manifest,
        runtime_config: args.runtime_config_file,
        state_dir,
        cache_dir,
        providers: Providers::from_process_env(cli_variables),
        limits,
        console,
    })?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    if let Some(admin) = args.admin_listen {
        let admin_listener = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| {
                format!("cannot listen on {admin} (--admin-listen; `off` disables it)")
            })?;
        let admin = admin_listener.local_addr()?;
        if !admin.ip().is_loopback() {
            tracing::warn!(
                "the admin listener on {admin} is not loopback-only and has no authentication"
            );
        }
        tracing::info!("admin listener (metrics) on http://{admin}/metrics");
        tokio::spawn(spinmesh_host::server::serve_admin(
            Arc::clone(&app),
            admin_listener,
        ));
    }
    tracing::info!("serving {} on http://{address}", app.name);
    // Tools (xtask, tests) read this line to find the port when --listen used port 0.
    println!("Serving http://{address}");

    spinmesh_host::server::serve(app, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
