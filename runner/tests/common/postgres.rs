//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, the
//! server on a free loopback port, stopped and deleted on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests do, the cluster's files belong
//! to the `postgres` account (the Debian package creates it) and the server runs as
//! that user through `runuser`.

use std::path::PathBuf;
use std::process::Command;

use super::free_port;

/// Where Debian's `postgresql` package puts the server programs; `PG_BIN_DIR` overrides.
const DEBIAN_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Unprivileged account the server runs as when the tests run as root.
const SERVER_USER: &str = "postgres";
pub const DB_USER: &str = "spinmesh";

pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_BIN_DIR));
    let path = dir.join(name);
    if path.exists() {
        path
    } else {
        // Perhaps on PATH (another distribution).
        PathBuf::from(name)
    }
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command for a server program, run as [`SERVER_USER`] when we are root.
fn server_command(name: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SERVER_USER, "--"]).arg(bin(name));
        cmd
    } else {
        Command::new(bin(name))
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run {what} (is PostgreSQL installed?): {err}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// Creates and starts a new cluster.
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let user = nix::unistd::User::from_name(SERVER_USER)
                .unwrap()
                .unwrap_or_else(|| panic!("the {SERVER_USER} account is missing"));
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let mut initdb = server_command("initdb");
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-A",
            "trust",
            "-U",
            DB_USER,
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let cluster = PgCluster {
            dir,
            port: free_port(),
        };
        cluster.resume();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut pg_ctl = server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "120", "-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start");
    }

    /// Stops the server, closing every connection (as a restart or crash does).
    pub fn stop(&self) {
        self.stop_with("fast");
    }

    fn stop_with(&self, mode: &str) {
        let mut pg_ctl = server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "120", "-m", mode, "stop"]);
        run(pg_ctl, "pg_ctl stop");
    }

    pub fn url(&self) -> String {
        format!("postgres://{DB_USER}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let mut pg_ctl = server_command("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "immediate", "stop"]);
            let _ = pg_ctl.output();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- postgres log ----\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        }
    }
}
