//! What `cargo xtask bench` collected, and its rendering as `BENCHMARKS.md`: a pure
//! function of the figures, so the derived ratios, targets and breakdown are tested.

use std::fmt::Write;

/// One scenario's result under wrk.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// The stacks measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// This repository on the embedded host.
    Spinmesh,
    /// Seed 000's Flask + PyJWT validate service under gunicorn.
    Seed,
    /// A plain axum service verifying with the same crate, no WASM.
    Native,
    /// This repository on real Spin (`spin up`).
    Spin,
}

impl Stack {
    pub fn label(self) -> &'static str {
        match self {
            Stack::Spinmesh => "spinmesh (embedded host)",
            Stack::Seed => "seed stack (Flask + PyJWT, gunicorn)",
            Stack::Native => "native ceiling (axum)",
            Stack::Spin => "spinmesh on real Spin",
        }
    }
}

/// Scenario keys shared between stacks, so ratios compare like with like.
pub mod key {
    pub const NOOP: &str = "no-op route";
    pub const HEALTH: &str = "aggregated health";
    pub const VALIDATE_GET: &str = "validate (GET, Bearer)";
    pub const VALIDATE_POST: &str = "validate (POST {token})";
    pub const VALIDATE_BAD_SIGNATURE: &str = "validate, bad signature";
    pub const USERS_ME: &str = "own profile";
    pub const PRODUCTS: &str = "product list";
    pub const ORDERS: &str = "create order";
    pub const LOGIN: &str = "login";
    pub const LOGIN_SEQUENTIAL: &str = "login, one connection";
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Figures),
    /// Why there is no figure (route not served yet, tool missing, …).
    NotMeasured(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub stack: Stack,
    pub key: &'static str,
    /// The request as sent, e.g. `GET /api/validate`.
    pub request: String,
    pub connections: u32,
    pub outcome: Outcome,
    /// Every response is a 401 on purpose (the bad-signature probe): wrk's
    /// non-2xx count is then not an error count.
    pub rejected_by_design: bool,
}

impl Row {
    fn figures(&self) -> Option<&Figures> {
        match &self.outcome {
            Outcome::Measured(figures) => Some(figures),
            Outcome::NotMeasured(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    /// `name: version` of each external tool used.
    pub tools: Vec<String>,
    /// `/proc/loadavg`'s 1-, 5- and 15-minute averages as the run began: how busy
    /// the machine was with other work.
    pub load_average: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadSettings {
    pub seconds: u32,
    pub warmup_seconds: u32,
    pub connections: u32,
    pub threads: u32,
}

/// Where an MP4 keeps its index (`moov`), which decides whether the runner can start
/// converting while the upload arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayout {
    /// `-movflags +faststart`, as web tools write MP4s: readable front to back.
    IndexFirst,
    /// As cameras and phones write it: the index is only known once all has arrived.
    IndexLast,
}

impl ClipLayout {
    /// Both layouts, in the order the report shows them.
    pub const ALL: [ClipLayout; 2] = [ClipLayout::IndexFirst, ClipLayout::IndexLast];

    pub fn label(self) -> &'static str {
        match self {
            ClipLayout::IndexFirst => "index first",
            ClipLayout::IndexLast => "index last",
        }
    }
}

/// Repeated conversions of one clip, bare and through the app; seconds per run.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub layout: ClipLayout,
    pub clip: String,
    pub clip_bytes: u64,
    pub ffmpeg_command: String,
    pub bare: Vec<f64>,
    /// Upload start → the runner recorded completion (its log's timestamp).
    pub end_to_end: Vec<f64>,
    /// Upload start → a status poll saw `completed`.
    pub client_seen: Vec<f64>,
    pub poll_interval_ms: u64,
    /// Upload start → 202.
    pub upload: Vec<f64>,
    /// 202 → the runner started the conversion.
    pub queue: Vec<f64>,
    /// ffmpeg as timed by the runner.
    pub runner_ffmpeg: Vec<f64>,
    /// ffmpeg's exit → completion recorded.
    pub finish: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadMemory {
    pub megabytes: usize,
    pub megabytes_per_second: f64,
    /// Resident memory (VmRSS) just before the upload …
    pub host_before_mib: f64,
    /// … and its highest sample while the upload streamed.
    pub host_peak_mib: f64,
    pub runner_before_mib: f64,
    pub runner_peak_mib: f64,
}

impl UploadMemory {
    /// Flat: neither process grew by a tenth of the file, so nothing buffered it.
    pub fn is_flat(&self) -> bool {
        let limit = self.megabytes as f64 / 1.048_576 / 10.0;
        self.host_peak_mib - self.host_before_mib < limit
            && self.runner_peak_mib - self.runner_before_mib < limit
    }
}

/// Conversion throughput of one runner configuration on the cluster: batches of one
/// clip, every job of a batch uploaded at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    pub runners: usize,
    pub jobs_per_batch: usize,
    /// Per batch: the first upload's start → the last completion the runners logged.
    pub batch_seconds: Vec<f64>,
    /// Per job of every batch: upload start → 202.
    pub upload: Vec<f64>,
    /// Per job of every batch: the conversion as the runner timed it (input fetch and
    /// ffmpeg).
    pub runner_conversion: Vec<f64>,
}

impl Throughput {
    /// Jobs per minute over the median batch.
    pub fn jobs_per_minute(&self) -> Option<f64> {
        Some(self.jobs_per_batch as f64 * 60.0 / median(&self.batch_seconds)?)
    }
}

/// One runner against two on the cluster, one worker each, in alternating batches.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterThroughput {
    pub clip: String,
    pub clip_bytes: u64,
    pub one_runner: Throughput,
    pub two_runners: Throughput,
}

