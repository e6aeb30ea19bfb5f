//! The web UI and the API explorer in a real browser: Debian's headless Chromium driven
//! by playwright-core (`tests/browser/`), against the repository's app with the runner
//! and real ffmpeg. `cargo xtask test` installs Chromium and the npm packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{Value, json};
use spinmesh_e2e::{Api, App, clips, repo_root};

fn browser_dir() -> PathBuf {
    repo_root().join("tests/browser")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's `chromium` package (cargo xtask test does, as root)",
        path.display()
    );
    path
}

fn node() -> Command {
    let mut command = Command::new("node");
    command.current_dir(browser_dir());
    command
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The videos the browser uploads, written into `dir`: `holiday.mp4`, an hour of tone
/// padded to 30 MB, so its upload takes several `PATCH`es (time to interrupt it) and its
/// conversion seconds (time to watch it); and `clip.mp4`, a second of tone and pattern.
fn videos(dir: &Path) -> (PathBuf, PathBuf) {
    let long = dir.join("holiday.mp4");
    std::fs::write(&long, clips::padded(clips::long_clip(), 30_000_000)).unwrap();
    let short = dir.join("clip.mp4");
    std::fs::write(&short, clips::short_clip()).unwrap();
    (long, short)
}

#[test]
fn web_modules_pass_their_unit_tests() {
    let output = node()
        .args(["--test", "openapi.test.mjs", "events.test.mjs"])
        .output()
        .expect("node is installed");
    assert_success(&output, "node --test openapi.test.mjs events.test.mjs");
}

/// What `ui.mjs` leaves in `target/browser/`: the upload under way, cut off, the
/// conversion live, the result; a failed conversion; the shop.
const SCREENSHOTS: [&str; 6] = [
    "upload-in-progress.png",
    "upload-interrupted.png",
    "converting.png",
    "ui-after-conversion.png",
    "conversion-failed.png",
    "shop.png",
];

/// The catalogue the browser shops from, created by the admin over HTTP: a Turntable
/// with 2 in stock and a product whose stock is not tracked. Returns them as created.
fn stock_catalogue(app: &App) -> Value {
    let api = Api::new(app);
    let admin = api.admin();
    let products = [
        json!({ "name": "Turntable", "price": "199.00", "category": "audio", "stock": 2 }),
        json!({ "name": "Vinyl sleeve", "price": "4.50", "category": "accessories" }),
    ]
    .map(|product| {
        let created = api.send_json(Method::POST, "/api/products", &admin, product);
        assert_eq!(created.status, 201, "{}", created.body);
        created.body
    });
    Value::from(products.to_vec())
}

/// Sign up, sign in, upload a video, interrupt the upload, reload, resume it, watch the
/// conversion live, download, list; a conversion that fails, retried; shop from the real
/// catalogue until a product runs out; then the API explorer. Screenshots of the stages
/// are left in `target/browser/` ([`SCREENSHOTS`]).
///
/// The runner's ffmpeg fails conversions while the switch file exists, which `ui.mjs`
/// creates and removes (`FAIL_SWITCH`); one attempt per job, so a failure is final.
#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn web_ui_converts_a_video_in_chromium() {
    let chromium = chromium();
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (cargo xtask test does)"
    );
    let media = tempfile::tempdir().unwrap();
    let (long, short) = videos(media.path());
    let (ffmpeg, fail_switch) = clips::ffmpeg_failing_while_switched_on(media.path());
    std::fs::remove_file(&fail_switch).unwrap();
    let artifacts = repo_root().join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(artifacts.join(name));
    }

    let app = App::builder()
        .with_runner()
        .runner_arg("--ffmpeg")
        .runner_arg(ffmpeg.to_str().unwrap())
        .runner_arg("--max-attempts")
        .runner_arg("1")
        .start();
    let products = stock_catalogue(&app);
    let output = node()
        .arg("ui.mjs")
        .arg(&app.url)
        .arg(&long)
        .arg(&short)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .env("FAIL_SWITCH", &fail_switch)
        .env("SHOP_PRODUCTS", products.to_string())
        .output()
        .expect("node is installed");
    assert_success(&output, "the browser test (tests/browser/ui.mjs)");
    for name in SCREENSHOTS {
        let png = std::fs::read(artifacts.join(name))
            .unwrap_or_else(|error| panic!("the browser test saved {name}: {error}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name} is a real screenshot"
        );
    }
}
