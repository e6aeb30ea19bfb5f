//! Resumable uploads (the runner's side of tus 1.0, see runner/README.md): an upload is
//! created with its length, receives its bytes in any number of appends from any runner,
//! and becomes a job when the last byte is stored.
//!
//! The record lives in the job store (`uploads` table), the bytes where the media live
//! (`crate::media`'s `resumable` part): one spool file appended in place, or one object per append in the object
//! store. An append first takes the upload's *write hold* at the offset the client
//! names, a conditional update, so two appends can never interleave, even through two
//! runners; it stores the bytes durably, then records the new offset and releases the
//! hold in one update. Bytes stored but not recorded (a crash in between) lie beyond the
//! recorded offset and are overwritten by the next append, which starts there.

pub mod api;
mod pg;
mod sqlite;

use crate::error::Result;
use crate::job::{Job, NewJob};
use crate::store::OwnerQuota;
use crate::units::now_ms;

/// A new upload, as its creation records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub id: String,
    pub owner: String,
    pub source_filename: String,
    pub length: u64,
    /// The job the upload becomes, named up front so that finishing it twice (two
    /// requests racing, or one repeated after a crash) finds the same job.
    pub job_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Where the job's webhook goes, checked at creation.
    pub callback_url: Option<String>,
}

/// A resumable upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub owner: String,
    pub source_filename: String,
    pub length: u64,
    /// Bytes stored durably.
    pub received: u64,
    pub job_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once the job is recorded.
    pub completed_at: Option<i64>,
    /// Whether an append holds the upload now.
    pub held: bool,
    pub callback_url: Option<String>,
}

impl Upload {
    /// Every byte is stored; the job may not be recorded yet.
    pub fn is_received(&self) -> bool {
        self.received == self.length
    }

    /// As the runner's API shows it.
    pub fn to_wire(&self) -> spinmesh_jobs::Upload {
        spinmesh_jobs::Upload {
            id: self.id.clone(),
            owner: self.owner.clone(),
            source_filename: self.source_filename.clone(),
            length: self.length,
            offset: self.received,
            expires_unix: (self.expires_at.max(0) / 1000) as u64,
            job_id: self.completed_at.map(|_| self.job_id.clone()),
        }
    }

    /// The job this upload becomes once all of it is stored.
    pub fn new_job(&self) -> NewJob {
        NewJob {
            id: self.job_id.clone(),
            owner: self.owner.clone(),
            filename: crate::names::output_filename(&self.source_filename),
            source_filename: self.source_filename.clone(),
            size_bytes: self.length,
            created_at: now_ms(),
            started_at: None,
            // Not yet: a tus creation's callback (Upload-Metadata) is to be recorded with
            // the upload and passed on here.
            callback_url: self.callback_url.clone(),
        }
    }
}

/// The right to append to an upload, from one offset on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub upload_id: String,
    pub token: String,
}

/// The job store's side of resumable uploads; both backends implement it.
pub trait UploadStore {
    /// Records `upload` if the owner's quotas admit its length (an unfinished upload
    /// counts as an unfinished job holding its whole length).
    fn create_upload(&self, upload: NewUpload, quota: &OwnerQuota) -> Result<Upload>;
    fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Takes the write hold of upload `id` if it has exactly `offset` bytes, is not
    /// complete and no other unexpired hold exists; the hold lasts until `until`.
    fn hold_upload(&self, hold: &Hold, offset: u64, until: i64, now: i64) -> Result<bool>;
    /// Extends a hold still held; `false` if it was lost.
    fn renew_upload_hold(&self, hold: &Hold, until: i64) -> Result<bool>;
    /// Records that the upload now has `received` bytes stored, pushes its expiry to
    /// `expires_at` and releases the hold; `false` if the hold was lost meanwhile.
    fn release_upload_hold(&self, hold: &Hold, received: u64, expires_at: i64) -> Result<bool>;
    /// Marks a fully received upload complete and records its job (queued) in one
    /// transaction; `None` if it was complete already. Its quota was taken at creation.
    fn complete_upload(&self, id: &str, job: NewJob, expires_at: i64) -> Result<Option<Job>>;
    /// Removes the record of upload `id` unless an append holds it, or (with
    /// `expired_before`) unless it expires after that time; `false` if it stays.
    fn remove_upload(&self, id: &str, now: i64, expired_before: Option<i64>) -> Result<bool>;
    /// Uploads past their expiry, oldest first.
    fn expired_uploads(&self, now: i64, limit: u32) -> Result<Vec<String>>;
}

// The statements, shared by both backends: written with SQLite's `?N` placeholders,
// which [`pg::numbered`] turns into PostgreSQL's `$N`.

/// Columns in the order [`Upload`] is read from; `?1` is the current time, which decides
/// whether a hold still lasts.
const SELECT_UPLOAD: &str = "SELECT id, owner, source_filename, length, received, job_id,
            created_at, expires_at, completed_at,
            writer IS NOT NULL AND writer_until >= ?1, callback_url
     FROM uploads WHERE id = ?2";

const INSERT_UPLOAD: &str = "INSERT INTO uploads
         (id, owner, source_filename, length, job_id, created_at, expires_at, callback_url)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// `?1` id, `?2` token, `?3` until, `?4` offset, `?5` now.
const HOLD: &str = "UPDATE uploads SET writer = ?2, writer_until = ?3
     WHERE id = ?1 AND received = ?4 AND completed_at IS NULL AND expires_at >= ?5
       AND (writer IS NULL OR writer_until < ?5)";

/// `?1` id, `?2` token, `?3` until.
const RENEW_HOLD: &str = "UPDATE uploads SET writer_until = ?3 WHERE id = ?1 AND writer = ?2";

/// `?1` id, `?2` token, `?3` received, `?4` expires at.
const RELEASE_HOLD: &str = "UPDATE uploads
     SET received = ?3, expires_at = ?4, writer = NULL, writer_until = NULL
     WHERE id = ?1 AND writer = ?2";

/// `?1` id, `?2` now, `?3` expires at; returns the job id when this call completed it.
const COMPLETE: &str = "UPDATE uploads
     SET completed_at = ?2, expires_at = ?3, writer = NULL, writer_until = NULL
     WHERE id = ?1 AND completed_at IS NULL AND received = length
     RETURNING job_id";

/// `?1` id, `?2` now, `?3` expired before (NULL: any expiry).
const REMOVE: &str = "DELETE FROM uploads
     WHERE id = ?1 AND (writer IS NULL OR writer_until < ?2)
       AND (?3 IS NULL OR expires_at < ?3)";

/// `?1` now, `?2` limit.
const EXPIRED: &str = "SELECT id FROM uploads WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2";
