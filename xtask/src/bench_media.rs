//! Conversion and upload figures: end-to-end conversion of a phone-like clip
//! against bare ffmpeg on the same file, and host/runner peak memory while a
//! large file streams through.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use spinmesh_e2e::{App, client, multipart_body};
use spinmesh_runner::ffmpeg::Input;

use crate::bench_report::{ClipLayout, Conversion, UploadMemory, median};
use crate::build::root;

const BOUNDARY: &str = "spinmesh-bench-boundary";
/// Status polls this often; the runner's log gives the exact completion time.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Converts a `seconds`-long clip `runs` times each way, alternating so both
/// see the same machine load.
pub fn conversion(
    app: &mut App,
    token: &str,
    seconds: u32,
    runs: usize,
    layout: ClipLayout,
) -> Result<Conversion> {
    let clip = phone_clip(seconds, layout)?;
    let bytes = std::fs::read(&clip)?;
    let form = multipart_body(BOUNDARY, &[("file", Some("clip.mp4"), &bytes)]);
    let scratch = tempfile_dir()?;
    let defaults = runner_defaults()?;
    let bare_args = spinmesh_runner::ffmpeg::ffmpeg_args(
        &Input::File(&clip),
        &scratch.join("bare.mp3"),
        defaults.quality,
        &defaults.output_limits(),
    );
    let mut figures = Conversion {
        layout,
        clip: format!(
            "{seconds} s, 1280×720 30 fps H.264 at 6 Mb/s + stereo 48 kHz AAC at 192 kb/s"
        ),
        clip_bytes: bytes.len() as u64,
        ffmpeg_command: format!(
            "ffmpeg {}",
            bare_args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        poll_interval_ms: POLL_INTERVAL.as_millis() as u64,
        bare: Vec::new(),
        end_to_end: Vec::new(),
        client_seen: Vec::new(),
        upload: Vec::new(),
        queue: Vec::new(),
        runner_ffmpeg: Vec::new(),
        finish: Vec::new(),
    };
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("ffmpeg")
            .args(&bare_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        figures.bare.push(started.elapsed().as_secs_f64());
        if !status.success() {
            bail!("bare ffmpeg failed on {}", clip.display());
        }

        // The form is built before the clock starts: timing starts as the client sends.
        let body = form.clone();
        let started_at = SystemTime::now();
        let started = Instant::now();
        let job = upload(app, token, body)?;
        let uploaded = started.elapsed().as_secs_f64();
        wait_for_completion(app, token, &job)?;
        figures.client_seen.push(started.elapsed().as_secs_f64());
        figures.upload.push(uploaded);
        let timeline = runner_timeline(app, &job)?;
        let since_start = |at: SystemTime| {
            at.duration_since(started_at)
                .unwrap_or_default()
                .as_secs_f64()
        };
        figures.end_to_end.push(since_start(timeline.completed));
        figures.queue.push(since_start(timeline.started) - uploaded);
        figures.runner_ffmpeg.push(timeline.ffmpeg_seconds);
        figures.finish.push(
            timeline
                .completed
                .duration_since(timeline.started)
                .unwrap_or_default()
                .as_secs_f64()
                - timeline.ffmpeg_seconds,
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "convert {seconds} s clip, {} ({:.0} MB): bare ffmpeg {:.3} s, upload→completed {:.3} s (upload {:.3} s, queue {:.3} s, runner's ffmpeg {:.3} s), medians of {runs}",
        layout.label(),
        figures.clip_bytes as f64 / 1e6,
        median(&figures.bare).unwrap_or_default(),
        median(&figures.end_to_end).unwrap_or_default(),
        median(&figures.upload).unwrap_or_default(),
        median(&figures.queue).unwrap_or_default(),
        median(&figures.runner_ffmpeg).unwrap_or_default(),
    );
    Ok(figures)
}

/// The runner's default settings (MP3 quality, output limits), so bare ffmpeg gets the
/// same arguments.
fn runner_defaults() -> Result<spinmesh_runner::Config> {
    use clap::Parser;
    Ok(spinmesh_runner::Config::try_parse_from([
        "spinmesh-runner",
        "--token",
        "unused",
    ])?)
}

/// A clip like a phone's: 720p H.264 at a phone's bitrate with stereo 48 kHz
/// AAC, so the conversion decodes real AAC and encodes stereo MP3. Made once and
/// kept under `target/bench-media/`; the index-last copy is the same streams remuxed.
fn phone_clip(seconds: u32, layout: ClipLayout) -> Result<PathBuf> {
    let dir = root().join("target/bench-media");
    std::fs::create_dir_all(&dir)?;
    let clip = dir.join(format!("phone-720p-{seconds}s.mp4"));
    if !clip.exists() {
        encode_clip(&dir, &clip, seconds)?;
    }
    match layout {
        ClipLayout::IndexFirst => Ok(clip),
        ClipLayout::IndexLast => {
            let remuxed = dir.join(format!("phone-720p-{seconds}s-index-last.mp4"));
            if !remuxed.exists() {
                let partial = dir.join(format!("phone-720p-{seconds}s-index-last.partial.mp4"));
                let status = Command::new("ffmpeg")
                    .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
                    .arg(&clip)
                    .args(["-c", "copy", "-map", "0"])
                    .arg(&partial)
                    .status()
                    .context("cannot run ffmpeg")?;
                if !status.success() {
                    bail!("ffmpeg failed remuxing {}", clip.display());
                }
                std::fs::rename(&partial, &remuxed)?;
            }
            Ok(remuxed)
        }
    }
}

/// Encodes the index-first clip.
fn encode_clip(dir: &std::path::Path, clip: &std::path::Path, seconds: u32) -> Result<()> {
    let partial = dir.join(format!("phone-720p-{seconds}s.partial.mp4"));
    // Two tones with noise in each channel: AAC has real work to do, unlike silence.
    let audio = format!(
        "aevalsrc=0.2*sin(2*PI*440*t)+0.05*(random(0)-0.5)|0.2*sin(2*PI*660*t)+0.05*(random(1)-0.5):sample_rate=48000:duration={seconds}"
    );
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=1280x720:rate=30:duration={seconds}"),
        ])
        .args(["-f", "lavfi", "-i", &audio])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "6M",
            "-maxrate",
            "6M",
            "-bufsize",
            "12M",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "192k",
            "-ac",
            "2",
            "-ar",
            "48000",
            "-movflags",
            "+faststart",
            "-shortest",
        ])
        .arg(&partial)
        .status()
        .context("cannot run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", clip.display());
    }
    std::fs::rename(&partial, clip)?;
    Ok(())
}

