//! Which jobs are being converted right now, so a client's cancel can reach the worker
//! that runs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Entry {
    /// Fired to ask the worker to kill ffmpeg.
    cancel: CancellationToken,
    /// Fired by the worker once it has stopped and cleaned up.
    done: CancellationToken,
}

/// Running jobs by id. The mutex is only held for map operations, never across awaits.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// Held by the worker while it runs a job; unregisters (and signals "done") on drop.
pub struct Running {
    registry: Registry,
    id: String,
    entry: Entry,
}

impl Running {
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.entry.cancel
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.entry.done.cancel();
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, id: &str) -> Running {
        let entry = Entry {
            cancel: CancellationToken::new(),
            done: CancellationToken::new(),
        };
        self.lock().insert(id.to_string(), entry.clone());
        Running {
            registry: self.clone(),
            id: id.to_string(),
            entry,
        }
    }

    /// Asks the worker running `id` (if any) to stop, and waits up to `wait` for it to
    /// finish cleaning up. Returns whether a worker was running the job.
    pub async fn cancel(&self, id: &str, wait: Duration) -> bool {
        let entry = self.lock().get(id).cloned();
        match entry {
            Some(entry) => {
                entry.cancel.cancel();
                let _ = tokio::time::timeout(wait, entry.done.cancelled()).await;
                true
            }
            None => false,
        }
    }

    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_reaches_the_worker_and_waits_for_it() {
        let registry = Registry::default();
        let running = registry.register("job_a");
        assert_eq!(registry.running(), 1);
        let token = running.cancel_token().clone();
        let worker = tokio::spawn(async move {
            token.cancelled().await;
            drop(running);
        });
        assert!(registry.cancel("job_a", Duration::from_secs(30)).await);
        worker.await.unwrap();
        assert_eq!(registry.running(), 0);
        assert!(!registry.cancel("job_a", Duration::from_secs(1)).await);
    }
}
