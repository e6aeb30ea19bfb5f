//! Where uploads and MP3s live: the local spool (the default), or S3-compatible object
//! storage that any number of runners share.
//!
//! With object storage the spool is scratch only: an upload is written there (so an
//! early conversion can read it as it grows) while it streams into a multipart upload;
//! a worker fetches the input into `scratch/` for ffmpeg and uploads the MP3 from
//! `outputs/`. Objects are named after the job id only:
//!
//! ```text
//! <prefix>/jobs/<id>/input          the upload, complete before the job is recorded
//! <prefix>/jobs/<id>/output.<n>.mp3 the MP3 of attempt n (the job's `attempts`)
//! <prefix>/uploads/<upload id>/<offset>  one append to a resumable upload (`resumable`)
//! ```
//!
//! Every attempt writes its own output object, so a runner whose lease was taken over
//! can never replace the MP3 that the job's new owner recorded; and since an object is
//! written once, a download's `HEAD` and ranged `GET` always see the same bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    PutPayloadMut, RetryConfig,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tracing::warn;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::spool::{Spool, remove_if_exists};

/// Multipart part size: S3's minimum for every part but the last. All parts but the
/// last are exactly this long, as some S3-compatible stores require.
const PART_SIZE: usize = 5 << 20;
/// Parts in flight per upload; with the part being filled this bounds an upload's
/// memory to `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const PARTS_IN_FLIGHT: usize = 2;
/// Read size when uploading a local file.
const FILE_CHUNK: usize = 1 << 20;
/// Chunk size when streaming an output file from the spool.
const READ_CHUNK: usize = 64 << 10;
/// How long `/healthz` waits for the object store.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// One request to the object store, body included: long enough to stream a large input
/// to a worker or an MP3 to a slow client, short enough that a hung connection ends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How to reach the object store (`--object-store` and the `--s3-*` flags).
#[derive(Debug, Clone)]
pub struct ObjectStoreSettings {
    pub location: Location,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

/// `s3://bucket/prefix`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub bucket: String,
    pub prefix: ObjectPath,
}

/// Parses `s3://bucket` or `s3://bucket/some/prefix`.
pub fn parse_location(url: &str) -> std::result::Result<Location, String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("--object-store must be an s3://bucket/prefix URL")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's bucket naming rules, which S3-compatible stores follow.
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "--object-store: {bucket:?} is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = ObjectPath::parse(prefix)
        .ok()
        .filter(|p| p.as_ref() == prefix)
        .ok_or_else(|| {
            format!(
                "--object-store: {prefix:?} is not a valid prefix (no empty, '.' or '..' parts)"
            )
        })?;
    Ok(Location {
        bucket: bucket.to_string(),
        prefix,
    })
}

mod resumable;

pub use resumable::Appender;

/// The media location of this runner.
pub struct Media {
    spool: Arc<Spool>,
    objects: Option<Objects>,
}

struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl Objects {
    fn job(&self, id: &str) -> ObjectPath {
        self.prefix.child("jobs").child(id)
    }

    /// Where the appends of resumable upload `id` wait, one object each.
    fn partial(&self, upload_id: &str) -> ObjectPath {
        self.prefix.child("uploads").child(upload_id)
    }

    fn input(&self, id: &str) -> ObjectPath {
        self.job(id).child("input")
    }

    fn output(&self, id: &str, attempt: u32) -> ObjectPath {
        self.job(id).child(format!("output.{attempt}.mp3"))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        delete_object(self.store.as_ref(), path).await
    }

    /// Deletes every object whose name starts with `prefix`.
    async fn delete_all_under(&self, prefix: &ObjectPath) -> Result<()> {
        let found: Vec<ObjectPath> = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for path in found {
            self.delete(&path).await?;
        }
        Ok(())
    }

    /// Deletes `path` in the background, logging a failure (for guards being dropped).
    fn delete_later(&self, path: ObjectPath) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = delete_object(store.as_ref(), &path).await {
                warn!(error = %err, object = %path, "cannot delete object");
            }
        });
    }
}

/// Deletes an object; one already gone is fine.
async fn delete_object(store: &dyn ObjectStore, path: &ObjectPath) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

impl Media {
    /// Media in the spool directory.
    pub fn local(spool: Arc<Spool>) -> Media {
        Media {
            spool,
            objects: None,
        }
    }