/// The job's timings from the runner's log. The runner logs completion just after
/// recording it, so a poll can see `completed` a moment before the line exists.
fn runner_timeline(app: &mut App, job: &str) -> Result<JobTimeline> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(timeline) = JobTimeline::from_log(&app.runner_log(), job) {
            return Ok(timeline);
        }
        if Instant::now() > deadline {
            bail!("the runner's log has no timings for {job}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A job's conversion as the runner logged it.
#[derive(Debug, PartialEq)]
struct JobTimeline {
    started: SystemTime,
    completed: SystemTime,
    ffmpeg_seconds: f64,
}

impl JobTimeline {
    /// From the runner's tracing lines, e.g.
    /// `2026-01-01T00:00:00.123456Z  INFO job{job_id=job_… worker=0}: spinmesh_runner::worker: conversion completed output_bytes=1 seconds=0.9`.
    fn from_log(log: &str, job: &str) -> Option<JobTimeline> {
        let span = format!("job_id={job} ");
        let line_time = |line: &str| -> Option<SystemTime> {
            let stamp = line.split_whitespace().next()?;
            Some(
                DateTime::parse_from_rfc3339(stamp)
                    .ok()?
                    .with_timezone(&Utc)
                    .into(),
            )
        };
        let job_lines: Vec<&str> = log.lines().filter(|line| line.contains(&span)).collect();
        let started = job_lines
            .iter()
            .rev()
            .find(|line| line.contains("conversion started"))?;
        let completed = job_lines
            .iter()
            .rev()
            .find(|line| line.contains("conversion completed"))?;
        let ffmpeg_seconds = completed
            .split_whitespace()
            .find_map(|field| field.strip_prefix("seconds="))?
            .parse()
            .ok()?;
        Some(JobTimeline {
            started: line_time(started)?,
            completed: line_time(completed)?,
            ffmpeg_seconds,
        })
    }
}

/// Streams a `megabytes` upload, sampling host and runner memory meanwhile.
pub fn upload_memory(app: &App, token: &str, megabytes: usize) -> Result<UploadMemory> {
    let host = app.host_pid();
    let runner = app.runner_pid().context("the app runs without a runner")?;
    let (host_before, runner_before) = (
        rss_mib(host).context("host memory")?,
        rss_mib(runner).context("runner memory")?,
    );
    // An MP4 header (what the upload checks) followed by filler; the runner will
    // later fail to convert it, which is beside the point here. 100 MB stays under
    // the app's default 100 MiB limit with the multipart framing.
    let mut bytes = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    bytes.resize(megabytes * 1_000_000, 0x5a);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut host_peak, mut runner_peak) = (host_before, runner_before);
            while !done.load(Ordering::Relaxed) {
                host_peak = host_peak.max(rss_mib(host).unwrap_or(0.0));
                runner_peak = runner_peak.max(rss_mib(runner).unwrap_or(0.0));
                std::thread::sleep(Duration::from_millis(5));
            }
            (host_peak, runner_peak)
        })
    };
    let body = multipart_body(BOUNDARY, &[("file", Some("big.mp4"), &bytes)]);
    drop(bytes);
    let started = Instant::now();
    let uploaded = upload(app, token, body);
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (host_peak, runner_peak) = sampler.join().expect("the memory sampler does not panic");
    uploaded?;
    let figures = UploadMemory {
        megabytes,
        megabytes_per_second: megabytes as f64 / elapsed,
        host_before_mib: host_before,
        host_peak_mib: host_peak,
        runner_before_mib: runner_before,
        runner_peak_mib: runner_peak,
    };
    println!(
        "upload {megabytes} MB: {:.0} MB/s; RSS host {host_before:.1} → peak {host_peak:.1} MiB, runner {runner_before:.1} → peak {runner_peak:.1} MiB",
        figures.megabytes_per_second,
    );
    Ok(figures)
}

