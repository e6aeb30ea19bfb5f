//! A PostgreSQL cluster of its own: `initdb` into a directory (a temporary one for a
//! test, `.spin/cluster/postgres` for `cargo xtask up --cluster`), the server on a free
//! loopback port, stopped on drop.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster's files belong to
//! the `postgres` account (Debian's package creates it) and the server runs as that user
//! through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, running_as_root};

/// Where Debian's `postgresql` package puts the server programs; `PG_BIN_DIR` overrides.
const DEBIAN_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Unprivileged account the server runs as when we are root.
const SERVER_USER: &str = "postgres";
pub const DB_USER: &str = "spinmesh";

enum Home {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

pub struct PgCluster {
    home: Home,
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

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|err| format!("cannot run {what} (is PostgreSQL installed?): {err}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Gives `dir` to the server's account when we are root.
fn hand_over(dir: &Path) -> Result<(), String> {
    if !running_as_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .arg(format!("{SERVER_USER}:{SERVER_USER}"))
        .arg(dir)
        .status()
        .map_err(|err| err.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot give {} to {SERVER_USER} (does the account exist?)",
            dir.display()
        ))
    }
}

/// As root the server runs as its own account, which must pass through every directory
/// above its files: a private directory (0700) becomes 0711 for that — entered, never
/// listed; the files in it keep their own modes. Nothing to do for anyone else.
pub fn let_server_through(dir: &Path) -> Result<(), String> {
    if !running_as_root() {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|err| format!("{}: {err}", dir.display()))
}

impl PgCluster {
    /// A new cluster in a temporary directory, started; panics when it cannot be.
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        Self::start_at(Home::Temporary(dir)).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The cluster kept in `dir` (created on first use), started.
    pub fn start_in(dir: &Path) -> Result<PgCluster, String> {
        std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
        Self::start_at(Home::Kept(dir.to_path_buf()))
    }

    fn start_at(home: Home) -> Result<PgCluster, String> {
        let cluster = PgCluster {
            home,
            port: free_port(),
        };
        if !cluster.data().join("PG_VERSION").exists() {
            hand_over(cluster.dir())?;
            let mut initdb = server_command("initdb");
            initdb.arg("-D").arg(cluster.data()).args([
                "-A",
                "trust",
                "-U",
                DB_USER,
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run(initdb, "initdb")?;
        }
        cluster.try_resume()?;
        Ok(cluster)
    }

    fn dir(&self) -> &Path {
        match &self.home {
            Home::Temporary(dir) => dir.path(),
            Home::Kept(dir) => dir,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("server.log")
    }

    /// Starts the (stopped) server again on the same port.
    pub fn resume(&self) {
        self.try_resume().unwrap_or_else(|err| panic!("{err}"));
    }

    fn try_resume(&self) -> Result<(), String> {
        // Durability is traded for speed only in throwaway clusters.
        let durability = match self.home {
            Home::Temporary(_) => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            Home::Kept(_) => "",
        };
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {durability}",
            self.port,
            self.dir().display()
        );
        let mut pg_ctl = server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "120", "-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start")
    }

    /// Stops the server, closing every connection (as a restart or crash does).
    pub fn stop(&self) {
        let mut pg_ctl = server_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "120", "-m", "fast", "stop"]);
        run(pg_ctl, "pg_ctl stop").unwrap_or_else(|err| panic!("{err}"));
    }

    pub fn url(&self) -> String {
        format!("postgres://{DB_USER}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            // A kept cluster shuts down cleanly; a throwaway one is about to be deleted.
            let mode = match self.home {
                Home::Temporary(_) => "immediate",
                Home::Kept(_) => "fast",
            };
            let mut pg_ctl = server_command("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-m", mode, "stop"]);
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
