//! The conversion runner's wire contract (runner/README.md), in one place for both ends:
//! the runner issues job ids and writes job JSON; the upload side checks an id before it
//! goes into a runner URL and reads the JSON; both show a job to its owner as
//! [`JobView`] (the upload side's API, the runner's webhooks) and check a callback URL
//! with [`webhook::check_callback_url`]. Plain Rust, native and wasm alike.

use serde::{Deserialize, Serialize};

mod view;
pub mod webhook;

pub use view::JobView;

const PREFIX: &str = "job_";
const UPLOAD_PREFIX: &str = "upl_";

/// The id of a job drawn from 128 random bits: `job_` and 32 lower-case hex digits.
pub fn job_id(random: u128) -> String {
    format!("{PREFIX}{random:032x}")
}

/// Whether `id` has exactly the shape [`job_id`] produces, so it is safe in a path or URL
/// as it is.
pub fn is_job_id(id: &str) -> bool {
    has_id_shape(id, PREFIX)
}

/// The id of a resumable upload, drawn from 128 random bits like a job's: `upl_` and 32
/// lower-case hex digits. It names the upload's URL, so guessing one is as hard as
/// guessing a job id (and the owner check applies besides).
pub fn upload_id(random: u128) -> String {
    format!("{UPLOAD_PREFIX}{random:032x}")
}

/// Whether `id` has exactly the shape [`upload_id`] produces.
pub fn is_upload_id(id: &str) -> bool {
    has_id_shape(id, UPLOAD_PREFIX)
}

fn has_id_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The `code` of an upload the runner refused because the owner has as many jobs queued
/// or running as allowed (`429`, with `Retry-After`). Like [`STORAGE_QUOTA_EXCEEDED`],
/// it concerns the end user's own use, so the upload side passes it on as it is.
pub const JOB_QUOTA_EXCEEDED: &str = "job_quota_exceeded";
/// The `code` of an upload the runner refused because the owner's files would take more
/// space than allowed (`507`).
pub const STORAGE_QUOTA_EXCEEDED: &str = "storage_quota_exceeded";

/// The `code` of a retry of a job in a state that cannot be retried (`409`): queued,
/// running or completed.
pub const JOB_NOT_RETRYABLE: &str = "job_not_retryable";
/// The `code` of a retry of a job whose uploaded file was removed (`409`): cancelled,
/// deleted or past retention.
pub const INPUT_GONE: &str = "input_gone";
/// The `code` of a long poll or event stream the runner has no room for (`503`, with
/// `Retry-After`).
pub const TOO_MANY_WAITERS: &str = "too_many_waiters";
/// The `code` of an event stream over the owner's limit of open streams (`429`, with
/// `Retry-After`).
pub const TOO_MANY_EVENT_STREAMS: &str = "too_many_event_streams";
/// The `code` of a resumable upload that does not exist for the caller (`404`): unknown,
/// another user's, terminated or expired.
pub const UPLOAD_NOT_FOUND: &str = "upload_not_found";
/// The `code` of a `PATCH` whose `Upload-Offset` is not the upload's offset (`409`).
pub const UPLOAD_OFFSET_MISMATCH: &str = "upload_offset_mismatch";
/// The `code` of a `PATCH` to an upload another `PATCH` is still writing (`423`): the
/// client retries after a `HEAD`.
pub const UPLOAD_LOCKED: &str = "upload_locked";
/// The `code` of a `PATCH` carrying bytes beyond the upload's `Upload-Length` (`413`).
pub const UPLOAD_LENGTH_EXCEEDED: &str = "upload_length_exceeded";
/// The refusals that concern the end user's own use, jobs or uploads, worded for them:
/// the upload side passes these on as they are.
pub const PASSED_ON: [&str; 13] = [
    JOB_QUOTA_EXCEEDED,
    STORAGE_QUOTA_EXCEEDED,
    JOB_NOT_RETRYABLE,
    INPUT_GONE,
    TOO_MANY_WAITERS,
    TOO_MANY_EVENT_STREAMS,
    UPLOAD_NOT_FOUND,
    UPLOAD_OFFSET_MISMATCH,
    UPLOAD_LOCKED,
    UPLOAD_LENGTH_EXCEEDED,
    webhook::INVALID_CALLBACK_URL,
    webhook::CALLBACK_NOT_ALLOWED,
    webhook::WEBHOOKS_DISABLED,
];

