//! The spool directory: where uploads, inputs, outputs and the job database live.
//!
//! ```text
//! <spool>/runner.lock          lock: one runner per spool with SQLite (exclusive), any
//!                              number sharing a PostgreSQL job store (shared)
//! <spool>/jobs.db              job store (SQLite, WAL)
//! <spool>/incoming/<id>.part   uploads still being received
//! <spool>/partial/<upload id>  resumable uploads, kept across restarts until complete
//! <spool>/inputs/<id>          complete uploads waiting for / under conversion
//! <spool>/outputs/<id>.<n>.part  ffmpeg's output for attempt n, renamed when done
//! <spool>/outputs/<id>.mp3     finished outputs
//! <spool>/scratch/<id>.input   inputs fetched from object storage for a conversion
//! ```
//!
//! With object storage (see `media`) only `incoming/`, `scratch/` and the `.part`
//! outputs are used, as scratch.
//!
//! Every name is derived from the runner-generated job id, never from client input.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

fn in_use(root: &Path, sharing: Sharing) -> anyhow::Error {
    anyhow::anyhow!(
        "spool directory {} is in use by another spinmesh-runner{}; stop it or pass a different --spool-dir",
        root.display(),
        match sharing {
            Sharing::Exclusive => "",
            Sharing::Shared => " that keeps its jobs in SQLite",
        }
    )
}

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
const SHARED_LOCK_PATIENCE: Duration = Duration::from_secs(10);

pub struct Spool {
    root: PathBuf,
    _lock: Flock<File>,
    /// How many leftover files opening removed; `None` if other runners were on the
    /// spool, so nothing was touched.
    leftovers_removed: Option<usize>,
}

impl Spool {
    /// Creates the directory layout under `dir`, makes the path absolute and takes the
    /// spool lock, exclusive or shared, so a SQLite runner never shares its spool (and
    /// the jobs in it) with another runner.
    ///
    /// A runner that finds itself alone on the spool then drops the half-received
    /// uploads and partial ffmpeg outputs a previous process left behind; with other
    /// runners present those files may be their work in progress and stay. A shared
    /// holder checks this by taking the lock exclusively first and only then shared
    /// (never the other way round: a failed shared-to-exclusive conversion drops the
    /// lock held).
    pub fn open(dir: &Path, sharing: Sharing) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let root = fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve spool directory {}", dir.display()))?;
        for sub in ["incoming", "partial", "inputs", "outputs", "scratch"] {
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
        let alone = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                bail!("cannot lock {}: {errno}", lock_path.display())
            }
            Err((file, _)) => Err(file),
        };
        let (lock, alone) = match (alone, sharing) {
            (Ok(lock), _) => (lock, true),
            (Err(_), Sharing::Exclusive) => return Err(in_use(&root, sharing)),
            (Err(file), Sharing::Shared) => {
                let deadline = Instant::now() + SHARED_LOCK_PATIENCE;
                let mut file = file;
                let lock = loop {
                    match Flock::lock(file, FlockArg::LockSharedNonblock) {
                        Ok(lock) => break lock,
                        Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                            bail!("cannot lock {}: {errno}", lock_path.display())
                        }
                        Err(_) if Instant::now() > deadline => return Err(in_use(&root, sharing)),
                        Err((back, _)) => {
                            file = back;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                };
                (lock, false)
            }
        };
        let mut spool = Spool {
            root,
            _lock: lock,
            leftovers_removed: None,
        };
        if alone {
            let removed = spool
                .remove_leftovers()
                .with_context(|| format!("cannot clean {}", spool.root.display()))?;
            spool.leftovers_removed = Some(removed);
            if sharing == Sharing::Shared {
                // Fails only if a SQLite runner took the lock in the instant between.
                spool
                    ._lock
                    .relock(FlockArg::LockSharedNonblock)
                    .map_err(|_| in_use(&spool.root, sharing))?;
            }
        }
        Ok(spool)
    }

    pub fn leftovers_removed(&self) -> Option<usize> {
        self.leftovers_removed
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

    /// The bytes of resumable upload `id` received so far (spool media only).
    pub fn partial(&self, id: &str) -> PathBuf {
        self.root.join("partial").join(id)
    }

    pub fn input(&self, id: &str) -> PathBuf {
        self.root.join("inputs").join(id)
    }

    pub fn scratch_input(&self, id: &str) -> PathBuf {
        self.root.join("scratch").join(format!("{id}.input"))
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
        #[allow(
            clippy::unnecessary_cast,
            reason = "the field types differ between platforms"
        )]
        let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        Ok(free)
    }

    /// Removes a job's input and output (and a scratch copy of its input). Missing
    /// files are fine.
    pub fn remove_job_files(&self, id: &str) -> io::Result<()> {
        remove_if_exists(&self.input(id))?;
        remove_if_exists(&self.output(id))?;
        remove_if_exists(&self.scratch_input(id))?;
        Ok(())
    }

    /// Removes files in `incoming/` and `scratch/`, and `*.part` files in `outputs/`.
    fn remove_leftovers(&self) -> io::Result<usize> {
        let mut removed = 0;
        for sub in ["incoming", "scratch"] {
            for entry in fs::read_dir(self.root.join(sub))? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    remove_if_exists(&entry.path())?;
                    removed += 1;
                }
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
            let err = Spool::open(&dir.path().join("spool"), sharing)
                .err()
                .unwrap();
            assert!(err.to_string().contains("in use by another"), "{err}");
        }

        let id = crate::names::new_job_id();
        fs::write(spool.incoming(&id), b"x").unwrap();
        fs::write(spool.partial_output(&id, 1), b"x").unwrap();
        fs::write(spool.scratch_input(&id), b"x").unwrap();
        fs::write(spool.output(&id), b"x").unwrap();
        fs::write(spool.input(&id), b"x").unwrap();
        assert_eq!(spool.leftovers_removed(), Some(0));
        drop(spool);
        let spool = Spool::open(&dir.path().join("spool"), Sharing::Exclusive).unwrap();
        assert_eq!(spool.leftovers_removed(), Some(3));
        assert!(spool.output(&id).exists() && spool.input(&id).exists());
        spool.remove_job_files(&id).unwrap();
        spool.remove_job_files(&id).unwrap();
        assert!(!spool.output(&id).exists() && !spool.input(&id).exists());
        assert!(spool.free_space().unwrap() > 0);
    }

    #[test]
    fn shared_runners_clean_up_only_when_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let first = Spool::open(&path, Sharing::Shared).unwrap();
        assert_eq!(first.leftovers_removed(), Some(0));
        let id = crate::names::new_job_id();
        fs::write(first.incoming(&id), b"x").unwrap();

        let second = Spool::open(&path, Sharing::Shared).unwrap();
        assert_eq!(second.leftovers_removed(), None);
        assert!(
            first.incoming(&id).exists(),
            "the first runner may be receiving it"
        );
        let err = Spool::open(&path, Sharing::Exclusive).err().unwrap();
        assert!(err.to_string().contains("in use by another"), "{err}");
        drop(second);
        // Still shared after the failed exclusive attempt.
        let err = Spool::open(&path, Sharing::Exclusive).err().unwrap();
        assert!(err.to_string().contains("in use by another"), "{err}");

        drop(first);
        let alone = Spool::open(&path, Sharing::Shared).unwrap();
        assert_eq!(alone.leftovers_removed(), Some(1));
    }
}
