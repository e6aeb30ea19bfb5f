//! Request rate limits: fixed-window counters, one per client address and one per
//! signed-in user, with the IETF draft `RateLimit-*` headers (draft-ietf-httpapi-
//! ratelimit-headers) on every limited route's responses. The arithmetic is here; the
//! counters live in the key-value store (see [`crate::edge`]).

use crate::client_addr::AddressGroup;

/// At most `limit` requests per `window_secs`, in fixed windows aligned to the clock:
/// every host derives the same window from the time alone, so replicas share one counter
/// per key and window, counted with an atomic increment (never read-then-write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u64,
    pub window_secs: u64,
}

/// Where a key stands after a request, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: u64,
    /// This request was refused.
    pub limited: bool,
}

impl Quota {
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta seconds).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
        ]
    }

    /// The quota a client should heed when several apply: the one that refused the
    /// request, else the one with fewer requests left (the draft's advice).
    pub fn most_restrictive(a: Option<Quota>, b: Option<Quota>) -> Option<Quota> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if (b.limited, a.remaining) > (a.limited, b.remaining) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }
}

impl Policy {
    /// The window `now` (Unix seconds) falls in.
    pub fn window(&self, now: u64) -> u64 {
        now / self.window_secs.max(1)
    }

    /// Where a request stands once its window's counter reached `count`, this request
    /// included. Requests past the limit are refused (and still counted: the counter is
    /// an increment, and a refused client gains nothing by it).
    pub fn quota(&self, count: u64, now: u64) -> Quota {
        let window_secs = self.window_secs.max(1);
        let ends = (self.window(now) + 1).saturating_mul(window_secs);
        Quota {
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs: ends.saturating_sub(now).max(1),
            limited: count > self.limit,
        }
    }
}

/// The counter of `key` (an [`address_key`] or [`user_key`]) for one window. Each key
/// has one counter per window, deleted once the window has ended (`crate::expiry`).
pub fn counter_key(key: &str, window: u64) -> String {
    format!("{key}:{window}")
}

/// Health probes (platform liveness checks, `/health/services`) are never limited.
pub fn is_exempt(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/")
}

/// The counter key for a client's address group (see [`crate::client_addr`]).
pub fn address_key(group: &AddressGroup) -> String {
    format!("ratelimit:ip:{group}")
}

/// The counter key for a verified token subject.
pub fn user_key(subject: &str) -> String {
    format!("ratelimit:user:{subject}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const POLICY: Policy = Policy {
        limit: 3,
        window_secs: 60,
    };

    #[test]
    fn counts_up_to_the_limit_then_refuses() {
        // NOW is 40 s into its 60 s window.
        assert_eq!(NOW % 60, 40);
        assert_eq!(
            POLICY.quota(1, NOW),
            Quota {
                limit: 3,
                remaining: 2,
                reset_secs: 20,
                limited: false
            }
        );
        assert_eq!(
            (
                POLICY.quota(3, NOW + 10).remaining,
                POLICY.quota(3, NOW + 10).limited
            ),
            (0, false)
        );
        assert_eq!(
            POLICY.quota(4, NOW + 19),
            Quota {
                limit: 3,
                remaining: 0,
                reset_secs: 1,
                limited: true
            }
        );
    }

    #[test]
    fn every_host_derives_the_same_windows_from_the_clock() {
        let window = POLICY.window(NOW);
        assert_eq!(POLICY.window(NOW + 19), window);
        assert_eq!(POLICY.window(NOW + 20), window + 1);
        assert_eq!(POLICY.quota(1, NOW + 20).reset_secs, 60);
        assert_eq!(
            counter_key("ratelimit:user:7", window),
            format!("ratelimit:user:7:{window}")
        );
        let zero = Policy {
            limit: 1,
            window_secs: 0,
        };
        assert_eq!(zero.window(5), 5);
        assert_eq!(zero.quota(1, 5).reset_secs, 1);
    }

    #[test]
    fn headers_use_the_draft_names() {
        let quota = Quota {
            limit: 100,
            remaining: 7,
            reset_secs: 12,
            limited: false,
        };
        assert_eq!(
            quota.headers(),
            [
                ("ratelimit-limit", "100".into()),
                ("ratelimit-remaining", "7".into()),
                ("ratelimit-reset", "12".into()),
            ]
        );
    }

    #[test]
    fn the_refusing_or_nearest_quota_is_reported() {
        let roomy = Quota {
            limit: 100,
            remaining: 90,
            reset_secs: 30,
            limited: false,
        };
        let tight = Quota {
            limit: 10,
            remaining: 2,
            reset_secs: 50,
            limited: false,
        };
        let refused = Quota {
            limit: 100,
            remaining: 0,
            reset_secs: 5,
            limited: true,
        };
        assert_eq!(
            Quota::most_restrictive(Some(roomy), Some(tight)),
            Some(tight)
        );
        assert_eq!(
            Quota::most_restrictive(Some(tight), Some(roomy)),
            Some(tight)
        );
        assert_eq!(
            Quota::most_restrictive(Some(tight), Some(refused)),
            Some(refused)
        );
        assert_eq!(Quota::most_restrictive(None, Some(roomy)), Some(roomy));
        assert_eq!(Quota::most_restrictive(None, None), None);
    }

    #[test]
    fn health_probes_are_exempt() {
        assert!(is_exempt("/health"));
        assert!(is_exempt("/health/services"));
        assert!(!is_exempt("/healthz-not"));
        assert!(!is_exempt("/api/validate"));
    }

    #[test]
    fn addresses_key_by_group() {
        let group = AddressGroup::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(address_key(&group), "ratelimit:ip:2001:db8:1:2::/64");
    }

    #[test]
    fn users_key_by_subject() {
        assert_eq!(user_key("42"), "ratelimit:user:42");
    }
}
