//! Builds the components (wasm32-wasip2) and the native binaries, release profile.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::{WASM_TARGET, ensure_wasm_target};

pub use spinmesh_e2e::{native_binary, repo_root as root};

pub fn cargo<S: AsRef<str>>(args: &[S]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let status = Command::new(&cargo).args(&args).current_dir(root()).status().context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Packages built as wasm components: everything under `components/` and the
/// host's test fixtures.
pub fn wasm_packages() -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .context("cannot run cargo metadata")?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).context("cargo metadata output")?;
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

/// Arguments building every native package with all its targets. `build`, `up`
/// and `test` use the same package set so cargo resolves features the same
/// way each time; otherwise wasmtime and friends would be rebuilt between them.
pub fn native_args(subcommand: &str, wasm_packages: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [subcommand, "--release", "--workspace"].map(String::from).into();
    if subcommand == "build" {
        args.push("--all-targets".into());
    }
    for package in wasm_packages {
        args.extend(["--exclude".to_string(), package.clone()]);
    }
    args
}
