//! Installs what a fresh machine lacks, or says exactly what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Adds the wasm32-wasip2 target through rustup when it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output)
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|t| t.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => {
            eprintln!("xtask: adding the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
            run_checked(Command::new("rustup").args(["target", "add", WASM_TARGET]))
        }
        Err(_) => bail!(
            "rustup not found: install the {WASM_TARGET} target for your Rust toolchain (https://rustup.rs, then `rustup target add {WASM_TARGET}`)"
        ),
    }
}

/// ffmpeg and ffprobe run the conversions and check their results.
pub fn ensure_ffmpeg() -> Result<()> {
    ensure_tool("ffmpeg", "ffmpeg", "-version")?;
    ensure_tool("ffprobe", "ffmpeg", "-version")
}

/// The runner's PostgreSQL tests start throwaway clusters with Debian's server binaries.
pub fn ensure_postgres() -> Result<()> {
    ensure_tool(
        "/usr/lib/postgresql/15/bin/initdb",
        "postgresql-15",
        "--version",
    )?;
    ensure_tool(
        "/usr/lib/postgresql/15/bin/pg_ctl",
        "postgresql-15",
        "--version",
    )
}

/// The cluster topology's load balancer (`tests/src/services/balancer.rs`).
pub fn ensure_nginx() -> Result<()> {
    ensure_tool("nginx", "nginx", "-v")
}

/// The host's Redis key-value tests start throwaway servers with Debian's redis-server.
pub fn ensure_redis() -> Result<()> {
    ensure_tool("redis-server", "redis-server", "--version")
}

/// The browser test (`tests/browser/`) drives Debian's Chromium with playwright-core
/// under Node; its npm packages are installed from the lock file when missing or stale.
pub fn ensure_browser_test(repo: &Path) -> Result<()> {
    ensure_tool("chromium", "chromium", "--version")?;
    ensure_tool("node", "nodejs", "--version")?;
    ensure_tool("npm", "npm", "--version")?;
    let dir = repo.join("tests/browser");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json"))?)
            .context("tests/browser/package-lock.json")?;
    // playwright-core drives the browser; tus-js-client is the third-party tus client
    // the resumable-upload suite checks the app against.
    let stale = ["playwright-core", "tus-js-client"].iter().any(|name| {
        let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
        let installed =
            std::fs::read_to_string(dir.join(format!("node_modules/{name}/package.json")))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .map(|package| package["version"].clone());
        installed.as_ref() != Some(locked)
    });
    if stale {
        eprintln!("xtask: installing the browser test's npm packages (npm ci in tests/browser)");
        run_checked(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )?;
    }
    Ok(())
}

/// Makes `tool` available, installing `package` with apt-get when this is a
/// Debian/Ubuntu machine and we are root.
pub fn ensure_tool(tool: &str, package: &str, version_flag: &str) -> Result<()> {
    if Command::new(tool).arg(version_flag).output().is_ok() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let has_apt = Command::new("apt-get").arg("--version").output().is_ok();
    if is_root && has_apt {
        eprintln!("xtask: installing {package} with apt-get");
        run_checked(Command::new("apt-get").arg("update").arg("-qq"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if Command::new(tool).arg(version_flag).output().is_ok() {
            return Ok(());
        }
    }
    bail!(
        "`{tool}` is not installed. Install the `{package}` package (Debian/Ubuntu: `sudo apt-get install {package}`, macOS: `brew install {package}`) and run the command again."
    )
}

/// The schemathesis CLI for tests/tests/schema.rs, in a virtualenv under `target/` at the
/// version pinned in tests/schema/requirements.txt.
pub fn ensure_schemathesis(root: &Path) -> Result<()> {
    ensure_python_venv(root, "tests/schema/requirements.txt", "schemathesis")
}

/// kubernetes-validate, with the Kubernetes schemas it ships, for the manifest schema test
/// (crates/deploy/tests/schemas.rs), pinned in crates/deploy/schemas/requirements.txt.
pub fn ensure_kubernetes_validate(root: &Path) -> Result<()> {
    ensure_python_venv(
        root,
        "crates/deploy/schemas/requirements.txt",
        "kubernetes-validate",
    )
}

/// moto's S3 server for the runner's object-storage tests (`runner/tests/objstore.rs`) and
/// the cluster, pinned in runner/tests/s3-requirements.txt, in `target/moto`.
pub fn ensure_s3_server(root: &Path) -> Result<()> {
    ensure_python_venv(root, "runner/tests/s3-requirements.txt", "moto")
}

/// A virtualenv `target/<name>` holding exactly what `requirements` (relative to `root`)
/// pins; installed with pip when missing or when the file changed since the last install
/// (a copy of it kept in the virtualenv says what is there).
fn ensure_python_venv(root: &Path, requirements: &str, name: &str) -> Result<()> {
    let requirements = root.join(requirements);
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let venv = root.join("target").join(name);
    let stamp = venv.join("installed-requirements.txt");
    let python = venv.join("bin/python");
    let usable = Command::new(&python)
        .args(["-c", ""])
        .status()
        .is_ok_and(|status| status.success());
    if usable && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    let system_python = ["python3", "python"]
        .into_iter()
        .find(|python| Command::new(python).arg("--version").output().is_ok())
        .with_context(|| {
            format!("Python 3 is not installed: install python3 (with venv and pip) for {name}")
        })?;
    eprintln!(
        "xtask: installing {} into {}",
        requirements.display(),
        venv.display()
    );
    if !usable {
        run_checked(Command::new(system_python).arg("-m").arg("venv").arg(&venv))?;
    }
    run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))
}

pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("command failed ({status}): {command:?}");
    }
    Ok(())
}
