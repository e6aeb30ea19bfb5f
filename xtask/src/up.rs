//! `cargo xtask up`: build, then serve the app with its conversion runner
//! until Ctrl-C.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use spinmesh_deploy::local::{DevSecrets, create_private_dir, keep_created_files_private};
use spinmesh_e2e::cluster::{Cluster, HOSTS};
use spinmesh_e2e::services::postgres;

use crate::build::{build_all, native_binary, root};
use crate::setup::{ensure_ffmpeg, ensure_nginx, ensure_postgres, ensure_redis, ensure_s3_server};

#[derive(Args)]
pub struct UpArgs {
    /// Which runtime serves the components.
    #[arg(long, value_enum, default_value_t = Engine::Host)]
    engine: Engine,
    /// Address for the app.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Address for the conversion runner (loopback: only the app calls it).
    #[arg(long, default_value = "127.0.0.1:3001")]
    runner_listen: String,
    /// Address for the embedded host's admin listener (`/metrics`), or `off`;
    /// loopback, as it has no authentication. Not used with `--engine spin`.
    #[arg(long, default_value = "127.0.0.1:3002")]
    admin_listen: String,
    /// The production topology instead: PostgreSQL, Redis, an S3 server, two hosts
    /// behind nginx, two runners, all real services here, state under `.spin/cluster/`.
    #[arg(long, conflicts_with_all = ["engine", "runner_listen", "admin_listen"])]
    cluster: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// spinmesh's embedded host (wasmtime), built from this repository.
    Host,
    /// A `spin` CLI found on PATH.
    Spin,
}

pub fn up(args: UpArgs) -> Result<()> {
    if args.cluster {
        return up_cluster(&args.listen);
    }
    // Before the long build, so a missing CLI is reported at once.
    if matches!(args.engine, Engine::Spin)
        && Command::new("spin").arg("--version").output().is_err()
    {
        bail!(
            "`--engine spin` needs the Spin CLI on PATH (https://spinframework.dev); the default engine needs nothing"
        );
    }
    ensure_ffmpeg()?;
    build_all()?;
    let root = root();
    let state = root.join(".spin");
    let secrets_file = state.join("dev-secrets.env");
    // The secrets, the host's stores and logs and the runner's spool: this user's only.
    create_private_dir(&state)?;
    keep_created_files_private();
    // Generated once, so tokens and accounts survive restarts; never committed.
    let secrets = DevSecrets::load_or_create(&secrets_file)?;

    // Ctrl-C reaches the whole process group; xtask stays to reap its
    // children once they have shut down gracefully.
    ctrlc::set_handler(|| {}).context("cannot install the Ctrl-C handler")?;

    let mut runner = Command::new(native_binary("spinmesh-runner"))
        .args(["--listen", &args.runner_listen, "--spool-dir"])
        .arg(state.join("runner"))
        .env("RUNNER_TOKEN", &secrets.runner_token)
        .current_dir(&root)
        .spawn()
        .context("cannot start the runner")?;

    let host_metrics = (matches!(args.engine, Engine::Host) && args.admin_listen != "off")
        .then(|| format!("http://{}", args.admin_listen));
    let mut app = match args.engine {
        Engine::Host => {
            let mut command = Command::new(native_binary("spinmesh-host"));
            command.args(["--admin-listen", &args.admin_listen]);
            command.args([
                "--component-max-body-bytes",
                spinmesh_e2e::HOST_COMPONENT_BODY_LIMITS,
            ]);
            if let Some(metrics) = &host_metrics {
                command.env("SPIN_VARIABLE_HOST_METRICS_URL", metrics);
            }
            command
        }
        Engine::Spin => {
            let mut command = Command::new("spin");
            command.arg("up");
            command
        }
    };
    // Secrets go through the environment, not argv, so `ps` does not show them.
    app.arg("--from")
        .arg(root.join("spin.toml"))
        .arg("--listen")
        .arg(&args.listen)
        .arg("--runtime-config-file")
        .arg(root.join("runtime-config.toml"))
        .envs(
            secrets
                .variables()
                .into_iter()
                .map(|(name, value)| (format!("SPIN_VARIABLE_{}", name.to_uppercase()), value)),
        )
        .env(
            "SPIN_VARIABLE_RUNNER_URL",
            format!("http://{}", args.runner_listen),
        )
        .current_dir(&root);
    let mut app = app.spawn().context("cannot start the app")?;

    let url = format!("http://{}", args.listen);
    if wait_until_serving(&url, &mut app) {
        println!("\nspinmesh is up at {url}/  (health: {url}/health)");
        if let Some(metrics) = &host_metrics {
            println!("host metrics (Prometheus): {metrics}/metrics");
        }
        println!(
            "admin user `admin`, password and other local secrets in {}",
            secrets_file.display()
        );
        println!("Ctrl-C stops the app and the runner.\n");
    }
    let status = wait_for_either(&mut app, &mut runner)?;
    if !status.success() && status.code().is_some() {
        bail!("spinmesh stopped: {status}");
    }
    Ok(())
}

