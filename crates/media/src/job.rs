//! Conversion jobs: what clients are shown of the runner's jobs, and who may see them.
//! The runner's JSON itself and the job as its owner sees it ([`JobView`]) are
//! `spinmesh_jobs`, shared with the runner, whose webhooks show the same view.

use serde::Serialize;
pub use spinmesh_jobs::{Job as RunnerJob, JobView, is_job_id};

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
