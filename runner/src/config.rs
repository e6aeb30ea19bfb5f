//! Command-line flags (each also settable through a `RUNNER_*` environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use crate::ffmpeg::OutputLimits;
use crate::media::{self, ObjectStoreSettings};
use crate::store::OwnerQuota;
use crate::units::{parse_duration, parse_size};
use crate::webhook::WebhookConfig;

#[derive(Parser, Clone)]
#[command(
    name = "spinmesh-runner",
    version,
    about = "Converts uploaded media to MP3 with ffmpeg for the spinmesh upload component",
    long_about = None
)]
pub struct Config {
    /// Address to listen on. Keep it on loopback or a private network: the API is
    /// internal and only protected by the shared token.
    #[arg(long, env = "RUNNER_LISTEN", default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,

    /// Shared bearer token callers must present (prefer the environment variable:
    /// command lines are visible to other local users).
    #[arg(long, env = "RUNNER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Directory for the job database, uploads and outputs.
    #[arg(long, env = "RUNNER_SPOOL_DIR", default_value = ".spin/runner")]
    pub spool_dir: PathBuf,

    /// Job store shared by several runners: `postgres://user@host:port/db`. Without it the
    /// jobs live in SQLite inside the spool directory and only one runner may use it.
    /// Runners sharing a database must share the spool directory too.
    #[arg(long, env = "RUNNER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Media (uploads, MP3s) in S3-compatible object storage, `s3://bucket/prefix`,
    /// which any number of runners share; the spool directory is then local scratch.
    /// Default: the media live in the spool directory.
    #[arg(long, env = "RUNNER_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// Object store endpoint, for S3-compatible services other than AWS
    /// (e.g. `https://minio.internal:9000`). Default: AWS S3 for the region.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,

    /// Object store region (default: us-east-1).
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,

    /// Object store access key id (prefer the environment variable). Without keys the
    /// usual AWS credential sources apply (web identity, container, instance metadata).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// Object store secret access key (prefer the environment variable).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Allow a plain-http object store endpoint (a local or in-cluster test server).
    #[arg(long, env = "RUNNER_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,

    /// How long a claimed job stays this runner's without a renewal. Running conversions
    /// renew it every third of this; once it expires, the reaper hands the job to
    /// whichever runner claims it next.
    #[arg(long, env = "RUNNER_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Name this runner's leases are recorded under (default: host name, process id and
    /// a random suffix).
    #[arg(long, env = "RUNNER_ID")]
    pub runner_id: Option<String>,

    /// ffmpeg executable (a path, or a name looked up on PATH). Default: ffmpeg on PATH.
    #[arg(long, env = "RUNNER_FFMPEG")]
    pub ffmpeg: Option<PathBuf>,

    /// Concurrent conversions. Default: the number of CPU cores.
    #[arg(long, env = "RUNNER_WORKERS")]
    pub workers: Option<usize>,

    /// Largest accepted upload (e.g. 1GiB, 500MB, 1048576).
    #[arg(long, env = "RUNNER_MAX_UPLOAD_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub max_upload_bytes: u64,

    /// Uploads are refused (507) while free space on the spool's filesystem is below this.
    #[arg(long, env = "RUNNER_MIN_FREE_DISK", default_value = "512MiB", value_parser = parse_size)]
    pub min_free_disk: u64,

    /// Most jobs one owner may have queued or running at a time; further uploads get
    /// 429 `job_quota_exceeded` until one finishes. Fair scheduling already keeps one
    /// owner's backlog from delaying others, so this bounds what one owner can commit
    /// the runner to (each job up to --job-timeout of a worker) and keep waiting on disk.
    #[arg(long, env = "RUNNER_MAX_QUEUED_PER_OWNER", default_value_t = 5)]
    pub max_queued_per_owner: u64,

    /// Most bytes one owner's jobs may keep on the runner: inputs of queued, running and
    /// failed jobs plus outputs of completed ones until --retention removes them. Uploads that
    /// would pass it get 507 `storage_quota_exceeded`.
    #[arg(long, env = "RUNNER_MAX_SPOOL_BYTES_PER_OWNER", default_value = "2GiB", value_parser = parse_size)]
    pub max_spool_bytes_per_owner: u64,

    /// Most requests waiting on this runner for jobs to change (long polls with
    /// `?wait=` and event streams together); more get 503 `too_many_waiters`.
    #[arg(long, env = "RUNNER_MAX_WAITERS", default_value_t = 256)]
    pub max_waiters: usize,

    /// Most event streams (`/jobs/{id}/events`) one owner may have open on this runner;
    /// more get 429 `too_many_event_streams`.
    #[arg(long, env = "RUNNER_MAX_EVENT_STREAMS_PER_OWNER", default_value_t = 4)]
    pub max_event_streams_per_owner: usize,

    /// Longest audio converted: longer inputs fail ("Audio is longer than the 3h limit")
    /// instead of being truncated.
    #[arg(long, env = "RUNNER_MAX_OUTPUT_DURATION", default_value = "3h", value_parser = parse_duration)]
    pub max_output_duration: Duration,

