//! Builds the components (wasm32-wasip2) and the native binaries, release profile.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::{WASM_TARGET, ensure_wasm_target};

pub use spinmesh_e2e::{native_binary, repo_root as root};

pub fn cargo<S: AsRef<str>>(args: &[S]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let status = cargo_command()
        .args(&args)
        .current_dir(root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Cargo, without the variables `cargo run` set for xtask itself. Build scripts
/// such as ring's declare `rerun-if-env-changed=CARGO_PKG_NAME` (and
/// `CARGO_MANIFEST_DIR`, …), so inheriting xtask's values would make every build
/// from xtask rerun them and rebuild their dependants (rustls, wasmtime-wasi-http,
/// the host), and every plain `cargo build` afterwards do it again.
fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Packages built as wasm components: everything under `components/` and the
/// host's test fixtures.
pub fn wasm_packages() -> Result<Vec<String>> {
    let output = cargo_command()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .context("cannot run cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata output")?;
    let root = root();
    let wasm_dirs = [root.join("components"), root.join("host/tests/fixtures")];
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?
        .iter()
        .filter(|package| {
            let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
            wasm_dirs.iter().any(|dir| manifest.starts_with(dir))
        })
        .filter_map(|package| package["name"].as_str().map(str::to_string))
        .collect();
    Ok(packages)
}

pub fn build_all() -> Result<()> {
    ensure_wasm_target()?;
    let packages = wasm_packages()?;
    let mut args = vec!["build", "--release", "--target", WASM_TARGET];
    for package in &packages {
        args.extend(["-p", package.as_str()]);
    }
    cargo(&args)?;
    cargo(&native_args("build", &packages))
}

/// Arguments building every native package with all its targets. `build`, `up`,
/// `test` and the lint gate use the same package set so cargo resolves features the
/// same way each time; otherwise wasmtime and friends would be rebuilt between them.
pub fn native_args(subcommand: &str, wasm_packages: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [subcommand, "--release", "--workspace"]
        .map(String::from)
        .into();
    if subcommand == "build" || subcommand == "clippy" {
        args.push("--all-targets".into());
    }
    for package in wasm_packages {
        args.extend(["--exclude".to_string(), package.clone()]);
    }
    args
}
