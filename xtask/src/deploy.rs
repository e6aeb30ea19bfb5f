//! `cargo xtask deploy render --target spinkube`: writes the platform manifests
//! from `spin.toml` (see `crates/deploy`), or checks the committed ones are current.
//! `cargo xtask deploy secrets`: fresh values for the app's secrets, as an env file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use spinmesh_deploy::AppSpec;
use spinmesh_deploy::local::DevSecrets;
use spinmesh_deploy::spinkube::{self, Names, Options};

use crate::build::root;

#[derive(Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    command: DeployCommand,
}

#[derive(Subcommand)]
enum DeployCommand {
    /// Render the manifests a platform needs from spin.toml.
    Render(RenderArgs),
    /// Print fresh values for every secret spin.toml needs (NAME=VALUE lines) on stdout.
    Secrets,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// Kubernetes with SpinKube: SpinApp, runtime config, runner workloads.
    Spinkube,
}

#[derive(Args)]
struct RenderArgs {
    #[arg(long, value_enum)]
    target: Target,
    /// Output directory. Default: deploy/spinkube (the committed copies).
    #[arg(long)]
    out: Option<PathBuf>,
    /// OCI reference the app was pushed to with `spin registry push`.
    #[arg(long)]
    image: Option<String>,
    /// Container image of the runner (built from runner/Dockerfile).
    #[arg(long)]
    runner_image: Option<String>,
    /// SpinApp replicas.
    #[arg(long)]
    replicas: Option<u32>,
    /// Redis URL for each key-value label; `{label}` is replaced.
    #[arg(long)]
    redis_url_template: Option<String>,
    /// libSQL URL for each SQLite label; `{label}` is replaced.
    #[arg(long)]
    libsql_url_template: Option<String>,
    /// Size limit of each runner pod's scratch volume (e.g. 20Gi).
    #[arg(long)]
    scratch_size: Option<String>,
    /// Write nothing; fail if the files in the output directory are not what would be written.
    #[arg(long)]
    check: bool,
}

pub fn deploy(args: DeployArgs) -> Result<()> {
    match args.command {
        DeployCommand::Render(args) => render(args),
        DeployCommand::Secrets => secrets(),
    }
}

fn render(args: RenderArgs) -> Result<()> {
    let Target::Spinkube = args.target;
    let root = root();
    let app = AppSpec::load(&root.join("spin.toml"))?;
    let defaults = Options::defaults_for(&app);
    let options = Options {
        image: args.image.unwrap_or(defaults.image),
        runner_image: args.runner_image.unwrap_or(defaults.runner_image),
        replicas: args.replicas.unwrap_or(defaults.replicas),
        redis_url_template: args
            .redis_url_template
            .unwrap_or(defaults.redis_url_template),
        libsql_url_template: args
            .libsql_url_template
            .unwrap_or(defaults.libsql_url_template),
        scratch_size: args.scratch_size.unwrap_or(defaults.scratch_size),
    };
    let files = spinkube::render(&app, &options)?;
    let out = args.out.unwrap_or_else(|| root.join("deploy/spinkube"));
    if args.check {
        let stale = spinkube::stale_files(&out, &files);
        if !stale.is_empty() {
            bail!(
                "{} out of date with spin.toml: {}; run `cargo xtask deploy render --target spinkube`",
                out.display(),
                stale.join(", ")
            );
        }
        println!("{}: up to date", out.display());
        return Ok(());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for file in &files {
        let path = out.join(file.name);
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let names = Names::for_app(&app);
    println!(
        "\nSecret `{}` needs the keys: {}",
        names.secrets,
        spinkube::secret_keys(&app).join(", ")
    );
    println!(
        "Secret `{}` needs the key `{}` (the filled-in runtime-config.toml).",
        names.runtime_config,
        spinkube::RUNTIME_CONFIG_KEY
    );
    let storage_keys: Vec<&str> = spinkube::RUNNER_STORAGE_KEYS
        .iter()
        .map(|(key, _, _)| *key)
        .collect();
    println!(
        "Secret `{}` needs the keys: {} (the runner's PostgreSQL and object store).",
        names.runner_storage,
        storage_keys.join(", ")
    );
    println!("See deploy/spinkube/README.md for the commands.");
    Ok(())
}

/// Every key the platform's secret store needs, with a freshly generated value
/// where the app's secrets generator knows it; the others are left as comments for
/// the operator to fill in (env-file comments are ignored by kubectl and shells).
fn secrets() -> Result<()> {
    let app = AppSpec::load(&root().join("spin.toml"))?;
    let generated: std::collections::BTreeMap<String, String> =
        DevSecrets::generate().variables().into_iter().collect();
    println!(
        "# Secrets for {} generated by `cargo xtask deploy secrets`. Never commit this.",
        app.name
    );
    let mut unknown = Vec::new();
    for key in spinkube::secret_keys(&app) {
        match generated.get(&key) {
            Some(value) => println!("{key}={value}"),
            None => {
                println!("# {key}=  (no generator: set it yourself; see docs/operations.md)");
                unknown.push(key);
            }
        }
    }
    if !unknown.is_empty() {
        eprintln!(
            "xtask: set these yourself before use: {}",
            unknown.join(", ")
        );
    }
    Ok(())
}
