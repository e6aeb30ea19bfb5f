//! The bytes of resumable uploads until they are complete.
//!
//! In the spool, one file per upload (`partial/<upload id>`), appended in place: an
//! append first cuts the file back to the recorded offset, dropping whatever a crash
//! left beyond it. In object storage, whose objects cannot be appended to, one object
//! per append, named after the offset it starts at; a complete upload's appends are then
//! streamed, in order, into the job's input object. Any runner can take the next append.

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::{Media, ObjectUpload, Objects};
use crate::error::{Error, Result};
use crate::spool::remove_if_exists;

/// Buffered writes to a spool file.
const WRITE_BUFFER: usize = 256 << 10;

/// Where one append's bytes go.
pub enum Appender {
    File(BufWriter<tokio::fs::File>),
    Object { upload: ObjectUpload, written: u64 },
}

impl Appender {
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        match self {
            Appender::File(file) => file.write_all(&bytes).await?,
            Appender::Object { upload, written } => {
                *written += bytes.len() as u64;
                upload.write(bytes).await?;
            }
        }
        Ok(())
    }

    /// Makes what was written durable; only then may the new offset be recorded.
    pub async fn finish(self) -> Result<()> {
        match self {
            Appender::File(mut file) => {
                file.flush().await?;
                file.into_inner().sync_all().await?;
            }
            // An append that brought nothing leaves no object (dropping aborts it).
            Appender::Object { written: 0, .. } => {}
            Appender::Object { upload, .. } => upload.finish().await?,
        }
        Ok(())
    }
}

/// Bytes the upload's record counts are not where they were stored: a fault of the
/// storage (or of whoever removed them), reported as an internal error.
fn missing(what: String) -> Error {
    Error::Io(std::io::Error::other(what))
}

/// The name of the append object starting at `offset`: zero-padded, so names sort in
/// offset order.
fn append_name(offset: u64) -> String {
    format!("{offset:020}")
}

impl Objects {
    /// The appends of upload `upload_id` that make up its first `length` bytes, in
    /// order: from offset 0, each append is followed by the one starting where it ends.
    /// Objects off that chain were stored but never recorded (a crash before the offset
    /// was), and are skipped.
    async fn appends(&self, upload_id: &str, length: u64) -> Result<Vec<ObjectPath>> {
        let mut found: Vec<(u64, u64, ObjectPath)> = self
            .store
            .list(Some(&self.partial(upload_id)))
            .try_filter_map(|meta| async move {
                let offset = meta.location.filename().and_then(|name| name.parse().ok());
                Ok(offset.map(|offset| (offset, meta.size, meta.location)))
            })
            .try_collect()
            .await?;
        found.sort_by_key(|(offset, _, _)| *offset);
        let mut chain = Vec::new();
        let mut next = 0;
        for (offset, size, path) in found {
            if next == length {
                break;
            }
            if offset == next && size > 0 {
                next += size;
                chain.push(path);
            }
        }
        if next != length {
            return Err(missing(format!(
                "upload {upload_id}: its stored appends end at {next} of {length} bytes"
            )));
        }
        Ok(chain)
    }
}

impl Media {
    /// Opens upload `upload_id` for an append at `offset`, its recorded offset.
    pub async fn append_at(&self, upload_id: &str, offset: u64) -> Result<Appender> {
        if let Some(objects) = &self.objects {
            let path = objects.partial(upload_id).child(append_name(offset));
            let upload = objects.store.put_multipart(&path).await?;
            return Ok(Appender::Object {
                upload: ObjectUpload::new(upload),
                written: 0,
            });
        }
        let path = self.spool.partial(upload_id);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(offset == 0)
            .truncate(false)
            .open(&path)
            .await?;
        if file.metadata().await?.len() < offset {
            return Err(missing(format!(
                "upload {upload_id}: its file holds less than the recorded {offset} bytes"
            )));
        }
        file.set_len(offset).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok(Appender::File(BufWriter::with_capacity(WRITE_BUFFER, file)))
    }

    /// Makes the `length` bytes of upload `upload_id` the input of job `job_id`, where
    /// every worker finds it. Repeating it (after a crash, or by a racing request) is
    /// harmless: a spool file already moved stays moved, and objects are rewritten with
    /// the same bytes.
    pub async fn place_received(&self, upload_id: &str, length: u64, job_id: &str) -> Result<()> {
        let Some(objects) = &self.objects else {
            let input = self.spool.input(job_id);
            return match tokio::fs::rename(self.spool.partial(upload_id), &input).await {
                Err(err)
                    if err.kind() == std::io::ErrorKind::NotFound
                        && tokio::fs::try_exists(&input).await? =>
                {
                    Ok(())
                }
                result => Ok(result?),
            };
        };
        let mut input =
            ObjectUpload::new(objects.store.put_multipart(&objects.input(job_id)).await?);
        for path in objects.appends(upload_id, length).await? {
            let mut stream = objects.store.get(&path).await?.into_stream();
            while let Some(chunk) = stream.try_next().await? {
                input.write(chunk).await?;
            }
        }
        input.finish().await
    }

    /// Removes whatever upload `upload_id` left (after its job took its bytes, or when it
    /// is terminated or expires).
    pub async fn remove_partial(&self, upload_id: &str) -> Result<()> {
        let Some(objects) = &self.objects else {
            return Ok(remove_if_exists(&self.spool.partial(upload_id))?);
        };
        objects.delete_all_under(&objects.partial(upload_id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;

    fn objects() -> Objects {
        Objects {
            store: Arc::new(InMemory::new()),
            prefix: ObjectPath::parse("p").unwrap(),
        }
    }

    async fn put(objects: &Objects, offset: u64, bytes: &'static [u8]) {
        let path = objects.partial("upl_1").child(append_name(offset));
        objects
            .store
            .put(&path, PutPayload::from_static(bytes))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_chain_of_appends_skips_what_was_never_recorded() {
        let objects = objects();
        put(&objects, 0, b"abc").await;
        put(&objects, 3, b"de").await;
        // Stored by an append whose offset was never recorded, then overwritten by the
        // append at 3 that was (a shorter one); and one past the end.
        put(&objects, 4, b"zzzz").await;
        put(&objects, 9, b"!").await;
        put(&objects, 5, b"fgh").await;
        let chain = objects.appends("upl_1", 8).await.unwrap();
        let names: Vec<&str> = chain.iter().filter_map(|p| p.filename()).collect();
        assert_eq!(
            names,
            [append_name(0), append_name(3), append_name(5)]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        assert!(objects.appends("upl_1", 9).await.is_err(), "a gap");
        assert!(objects.appends("upl_2", 1).await.is_err(), "nothing stored");
    }

    #[test]
    fn append_names_sort_by_offset() {
        assert!(append_name(9) < append_name(10));
        assert_eq!(append_name(5 << 20), "00000000000005242880");
    }
}