    /// Media in object storage, with `spool` as scratch. Fails if the bucket cannot be
    /// listed (unreachable, unknown bucket, bad credentials).
    pub async fn in_object_store(
        spool: Arc<Spool>,
        settings: &ObjectStoreSettings,
    ) -> anyhow::Result<Media> {
        // The environment first (session tokens, web identity, container credentials),
        // then what the flags (or their variables) say.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.location.bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                // An outage should answer 503 soon, not hold the request for minutes.
                retry_timeout: Duration::from_secs(10),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(REQUEST_TIMEOUT),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        let objects = Objects {
            store,
            prefix: settings.location.prefix.clone(),
        };
        objects
            .store
            .list_with_delimiter(Some(&objects.prefix))
            .await?;
        Ok(Media {
            spool,
            objects: Some(objects),
        })
    }

    /// Whether the media are in the spool (whose disk then holds whole uploads).
    pub fn is_local(&self) -> bool {
        self.objects.is_none()
    }

    /// What the start-up log calls the media location.
    pub fn kind(&self) -> &'static str {
        match self.objects {
            None => "spool",
            Some(_) => "object-store",
        }
    }

    /// Whether the object store answers (always true for the spool).
    pub async fn reachable(&self) -> bool {
        let Some(objects) = &self.objects else {
            return true;
        };
        let probe = objects.prefix.child("health-probe");
        match tokio::time::timeout(HEALTH_TIMEOUT, objects.store.head(&probe)).await {
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => true,
            Ok(Err(err)) => {
                warn!(error = %err, "health check: object store unavailable");
                false
            }
            Err(_) => {
                warn!("health check: object store did not answer in time");
                false
            }
        }
    }

    /// Starts the multipart upload an upload streams into; `None` for the spool.
    pub async fn begin_upload(&self, id: &str) -> Result<Option<ObjectUpload>> {
        let Some(objects) = &self.objects else {
            return Ok(None);
        };
        let upload = objects.store.put_multipart(&objects.input(id)).await?;
        Ok(Some(ObjectUpload::new(upload)))
    }

    /// Makes a completely received upload available to every worker: moves the spool
    /// file `incoming` into `inputs/`, or completes the multipart upload (the scratch
    /// file `incoming` is then the caller's to remove). Until [`PlacedInput::keep`], the
    /// input is removed again when the guard drops.
    pub async fn place_upload(
        &self,
        id: &str,
        incoming: &Path,
        upload: Option<ObjectUpload>,
    ) -> Result<PlacedInput<'_>> {
        match (&self.objects, upload) {
            (Some(objects), Some(upload)) => {
                upload.finish().await?;
                Ok(PlacedInput(Placed::Object(objects, objects.input(id))))
            }
            (None, None) => {
                let input = self.spool.input(id);
                tokio::fs::rename(incoming, &input).await?;
                Ok(PlacedInput(Placed::File(input)))
            }
            _ => unreachable!("begin_upload decides whether there is an object upload"),
        }
    }

    /// The input of job `id` as a local file for ffmpeg, fetched (streamed) into
    /// scratch from the object store; `None` if the job has no input. Dropping the
    /// future part-way removes the partial copy.
    pub async fn fetch_input(&self, id: &str) -> Result<Option<InputFile>> {
        let Some(objects) = &self.objects else {
            let path = self.spool.input(id);
            let exists = tokio::fs::try_exists(&path).await?;
            return Ok(exists.then_some(InputFile {
                path,
                scratch: false,
            }));
        };
        // Removed on drop: whatever happens to this attempt, the scratch copy goes.
        let input = InputFile {
            path: self.spool.scratch_input(id),
            scratch: true,
        };
        let mut stream = match objects.store.get(&objects.input(id)).await {
            Ok(result) => result.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let mut file = tokio::fs::File::create(&input.path).await?;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(Some(input))
    }

    /// Removes a finished job's input (its output stays until retention).
    pub async fn discard_input(&self, id: &str) {
        let result = match &self.objects {
            None => remove_if_exists(&self.spool.input(id)).map_err(Error::from),
            Some(objects) => objects.delete(&objects.input(id)).await,
        };
        if let Err(err) = result {
            warn!(job_id = %id, error = %err, "cannot remove the job's input");
        }
    }

    /// Stores ffmpeg's output `partial` as the MP3 of attempt `attempt`.
    pub async fn store_output(&self, id: &str, attempt: u32, partial: &Path) -> Result<()> {
        let Some(objects) = &self.objects else {
            tokio::fs::rename(partial, self.spool.output(id)).await?;
            return Ok(());
        };
        let mut upload = ObjectUpload::new(
            objects
                .store
                .put_multipart(&objects.output(id, attempt))
                .await?,
        );
        let mut file = tokio::fs::File::open(partial).await?;
        loop {
            let mut chunk = Vec::with_capacity(FILE_CHUNK);
            if (&mut file)
                .take(FILE_CHUNK as u64)
                .read_to_end(&mut chunk)
                .await?
                == 0
            {
                break;
            }
            upload.write(Bytes::from(chunk)).await?;
        }
        upload.finish().await?;
        remove_if_exists(partial)?;
        Ok(())
    }

    /// Removes the output attempt `attempt` stored, after its completion was not
    /// recorded; `current` is the job as it stands now. The output the job points at
    /// (completed by whoever holds it now) stays.
    pub async fn discard_unrecorded_output(&self, id: &str, attempt: u32, current: Option<&Job>) {
        let completed = current.filter(|job| job.status == crate::job::JobStatus::Completed);
        let result = match &self.objects {
            // One output file per job: it is the recorded one if the job completed.
            None if completed.is_some() => Ok(()),
            None => remove_if_exists(&self.spool.output(id)).map_err(Error::from),
            Some(_) if completed.is_some_and(|job| job.attempts == attempt) => Ok(()),
            Some(objects) => objects.delete(&objects.output(id, attempt)).await,
        };
        if let Err(err) = result {
            warn!(job_id = %id, error = %err, "cannot remove an unrecorded output");
        }
    }

    /// The MP3 of a completed job, or `None` if it is gone.
    pub async fn open_output(&self, job: &Job) -> Result<Option<Output>> {
        let Some(objects) = &self.objects else {
            let file = match tokio::fs::File::open(self.spool.output(&job.id)).await {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let meta = file.metadata().await?;
            return Ok(Some(Output {
                len: meta.len(),
                modified: meta.modified().ok(),
                source: OutputSource::File(file),
            }));
        };
        let path = objects.output(&job.id, job.attempts);
        let meta = match objects.store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        Ok(Some(Output {
            len: meta.size,
            modified: Some(meta.last_modified.into()),
            source: OutputSource::Object {
                store: objects.store.clone(),
                path,
            },
        }))
    }

    /// Removes every file and object of job `id`.
    pub async fn remove_job(&self, id: &str) -> Result<()> {
        if let Some(objects) = &self.objects {
            objects.delete_all_under(&objects.job(id)).await?;
        }
        let spool = self.spool.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || spool.remove_job_files(&id)).await??;
        Ok(())
    }
}