    /// Largest MP3 written; a conversion that reaches it fails. Default: what
    /// --max-output-duration of audio at MP3's highest bitrate (320 kbit/s) takes.
    #[arg(long, env = "RUNNER_MAX_OUTPUT_BYTES", value_parser = parse_size)]
    pub max_output_bytes: Option<u64>,

    /// A conversion running longer than this is killed and the job fails.
    #[arg(long, env = "RUNNER_JOB_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub job_timeout: Duration,

    /// Attempts per job for transient failures (spawn errors, I/O, disk full).
    #[arg(long, env = "RUNNER_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// Delay before the first retry; doubles with each further attempt (max 5m).
    #[arg(long, env = "RUNNER_RETRY_BACKOFF", default_value = "2s", value_parser = parse_duration)]
    pub retry_backoff: Duration,

    /// Finished jobs' files are deleted this long after they finish.
    #[arg(long, env = "RUNNER_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,

    /// A resumable upload that receives nothing for this long is removed with what it
    /// received (tus `Upload-Expires`).
    #[arg(long, env = "RUNNER_UPLOAD_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    pub upload_expiry: Duration,

    /// How often the retention sweep runs.
    #[arg(long, env = "RUNNER_SWEEP_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Conversions start while the upload is still arriving when the container allows it
    /// (MP4/MOV indexed first, AVI) and a worker is free. Such a conversion gives its
    /// worker back (and the job is converted after the upload) once it has waited this
    /// long in all for a slow client. 0 turns early starts off.
    #[arg(long, env = "RUNNER_EARLY_START_PATIENCE", default_value = "2s", value_parser = parse_duration)]
    pub early_start_patience: Duration,

    /// libmp3lame VBR quality: 0 (best, largest) to 9 (smallest).
    #[arg(long, env = "RUNNER_QUALITY", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub quality: u8,

