//! A job's changes as W3C server-sent events (`GET /jobs/{id}/events`).
//!
//! Each change is one event: `progress` while the job is queued or running, then
//! `completed`, `failed` or `cancelled`, after which the stream ends. An event's id is
//! the job's revision, which only ever grows, so a client resuming with `Last-Event-ID`
//! is sent only what it has not seen. A comment line every [`HEARTBEAT`] keeps
//! intermediaries from closing a quiet stream, and a stream ends after
//! [`STREAM_LIFETIME`] even if the job has not finished (clients reconnect and resume),
//! so no stream holds its place, or a host's request, for long.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tracing::warn;

use crate::changes::Waiter;
use crate::error::{Error, Result};
use crate::job::{Job, JobStatus};
use crate::store::Store;

pub const CONTENT_TYPE: &str = "text/event-stream";
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Under the 60 s a Spin host gives a component by default, so the stream through the
/// `upload` component ends here rather than being cut off there.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(45);
/// Sent first: how long a client waits before reconnecting.
const RECONNECT: &str = "retry: 1000\n\n";
const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The event's name for a job in `status`.
pub fn event_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued | JobStatus::Running => "progress",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

/// One event: the job's revision as id, its state as name, its JSON (one line) as data.
pub fn frame(job: &Job) -> String {
    let data = serde_json::to_string(job).expect("a job always serialises");
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        job.revision,
        event_name(job.status)
    )
}

/// The `Last-Event-ID` a reconnecting client sends: one of our ids, a revision (the
/// rule is `spinmesh_jobs`, shared with the upload side). Empty means none.
pub fn parse_last_event_id(value: Option<&str>) -> Result<Option<u64>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => spinmesh_jobs::parse_event_id(id).map(Some).ok_or_else(|| {
            Error::bad_request(
                "invalid_header",
                "Last-Event-ID must be an event id sent before",
            )
        }),
    }
}

struct State {
    store: Store,
    waiter: Waiter,
    id: String,
    /// The job as last read, not yet considered for an event.
    unsent: Option<Job>,
    /// The id of the last event the client has.
    seen: Option<u64>,
    heartbeat: tokio::time::Interval,
    ends: tokio::time::Instant,
    opened: bool,
    over: bool,
}

/// The event stream of `job` (as just read), for a client that has seen the events up
/// to `seen`. `waiter` holds the stream's place in the runner's limits while it lasts.
pub fn stream(
    store: Store,
    waiter: Waiter,
    job: Job,
    seen: Option<u64>,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> {
    let now = tokio::time::Instant::now();
    let state = State {
        store,
        waiter,
        id: job.id.clone(),
        unsent: Some(job),
        seen,
        heartbeat: tokio::time::interval_at(now + HEARTBEAT, HEARTBEAT),
        ends: now + STREAM_LIFETIME,
        opened: false,
        over: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok(Bytes::from(chunk)), state))
    })
}

impl State {
    /// The next text to send, or `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<String> {
        if self.over {
            return None;
        }
        if !self.opened {
            self.opened = true;
            return Some(RECONNECT.into());
        }
        loop {
            if let Some(job) = self.unsent.take() {
                let finished = job.status.is_finished();
                self.over = finished;
                if self.seen.is_none_or(|seen| job.revision > seen) {
                    self.seen = Some(job.revision);
                    return Some(frame(&job));
                }
                if finished {
                    return None;
                }
            }
            tokio::select! {
                waiting = self.waiter.next_change() => if !waiting {
                    return None;
                },
                _ = self.heartbeat.tick() => return Some(KEEP_ALIVE.into()),
                _ = tokio::time::sleep_until(self.ends) => return None,
            }
            let id = self.id.clone();
            match self.store.run(move |s| s.get(&id)).await {
                Ok(Some(job)) => self.unsent = Some(job),
                Ok(None) => return None,
                // Looked at again at the next change or poll.
                Err(err) => {
                    warn!(job_id = %self.id, error = %err, "event stream cannot read the job")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_event_with_the_revision_as_id() {
        let text = frame(&Job::sample(JobStatus::Running, 40, 7));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: progress");
        let data: serde_json::Value =
            serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["progress"], 40);
        assert!(text.ends_with("\n\n") && text.matches('\n').count() == 4);
        assert!(frame(&Job::sample(JobStatus::Completed, 100, 9)).contains("event: completed\n"));
        assert!(frame(&Job::sample(JobStatus::Failed, 3, 9)).contains("event: failed\n"));
        assert!(frame(&Job::sample(JobStatus::Cancelled, 3, 9)).contains("event: cancelled\n"));
        assert!(frame(&Job::sample(JobStatus::Queued, 0, 0)).contains("event: progress\n"));
    }

    #[test]
    fn last_event_id_is_a_revision() {
        assert_eq!(parse_last_event_id(None).unwrap(), None);
        assert_eq!(parse_last_event_id(Some("")).unwrap(), None);
        assert_eq!(parse_last_event_id(Some(" 12 ")).unwrap(), Some(12));
        assert!(parse_last_event_id(Some("x")).is_err());
    }
}
