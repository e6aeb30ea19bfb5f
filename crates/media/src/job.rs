//! Conversion jobs: the runner's JSON (runner/README.md) and what clients are shown.

use serde::{Deserialize, Serialize};

const JOB_PREFIX: &str = "job_";

/// Whether `id` has the shape of a runner job id (`job_` + 32 lower-case hex digits), so
/// it can go into a runner URL as it is.
pub fn is_job_id(id: &str) -> bool {
    id.strip_prefix(JOB_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A job as the runner reports it (fields the upload component does not use are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunnerJob {
    pub id: String,
    pub owner: String,
    pub status: String,
    pub progress: u8,
    /// The MP3's name.
    pub filename: String,
    /// The uploaded file's (sanitised) name.
    pub source_filename: String,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub error: Option<String>,
}

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

impl RunnerJob {
    /// Only the owner and administrators may see a job; to anyone else it does not exist.
    pub fn visible_to(&self, user_id: &str, is_admin: bool) -> bool {
        is_admin || self.owner == user_id
    }

    pub fn view(self) -> JobView {
        JobView {
            job_id: self.id,
            status: self.status,
            progress: self.progress,
            filename: self.filename,
            created_at: self.created_at,
            completed_at: self.completed_at,
            error: self.error,
        }
    }

    pub fn accepted(self) -> Accepted {
        Accepted {
            message: "File uploaded successfully",
            job_id: self.id,
            filename: self.source_filename,
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
    fn job_ids() {
        assert!(is_job_id("job_0123456789abcdef0123456789abcdef"));
        for id in [
            "job_0123456789ABCDEF0123456789abcdef",
            "job_0123456789abcdef0123456789abcde",
            "job_0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdef",
            "job_../../0123456789abcdef01234567",
            "",
        ] {
            assert!(!is_job_id(id), "{id}");
        }
    }

    #[test]
    fn view_has_the_seed_status_shape() {
        let view = serde_json::to_value(job().view()).unwrap();
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
        let view =
            serde_json::to_value(serde_json::from_value::<RunnerJob>(raw).unwrap().view()).unwrap();
        assert_eq!(view["completed_at"], json!(null));
        assert!(view.get("error").is_none());
    }

    #[test]
    fn accepted_has_the_seed_upload_shape() {
        let mut job = job();
        job.status = "running".into();
        assert_eq!(
            serde_json::to_value(job.accepted()).unwrap(),
            json!({
                "message": "File uploaded successfully", "job_id": "job_3f2c0000000000000000000000000001",
                "filename": "clip.mp4", "status": "queued"
            })
        );
    }

    #[test]
    fn visibility() {
        let job = job();
        assert!(job.visible_to("42", false));
        assert!(!job.visible_to("43", false));
        assert!(!job.visible_to("4", false));
        assert!(job.visible_to("43", true));
    }
}