    /// On SIGINT/SIGTERM, how long running conversions may take to finish before they
    /// are stopped and left queued for the next start.
    #[arg(long, env = "RUNNER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

impl Config {
    /// Checks what clap cannot express. Returns the token.
    pub fn validate(&self) -> anyhow::Result<String> {
        let token = match self.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.to_string(),
            _ => bail!(
                "no runner token configured; set RUNNER_TOKEN (or pass --token) to the secret the upload component sends as `Authorization: Bearer <token>`"
            ),
        };
        if self.workers == Some(0) {
            bail!("--workers must be at least 1");
        }
        if self.max_attempts == 0 {
            bail!("--max-attempts must be at least 1");
        }
        if self.max_upload_bytes == 0 {
            bail!("--max-upload-bytes must be greater than 0");
        }
        if self.job_timeout.is_zero() {
            bail!("--job-timeout must be greater than 0");
        }
        if self.lease_ttl < Duration::from_secs(1) {
            bail!("--lease-ttl must be at least 1s");
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("--database-url must be a postgres:// or postgresql:// URL");
        }
        if let Some(id) = &self.runner_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            bail!("--runner-id must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'");
        }
        if self.sweep_interval.is_zero() {
            bail!("--sweep-interval must be greater than 0");
        }
        if self.max_queued_per_owner == 0 {
            bail!("--max-queued-per-owner must be at least 1");
        }
        if self.max_waiters == 0 || self.max_event_streams_per_owner == 0 {
            bail!("--max-waiters and --max-event-streams-per-owner must be at least 1");
        }
        if self.max_spool_bytes_per_owner == 0 {
            bail!("--max-spool-bytes-per-owner must be greater than 0");
        }
        if self.max_output_duration < Duration::from_secs(1) {
            bail!("--max-output-duration must be at least 1s");
        }
        if self.max_output_bytes == Some(0) {
            bail!("--max-output-bytes must be greater than 0");
        }
        self.object_store_settings()?;
        Ok(token)
    }

    /// Where the media live, if not in the spool.
    pub fn object_store_settings(&self) -> anyhow::Result<Option<ObjectStoreSettings>> {
        let Some(url) = &self.object_store else {
            return Ok(None);
        };
        let location = media::parse_location(url).map_err(anyhow::Error::msg)?;
        if let Some(endpoint) = &self.s3_endpoint {
            match endpoint.split_once("://") {
                Some(("https", _)) => {}
                Some(("http", _)) if self.s3_allow_http => {}
                Some(("http", _)) => bail!(
                    "--s3-endpoint {endpoint} is plain http; pass --s3-allow-http (RUNNER_S3_ALLOW_HTTP=true) if that is intended"
                ),
                _ => bail!("--s3-endpoint must be an http:// or https:// URL"),
            }
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            bail!(
                "set both the object store access key id and secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or neither"
            );
        }
        Ok(Some(ObjectStoreSettings {
            location,
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            allow_http: self.s3_allow_http,
        }))
    }

    /// The configured runner id, or one unique to this process.
    pub fn runner_id(&self) -> String {
        self.runner_id.clone().unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "runner".into());
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            format!("{host}-{}-{}", std::process::id(), &suffix[..8])
        })
    }

    pub fn owner_quota(&self) -> OwnerQuota {
        OwnerQuota {
            max_unfinished_jobs: self.max_queued_per_owner,
            max_spooled_bytes: self.max_spool_bytes_per_owner,
        }
    }

    pub fn output_limits(&self) -> OutputLimits {
        OutputLimits {
            max_duration: self.max_output_duration,
            max_bytes: self
                .max_output_bytes
                .unwrap_or_else(|| OutputLimits::max_bytes_for(self.max_output_duration)),
        }
    }

    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("spinmesh-runner").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn defaults() {
        let c = parse(&["--token", "t"]);
        assert_eq!(c.listen, "127.0.0.1:3001".parse().unwrap());
        assert_eq!(c.spool_dir, PathBuf::from(".spin/runner"));
        assert_eq!(c.max_upload_bytes, 1 << 30);
        assert_eq!(c.min_free_disk, 512 << 20);
        assert_eq!(c.job_timeout, Duration::from_secs(600));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.retention, Duration::from_secs(86_400));
        assert_eq!(c.quality, 2);
        assert_eq!(c.early_start_patience, Duration::from_secs(2));
        assert_eq!(c.lease_ttl, Duration::from_secs(30));
        assert!(c.database_url.is_none());
        assert!(c.worker_count() >= 1);
        assert_eq!(
            c.owner_quota(),
            OwnerQuota {
                max_unfinished_jobs: 5,
                max_spooled_bytes: 2 << 30
            }
        );
        let limits = c.output_limits();
        assert_eq!(limits.max_duration, Duration::from_secs(3 * 3600));
        assert_eq!(
            limits.max_bytes,
            OutputLimits::max_bytes_for(limits.max_duration)
        );
        assert_eq!(c.validate().unwrap(), "t");
    }

    #[test]
    fn flags() {
        let c = parse(&[
            "--token",
            "t",
            "--listen",
            "127.0.0.1:0",
            "--max-upload-bytes",
            "10MiB",
            "--job-timeout",
            "30s",
            "--workers",
            "3",
            "--retention",
            "1h",
            "--quality",
            "5",
            "--max-queued-per-owner",
            "2",
            "--max-spool-bytes-per-owner",
            "100MiB",
            "--max-output-duration",
            "10m",
            "--max-output-bytes",
            "20MB",
        ]);
        assert_eq!(c.owner_quota().max_unfinished_jobs, 2);
        assert_eq!(c.owner_quota().max_spooled_bytes, 100 << 20);
        assert_eq!(c.output_limits().max_duration, Duration::from_secs(600));
        assert_eq!(c.output_limits().max_bytes, 20_000_000);
        assert_eq!(c.max_upload_bytes, 10 << 20);
        assert_eq!(c.job_timeout, Duration::from_secs(30));
        assert_eq!(c.worker_count(), 3);
        assert_eq!(c.quality, 5);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::try_parse_from(["x", "--max-upload-bytes", "lots"]).is_err());
        assert!(Config::try_parse_from(["x", "--quality", "10"]).is_err());
        let err = parse(&["--token", "  "])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("RUNNER_TOKEN"), "{err}");
        assert!(
            parse(&["--token", "t", "--workers", "0"])
                .validate()
                .is_err()
        );
        for bad in [
            &["--database-url", "mysql://x"][..],
            &["--lease-ttl", "500ms"],
            &["--runner-id", "has space"],
            &["--max-queued-per-owner", "0"],
            &["--max-spool-bytes-per-owner", "0"],
            &["--max-output-duration", "500ms"],
            &["--max-output-bytes", "0"],
        ] {
            let mut args = vec!["--token", "t"];
            args.extend_from_slice(bad);
            assert!(parse(&args).validate().is_err(), "{bad:?}");
        }
        let c = parse(&[
            "--token",
            "t",
            "--database-url",
            "postgres://u@127.0.0.1:5/db",
        ]);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn object_store_flags() {
        let base = ["--token", "t", "--object-store", "s3://media/runner"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let settings = with(&["--s3-endpoint", "https://s3.internal"])
            .object_store_settings()
            .unwrap()
            .unwrap();
        assert_eq!(settings.location.bucket, "media");
        assert_eq!(settings.location.prefix.as_ref(), "runner");
        assert!(!settings.allow_http);
        let local = with(&["--s3-endpoint", "http://127.0.0.1:9000", "--s3-allow-http"]);
        assert!(local.validate().is_ok());
        for bad in [
            &["--s3-endpoint", "http://127.0.0.1:9000"][..],
            &["--s3-endpoint", "ftp://x"],
            &["--s3-access-key-id", "only-the-id"],
        ] {
            let err = with(bad).validate().unwrap_err().to_string();
            assert!(err.contains("s3") || err.contains("AWS_"), "{bad:?}: {err}");
        }
        assert!(
            parse(&["--token", "t", "--object-store", "gs://x"])
                .validate()
                .is_err()
        );
        assert!(
            parse(&["--token", "t"])
                .object_store_settings()
                .unwrap()
                .is_none()
        );
    }
}
