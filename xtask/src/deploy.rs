//! `cargo xtask deploy render --target spinkube`: writes the platform manifests
//! from `spin.toml` (see `crates/deploy`), or checks the committed ones are current.
//! `cargo xtask deploy secrets`: fresh values for the app's secrets, as an env file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use spinmesh_deploy::AppSpec;
use spinmesh_deploy::local::DevSecrets;
use spinmesh_deploy::spinkube::{self, Autoscale, Names, Options, Scaling};

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
    /// SpinApp replicas, fixed (default 2).
    #[arg(long, conflicts_with = "autoscale")]
    replicas: Option<u32>,
    /// Let a HorizontalPodAutoscaler keep the SpinApp between MIN and MAX replicas (e.g.
    /// 2..10) by CPU use, instead of a fixed count. Needs metrics-server in the cluster.
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_replica_range)]
    autoscale: Option<(u32, u32)>,
    /// The HPA's target: average CPU use per pod, in percent of its CPU request (100m).
    #[arg(long, value_name = "PERCENT", requires = "autoscale",
          default_value_t = Autoscale::DEFAULT_CPU_UTILIZATION)]
    cpu_target: u32,
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

fn parse_replica_range(text: &str) -> Result<(u32, u32), String> {
    spinkube::parse_replica_range(text).map_err(|error| error.to_string())
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
        scaling: match (args.autoscale, args.replicas) {
            (Some((min_replicas, max_replicas)), _) => Scaling::Autoscale(Autoscale {
                min_replicas,
                max_replicas,
                cpu_utilization: args.cpu_target,
            }),
            (None, Some(replicas)) => Scaling::Fixed(replicas),
            (None, None) => defaults.scaling,
        },
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{DeployArgs, DeployCommand, RenderArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        deploy: DeployArgs,
    }

    fn render_args(args: &[&str]) -> Result<RenderArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["deploy", "render", "--target", "spinkube"]
                .iter()
                .chain(args),
        )?;
        match cli.deploy.command {
            DeployCommand::Render(args) => Ok(args),
            DeployCommand::Secrets => panic!("not render"),
        }
    }

    #[test]
    fn autoscale_takes_a_range_and_excludes_fixed_replicas() {
        let args = render_args(&["--autoscale", "2..10", "--cpu-target", "150"]).unwrap();
        assert_eq!(args.autoscale, Some((2, 10)));
        assert_eq!(args.cpu_target, 150);
        assert!(render_args(&["--autoscale", "2..10", "--replicas", "3"]).is_err());
        assert!(
            render_args(&["--cpu-target", "150"]).is_err(),
            "needs --autoscale"
        );
        assert!(render_args(&["--autoscale", "10"]).is_err());
        assert_eq!(render_args(&["--replicas", "3"]).unwrap().replicas, Some(3));
    }
}
