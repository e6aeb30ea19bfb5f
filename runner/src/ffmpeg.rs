//! Everything that talks to ffmpeg: finding it, running a conversion with
//! `-progress pipe:1`, and turning its exit status and stderr into a short reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::units::format_duration;

const INSTALL_HINT: &str =
    "install it (Debian/Ubuntu: apt-get install ffmpeg) or pass --ffmpeg /path/to/ffmpeg";

/// Resolves the ffmpeg executable: the `--ffmpeg` value if given (a path, or a bare
/// name looked up on `PATH`), else `ffmpeg` on `PATH`.
pub fn locate(flag: Option<&Path>, path_var: Option<&std::ffi::OsStr>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(given) if given.components().count() > 1 || given.is_absolute() => {
            if is_executable(given) {
                Ok(given.to_path_buf())
            } else if given.exists() {
                bail!(
                    "ffmpeg at {} is not an executable file; {INSTALL_HINT}",
                    given.display()
                )
            } else {
                bail!("ffmpeg not found at {}; {INSTALL_HINT}", given.display())
            }
        }
        Some(name) => search_path(name, path_var)
            .with_context(|| format!("{} not found on PATH; {INSTALL_HINT}", name.display())),
        None => search_path(Path::new("ffmpeg"), path_var)
            .with_context(|| format!("ffmpeg not found on PATH; {INSTALL_HINT}")),
    }
}

fn search_path(name: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `ffmpeg -version` and checks that the MP3 encoder is built in. Returns the
/// version line (`ffmpeg version 5.1.6-0+deb12u1 …`).
pub async fn check(ffmpeg: &Path) -> anyhow::Result<String> {
    let output = run_quick(ffmpeg, &["-version"]).await?;
    let version = output.lines().next().unwrap_or_default().trim().to_string();
    if !version.starts_with("ffmpeg version") {
        bail!(
            "{} does not look like ffmpeg (its -version output is unexpected); {INSTALL_HINT}",
            ffmpeg.display()
        );
    }
    let encoders = run_quick(ffmpeg, &["-hide_banner", "-encoders"]).await?;
    if !encoders.contains("libmp3lame") {
        bail!(
            "{} has no libmp3lame MP3 encoder; install a build with it (Debian/Ubuntu: apt-get install ffmpeg)",
            ffmpeg.display()
        );
    }
    Ok(version)
}

async fn run_quick(ffmpeg: &Path, args: &[&str]) -> anyhow::Result<String> {
    let run = Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .with_context(|| {
            format!(
                "{} {} did not finish within 30s",
                ffmpeg.display(),
                args.join(" ")
            )
        })?
        .with_context(|| format!("cannot run {}; {INSTALL_HINT}", ffmpeg.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}); {INSTALL_HINT}",
            ffmpeg.display(),
            args.join(" "),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------
// Parsing ffmpeg's output

/// One interesting line of `-progress` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressLine {
    /// Position reached in the output, in microseconds.
    OutTime(u64),
    /// `progress=end`: ffmpeg finished writing.
    End,
}

/// Parses a `key=value` line of `-progress` output.
pub fn parse_progress_line(line: &str) -> Option<ProgressLine> {
    let (key, value) = line.trim().split_once('=')?;
    match key.trim() {
        "out_time_us" => value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|v| ProgressLine::OutTime(v as u64)),
        "progress" if value.trim() == "end" => Some(ProgressLine::End),
        _ => None,
    }
}

/// Parses `  Duration: 00:01:02.50, start: 0.000000, bitrate: 128 kb/s` into
/// microseconds. `Duration: N/A` gives `None`.
pub fn parse_duration_line(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix("Duration:")?;
    let stamp = rest.split(',').next()?.trim();
    let mut parts = stamp.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let micros = (hours * 3600 + minutes * 60) as f64 * 1e6 + seconds * 1e6;
    Some(micros.round() as u64)
}

/// Percent done while running: capped at 99 so that only a finished job shows 100.
pub fn percent(out_time_us: u64, duration_us: u64) -> u8 {
    if duration_us == 0 {
        return 0;
    }
    let pct = (out_time_us as u128 * 100 / duration_us as u128).min(99);
    pct as u8
}

