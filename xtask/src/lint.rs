//! The gate `cargo xtask test` passes before any test runs: formatting, and clippy with
//! warnings as errors, for the native crates and for the components as wasm32-wasip2.

use anyhow::{Context, Result};

use crate::build::{cargo, native_args, wasm_packages};
use crate::setup::{WASM_TARGET, ensure_wasm_target};

const SKIP_HINT: &str = "(`cargo xtask test --no-lint` skips this gate locally)";

pub fn lint() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])
        .with_context(|| format!("the code is not formatted: run `cargo fmt --all` {SKIP_HINT}"))?;
    let packages = wasm_packages()?;
    let deny_warnings = ["--", "-D", "warnings"].map(String::from);
    let mut native = native_args("clippy", &packages);
    native.extend(deny_warnings.iter().cloned());
    cargo(&native)
        .with_context(|| format!("clippy found problems in the native crates {SKIP_HINT}"))?;

    ensure_wasm_target()?;
    let mut wasm: Vec<String> = [
        "clippy",
        "--release",
        "--all-targets",
        "--target",
        WASM_TARGET,
    ]
    .map(String::from)
    .into();
    for package in &packages {
        wasm.extend(["-p".to_string(), package.clone()]);
    }
    wasm.extend(deny_warnings);
    cargo(&wasm)
        .with_context(|| format!("clippy found problems in the wasm components {SKIP_HINT}"))
}