/// `--cluster`: every service the topology needs, installed when missing, then the
/// cluster (`spinmesh_e2e::cluster`) until Ctrl-C.
fn up_cluster(listen: &str) -> Result<()> {
    ensure_ffmpeg()?;
    ensure_postgres()?;
    ensure_nginx()?;
    ensure_redis()?;
    ensure_s3_server(&root())?;
    build_all()?;
    let state = root().join(".spin");
    create_private_dir(&state)?;
    keep_created_files_private();
    let secrets = DevSecrets::load_or_create(&state.join("dev-secrets.env"))?;
    // After the secrets, which keep their directory 0700.
    postgres::let_server_through(&state).map_err(anyhow::Error::msg)?;
    // Ctrl-C reaches every child in the process group; xtask stays to reap them and to
    // stop the database server, which runs detached.
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    let mut cluster = Cluster::builder()
        .state_dir(&state.join("cluster"))
        .listen(listen)
        .secrets(secrets)
        .try_start()
        .map_err(|log| anyhow::anyhow!("the cluster did not start:\n{log}"))?;
    println!(
        "\nspinmesh is up at {}/  (health: {}/health)",
        cluster.url, cluster.url
    );
    println!(
        "cluster: nginx in front of {HOSTS} hosts and, at {}, {} runners; PostgreSQL at {}; Redis at {}; S3 at {}",
        cluster.runners_url,
        cluster.runner_count(),
        cluster.postgres.url(),
        cluster.redis.url(),
        cluster.s3.endpoint()
    );
    println!(
        "state in {}; admin user `admin`, password in {}",
        cluster.state_dir().display(),
        state.join("dev-secrets.env").display()
    );
    println!("Ctrl-C stops everything.\n");
    loop {
        if stopped.recv_timeout(Duration::from_millis(500)).is_ok() {
            drop(cluster);
            return Ok(());
        }
        if let Some(part) = cluster.exited_part() {
            drop(cluster);
            bail!("spinmesh stopped: {part} exited");
        }
    }
}

fn wait_until_serving(url: &str, app: &mut Child) -> bool {
    let client = spinmesh_e2e::client();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if matches!(app.try_wait(), Ok(Some(_))) {
            return false;
        }
        if client
            .get(format!("{url}/.well-known/spin/health"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Waits until one process exits; stops the other and returns the first status.
fn wait_for_either(app: &mut Child, runner: &mut Child) -> Result<std::process::ExitStatus> {
    let mut children = [app, runner];
    loop {
        for index in 0..2 {
            if let Some(status) = children[index].try_wait()? {
                let other = &mut children[1 - index];
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(other.id().to_string())
                    .status();
                other.wait()?;
                return Ok(status);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