/// Conditions recognised in ffmpeg's stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StderrFindings {
    pub no_output_stream: bool,
    pub invalid_data: bool,
    pub disk_full: bool,
    pub out_of_memory: bool,
    pub missing_encoder: bool,
    pub file_missing: bool,
}

/// Accumulates what matters from ffmpeg's stderr, line by line, without keeping it.
#[derive(Debug, Default, Clone)]
pub struct StderrScan {
    pub duration_us: Option<u64>,
    pub findings: StderrFindings,
    /// The last lines, for the operator's log only (never sent to clients).
    pub tail: std::collections::VecDeque<String>,
}

const TAIL_LINES: usize = 12;

impl StderrScan {
    pub fn scan_line(&mut self, line: &str) {
        if self.duration_us.is_none()
            && let Some(d) = parse_duration_line(line)
        {
            self.duration_us = Some(d);
        }
        let lower = line.to_ascii_lowercase();
        let f = &mut self.findings;
        if lower.contains("does not contain any stream") || lower.contains("matches no streams") {
            f.no_output_stream = true;
        }
        if [
            "invalid data found when processing input",
            "moov atom not found",
            "could not find codec parameters",
            "ebml header parsing failed",
            "failed to read frame size",
            "header missing",
            "invalid frame size",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
        {
            f.invalid_data = true;
        }
        if lower.contains("no space left on device") {
            f.disk_full = true;
        }
        if lower.contains("cannot allocate memory") {
            f.out_of_memory = true;
        }
        if lower.contains("unknown encoder") || lower.contains("encoder not found") {
            f.missing_encoder = true;
        }
        if lower.contains("no such file or directory") {
            f.file_missing = true;
        }
        if !line.trim().is_empty() {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.chars().take(300).collect());
        }
    }
}

/// Why a conversion failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The input itself is the problem: do not retry.
    Permanent(String),
    /// Environment trouble (spawn failure, I/O, resources): retry with backoff.
    Transient(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Permanent(r) | Failure::Transient(r) => r,
        }
    }
}

pub const REASON_NOT_MEDIA: &str = "Input is not a valid media file";
pub const REASON_NO_AUDIO: &str = "Input has no audio stream";
pub const REASON_TIMED_OUT: &str = "Conversion timed out";
pub const REASON_EMPTY_OUTPUT: &str = "Input contains no decodable audio";
/// The disk filled up, or free space fell below `--min-free-disk`, while converting.
pub const REASON_LOW_DISK: &str = "Not enough disk space on the runner";

/// Why an input whose audio runs past `--max-output-duration` fails.
pub fn reason_too_long(limit: Duration) -> String {
    format!("Audio is longer than the {} limit", format_duration(limit))
}

/// Why a conversion whose MP3 reached `--max-output-bytes` fails.
pub fn reason_too_large(limit: u64) -> String {
    format!("Converted audio is larger than the {limit}-byte limit")
}

/// Classifies a non-successful ffmpeg exit. `exit_code` is `None` when ffmpeg was
/// killed by a signal we did not send.
pub fn classify_failure(exit_code: Option<i32>, findings: &StderrFindings) -> Failure {
    if findings.disk_full {
        return Failure::Transient(REASON_LOW_DISK.into());
    }
    if findings.out_of_memory {
        return Failure::Transient("Not enough memory on the runner".into());
    }
    if findings.missing_encoder {
        return Failure::Permanent("MP3 encoder is not available on the runner".into());
    }
    if findings.no_output_stream {
        return Failure::Permanent(REASON_NO_AUDIO.into());
    }
    if findings.invalid_data {
        return Failure::Permanent(REASON_NOT_MEDIA.into());
    }
    if findings.file_missing {
        return Failure::Transient("Runner could not access the job's files".into());
    }
    match exit_code {
        None => Failure::Transient("Conversion process was terminated unexpectedly".into()),
        Some(code) => Failure::Permanent(format!("Conversion failed (ffmpeg exit status {code})")),
    }
}

