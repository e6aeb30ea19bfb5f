//! Test harness: starts the app in a real host process on a free port, with
//! its own state directory, and stops it when dropped.
//!
//! The engine is the embedded host unless `SPINMESH_ENGINE=spin`, which uses a
//! `spin` CLI from PATH (tests call [`engine_available`] and skip visibly
//! when it is missing).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long start-up may take: the first start compiles every component.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// A path under `target/wasm32-wasip2/release/`, failing clearly when the
/// components were not built.
pub fn wasm_artifact(name: &str) -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip2/release").join(name);
    assert!(path.exists(), "{} is missing: run `cargo xtask test`, which builds the components first", path.display());
    path
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Engine {
    Host,
    Spin,
}

pub fn engine() -> Engine {
    match std::env::var("SPINMESH_ENGINE").as_deref() {
        Ok("spin") => Engine::Spin,
        _ => Engine::Host,
    }
}

/// False (with a visible message) when the selected engine cannot run here.
pub fn engine_available() -> bool {
    if engine() == Engine::Spin && Command::new("spin").arg("--version").output().is_err() {
        eprintln!("SKIPPED: SPINMESH_ENGINE=spin but no `spin` CLI is on PATH");
        return false;
    }
    true
}

pub struct AppBuilder {
    manifest: PathBuf,
    variables: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl AppBuilder {
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Extra host flags (e.g. `--request-timeout`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the app and waits until it serves; panics with the host's log otherwise.
    pub fn start(self) -> App {
        self.try_start().unwrap_or_else(|log| panic!("the app did not start:\n{log}"))
    }

    /// Starts the app; on failure returns what the host printed.
    pub fn try_start(self) -> Result<App, String> {
        let state = tempfile::tempdir().expect("temp dir");
        let runtime_config = state.path().join("runtime-config.toml");
        let repo_config = repo_root().join("runtime-config.toml");
        // Relative store paths then land in this app's own temp directory.
        std::fs::copy(&repo_config, &runtime_config).expect("copy runtime-config.toml");

        let mut command = match engine() {
            Engine::Host => {
                let binary = repo_root().join("target/release/spinmesh-host");
                assert!(binary.exists(), "{} is missing: run `cargo xtask test`", binary.display());
                let mut command = Command::new(binary);
                command.arg("--cache-dir").arg(repo_root().join("target/spinmesh-test-cache"));
                command
            }
            Engine::Spin => {
                let mut command = Command::new("spin");
                command.arg("up");
                command
            }
        };
        command
            .arg("--from")
            .arg(&self.manifest)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(state.path().join(".spin"))
            .arg("--runtime-config-file")
            .arg(&runtime_config)
            .args(&self.args)
            .current_dir(state.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.variables {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        let mut child = command.spawn().expect("spawn the host");

        // Collect everything the host prints, and spot the line with its address.
        let (url_tx, url_rx) = mpsc::channel();
        let (log_tx, log_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stdout_log = log_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split("Serving ").nth(1) {
                    let _ = url_tx.send(url.trim().to_string());
                }
                let _ = stdout_log.send(line);
            }
        });
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.by_ref().read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = log_tx.send(String::from_utf8_lossy(&buffer).trim_end().to_string());
                    }
                }
            }
        });

        let mut app = App { child, url: String::new(), log: log_rx, collected: Vec::new(), state };
        match url_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => {
                app.url = url;
                Ok(app)
            }
            Err(_) => {
                let _ = app.child.kill();
                let _ = app.child.wait();
                Err(app.log())
            }
        }
    }
}

/// A running app. Dropping it stops the host.
pub struct App {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    log: mpsc::Receiver<String>,
    collected: Vec<String>,
    state: tempfile::TempDir,
}

impl App {
    /// The repository's own `spin.toml`.
    pub fn builder() -> AppBuilder {
        Self::with_manifest(repo_root().join("spin.toml"))
    }

    pub fn with_manifest(manifest: PathBuf) -> AppBuilder {
        AppBuilder { manifest, variables: Vec::new(), env: Vec::new(), args: Vec::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Everything the host printed so far.
    pub fn log(&mut self) -> String {
        self.collected.extend(self.log.try_iter());
        self.collected.join("\n")
    }

    /// The app's `--state-dir` (stores, logs).
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join(".spin")
    }

    /// The host process, e.g. to check it is still alive.
    pub fn process(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // SIGTERM first so the host drains; the kill is only a backstop.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- host log ---\n{}\n--- end of host log ---", self.log());
        }
    }
}

/// A blocking HTTP client with a generous timeout (the machine may be busy).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client")
}
