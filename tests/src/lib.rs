//! Test harness: starts the app in a real host process (and, when asked, the
//! conversion runner) on free ports with their own state, and stops them when
//! dropped. `cargo xtask up` uses the same pieces.
//!
//! The engine is the embedded host unless `SPINMESH_ENGINE=spin`, which uses a
//! `spin` CLI from PATH. When that is missing, `build.rs` sets `cfg(engine_missing)`
//! and the tests that serve the app, marked
//! `#[cfg_attr(engine_missing, ignore = "...")]`, are reported as ignored.

mod api;
pub mod clips;
pub mod cluster;
mod process;
mod reply;
pub mod services;
pub mod tus;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use api::{
    Api, JOB_DEADLINE, PASSWORD, User, concurrently, is_finished, is_rfc3339_utc, status_counts,
};
pub use process::{ManagedProcess, children_mentioning};
pub use reply::{Reply, send};
pub use spinmesh_deploy::local::{DevSecrets, ORDERS_CLIENT_ID};
use spinmesh_deploy::local::{create_private_dir, keep_created_files_private};

/// The embedded host's per-component body limits for the repository's app
/// (`--component-max-body-bytes`): `upload` streams files up to its own
/// `upload_max_bytes` (100 MB) plus the multipart framing; every other
/// component keeps the host's default.
pub const HOST_COMPONENT_BODY_LIMITS: &str = "upload=134217728";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// A path under `target/wasm32-wasip2/release/`, failing clearly when the
/// components were not built.
pub fn wasm_artifact(name: &str) -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip2/release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`, which builds the components first",
        path.display()
    );
    path
}

/// A native binary built by `cargo xtask build`.
pub fn native_binary(name: &str) -> PathBuf {
    let path = repo_root().join("target/release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`, which builds it first",
        path.display()
    );
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

/// False (with a message) when the selected engine cannot run here. Kept for
/// callers that check at run time; the suites use `cfg(engine_missing)` (see the
/// crate docs), which cargo reports as ignored tests.
pub fn engine_available() -> bool {
    if engine() == Engine::Spin && Command::new("spin").arg("--version").output().is_err() {
        eprintln!("SKIPPED: SPINMESH_ENGINE=spin but no `spin` CLI is on PATH");
        return false;
    }
    true
}

pub struct AppBuilder {
    manifest: PathBuf,
    secrets: DevSecrets,
    variables: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    with_runner: bool,
    runner_args: Vec<String>,
    state: Option<PathBuf>,
    engine: Engine,
    listen: String,
    runtime_config: Option<String>,
}

impl AppBuilder {
    /// Overrides an application variable (applied after the generated secrets).
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

    /// Also start the conversion runner and point `runner_url` at it.
    pub fn with_runner(mut self) -> Self {
        self.with_runner = true;
        self
    }

    /// A flag for the runner [`AppBuilder::with_runner`] starts (e.g. `--ffmpeg`).
    pub fn runner_arg(mut self, arg: &str) -> Self {
        self.runner_args.push(arg.into());
        self
    }

    /// Use these secrets instead of fresh ones (e.g. kept across restarts).
    pub fn secrets(mut self, secrets: DevSecrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Keep state (stores, spool, logs) in this directory instead of a temporary one.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state = Some(dir.to_path_buf());
        self
    }