/// A multipart upload being written.
///
/// Kept by hand over [`MultipartUpload`] rather than `object_store::WriteMultipart`,
/// which drops its upload without aborting it when a part fails, leaving an orphan the
/// bucket keeps (and bills) until a lifecycle rule removes it. Dropping an unfinished
/// `ObjectUpload` aborts it.
pub struct ObjectUpload {
    upload: Option<Box<dyn MultipartUpload>>,
    part: PutPayloadMut,
    in_flight: JoinSet<object_store::Result<()>>,
}

impl ObjectUpload {
    fn new(upload: Box<dyn MultipartUpload>) -> ObjectUpload {
        ObjectUpload {
            upload: Some(upload),
            part: PutPayloadMut::new(),
            in_flight: JoinSet::new(),
        }
    }

    /// Appends `bytes`, waiting while [`PARTS_IN_FLIGHT`] parts are being sent.
    pub async fn write(&mut self, mut bytes: Bytes) -> Result<()> {
        while !bytes.is_empty() {
            let room = PART_SIZE - self.part.content_length();
            if bytes.len() < room {
                self.part.push(bytes);
                break;
            }
            self.part.push(bytes.split_to(room));
            while self.in_flight.len() >= PARTS_IN_FLIGHT {
                self.join_one().await?;
            }
            self.send_part();
        }
        Ok(())
    }

