//! Process metrics in the Prometheus text exposition format (version 0.0.4), through the
//! `prometheus` crate the host already uses, so both speak the same encoder.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::job::{JobStatus, Stats};

/// The exposition format `render` produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

pub struct Metrics {
    registry: Registry,
    /// Sampled from the store and worker pool at each scrape.
    jobs: IntGaugeVec,
    queue_depth: IntGauge,
    workers: IntGauge,
    workers_busy: IntGauge,
    stored_input_bytes: IntGauge,
    stored_output_bytes: IntGauge,
    bytes_received: IntCounter,
    uploads_accepted: IntCounter,
    rejected_too_large: IntCounter,
    rejected_low_disk: IntCounter,
    rejected_incomplete: IntCounter,
    completed: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
    cancelled: IntCounter,
    started_early: IntCounter,
    early_fallbacks: IntCounter,
    durations: Histogram,
    webhooks_delivered: IntCounter,
    webhooks_retried: IntCounter,
    webhooks_abandoned: IntCounter,
}

/// Live numbers from outside this struct, sampled when rendering.
pub struct Snapshot<'a> {
    pub stats: &'a Stats,
    pub workers: usize,
    pub busy_workers: usize,
}

/// Adds `metric` to `registry` and hands it back for recording.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A gauge holds an i64; store sums never get near its limit, but saturate rather than wrap.
fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    /// Fails only if a name or label below is malformed or used twice.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("spinmesh_runner".into()), None)?;
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help)?);
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help)?);

        let jobs = register(
            &registry,
            IntGaugeVec::new(Opts::new("jobs", "Jobs in the store by state."), &["state"])?,
        )?;
        let rejected = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "uploads_rejected_total",
                    "Uploads turned away since start, by reason.",
                ),
                &["reason"],
            )?,
        )?;
        let outcomes = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "job_outcomes_total",
                    "Conversion attempts by outcome since start.",
                ),
                &["outcome"],
            )?,
        )?;
        let webhook_attempts = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "webhook_attempts_total",
                    "Webhook attempts by outcome since start: delivered, retried (failed, \
                     another attempt scheduled), abandoned (failed, attempts used up).",
                ),
                &["outcome"],
            )?,
        )?;
        // Every state, reason and outcome is resolved here so each series shows from the
        // first scrape, at zero, rather than appearing when it first happens.
        for status in JobStatus::ALL {
            jobs.with_label_values(&[status.as_str()]);
        }
        Ok(Metrics {
            queue_depth: gauge("queue_depth", "Jobs waiting for a worker.")?,
            workers: gauge("workers", "Size of the worker pool.")?,
            workers_busy: gauge("workers_busy", "Workers running ffmpeg right now.")?,
            stored_input_bytes: gauge(
                "stored_input_bytes",
                "Sum of upload sizes of all jobs in the store.",
            )?,
            stored_output_bytes: gauge(
                "stored_output_bytes",
                "Sum of output sizes of all jobs in the store.",
            )?,
            bytes_received: counter("bytes_received_total", "Upload bytes accepted since start.")?,
            uploads_accepted: counter(
                "uploads_accepted_total",
                "Uploads recorded as jobs since start.",
            )?,
            started_early: counter(
                "conversions_started_early_total",
                "Conversions started while their upload was still arriving.",
            )?,
            early_fallbacks: counter(
                "early_start_fallbacks_total",
                "Early conversions that could not finish; the stored upload was converted instead.",
            )?,
            rejected_too_large: rejected.with_label_values(&["too_large"]),
            rejected_low_disk: rejected.with_label_values(&["low_disk"]),
            rejected_incomplete: rejected.with_label_values(&["incomplete"]),
            completed: outcomes.with_label_values(&["completed"]),
            failed: outcomes.with_label_values(&["failed"]),
            retried: outcomes.with_label_values(&["retried"]),
            cancelled: outcomes.with_label_values(&["cancelled"]),
            webhooks_delivered: webhook_attempts.with_label_values(&["delivered"]),
            webhooks_retried: webhook_attempts.with_label_values(&["retried"]),
            webhooks_abandoned: webhook_attempts.with_label_values(&["abandoned"]),
            durations: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "job_duration_seconds",
                        "Wall time of successful conversions.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                )?,
            )?,
            jobs,
            registry,
        })
    }

    pub fn upload_accepted(&self, bytes: u64) {
        self.uploads_accepted.inc();
        self.bytes_received.inc_by(bytes);
    }

    pub fn upload_rejected(&self, why: Rejection) {
        let counter = match why {
            Rejection::TooLarge => &self.rejected_too_large,
            Rejection::LowDisk => &self.rejected_low_disk,
            Rejection::Incomplete => &self.rejected_incomplete,
        };
        counter.inc();
    }

    pub fn job_completed(&self, took: Duration) {
        self.completed.inc();
        self.durations.observe(took.as_secs_f64());
    }

    pub fn job_failed(&self) {
        self.failed.inc();
    }

    pub fn job_retried(&self) {
        self.retried.inc();
    }

    pub fn job_cancelled(&self) {
        self.cancelled.inc();
    }

    /// A conversion started while its upload was still arriving.
    pub fn started_early(&self) {
        self.started_early.inc();
    }

    /// An early conversion could not finish; the stored file is converted instead.
    pub fn early_fell_back(&self) {
        self.early_fallbacks.inc();
    }

    pub fn webhook_delivered(&self) {
        self.webhooks_delivered.inc();
    }

    pub fn webhook_retried(&self) {
        self.webhooks_retried.inc();
    }

    pub fn webhook_abandoned(&self) {
        self.webhooks_abandoned.inc();
    }

    /// Every metric, in the Prometheus text exposition format ([`CONTENT_TYPE`]). The
    /// sampled gauges are set from `snap` first; two scrapes at once each set numbers
    /// that were current a moment ago, which is all a gauge promises.
    pub fn render(&self, snap: &Snapshot<'_>) -> prometheus::Result<String> {
        for status in JobStatus::ALL {
            self.jobs
                .with_label_values(&[status.as_str()])
                .set(gauge_value(snap.stats.count(status)));
        }
        self.queue_depth.set(gauge_value(snap.stats.queued));
        self.workers.set(gauge_value(snap.workers));
        self.workers_busy.set(gauge_value(snap.busy_workers));
        self.stored_input_bytes
            .set(gauge_value(snap.stats.bytes_in));
        self.stored_output_bytes
            .set(gauge_value(snap.stats.bytes_out));
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new().unwrap();
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
        let text = metrics
            .render(&Snapshot {
                stats: &stats,
                workers: 2,
                busy_workers: 1,
            })
            .unwrap();
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
        assert!(text.contains("spinmesh_runner_job_duration_seconds_sum 4000.7\n"));
        // Series that have not happened yet are still there, at zero.
        assert!(text.contains("spinmesh_runner_uploads_rejected_total{reason=\"low_disk\"} 0\n"));
        assert!(text.contains("spinmesh_runner_job_outcomes_total{outcome=\"cancelled\"} 0\n"));
        assert!(text.contains("spinmesh_runner_jobs{state=\"failed\"} 0\n"));
        assert!(text.contains("spinmesh_runner_webhook_attempts_total{outcome=\"abandoned\"} 0\n"));
        assert!(text.contains("# TYPE spinmesh_runner_job_duration_seconds histogram\n"));
        assert!(
            text.contains(
                "# HELP spinmesh_runner_workers_busy Workers running ffmpeg right now.\n"
            )
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