impl ClusterThroughput {
    /// Two runners' jobs per minute over one runner's.
    pub fn speedup(&self) -> Option<f64> {
        Some(self.two_runners.jobs_per_minute()? / self.one_runner.jobs_per_minute()?)
    }
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// `--media-only`: conversions, upload memory and the cluster, no load scenarios.
    MediaOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: Machine,
    pub load: LoadSettings,
    pub rows: Vec<Row>,
    /// argon2id hash time measured natively (login's cost floor outside WASM).
    pub native_hash_ms: Option<f64>,
    pub scope: Scope,
    /// One clip in each layout, on the single host.
    pub conversions: Vec<(ClipLayout, Result<Conversion, String>)>,
    pub upload: Result<UploadMemory, String>,
    pub cluster_throughput: Result<ClusterThroughput, String>,
    /// The same clip in each layout as on the single host, through the cluster.
    pub cluster_conversions: Vec<(ClipLayout, Result<Conversion, String>)>,
    /// Variables the bench sets on the app (see `bench_app`).
    pub app_variables: Vec<(String, String)>,
    /// Markdown from `--profile`, when it ran.
    pub profile: Option<String>,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

impl Conversion {
    /// End-to-end over bare ffmpeg, in percent (medians).
    pub fn overhead_percent(&self) -> Option<f64> {
        Some((median(&self.end_to_end)? / median(&self.bare)? - 1.0) * 100.0)
    }

    /// The same without the file transfer: 202 → completed over bare ffmpeg.
    pub fn processing_overhead_percent(&self) -> Option<f64> {
        let after_upload: Vec<f64> = self
            .end_to_end
            .iter()
            .zip(&self.upload)
            .map(|(total, up)| total - up)
            .collect();
        Some((median(&after_upload)? / median(&self.bare)? - 1.0) * 100.0)
    }
}

/// A ratio of two measured rows, with their p99s.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub value: f64,
    pub p99_ms: (f64, f64),
}

impl Report {
    pub fn figures(&self, stack: Stack, key: &str) -> Option<&Figures> {
        self.rows
            .iter()
            .find(|row| row.stack == stack && row.key == key)?
            .figures()
    }

    pub fn ratio(&self, (a, a_key): (Stack, &str), (b, b_key): (Stack, &str)) -> Option<Ratio> {
        let (x, y) = (self.figures(a, a_key)?, self.figures(b, b_key)?);
        Some(Ratio {
            value: x.requests_per_second / y.requests_per_second,
            p99_ms: (x.p99_ms, y.p99_ms),
        })
    }

    /// Machine microseconds per request: all cores for one second over req/s.
    fn cost_us(&self, stack: Stack, key: &str) -> Option<f64> {
        Some(self.machine.cores as f64 * 1e6 / self.figures(stack, key)?.requests_per_second)
    }

    /// Validate's cost split by differences between measured routes. Validate answers
    /// a token it verified before from the verified-token cache; the bad-signature
    /// route never hits that cache, so it shows what a first-seen token costs.
    pub fn validate_breakdown(&self) -> Option<Breakdown> {
        let cost = |key| self.cost_us(Stack::Spinmesh, key);
        let (noop, rejected, valid) = (
            cost(key::NOOP)?,
            cost(key::VALIDATE_BAD_SIGNATURE)?,
            cost(key::VALIDATE_GET)?,
        );
        Some(Breakdown {
            fixed_us: noop,
            known_token_us: valid - noop,
            first_seen_token_us: rejected - noop,
            total_us: valid,
        })
    }

