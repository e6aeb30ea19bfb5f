//! `/health` computed at most once per interval, however many ask at once.
//!
//! The aggregate fans out to every component and the runner, so answering each caller
//! with a fresh fan-out lets a burst of health checks crowd out real traffic. Instead the
//! last report is kept (in key-value, since instances keep nothing) and served while it is
//! younger than the interval; when it is older, the callers race for the interval's
//! refresh key with an atomic increment, and only the one that counts 1 fans out. The
//! others serve the previous report meanwhile. The gateway does the I/O; the rules are
//! here.

use serde::{Deserialize, Serialize};

use crate::Health;

/// Where the report is kept.
pub const REPORT_KEY: &str = "health:report";

/// One computed aggregate, both shapes of it, as kept between requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the probes ran, Unix milliseconds.
    pub computed_at_ms: u64,
    /// The refresh slot it was computed in ([`refresh_slot`]), so the next refresher can
    /// delete that slot's key.
    pub slot: u64,
    pub http_status: u16,
    pub summary: serde_json::Value,
    pub detail: serde_json::Value,
}

impl Report {
    pub fn new(health: &Health, computed_at_ms: u64, slot: u64) -> Self {
        Self {
            computed_at_ms,
            slot,
            http_status: health.status().http_status(),
            summary: health.summary(),
            detail: health.detail(),
        }
    }

    /// `None` for anything unreadable, which then counts as no report.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a report always serialises")
    }

    /// Served as it is while younger than `max_age_ms`. A report from the future (clocks
    /// of two hosts disagree) counts as fresh only up to `max_age_ms` ahead.
    pub fn is_fresh(&self, now_ms: u64, max_age_ms: u64) -> bool {
        now_ms.abs_diff(self.computed_at_ms) < max_age_ms
    }

    /// Whole seconds since it was computed, for the `Age` header.
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.computed_at_ms) / 1000
    }
}

/// The interval `now_ms` falls in: one refresh may start per slot.
pub fn refresh_slot(now_ms: u64, max_age_ms: u64) -> u64 {
    now_ms / max_age_ms.max(1)
}

/// The counter the callers of one slot race for; the first to count 1 refreshes.
pub fn refresh_key(slot: u64) -> String {
    format!("health:refresh:{slot}")
}

/// How many intervals old a report may be and still be served while another caller
/// refreshes it.
pub const STALE_INTERVALS: u64 = 10;

/// What a caller does once it knows what is cached and, if it had to race, how it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The cached report is fresh: serve it.
    ServeCached,
    /// This caller won the slot (or the race could not be run): probe, then store.
    Refresh,
    /// Another caller is refreshing and an older report exists: serve that one.
    ServeStale,
    /// Another caller is refreshing and nothing is cached yet: wait for its report.
    Wait,
}

impl Plan {
    /// `race` is the count the increment returned (`None` when key-value failed, which
    /// must not stop `/health` from answering). A stale report is served only while it is
    /// at most [`STALE_INTERVALS`] old: older than that it would mislead a monitor.
    pub fn after_race(
        cached: Option<&Report>,
        race: Option<i64>,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Plan {
        let usable = cached
            .filter(|report| report.is_fresh(now_ms, max_age_ms.saturating_mul(STALE_INTERVALS)));
        match (race, usable) {
            (None | Some(1), _) => Plan::Refresh,
            (Some(_), Some(_)) => Plan::ServeStale,
            (Some(_), None) => Plan::Wait,
        }
    }

    /// Whether the caller must race at all.
    pub fn before_race(cached: Option<&Report>, now_ms: u64, max_age_ms: u64) -> Option<Plan> {
        cached
            .filter(|report| report.is_fresh(now_ms, max_age_ms))
            .map(|_| Plan::ServeCached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Check, Outcome, TARGETS};

    fn report(computed_at_ms: u64) -> Report {
        let health = Health {
            checks: TARGETS
                .iter()
                .map(|&(service, target)| Check {
                    service,
                    target,
                    outcome: Outcome::Up,
                    latency_ms: 1,
                })
                .collect(),
            timestamp: "2025-01-01T00:00:00Z".into(),
            version: "0.1.0".into(),
        };
        Report::new(&health, computed_at_ms, refresh_slot(computed_at_ms, 1000))
    }

    #[test]
    fn a_report_survives_its_encoding() {
        let original = report(5_000);
        assert_eq!(Report::decode(&original.encode()), Some(original.clone()));
        assert_eq!(original.http_status, 200);
        assert_eq!(original.summary["status"], "healthy");
        assert_eq!(Report::decode(b"{not json"), None);
    }

    #[test]
    fn a_fresh_report_is_served_without_a_race() {
        let cached = report(10_000);
        assert_eq!(
            Plan::before_race(Some(&cached), 10_999, 1000),
            Some(Plan::ServeCached)
        );
        assert_eq!(Plan::before_race(Some(&cached), 11_000, 1000), None);
        assert_eq!(Plan::before_race(None, 11_000, 1000), None);
        // Another host's clock a little ahead: still fresh, but not forever.
        assert_eq!(
            Plan::before_race(Some(&cached), 9_500, 1000),
            Some(Plan::ServeCached)
        );
        assert_eq!(Plan::before_race(Some(&cached), 8_000, 1000), None);
    }

    #[test]
    fn only_the_first_of_a_slot_refreshes() {
        let stale = report(1_000);
        let now = 2_500;
        assert_eq!(
            Plan::after_race(Some(&stale), Some(1), now, 1000),
            Plan::Refresh
        );
        assert_eq!(
            Plan::after_race(Some(&stale), Some(2), now, 1000),
            Plan::ServeStale
        );
        assert_eq!(Plan::after_race(None, Some(7), now, 1000), Plan::Wait);
        assert_eq!(Plan::after_race(None, Some(1), now, 1000), Plan::Refresh);
    }

    #[test]
    fn a_report_too_old_is_waited_on_rather_than_served() {
        let ancient = report(1_000);
        assert_eq!(
            Plan::after_race(Some(&ancient), Some(2), 10_999, 1000),
            Plan::ServeStale
        );
        assert_eq!(
            Plan::after_race(Some(&ancient), Some(2), 11_000, 1000),
            Plan::Wait
        );
    }

    #[test]
    fn a_key_value_failure_still_answers() {
        assert_eq!(Plan::after_race(None, None, 0, 1000), Plan::Refresh);
        assert_eq!(
            Plan::after_race(Some(&report(0)), None, 5_000, 1000),
            Plan::Refresh
        );
    }

    #[test]
    fn slots_follow_the_interval() {
        assert_eq!(refresh_slot(0, 1000), 0);
        assert_eq!(refresh_slot(1_999, 1000), 1);
        assert_eq!(refresh_slot(2_000, 1000), 2);
        assert_eq!(refresh_slot(5, 0), 5);
        assert_eq!(refresh_key(3), "health:refresh:3");
        assert_eq!(report(2_500).age_secs(4_600), 2);
    }
}
