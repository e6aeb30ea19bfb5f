//! `cargo xtask bench`: load figures under wrk. Benchmarks report; they do not
//! pass or fail (tests must stay deterministic on a noisy machine).

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;
use spinmesh_e2e::App;

use crate::build::build_all;
use crate::setup::ensure_tool;

#[derive(Args)]
pub struct BenchArgs {
    /// A short run (for CI smoke checks): fewer seconds per scenario.
    #[arg(long)]
    quick: bool,
    /// Connections kept open by the load generator (login uses fewer).
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

/// One scenario's result.
#[derive(Debug)]
pub struct Figures {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    ensure_tool("wrk", "wrk", "--version")?;
    build_all()?;
    let seconds = if args.quick { 3 } else { 15 };
    crate::setup::ensure_ffmpeg()?;
    // Rate limits that never trip: the figures include the limiter's cost (a key-value
    // read and write per request) without measuring 429s.
    let app = App::builder()
        .with_runner()
        .variable("rate_limit_per_address", UNREACHED_LIMIT)
        .variable("rate_limit_per_user", UNREACHED_LIMIT)
        .try_start()
        .map_err(|log| anyhow::anyhow!("the app did not start:\n{log}"))?;

    let token = sign_up(&app)?;
    create_profile(&app, &token)?;
    let bearer = format!("Bearer {token}");
    let token_body = serde_json::json!({ "token": token }).to_string();
    let login_body = serde_json::json!({ "username": BENCH_USER, "password": BENCH_PASSWORD }).to_string();
    let scenarios = [
        ("GET /health", Load::get(&app.url("/health")), args.connections),
        ("GET /api/validate", Load::get(&app.url("/api/validate")).header("Authorization", &bearer), args.connections),
        ("POST /api/validate", Load::post_json(&app.url("/api/validate"), &token_body), args.connections),
        // Verify + denylist read (KV) + one SQLite query.
        ("GET /api/users/me", Load::get(&app.url("/api/users/me")).header("Authorization", &bearer), args.connections),
        // argon2id bounds login by design: a few connections keep queueing from
        // turning into timeouts.
        ("POST /api/login", Load::post_json(&app.url("/api/login"), &login_body), 4),
    ];

    println!("scenario                 req/s     p50 ms   p99 ms   errors   ({seconds}s each, 2 threads)");
    for (name, load, connections) in scenarios {
        let figures = run_wrk(&load, seconds, connections)?;
        print_row(name, &figures);
    }
    crate::bench_media::conversion(&app, &token, if args.quick { 10 } else { 60 })?;
    crate::bench_media::upload_memory(&app, &token, if args.quick { 20 } else { 100 })?;
    Ok(())
}

const UNREACHED_LIMIT: &str = "1000000000";
const BENCH_USER: &str = "bench_user";
const BENCH_PASSWORD: &str = "bench-password-1";

/// Registers the benchmark user and returns an access token.
fn sign_up(app: &App) -> Result<String> {
    let client = spinmesh_e2e::client();
    let account = serde_json::json!({ "username": BENCH_USER, "email": "bench@example.com", "password": BENCH_PASSWORD });
    let registered = client.post(app.url("/api/register")).json(&account).send()?;
    if !registered.status().is_success() {
        bail!("registering the benchmark user failed: {}", registered.text()?);
    }
    let login: serde_json::Value = client.post(app.url("/api/login")).json(&account).send()?.json()?;
    login["token"].as_str().map(str::to_string).context("login answered without a token")
}

/// Gives the benchmark user a profile, so `GET /api/users/me` finds one.
fn create_profile(app: &App, token: &str) -> Result<()> {
    let profile = serde_json::json!({ "email": "bench@example.com", "full_name": "Bench User" });
    let created = spinmesh_e2e::client().post(app.url("/api/users")).bearer_auth(token).json(&profile).send()?;
    if !created.status().is_success() {
        bail!("creating the benchmark profile failed: {}", created.text()?);
    }
    Ok(())
}

/// One request shape for wrk, given to it as a Lua script.
pub struct Load {
    url: String,
    method: &'static str,
    body: Option<String>,
    headers: Vec<(String, String)>,
}

impl Load {
    pub fn get(url: &str) -> Load {
        Load { url: url.to_string(), method: "GET", body: None, headers: Vec::new() }
    }

    pub fn post_json(url: &str, body: &str) -> Load {
        Load { url: url.to_string(), method: "POST", body: Some(body.to_string()), headers: Vec::new() }
            .header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Load {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn script(&self) -> String {
        let quote = |s: &str| format!("{s:?}"); // Rust's escaping is valid Lua for these strings
        let mut script = format!("wrk.method = {}\n", quote(self.method));
        if let Some(body) = &self.body {
            script.push_str(&format!("wrk.body = {}\n", quote(body)));
        }
        for (name, value) in &self.headers {
            script.push_str(&format!("wrk.headers[{}] = {}\n", quote(name), quote(value)));
        }
        script
    }
}

fn print_row(name: &str, figures: &Figures) {
    println!(
        "{name:<22} {:>9.0} {:>9.2} {:>8.2} {:>8}",
        figures.requests_per_second, figures.p50_ms, figures.p99_ms, figures.errors
    );
}

/// Warms up for a second, then measures.
pub fn run_wrk(load: &Load, seconds: u32, connections: u32) -> Result<Figures> {
    let script = std::env::temp_dir().join(format!("spinmesh-bench-{}.lua", std::process::id()));
    std::fs::write(&script, load.script())?;
    let wrk = |duration: u32| {
        Command::new("wrk")
            .args(["-t2", &format!("-c{connections}"), &format!("-d{duration}s"), "--timeout", "10s", "--latency", "-s"])
            .arg(&script)
            .arg(&load.url)
            .output()
            .context("cannot run wrk")
    };
    wrk(1)?;
    let output = wrk(seconds)?;
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

fn parse_wrk(text: &str) -> Result<Figures> {
    let field = |prefix: &str| -> Option<&str> {
        text.lines().map(str::trim).find_map(|line| line.strip_prefix(prefix)).map(str::trim)
    };
    let requests_per_second = field("Requests/sec:").context("wrk output has no Requests/sec")?.parse()?;
    let p50_ms = parse_duration_ms(field("50%").context("wrk output has no p50")?)?;
    let p99_ms = parse_duration_ms(field("99%").context("wrk output has no p99")?)?;
    // wrk prints "Non-2xx or 3xx responses: N" and "Socket errors: ..." only when non-zero.
    let mut errors = field("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse::<u64>)?;
    if let Some(socket) = field("Socket errors:") {
        errors += socket
            .split(',')
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(Figures { requests_per_second, p50_ms, p99_ms, errors })
}

fn parse_duration_ms(text: &str) -> Result<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).context("duration without unit")?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => bail!("unknown wrk duration unit {unit:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_output() {
        let output = "Running 3s test @ http://127.0.0.1:1/health
  2 threads and 32 connections
  Latency Distribution
     50%    2.10ms
     75%    3.00ms
     90%    4.00ms
     99%  812.00us
  12000 requests in 3.00s, 1.2MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   4000.12
Transfer/sec:    400.00KB
";
        let figures = parse_wrk(output).unwrap();
        assert_eq!(figures.requests_per_second, 4000.12);
        assert_eq!(figures.p50_ms, 2.10);
        assert_eq!(figures.p99_ms, 0.812);
        assert_eq!(figures.errors, 8);
    }
}