    fn send_part(&mut self) {
        let part = std::mem::take(&mut self.part).freeze();
        let upload = self.upload.as_mut().expect("unfinished upload");
        self.in_flight.spawn(upload.put_part(part));
    }

    async fn join_one(&mut self) -> Result<()> {
        match self.in_flight.join_next().await {
            Some(result) => Ok(result??),
            None => Ok(()),
        }
    }

    /// Sends the last part and completes the upload: the object exists once this
    /// returns `Ok`. On failure the upload is aborted.
    async fn finish(mut self) -> Result<()> {
        if self.part.content_length() > 0 {
            self.send_part();
        }
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let mut upload = self.upload.take().expect("unfinished upload");
        if let Err(err) = upload.complete().await {
            self.upload = Some(upload);
            return Err(err.into());
        }
        Ok(())
    }
}

impl Drop for ObjectUpload {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            self.in_flight.abort_all();
            tokio::spawn(async move {
                if let Err(err) = upload.abort().await {
                    warn!(error = %err, "cannot abort a multipart upload; a lifecycle rule must remove it");
                }
            });
        }
    }
}

/// A received upload in place; removed again on drop unless kept.
pub struct PlacedInput<'a>(Placed<'a>);

enum Placed<'a> {
    File(PathBuf),
    Object(&'a Objects, ObjectPath),
    Kept,
}

impl PlacedInput<'_> {
    /// The job is recorded: the input is its now.
    pub fn keep(mut self) {
        self.0 = Placed::Kept;
    }
}

impl Drop for PlacedInput<'_> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.0, Placed::Kept) {
            Placed::File(path) => {
                if let Err(err) = remove_if_exists(&path) {
                    warn!(error = %err, file = %path.display(), "cannot remove abandoned upload");
                }
            }
            Placed::Object(objects, path) => objects.delete_later(path),
            Placed::Kept => {}
        }
    }
}

/// A job's input as a file ffmpeg can read; a scratch copy is removed on drop.
pub struct InputFile {
    path: PathBuf,
    scratch: bool,
}

impl InputFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InputFile {
    fn drop(&mut self) {
        if self.scratch
            && let Err(err) = remove_if_exists(&self.path)
        {
            warn!(error = %err, file = %self.path.display(), "cannot remove scratch input");
        }
    }
}

/// A stored MP3, ready to stream.
pub struct Output {
    pub len: u64,
    pub modified: Option<SystemTime>,
    source: OutputSource,
}

enum OutputSource {
    File(tokio::fs::File),
    Object {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
    },
}

impl Output {
    /// A body streaming `count` bytes from `start` (`count > 0`).
    pub async fn body(self, start: u64, count: u64) -> Result<Body> {
        match self.source {
            OutputSource::File(mut file) => {
                if start > 0 {
                    file.seek(std::io::SeekFrom::Start(start)).await?;
                }
                let reader = file.take(count);
                Ok(Body::from_stream(
                    tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK),
                ))
            }
            OutputSource::Object { store, path } => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(start..start + count)),
                    ..GetOptions::default()
                };
                let result = match store.get_opts(&path, options).await {
                    Ok(result) => result,
                    // Removed (retention, cancel) between the look-up and now.
                    Err(object_store::Error::NotFound { .. }) => return Err(Error::OutputExpired),
                    Err(err) => return Err(err.into()),
                };
                Ok(Body::from_stream(result.into_stream()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let at = parse_location("s3://media-bucket/runner/media").unwrap();
        assert_eq!(at.bucket, "media-bucket");
        assert_eq!(at.prefix.as_ref(), "runner/media");
        let bare = parse_location("s3://media.example").unwrap();
        assert_eq!(bare.prefix.as_ref(), "");
        assert_eq!(
            parse_location("s3://bucket/prefix/")
                .unwrap()
                .prefix
                .as_ref(),
            "prefix"
        );
        for bad in [
            "https://bucket/x",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-dash",
            "s3://under_score",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://bucket/./b",
        ] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_names_derive_from_the_job_id() {
        let objects = Objects {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: ObjectPath::parse("p").unwrap(),
        };
        assert_eq!(objects.input("job_1").as_ref(), "p/jobs/job_1/input");
        assert_eq!(
            objects.output("job_1", 2).as_ref(),
            "p/jobs/job_1/output.2.mp3"
        );
    }
}
