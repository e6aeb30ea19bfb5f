//! `cargo xtask bench`: spinmesh against the seed stack and a native ceiling, in
//! one run on this machine, written to `BENCHMARKS.md`. Benchmarks report; they do
//! not pass or fail (tests stay deterministic on a noisy machine).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use spinmesh_e2e::{App, AppBuilder, Engine};

use crate::bench_baseline::Baseline;
use crate::bench_cluster::ThroughputPlan;
use crate::bench_media::Clip;
use crate::bench_report::{
    Figures, LoadSettings, Machine, Outcome, Report, Row, Scope, Stack, key, render,
};
use crate::build::{build_all, root};
use crate::setup::ensure_tool;

#[derive(Args)]
pub struct BenchArgs {
    /// A short run (CI smoke check): 3 s per scenario, a 10 s clip, fewer runs, one
    /// batch of two jobs per cluster.
    #[arg(long)]
    quick: bool,
    /// Connections kept open by the load generator (login uses fewer).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Also profile `GET /api/validate` on the host with perf (cpu-clock samples).
    #[arg(long)]
    profile: bool,
    /// Only the media figures: conversions on the single host and on the cluster, the
    /// cluster's throughput, upload memory. No load scenarios or baselines; the report
    /// goes to target/bench-media.md unless --output says otherwise.
    #[arg(long, conflicts_with = "profile")]
    media_only: bool,
    /// Where the report goes (default: BENCHMARKS.md at the repository root).
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

const THREADS: u32 = 2;

/// The app as a benchmark sees it: the single host (with its runner) or the cluster
/// behind its balancer.
pub trait BenchApp {
    /// A URL of the app, as a client reaches it.
    fn url(&self, path: &str) -> String;
    /// Everything its runners logged so far, where the job timings are read.
    fn runner_log(&mut self) -> String;
}

impl BenchApp for App {
    fn url(&self, path: &str) -> String {
        App::url(self, path)
    }