// ---------------------------------------------------------------------------------------
// Running a conversion

/// Fixed settings for every conversion.
#[derive(Debug, Clone)]
pub struct ConvertSettings {
    pub ffmpeg: PathBuf,
    /// libmp3lame VBR quality, 0 (best) – 9.
    pub quality: u8,
    pub timeout: Duration,
    pub limits: OutputLimits,
}

/// Bounds on what one conversion may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Longest audio converted. An input whose container says it is longer is refused as
    /// soon as ffmpeg has read its header; one whose audio runs on past what it declared
    /// is stopped by `-t` and fails too, rather than leaving a silently truncated file.
    pub max_duration: Duration,
    /// Largest MP3 written (`-fs`); reaching it fails the job.
    pub max_bytes: u64,
}

/// How far audio may run past [`OutputLimits::max_duration`] and still count as within
/// it: container durations are rounded, and MP3 frames (26 ms) and encoder padding
/// overshoot the last sample a little.
const DURATION_TOLERANCE: Duration = Duration::from_millis(500);

/// The highest bitrate libmp3lame writes (MPEG-1 Layer III's largest frames), in bytes
/// per second: no MP3 of a given length can be larger than this allows.
const MP3_MAX_BYTES_PER_SECOND: u64 = 320_000 / 8;
/// Room for the ID3 and Xing headers ffmpeg writes.
const MP3_HEADER_BYTES: u64 = 128 << 10;

impl OutputLimits {
    /// The largest MP3 any audio of up to `max_duration` (and its tolerance) gives,
    /// the default for `--max-output-bytes`.
    pub fn max_bytes_for(max_duration: Duration) -> u64 {
        let seconds = (max_duration + DURATION_TOLERANCE * 2).as_secs_f64().ceil() as u64;
        seconds
            .saturating_mul(MP3_MAX_BYTES_PER_SECOND)
            .saturating_add(MP3_HEADER_BYTES)
    }

    /// The longest audio, in microseconds, that still passes.
    fn allowed_us(&self) -> u64 {
        (self.max_duration + DURATION_TOLERANCE)
            .as_micros()
            .min(u64::MAX as u128) as u64
    }

    /// The `-t` ffmpeg gets: past the tolerance, so that audio running on beyond the
    /// limit shows in the output and is not mistaken for audio just at it.
    fn stop_after(&self) -> String {
        format!(
            "{:.3}",
            (self.max_duration + DURATION_TOLERANCE * 2).as_secs_f64()
        )
    }
}

/// How a conversion attempt ended (other than success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    Failed(Failure),
    TimedOut,
    /// The job was cancelled by a client.
    Cancelled,
    /// The runner is shutting down and stopped waiting.
    Shutdown,
}

/// Where ffmpeg reads the upload from.
#[derive(Debug)]
pub enum Input<'a> {
    /// The complete upload in the spool.
    File(&'a Path),
    /// A pipe fed while the upload is still arriving (see `early`).
    Pipe(std::io::PipeReader),
}

/// The arguments passed to ffmpeg. Paths are given as `file:` URLs so that nothing in a
/// path can be taken for another protocol or an option.
pub fn ffmpeg_args(
    input: &Input<'_>,
    output: &Path,
    quality: u8,
    limits: &OutputLimits,
) -> Vec<std::ffi::OsString> {
    let file_url = |p: &Path| {
        let mut s = std::ffi::OsString::from("file:");
        s.push(p.as_os_str());
        s
    };
    let mut args: Vec<std::ffi::OsString> = ["-nostdin", "-hide_banner", "-nostats", "-y", "-i"]
        .into_iter()
        .map(Into::into)
        .collect();
    args.push(match input {
        Input::File(path) => file_url(path),
        Input::Pipe(_) => "pipe:0".into(),
    });
    for a in ["-vn", "-sn", "-dn", "-c:a", "libmp3lame", "-q:a"] {
        args.push(a.into());
    }
    args.push(quality.to_string().into());
    args.extend(["-t".into(), limits.stop_after().into()]);
    args.extend(["-fs".into(), limits.max_bytes.to_string().into()]);
    for a in ["-f", "mp3", "-progress", "pipe:1"] {
        args.push(a.into());
    }
    args.push(file_url(output));
    args
}

