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

/// The runner's object storage tests (`runner/tests/objstore.rs`) run moto's S3 server,
/// at the version pinned in runner/tests/s3-requirements.txt, from a virtualenv under
/// `target/` (installed with pip when missing or different). A virtualenv rather than
/// the system interpreter: Debian's Python refuses `pip install` outside one (PEP 668).
pub fn ensure_s3_server(root: &Path) -> Result<()> {
    let requirements = root.join("runner/tests/s3-requirements.txt");
    let pinned = std::fs::read_to_string(&requirements)?
        .lines()
        .find_map(|line| line.trim().strip_prefix("moto[server]=="))
        .map(str::to_string)
        .with_context(|| format!("{} pins no moto version", requirements.display()))?;
    let venv = root.join("target/moto");
    let installed = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('moto'))",
        ])
        .output();
    let server = venv.join("bin/moto_server");
    if server.exists()
        && installed.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == pinned)
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing moto {pinned} (S3 test server) into {}",
        venv.display()
    );
    pip_install(&venv, &requirements)
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
    let locked = &lock["packages"]["node_modules/playwright-core"]["version"];
    let installed = std::fs::read_to_string(dir.join("node_modules/playwright-core/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .map(|package| package["version"].clone());
    if installed.as_ref() != Some(locked) {
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
/// version pinned in tests/schema/requirements.txt (installed with pip when missing or
/// different).
pub fn ensure_schemathesis(root: &Path) -> Result<()> {
    let requirements = root.join("tests/schema/requirements.txt");
    let pinned = std::fs::read_to_string(&requirements)?
        .lines()
        .find_map(|line| line.trim().strip_prefix("schemathesis=="))
        .map(str::to_string)
        .with_context(|| format!("{} pins no schemathesis version", requirements.display()))?;
    let venv = root.join("target/schemathesis");
    let installed = Command::new(venv.join("bin/st")).arg("--version").output();
    if installed.is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with(&format!(" {pinned}"))
    }) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing schemathesis {pinned} into {}",
        venv.display()
    );
    pip_install(&venv, &requirements)
}

/// Creates the virtualenv `venv` (if needed) and installs `requirements` into it.
fn pip_install(venv: &Path, requirements: &Path) -> Result<()> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|python| Command::new(python).arg("--version").output().is_ok())
        .context("Python 3 is not installed: install python3 (with venv and pip) for the tests")?;
    run_checked(Command::new(python).arg("-m").arg("venv").arg(venv))?;
    run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements),
    )
}

pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("command failed ({status}): {command:?}");
    }
    Ok(())
}