/// The longest `?wait=` of a long poll (`GET /jobs/{id}?wait=N`), in seconds: short
/// enough for the proxies and outbound timeouts in between.
pub const MAX_WAIT_SECS: u64 = 30;

/// A long poll's `?wait=`: whole seconds, 1 to [`MAX_WAIT_SECS`].
pub fn parse_wait(value: &str) -> Option<u64> {
    value
        .parse()
        .ok()
        .filter(|secs| (1..=MAX_WAIT_SECS).contains(secs))
}

/// The id of one of a job's server-sent events (the job's revision), as a client's
/// `Last-Event-ID` repeats it.
pub fn parse_event_id(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

/// A job as the runner's API sends it. Times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub owner: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// 0–100.
    pub progress: u8,
    /// The name the MP3 is offered under.
    pub filename: String,
    /// The (sanitised) name the client uploaded.
    pub source_filename: String,
    pub size_bytes: u64,
    pub output_bytes: Option<u64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    /// The job's files were removed (retention or delete): its output is gone.
    pub expired: bool,
}

/// A resumable upload as the runner's API sends it (`/uploads/{id}`): what a tus `HEAD`
/// or `PATCH` answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub owner: String,
    /// The (sanitised) name the client gave at creation.
    pub source_filename: String,
    /// The announced size (`Upload-Length`).
    pub length: u64,
    /// Bytes received and stored durably (`Upload-Offset`).
    pub offset: u64,
    /// When the upload is removed unless it receives more bytes, in Unix seconds
    /// (`Upload-Expires`).
    pub expires_unix: u64,
    /// The job the upload became once complete.
    pub job_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn issued_ids_pass_the_rule_and_nothing_else_does() {
        assert_eq!(job_id(0x2a), "job_0000000000000000000000000000002a");
        assert!(is_job_id(&job_id(u128::MAX)));
        assert!(is_job_id(&job_id(0)));
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
    fn upload_ids_have_their_own_prefix() {
        let id = upload_id(7);
        assert_eq!(id, "upl_00000000000000000000000000000007");
        assert!(is_upload_id(&id));
        assert!(!is_job_id(&id));
        assert!(!is_upload_id(&job_id(7)));
        assert!(!is_upload_id("upl_../../0123456789abcdef012345678"));
    }

    #[test]
    fn waits_and_event_ids_have_one_reading_on_both_ends() {
        assert_eq!(parse_wait("1"), Some(1));
        assert_eq!(parse_wait("30"), Some(30));
        for bad in [
            "0",
            "31",
            "-1",
            "1.5",
            "",
            " 5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
        assert_eq!(parse_event_id(" 12 "), Some(12));
        for bad in ["", "-1", "x", "1.5", "99999999999999999999999"] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_runner_json_round_trips() {
        let sent = json!({
            "id": "job_3f2c0000000000000000000000000001", "owner": "42", "status": "completed",
            "progress": 100, "filename": "clip.mp3", "source_filename": "clip.mp4",
            "size_bytes": 115446, "output_bytes": 20480, "created_at": "2026-05-01T12:00:00Z",
            "started_at": "2026-05-01T12:00:00Z", "completed_at": "2026-05-01T12:00:01Z",
            "error": null, "attempts": 1, "expired": false
        });
        let job: Job = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!((job.progress, job.output_bytes), (100, Some(20480)));
        assert_eq!(serde_json::to_value(&job).unwrap(), sent);
    }
}
