//! A child process the tests own: its output is collected, its address is read
//! from what it prints at start-up, and it is stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long start-up may take: the host's first start compiles every component.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

pub struct ManagedProcess {
    child: Child,
    log: mpsc::Receiver<String>,
    collected: Vec<String>,
}

impl ManagedProcess {
    /// Spawns `command` and waits until a line of its output contains
    /// `marker` followed by a URL; returns the process and that URL, or
    /// everything it printed if it never got there.
    pub fn start(command: Command, marker: &str) -> Result<(ManagedProcess, String), String> {
        let (mut process, url_rx) = Self::spawn(command, Some(marker))?;
        match url_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => Ok((process, url)),
            Err(_) => {
                process.kill();
                Err(process.log())
            }
        }
    }

    /// Spawns `command` with its output collected; the receiver gets the URL after
    /// `marker` when a line has one.
    fn spawn(
        mut command: Command,
        marker: Option<&str>,
    ) -> Result<(ManagedProcess, mpsc::Receiver<String>), String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot spawn {command:?}: {err}"))?;
        let (url_tx, url_rx) = mpsc::channel();
        let (log_tx, log_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let (url_tx, log_tx) = (url_tx.clone(), log_tx.clone());
            let marker = marker.map(str::to_string);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(url) = marker.as_deref().and_then(|m| url_after(&line, m)) {
                        let _ = url_tx.send(url);
                    }
                    let _ = log_tx.send(line);
                }
            });
        }
        // Only the reader threads hold senders now: when the process exits
        // before printing its address, the wait in `start` ends at once.
        drop(url_tx);
        let process = ManagedProcess {
            child,
            log: log_rx,
            collected: Vec::new(),
        };
        Ok((process, url_rx))
    }

    /// Spawns `command`, a server that prints no address of its own, and waits until
    /// `address` accepts connections; on failure returns everything it printed.
    pub fn start_listening(command: Command, address: &str) -> Result<ManagedProcess, String> {
        let mut process = Self::spawn(command, None)?.0;
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        while std::time::Instant::now() < deadline && process.is_running() {
            if std::net::TcpStream::connect(address).is_ok() {
                return Ok(process);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        process.kill();
        Err(process.log())
    }

    /// Everything the process printed so far.
    pub fn log(&mut self) -> String {
        self.collected.extend(self.log.try_iter());
        self.collected.join("\n")
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, to it and every process under it, as a crash of its machine would: no
    /// chance to clean up (crash tests). `spin up` serves from a child process of its
    /// own, which would otherwise live on and keep the port.
    pub fn kill(&mut self) {
        let under = descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in under {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within five seconds.
    pub fn terminate(&mut self) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The live child processes of `parent` whose command line mentions `needle`: e.g. the
/// ffmpeg a runner started for a job (its input file is named after the job). A child
/// that has exited but is not yet reaped has an empty command line, so it is not listed.
pub fn children_mentioning(parent: u32, needle: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|&(_, of)| of == parent)
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

/// Every process under `root`: its children, theirs, and so on.
fn descendants(root: u32) -> Vec<u32> {
    let all = processes();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            all.iter()
                .filter(|&&(_, of)| of == parent)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    found.split_off(1)
}

/// Every live process as (pid, parent pid).
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect()
}

/// The parent's pid, from `/proc/<pid>/stat`: the field after the state, which follows
/// the command name in parentheses (a name that may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The URL following `marker` in a log line (ignoring colour codes).
fn url_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let start = rest.find("http://")?;
    let url: String = rest[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '\u{1b}' && *c != '"')
        .collect();
    Some(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_urls_in_plain_and_coloured_lines() {
        assert_eq!(
            super::url_after("Serving http://127.0.0.1:1", "Serving").unwrap(),
            "http://127.0.0.1:1"
        );
        let coloured =
            "\u{1b}[32mINFO\u{1b}[0m spinmesh-runner listening on http://127.0.0.1:2\u{1b}[0m x";
        assert_eq!(
            super::url_after(coloured, "listening on").unwrap(),
            "http://127.0.0.1:2"
        );
        assert_eq!(super::url_after("nothing here", "Serving"), None);
    }

    #[test]
    fn finds_a_child_by_its_command_line() {
        let mut child = std::process::Command::new("sleep")
            .arg("30.123")
            .spawn()
            .unwrap();
        let me = std::process::id();
        // `spawn` returns once the exec has begun, a moment before the kernel has put the
        // new command line in place (it reads empty until then): wait for it.
        let found = crate::wait_for(
            "the child's command line",
            std::time::Duration::from_secs(10),
            || Some(super::children_mentioning(me, "30.123")).filter(|found| !found.is_empty()),
        );
        assert_eq!(found, [child.id()]);
        assert!(super::children_mentioning(me, "no such argument").is_empty());
        assert!(super::children_mentioning(child.id(), "30.123").is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(super::children_mentioning(me, "30.123").is_empty());
    }

    #[test]
    fn a_kill_reaches_the_grandchildren() {
        let mut shell = std::process::Command::new("sh");
        shell.args(["-c", "sleep 31.456 & wait"]);
        let (mut process, _) = super::ManagedProcess::spawn(shell, None).unwrap();
        let shell_pid = process.id();
        let sleeper = crate::wait_for(
            "the shell's child",
            std::time::Duration::from_secs(10),
            || super::children_mentioning(shell_pid, "31.456").pop(),
        );
        process.kill();
        // Killed, the orphan is gone, or a zombie where nothing reaps orphans here.
        crate::wait_for(
            "the grandchild killed",
            std::time::Duration::from_secs(10),
            || {
                let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat"));
                let dead = stat.map_or(true, |stat| {
                    stat.rfind(')')
                        .is_some_and(|end| stat[end + 1..].trim_start().starts_with('Z'))
                });
                dead.then_some(())
            },
        );
    }
}