    fn runner_log(&mut self) -> String {
        App::runner_log(self)
    }
}

/// The app as benchmarked, on the single host and on the cluster: the one place that
/// configures it. Limits meant for hostile clients (rate limits, once the app has
/// them) are switched off where the manifest declares them, so the bench measures
/// work, not throttling.
pub fn bench_app() -> Result<(AppBuilder, Vec<(String, String)>)> {
    let declared = manifest_variables()?;
    let wanted = [
        // One client address and one user send everything: limits that never trip, so
        // the figures include the limiter's cost (a key-value read and write per
        // request) without measuring 429s.
        ("rate_limit_per_address", "1000000000"),
        ("rate_limit_per_user", "1000000000"),
        // Tokens must outlive the whole run.
        ("access_token_ttl_secs", "3600"),
    ];
    let variables: Vec<(String, String)> = wanted
        .iter()
        .filter(|(name, _)| declared.contains_key(*name))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let builder = variables
        .iter()
        .fold(App::builder(), |builder, (name, value)| {
            builder.variable(name, value)
        });
    Ok((builder, variables))
}

/// The `[variables]` table of the repository's `spin.toml`.
fn manifest_variables() -> Result<toml::Table> {
    let manifest: toml::Table = std::fs::read_to_string(root().join("spin.toml"))?
        .parse()
        .context("spin.toml")?;
    Ok(manifest
        .get("variables")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let load_average = load_average();
    if !args.media_only {
        ensure_tool("wrk", "wrk", "--version")?;
    }
    crate::setup::ensure_ffmpeg()?;
    build_all()?;
    let load = LoadSettings {
        seconds: if args.quick { 3 } else { 10 },
        warmup_seconds: if args.quick { 1 } else { 2 },
        connections: args.connections,
        threads: THREADS,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut rows = Vec::new();

    let (builder, app_variables) = bench_app()?;
    let mut app = builder
        .with_runner()
        .try_start()
        .map_err(|log| anyhow::anyhow!("the app did not start:\n{log}"))?;
    let session = Session::open(&app)?;
    if !args.media_only {
        println!(
            "{:<38} {:<26} {:>9} {:>8} {:>8} {:>8}",
            "stack", "scenario", "req/s", "p50 ms", "p99 ms", "errors"
        );
        for scenario in app_scenarios(&app, &session, load.connections, cores) {
            rows.push(measure(Stack::Spinmesh, scenario, &load));
        }
    }
    let (clip_seconds, runs) = if args.quick { (10, 3) } else { (60, 5) };
    let phone = Clip::phone(clip_seconds);
    let conversions = crate::bench_media::conversions(&mut app, &session.token, &phone, runs);
    let upload =
        crate::bench_media::upload_memory(&app, &session.token, if args.quick { 20 } else { 100 })
            .map_err(|err| format!("{err:#}"));
    let secrets = app.secrets().clone();
    drop(app);

    let plan = if args.quick {
        ThroughputPlan {
            jobs: 2,
            batches: 1,
        }
    } else {
        ThroughputPlan {
            jobs: 6,
            batches: 2,
        }
    };
    let cluster = crate::bench_cluster::figures(&app_variables, &plan, &phone, runs);

    if !args.media_only {
        rows.extend(baseline_rows(&secrets, &session.token, &load, cores)?);
    }
    let profile = if args.profile {
        Some(
            crate::bench_profile::profile_validate(load.connections)
                .unwrap_or_else(|err| format!("Profiling failed: {err:#}")),
        )
    } else {
        None
    };
    let report = Report {
        command: command_line(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: machine(cores, load_average),
        load,
        rows,
        native_hash_ms: (!args.media_only).then(native_hash_ms).flatten(),
        scope: if args.media_only {
            Scope::MediaOnly
        } else {
            Scope::Everything
        },
        conversions,
        upload,
        cluster_throughput: cluster.throughput,
        cluster_conversions: cluster.conversions,
        app_variables,
        profile,
    };
    let output = args.output.unwrap_or_else(|| {
        root().join(if args.media_only {
            "target/bench-media.md"
        } else {
            "BENCHMARKS.md"
        })
    });
    std::fs::write(&output, render(&report))
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "\nwrote {} in {:.0} s",
        output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The baselines' rows: the native ceiling and the seed stack (validating `token`'s
/// claims), and the app on real Spin.
fn baseline_rows(
    secrets: &spinmesh_e2e::DevSecrets,
    token: &str,
    load: &LoadSettings,
    cores: usize,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let (issuer, audience) = (
        manifest_default("auth_issuer")?,
        manifest_default("auth_audience")?,
    );
    match Baseline::native(&secrets.auth_public_key, &issuer, &audience) {
        Ok(native) => {
            for scenario in validate_scenarios(
                &native.url("/validate"),
                &native.url("/health"),
                token,
                load.connections,
            ) {
                rows.push(measure(Stack::Native, scenario, load));
            }
        }
        Err(err) => rows.push(not_measured(
            Stack::Native,
            key::VALIDATE_GET,
            "GET /validate",
            &format!("{err:#}"),
        )),
    }
    let seed_secret = spinmesh_deploy::local::random_secret();
    match seed_token(&seed_secret, &issuer, &audience).and_then(|token| {
        Ok((
            token,
            Baseline::seed(cores, &seed_secret, &issuer, &audience)?,
        ))
    }) {
        Ok((token, seed)) => {
            for scenario in validate_scenarios(
                &seed.url("/validate"),
                &seed.url("/health"),
                &token,
                load.connections,
            ) {
                rows.push(measure(Stack::Seed, scenario, load));
            }
        }
        Err(err) => rows.push(not_measured(
            Stack::Seed,
            key::VALIDATE_GET,
            "GET /validate",
            &format!("{err:#}"),
        )),
    }
    rows.extend(spin_rows(load));
    Ok(rows)
}

/// The benchmark user's token and what the catalogue scenarios need.
struct Session {
    token: String,
    /// A product to order, or why the catalogue is not available.
    product: Result<serde_json::Value, String>,
}

const BENCH_USER: &str = "bench_user";
const BENCH_PASSWORD: &str = "bench-password-1";
const PRODUCTS: usize = 50;

impl Session {
    fn open(app: &App) -> Result<Session> {
        let token = sign_up(app)?;
        create_profile(app, &token)?;
        let product = seed_catalog(app);
        Ok(Session { token, product })
    }
}

/// One request shape under load, and what its first answer must be.
pub struct Scenario {
    key: &'static str,
    request: String,
    load: Load,
    connections: u32,
    /// Every answer is a 401 on purpose.
    rejected_by_design: bool,
    /// Known up front not to be measurable.
    unavailable: Option<String>,
}

impl Scenario {
    fn expects(&self, status: u16) -> bool {
        if self.rejected_by_design {
            status == 401
        } else {
            (200..300).contains(&status)
        }
    }

    fn new(key: &'static str, load: Load, connections: u32) -> Scenario {
        let path = load
            .url
            .find("://")
            .and_then(|i| load.url[i + 3..].find('/').map(|j| &load.url[i + 3 + j..]))
            .unwrap_or("/");
        Scenario {
            key,
            request: format!("{} {path}", load.method),
            load,
            connections,
            rejected_by_design: false,
            unavailable: None,
        }
    }
}

fn app_scenarios(app: &App, session: &Session, connections: u32, cores: usize) -> Vec<Scenario> {
    let bearer = format!("Bearer {}", session.token);
    let token_body = serde_json::json!({ "token": session.token }).to_string();
    let login_body =
        serde_json::json!({ "username": BENCH_USER, "password": BENCH_PASSWORD }).to_string();
    // The trivial liveness route, where the gateway serves it already.
    let live = spinmesh_e2e::client()
        .get(app.url("/health/live"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let mut noop = Scenario::new(
        key::NOOP,
        Load::get(&app.url(if live == 404 {
            "/health"
        } else {
            "/health/live"
        })),
        connections,
    );
    if live == 404 {
        noop.request.push_str(" (/health/live not served yet)");
    }
    let mut bad_signature = Scenario::new(
        key::VALIDATE_BAD_SIGNATURE,
        Load::get(&app.url("/api/validate")).header(
            "Authorization",
            &format!("Bearer {}", alter_signature(&session.token)),
        ),
        connections,
    );
    bad_signature.rejected_by_design = true;
    let mut products = Scenario::new(
        key::PRODUCTS,
        Load::get(&app.url("/api/products")).header("Authorization", &bearer),
        connections,
    );
    let order_body = session
        .product
        .as_ref()
        .map(|id| serde_json::json!({ "product_id": id, "quantity": 1 }).to_string());
    let mut orders = Scenario::new(
        key::ORDERS,
        Load::post_json(
            &app.url("/api/orders"),
            order_body.as_deref().unwrap_or("{}"),
        )
        .header("Authorization", &bearer),
        connections,
    );
    if let Err(why) = &session.product {
        products.unavailable = Some(why.clone());
        orders.unavailable = Some(why.clone());
    }
    vec![
        noop,
        Scenario::new(key::HEALTH, Load::get(&app.url("/health")), connections),
        Scenario::new(
            key::VALIDATE_GET,
            Load::get(&app.url("/api/validate")).header("Authorization", &bearer),
            connections,
        ),
        Scenario::new(
            key::VALIDATE_POST,
            Load::post_json(&app.url("/api/validate"), &token_body),
            connections,
        ),
        bad_signature,
        // Verify + denylist read (KV) + one SQLite query.
        Scenario::new(
            key::USERS_ME,
            Load::get(&app.url("/api/users/me")).header("Authorization", &bearer),
            connections,
        ),
        products,
        orders,
        // argon2id bounds login by design: as many connections as cores keep every
        // core hashing without queueing into timeouts; one connection gives the
        // hash time.
        Scenario::new(
            key::LOGIN,
            Load::post_json(&app.url("/api/login"), &login_body),
            cores as u32 * 2,
        ),
        Scenario::new(
            key::LOGIN_SEQUENTIAL,
            Load::post_json(&app.url("/api/login"), &login_body),
            1,
        ),
    ]
}

/// The scenarios every validate service answers: a no-op, GET with Bearer, POST {token}.
fn validate_scenarios(validate: &str, noop: &str, token: &str, connections: u32) -> Vec<Scenario> {
    let body = serde_json::json!({ "token": token }).to_string();
    vec![
        Scenario::new(key::NOOP, Load::get(noop), connections),
        Scenario::new(
            key::VALIDATE_GET,
            Load::get(validate).header("Authorization", &format!("Bearer {token}")),
            connections,
        ),
        Scenario::new(
            key::VALIDATE_POST,
            Load::post_json(validate, &body),
            connections,
        ),
    ]
}

/// The app on real Spin, when a `spin` CLI is on PATH.
fn spin_rows(load: &LoadSettings) -> Vec<Row> {
    let unavailable = |why: &str| {
        vec![not_measured(
            Stack::Spin,
            key::NOOP,
            "GET /health/live",
            why,
        )]
    };
    if Command::new("spin").arg("--version").output().is_err() {
        return unavailable("no spin CLI on PATH");
    }
    let started = bench_app().and_then(|(builder, _)| {
        builder
            .engine(Engine::Spin)
            .try_start()
            .map_err(|log| anyhow::anyhow!("spin up did not start:\n{log}"))
    });
    let app = match started {
        Ok(app) => app,
        Err(err) => return unavailable(&format!("{err:#}")),
    };
    let token = match sign_up(&app) {
        Ok(token) => token,
        Err(err) => return unavailable(&format!("{err:#}")),
    };
    let scenarios = app_scenarios(
        &app,
        &Session {
            token,
            product: Err("not measured on Spin".into()),
        },
        load.connections,
        1,
    );
    scenarios
        .into_iter()
        .filter(|s| [key::NOOP, key::VALIDATE_GET, key::VALIDATE_POST].contains(&s.key))
        .map(|s| measure(Stack::Spin, s, load))
        .collect()
}

fn not_measured(stack: Stack, key: &'static str, request: &str, why: &str) -> Row {
    eprintln!("{}: {key}: not measured: {why}", stack.label());
    Row {
        stack,
        key,
        request: request.into(),
        connections: 0,
        outcome: Outcome::NotMeasured(why.into()),
        rejected_by_design: false,
    }
}

/// Probes the route once, then loads it.
fn measure(stack: Stack, scenario: Scenario, load: &LoadSettings) -> Row {
    let outcome = match scenario.unavailable.clone() {
        Some(why) => Outcome::NotMeasured(why),
        None => match scenario.load.probe() {
            Ok(404) => Outcome::NotMeasured("route answers 404 (not served yet)".into()),
            Ok(status) if !scenario.expects(status) => {
                Outcome::NotMeasured(format!("a probe request answered {status}"))
            }
            Err(err) => Outcome::NotMeasured(format!("probe failed: {err:#}")),
            Ok(_) => match run_wrk(&scenario.load, load, scenario.connections) {
                Ok(figures) => Outcome::Measured(figures),
                Err(err) => Outcome::NotMeasured(format!("{err:#}")),
            },
        },
    };
    match &outcome {
        Outcome::Measured(f) => println!(
            "{:<38} {:<26} {:>9.0} {:>8.2} {:>8.2} {:>8}",
            stack.label(),
            scenario.key,
            f.requests_per_second,
            f.p50_ms,
            f.p99_ms,
            if scenario.rejected_by_design {
                "(401)".into()
            } else {
                f.errors.to_string()
            }
        ),
        Outcome::NotMeasured(why) => println!(
            "{:<38} {:<26} not measured: {why}",
            stack.label(),
            scenario.key
        ),
    }
    Row {
        stack,
        key: scenario.key,
        request: scenario.request,
        connections: scenario.connections,
        outcome,
        rejected_by_design: scenario.rejected_by_design,
    }
}

/// Registers the benchmark user and returns an access token.
pub fn sign_up(app: &impl BenchApp) -> Result<String> {
    let client = spinmesh_e2e::client();
    let account = serde_json::json!({ "username": BENCH_USER, "email": "bench@example.com", "password": BENCH_PASSWORD });
    let registered = client
        .post(app.url("/api/register"))
        .json(&account)
        .send()?;
    if !registered.status().is_success() {
        bail!(
            "registering the benchmark user failed: {}",
            registered.text()?
        );
    }
    login(app, BENCH_USER, BENCH_PASSWORD)
}

fn login(app: &impl BenchApp, username: &str, password: &str) -> Result<String> {
    let credentials = serde_json::json!({ "username": username, "password": password });
    let login: serde_json::Value = spinmesh_e2e::client()
        .post(app.url("/api/login"))
        .json(&credentials)
        .send()?
        .json()?;
    login["token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("login as {username} answered without a token: {login}"))
}

/// Gives the benchmark user a profile, so `GET /api/users/me` finds one.
fn create_profile(app: &App, token: &str) -> Result<()> {
    let profile = serde_json::json!({ "email": "bench@example.com", "full_name": "Bench User" });
    let created = spinmesh_e2e::client()
        .post(app.url("/api/users"))
        .bearer_auth(token)
        .json(&profile)
        .send()?;
    if !created.status().is_success() {
        bail!("creating the benchmark profile failed: {}", created.text()?);
    }
    Ok(())
}

/// Creates the catalogue as admin; returns the id of a product with ample stock,
/// or why the catalogue cannot be benchmarked.
fn seed_catalog(app: &App) -> Result<serde_json::Value, String> {
    let admin = login(app, "admin", &app.secrets().admin_password)
        .map_err(|err| format!("admin login failed: {err:#}"))?;
    let mut first = None;
    for n in 0..PRODUCTS {
        let create = |price: serde_json::Value| {
            let product = serde_json::json!({ "name": format!("Bench product {n}"), "price": price, "category": "bench", "stock": 1_000_000_000u64 });
            spinmesh_e2e::client()
                .post(app.url("/api/products"))
                .bearer_auth(&admin)
                .json(&product)
                .send()
                .map_err(|err| err.to_string())
        };
        let mut response = create(serde_json::json!(1999))?;
        // The seeds send prices as strings.
        if response.status() == 400 || response.status() == 422 {
            response = create(serde_json::json!("19.99"))?;
        }
        let status = response.status().as_u16();
        match status {
            404 => return Err("route answers 404 (not served yet)".into()),
            200..300 => {}
            _ => {
                return Err(format!(
                    "creating a product answered {status}: {}",
                    response.text().unwrap_or_default()
                ));
            }
        }
        let created: serde_json::Value = response.json().map_err(|err| err.to_string())?;
        if first.is_none() {
            first = ["id", "product_id"]
                .iter()
                .find_map(|field| created.get(*field).filter(|v| !v.is_null()).cloned());
        }
    }
    first.ok_or_else(|| "creating a product answered without an id".into())
}

/// The token with its signature bytes altered, still well-formed: verification
/// runs the whole Ed25519 check and fails.
fn alter_signature(token: &str) -> String {
    let cut = token.rfind('.').expect("a JWT has three segments") + 1;
    let (head, signature) = token.split_at(cut);
    let middle = signature.len() / 2;
    let replacement = if &signature[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    format!(
        "{head}{}{replacement}{}",
        &signature[..middle],
        &signature[middle + 1..]
    )
}

/// An HS256 token for the seed stack with the claims our tokens carry, plus the
/// seed's `user` object.
fn seed_token(secret: &str, issuer: &str, audience: &str) -> Result<String> {
    use jwt_simple::prelude::*;
    #[derive(Serialize, Deserialize)]
    struct SeedClaims {
        username: String,
        roles: Vec<String>,
        user: serde_json::Value,
    }
    let custom = SeedClaims {
        username: BENCH_USER.into(),
        roles: vec!["user".into()],
        user: serde_json::json!({ "id": "1", "username": BENCH_USER, "roles": ["user"] }),
    };
    let claims = Claims::with_custom_claims(custom, Duration::from_hours(1))
        .with_issuer(issuer)
        .with_audience(audience)
        .with_subject("1")
        .with_jwt_id("bench-seed-token");
    HS256Key::from_bytes(secret.as_bytes())
        .authenticate(claims)
        .map_err(|err| anyhow::anyhow!("signing the seed token: {err}"))
}

fn manifest_default(name: &str) -> Result<String> {
    manifest_variables()?
        .get(name)
        .and_then(|v| v.get("default"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("spin.toml declares no default for `{name}`"))
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// `/proc/loadavg`'s three averages, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn machine(cores: usize, load_average: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .and_then(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .map(str::trim)
                    .map(str::to_string)
            })
    };
    let tools = [
        ("wrk", vec!["-v"]),
        ("ffmpeg", vec!["-version"]),
        ("python3", vec!["--version"]),
    ]
    .iter()
    .filter_map(|(program, args)| first_line(program, args))
    .map(|line| line.split(" Copyright").next().unwrap_or(&line).to_string())
    .collect();
    Machine {
        cpu,
        cores,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |k| k.trim().to_string()),
        rustc: first_line("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into()),
        tools,
        load_average,
    }
}

/// The median of a few native argon2id hashes, with the app's parameters.
fn native_hash_ms() -> Option<f64> {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            spinmesh_authn::password::hash_password("bench-password-1").ok()?;
            Some(started.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<Option<_>>()?;
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
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
        Load {
            url: url.to_string(),
            method: "GET",
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn post_json(url: &str, body: &str) -> Load {
        Load {
            url: url.to_string(),
            method: "POST",
            body: Some(body.to_string()),
            headers: Vec::new(),
        }
        .header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Load {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the request once; returns its status.
    fn probe(&self) -> Result<u16> {
        let client = spinmesh_e2e::client();
        let mut request = match self.method {
            "POST" => client.post(&self.url),
            _ => client.get(&self.url),
        };
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        Ok(request.send()?.status().as_u16())
    }

    fn script(&self) -> String {
        let quote = |s: &str| format!("{s:?}"); // Rust's escaping is valid Lua for these strings
        let mut script = format!("wrk.method = {}\n", quote(self.method));
        if let Some(body) = &self.body {
            script.push_str(&format!("wrk.body = {}\n", quote(body)));
        }
        for (name, value) in &self.headers {
            script.push_str(&format!(
                "wrk.headers[{}] = {}\n",
                quote(name),
                quote(value)
            ));
        }
        script
    }
}

/// Warms up, then measures.
pub fn run_wrk(load: &Load, settings: &LoadSettings, connections: u32) -> Result<Figures> {
    let script = std::env::temp_dir().join(format!("spinmesh-bench-{}.lua", std::process::id()));
    std::fs::write(&script, load.script())?;
    let threads = settings.threads.min(connections);
    let wrk = |duration: u32| {
        Command::new("wrk")
            .args([
                format!("-t{threads}"),
                format!("-c{connections}"),
                format!("-d{duration}s"),
            ])
            .args(["--timeout", "10s", "--latency", "-s"])
            .arg(&script)
            .arg(&load.url)
            .output()
            .context("cannot run wrk")
    };
    wrk(settings.warmup_seconds)?;
    let output = wrk(settings.seconds)?;
    let _ = std::fs::remove_file(&script);
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

fn parse_wrk(text: &str) -> Result<Figures> {
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second = field("Requests/sec:")
        .context("wrk output has no Requests/sec")?
        .parse()?;
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
    Ok(Figures {
        requests_per_second,
        p50_ms,
        p99_ms,
        errors,
    })
}

fn parse_duration_ms(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("duration without unit")?;
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

    #[test]
    fn altered_signature_keeps_the_token_shape() {
        let token = "aGVhZA.Ym9keQ.c2lnbmF0dXJlLWJ5dGVz";
        let altered = alter_signature(token);
        assert_ne!(altered, token);
        assert_eq!(altered.len(), token.len());
        assert!(altered.starts_with("aGVhZA.Ym9keQ."));
        assert_eq!(alter_signature("a.b.xxAxx"), "a.b.xxBxx");
    }

    #[test]
    fn scenario_names_its_request_by_path() {
        let scenario = Scenario::new(key::NOOP, Load::get("http://127.0.0.1:9/health/live"), 8);
        assert_eq!(scenario.request, "GET /health/live");
    }

    #[test]
    fn seed_token_carries_our_claims_and_the_seed_user() {
        use jwt_simple::prelude::*;
        const SECRET: &str = "a-test-secret-of-at-least-32-bytes";
        let token = seed_token(SECRET, "spinmesh", "spinmesh").unwrap();
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from_strings(&["spinmesh"])),
            allowed_audiences: Some(HashSet::from_strings(&["spinmesh"])),
            ..Default::default()
        };
        let claims = HS256Key::from_bytes(SECRET.as_bytes())
            .verify_token::<serde_json::Value>(&token, Some(options))
            .unwrap();
        assert_eq!(claims.subject.as_deref(), Some("1"));
        assert_eq!(claims.custom["username"], BENCH_USER);
        assert_eq!(claims.custom["user"]["id"], "1");
        assert!(
            HS256Key::from_bytes(b"another-secret-at-least-32-bytes-long")
                .verify_token::<serde_json::Value>(&token, None)
                .is_err()
        );
    }
}
