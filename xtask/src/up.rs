//! `cargo xtask up`: build, then serve the app until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::build::{build_all, native_binary, root};

#[derive(Args)]
pub struct UpArgs {
    /// Which runtime serves the components.
    #[arg(long, value_enum, default_value_t = Engine::Host)]
    engine: Engine,
    /// Address for the app.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// spinmesh's embedded host (wasmtime), built from this repository.
    Host,
    /// A `spin` CLI found on PATH.
    Spin,
}

pub fn up(args: UpArgs) -> Result<()> {
    build_all()?;
    let root = root();
    // Ctrl-C reaches the whole process group; xtask stays to reap its children
    // once they have shut down gracefully.
    ctrlc::set_handler(|| {}).context("cannot install the Ctrl-C handler")?;
    let mut command = match args.engine {
        Engine::Host => {
            let mut command = Command::new(native_binary("spinmesh-host"));
            command.arg("--from").arg(root.join("spin.toml"));
            command
        }
        Engine::Spin => {
            if Command::new("spin").arg("--version").output().is_err() {
                bail!("`--engine spin` needs the Spin CLI on PATH (https://spinframework.dev); the default engine needs nothing");
            }
            let mut command = Command::new("spin");
            command.arg("up").arg("--from").arg(root.join("spin.toml"));
            command
        }
    };
    command
        .arg("--listen")
        .arg(&args.listen)
        .arg("--runtime-config-file")
        .arg(root.join("runtime-config.toml"))
        .current_dir(&root)
        .stdout(Stdio::piped());
    let mut app = command.spawn().context("cannot start the app")?;
    announce(&mut app, &args.listen);
    let status = app.wait()?;
    if !status.success() && status.code().is_some() {
        bail!("the app exited with {status}");
    }
    Ok(())
}

/// Echoes the app's output and prints the URL once it is serving.
fn announce(app: &mut Child, listen: &str) {
    let stdout = app.stdout.take().expect("stdout is piped");
    let listen = listen.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("Serving http://") || line.contains("Serving http://") {
                println!("\nspinmesh is up: http://{listen}/health  (Ctrl-C to stop)\n");
            }
        }
    });
}
