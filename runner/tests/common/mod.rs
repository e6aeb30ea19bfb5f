//! Test harness: starts the real `spinmesh-runner` binary on a free loopback port with
//! its own spool directory, and drives it over HTTP.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the shared harness"
)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod postgres;
pub mod s3;

pub const TOKEN: &str = "test-runner-token-0123456789";
pub const BIN: &str = env!("CARGO_BIN_EXE_spinmesh-runner");

/// Generous deadlines: tests must pass on a loaded 2-core machine.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
pub const JOB_DEADLINE: Duration = Duration::from_secs(180);

pub struct Runner {
    child: Option<Child>,
    pub base: String,
    pub spool: PathBuf,
    pub log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Runner {
    /// Starts a runner with a fresh spool directory and `extra` flags.
    pub fn start(extra: &[&str]) -> Runner {
        let tmp = tempfile::tempdir().unwrap();
        let spool = tmp.path().join("spool");
        let mut runner = Runner::start_on(&spool, extra, tmp.path());
        runner._tmp = Some(tmp);
        runner
    }

    /// Starts a runner on an existing spool directory (for restart tests); the log goes
    /// next to it.
    pub fn start_on(spool: &Path, extra: &[&str], log_dir: &Path) -> Runner {
        let port = free_port();
        let log = log_dir.join(format!("runner-{port}.log"));
        let log_file = fs::File::create(&log).unwrap();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--spool-dir".into(),
            spool.display().to_string(),
            "--shutdown-grace".into(),
            "2s".into(),
        ];
        // Two workers unless the test chooses (clap refuses a flag given twice).
        if !extra.contains(&"--workers") {
            args.extend(["--workers".into(), "2".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(BIN)
            .args(&args)
            .env("RUNNER_TOKEN", TOKEN)
            .env("RUST_LOG", "info,spinmesh_runner=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start spinmesh-runner");
        let mut runner = Runner {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            spool: spool.to_path_buf(),
            log,
            _tmp: None,
        };
        runner.wait_healthy();
        runner
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "runner exited during start-up ({status}):\n{}",
                    self.log_text()
                );
            }
            if healthz_ok(&self.base) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "runner did not become healthy:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        deadline: Duration,
    ) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("runner did not exit after {signal}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Files in `<spool>/<sub>` (sorted names).
    pub fn spool_files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.spool.join(sub))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Files anywhere in the spool whose name mentions `id`.
    pub fn files_of(&self, id: &str) -> Vec<String> {
        ["incoming", "inputs", "outputs", "scratch"]
            .iter()
            .flat_map(|sub| {
                self.spool_files(sub)
                    .into_iter()
                    .map(move |f| format!("{sub}/{f}"))
            })
            .filter(|f| f.contains(id))
            .collect()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let crashed = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        self.kill();
        if std::thread::panicking() || crashed.is_some() {
            eprintln!(
                "---- runner log {} ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A plain blocking `GET /healthz` (usable from sync and async tests alike).
fn healthz_ok(base: &str) -> bool {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub fn auth(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.bearer_auth(TOKEN)
}

/// Uploads `data` with chunked transfer encoding (no Content-Length), in 64 KiB pieces.
pub async fn upload_chunked(
    runner: &Runner,
    owner: &str,
    filename: &str,
    data: Vec<u8>,
) -> reqwest::Response {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", owner)
        .header("x-filename", percent_encode(filename))
        .body(body)
        .send()
        .await
        .expect("upload request")
}

/// An upload whose body the test hands over piece by piece, so it can look at the
/// runner while the upload is still arriving.
pub struct HeldUpload {
    body: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl HeldUpload {
    pub fn start(runner: &Runner, owner: &str, filename: &str) -> HeldUpload {
        HeldUpload::send_with(
            auth(client().post(runner.url("/jobs")))
                .header("x-owner-id", owner)
                .header("x-filename", percent_encode(filename)),
        )
    }

    /// Sends `request` with a body the test hands over piece by piece.
    pub fn send_with(request: reqwest::RequestBuilder) -> HeldUpload {
        let (body, rx) = tokio::sync::mpsc::channel(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let request = request.body(reqwest::Body::wrap_stream(stream));
        HeldUpload {
            body,
            response: tokio::spawn(request.send()),
        }
    }

    /// Sends `data` in 64 KiB pieces.
    pub async fn send(&self, data: &[u8]) {
        for piece in data.chunks(64 * 1024) {
            self.body
                .send(Ok(bytes::Bytes::copy_from_slice(piece)))
                .await
                .expect("the request is still sending");
        }
    }

    /// Ends the body and returns the runner's answer.
    pub async fn finish(self) -> reqwest::Response {
        drop(self.body);
        self.response.await.unwrap().expect("upload request")
    }

    /// Breaks the body off with an error, as a client that goes away does.
    pub async fn abort(self) -> reqwest::Result<reqwest::Response> {
        let _ = self
            .body
            .send(Err(std::io::Error::other("client gave up")))
            .await;
        drop(self.body);
        self.response.await.unwrap()
    }
}

/// The runner's `/metrics` text.
pub async fn metrics_text(runner: &Runner) -> String {
    let resp = auth(client().get(runner.url("/metrics")))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

/// The value of an unlabelled metric on the runner's `/metrics`.
pub async fn metric(runner: &Runner, name: &str) -> f64 {
    let text = metrics_text(runner).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Polls an unlabelled metric until it equals `want`.
pub async fn metric_reaches(runner: &Runner, name: &str, want: f64) {
    let end = Instant::now() + JOB_DEADLINE;
    loop {
        let value = metric(runner, name).await;
        if value == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{name} stayed at {value}, expected {want}\n{}",
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many jobs the runner has, all owners.
pub async fn job_count(runner: &Runner) -> u64 {
    let resp = auth(client().get(runner.url("/jobs")))
        .send()
        .await
        .unwrap();
    resp.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn get_json(runner: &Runner, path: &str) -> (u16, Value) {
    let resp = auth(client().get(runner.url(path))).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls the job until `done(job)` holds; returns every job JSON seen, last one last.
pub async fn poll_job(runner: &Runner, id: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + JOB_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let (status, job) = get_json(runner, &format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "GET job: {job}");
        let finished = done(&job);
        seen.push(job);
        if finished {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not reach the expected state; last: {}\n{}",
            seen.last().unwrap(),
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn status_is(job: &Value, status: &str) -> bool {
    job["status"] == status
}

pub fn is_finished(job: &Value) -> bool {
    ["completed", "failed", "cancelled"]
        .iter()
        .any(|s| job["status"] == *s)
}

/// Polls `cond` until true or the deadline passes.
pub async fn eventually(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Media

/// Runs ffmpeg (quietly) and panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small MP4 with a tone and a test pattern, `seconds` long. ffmpeg writes the index
/// (`moov`) last, as cameras do, so it cannot be read from a pipe.
pub fn make_video(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    make_video_with(dir, name, seconds, &[])
}

/// Like [`make_video`] with the index first (`-movflags +faststart`), as web tools
/// write MP4s: ffmpeg can read it front to back while it arrives.
pub fn make_faststart_video(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    make_video_with(dir, name, seconds, &["-movflags", "+faststart"])
}

fn make_video_with(dir: &Path, name: &str, seconds: u32, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let sine = format!("sine=frequency=440:sample_rate=44100:duration={seconds}");
    let video = format!("testsrc=size=160x120:rate=10:duration={seconds}");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &sine,
        "-f",
        "lavfi",
        "-i",
        &video,
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-shortest",
    ];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

/// An MP4 with video only.
pub fn make_silent_video(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let video = format!("testsrc=size=160x120:rate=10:duration={seconds}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &video,
        "-c:v",
        "mpeg4",
        path.to_str().unwrap(),
    ]);
    path
}

/// Audio-only file (format from the name's extension), cheap to make even when long.
pub fn make_audio(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let sine = format!("sine=frequency=300:sample_rate=8000:duration={seconds}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &sine,
        "-c:a",
        "libmp3lame",
        "-b:a",
        "16k",
        path.to_str().unwrap(),
    ]);
    path
}

/// Downloads job `id`'s MP3 into `dir` and returns its duration in seconds.
pub async fn download_duration(runner: &Runner, id: &str, dir: &Path) -> f64 {
    let resp = auth(client().get(runner.url(&format!("/jobs/{id}/output"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mp3 = dir.join(format!("{id}.mp3"));
    fs::write(&mp3, resp.bytes().await.unwrap()).unwrap();
    let (codec, seconds) = probe(&mp3);
    assert_eq!(codec, "mp3");
    seconds
}

/// (codec name of the first stream, duration in seconds) according to ffprobe.
pub fn probe(path: &Path) -> (String, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codec = v["streams"][0]["codec_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (codec, duration)
}

/// Writes an executable shell script once per test process (written under a temporary
/// name and renamed, so it is never executed while still open for writing).
fn script(cell: &'static OnceLock<PathBuf>, name: &str, body: &str) -> PathBuf {
    cell.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("spinmesh-runner-tests-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        fs::write(&tmp, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&tmp, &path).unwrap();
        path
    })
    .clone()
}

/// A wrapper that runs the real ffmpeg at real-time speed (`-re`), so a conversion
/// lasts as long as its input: slow enough to cancel or crash in the middle of.
/// Conversions are recognised by their first argument, `-nostdin`.
pub fn slow_ffmpeg() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    script(
        &CELL,
        "slow-ffmpeg",
        "#!/bin/sh\nif [ \"$1\" = \"-nostdin\" ]; then exec ffmpeg -re \"$@\"; fi\nexec ffmpeg \"$@\"\n",
    )
}

/// A wrapper whose conversions die by SIGKILL, as if the OOM killer struck.
pub fn crashing_ffmpeg() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    script(
        &CELL,
        "crashing-ffmpeg",
        "#!/bin/sh\nif [ \"$1\" = \"-nostdin\" ]; then kill -KILL $$; fi\nexec ffmpeg \"$@\"\n",
    )
}

/// The spool files a failed job keeps: its input, for a retry, until retention.
pub fn failed_job_files(id: &str) -> Vec<String> {
    vec![format!("inputs/{id}")]
}

/// `POST /jobs/{id}/retry`: status and JSON body.
pub async fn retry(runner: &Runner, id: &str) -> (u16, Value) {
    let resp = auth(client().post(runner.url(&format!("/jobs/{id}/retry"))))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// One server-sent event: its id, name and data (`None` fields absent), or a comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: bool,
}

/// Reads a `text/event-stream` body to its end (within `deadline`), as the blocks
/// between blank lines.
pub async fn read_events(resp: reqwest::Response, deadline: Duration) -> Vec<Sse> {
    let text = tokio::time::timeout(deadline, resp.text())
        .await
        .expect("the event stream ends")
        .unwrap();
    parse_events(&text)
}

pub fn parse_events(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut event = Sse {
                id: None,
                event: None,
                data: None,
                comment: false,
            };
            for line in block.lines() {
                if line.starts_with(':') {
                    event.comment = true;
                } else if let Some((field, value)) = line.split_once(": ") {
                    match field {
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = Some(value.to_string()),
                        "data" => event.data = Some(value.to_string()),
                        _ => {}
                    }
                }
            }
            event
        })
        .collect()
}

/// Processes (other than us) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Peak resident set size of a process, in KiB.
/// Uploads `count` copies of `clip` as one owner, alternately to each of `runners`, all at
/// once; their job ids, in upload order.
pub async fn upload_concurrently(runners: &[Runner], clip: &Path, count: usize) -> Vec<String> {
    let data = std::fs::read(clip).unwrap();
    let uploads = (0..count).map(|n| {
        let (runner, data) = (&runners[n % runners.len()], data.clone());
        async move {
            let resp = upload_chunked(runner, "u", "clip.mp4", data).await;
            assert_eq!(resp.status(), 202, "{}", runner.log_text());
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    });
    futures_util::future::join_all(uploads).await
}

/// Checks the runners' logs: each of `ids` was recorded as completed exactly once, by
/// one of them, and every runner completed some.
pub fn assert_each_completed_once(logs: &[String], ids: &[String]) {
    let completions = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|line| line.contains("conversion completed"))
            .map(str::to_string)
            .collect()
    };
    let lines: Vec<String> = logs.iter().flat_map(|log| completions(log)).collect();
    assert_eq!(lines.len(), ids.len(), "{lines:#?}");
    for id in ids {
        let count = lines
            .iter()
            .filter(|line| line.contains(id.as_str()))
            .count();
        assert_eq!(count, 1, "{id} completed {count} times");
    }
    assert!(
        logs.iter().all(|log| !completions(log).is_empty()),
        "every runner should have converted some of the jobs"
    );
}

/// Streams `size` zero bytes to `POST /jobs` as owner `u`, without holding them.
pub async fn upload_zeros(runner: &Runner, size: usize) -> reqwest::Response {
    let chunk = bytes::Bytes::from(vec![0u8; 256 * 1024]);
    let stream = futures_util::stream::iter(
        (0..size / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", "u")
        .header("x-filename", "zeros.bin")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap()
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs the binary to completion with `args`, returning (exit status, stderr).
pub fn run_to_exit(
    args: &[&str],
    envs: &[(&str, &str)],
    remove_env: &[&str],
) -> (ExitStatus, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--spool-dir")
        .arg(tmp.path().join("spool"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    for k in remove_env {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runner did not exit with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
