//! A Redis server of its own: Debian's `redis-server` on a free loopback port, in the
//! foreground as a child process, without persistence (what it holds here is
//! rebuildable: counters, caches, the denylist of a test), stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A throwaway `redis-server` on a free loopback port, with no persistence.
pub struct Redis {
    child: Child,
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(None)
    }

    pub fn start_with(password: Option<&str>) -> Redis {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut redis = Redis {
                child: Self::spawn(dir.path(), port, password),
                port,
                password: password.map(str::to_string),
                dir,
            };
            // If not, someone took the port in between: try another.
            if redis.wait_until_ready() {
                return redis;
            }
        }
        panic!("redis-server did not start (is Debian's redis-server installed?)")
    }

    fn spawn(dir: &Path, port: u16, password: Option<&str>) -> Child {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        command
            .spawn()
            .expect("redis-server (cargo xtask test installs it)")
    }

    /// Whether it answers PING within a generous bound (false if it exited).
    fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let auth = match &self.password {
            Some(password) => format!("AUTH {password}\r\n"),
            None => String::new(),
        };
        if stream
            .write_all(format!("{auth}PING\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if auth.is_empty() {
            return reader.read_line(&mut line).is_ok() && line.starts_with("+PONG");
        }
        reader.read_line(&mut line).is_ok() && line.starts_with("+OK") && {
            line.clear();
            reader.read_line(&mut line).is_ok() && line.starts_with("+PONG")
        }
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port (after `stop`).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port, self.password.as_deref());
        assert!(self.wait_until_ready(), "redis-server did not restart");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
