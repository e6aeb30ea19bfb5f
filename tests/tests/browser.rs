//! The web UI and the API explorer in a real browser: Debian's headless Chromium driven
//! by playwright-core (`tests/browser/`), against the repository's app with the runner
//! and real ffmpeg. `cargo xtask test` installs Chromium and the npm packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{Value, json};
use spinmesh_e2e::{Api, App, repo_root};

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

/// 3 s of 440 Hz sine and a test pattern.
fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    let output = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=3",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10:duration=3",
            "-shortest",
        ])
        .arg(&path)
        .output()
        .expect("ffmpeg is installed");
    assert_success(&output, "ffmpeg");
    path
}

#[test]
fn explorer_reads_openapi_documents() {
    let output = node()
        .args(["--test", "openapi.test.mjs"])
        .output()
        .expect("node is installed");
    assert_success(&output, "node --test openapi.test.mjs");
}

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

/// Sign up, sign in, upload, watch the conversion, download, list, screenshot
/// (`target/browser/ui-after-conversion.png`), shop from the real catalogue until a
/// product runs out (`target/browser/shop.png`), then the API explorer.
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
    let clip = clip(media.path());
    let artifacts = repo_root().join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("ui-after-conversion.png");
    let _ = std::fs::remove_file(&screenshot);

    let app = App::builder().with_runner().start();
    let products = stock_catalogue(&app);
    let output = node()
        .arg("ui.mjs")
        .arg(&app.url)
        .arg(&clip)
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .env("SHOP_PRODUCTS", products.to_string())
        .output()
        .expect("node is installed");
    assert_success(&output, "the browser test (tests/browser/ui.mjs)");
    let png = std::fs::read(&screenshot).expect("the browser test saved a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real screenshot"
    );
}
