//! Conversion jobs: what clients are shown of the runner's jobs, and who may see them.
//! The runner's JSON itself is `spinmesh_jobs`, shared with the runner.

use serde::Serialize;
pub use spinmesh_jobs::{Job as RunnerJob, is_job_id};

/// A job as its owner sees it: `GET /api/jobs/:id` and the items of `GET /api/jobs`.
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

/// The `202` answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub message: &'static str,
    pub job_id: String,
    pub filename: String,
    pub status: &'static str,
}

/// Only the owner and administrators may see a job; to anyone else it does not exist.
pub fn visible_to(job: &RunnerJob, user_id: &str, is_admin: bool) -> bool {
    is_admin || job.owner == user_id
}

impl From<RunnerJob> for JobView {
    fn from(job: RunnerJob) -> Self {
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

impl From<RunnerJob> for Accepted {
    fn from(job: RunnerJob) -> Self {
        Self {
            message: "File uploaded successfully",
            job_id: job.id,
            filename: job.source_filename,
            // Seed 001's contract: an accepted upload is `queued`, even when the runner
            // has already started converting it while it arrived.
            status: "queued",
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

    fn job() -> RunnerJob {
        serde_json::from_value(runner_json()).unwrap()
    }

    #[test]
    fn view_has_the_seed_status_shape() {
        let view = serde_json::to_value(JobView::from(job())).unwrap();
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
        let view = serde_json::to_value(JobView::from(
            serde_json::from_value::<RunnerJob>(raw).unwrap(),
        ))
        .unwrap();
        assert_eq!(view["completed_at"], json!(null));
        assert!(view.get("error").is_none());
    }

    #[test]
    fn accepted_has_the_seed_upload_shape() {
        let mut job = job();
        job.status = "running".into();
        assert_eq!(
            serde_json::to_value(Accepted::from(job)).unwrap(),
            json!({
                "message": "File uploaded successfully", "job_id": "job_3f2c0000000000000000000000000001",
                "filename": "clip.mp4", "status": "queued"
            })
        );
    }

    #[test]
    fn visibility() {
        let job = job();
        assert!(visible_to(&job, "42", false));
        assert!(!visible_to(&job, "43", false));
        assert!(!visible_to(&job, "4", false));
        assert!(visible_to(&job, "43", true));
    }
}
