//! Request rate limits: fixed-window counters, one per client address and one per
//! signed-in user, with the IETF draft `RateLimit-*` headers (draft-ietf-httpapi-
//! ratelimit-headers) on every limited route's responses. The arithmetic is here; the
//! counters live in the key-value store (see [`crate::edge`]).

use crate::client_addr::AddressGroup;

/// At most `limit` requests per `window_secs`, the window starting at a key's first
/// request after the previous one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u64,
    pub window_secs: u64,
}

/// A key's counter as stored: `"<window start, Unix seconds> <requests counted>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub count: u64,
}

impl Window {
    /// `None` for anything unreadable, which then counts as no window (a fresh start).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (start, count) = text.split_once(' ')?;
        Some(Self {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.start, self.count).into_bytes()
    }
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
    /// Counts a request at `now` against the key's `stored` window. Returns the quota and
    /// the window to store, `None` when nothing changed (a refused request is not counted,
    /// so a client hammering while limited costs no write).
    pub fn charge(&self, stored: Option<Window>, now: u64) -> (Quota, Option<Window>) {
        let current =
            stored.filter(|w| w.start <= now && now < w.start.saturating_add(self.window_secs));
        let mut window = current.unwrap_or(Window {
            start: now,
            count: 0,
        });
        let reset_secs = (window.start.saturating_add(self.window_secs) - now).max(1);
        if window.count >= self.limit {
            let quota = Quota {
                limit: self.limit,
                remaining: 0,
                reset_secs,
                limited: true,
            };
            return (quota, None);
        }
        window.count += 1;
        let quota = Quota {
            limit: self.limit,
            remaining: self.limit - window.count,
            reset_secs,
            limited: false,
        };
        (quota, Some(window))
    }
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
    fn counts_up_to_the_limit_then_refuses_without_writing() {
        let (quota, stored) = POLICY.charge(None, NOW);
        assert_eq!(
            quota,
            Quota {
                limit: 3,
                remaining: 2,
                reset_secs: 60,
                limited: false
            }
        );
        assert_eq!(
            stored,
            Some(Window {
                start: NOW,
                count: 1
            })
        );

        let (quota, stored) = POLICY.charge(stored, NOW + 10);
        assert_eq!(
            (quota.remaining, quota.reset_secs, quota.limited),
            (1, 50, false)
        );
        let (quota, stored) = POLICY.charge(stored, NOW + 20);
        assert_eq!(
            (quota.remaining, quota.reset_secs, quota.limited),
            (0, 40, false)
        );
        assert_eq!(
            stored,
            Some(Window {
                start: NOW,
                count: 3
            })
        );

        let (quota, unchanged) = POLICY.charge(stored, NOW + 59);
        assert_eq!(
            quota,
            Quota {
                limit: 3,
                remaining: 0,
                reset_secs: 1,
                limited: true
            }
        );
        assert_eq!(unchanged, None);
    }

    #[test]
    fn a_new_window_starts_when_the_old_one_ends() {
        let full = Some(Window {
            start: NOW,
            count: 3,
        });
        let (quota, stored) = POLICY.charge(full, NOW + 60);
        assert_eq!(
            (quota.remaining, quota.reset_secs, quota.limited),
            (2, 60, false)
        );
        assert_eq!(
            stored,
            Some(Window {
                start: NOW + 60,
                count: 1
            })
        );
        // A window from the future (clock stepped back) is not trusted either.
        let (_, stored) = POLICY.charge(
            Some(Window {
                start: NOW + 500,
                count: 3,
            }),
            NOW,
        );
        assert_eq!(
            stored,
            Some(Window {
                start: NOW,
                count: 1
            })
        );
    }

    #[test]
    fn windows_round_trip_and_garbage_is_a_fresh_start() {
        let window = Window {
            start: NOW,
            count: 42,
        };
        assert_eq!(Window::decode(&window.encode()), Some(window));
        for garbage in [&b""[..], b"1", b"a b", b"1 -2", b"\xff 1"] {
            assert_eq!(Window::decode(garbage), None, "{garbage:?}");
        }
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