    /// Listen on this address instead of a free port (a balancer in front needs to know).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = address.into();
        self
    }

    /// Use this runtime config instead of the repository's `runtime-config.toml`.
    pub fn runtime_config(mut self, text: &str) -> Self {
        self.runtime_config = Some(text.into());
        self
    }

    /// Serve with this engine instead of the one `SPINMESH_ENGINE` selects.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Starts the app and waits until it serves; panics with the logs otherwise.
    pub fn start(self) -> App {
        self.try_start()
            .unwrap_or_else(|log| panic!("the app did not start:\n{log}"))
    }

    /// Starts the app; on failure returns what the processes printed.
    pub fn try_start(self) -> Result<App, String> {
        let (temp, state) = state_dir(self.state.as_deref())?;
        create_private_dir(&state.join(".spin")).map_err(|err| format!("{err:#}"))?;
        let runtime_config = state.join("runtime-config.toml");
        // Relative store paths then land in this app's own state directory.
        match &self.runtime_config {
            Some(text) => std::fs::write(&runtime_config, text),
            None => {
                std::fs::copy(repo_root().join("runtime-config.toml"), &runtime_config).map(drop)
            }
        }
        .map_err(|err| err.to_string())?;

        // Only the repository's manifest declares the secret variables.
        let mut variables = if self.manifest == repo_root().join("spin.toml") {
            self.secrets.variables()
        } else {
            Vec::new()
        };
        let runner = if self.with_runner {
            let runner = Runner::start_with(
                &state.join("runner"),
                &self.secrets.runner_token,
                "127.0.0.1:0",
                Vec::new(),
                self.runner_args.clone(),
            )?;
            variables.push(("runner_url".into(), runner.url.clone()));
            Some(runner)
        } else {
            None
        };
        variables.extend(self.variables.iter().cloned());

        // The admin port must be known before start (the app gets it as a
        // variable), so it is picked here; another process may grab it in
        // between, so a start that fails on it is retried with a fresh one.
        let own_admin =
            self.engine == Engine::Host && !self.args.iter().any(|arg| arg == "--admin-listen");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let admin = own_admin
                .then(free_local_address)
                .transpose()
                .map_err(|err| err.to_string())?;
            let mut command = match self.engine {
                Engine::Host => {
                    let mut command = Command::new(native_binary("spinmesh-host"));
                    command
                        .arg("--cache-dir")
                        .arg(repo_root().join("target/spinmesh-test-cache"));
                    if self.manifest == repo_root().join("spin.toml") {
                        command
                            .arg("--component-max-body-bytes")
                            .arg(HOST_COMPONENT_BODY_LIMITS);
                    }
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
                .arg(&self.listen)
                .arg("--state-dir")
                .arg(state.join(".spin"))
                .arg("--runtime-config-file")
                .arg(&runtime_config)
                .args(&self.args)
                .current_dir(&state)
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            if let Some(admin) = &admin {
                command.arg("--admin-listen").arg(admin);
                // Before the test's own variables, so that a test can override it.
                command
                    .arg("--variable")
                    .arg(format!("host_metrics_url=http://{admin}"));
            }
            for (name, value) in &variables {
                command.arg("--variable").arg(format!("{name}={value}"));
            }
            let launch = Launch::of(&command);
            match ManagedProcess::start(command, "Serving") {
                Ok((host, url)) => {
                    let admin_url = admin.map(|admin| format!("http://{admin}"));
                    return Ok(App {
                        host,
                        launch,
                        url,
                        admin_url,
                        runner,
                        secrets: self.secrets,
                        state,
                        _temp: temp,
                    });
                }
                Err(log) if admin.is_some() && log.contains("--admin-listen") && attempt < 3 => {
                    continue;
                }
                Err(log) => return Err(log),
            }
        }
    }
}

/// Where processes keep their state: `chosen`, or a fresh temporary directory (kept alive
/// by the returned handle). Files created from now on are private: the stores, logs and
/// spool hold accounts and tokens.
fn state_dir(chosen: Option<&Path>) -> Result<(tempfile::TempDir, PathBuf), String> {
    let temp = tempfile::tempdir().map_err(|err| err.to_string())?;
    let state = chosen.map_or_else(|| temp.path().to_path_buf(), Path::to_path_buf);
    keep_created_files_private();
    Ok((temp, state))
}

/// A loopback address with a port that is free right now.
fn free_local_address() -> std::io::Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string())
}