/// Converts `input` to MP3 at `output`, publishing percent progress on `progress`.
/// Kills ffmpeg on timeout, on `cancel` and on `shutdown`.
pub async fn convert(
    settings: &ConvertSettings,
    input: Input<'_>,
    output: &Path,
    progress: &watch::Sender<u8>,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Stopped> {
    let mut command = Command::new(&settings.ffmpeg);
    command
        .args(ffmpeg_args(
            &input,
            output,
            settings.quality,
            &settings.limits,
        ))
        .stdin(match input {
            Input::File(_) => Stdio::null(),
            Input::Pipe(reader) => Stdio::from(reader),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a Ctrl-C aimed at the runner must not kill conversions
        // behind our back; we decide what happens to them.
        .process_group(0);
    #[cfg(target_os = "linux")]
    #[allow(
        unsafe_code,
        reason = "pre_exec is unsafe; the closure keeps to what is safe after fork"
    )]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // If the runner dies (even by SIGKILL), its ffmpeg children die with it.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }

    let mut child = command.spawn().map_err(|err| {
        tracing::warn!(error = %err, ffmpeg = %settings.ffmpeg.display(), "cannot start ffmpeg");
        Stopped::Failed(Failure::Transient("Could not start ffmpeg".into()))
    })?;
    // The command holds our copy of a pipe's read end; while it lives, a feeder writing
    // to a dead ffmpeg would block instead of failing.
    drop(command);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let limits = settings.limits;
    let (duration_tx, duration_rx) = watch::channel(None::<u64>);
    // Fired when the input's header declares more audio than the limit allows.
    let declared_too_long = CancellationToken::new();
    let stderr_task = tokio::spawn({
        let declared_too_long = declared_too_long.clone();
        async move {
            let mut scan = StderrScan::default();
            let _ = for_each_line(stderr, |line| {
                scan.scan_line(line);
                if scan.duration_us.is_some() && duration_tx.borrow().is_none() {
                    let _ = duration_tx.send(scan.duration_us);
                    if scan.duration_us > Some(limits.allowed_us()) {
                        declared_too_long.cancel();
                    }
                }
            })
            .await;
            scan
        }
    });

    // How far into the audio ffmpeg got.
    let mut reached_us = 0u64;
    let drive = async {
        let _ = for_each_line(stdout, |line| {
            let Some(ProgressLine::OutTime(us)) = parse_progress_line(line) else {
                return;
            };
            reached_us = reached_us.max(us);
            if let Some(total) = *duration_rx.borrow() {
                let pct = percent(us, total);
                progress.send_if_modified(|current| {
                    let changed = pct > *current;
                    if changed {
                        *current = pct;
                    }
                    changed
                });
            }
        })
        .await;
        child.wait().await
    };

    let stopped = tokio::select! {
        status = drive => match status {
            Ok(status) => Ok(status),
            Err(err) => {
                tracing::warn!(error = %err, "waiting for ffmpeg failed");
                Err(Stopped::Failed(Failure::Transient("Lost track of the ffmpeg process".into())))
            }
        },
        _ = tokio::time::sleep(settings.timeout) => Err(Stopped::TimedOut),
        _ = declared_too_long.cancelled() => Err(Stopped::Failed(Failure::Permanent(
            reason_too_long(limits.max_duration),
        ))),
        _ = cancel.cancelled() => Err(Stopped::Cancelled),
        _ = shutdown.cancelled() => Err(Stopped::Shutdown),
    };

    let status = match stopped {
        Ok(status) => status,
        Err(stop) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            stderr_task.abort();
            return Err(stop);
        }
    };

    let scan = match tokio::time::timeout(Duration::from_secs(10), stderr_task).await {
        Ok(Ok(scan)) => scan,
        _ => StderrScan::default(),
    };
    if status.success() {
        return check_limits(&limits, reached_us, output).await;
    }
    let failure = classify_failure(status.code(), &scan.findings);
    tracing::info!(
        status = %status,
        reason = failure.reason(),
        stderr_tail = %scan.tail.iter().cloned().collect::<Vec<_>>().join(" | "),
        "ffmpeg failed"
    );
    Err(Stopped::Failed(failure))
}

