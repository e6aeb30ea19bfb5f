//! Conversion and upload figures: end-to-end conversion of a phone-like clip
//! against bare ffmpeg on the same file, and host/runner peak memory while a
//! large file streams through. The conversion figures work on any [`BenchApp`], so the
//! cluster's figures (`bench_cluster`) are measured the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use spinmesh_e2e::{App, client, multipart_body};
use spinmesh_runner::ffmpeg::Input;

use crate::bench::BenchApp;
use crate::bench_report::{ClipLayout, Conversion, UploadMemory, median};
use crate::build::root;

const BOUNDARY: &str = "spinmesh-bench-boundary";
/// Status polls this often; the runner's log gives the exact completion time.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A synthetic MP4 to convert: a moving test pattern in H.264 over two noisy tones in
/// stereo 48 kHz AAC, so the conversion decodes real AAC and encodes stereo MP3. Made
/// once and kept under `target/bench-media/`; the index-last copy is the same streams
/// remuxed.
pub struct Clip {
    /// Names the file, with the duration.
    stem: &'static str,
    seconds: u32,
    width: u32,
    height: u32,
    fps: u32,
    video_kbps: u32,
    audio_kbps: u32,
}

impl Clip {
    /// Like a phone's: 720p at a phone's bitrate.
    pub fn phone(seconds: u32) -> Clip {
        Clip {
            stem: "phone-720p",
            seconds,
            width: 1280,
            height: 720,
            fps: 30,
            video_kbps: 6000,
            audio_kbps: 192,
        }
    }

    /// Like a recorded talk: small, low-rate video, so the file is small for its
    /// duration.
    pub fn talk(seconds: u32) -> Clip {
        Clip {
            stem: "talk-180p",
            seconds,
            width: 320,
            height: 180,
            fps: 15,
            video_kbps: 48,
            audio_kbps: 96,
        }
    }

    pub fn description(&self) -> String {
        let rate = |kbps: u32| {
            if kbps >= 1000 {
                format!("{} Mb/s", f64::from(kbps) / 1000.0)
            } else {
                format!("{kbps} kb/s")
            }
        };
        format!(
            "{} s, {}×{} {} fps H.264 at {} + stereo 48 kHz AAC at {}",
            self.seconds,
            self.width,
            self.height,
            self.fps,
            rate(self.video_kbps),
            rate(self.audio_kbps)
        )
    }

