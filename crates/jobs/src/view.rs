//! The job as its owner sees it, one definition for every place that shows it: the
//! upload component's `GET /api/jobs/:id` and job lists, and the runner's webhooks.

use serde::Serialize;

use crate::Job;

/// A job as its owner sees it: `GET /api/jobs/:id`, the items of `GET /api/jobs`, and
/// the job in a webhook's body. The runner's internals (owner, leases, attempts,
/// sizes) stay out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub status: String,
    pub progress: u8,
    pub filename: String,
    pub created_at: String,
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        Self {
            job_id: job.id,
            status: job.status,
            progress: job.progress,
            filename: job.filename,
            created_at: job.created_at,
            completed_at: job.completed_at,
            error: job.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn runner_json() -> serde_json::Value {
        json!({
            "id": "job_3f2c0000000000000000000000000001", "owner": "42", "status": "failed",
            "progress": 37, "filename": "clip.mp3", "source_filename": "clip.mp4",
            "size_bytes": 115446, "output_bytes": null, "created_at": "2026-05-01T12:00:00Z",
            "started_at": "2026-05-01T12:00:00Z", "completed_at": "2026-05-01T12:00:01Z",
            "error": "Input is not a valid media file", "attempts": 1, "expired": false
        })
    }

    #[test]
    fn view_has_the_seed_status_shape() {
        let job: Job = serde_json::from_value(runner_json()).unwrap();
        let view = serde_json::to_value(JobView::from(job)).unwrap();
        assert_eq!(
            view,
            json!({
                "job_id": "job_3f2c0000000000000000000000000001", "status": "failed", "progress": 37,
                "filename": "clip.mp3", "created_at": "2026-05-01T12:00:00Z",
                "completed_at": "2026-05-01T12:00:01Z", "error": "Input is not a valid media file"
            })
        );
    }

    #[test]
    fn view_omits_absent_error_and_keeps_null_completion() {
        let mut raw = runner_json();
        raw["status"] = json!("queued");
        raw["error"] = json!(null);
        raw["completed_at"] = json!(null);
        let view = serde_json::to_value(JobView::from(serde_json::from_value::<Job>(raw).unwrap()))
            .unwrap();
        assert_eq!(view["completed_at"], json!(null));
        assert!(view.get("error").is_none());
    }
}
