//! The production topology on one machine, made of real services: PostgreSQL for the
//! runners' jobs, an S3-compatible server (moto) for their media, Redis for the app's
//! key-value stores, two app hosts behind a real load
//! balancer (nginx), two runners (by default) behind it too. `cargo xtask up --cluster` serves it
//! until Ctrl-C; the cluster suites start a fresh one per test and break pieces of it.
//!
//! The hosts share every key-value store through Redis (each label its own database)
//! and the app's SQLite files through one state directory, and see clients through the
//! balancer's `X-Forwarded-For` (`trusted_proxies`); the runners share the job store and
//! the bucket, each with scratch space of its own.

use std::path::{Path, PathBuf};

use spinmesh_deploy::local::{DevSecrets, create_private_dir};

use crate::services::balancer::{Balancer, Frontend};
use crate::services::free_port;
use crate::services::postgres::{self, PgCluster};
use crate::services::redis::Redis;
use crate::services::s3::S3Server;
use crate::{App, Runner, repo_root};

/// How many hosts the topology runs.
pub const HOSTS: usize = 2;
/// How many runners it runs unless [`ClusterBuilder::runners`] says otherwise.
pub const RUNNERS: usize = 2;

#[derive(Clone)]
pub struct ClusterBuilder {
    state: Option<PathBuf>,
    listen: Option<String>,
    secrets: DevSecrets,
    variables: Vec<(String, String)>,
    runner_env: Vec<(String, String)>,
    runners: usize,
}

impl ClusterBuilder {
    /// How many runners share the job store and the bucket behind the balancer (at
    /// least one; default [`RUNNERS`]).
    pub fn runners(mut self, count: usize) -> Self {
        assert!(count > 0, "the cluster needs a runner");
        self.runners = count;
        self
    }

    /// A runner setting for both runners (e.g. `RUNNER_LEASE_TTL`).
    pub fn runner_env(mut self, name: &str, value: &str) -> Self {
        self.runner_env.push((name.into(), value.into()));
        self
    }

