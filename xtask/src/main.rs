//! `cargo xtask`: the project's commands, in Rust so they work wherever cargo does.
//!
//! * `build` — components to wasm32-wasip2, native binaries (host, runner)
//! * `up`    — build, then run the app (embedded host, or `--engine spin`)
//! * `test`  — build, then every test: unit, host conformance, end-to-end
//! * `bench` — load benchmarks against baselines, written to BENCHMARKS.md (figures, not pass/fail)
//! * `deploy render --target spinkube` — platform manifests derived from spin.toml

mod bench;
mod bench_baseline;
mod bench_media;
mod bench_profile;
mod bench_report;
mod build;
mod deploy;
mod setup;
mod up;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "spinmesh project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every component (wasm32-wasip2) and the native binaries.
    Build,
    /// Build, then serve the app and print its URL (Ctrl-C stops it).
    Up(up::UpArgs),
    /// Build, then run all tests.
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
    /// Run the benchmarks (spinmesh, seed stack, native ceiling) and write BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Deployment manifests derived from spin.toml.
    Deploy(deploy::DeployArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Build => build::build_all(),
        Command::Up(args) => up::up(args),
        Command::Test { cargo_args } => test(cargo_args),
        Command::Bench(args) => bench::bench(args),
        Command::Deploy(args) => deploy::deploy(args),
    }
}

fn test(cargo_args: Vec<String>) -> Result<()> {
    setup::ensure_ffmpeg()?;
    setup::ensure_browser_test(&build::root())?;
    setup::ensure_schemathesis(&build::root())?;
    build::build_all()?;
    // One profile for everything: the e2e tests run the release binaries the
    // build just made, and wasmtime is far too slow unoptimised.
    let mut args = build::native_args("test", &build::wasm_packages()?);
    args.extend(cargo_args);
    build::cargo(&args)
}
