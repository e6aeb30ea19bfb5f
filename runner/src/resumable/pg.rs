//! [`UploadStore`] on the PostgreSQL job store.

use tokio_postgres::Row;

use super::{
    COMPLETE, EXPIRED, HOLD, Hold, INSERT_UPLOAD, NewUpload, RELEASE_HOLD, REMOVE, RENEW_HOLD,
    SELECT_UPLOAD, Upload, UploadStore,
};
use crate::error::Result;
use crate::job::{Job, NewJob};
use crate::pg::{PgJobStore, lock_owner, pg_insert_job, pg_usage};
use crate::store::OwnerQuota;
use crate::units::now_ms;

/// A statement written with SQLite's `?N` placeholders, with PostgreSQL's `$N` instead
/// (the shared statements contain no other `?`).
pub(super) fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

fn row_to_upload(row: &Row) -> Result<Upload> {
    Ok(Upload {
        id: row.try_get(0)?,
        owner: row.try_get(1)?,
        source_filename: row.try_get(2)?,
        length: row.try_get::<_, i64>(3)?.max(0) as u64,
        received: row.try_get::<_, i64>(4)?.max(0) as u64,
        job_id: row.try_get(5)?,
        created_at: row.try_get(6)?,
        expires_at: row.try_get(7)?,
        completed_at: row.try_get(8)?,
        held: row.try_get(9)?,
        callback_url: row.try_get(10)?,
    })
}

fn as_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

impl UploadStore for PgJobStore {
    fn create_upload(&self, upload: NewUpload, quota: &OwnerQuota) -> Result<Upload> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            lock_owner(&tx, &upload.owner).await?;
            quota.admit(&pg_usage(&tx, &upload.owner).await?, upload.length)?;
            tx.execute(
                &numbered(INSERT_UPLOAD),
                &[
                    &upload.id,
                    &upload.owner,
                    &upload.source_filename,
                    &as_i64(upload.length),
                    &upload.job_id,
                    &upload.created_at,
                    &upload.expires_at,
                    &upload.callback_url,
                ],
            )
            .await?;
            let row = tx
                .query_one(&numbered(SELECT_UPLOAD), &[&now_ms(), &upload.id])
                .await?;
            tx.commit().await?;
            row_to_upload(&row)
        })
    }

    fn upload(&self, id: &str) -> Result<Option<Upload>> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let row = client
                .query_opt(&numbered(SELECT_UPLOAD), &[&now_ms(), &id])
                .await?;
            row.as_ref().map(row_to_upload).transpose()
        })
    }

    fn hold_upload(&self, hold: &Hold, offset: u64, until: i64, now: i64) -> Result<bool> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let n = client
                .execute(
                    &numbered(HOLD),
                    &[&hold.upload_id, &hold.token, &until, &as_i64(offset), &now],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn renew_upload_hold(&self, hold: &Hold, until: i64) -> Result<bool> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let n = client
                .execute(
                    &numbered(RENEW_HOLD),
                    &[&hold.upload_id, &hold.token, &until],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn release_upload_hold(&self, hold: &Hold, received: u64, expires_at: i64) -> Result<bool> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let n = client
                .execute(
                    &numbered(RELEASE_HOLD),
                    &[&hold.upload_id, &hold.token, &as_i64(received), &expires_at],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn complete_upload(&self, id: &str, job: NewJob, expires_at: i64) -> Result<Option<Job>> {
        self.block_on(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let completed = tx
                .query_opt(&numbered(COMPLETE), &[&id, &job.created_at, &expires_at])
                .await?;
            let job = match completed {
                Some(_) => Some(pg_insert_job(&tx, &job, None, None, None).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(job)
        })
    }

    fn remove_upload(&self, id: &str, now: i64, expired_before: Option<i64>) -> Result<bool> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let n = client
                .execute(&numbered(REMOVE), &[&id, &now, &expired_before])
                .await?;
            Ok(n > 0)
        })
    }

    fn expired_uploads(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        self.block_on(async {
            let client = self.pool.get().await?;
            let rows = client
                .query(&numbered(EXPIRED), &[&now, &i64::from(limit)])
                .await?;
            rows.iter()
                .map(|row| Ok(row.try_get::<_, String>(0)?))
                .collect()
        })
    }
}