/// The conversion runner, started for an app.
pub struct Runner {
    process: ManagedProcess,
    pub url: String,
    spool: PathBuf,
    token: String,
    /// Settings beyond the spool and token (`RUNNER_*` variables, flags), kept for
    /// restarts.
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Runner {
    /// A runner on `listen` with extra environment (e.g. `RUNNER_DATABASE_URL`) and flags.
    pub fn start_with(
        spool: &Path,
        token: &str,
        listen: &str,
        env: Vec<(String, String)>,
        args: Vec<String>,
    ) -> Result<Runner, String> {
        let mut command = Command::new(native_binary("spinmesh-runner"));
        command
            .arg("--listen")
            .arg(listen)
            .arg("--spool-dir")
            .arg(spool)
            .env("RUNNER_TOKEN", token)
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .args(&args);
        let (process, url) = ManagedProcess::start(command, "listening on")?;
        Ok(Runner {
            process,
            url,
            spool: spool.to_path_buf(),
            token: token.to_string(),
            env,
            args,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The names of the files in the spool's `sub` directory (`incoming`, `scratch`, …).
    pub fn spool_files(&self, sub: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.spool.join(sub)) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// How many times this runner recorded job `id` as completed (its log says so once
    /// per completion it wrote to the job store).
    pub fn completions_of(&mut self, id: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(id) && line.contains("conversion completed"))
            .count()
    }

    pub fn log(&mut self) -> String {
        self.process.log()
    }

    /// SIGKILL: its jobs are left as a crash leaves them.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops it (SIGTERM) and starts it again on the same address and settings.
    pub fn restart(&mut self) {
        self.process.terminate();
        let listen = self.url.trim_start_matches("http://").to_string();
        // The old port may linger briefly; retry for a while.
        for attempt in 0.. {
            match Runner::start_with(
                &self.spool,
                &self.token,
                &listen,
                self.env.clone(),
                self.args.clone(),
            ) {
                Ok(restarted) => {
                    *self = restarted;
                    return;
                }
                Err(log) if attempt >= 50 => panic!("the runner did not restart:\n{log}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// How the host was started, to start it again.
struct Launch {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    dir: Option<PathBuf>,
}

impl Launch {
    fn of(command: &Command) -> Launch {
        Launch {
            program: command.get_program().to_owned(),
            args: command.get_args().map(ToOwned::to_owned).collect(),
            envs: command
                .get_envs()
                .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
                .collect(),
            dir: command.get_current_dir().map(Path::to_path_buf),
        }
    }

    /// The same command, listening on `address` (the one it was given may be port 0).
    fn command(&self, address: &str) -> Command {
        let mut command = Command::new(&self.program);
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            command.arg(arg);
            if arg == "--listen" {
                args.next();
                command.arg(address);
            }
        }
        command.envs(self.envs.iter().map(|(name, value)| (name, value)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }
}

/// A running app. Dropping it stops the host (and runner).
pub struct App {
    host: ManagedProcess,
    launch: Launch,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The embedded host's admin listener, when the harness chose its address.
    admin_url: Option<String>,
    runner: Option<Runner>,
    secrets: DevSecrets,
    state: PathBuf,
    _temp: tempfile::TempDir,
}

impl App {
    /// The repository's own `spin.toml`.
    pub fn builder() -> AppBuilder {
        Self::with_manifest(repo_root().join("spin.toml"))
    }

    pub fn with_manifest(manifest: PathBuf) -> AppBuilder {
        AppBuilder {
            manifest,
            secrets: DevSecrets::generate(),
            variables: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            with_runner: false,
            runner_args: Vec::new(),
            state: None,
            engine: engine(),
            listen: "127.0.0.1:0".into(),
            runtime_config: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A URL on the host's admin listener (`/metrics`, `/healthz`); `None`
    /// under `SPINMESH_ENGINE=spin`, or when the test set `--admin-listen` itself.
    pub fn admin_url(&self, path: &str) -> Option<String> {
        self.admin_url.as_ref().map(|base| format!("{base}{path}"))
    }

    /// The secrets the app was started with (signing key, admin password, …).
    pub fn secrets(&self) -> &DevSecrets {
        &self.secrets
    }

    /// The host's `--state-dir` (stores, logs).
    pub fn state_dir(&self) -> PathBuf {
        self.state.join(".spin")
    }

    /// Everything the host printed so far.
    pub fn log(&mut self) -> String {
        self.host.log()
    }

    pub fn host_pid(&self) -> u32 {
        self.host.id()
    }

    pub fn runner_pid(&self) -> Option<u32> {
        self.runner.as_ref().map(|runner| runner.process.id())
    }

    pub fn host_is_running(&mut self) -> bool {
        self.host.is_running()
    }

    fn runner_mut(&mut self) -> &mut Runner {
        self.runner
            .as_mut()
            .expect("the app was built without .with_runner()")
    }

    /// The runner's log so far.
    pub fn runner_log(&mut self) -> String {
        self.runner_mut().process.log()
    }

    /// SIGKILL the runner (its jobs are left as a crash leaves them).
    pub fn runner_kill(&mut self) {
        self.runner_mut().kill();
    }

    /// Stop the runner gracefully.
    pub fn runner_stop(&mut self) {
        self.runner_mut().process.terminate();
    }

    /// Start the runner again on the same address and spool directory.
    pub fn runner_restart(&mut self) {
        self.runner_mut().restart();
    }

    /// SIGKILL the host: requests in flight are cut off, as a crash does.
    pub fn kill(&mut self) {
        self.host.kill();
    }

    /// SIGKILL the host, then start it again on the same address, settings and state
    /// (the runner keeps running).
    pub fn restart_host(&mut self) {
        self.host.kill();
        let address = self.url.trim_start_matches("http://").to_string();
        // The old port may linger briefly; retry for a while.
        for attempt in 0.. {
            match ManagedProcess::start(self.launch.command(&address), "Serving") {
                Ok((host, _)) => {
                    self.host = host;
                    return;
                }
                Err(log) if attempt >= 50 => panic!("the host did not restart:\n{log}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- host log ---\n{}\n--- end of host log ---",
                self.host.log()
            );
            if let Some(runner) = self.runner.as_mut() {
                eprintln!(
                    "--- runner log ---\n{}\n--- end of runner log ---",
                    runner.process.log()
                );
            }
        }
    }
}

/// A `multipart/form-data` body: `(field name, file name, content)` parts,
/// each sent as `video/mp4` (the only uploads the app takes).
pub fn multipart_body(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        let filename = filename
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\nContent-Type: video/mp4\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Peak resident memory of a process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Polls `check` every 100 ms until it returns something, and returns that; panics
/// naming `what` once `deadline` has passed without.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < end,
            "waited {deadline:?} in vain for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A log file's text once it holds `needle`: hosts write log lines off the request path,
/// so a line may land a moment after its response.
pub fn log_containing(path: &Path, needle: &str) -> String {
    wait_for(
        &format!("{needle:?} in {}", path.display()),
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|text| text.contains(needle))
        },
    )
}

/// A blocking HTTP client with a generous timeout (the machine may be busy).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// [`client`] with requests sent from `ip`, another loopback address such as
/// `127.0.0.2`: a different client address to the app's per-address limits.
pub fn client_from(ip: &str) -> reqwest::blocking::Client {
    let address: std::net::IpAddr = ip.parse().expect("an IP address");
    reqwest::blocking::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}
