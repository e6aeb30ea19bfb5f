//! The spool directory: where uploads, inputs, outputs and the job database live.
//!
//! ```text
//! <spool>/runner.lock          exclusive lock: one runner per spool
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

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

pub struct Spool {
    root: PathBuf,
    _lock: Flock<File>,
}

impl Spool {
    /// Creates the directory layout under `dir`, makes the path absolute and takes the
    /// spool lock so two runners never share (and "recover") each other's jobs.
    pub fn open(dir: &Path) -> anyhow::Result<Spool> {
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
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "spool directory {} is in use by another spinmesh-runner; stop it or pass a different --spool-dir",
                root.display()
            ),
            Err((_, errno)) => bail!("cannot lock {}: {errno}", lock_path.display()),
        };
        Ok(Spool { root, _lock: lock })
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

    /// At start-up (with the lock held, so nobody is writing): drops half-received
    /// uploads and partial ffmpeg outputs a previous process left behind.
    pub fn remove_leftovers(&self) -> io::Result<usize> {
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
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        assert!(spool.root().is_absolute());
        let err = Spool::open(&dir.path().join("spool")).err().unwrap();
        assert!(err.to_string().contains("in use by another"), "{err}");

        let id = crate::names::new_job_id();
        fs::write(spool.incoming(&id), b"x").unwrap();
        fs::write(spool.partial_output(&id, 1), b"x").unwrap();
        fs::write(spool.output(&id), b"x").unwrap();
        fs::write(spool.input(&id), b"x").unwrap();
        assert_eq!(spool.remove_leftovers().unwrap(), 2);
        assert!(spool.output(&id).exists());
        spool.remove_job_files(&id).unwrap();
        spool.remove_job_files(&id).unwrap();
        assert!(!spool.output(&id).exists() && !spool.input(&id).exists());
        assert!(spool.free_space().unwrap() > 0);
    }
}