    /// Keep everything (stores, job database, spool, logs) under `dir`, reused by the
    /// next start, instead of a temporary directory.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state = Some(dir.to_path_buf());
        self
    }

    /// The balancer's address for the app (default: a free loopback port).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = Some(address.into());
        self
    }

    pub fn secrets(mut self, secrets: DevSecrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// An application variable for every host.
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    /// Like [`ClusterBuilder::try_start`], but a part that lost its port gets one more
    /// start: ports are picked free and bound a moment later by the part, and on a busy
    /// test machine another process can take one in between.
    pub fn start(self) -> Cluster {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.clone().try_start() {
                Ok(cluster) => return cluster,
                Err(log) if attempts < 2 && log.contains("Address already in use") => {
                    eprintln!("a cluster part lost its port; starting the cluster again");
                }
                Err(log) => panic!("the cluster did not start:\n{log}"),
            }
        }
    }

    /// Starts every service, then the runners, the hosts and the balancer, and returns
    /// once the balancer accepts connections; on failure, what the failing part printed.
    pub fn try_start(self) -> Result<Cluster, String> {
        let (temp, state) = crate::state_dir(self.state.as_deref())?;
        create_private_dir(&state).map_err(|err| format!("{err:#}"))?;
        postgres::let_server_through(&state)?;
        let postgres = PgCluster::start_in(&state.join("postgres"))?;
        let redis = Redis::start();
        let runtime_config = runtime_config(&redis.url())?;

        let runner_addresses: Vec<String> = (0..self.runners).map(|_| loopback()).collect();
        let host_addresses: Vec<String> = (0..HOSTS).map(|_| loopback()).collect();
        let listen = self.listen.clone().unwrap_or_else(loopback);
        let runners_listen = loopback();

        let s3 = S3Server::start();
        let mut runner_env = vec![("RUNNER_DATABASE_URL".to_string(), postgres.url())];
        runner_env.extend(self.runner_env.iter().cloned());
        // Media in the bucket; each runner's spool is its own scratch.
        let runners = runner_addresses
            .iter()
            .enumerate()
            .map(|(index, address)| {
                Runner::start_with(
                    &state.join(format!("runner-{index}")),
                    &self.secrets.runner_token,
                    address,
                    runner_env.clone(),
                    s3.runner_args(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut cluster = Cluster {
            url: format!("http://{listen}"),
            runners_url: format!("http://{runners_listen}"),
            hosts: Vec::new(),
            host_addresses,
            runners,
            balancer: None,
            postgres,
            redis,
            s3,
            runtime_config,
            state,
            secrets: self.secrets,
            variables: self.variables,
            _temp: temp,
        };
        for index in 0..HOSTS {
            let host = cluster.start_host(index)?;
            cluster.hosts.push(Some(host));
        }
        let frontends = [
            Frontend {
                listen,
                backends: cluster.host_addresses.clone(),
            },
            Frontend {
                listen: runners_listen,
                backends: runner_addresses,
            },
        ];
        cluster.balancer = Some(Balancer::start(
            &cluster.state.join("balancer"),
            &frontends,
        )?);
        Ok(cluster)
    }
}

/// The repository's runtime config with each key-value store moved to a Redis database
/// of its own (0, 1, … in the order the file lists them); SQLite stores stay files.
fn runtime_config(redis_url: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(repo_root().join("runtime-config.toml"))
        .map_err(|err| err.to_string())?;
    let mut config: toml::Table = text
        .parse()
        .map_err(|err| format!("runtime-config.toml: {err}"))?;
    if let Some(toml::Value::Table(stores)) = config.get_mut("key_value_store") {
        for (database, (_label, store)) in stores.iter_mut().enumerate() {
            let mut redis = toml::Table::new();
            redis.insert("type".into(), "redis".into());
            redis.insert("url".into(), format!("{redis_url}/{database}").into());
            *store = toml::Value::Table(redis);
        }
    }
    Ok(config.to_string())
}

fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A running cluster; dropping it stops everything.
pub struct Cluster {
    /// The balancer's URL for the app, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    /// The balancer's URL for the runners (what the hosts call).
    pub runners_url: String,
    hosts: Vec<Option<App>>,
    host_addresses: Vec<String>,
    runners: Vec<Runner>,
    balancer: Option<Balancer>,
    pub postgres: PgCluster,
    pub redis: Redis,
    pub s3: S3Server,
    /// The hosts' runtime config: the repository's, with every key-value store on Redis.
    runtime_config: String,
    state: PathBuf,
    secrets: DevSecrets,
    variables: Vec<(String, String)>,
    _temp: tempfile::TempDir,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            state: None,
            listen: None,
            secrets: DevSecrets::generate(),
            variables: Vec::new(),
            runner_env: Vec::new(),
            runners: RUNNERS,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn secrets(&self) -> &DevSecrets {
        &self.secrets
    }

    /// Host `index` directly, bypassing the balancer.
    pub fn host(&self, index: usize) -> &App {
        self.hosts[index].as_ref().expect("the host is running")
    }

    pub fn runner(&mut self, index: usize) -> &mut Runner {
        &mut self.runners[index]
    }

    /// How many runners it started (see [`ClusterBuilder::runners`]).
    pub fn runner_count(&self) -> usize {
        self.runners.len()
    }

    /// SIGKILL host `index`; the balancer then sends everything to the others.
    pub fn host_kill(&mut self, index: usize) {
        if let Some(mut host) = self.hosts[index].take() {
            host.kill();
        }
    }

    /// Starts host `index` again on its address (after [`Cluster::host_kill`]).
    pub fn host_restart(&mut self, index: usize) {
        self.host_kill(index);
        let host = self
            .start_host(index)
            .unwrap_or_else(|log| panic!("host {index} did not restart:\n{log}"));
        self.hosts[index] = Some(host);
    }

    fn start_host(&self, index: usize) -> Result<App, String> {
        let mut builder = App::builder()
            .state_dir(&self.state.join("app"))
            .listen(&self.host_addresses[index])
            .runtime_config(&self.runtime_config)
            .secrets(self.secrets.clone())
            .variable("runner_url", &self.runners_url)
            // Clients reach the hosts through the balancer on loopback.
            .variable("trusted_proxies", "127.0.0.1/32");
        for (name, value) in &self.variables {
            builder = builder.variable(name, value);
        }
        builder.try_start()
    }

    /// The first part found no longer running (`host 1`, `runner 0`, `the balancer`).
    pub fn exited_part(&mut self) -> Option<String> {
        for (index, host) in self.hosts.iter_mut().enumerate() {
            if host.as_mut().is_some_and(|host| !host.host_is_running()) {
                return Some(format!("host {index}"));
            }
        }
        for (index, runner) in self.runners.iter_mut().enumerate() {
            if !runner.is_running() {
                return Some(format!("runner {index}"));
            }
        }
        self.balancer
            .as_mut()
            .is_some_and(|balancer| !balancer.is_running())
            .then(|| "the balancer".to_string())
    }

    /// What the balancer printed (its errors and warnings).
    pub fn balancer_log(&mut self) -> String {
        self.balancer
            .as_mut()
            .map(Balancer::log)
            .unwrap_or_default()
    }

    /// Where the cluster keeps its state.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (index, runner) in self.runners.iter_mut().enumerate() {
                eprintln!("--- runner {index} log ---\n{}", runner.log());
            }
            eprintln!("--- balancer log ---\n{}", self.balancer_log());
        }
        // The balancer first, then the hosts, then the runners: nothing is sent to a
        // part that is already gone. The database server stops last (its own drop).
        self.balancer = None;
        self.hosts.clear();
        self.runners.clear();
    }
}