/// After ffmpeg succeeded: whether it stopped at a limit (`-t`, `-fs`) rather than at
/// the end of the audio, which makes the output a truncated file and the job a failure.
async fn check_limits(
    limits: &OutputLimits,
    reached_us: u64,
    output: &Path,
) -> Result<(), Stopped> {
    if reached_us > limits.allowed_us() {
        return Err(Stopped::Failed(Failure::Permanent(reason_too_long(
            limits.max_duration,
        ))));
    }
    // A missing or unreadable output is the caller's to report.
    if let Ok(meta) = tokio::fs::metadata(output).await
        && meta.len() >= limits.max_bytes
    {
        return Err(Stopped::Failed(Failure::Permanent(reason_too_large(
            limits.max_bytes,
        ))));
    }
    Ok(())
}

/// Reads `reader` to the end, calling `f` for each line (split on `\n` or `\r`, lossy
/// UTF-8, lines longer than 4 KiB truncated) without ever buffering more than that.
async fn for_each_line<R, F>(mut reader: R, mut f: F) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    F: FnMut(&str),
{
    const MAX_LINE: usize = 4096;
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            if !line.is_empty() {
                f(&String::from_utf8_lossy(&line));
            }
            return Ok(());
        }
        for &byte in &buf[..n] {
            if byte == b'\n' || byte == b'\r' {
                if !line.is_empty() {
                    f(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            } else if line.len() < MAX_LINE {
                line.push(byte);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            parse_progress_line("out_time_us=1500000"),
            Some(ProgressLine::OutTime(1_500_000))
        );
        assert_eq!(
            parse_progress_line("out_time_us=-9223372036854775807"),
            None
        );
        assert_eq!(parse_progress_line("out_time_us=N/A"), None);
        assert_eq!(parse_progress_line("progress=continue"), None);
        assert_eq!(parse_progress_line("progress=end"), Some(ProgressLine::End));
        assert_eq!(parse_progress_line("bitrate= 128.0kbits/s"), None);
        assert_eq!(parse_progress_line("garbage"), None);
    }

    #[test]
    fn duration_lines() {
        assert_eq!(
            parse_duration_line("  Duration: 00:00:03.02, start: 0.000000, bitrate: 101 kb/s"),
            Some(3_020_000)
        );
        assert_eq!(
            parse_duration_line("  Duration: 01:02:03.5, bitrate: 1 kb/s"),
            Some(3_723_500_000)
        );
        assert_eq!(
            parse_duration_line("  Duration: N/A, start: 0.000000, bitrate: N/A"),
            None
        );
        assert_eq!(parse_duration_line("Stream #0:0: Audio: aac"), None);
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0, 3_000_000), 0);
        assert_eq!(percent(1_500_000, 3_000_000), 50);
        assert_eq!(percent(3_000_000, 3_000_000), 99);
        assert_eq!(percent(9_000_000, 3_000_000), 99);
        assert_eq!(percent(5, 0), 0);
        assert_eq!(percent(u64::MAX, 1), 99);
    }

    fn scan(text: &str) -> StderrScan {
        let mut scan = StderrScan::default();
        for line in text.lines() {
            scan.scan_line(line);
        }
        scan
    }

    #[test]
    fn classifies_bad_input() {
        let s = scan(
            "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] moov atom not found\nfile:/x/in: Invalid data found when processing input",
        );
        assert_eq!(
            classify_failure(Some(1), &s.findings),
            Failure::Permanent(REASON_NOT_MEDIA.into())
        );
    }

    #[test]
    fn classifies_missing_audio() {
        let s = scan(
            "Input #0, mov,mp4, from 'file:/x':\n  Duration: 00:00:02.00, start: 0.000000, bitrate: 50 kb/s\nOutput file #0 does not contain any stream",
        );
        assert_eq!(
            classify_failure(Some(1), &s.findings),
            Failure::Permanent(REASON_NO_AUDIO.into())
        );
        assert_eq!(s.duration_us, Some(2_000_000));
    }

    #[test]
    fn classifies_environment_trouble_as_transient() {
        let s = scan("av_interleaved_write_frame(): No space left on device");
        assert!(matches!(
            classify_failure(Some(1), &s.findings),
            Failure::Transient(_)
        ));
        let s = scan("");
        assert!(matches!(
            classify_failure(None, &s.findings),
            Failure::Transient(_)
        ));
        let s = scan("something unexpected");
        assert_eq!(
            classify_failure(Some(187), &s.findings),
            Failure::Permanent("Conversion failed (ffmpeg exit status 187)".into())
        );
    }

    #[test]
    fn reasons_never_contain_stderr() {
        let s = scan("/very/secret/path: Invalid data found when processing input");
        assert!(
            !classify_failure(Some(1), &s.findings)
                .reason()
                .contains("secret")
        );
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let mut s = StderrScan::default();
        for i in 0..100 {
            s.scan_line(&format!("line {i} {}", "x".repeat(1000)));
        }
        assert_eq!(s.tail.len(), TAIL_LINES);
        assert!(s.tail.iter().all(|l| l.chars().count() <= 300));
    }

    #[test]
    fn args_use_file_urls() {
        let to_strings = |args: Vec<std::ffi::OsString>| -> Vec<String> {
            args.into_iter().map(|a| a.into_string().unwrap()).collect()
        };
        let output = Path::new("/spool/outputs/job_1.1.part");
        let limits = OutputLimits {
            max_duration: Duration::from_secs(10),
            max_bytes: 5000,
        };
        let args = to_strings(ffmpeg_args(
            &Input::File(Path::new("/spool/inputs/job_1")),
            output,
            2,
            &limits,
        ));
        assert_eq!(args[0], "-nostdin");
        assert!(args.contains(&"file:/spool/inputs/job_1".to_string()));
        assert_eq!(args.last().unwrap(), "file:/spool/outputs/job_1.1.part");
        let q = args.iter().position(|a| a == "-q:a").unwrap();
        assert_eq!(args[q + 1], "2");
        // Output options, before the output: stop a second past the limit, cap the size.
        let t = args.iter().position(|a| a == "-t").unwrap();
        assert_eq!(args[t + 1], "11.000");
        let fs = args.iter().position(|a| a == "-fs").unwrap();
        assert_eq!(args[fs + 1], "5000");
        assert!(t > args.iter().position(|a| a == "-i").unwrap() + 1);

        let (reader, _writer) = std::io::pipe().unwrap();
        let piped = to_strings(ffmpeg_args(&Input::Pipe(reader), output, 2, &limits));
        let i = piped.iter().position(|a| a == "-i").unwrap();
        assert_eq!(piped[i + 1], "pipe:0");
    }

    #[test]
    fn output_limits() {
        // Three hours at 320 kbit/s, plus a second of tolerance and the headers.
        assert_eq!(
            OutputLimits::max_bytes_for(Duration::from_secs(3 * 3600)),
            10_801 * 40_000 + (128 << 10)
        );
        let limits = OutputLimits {
            max_duration: Duration::from_secs(10),
            max_bytes: 1,
        };
        assert_eq!(limits.allowed_us(), 10_500_000);
        assert_eq!(
            reason_too_long(limits.max_duration),
            "Audio is longer than the 10s limit"
        );
    }

    #[test]
    fn locate_reports_actionable_errors() {
        let err = locate(Some(Path::new("/nonexistent/ffmpeg")), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ffmpeg not found") && err.contains("--ffmpeg"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = locate(None, Some(empty.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ffmpeg not found on PATH") && err.contains("apt-get install ffmpeg"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn lines_split_on_cr_and_lf() {
        let data: &[u8] = b"a=1\r\nb=2\rc=3\n\nlast";
        let mut lines = Vec::new();
        for_each_line(data, |l| lines.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(lines, ["a=1", "b=2", "c=3", "last"]);
    }
}
