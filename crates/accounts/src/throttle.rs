//! Failed-login throttling (policy in `docs/operations.md`, "Login throttling").
//!
//! * **Per account, growing backoff.** After `free_failures` failures an account waits
//!   `backoff_secs` after each further failure, doubling up to `max_backoff_secs`; no wall
//!   is ever longer than that. Failures are forgotten `window_secs` after the last one, and
//!   a correct password forgives them.
//! * **Known clients keep their own counter.** An address group that signed in to the
//!   account within [`KNOWN_CLIENT_SECS`] is charged to a counter of its own for that
//!   account, so a stranger's guesses never lock its owner out from where they usually sign
//!   in (OWASP's device-cookie idea, keyed by address instead of a cookie).
//! * **Per address, a large budget of failures.** `address_max_failures` failures per
//!   fixed window of `window_secs`, whatever the accounts; successes are not charged. It
//!   stops one address spraying guesses across accounts without one account's failures
//!   ever blocking another account.
//!
//! An attempt is charged *before* its password is checked (in one write transaction, so
//! concurrent guesses serialise) and refunded if the password is right: no guess can slip
//! between a check and its count. A refused attempt checks no password and costs nothing.

use spin_sdk::sqlite::Connection;
use spinmesh_api::client_addr::AddressGroup;

use crate::{
    Error,
    db::{integer, text, transaction},
};

/// How long a successful sign-in makes an address group a known client of the account.
pub const KNOWN_CLIENT_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures of an account (`login_max_failures`) before backoff starts.
    pub free_failures: u64,
    /// The first wait (`login_backoff_secs`), doubled per further failure…
    pub backoff_secs: u64,
    /// …up to this (`login_backoff_max_secs`).
    pub max_backoff_secs: u64,
    /// Account failures are forgotten this long after the last one; the address budget is
    /// per window of this length (`login_failure_window_secs`).
    pub window_secs: u64,
    /// Failures per address group per window (`login_max_failures_per_address`).
    pub address_max_failures: u64,
}

/// A stored counter: `failures` and `since`, the last failure for an account counter, the
/// window start for an address counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub failures: u64,
    pub since: u64,
}

impl Policy {
    /// The wait after an account's `failures`-th failure; `None` while they are free.
    pub fn backoff(&self, failures: u64) -> Option<u64> {
        let excess = failures.checked_sub(self.free_failures)?;
        let factor = 1u64
            .checked_shl(u32::try_from(excess).unwrap_or(u32::MAX))
            .unwrap_or(u64::MAX);
        Some(
            self.backoff_secs
                .saturating_mul(factor)
                .min(self.max_backoff_secs),
        )
    }

    /// Charges an attempt to an account counter: the counter to store, or the seconds to
    /// wait when the account is backing off.
    pub fn charge_account(&self, stored: Option<Counter>, now: u64) -> Result<Counter, u64> {
        let Some(stored) = stored else {
            return Ok(Counter {
                failures: 1,
                since: now,
            });
        };
        if let Some(wait) = self.backoff(stored.failures) {
            let until = stored.since.saturating_add(wait);
            if now < until {
                return Err(until - now);
            }
        }
        let forgotten = now >= stored.since.saturating_add(self.window_secs);
        let failures = if forgotten { 1 } else { stored.failures + 1 };
        Ok(Counter {
            failures,
            since: now,
        })
    }

    /// Charges an attempt to an address counter (a fixed window from its first failure).
    pub fn charge_address(&self, stored: Option<Counter>, now: u64) -> Result<Counter, u64> {
        let window_end = |counter: &Counter| counter.since.saturating_add(self.window_secs);
        match stored.filter(|counter| counter.since <= now && now < window_end(counter)) {
            Some(counter) if counter.failures >= self.address_max_failures => {
                Err(window_end(&counter) - now)
            }
            Some(counter) => Ok(Counter {
                failures: counter.failures + 1,
                ..counter
            }),
            None => Ok(Counter {
                failures: 1,
                since: now,
            }),
        }
    }

    /// How long a row can matter: the longest wait or window after its `since`.
    fn retention_secs(&self) -> u64 {
        self.window_secs.max(self.max_backoff_secs)
    }
}

/// The counters one login attempt is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    account: String,
    user_id: Option<String>,
    address: Option<AddressGroup>,
}