/// Resident memory of a process now, in MiB (Linux `VmRSS`).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Sends a multipart form built by [`multipart_body`] with [`BOUNDARY`].
fn upload(app: &App, token: &str, body: Vec<u8>) -> Result<String> {
    let response = client()
        .post(app.url("/api/upload"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()?;
    if response.status() != 202 {
        bail!(
            "upload answered {}: {}",
            response.status(),
            response.text()?
        );
    }
    let job: serde_json::Value = response.json()?;
    job["job_id"]
        .as_str()
        .map(str::to_string)
        .context("upload answered without a job id")
}

fn wait_for_completion(app: &App, token: &str, job: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let client = client();
    while Instant::now() < deadline {
        let status: serde_json::Value = client
            .get(app.url(&format!("/api/jobs/{job}")))
            .bearer_auth(token)
            .send()?
            .json()?;
        match status["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => bail!("conversion did not complete: {status}"),
            _ => std::thread::sleep(POLL_INTERVAL),
        }
    }
    bail!("conversion did not finish within 10 minutes")
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("spinmesh-bench-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_job_timings_from_the_runner_log() {
        let log = "\
2026-01-01T00:00:00.500000Z  INFO job{job_id=job_b worker=0}: spinmesh_runner::worker: conversion started attempt=1 size_bytes=5
2026-01-01T00:00:01.000000Z  INFO job{job_id=job_a worker=1}: spinmesh_runner::worker: conversion started attempt=1 size_bytes=5
2026-01-01T00:00:02.250000Z  INFO job{job_id=job_a worker=1}: spinmesh_runner::worker: conversion completed output_bytes=9 seconds=1.2
";
        let timeline = JobTimeline::from_log(log, "job_a").unwrap();
        let at = |s: &str| -> SystemTime {
            DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&Utc)
                .into()
        };
        assert_eq!(
            timeline,
            JobTimeline {
                started: at("2026-01-01T00:00:01Z"),
                completed: at("2026-01-01T00:00:02.25Z"),
                ffmpeg_seconds: 1.2
            }
        );
        assert_eq!(JobTimeline::from_log(log, "job_b"), None, "not completed");
        assert_eq!(JobTimeline::from_log(log, "job_c"), None);
    }
}
