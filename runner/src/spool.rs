//! The spool directory: where uploads, inputs, outputs and the job database live.
//!
//! ```text
//! <spool>/runner.lock          lock: one runner per spool with SQLite (exclusive), any
//!                              number sharing a PostgreSQL job store (shared)
//! <spool>/jobs.db              job store (SQLite, WAL)
//! <spool>/incoming/<id>.part   uploads still being received
//! <spool>/inputs/<id>          complete uploads waiting for / under conversion
//! <spool>/outputs/<id>.<n>.part  ffmpeg's output for attempt n, renamed when done
//! <spool>/outputs/<id>.mp3     finished outputs
//! ```
//!
//! Every name is derived from the runner-generated job id, never from client input.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How a runner holds the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// The only runner on it (its SQLite job store lives inside).
    Exclusive,
    /// One of several runners whose job store is elsewhere (PostgreSQL).
    Shared,
}

/// A shared lock waits this long for a runner that is briefly alone on the spool
/// (cleaning up at start) before giving up.
const SHARED_LOCK_PATIENCE: Duration = Duration::from_secs(30);

pub struct Spool {
    root: PathBuf,
    sharing: Sharing,
    lock: Flock<File>,
}

impl Spool {
    /// Creates the directory layout under `dir`, makes the path absolute and takes the
    /// spool lock, exclusive or shared, so a SQLite runner never shares its spool (and
    /// the jobs in it) with another runner.
    pub fn open(dir: &Path, sharing: Sharing) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let root = fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve spool directory {}", dir.display()))?;
        for sub in ["incoming", "inputs", "outputs"] {
            fs::create_dir_all(root.join(sub))
                .with_context(|| format!("cannot create {}", root.join(sub).display()))?;
        }
        let lock_path = root.join("runner.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let in_use = || {
            anyhow::anyhow!(
                "spool directory {} is in use by another spinmesh-runner{}; stop it or pass a different --spool-dir",
                root.display(),
                match sharing {
                    Sharing::Exclusive => "",
                    Sharing::Shared => " that keeps its jobs in SQLite",
                }
            )
        };
        let lock = match sharing {
            Sharing::Exclusive => match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => return Err(in_use()),
                Err((_, errno)) => bail!("cannot lock {}: {errno}", lock_path.display()),
            },
            Sharing::Shared => {
                let deadline = Instant::now() + SHARED_LOCK_PATIENCE;
                let mut file = file;
                loop {
                    match Flock::lock(file, FlockArg::LockSharedNonblock) {
                        Ok(lock) => break lock,
                        Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                            bail!("cannot lock {}: {errno}", lock_path.display())
                        }
                        Err(_) if Instant::now() > deadline => return Err(in_use()),
                        Err((back, _)) => {
                            file = back;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            }
        };
        Ok(Spool {
            root,
            sharing,
            lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("jobs.db")
    }

    pub fn incoming(&self, id: &str) -> PathBuf {
        self.root.join("incoming").join(format!("{id}.part"))
    }

    pub fn input(&self, id: &str) -> PathBuf {
        self.root.join("inputs").join(id)
    }

    pub fn output(&self, id: &str) -> PathBuf {
        self.root.join("outputs").join(format!("{id}.mp3"))
    }

    pub fn partial_output(&self, id: &str, attempt: u32) -> PathBuf {
        self.root
            .join("outputs")
            .join(format!("{id}.{attempt}.part"))
    }

    /// Bytes available to this (unprivileged) process on the spool's filesystem.
    pub fn free_space(&self) -> io::Result<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.root).map_err(io::Error::from)?;
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        Ok(free)
    }

    /// Removes a job's input and output. Missing files are fine.
    pub fn remove_job_files(&self, id: &str) -> io::Result<()> {
        remove_if_exists(&self.input(id))?;
        remove_if_exists(&self.output(id))?;
        Ok(())
    }

    /// At start-up, if no other runner is on the spool: drops half-received uploads and
    /// partial ffmpeg outputs a previous process left behind. A shared holder takes the
    /// lock exclusively for the clean-up, and leaves everything alone (`None`) when
    /// another runner is on the spool, as those files may be its work in progress.
    pub fn remove_leftovers(&self) -> io::Result<Option<usize>> {
        if self.sharing == Sharing::Exclusive {
            return self.remove_leftovers_alone().map(Some);
        }
        match self.lock.relock(FlockArg::LockExclusiveNonblock) {
            Ok(()) => {}
            Err(Errno::EWOULDBLOCK) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        }
        let removed = self.remove_leftovers_alone();
        // Blocks only while another runner cleans up alone, which it does briefly.
        self.lock.relock(FlockArg::LockShared)?;
        removed.map(Some)
    }

    fn remove_leftovers_alone(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("incoming"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                remove_if_exists(&entry.path())?;
                removed += 1;
            }
        }
        for entry in fs::read_dir(self.root.join("outputs"))? {
            let entry = entry?;
            let is_part = entry.path().extension().is_some_and(|ext| ext == "part");
            if is_part && entry.file_type()?.is_file() {
                remove_if_exists(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `fs::remove_file` that treats "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_lock_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool"), Sharing::Exclusive).unwrap();
        assert!(spool.root().is_absolute());
        for sharing in [Sharing::Exclusive, Sharing::Shared] {
            let err = Spool::open(&dir.path().join("spool"), sharing).err().unwrap();
            assert!(err.to_string().contains("in use by another"), "{err}");
        }

        let id = crate::names::new_job_id();
        fs::write(spool.incoming(&id), b"x").unwrap();
        fs::write(spool.partial_output(&id, 1), b"x").unwrap();
        fs::write(spool.output(&id), b"x").unwrap();
        fs::write(spool.input(&id), b"x").unwrap();
        assert_eq!(spool.remove_leftovers().unwrap(), Some(2));
        assert!(spool.output(&id).exists());
        spool.remove_job_files(&id).unwrap();
        spool.remove_job_files(&id).unwrap();
        assert!(!spool.output(&id).exists() && !spool.input(&id).exists());
        assert!(spool.free_space().unwrap() > 0);
    }

    #[test]
    fn shared_runners_clean_up_only_when_alone() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(&dir.path().join("s"), Sharing::Shared).unwrap();
        let second = Spool::open(&dir.path().join("s"), Sharing::Shared).unwrap();
        let err = Spool::open(&dir.path().join("s"), Sharing::Exclusive).err().unwrap();
        assert!(err.to_string().contains("in use by another"), "{err}");

        let id = crate::names::new_job_id();
        fs::write(first.incoming(&id), b"x").unwrap();
        assert_eq!(first.remove_leftovers().unwrap(), None);
        assert!(first.incoming(&id).exists(), "another runner may be receiving it");
        drop(second);
        assert_eq!(first.remove_leftovers().unwrap(), Some(1));
        // Back to shared: another runner can still join.
        Spool::open(&dir.path().join("s"), Sharing::Shared).unwrap();
    }
}