impl Attempt {
    /// The account is keyed by user id when it exists (so username and email logins share
    /// a counter), else by the lower-cased name tried.
    pub fn new(user_id: Option<&str>, login: &str, address: Option<AddressGroup>) -> Self {
        let account = match user_id {
            Some(id) => format!("user:{id}"),
            None => format!("name:{}", login.to_lowercase()),
        };
        Self {
            account,
            user_id: user_id.map(str::to_owned),
            address,
        }
    }

    fn address_key(&self) -> Option<String> {
        self.address.as_ref().map(|group| format!("ip:{group}"))
    }

    /// The account counter a known client is charged to instead of the account's own.
    fn known_client_key(&self) -> Option<String> {
        self.address
            .as_ref()
            .map(|group| format!("{}@{group}", self.account))
    }
}

/// What [`charge`] counted, for [`refund`].
#[derive(Debug)]
pub struct Charged {
    account_key: String,
}

/// Counts the attempt against the address and the account (or the known client's own
/// counter); [`Error::Throttled`] without counting anything when either refuses.
pub fn charge(
    conn: &Connection,
    attempt: &Attempt,
    policy: &Policy,
    now: u64,
) -> Result<Charged, Error> {
    transaction(conn, || {
        conn.execute(
            "DELETE FROM login_throttle WHERE since <= ?1",
            &[integer(now.saturating_sub(policy.retention_secs()))],
        )?;
        let address = match attempt.address_key() {
            Some(key) => {
                let counter = policy
                    .charge_address(load(conn, &key)?, now)
                    .map_err(|retry_after| Error::Throttled { retry_after })?;
                Some((key, counter))
            }
            None => None,
        };
        let account_key = match (&attempt.user_id, &attempt.address) {
            (Some(user_id), Some(group)) if is_known_client(conn, user_id, group, now)? => {
                attempt.known_client_key().expect("an address is present")
            }
            _ => attempt.account.clone(),
        };
        let account = policy
            .charge_account(load(conn, &account_key)?, now)
            .map_err(|retry_after| Error::Throttled { retry_after })?;
        for (key, counter) in address.iter().chain([&(account_key.clone(), account)]) {
            store(conn, key, counter)?;
        }
        Ok(Charged { account_key })
    })
}

/// After a correct password: the charged account counter is cleared, the address gets its
/// attempt back, and the address group becomes a known client of the account.
pub fn refund(
    conn: &Connection,
    attempt: &Attempt,
    charged: &Charged,
    now: u64,
) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM login_throttle WHERE key = ?1",
        &[text(&charged.account_key)],
    )?;
    if let Some(key) = attempt.address_key() {
        conn.execute(
            "UPDATE login_throttle SET failures = max(failures - 1, 0) WHERE key = ?1",
            &[text(&key)],
        )?;
    }
    if let (Some(user_id), Some(group)) = (&attempt.user_id, &attempt.address) {
        conn.execute(
            "DELETE FROM login_known_clients WHERE last_login <= ?1",
            &[integer(now.saturating_sub(KNOWN_CLIENT_SECS))],
        )?;
        conn.execute(
            "INSERT INTO login_known_clients (user_id, address, last_login) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, address) DO UPDATE SET last_login = excluded.last_login",
            &[text(user_id), text(group.as_str()), integer(now)],
        )?;
    }
    Ok(())
}

fn is_known_client(
    conn: &Connection,
    user_id: &str,
    group: &AddressGroup,
    now: u64,
) -> Result<bool, Error> {
    let result = conn.execute(
        "SELECT 1 FROM login_known_clients WHERE user_id = ?1 AND address = ?2 AND last_login > ?3",
        &[
            text(user_id),
            text(group.as_str()),
            integer(now.saturating_sub(KNOWN_CLIENT_SECS)),
        ],
    )?;
    Ok(!result.rows.is_empty())
}

fn load(conn: &Connection, key: &str) -> Result<Option<Counter>, Error> {
    let result = conn.execute(
        "SELECT failures, since FROM login_throttle WHERE key = ?1",
        &[text(key)],
    )?;
    result
        .rows
        .first()
        .map(|row| match (row.get::<u64>(0), row.get::<u64>(1)) {
            (Some(failures), Some(since)) => Ok(Counter { failures, since }),
            _ => Err(Error::Corrupt("login_throttle row")),
        })
        .transpose()
}