    /// The clip's file in `layout`, made when missing.
    pub fn path(&self, layout: ClipLayout) -> Result<PathBuf> {
        let dir = root().join("target/bench-media");
        std::fs::create_dir_all(&dir)?;
        let name = format!("{}-{}s", self.stem, self.seconds);
        let clip = dir.join(format!("{name}.mp4"));
        if !clip.exists() {
            self.encode(&dir.join(format!("{name}.partial.mp4")), &clip)?;
        }
        match layout {
            ClipLayout::IndexFirst => Ok(clip),
            ClipLayout::IndexLast => {
                let remuxed = dir.join(format!("{name}-index-last.mp4"));
                if !remuxed.exists() {
                    let partial = dir.join(format!("{name}-index-last.partial.mp4"));
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

    /// Encodes the index-first clip into `partial`, then renames it to `clip`.
    fn encode(&self, partial: &Path, clip: &Path) -> Result<()> {
        let seconds = self.seconds;
        // Two tones with noise in each channel: AAC has real work to do, unlike silence.
        let audio = format!(
            "aevalsrc=0.2*sin(2*PI*440*t)+0.05*(random(0)-0.5)|0.2*sin(2*PI*660*t)+0.05*(random(1)-0.5):sample_rate=48000:duration={seconds}"
        );
        let video = format!(
            "testsrc2=size={}x{}:rate={}:duration={seconds}",
            self.width, self.height, self.fps
        );
        let (video_rate, video_buffer, audio_rate) = (
            format!("{}k", self.video_kbps),
            format!("{}k", 2 * self.video_kbps),
            format!("{}k", self.audio_kbps),
        );
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", &video])
            .args(["-f", "lavfi", "-i", &audio])
            .args(["-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-b:v", &video_rate, "-maxrate", &video_rate])
            .args(["-bufsize", &video_buffer, "-pix_fmt", "yuv420p"])
            .args([
                "-c:a",
                "aac",
                "-b:a",
                &audio_rate,
                "-ac",
                "2",
                "-ar",
                "48000",
            ])
            .args(["-movflags", "+faststart", "-shortest"])
            .arg(partial)
            .status()
            .context("cannot run ffmpeg")?;
        if !status.success() {
            bail!("ffmpeg failed making {}", clip.display());
        }
        std::fs::rename(partial, clip)?;
        Ok(())
    }
}

/// [`conversion`] of `clip` in each layout; a failure is reported as not measured.
pub fn conversions(
    app: &mut impl BenchApp,
    token: &str,
    clip: &Clip,
    runs: usize,
) -> Vec<(ClipLayout, Result<Conversion, String>)> {
    ClipLayout::ALL
        .into_iter()
        .map(|layout| {
            let figures = conversion(app, token, clip, runs, layout);
            (layout, figures.map_err(|err| format!("{err:#}")))
        })
        .collect()
}

/// Converts `clip` `runs` times each way, alternating so both see the same machine
/// load.
fn conversion(
    app: &mut impl BenchApp,
    token: &str,
    clip: &Clip,
    runs: usize,
    layout: ClipLayout,
) -> Result<Conversion> {
    let path = clip.path(layout)?;
    let bytes = std::fs::read(&path)?;
    let form = upload_form(&bytes);
    let scratch = tempfile_dir()?;
    let bare_args = bare_ffmpeg_args(&path, &scratch.join("bare.mp3"))?;
    let mut figures = Conversion {
        layout,
        clip: clip.description(),
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
    let upload_url = app.url("/api/upload");
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
            bail!("bare ffmpeg failed on {}", path.display());
        }

        // The form is built before the clock starts: timing starts as the client sends.
        let body = form.clone();
        let started_at = SystemTime::now();
        let started = Instant::now();
        let job = upload(&upload_url, token, body)?;
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
        "convert {} s clip, {} ({:.0} MB): bare ffmpeg {:.3} s, upload→completed {:.3} s (upload {:.3} s, queue {:.3} s, runner's ffmpeg {:.3} s), medians of {runs}",
        clip.seconds,
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

/// The runner's own ffmpeg arguments for `input`, with its default settings (MP3
/// quality, output limits), so bare ffmpeg does exactly the runner's work.
fn bare_ffmpeg_args(input: &Path, output: &Path) -> Result<Vec<std::ffi::OsString>> {
    use clap::Parser;
    let defaults =
        spinmesh_runner::Config::try_parse_from(["spinmesh-runner", "--token", "unused"])?;
    Ok(spinmesh_runner::ffmpeg::ffmpeg_args(
        &Input::File(input),
        output,
        defaults.quality,
        &defaults.output_limits(),
    ))
}

/// The job's timings from the runners' log. A runner logs completion just after
/// recording it, so a poll can see `completed` a moment before the line exists.
pub fn runner_timeline(app: &mut impl BenchApp, job: &str) -> Result<JobTimeline> {
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
pub struct JobTimeline {
    pub started: SystemTime,
    pub completed: SystemTime,
    /// The runner's `seconds`: fetching the input (from object storage; nothing to
    /// fetch from a local spool or for a conversion started as the upload arrived) and
    /// ffmpeg.
    pub ffmpeg_seconds: f64,
}

impl JobTimeline {
    /// From the runners' tracing lines, e.g.
    /// `2026-01-01T00:00:00.123456Z  INFO job{job_id=job_… worker=0}: spinmesh_runner::worker: conversion completed output_bytes=1 seconds=0.9`.
    /// Several runners' logs may be given one after the other: the latest line of each
    /// kind counts (a head start given back on one runner is converted again, maybe on
    /// another).
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
        let job_lines: Vec<(SystemTime, &str)> = log
            .lines()
            .filter(|line| line.contains(&span))
            .filter_map(|line| Some((line_time(line)?, line)))
            .collect();
        let latest = |event: &str| {
            job_lines
                .iter()
                .filter(|(_, line)| line.contains(event))
                .max_by_key(|(at, _)| *at)
        };
        let (started, _) = latest("conversion started")?;
        let (completed, completed_line) = latest("conversion completed")?;
        let ffmpeg_seconds = completed_line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("seconds="))?
            .parse()
            .ok()?;
        Some(JobTimeline {
            started: *started,
            completed: *completed,
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
    let uploaded = upload(&app.url("/api/upload"), token, body);
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

/// A multipart form with `clip` as its file, as [`upload`] sends it.
pub fn upload_form(clip: &[u8]) -> Vec<u8> {
    multipart_body(BOUNDARY, &[("file", Some("clip.mp4"), clip)])
}

/// Sends a multipart form built by [`multipart_body`] with [`BOUNDARY`] to
/// `upload_url`; returns the job's id.
pub fn upload(upload_url: &str, token: &str, body: Vec<u8>) -> Result<String> {
    let response = client()
        .post(upload_url)
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

fn wait_for_completion(app: &impl BenchApp, token: &str, job: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let client = client();
    while Instant::now() < deadline {
        if is_completed(&client, app, token, job)? {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!("conversion did not finish within 10 minutes")
}

/// Whether the job has completed, as a client sees it; an error once it failed or was
/// cancelled.
pub fn is_completed(
    client: &reqwest::blocking::Client,
    app: &impl BenchApp,
    token: &str,
    job: &str,
) -> Result<bool> {
    let status: serde_json::Value = client
        .get(app.url(&format!("/api/jobs/{job}")))
        .bearer_auth(token)
        .send()?
        .json()?;
    match status["status"].as_str() {
        Some("completed") => Ok(true),
        Some("failed" | "cancelled") => bail!("conversion did not complete: {status}"),
        _ => Ok(false),
    }
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

    #[test]
    fn the_latest_lines_count_across_runners_logs() {
        // Runner 1's log follows runner 0's: the head start given back on runner 1
        // came first, the conversion on runner 0 later.
        let logs = "\
2026-01-01T00:00:03.000000Z  INFO job{job_id=job_a worker=0}: spinmesh_runner::worker: conversion started attempt=1 size_bytes=5
2026-01-01T00:00:04.000000Z  INFO job{job_id=job_a worker=0}: spinmesh_runner::worker: conversion completed output_bytes=9 seconds=0.8
2026-01-01T00:00:01.000000Z  INFO job{job_id=job_a worker=\"early\"}: spinmesh_runner::worker: conversion started while the upload is arriving
";
        let timeline = JobTimeline::from_log(logs, "job_a").unwrap();
        let expected: SystemTime = DateTime::parse_from_rfc3339("2026-01-01T00:00:03Z")
            .unwrap()
            .with_timezone(&Utc)
            .into();
        assert_eq!(timeline.started, expected);
    }
}
