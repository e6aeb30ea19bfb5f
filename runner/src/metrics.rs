//! Process metrics in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::job::{JobStatus, Stats};

/// Upper bounds (seconds) of the conversion duration histogram.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Why an upload was turned away.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    TooLarge,
    LowDisk,
    Incomplete,
}

#[derive(Default)]
pub struct Metrics {
    bytes_received: AtomicU64,
    uploads_accepted: AtomicU64,
    rejected_too_large: AtomicU64,
    rejected_low_disk: AtomicU64,
    rejected_incomplete: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    cancelled: AtomicU64,
    started_early: AtomicU64,
    early_fallbacks: AtomicU64,
    /// Cumulative counts per bucket are derived at render time.
    bucket_counts: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
}

/// Live numbers from outside this struct, sampled when rendering.
pub struct Snapshot<'a> {
    pub stats: &'a Stats,
    pub workers: usize,
    pub busy_workers: usize,
}

impl Metrics {
    pub fn upload_accepted(&self, bytes: u64) {
        self.uploads_accepted.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes, Relaxed);
    }

    pub fn upload_rejected(&self, why: Rejection) {
        let counter = match why {
            Rejection::TooLarge => &self.rejected_too_large,
            Rejection::LowDisk => &self.rejected_low_disk,
            Rejection::Incomplete => &self.rejected_incomplete,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn job_completed(&self, took: Duration) {
        self.completed.fetch_add(1, Relaxed);
        self.observe_duration(took);
    }

    pub fn job_failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }

    pub fn job_retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    pub fn job_cancelled(&self) {
        self.cancelled.fetch_add(1, Relaxed);
    }

    /// A conversion started while its upload was still arriving.
    pub fn started_early(&self) {
        self.started_early.fetch_add(1, Relaxed);
    }

    /// An early conversion could not finish; the stored file is converted instead.
    pub fn early_fell_back(&self) {
        self.early_fallbacks.fetch_add(1, Relaxed);
    }

    fn observe_duration(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.bucket_counts[i].fetch_add(1, Relaxed);
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn render(&self, snap: &Snapshot<'_>) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP spinmesh_runner_jobs Jobs in the store by state."
        );
        let _ = writeln!(out, "# TYPE spinmesh_runner_jobs gauge");
        for status in JobStatus::ALL {
            let _ = writeln!(
                out,
                "spinmesh_runner_jobs{{state=\"{status}\"}} {}",
                snap.stats.count(status)
            );
        }

        let mut simple = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        simple(
            "spinmesh_runner_queue_depth",
            "gauge",
            "Jobs waiting for a worker.",
            snap.stats.queued.to_string(),
        );
        simple(
            "spinmesh_runner_workers",
            "gauge",
            "Size of the worker pool.",
            snap.workers.to_string(),
        );
        simple(
            "spinmesh_runner_workers_busy",
            "gauge",
            "Workers running ffmpeg right now.",
            snap.busy_workers.to_string(),
        );
        simple(
            "spinmesh_runner_bytes_received_total",
            "counter",
            "Upload bytes accepted since start.",
            self.bytes_received.load(Relaxed).to_string(),
        );
        simple(
            "spinmesh_runner_uploads_accepted_total",
            "counter",
            "Uploads recorded as jobs since start.",
            self.uploads_accepted.load(Relaxed).to_string(),
        );
        simple(
            "spinmesh_runner_conversions_started_early_total",
            "counter",
            "Conversions started while their upload was still arriving.",
            self.started_early.load(Relaxed).to_string(),
        );
        simple(
            "spinmesh_runner_early_start_fallbacks_total",
            "counter",
            "Early conversions that could not finish; the stored upload was converted instead.",
            self.early_fallbacks.load(Relaxed).to_string(),
        );
        simple(
            "spinmesh_runner_stored_input_bytes",
            "gauge",
            "Sum of upload sizes of all jobs in the store.",
            snap.stats.bytes_in.to_string(),
        );
        simple(
            "spinmesh_runner_stored_output_bytes",
            "gauge",
            "Sum of output sizes of all jobs in the store.",
            snap.stats.bytes_out.to_string(),
        );

        let _ = writeln!(
            out,
            "# HELP spinmesh_runner_uploads_rejected_total Uploads turned away since start, by reason."
        );
        let _ = writeln!(out, "# TYPE spinmesh_runner_uploads_rejected_total counter");
        for (reason, counter) in [
            ("too_large", &self.rejected_too_large),
            ("low_disk", &self.rejected_low_disk),
            ("incomplete", &self.rejected_incomplete),
        ] {
            let _ = writeln!(
                out,
                "spinmesh_runner_uploads_rejected_total{{reason=\"{reason}\"}} {}",
                counter.load(Relaxed)
            );
        }

        let _ = writeln!(
            out,
            "# HELP spinmesh_runner_job_outcomes_total Conversion attempts by outcome since start."
        );
        let _ = writeln!(out, "# TYPE spinmesh_runner_job_outcomes_total counter");
        for (outcome, counter) in [
            ("completed", &self.completed),
            ("failed", &self.failed),
            ("retried", &self.retried),
            ("cancelled", &self.cancelled),
        ] {
            let _ = writeln!(
                out,
                "spinmesh_runner_job_outcomes_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Relaxed)
            );
        }

        let name = "spinmesh_runner_job_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Wall time of successful conversions.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, counter) in DURATION_BUCKETS.iter().zip(&self.bucket_counts) {
            cumulative += counter.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.duration_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.duration_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.upload_accepted(1000);
        metrics.upload_rejected(Rejection::TooLarge);
        metrics.job_completed(Duration::from_millis(700));
        metrics.job_completed(Duration::from_secs(4000));
        let stats = Stats {
            queued: 3,
            completed: 2,
            total: 5,
            ..Stats::default()
        };
        let text = metrics.render(&Snapshot {
            stats: &stats,
            workers: 2,
            busy_workers: 1,
        });
        assert!(
            text.contains("spinmesh_runner_jobs{state=\"queued\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("spinmesh_runner_queue_depth 3\n"));
        assert!(text.contains("spinmesh_runner_bytes_received_total 1000\n"));
        assert!(text.contains("spinmesh_runner_uploads_rejected_total{reason=\"too_large\"} 1\n"));
        assert!(text.contains("spinmesh_runner_job_duration_seconds_bucket{le=\"0.5\"} 0\n"));
        assert!(text.contains("spinmesh_runner_job_duration_seconds_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("spinmesh_runner_job_duration_seconds_bucket{le=\"1800\"} 1\n"));
        assert!(text.contains("spinmesh_runner_job_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("spinmesh_runner_job_duration_seconds_count 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
