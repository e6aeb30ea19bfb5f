//! `cargo xtask bench --profile`: where the host spends `GET /api/validate`,
//! sampled with `perf record -e cpu-clock` (a software clock: it works where
//! hardware counters are not exposed, as in most VMs and containers).

use std::fmt::Write;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{Load, bench_app, run_wrk, sign_up};
use crate::bench_report::LoadSettings;
use crate::build::root;

const SECONDS: u32 = 10;

/// Profiles the host under wrk load on validate; returns a Markdown section.
pub fn profile_validate(connections: u32) -> Result<String> {
    let usable = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-o",
            "/dev/null",
            "--",
            "true",
        ])
        .output();
    if !usable.is_ok_and(|output| output.status.success()) {
        bail!(
            "perf is missing or not permitted here (Debian: apt-get install linux-perf; kernel.perf_event_paranoid ≤ 1)"
        );
    }
    let (builder, _) = bench_app()?;
    let app = builder
        .try_start()
        .map_err(|log| anyhow::anyhow!("the app did not start:\n{log}"))?;
    let token = sign_up(&app)?;
    let load =
        Load::get(&app.url("/api/validate")).header("Authorization", &format!("Bearer {token}"));
    let data = root().join("target/bench-profile/perf.data");
    std::fs::create_dir_all(data.parent().expect("a file in a directory"))?;

    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-p",
            &app.host_pid().to_string(),
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &(SECONDS + 1).to_string()])
        .spawn()
        .context("cannot run perf record")?;
    let figures = run_wrk(
        &load,
        &LoadSettings {
            seconds: SECONDS,
            warmup_seconds: 1,
            connections,
            threads: 2,
        },
        connections,
    )?;
    let recorded = perf.wait()?;
    if !recorded.success() {
        bail!("perf record failed ({recorded})");
    }

    let report = |sort: &str| -> Result<Vec<(f64, String, String)>> {
        let output = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.7",
                "--sort",
                sort,
                "-i",
            ])
            .arg(&data)
            .output()
            .context("cannot run perf report")?;
        let rows = parse_report(&String::from_utf8_lossy(&output.stdout));
        if rows.is_empty() {
            bail!(
                "perf report printed no samples: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(rows)
    };
    let by_object = report("dso")?;
    let by_symbol = report("dso,symbol")?;

    let mut md = String::new();
    writeln!(
        md,
        "`perf record -e cpu-clock -F 999` on the host process for {SECONDS} s while wrk drove `GET /api/validate` ({connections} connections, {:.0} req/s under the profiler). Guest code is compiled by wasmtime at run time and shows as an unsymbolised mapping (`[unknown]`/`memfd`/JIT).\n",
        figures.requests_per_second
    )?;
    writeln!(md, "| share of host CPU | object |\n|---|---|")?;
    for (share, object, _) in &by_object {
        writeln!(md, "| {share:.1} % | `{object}` |")?;
    }
    writeln!(md, "\n| share | object | symbol |\n|---|---|---|")?;
    for (share, object, symbol) in by_symbol.iter().take(25) {
        writeln!(md, "| {share:.1} % | `{object}` | `{symbol}` |")?;
    }
    println!("{md}");
    Ok(md)
}

/// `perf report --stdio` rows: `  12.34%  object  [.] symbol` → (share, object, symbol).
fn parse_report(text: &str) -> Vec<(f64, String, String)> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let (share, rest) = line.trim().split_once('%')?;
            let share: f64 = share.trim().parse().ok()?;
            let rest = rest.trim();
            let (object, symbol) = match rest.split_once("  ") {
                Some((object, symbol)) => (
                    object.trim(),
                    symbol
                        .trim()
                        .trim_start_matches("[.] ")
                        .trim_start_matches("[k] "),
                ),
                None => (rest, ""),
            };
            // Columns after the symbol (IPC, where the CPU has none) are padded with spaces.
            let symbol = symbol.split("  ").next().unwrap_or_default();
            Some((share, object.to_string(), readable_symbol(symbol)))
        })
        .collect()
}

/// Guest functions appear as `wasm[0]::function[354]::<mangled Rust name>`: demangled,
/// without the hash.
fn readable_symbol(symbol: &str) -> String {
    match symbol.find("_ZN") {
        Some(start) => format!(
            "{}{:#}",
            &symbol[..start],
            rustc_demangle::demangle(&symbol[start..])
        ),
        None => symbol.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_perf_report_rows() {
        let text = "# Overhead  Shared Object  Symbol\n\
                    #\n\
                    \x20   23.50%  [unknown]          [.] 0x00007f1234\n\
                    \x20    5.25%  spinmesh-host      [.] wasmtime::runtime::vm::instance::Instance::new\n\
                    \x20    1.00%  [kernel.kallsyms]  [k] clear_page_erms\n";
        let rows = super::parse_report(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], (23.5, "[unknown]".into(), "0x00007f1234".into()));
        assert_eq!(rows[1].2, "wasmtime::runtime::vm::instance::Instance::new");
        assert_eq!(
            rows[2],
            (1.0, "[kernel.kallsyms]".into(), "clear_page_erms".into())
        );
        assert_eq!(
            super::parse_report("   7.00%  libc.so.6\n"),
            vec![(7.0, "libc.so.6".into(), String::new())]
        );
        let guest = "    12.40%  abc.cwasm  [.] wasm[0]::function[357]::_ZN16curve25519_dalek7backend6serial3u325field16FieldElement262512square_inner17h0a2024e59989df4eE      -      -\n";
        assert_eq!(
            super::parse_report(guest)[0].2,
            "wasm[0]::function[357]::curve25519_dalek::backend::serial::u32::field::FieldElement2625::square_inner"
        );
    }
}
