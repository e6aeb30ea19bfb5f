//! An S3-compatible server of its own: moto in server mode on a free loopback port, with
//! one bucket, stopped on drop. Moto keeps objects in memory: a restart empties it.
//!
//! `cargo xtask test` installs moto into `target/moto` (a virtualenv); `MOTO_SERVER`
//! names another `moto_server` executable, and one on `PATH` is the last resort.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use super::free_port;

/// How long moto may take to start (it imports a lot of Python).
const START_DEADLINE: Duration = Duration::from_secs(60);

pub const BUCKET: &str = "spinmesh-media";
/// The prefix the runners keep their objects under.
pub const PREFIX: &str = "runner";
/// moto accepts any credentials; the runner must still sign with some.
const ACCESS_KEY_ID: &str = "test-access-key";
const SECRET_ACCESS_KEY: &str = "test-secret-key";
const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/moto/bin/moto_server");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("moto_server")
    }
}

/// One plain HTTP/1.1 request to `127.0.0.1:port`; the whole response, or `None` if the
/// server cannot be reached.
fn request(port: u16, method: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

impl S3Server {
    /// Starts the server and creates [`BUCKET`].
    pub fn start() -> S3Server {
        let mut server = S3Server {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        server.resume();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// Starts the (stopped) server again on the same port, with an empty bucket: moto
    /// keeps its objects in memory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start moto_server (run `cargo xtask test`, which installs it): {err}"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("moto_server exited ({status}):\n{}", self.log_text());
            }
            if request(self.port, "PUT", &format!("/{BUCKET}"))
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: as an outage looks to the runners).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The flags that put a runner's media in this server's bucket.
    pub fn runner_args(&self) -> Vec<String> {
        [
            "--object-store",
            &format!("s3://{BUCKET}/{PREFIX}"),
            "--s3-endpoint",
            &self.endpoint(),
            "--s3-allow-http",
            "--s3-region",
            REGION,
            "--s3-access-key-id",
            ACCESS_KEY_ID,
            "--s3-secret-access-key",
            SECRET_ACCESS_KEY,
        ]
        .map(String::from)
        .into()
    }

    fn client(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region(REGION)
                .with_access_key_id(ACCESS_KEY_ID)
                .with_secret_access_key(SECRET_ACCESS_KEY)
                .build()
                .unwrap(),
        )
    }

    /// Every object key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .client()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The keys of job `id`'s objects.
    pub async fn keys_of(&self, id: &str) -> Vec<String> {
        let job = Self::job_prefix(id);
        self.keys()
            .await
            .into_iter()
            .filter(|key| key.starts_with(&job))
            .collect()
    }

    /// The keys under `prefix` (all of them for `""`), sorted, for suites without an async
    /// runtime: one plain ListObjectsV2 request, which moto takes unsigned.
    pub fn blocking_keys(&self, prefix: &str) -> Vec<String> {
        let response = request(
            self.port,
            "GET",
            &format!("/{BUCKET}?list-type=2&prefix={prefix}"),
        )
        .expect("moto_server answers");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let mut keys: Vec<String> = response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| Some(rest.split_once("</Key>")?.0.to_string()))
            .collect();
        keys.sort();
        keys
    }

    /// The prefix of job `id`'s objects.
    pub fn job_prefix(id: &str) -> String {
        format!("{PREFIX}/jobs/{id}/")
    }

    /// How many multipart uploads were started and neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        let response =
            request(self.port, "GET", &format!("/{BUCKET}?uploads")).expect("moto_server answers");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response.matches("<UploadId>").count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- moto log ----\n{}", self.log_text());
        }
    }
}