    /// Login's throughput against what argon2 allows: cores ÷ hash time, with the
    /// hash time taken as login's median latency on one connection.
    pub fn login_bound(&self) -> Option<(f64, f64, f64)> {
        let measured = self
            .figures(Stack::Spinmesh, key::LOGIN)?
            .requests_per_second;
        let hash_ms = self.figures(Stack::Spinmesh, key::LOGIN_SEQUENTIAL)?.p50_ms;
        Some((
            measured,
            hash_ms,
            self.machine.cores as f64 * 1000.0 / hash_ms,
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// What every route pays: the no-op route.
    pub fixed_us: f64,
    /// Validate's own work on a token it has verified before (validate − no-op).
    pub known_token_us: f64,
    /// The same for a token it has not seen (bad signature − no-op).
    pub first_seen_token_us: f64,
    /// Validate (GET).
    pub total_us: f64,
}

// The load targets of the open issues: per-request cost (#20) and validate on real
// Spin (#17).
const VALIDATE_VS_SEED_TARGET: f64 = 2.0;
const NOOP_VS_SPIN_TARGET: f64 = 3.0;
const NOOP_MACHINE_US_TARGET: f64 = 150.0;
const SPIN_VALIDATE_VS_NOOP_TARGET: f64 = 0.85;
const ORDER_P99_MS_TARGET: f64 = 100.0;
const CONVERSION_OVERHEAD_TARGET: f64 = 5.0;
const CLUSTER_SPEEDUP_TARGET: f64 = 1.8;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn fmt_ratio(ratio: &Option<Ratio>) -> String {
    match ratio {
        Some(r) => format!(
            "{:.2}× (p99 {:.2} vs {:.2} ms)",
            r.value, r.p99_ms.0, r.p99_ms.1
        ),
        None => "not measured".into(),
    }
}

fn fmt_seconds(values: &[f64]) -> String {
    median(values).map_or("–".into(), |m| format!("{m:.3} s"))
}

/// The per-request cost work: what changed, before and after, and the profiles
/// (`docs/per-request-cost.md`).
const PER_REQUEST_COST: &str = include_str!("../../docs/per-request-cost.md");

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = render_into(report, &mut md);
    md
}

fn render_into(r: &Report, md: &mut String) -> std::fmt::Result {
    use Stack::*;
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Written by `{}` on {}. Regenerate with `cargo xtask bench` (about 8 minutes; `--quick` for a short run, `--media-only` for the conversion, upload and cluster figures alone, `--profile` adds a perf profile of validate).",
        r.command, r.date
    )?;
    writeln!(
        md,
        "Absolute numbers drift with the machine and its load; the ratios, measured in the same run on the same machine, are what we track.\n"
    )?;
    writeln!(
        md,
        "**Machine:** {} — {} cores, Linux {}, {}. Tools: {}. Load average as the run began: {}.\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.kernel,
        r.machine.rustc,
        r.machine.tools.join(", "),
        r.machine.load_average
    )?;

    // Targets first: what a reader wants to know.
    writeln!(md, "## Targets\n")?;
    writeln!(md, "| target | measured | status |\n|---|---|---|")?;
    let seed_get = r.ratio((Spinmesh, key::VALIDATE_GET), (Seed, key::VALIDATE_GET));
    let seed_post = r.ratio((Spinmesh, key::VALIDATE_POST), (Seed, key::VALIDATE_POST));
    if r.scope == Scope::Everything {
        render_load_targets(r, md, &seed_get, &seed_post)?;
    }
    for (layout, conversion) in &r.conversions {
        let label = format!(
            "conversion overhead ≤ {CONVERSION_OVERHEAD_TARGET} %, 60 s MP4 with its {}",
            layout.label()
        );
        match conversion
            .as_ref()
            .ok()
            .and_then(|c| Some((c.overhead_percent()?, c.processing_overhead_percent()?)))
        {
            Some((total, processing)) => writeln!(
                md,
                "| {label} | {total:+.1} % end to end ({processing:+.1} % after the upload) | {} |",
                verdict(total <= CONVERSION_OVERHEAD_TARGET)
            )?,
            None => writeln!(md, "| {label} | not measured | not measured |")?,
        }
    }
    match &r.upload {
        Ok(u) => writeln!(
            md,
            "| upload memory flat | RSS host {:.1} → peak {:.1} MiB, runner {:.1} → peak {:.1} MiB during a {} MB upload | {} |",
            u.host_before_mib,
            u.host_peak_mib,
            u.runner_before_mib,
            u.runner_peak_mib,
            u.megabytes,
            verdict(u.is_flat())
        )?,
        Err(why) => writeln!(
            md,
            "| upload memory flat | not measured: {why} | not measured |"
        )?,
    }
    let speedup_label = format!(
        "conversion throughput on the cluster, 2 runners ≥ {CLUSTER_SPEEDUP_TARGET}× 1 runner (1 worker each)"
    );
    let speedup = r.cluster_throughput.as_ref().map(|t| {
        (
            t.speedup(),
            t.one_runner.jobs_per_minute(),
            t.two_runners.jobs_per_minute(),
        )
    });
    match speedup {
        Ok((Some(speedup), Some(one), Some(two))) => writeln!(
            md,
            "| {speedup_label} | {speedup:.2}× ({two:.1} vs {one:.1} jobs/min) | {} |",
            verdict(speedup >= CLUSTER_SPEEDUP_TARGET)
        )?,
        Ok(_) => writeln!(md, "| {speedup_label} | not measured | not measured |")?,
        Err(why) => writeln!(
            md,
            "| {speedup_label} | not measured: {why} | not measured |"
        )?,
    }
    writeln!(md)?;
    render_bounds(r, md, &seed_get, &seed_post)?;

    if r.scope == Scope::Everything {
        render_load_sections(r, md)?;
    }

    writeln!(md, "## Conversion\n")?;
    writeln!(
        md,
        "The runner starts ffmpeg while the upload is still arriving when the MP4's index comes first (and a worker is free), feeding it the spool file as it grows; an MP4 indexed last is converted once all of it has arrived. The same clip is measured in both layouts (remuxed, same streams).\n"
    )?;
    for (layout, conversion) in &r.conversions {
        writeln!(md, "### MP4 with its {}\n", layout.label())?;
        render_conversion(md, conversion)?;
    }

    writeln!(md, "## Upload memory\n")?;
    match &r.upload {
        Ok(u) => writeln!(
            md,
            "A {} MB upload streamed at {:.0} MB/s. Resident memory (VmRSS) just before → highest sample during the upload (every 5 ms): host {:.1} → {:.1} MiB, runner {:.1} → {:.1} MiB. Flat means neither grew by a tenth of the file.\n",
            u.megabytes,
            u.megabytes_per_second,
            u.host_before_mib,
            u.host_peak_mib,
            u.runner_before_mib,
            u.runner_peak_mib
        )?,
        Err(why) => writeln!(md, "Not measured: {why}\n")?,
    }

    render_cluster(r, md)?;

    if r.scope == Scope::MediaOnly {
        return Ok(());
    }
    if let Some(profile) = &r.profile {
        writeln!(md, "## Profile\n\n{profile}\n")?;
    }
    // Kept by hand beside the code it explains; every run carries it, so it is not lost
    // when the report is rewritten.
    writeln!(md, "{}", PER_REQUEST_COST.trim_end())?;
    writeln!(md)?;

    writeln!(md, "## Method\n")?;
    writeln!(
        md,
        "* Every stack runs on this machine in the same invocation, with wrk on the same cores; each scenario gets a warm-up, then a fixed duration. errors = non-2xx responses plus socket errors."
    )?;
    writeln!(
        md,
        "* **spinmesh**: the repository's `spin.toml` on the embedded host (`host/`), components built release for wasm32-wasip2, with the runner. The app is configured in one place, `bench_app()` in `xtask/src/bench.rs`; variables it sets: {}.",
        if r.app_variables.is_empty() {
            "none".to_string()
        } else {
            r.app_variables
                .iter()
                .map(|(n, v)| format!("`{n}={v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    writeln!(
        md,
        "* **no-op route**: `GET /health/live` (the gateway's trivial liveness answer; `/health` where it is not served yet). `GET /health` aggregates every component and the runner."
    )?;
    writeln!(
        md,
        "* **seed stack**: `benches/seed-validate/` — seed 000's Flask + PyJWT validate service (HS256, issuer and audience checked), under gunicorn with sync workers = cores (gunicorn's default worker; it closes the connection after each response), dependencies pinned in its `requirements.txt` and installed into `target/bench-venv`. Its token carries the same claims as ours."
    )?;
    writeln!(
        md,
        "* **native ceiling**: `benches/native-validate/` — axum on tokio (all cores) verifying with `spinmesh_authn::Verifier` exactly like the `validate` component, but with the verifier built once and no logout-denylist lookup (no store at all), so it is an upper bound."
    )?;
    writeln!(
        md,
        "* **real Spin**: the same `spin.toml` under `spin up` when a `spin` CLI is on PATH."
    )?;
    writeln!(
        md,
        "* **bad signature**: `GET /api/validate` with a token whose signature bytes are altered: the full Ed25519 check runs and fails, so the route does everything validate does except the store read and the success reply."
    )?;
    writeln!(
        md,
        "* Products and orders are seeded with an admin token (50 products); orders buy one unit of a product with ample stock. Scenarios whose route is not served record why."
    )?;
    Ok(())
}

/// The targets of the load scenarios.
/// One row of the targets table: what was measured and whether it met the target, or
/// "not measured" when the figures are missing.
fn target_row(md: &mut String, target: &str, measured: Option<(String, bool)>) -> std::fmt::Result {
    match measured {
        Some((figure, met)) => writeln!(md, "| {target} | {figure} | {} |", verdict(met)),
        None => writeln!(md, "| {target} | not measured | not measured |"),
    }
}

/// A ratio as the targets table shows it, with whether it reached `at_least`.
fn ratio_at_least(ratio: Option<Ratio>, at_least: f64) -> Option<(String, bool)> {
    let met = ratio.as_ref()?.value >= at_least;
    Some((fmt_ratio(&ratio), met))
}

fn render_load_targets(
    r: &Report,
    md: &mut String,
    seed_get: &Option<Ratio>,
    seed_post: &Option<Ratio>,
) -> std::fmt::Result {
    use Stack::*;
    let validate = match (seed_get, seed_post) {
        (Some(g), Some(p)) => Some((
            format!("GET {}, POST {}", fmt_ratio(seed_get), fmt_ratio(seed_post)),
            g.value.min(p.value) >= VALIDATE_VS_SEED_TARGET,
        )),
        _ => None,
    };
    target_row(
        md,
        &format!("validate ≥ {VALIDATE_VS_SEED_TARGET}× the seed stack (moonshot 3×)"),
        validate,
    )?;
    target_row(
        md,
        &format!("no-op route ≥ {NOOP_VS_SPIN_TARGET}× real Spin"),
        ratio_at_least(
            r.ratio((Spinmesh, key::NOOP), (Spin, key::NOOP)),
            NOOP_VS_SPIN_TARGET,
        ),
    )?;
    target_row(
        md,
        &format!("no-op route ≤ {NOOP_MACHINE_US_TARGET} µs of machine time per request"),
        r.cost_us(Spinmesh, key::NOOP).map(|us| {
            (
                format!("{us:.0} µs (load generator included)"),
                us <= NOOP_MACHINE_US_TARGET,
            )
        }),
    )?;
    target_row(
        md,
        &format!(
            "validate (GET) on real Spin ≥ {SPIN_VALIDATE_VS_NOOP_TARGET}× the no-op route on real Spin"
        ),
        ratio_at_least(
            r.ratio((Spin, key::VALIDATE_GET), (Spin, key::NOOP)),
            SPIN_VALIDATE_VS_NOOP_TARGET,
        ),
    )?;
    target_row(
        md,
        &format!(
            "create order p99 < {ORDER_P99_MS_TARGET} ms at {} connections",
            r.load.connections
        ),
        r.figures(Spinmesh, key::ORDERS).map(|f| {
            (
                format!("{:.0} ms ({:.0} req/s)", f.p99_ms, f.requests_per_second),
                f.p99_ms < ORDER_P99_MS_TARGET,
            )
        }),
    )
}

/// Ratios, scenarios, validate's cost and login: the load figures.
fn render_load_sections(r: &Report, md: &mut String) -> std::fmt::Result {
    use Stack::*;
    writeln!(md, "## Ratios\n")?;
    writeln!(
        md,
        "| comparison | ratio of req/s (p99 ours vs theirs) |\n|---|---|"
    )?;
    type Side = (Stack, &'static str);
    let comparisons: [(&str, Side, Side); 8] = [
        (
            "validate GET: spinmesh ÷ seed stack",
            (Spinmesh, key::VALIDATE_GET),
            (Seed, key::VALIDATE_GET),
        ),
        (
            "validate POST: spinmesh ÷ seed stack",
            (Spinmesh, key::VALIDATE_POST),
            (Seed, key::VALIDATE_POST),
        ),
        (
            "validate GET: spinmesh ÷ native ceiling",
            (Spinmesh, key::VALIDATE_GET),
            (Native, key::VALIDATE_GET),
        ),
        (
            "validate POST: spinmesh ÷ native ceiling",
            (Spinmesh, key::VALIDATE_POST),
            (Native, key::VALIDATE_POST),
        ),
        (
            "no-op route: spinmesh ÷ native ceiling",
            (Spinmesh, key::NOOP),
            (Native, key::NOOP),
        ),
        (
            "no-op route: embedded host ÷ Spin",
            (Spinmesh, key::NOOP),
            (Spin, key::NOOP),
        ),
        (
            "validate GET: embedded host ÷ Spin",
            (Spinmesh, key::VALIDATE_GET),
            (Spin, key::VALIDATE_GET),
        ),
        (
            "validate POST: embedded host ÷ Spin",
            (Spinmesh, key::VALIDATE_POST),
            (Spin, key::VALIDATE_POST),
        ),
    ];
    for (label, a, b) in comparisons {
        writeln!(md, "| {label} | {} |", fmt_ratio(&r.ratio(a, b)))?;
    }
    writeln!(md)?;

    writeln!(md, "## Scenarios\n")?;
    writeln!(
        md,
        "wrk, {} threads, {} s after a {} s warm-up, {} connections unless noted.\n",
        r.load.threads, r.load.seconds, r.load.warmup_seconds, r.load.connections
    )?;
    writeln!(
        md,
        "| stack | scenario | request | conns | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|"
    )?;
    for row in &r.rows {
        match &row.outcome {
            Outcome::Measured(f) => {
                let errors = if row.rejected_by_design {
                    "(401 by design)".to_string()
                } else {
                    f.errors.to_string()
                };
                writeln!(
                    md,
                    "| {} | {} | `{}` | {} | {:.0} | {:.2} | {:.2} | {errors} |",
                    row.stack.label(),
                    row.key,
                    row.request,
                    row.connections,
                    f.requests_per_second,
                    f.p50_ms,
                    f.p99_ms
                )?
            }
            Outcome::NotMeasured(why) => writeln!(
                md,
                "| {} | {} | `{}` | – | not measured: {why} | | | |",
                row.stack.label(),
                row.key,
                row.request
            )?,
        }
    }
    writeln!(md)?;

    writeln!(md, "## Validate: cost per request\n")?;
    match r.validate_breakdown() {
        Some(b) => {
            writeln!(
                md,
                "Machine time per request ({} cores × 1 s ÷ req/s, load generator included), split by the difference between routes measured above:\n",
                r.machine.cores
            )?;
            writeln!(md, "| part | µs | share |\n|---|---|---|")?;
            let share = |us: f64| us / b.total_us * 100.0;
            writeln!(
                md,
                "| every route: HTTP, routing, a fresh instance, the edge (request id, per-address rate limit, log line) — the no-op route | {:.0} | {:.0} % |",
                b.fixed_us,
                share(b.fixed_us)
            )?;
            writeln!(
                md,
                "| validate's own work on a token verified before: verified-token cache, denylist, per-user rate limit, JSON reply (validate − no-op) | {:.0} | {:.0} % |",
                b.known_token_us,
                share(b.known_token_us)
            )?;
            writeln!(md, "| validate (GET) | {:.0} | 100 % |\n", b.total_us)?;
            writeln!(
                md,
                "A token validate has not verified before costs {:.0} µs beyond the no-op route instead (the bad-signature route, which never hits the cache: variables, key parse, Ed25519 in WASM). Differences between separate runs carry their noise.\n",
                b.first_seen_token_us
            )?;
        }
        None => writeln!(
            md,
            "Not measured (needs the no-op, bad-signature and validate rows).\n"
        )?,
    }

    writeln!(md, "## Login\n")?;
    match r.login_bound() {
        Some((measured, hash_ms, bound)) => writeln!(
            md,
            "{measured:.1} hashes/s (logins/s). One login on one connection takes {hash_ms:.1} ms (median), almost all of it the argon2id hash (m=19 MiB, t=2, p=1) in WASM, so {} cores allow at most {bound:.1}/s: measured is {:.0} % of that bound.",
            r.machine.cores,
            measured / bound * 100.0
        )?,
        None => writeln!(md, "Not measured.")?,
    }
    if let Some(native) = r.native_hash_ms {
        writeln!(md, "The same hash natively takes {native:.1} ms here.")?;
    }
    writeln!(md)?;

    Ok(())
}

/// One clip's conversions, bare and through the app, as a table of medians.
fn render_conversion(md: &mut String, conversion: &Result<Conversion, String>) -> std::fmt::Result {
    let c = match conversion {
        Ok(c) => c,
        Err(why) => return writeln!(md, "Not measured: {why}\n"),
    };
    writeln!(
        md,
        "Clip: {} ({:.1} MB). Medians of {} runs each. Bare: `{}` (the runner's own arguments). Through the app: `POST /api/upload` → the runner's completion, timed from the runner's log; a client polling `GET /api/jobs/:id` every {} ms saw it at {}.\n",
        c.clip,
        c.clip_bytes as f64 / 1e6,
        c.bare.len(),
        c.ffmpeg_command,
        c.poll_interval_ms,
        fmt_seconds(&c.client_seen)
    )?;
    writeln!(md, "| part | median |\n|---|---|")?;
    writeln!(md, "| bare ffmpeg | {} |", fmt_seconds(&c.bare))?;
    writeln!(md, "| upload (start → 202) | {} |", fmt_seconds(&c.upload))?;
    writeln!(
        md,
        "| queue (202 → runner starts the job; negative: it started while the upload arrived) | {} |",
        fmt_seconds(&c.queue)
    )?;
    writeln!(
        md,
        "| input fetch (object storage only) + ffmpeg, as timed by the runner | {} |",
        fmt_seconds(&c.runner_ffmpeg)
    )?;
    writeln!(
        md,
        "| storing the MP3 and recording completion | {} |",
        fmt_seconds(&c.finish)
    )?;
    writeln!(md, "| **end to end** | {} |\n", fmt_seconds(&c.end_to_end))
}

/// The cluster's throughput and its conversions against bare ffmpeg.
fn render_cluster(r: &Report, md: &mut String) -> std::fmt::Result {
    writeln!(md, "## Cluster\n")?;
    writeln!(
        md,
        "The production topology on this machine (`spinmesh_e2e::cluster`): runners sharing a PostgreSQL job store and an S3 bucket (moto's server), two hosts sharing Redis, nginx in front of the hosts and of the runners. Clients upload through the balancer to a host, whose `upload` component streams to a runner through the balancer.\n"
    )?;
    writeln!(md, "### Conversion throughput\n")?;
    match &r.cluster_throughput {
        Ok(t) => {
            writeln!(
                md,
                "Clip: {} ({:.1} MB): a long, light clip, so that conversion (which grows with the audio's duration) rather than transfer (with the file's size) bounds a job. Each runner has one worker (`RUNNER_WORKERS=1`). A batch uploads {} copies at once, from as many client threads, so the runners' queue never runs dry; it is timed from the first upload's start to the last completion in the runners' logs. The two configurations run as two clusters side by side, their batches in the order one, two, two, one, … so a drift in the machine's load weighs on both alike.\n",
                t.clip,
                t.clip_bytes as f64 / 1e6,
                t.one_runner.jobs_per_batch
            )?;
            writeln!(
                md,
                "| runners × workers | jobs/min (median batch) | batches | upload, median per job | runner's conversion, median per job |\n|---|---|---|---|---|"
            )?;
            for run in [&t.one_runner, &t.two_runners] {
                writeln!(
                    md,
                    "| {} × 1 | {} | {} | {} | {} |",
                    run.runners,
                    run.jobs_per_minute()
                        .map_or("–".into(), |jpm| format!("{jpm:.1}")),
                    run.batch_seconds
                        .iter()
                        .map(|s| format!("{s:.1} s"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    fmt_seconds(&run.upload),
                    fmt_seconds(&run.runner_conversion)
                )?;
            }
            if let Some(speedup) = t.speedup() {
                writeln!(md, "\nTwo runners ÷ one: **{speedup:.2}×**.")?;
            }
            if let Some(conversion) = median(&t.one_runner.runner_conversion) {
                writeln!(
                    md,
                    "One worker converting back to back at one runner's median would manage {:.1} jobs/min.",
                    60.0 / conversion
                )?;
            }
            writeln!(md)?;
        }
        Err(why) => writeln!(md, "Not measured: {why}\n")?,
    }
    writeln!(md, "### End to end against bare ffmpeg, PostgreSQL + S3\n")?;
    writeln!(
        md,
        "The single host's clips and method, one job at a time, on the two-runner cluster: the upload goes to the bucket as it streams, the job row to PostgreSQL; a runner that did not start converting while the upload arrived fetches the input from the bucket first.\n"
    )?;
    for (layout, conversion) in &r.cluster_conversions {
        writeln!(md, "#### MP4 with its {}\n", layout.label())?;
        render_conversion(md, conversion)?;
        if let Ok(c) = conversion
            && let (Some(total), Some(processing)) =
                (c.overhead_percent(), c.processing_overhead_percent())
        {
            writeln!(
                md,
                "Over bare ffmpeg: {total:+.1} % end to end ({processing:+.1} % after the upload).\n"
            )?;
        }
    }
    Ok(())
}

/// For each missed target, what bounds it, from the figures.
fn render_bounds(
    r: &Report,
    md: &mut String,
    seed_get: &Option<Ratio>,
    seed_post: &Option<Ratio>,
) -> std::fmt::Result {
    let mut any = false;
    let validate_missed = [seed_get, seed_post].iter().any(|ratio| {
        ratio
            .as_ref()
            .is_some_and(|x| x.value < VALIDATE_VS_SEED_TARGET)
    });
    if validate_missed && let Some(b) = r.validate_breakdown() {
        let seed = r
            .cost_us(Stack::Seed, key::VALIDATE_GET)
            .map_or(String::new(), |us| {
                format!(", against {us:.0} µs for the seed stack's whole validate request")
            });
        writeln!(
            md,
            "* validate: of {:.0} µs of machine time per request{seed}, {:.0} µs ({:.0} %) is what every route pays (the no-op route: HTTP, a fresh instance, the edge) and {:.0} µs ({:.0} %) validate's own work on a known token; a first-seen token adds {:.0} µs of Ed25519 in WASM instead.",
            b.total_us,
            b.fixed_us,
            b.fixed_us / b.total_us * 100.0,
            b.known_token_us,
            b.known_token_us / b.total_us * 100.0,
            b.first_seen_token_us
        )?;
        any = true;
    }
    for (layout, conversion) in &r.conversions {
        if let Ok(c) = conversion
            && c.overhead_percent()
                .is_some_and(|total| total > CONVERSION_OVERHEAD_TARGET)
            && let (Some(upload), Some(bare)) = (median(&c.upload), median(&c.bare))
        {
            let why = match layout {
                ClipLayout::IndexLast => {
                    "ffmpeg cannot read an MP4 before its index, which arrives last, so conversion starts after the upload: "
                }
                ClipLayout::IndexFirst => "",
            };
            writeln!(
                md,
                "* conversion, {}: {why}the upload alone is {:.0} ms = {:.1} % of bare ffmpeg's {:.2} s; the runner's own ffmpeg run takes {} and the queue {}.",
                layout.label(),
                upload * 1000.0,
                upload / bare * 100.0,
                bare,
                fmt_seconds(&c.runner_ffmpeg),
                fmt_seconds(&c.queue)
            )?;
            any = true;
        }
    }
    if let Ok(t) = &r.cluster_throughput
        && t.speedup()
            .is_some_and(|speedup| speedup < CLUSTER_SPEEDUP_TARGET)
    {
        writeln!(
            md,
            "* cluster throughput: per job, the upload took {} with one runner and {} with two, the runner's conversion {} and {}; two conversions at once share the {} cores with the hosts, nginx, moto and PostgreSQL.",
            fmt_seconds(&t.one_runner.upload),
            fmt_seconds(&t.two_runners.upload),
            fmt_seconds(&t.one_runner.runner_conversion),
            fmt_seconds(&t.two_runners.runner_conversion),
            r.machine.cores
        )?;
        any = true;
    }
    if any {
        writeln!(md)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(stack: Stack, key: &'static str, rps: f64, p99: f64) -> Row {
        Row {
            stack,
            key,
            request: format!("GET /{key}"),
            connections: 32,
            outcome: Outcome::Measured(Figures {
                requests_per_second: rps,
                p50_ms: 1.0,
                p99_ms: p99,
                errors: 0,
            }),
            rejected_by_design: false,
        }
    }

    fn report() -> Report {
        Report {
            command: "cargo xtask bench".into(),
            date: "2026-01-01 00:00 UTC".into(),
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                kernel: "6.1".into(),
                rustc: "rustc 1.95".into(),
                tools: vec!["wrk 4.1".into()],
                load_average: "0.10 0.20 0.30".into(),
            },
            load: LoadSettings {
                seconds: 10,
                warmup_seconds: 2,
                connections: 32,
                threads: 2,
            },
            rows: vec![
                measured(Stack::Spinmesh, key::NOOP, 8000.0, 5.0),
                measured(Stack::Spinmesh, key::VALIDATE_GET, 4000.0, 9.0),
                measured(Stack::Spinmesh, key::VALIDATE_POST, 4000.0, 9.0),
                Row {
                    rejected_by_design: true,
                    ..measured(Stack::Spinmesh, key::VALIDATE_BAD_SIGNATURE, 5000.0, 8.0)
                },
                measured(Stack::Spinmesh, key::LOGIN, 20.0, 300.0),
                Row {
                    outcome: Outcome::Measured(Figures {
                        requests_per_second: 15.0,
                        p50_ms: 50.0,
                        p99_ms: 60.0,
                        errors: 0,
                    }),
                    ..measured(Stack::Spinmesh, key::LOGIN_SEQUENTIAL, 0.0, 0.0)
                },
                measured(Stack::Seed, key::VALIDATE_GET, 2000.0, 20.0),
                measured(Stack::Seed, key::VALIDATE_POST, 3000.0, 20.0),
                measured(Stack::Native, key::VALIDATE_GET, 10000.0, 3.0),
                Row {
                    outcome: Outcome::NotMeasured("route answers 404".into()),
                    ..measured(Stack::Spinmesh, key::PRODUCTS, 0.0, 0.0)
                },
            ],
            native_hash_ms: Some(20.0),
            scope: Scope::Everything,
            conversions: vec![(ClipLayout::IndexLast, Ok(index_last_conversion()))],
            upload: Ok(UploadMemory {
                megabytes: 100,
                megabytes_per_second: 300.0,
                host_before_mib: 30.0,
                host_peak_mib: 32.0,
                runner_before_mib: 10.0,
                runner_peak_mib: 60.0,
            }),
            cluster_throughput: Ok(ClusterThroughput {
                clip: "600 s".into(),
                clip_bytes: 11_000_000,
                one_runner: throughput(1, &[60.0, 62.0, 58.0]),
                two_runners: throughput(2, &[40.0, 38.0, 42.0]),
            }),
            cluster_conversions: vec![
                (ClipLayout::IndexFirst, Err("moto did not start".into())),
                (ClipLayout::IndexLast, Ok(index_last_conversion())),
            ],
            app_variables: vec![("rate_limit_per_address".into(), "0".into())],
            profile: None,
        }
    }

    fn index_last_conversion() -> Conversion {
        Conversion {
            layout: ClipLayout::IndexLast,
            clip: "60 s".into(),
            clip_bytes: 47_000_000,
            ffmpeg_command: "ffmpeg -i in out.mp3".into(),
            bare: vec![1.0, 1.2, 0.9],
            end_to_end: vec![1.1, 1.3, 1.05],
            client_seen: vec![1.1, 1.3, 1.06],
            poll_interval_ms: 10,
            upload: vec![0.1, 0.1, 0.1],
            queue: vec![0.001; 3],
            runner_ffmpeg: vec![0.95; 3],
            finish: vec![0.002; 3],
        }
    }

    fn throughput(runners: usize, batch_seconds: &[f64]) -> Throughput {
        Throughput {
            runners,
            jobs_per_batch: 6,
            batch_seconds: batch_seconds.to_vec(),
            upload: vec![0.4; 6],
            runner_conversion: vec![9.0; 6],
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_compare_like_scenarios() {
        let r = report();
        let ratio = r
            .ratio(
                (Stack::Spinmesh, key::VALIDATE_GET),
                (Stack::Seed, key::VALIDATE_GET),
            )
            .unwrap();
        assert_eq!(
            ratio,
            Ratio {
                value: 2.0,
                p99_ms: (9.0, 20.0)
            }
        );
        assert_eq!(
            r.ratio((Stack::Spinmesh, key::NOOP), (Stack::Spin, key::NOOP)),
            None
        );
        assert_eq!(
            r.ratio(
                (Stack::Spinmesh, key::PRODUCTS),
                (Stack::Spinmesh, key::NOOP)
            ),
            None,
            "not measured has no ratio"
        );
    }

    #[test]
    fn breakdown_is_differences_of_machine_time() {
        let b = report().validate_breakdown().unwrap();
        // 2 cores: 250 µs no-op, 400 µs bad signature, 500 µs validate.
        assert_eq!(
            b,
            Breakdown {
                fixed_us: 250.0,
                known_token_us: 250.0,
                first_seen_token_us: 150.0,
                total_us: 500.0
            }
        );
    }

    #[test]
    fn login_bound_is_cores_over_hash_time() {
        assert_eq!(report().login_bound(), Some((20.0, 50.0, 40.0)));
    }

    #[test]
    fn conversion_overheads_use_medians() {
        let c = report().conversions.remove(0).1.unwrap();
        assert!((c.overhead_percent().unwrap() - 10.0).abs() < 1e-9);
        assert!((c.processing_overhead_percent().unwrap() - 0.0).abs() < 1e-9);
    }

    #[test]
    fn flat_upload_memory() {
        let mut u = report().upload.unwrap();
        assert!(!u.is_flat(), "the runner grew by 50 MiB");
        u.runner_peak_mib = 15.0;
        assert!(u.is_flat());
    }

    #[test]
    fn renders_targets_rows_and_reasons() {
        let md = render(&report());
        assert!(md.contains("Test CPU — 2 cores"), "{md}");
        assert!(md.contains("| validate ≥ 2× the seed stack (moonshot 3×) | GET 2.00× (p99 9.00 vs 20.00 ms), POST 1.33× (p99 9.00 vs 20.00 ms) | **missed** |"), "{md}");
        assert!(
            md.contains("| no-op route ≥ 3× real Spin | not measured | not measured |"),
            "{md}"
        );
        assert!(
            md.contains("| no-op route ≤ 150 µs of machine time per request | 250 µs (load generator included) | **missed** |"),
            "{md}"
        );
        assert!(
            md.contains("| validate (GET) on real Spin ≥ 0.85× the no-op route on real Spin | not measured | not measured |"),
            "{md}"
        );
        assert!(md.contains("60 s MP4 with its index last | +10.0 % end to end (+0.0 % after the upload) | **missed**"), "{md}");
        assert!(md.contains("of 500 µs of machine time per request, against 1000 µs for the seed stack's whole validate request, 250 µs (50 %) is what every route pays"), "{md}");
        assert!(md.contains("a first-seen token adds 150 µs"), "{md}");
        assert!(md.contains("conversion starts after the upload: the upload alone is 100 ms = 10.0 % of bare ffmpeg's 1.00 s"), "{md}");
        assert!(md.contains("not measured: route answers 404"), "{md}");
        assert!(md.contains("(401 by design)"), "{md}");
        assert!(md.contains("`rate_limit_per_address=0`"), "{md}");
        assert!(md.contains("measured is 50 % of that bound"), "{md}");
        assert!(!md.contains("## Profile"));
        assert!(md.contains("\n## Per-request cost"), "{md}");
        assert!(md.contains("| conversion throughput on the cluster, 2 runners ≥ 1.8× 1 runner (1 worker each) | 1.50× (9.0 vs 6.0 jobs/min) | **missed** |"), "{md}");
        assert!(
            md.contains("* cluster throughput: per job, the upload took 0.400 s with one runner"),
            "{md}"
        );
        assert!(
            md.contains("| 2 × 1 | 9.0 | 40.0 s, 38.0 s, 42.0 s | 0.400 s | 9.000 s |"),
            "{md}"
        );
        assert!(
            md.contains("#### MP4 with its index first\n\nNot measured: moto did not start"),
            "{md}"
        );
    }

    #[test]
    fn cluster_speedup_is_jobs_per_minute_over_median_batches() {
        let t = report().cluster_throughput.unwrap();
        assert_eq!(t.one_runner.jobs_per_minute(), Some(6.0));
        assert_eq!(t.speedup(), Some(1.5));
    }

    #[test]
    fn media_only_leaves_out_the_load_figures() {
        let md = render(&Report {
            scope: Scope::MediaOnly,
            ..report()
        });
        for absent in [
            "validate ≥",
            "## Ratios",
            "## Scenarios",
            "## Login",
            "## Method",
            "## Per-request cost",
        ] {
            assert!(!md.contains(absent), "{absent}: {md}");
        }
        for present in [
            "conversion overhead ≤ 5 %",
            "## Conversion",
            "## Upload memory",
            "## Cluster",
        ] {
            assert!(md.contains(present), "{present}: {md}");
        }
    }
}
