//! Requests that wait for a job to change (long polls, event streams) and how they hear
//! of it.
//!
//! A change this runner makes is announced in process at once ([`JobChanges`]); one
//! made by another runner sharing the job store is found by re-reading the job every
//! [`STORE_POLL`]. Waiting is bounded ([`Waiting`]): at most so many requests wait on
//! one runner, an owner has at most so many event streams open, and every wait ends
//! when the runner shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How often a waiter re-reads its job when nothing was announced: changes another
/// runner made are seen within this.
pub const STORE_POLL: Duration = Duration::from_millis(400);

/// In-process announcements of job changes, by job id. Only jobs somebody waits on have
/// an entry, so announcing a change nobody waits for costs one map lookup.
#[derive(Clone, Default)]
pub struct JobChanges {
    watched: Arc<Mutex<HashMap<String, watch::Sender<()>>>>,
}

impl JobChanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits on job `id`.
    pub fn announce(&self, id: &str) {
        if let Some(sender) = self.lock().get(id) {
            sender.send_replace(());
        }
    }

    fn subscribe(&self, id: &str) -> watch::Receiver<()> {
        self.lock()
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Forgets job `id` once its last waiter (the caller, about to drop its receiver)
    /// is gone.
    fn unsubscribe(&self, id: &str) {
        let mut watched = self.lock();
        if watched
            .get(id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            watched.remove(id);
        }
    }
}

/// The bounds on waiting, shared by the runner's handlers.
pub struct Waiting {
    changes: JobChanges,
    /// One permit per request waiting on this runner.
    waiters: Arc<Semaphore>,
    max_streams_per_owner: usize,
    streams: Arc<Mutex<HashMap<String, usize>>>,
    /// Fired at shutdown: every wait ends so connections can close.
    stop: CancellationToken,
}

impl Waiting {
    pub fn new(
        changes: JobChanges,
        max_waiters: usize,
        max_streams_per_owner: usize,
        stop: CancellationToken,
    ) -> Self {
        Waiting {
            changes,
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_streams_per_owner,
            streams: Arc::default(),
            stop,
        }
    }

    /// Starts waiting on job `id` (a long poll), if the runner has room for one more.
    pub fn wait_on(&self, id: &str) -> Result<Waiter> {
        let permit = self
            .waiters
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyWaiters)?;
        Ok(Waiter {
            changes: self.changes.clone(),
            id: id.to_string(),
            receiver: self.changes.subscribe(id),
            stop: self.stop.clone(),
            _permit: permit,
            _stream: None,
        })
    }

    /// Starts an event stream of job `id` for `owner`, within the owner's limit and the
    /// runner's.
    pub fn stream_on(&self, id: &str, owner: &str) -> Result<Waiter> {
        let slot = StreamSlot::take(&self.streams, owner, self.max_streams_per_owner)?;
        let mut waiter = self.wait_on(id)?;
        waiter._stream = Some(slot);
        Ok(waiter)
    }
}

/// One owner's open event stream, counted until dropped.
struct StreamSlot {
    streams: Arc<Mutex<HashMap<String, usize>>>,
    owner: String,
}

impl StreamSlot {
    fn take(
        streams: &Arc<Mutex<HashMap<String, usize>>>,
        owner: &str,
        limit: usize,
    ) -> Result<Self> {
        let mut open = streams.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(owner.to_string()).or_default();
        if *count >= limit {
            if *count == 0 {
                open.remove(owner);
            }
            return Err(Error::TooManyEventStreams { limit });
        }
        *count += 1;
        Ok(StreamSlot {
            streams: streams.clone(),
            owner: owner.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.owner);
            }
        }
    }
}

/// A request waiting on one job; holds its place in the limits until dropped.
pub struct Waiter {
    changes: JobChanges,
    id: String,
    receiver: watch::Receiver<()>,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
    _stream: Option<StreamSlot>,
}

impl Waiter {
    /// Returns when the job may have changed: this runner announced a change, or
    /// [`STORE_POLL`] passed (another runner may have changed it); the caller re-reads
    /// the job either way. `false` once the runner is shutting down: stop waiting.
    pub async fn next_change(&mut self) -> bool {
        tokio::select! {
            _ = tokio::time::timeout(STORE_POLL, self.receiver.changed()) => true,
            _ = self.stop.cancelled() => false,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.changes.unsubscribe(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_announcement_wakes_the_waiter_before_the_poll() {
        let changes = JobChanges::default();
        let waiting = Waiting::new(changes.clone(), 4, 1, CancellationToken::new());
        let mut waiter = waiting.wait_on("job_a").unwrap();
        changes.announce("job_b");
        changes.announce("job_a");
        let started = std::time::Instant::now();
        assert!(waiter.next_change().await);
        assert!(started.elapsed() < STORE_POLL / 2);
        // Nothing announced since: the poll interval bounds the wait.
        let started = std::time::Instant::now();
        assert!(waiter.next_change().await);
        assert!(started.elapsed() >= STORE_POLL / 2);
    }

    #[tokio::test]
    async fn shutdown_ends_every_wait() {
        let stop = CancellationToken::new();
        let waiting = Waiting::new(JobChanges::default(), 4, 1, stop.clone());
        let mut waiter = waiting.wait_on("job_a").unwrap();
        stop.cancel();
        assert!(!waiter.next_change().await);
    }

    #[test]
    fn limits_hold_and_are_given_back() {
        let changes = JobChanges::default();
        let waiting = Waiting::new(changes.clone(), 2, 1, CancellationToken::new());
        let first = waiting.stream_on("job_a", "alice").unwrap();
        assert!(matches!(
            waiting.stream_on("job_b", "alice"),
            Err(Error::TooManyEventStreams { limit: 1 })
        ));
        let second = waiting.wait_on("job_a").unwrap();
        assert!(matches!(
            waiting.wait_on("job_c"),
            Err(Error::TooManyWaiters)
        ));
        drop(first);
        assert_eq!(changes.lock().len(), 1, "job_a still has a waiter");
        drop(second);
        assert!(changes.lock().is_empty());
        assert!(waiting.streams.lock().unwrap().is_empty());
        let _again = waiting.stream_on("job_b", "alice").unwrap();
    }
}
