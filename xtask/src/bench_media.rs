//! Conversion and upload figures: end-to-end conversion time against bare
//! ffmpeg on the same clip, and host/runner peak memory while a 100 MB file
//! streams through.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spinmesh_e2e::{App, client, multipart_body, peak_rss_mib};

const BOUNDARY: &str = "spinmesh-bench-boundary";

/// Converts a `seconds`-long clip both ways and prints the overhead.
pub fn conversion(app: &App, token: &str, seconds: u32) -> Result<()> {
    let dir = tempfile_dir()?;
    let clip = dir.join("clip.mp4");
    ffmpeg(&[
        "-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}"),
        "-f", "lavfi", "-i", &format!("testsrc=size=320x240:rate=25:duration={seconds}"),
        "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    ], &clip)?;

    // The runner's own settings (libmp3lame, -q:a 2, no video).
    let started = Instant::now();
    ffmpeg_convert(&clip, &dir.join("bare.mp3"))?;
    let bare = started.elapsed();

    let bytes = std::fs::read(&clip)?;
    let started = Instant::now();
    let job = upload(app, token, "clip.mp4", bytes)?;
    wait_for_completion(app, token, &job)?;
    let end_to_end = started.elapsed();

    let overhead = (end_to_end.as_secs_f64() / bare.as_secs_f64() - 1.0) * 100.0;
    println!(
        "convert {seconds} s clip        bare ffmpeg {:.2} s, spinmesh upload→completed {:.2} s: overhead {overhead:+.1} %",
        bare.as_secs_f64(),
        end_to_end.as_secs_f64()
    );
    Ok(())
}

/// Streams a `megabytes` upload and reports throughput and peak memory.
pub fn upload_memory(app: &App, token: &str, megabytes: usize) -> Result<()> {
    let host_before = peak_rss_mib(app.host_pid()).context("host memory")?;
    let runner_pid = app.runner_pid().context("the app runs without a runner")?;
    let runner_before = peak_rss_mib(runner_pid).context("runner memory")?;
    // An MP4 header (what the upload checks) followed by filler; the runner will
    // later fail to convert it, which is beside the point here.
    let mut bytes = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    bytes.resize(megabytes << 20, 0x5a);
    let started = Instant::now();
    upload(app, token, "big.mp4", bytes)?;
    let elapsed = started.elapsed().as_secs_f64();
    let host_after = peak_rss_mib(app.host_pid()).context("host memory")?;
    let runner_after = peak_rss_mib(runner_pid).context("runner memory")?;
    println!(
        "upload {megabytes} MB              {:.0} MB/s; peak RSS host {host_before:.1} → {host_after:.1} MiB, runner {runner_before:.1} → {runner_after:.1} MiB",
        megabytes as f64 / elapsed
    );
    Ok(())
}

fn upload(app: &App, token: &str, filename: &str, bytes: Vec<u8>) -> Result<String> {
    let body = multipart_body(BOUNDARY, &[("file", Some(filename), &bytes)]);
    drop(bytes);
    let response = client()
        .post(app.url("/api/upload"))
        .bearer_auth(token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()?;
    if response.status() != 202 {
        bail!("upload answered {}: {}", response.status(), response.text()?);
    }
    let job: serde_json::Value = response.json()?;
    job["job_id"].as_str().map(str::to_string).context("upload answered without a job id")
}

fn wait_for_completion(app: &App, token: &str, job: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let status: serde_json::Value =
            client().get(app.url(&format!("/api/jobs/{job}"))).bearer_auth(token).send()?.json()?;
        match status["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => bail!("conversion did not complete: {status}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    bail!("conversion did not finish within 10 minutes")
}

fn ffmpeg(inputs: &[&str], output: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(inputs)
        .arg(output)
        .status()
        .context("cannot run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", output.display());
    }
    Ok(())
}

fn ffmpeg_convert(input: &Path, output: &Path) -> Result<()> {
    let input = input.to_str().context("non-UTF-8 temp path")?;
    ffmpeg(&["-i", input, "-vn", "-c:a", "libmp3lame", "-q:a", "2"], output)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("spinmesh-bench-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
