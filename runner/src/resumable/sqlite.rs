//! [`UploadStore`] on the SQLite job store.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{
    COMPLETE, EXPIRED, HOLD, Hold, INSERT_UPLOAD, NewUpload, RELEASE_HOLD, REMOVE, RENEW_HOLD,
    SELECT_UPLOAD, Upload, UploadStore,
};
use crate::error::Result;
use crate::job::{Job, NewJob};
use crate::store::{OwnerQuota, SqliteJobStore, sqlite_insert_job, sqlite_usage};
use crate::units::now_ms;

fn row_to_upload(row: &Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: row.get(0)?,
        owner: row.get(1)?,
        source_filename: row.get(2)?,
        length: row.get::<_, i64>(3)?.max(0) as u64,
        received: row.get::<_, i64>(4)?.max(0) as u64,
        job_id: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        completed_at: row.get(8)?,
        held: row.get::<_, i64>(9)? != 0,
        callback_url: row.get(10)?,
    })
}

fn as_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

impl UploadStore for SqliteJobStore {
    fn create_upload(&self, upload: NewUpload, quota: &OwnerQuota) -> Result<Upload> {
        self.with_conn(|conn| {
            // Immediate: the quota check and the insert see no other writer in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Err(refusal) = quota.admit(&sqlite_usage(&tx, &upload.owner)?, upload.length) {
                return Ok(Err(refusal));
            }
            tx.execute(
                INSERT_UPLOAD,
                params![
                    upload.id,
                    upload.owner,
                    upload.source_filename,
                    as_i64(upload.length),
                    upload.job_id,
                    upload.created_at,
                    upload.expires_at,
                    upload.callback_url
                ],
            )?;
            let created =
                tx.query_row(SELECT_UPLOAD, params![now_ms(), upload.id], row_to_upload)?;
            tx.commit()?;
            Ok(Ok(created))
        })?
    }

    fn upload(&self, id: &str) -> Result<Option<Upload>> {
        self.with_conn(|conn| {
            conn.query_row(SELECT_UPLOAD, params![now_ms(), id], row_to_upload)
                .optional()
        })
    }

    fn hold_upload(&self, hold: &Hold, offset: u64, until: i64, now: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                HOLD,
                params![hold.upload_id, hold.token, until, as_i64(offset), now],
            )?;
            Ok(n > 0)
        })
    }

    fn renew_upload_hold(&self, hold: &Hold, until: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(RENEW_HOLD, params![hold.upload_id, hold.token, until])?;
            Ok(n > 0)
        })
    }

    fn release_upload_hold(&self, hold: &Hold, received: u64, expires_at: i64) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(
                RELEASE_HOLD,
                params![hold.upload_id, hold.token, as_i64(received), expires_at],
            )?;
            Ok(n > 0)
        })
    }

    fn complete_upload(&self, id: &str, job: NewJob, expires_at: i64) -> Result<Option<Job>> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let completed: Option<String> = tx
                .query_row(COMPLETE, params![id, job.created_at, expires_at], |row| {
                    row.get(0)
                })
                .optional()?;
            let job = match completed {
                Some(_) => Some(sqlite_insert_job(&tx, &job, None, None, None)?),
                None => None,
            };
            tx.commit()?;
            Ok(job)
        })
    }

    fn remove_upload(&self, id: &str, now: i64, expired_before: Option<i64>) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn.execute(REMOVE, params![id, now, expired_before])?;
            Ok(n > 0)
        })
    }

    fn expired_uploads(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(EXPIRED)?;
            stmt.query_map(params![now, limit], |row| row.get(0))?
                .collect()
        })
    }
}
