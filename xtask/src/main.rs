//! `cargo xtask`: the project's commands, in Rust so they work wherever cargo does.
//!
//! * `build` — components to wasm32-wasip2, native binaries (host, runner)
//! * `up`    — build, then run the app (embedded host, or `--engine spin`)
//! * `test`  — lint gate (rustfmt, clippy), build, then every test: unit, host conformance, end-to-end
//! * `bench` — load benchmarks against baselines, written to BENCHMARKS.md (figures, not pass/fail)
//! * `deploy render --target spinkube` — platform manifests derived from spin.toml

mod bench;
mod bench_baseline;
mod bench_cluster;
mod bench_media;
mod bench_profile;
mod bench_report;
mod build;
mod deploy;
mod lint;
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
    /// Check formatting and clippy (warnings are errors), build, then run all tests.
    Test {
        /// Skip the formatting and clippy gate (for local iterations only; CI runs it).
        #[arg(long)]
        no_lint: bool,
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
        Command::Test {
            no_lint,
            cargo_args,
        } => test(no_lint, cargo_args),
        Command::Bench(args) => bench::bench(args),
        Command::Deploy(args) => deploy::deploy(args),
    }
}

fn test(no_lint: bool, cargo_args: Vec<String>) -> Result<()> {
    if no_lint {
        eprintln!("xtask: --no-lint: skipping the formatting and clippy gate");
    } else {
        lint::lint()?;
    }
    setup::ensure_ffmpeg()?;
    setup::ensure_postgres()?;
    setup::ensure_nginx()?;
    setup::ensure_redis()?;
    setup::ensure_browser_test(&build::root())?;
    setup::ensure_schemathesis(&build::root())?;
    setup::ensure_kubernetes_validate(&build::root())?;
    setup::ensure_s3_server(&build::root())?;
    build::build_all()?;
    // One profile for everything: the e2e tests run the release binaries the
    // build just made, and wasmtime is far too slow unoptimised.
    let mut args = build::native_args("test", &build::wasm_packages()?);
    // A CI run shows every failing suite, not just the first.
    args.push("--no-fail-fast".into());
    args.extend(cargo_args);
    build::cargo(&args)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    fn test_command(args: &[&str]) -> (bool, Vec<String>) {
        match Cli::try_parse_from(["xtask", "test"].iter().chain(args))
            .unwrap()
            .command
        {
            Command::Test {
                no_lint,
                cargo_args,
            } => (no_lint, cargo_args),
            _ => panic!("not the test command"),
        }
    }

    #[test]
    fn the_lint_gate_is_skipped_only_when_asked() {
        assert_eq!(test_command(&[]), (false, vec![]));
        assert_eq!(test_command(&["--no-lint"]), (true, vec![]));
        assert_eq!(
            test_command(&["--no-lint", "auth", "--", "--nocapture"]),
            (true, vec!["auth".into(), "--".into(), "--nocapture".into()])
        );
        // After the first argument for cargo, everything is cargo's.
        assert_eq!(
            test_command(&["auth", "--no-lint"]),
            (false, vec!["auth".into(), "--no-lint".into()])
        );
    }
}