fn store(conn: &Connection, key: &str, counter: &Counter) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO login_throttle (key, failures, since) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, since = excluded.since",
        &[text(key), integer(counter.failures), integer(counter.since)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const POLICY: Policy = Policy {
        free_failures: 3,
        backoff_secs: 10,
        max_backoff_secs: 60,
        window_secs: 300,
        address_max_failures: 5,
    };

    /// Charges `attempts` failures one after another at `now`, returning the last outcome.
    fn fail_account(
        mut stored: Option<Counter>,
        attempts: u64,
        now: u64,
    ) -> (Option<Counter>, Result<Counter, u64>) {
        let mut last = Err(0);
        for _ in 0..attempts {
            last = POLICY.charge_account(stored, now);
            if let Ok(counter) = last {
                stored = Some(counter);
            }
        }
        (stored, last)
    }

    #[test]
    fn backoff_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        let waits: Vec<_> = (1..=8).map(|n| POLICY.backoff(n)).collect();
        assert_eq!(
            waits,
            [
                None,
                None,
                Some(10),
                Some(20),
                Some(40),
                Some(60),
                Some(60),
                Some(60)
            ]
        );
        assert_eq!(POLICY.backoff(u64::MAX), Some(60));
    }

    #[test]
    fn an_account_waits_only_as_long_as_its_backoff() {
        let (stored, last) = fail_account(None, 3, NOW);
        assert_eq!(
            last,
            Ok(Counter {
                failures: 3,
                since: NOW
            })
        );
        // Refused while waiting, without counting.
        assert_eq!(POLICY.charge_account(stored, NOW + 4), Err(6));
        assert_eq!(POLICY.charge_account(stored, NOW + 9), Err(1));
        // The wait over, the next failure doubles it.
        let fourth = POLICY.charge_account(stored, NOW + 10).unwrap();
        assert_eq!(
            fourth,
            Counter {
                failures: 4,
                since: NOW + 10
            }
        );
        assert_eq!(POLICY.charge_account(Some(fourth), NOW + 29), Err(1));
        assert!(POLICY.charge_account(Some(fourth), NOW + 30).is_ok());
        // However many failures, never more than the cap.
        let many = Some(Counter {
            failures: 1000,
            since: NOW,
        });
        assert_eq!(POLICY.charge_account(many, NOW), Err(60));
        assert!(POLICY.charge_account(many, NOW + 60).is_ok());
    }

    #[test]
    fn account_failures_are_forgotten_a_window_after_the_last() {
        let stored = Some(Counter {
            failures: 2,
            since: NOW,
        });
        assert_eq!(
            POLICY.charge_account(stored, NOW + 299).unwrap().failures,
            3
        );
        assert_eq!(
            POLICY.charge_account(stored, NOW + 300).unwrap(),
            Counter {
                failures: 1,
                since: NOW + 300
            }
        );
    }

    #[test]
    fn an_address_has_a_budget_per_fixed_window() {
        let mut stored = None;
        for failures in 1..=5 {
            let counter = POLICY.charge_address(stored, NOW + failures).unwrap();
            assert_eq!(
                counter,
                Counter {
                    failures,
                    since: NOW + 1
                }
            );
            stored = Some(counter);
        }
        assert_eq!(POLICY.charge_address(stored, NOW + 100), Err(201));
        assert_eq!(
            POLICY.charge_address(stored, NOW + 301).unwrap(),
            Counter {
                failures: 1,
                since: NOW + 301
            }
        );
        // A window from the future (clock stepped back) is not trusted.
        let future = Some(Counter {
            failures: 5,
            since: NOW + 500,
        });
        assert_eq!(POLICY.charge_address(future, NOW).unwrap().failures, 1);
    }

    #[test]
    fn attempts_key_accounts_by_id_or_name_and_known_clients_per_group() {
        let group = AddressGroup::of("2001:db8:1:2::9".parse().unwrap());
        let known = Attempt::new(Some("u-1"), "Bob@Example.com", Some(group.clone()));
        assert_eq!(known.account, "user:u-1");
        assert_eq!(known.address_key().as_deref(), Some("ip:2001:db8:1:2::/64"));
        assert_eq!(
            known.known_client_key().as_deref(),
            Some("user:u-1@2001:db8:1:2::/64")
        );
        let unknown = Attempt::new(None, "MALLORY", None);
        assert_eq!(unknown.account, "name:mallory");
        assert_eq!(unknown.address_key(), None);
        assert_eq!(unknown.known_client_key(), None);
    }
}
