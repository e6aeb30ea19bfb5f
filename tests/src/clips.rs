//! Media for the upload suites, made here with ffmpeg's `lavfi` test sources (so nothing
//! binary is checked in), and ffprobe's view of what comes back.
//!
//! Each clip is made once per test process and kept: the long one takes seconds to
//! encode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// An ffmpeg for the runner (`--ffmpeg`), written into `dir`, whose conversions die by
/// SIGKILL while the file `dir/fail` exists and run the real ffmpeg once it is removed:
/// a job fails for real, then converts when retried. Returns the wrapper and the switch
/// file (created, so conversions fail until the caller removes it).
pub fn ffmpeg_failing_while_switched_on(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let switch = dir.join("fail");
    std::fs::write(&switch, b"").unwrap();
    let wrapper = dir.join("switched-ffmpeg");
    // Conversions are recognised by their first argument, `-nostdin`.
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"-nostdin\" ] && [ -e '{}' ]; then kill -KILL $$; fi\nexec ffmpeg \"$@\"\n",
        switch.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, switch)
}

/// How long [`long_clip`] plays.
pub const LONG_CLIP_SECS: f64 = 3600.0;
/// How long [`short_clip`] plays.
pub const SHORT_CLIP_SECS: f64 = 1.0;

/// An hour of 8 kHz mono AAC at 8 kbit/s in an MP4, no video: under 4 MB to upload, but
/// seconds of work for ffmpeg, so a test can act while it converts.
pub fn long_clip() -> Vec<u8> {
    static CLIP: OnceLock<Vec<u8>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let tone = format!("sine=frequency=440:sample_rate=8000:duration={LONG_CLIP_SECS}");
        encode(&[&tone], &["-ac", "1", "-c:a", "aac", "-b:a", "8k"])
    })
    .clone()
}

/// A second of tone and test pattern (MPEG-4 video, AAC audio): converted at once.
pub fn short_clip() -> Vec<u8> {
    static CLIP: OnceLock<Vec<u8>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let tone = format!("sine=frequency=440:duration={SHORT_CLIP_SECS}");
        let pattern = format!("testsrc=size=160x120:rate=10:duration={SHORT_CLIP_SECS}");
        encode(
            &[&tone, &pattern],
            &["-c:v", "mpeg4", "-c:a", "aac", "-shortest"],
        )
    })
    .clone()
}

/// `clip` (an MP4) made `length` bytes long with a top-level `free` box of zeros after
/// it, which players (and ffmpeg) skip: a big upload that converts like the clip.
pub fn padded(mut clip: Vec<u8>, length: usize) -> Vec<u8> {
    let padding = length - clip.len();
    clip.extend_from_slice(&u32::try_from(padding).unwrap().to_be_bytes());
    clip.extend_from_slice(b"free");
    clip.resize(length, 0);
    clip
}

/// An MP4 made by ffmpeg from `sources` (lavfi filter graphs) with `codecs` (its output
/// options); its bytes.
fn encode(sources: &[&str], codecs: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error", "-y"]);
    for source in sources {
        command.args(["-f", "lavfi", "-i", source]);
    }
    let output = command
        .args(codecs)
        .arg(&path)
        .output()
        .expect("ffmpeg is installed (cargo xtask test installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {sources:?} {codecs:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&path).unwrap()
}

/// What ffprobe makes of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The container, e.g. `mp3` or `mov,mp4,m4a,3gp,3g2,mj2`.
    pub format: String,
    /// The first stream's codec, e.g. `mp3`.
    pub codec: String,
    pub seconds: f64,
}

/// ffprobe's reading of `bytes`; panics if ffprobe cannot read them at all.
pub fn probe(bytes: &[u8]) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probed");
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args([
            "-show_entries",
            "format=format_name,duration:stream=codec_name",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe is installed (cargo xtask test installs it)");
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    Probe {
        format: text(&info["format"]["format_name"]),
        codec: text(&info["streams"][0]["codec_name"]),
        seconds: info["format"]["duration"]
            .as_str()
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or(0.0),
    }
}

impl Probe {
    /// An MP3 lasting `seconds`, give or take one (encoders pad the ends).
    pub fn assert_mp3_of(&self, seconds: f64) {
        assert_eq!(
            (self.format.as_str(), self.codec.as_str()),
            ("mp3", "mp3"),
            "{self:?}"
        );
        assert!(
            (self.seconds - seconds).abs() < 1.0,
            "{self:?}, expected {seconds} s"
        );
    }
}
