//! Job records and their JSON shape.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::units::rfc3339;

/// Lifecycle of a conversion job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// Whether the job will not change state any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Epoch milliseconds that serialise as an RFC 3339 UTC string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

/// A job as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    pub owner: String,
    pub status: JobStatus,
    /// 0–100.
    pub progress: u8,
    /// Name the MP3 is offered under.
    pub filename: String,
    /// The (sanitised) name the client uploaded.
    pub source_filename: String,
    pub size_bytes: u64,
    pub output_bytes: Option<u64>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub error: Option<String>,
    pub attempts: u32,
    /// The job's files were removed (retention sweep or delete); output is gone.
    pub expired: bool,
    /// Counts the changes of status or progress; only ever grows. The ids of the job's
    /// server-sent events, not part of its JSON.
    #[serde(skip)]
    pub revision: u64,
}

impl Job {
    /// Whether the job moved on since `before` was read, as a waiting client sees it:
    /// its status or progress differ.
    pub fn moved_on_from(&self, before: &Job) -> bool {
        self.status != before.status || self.progress != before.progress
    }
}

/// What the upload handler hands to the store once the body is fully on disk.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub owner: String,
    pub source_filename: String,
    pub filename: String,
    pub size_bytes: u64,
    pub created_at: i64,
    /// Set when conversion started while the upload arrived: the job is recorded as
    /// `running` (first attempt) instead of `queued`.
    pub started_at: Option<i64>,
    /// Where the job's webhook goes once it finishes, checked by
    /// [`crate::webhook::Webhooks::admit`].
    pub callback_url: Option<String>,
}

/// Aggregate numbers for `/stats`, `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub queued: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Stats {
    pub fn count(&self, status: JobStatus) -> u64 {
        match status {
            JobStatus::Queued => self.queued,
            JobStatus::Running => self.running,
            JobStatus::Completed => self.completed,
            JobStatus::Failed => self.failed,
            JobStatus::Cancelled => self.cancelled,
        }
    }

    pub fn count_mut(&mut self, status: JobStatus) -> &mut u64 {
        match status {
            JobStatus::Queued => &mut self.queued,
            JobStatus::Running => &mut self.running,
            JobStatus::Completed => &mut self.completed,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Cancelled => &mut self.cancelled,
        }
    }
}

/// A job as unit tests need one: only its state varies.
#[cfg(test)]
impl Job {
    pub(crate) fn sample(status: JobStatus, progress: u8, revision: u64) -> Job {
        Job {
            id: "job_0123456789abcdef0123456789abcdef".into(),
            owner: "u1".into(),
            status,
            progress,
            filename: "a.mp3".into(),
            source_filename: "a.mp4".into(),
            size_bytes: 10,
            output_bytes: None,
            created_at: Timestamp(0),
            started_at: None,
            completed_at: None,
            error: None,
            attempts: 0,
            expired: false,
            revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("expired"), None);
    }

    #[test]
    fn job_json_shape() {
        let job = Job::sample(JobStatus::Queued, 0, 0);
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["status"], "queued");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert!(v["output_bytes"].is_null());
        assert!(v["started_at"].is_null());
        assert_eq!(v["size_bytes"], 10);
    }
}
