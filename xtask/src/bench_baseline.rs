//! The stacks spinmesh is measured against, each a process the bench starts,
//! waits for and stops: the seed stack (Flask + PyJWT under gunicorn) and the
//! native ceiling (axum, same verifier, no WASM).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spinmesh_e2e::{ManagedProcess, client, native_binary};

use crate::bench_report::Stack;
use crate::build::root;

/// A running baseline service. Dropping it stops the process.
pub struct Baseline {
    pub url: String,
    _process: ManagedProcess,
}

impl Baseline {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits until `GET /health` answers 200 (workers may boot after the listener).
    fn ready(stack: Stack, process: ManagedProcess, url: String) -> Result<Baseline> {
        let baseline = Baseline {
            url,
            _process: process,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match client().get(baseline.url("/health")).send() {
                Ok(response) if response.status().is_success() => return Ok(baseline),
                _ if Instant::now() > deadline => {
                    bail!("{} did not answer /health within 60 s", stack.label())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Seed 000's validate service with `workers` sync gunicorn workers, checking
    /// HS256 tokens signed with `secret`.
    pub fn seed(workers: usize, secret: &str, issuer: &str, audience: &str) -> Result<Baseline> {
        let venv = seed_venv()?;
        let mut command = Command::new(venv.join("bin/gunicorn"));
        command
            .args([
                "--workers",
                &workers.to_string(),
                "--worker-class",
                "sync",
                "--bind",
                "127.0.0.1:0",
            ])
            // Info level announces the bound address; no access log (the seed has none).
            .args(["--log-level", "info"])
            .arg("--chdir")
            .arg(root().join("benches/seed-validate"))
            .arg("app:app")
            .env("SEED_SECRET_KEY", secret)
            .env("SEED_ISSUER", issuer)
            .env("SEED_AUDIENCE", audience);
        let (process, url) = ManagedProcess::start(command, "Listening at:")
            .map_err(|log| anyhow::anyhow!("gunicorn did not start:\n{log}"))?;
        Baseline::ready(Stack::Seed, process, url)
    }

    /// The axum service in `benches/native-validate`, verifying with `public_key`.
    pub fn native(public_key: &str, issuer: &str, audience: &str) -> Result<Baseline> {
        let mut command = Command::new(native_binary("spinmesh-native-validate"));
        command
            .env("AUTH_PUBLIC_KEY", public_key)
            .env("AUTH_ISSUER", issuer)
            .env("AUTH_AUDIENCE", audience);
        let (process, url) = ManagedProcess::start(command, "listening on")
            .map_err(|log| anyhow::anyhow!("the native service did not start:\n{log}"))?;
        Baseline::ready(Stack::Native, process, url)
    }
}

/// `target/bench-venv` with the seed's pinned requirements, (re)installed when
/// missing or when `requirements.txt` changed since.
fn seed_venv() -> Result<PathBuf> {
    let venv = root().join("target/bench-venv");
    let requirements = root().join("benches/seed-validate/requirements.txt");
    let wanted =
        std::fs::read_to_string(&requirements).context("benches/seed-validate/requirements.txt")?;
    let stamp = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted)
        && venv.join("bin/gunicorn").exists()
    {
        return Ok(venv);
    }
    eprintln!(
        "xtask: installing the seed stack into {} (python3 -m venv, pip install -r requirements.txt)",
        venv.display()
    );
    let python = Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|output| output.status.success()) {
        bail!("no python3 on PATH (Debian/Ubuntu: apt-get install python3 python3-venv)");
    }
    crate::setup::run_checked(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)")?;
    crate::setup::run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(venv)
}
