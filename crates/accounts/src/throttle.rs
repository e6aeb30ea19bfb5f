//! Failed-login throttling per account and per client address (fixed windows in SQLite).
//!
//! An attempt is counted *before* its password is checked and refunded if it succeeds, so
//! concurrent guesses cannot slip through between a check and a count: the counter is
//! incremented atomically by one upsert.

use std::net::SocketAddr;

use spin_sdk::sqlite::Connection;

use crate::{
    Error,
    db::{integer, text},
};

/// At most `max_failures` failed logins per key within `window_secs` of the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_failures: u64,
    pub window_secs: u64,
}

impl Policy {
    /// Seconds until the key may try again, when `count` attempts (this one included)
    /// have been made in the window that began at `window_start`; `None` when allowed.
    pub fn retry_after(&self, count: u64, window_start: u64, now: u64) -> Option<u64> {
        let window_end = window_start.saturating_add(self.window_secs);
        (count > self.max_failures && now < window_end).then(|| window_end - now)
    }
}

/// The counters one attempt is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    account: String,
    address: Option<String>,
}

impl Keys {
    /// The account is keyed by user id when it exists (so username and email logins share
    /// a counter), else by the lower-cased name tried; the address by IP, without the port.
    pub fn new(user_id: Option<&str>, login: &str, client_addr: Option<&str>) -> Self {
        let account = match user_id {
            Some(id) => format!("user:{id}"),
            None => format!("name:{}", login.to_lowercase()),
        };
        Self {
            account,
            address: client_addr.map(|addr| format!("ip:{}", client_ip(addr))),
        }
    }

    /// The address first: see [`charge`].
    fn all(&self) -> impl Iterator<Item = &str> {
        self.address
            .as_deref()
            .into_iter()
            .chain(std::iter::once(self.account.as_str()))
    }
}

/// `1.2.3.4:5678` → `1.2.3.4`, `[::1]:5678` → `::1`; anything else as given.
fn client_ip(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(socket) => socket.ip().to_string(),
        Err(_) => addr.to_owned(),
    }
}

/// Counts an attempt against each key; [`Error::Throttled`] when one is over the limit.
///
/// A throttled address stops there, before its account key is counted, so one client
/// cannot fill the table with counters for names it makes up.
pub fn charge(conn: &Connection, keys: &Keys, policy: &Policy, now: u64) -> Result<(), Error> {
    // Forget finished windows, so the table holds only counters that still matter.
    conn.execute(
        "DELETE FROM login_failures WHERE window_start <= ?1",
        &[integer(now.saturating_sub(policy.window_secs))],
    )?;
    for key in keys.all() {
        // In SQLite's UPDATE every right-hand side sees the old row, so both CASEs agree.
        let result = conn.execute(
            "INSERT INTO login_failures (key, count, window_start) VALUES (?1, 1, ?2)
             ON CONFLICT (key) DO UPDATE SET
                 count = CASE WHEN window_start <= ?3 THEN 1 ELSE count + 1 END,
                 window_start = CASE WHEN window_start <= ?3 THEN ?2 ELSE window_start END
             RETURNING count, window_start",
            &[
                text(key),
                integer(now),
                integer(now.saturating_sub(policy.window_secs)),
            ],
        )?;
        let row = result
            .rows
            .first()
            .ok_or(Error::Corrupt("upsert returned no row"))?;
        let (Some(count), Some(start)) = (row.get::<u64>(0), row.get::<u64>(1)) else {
            return Err(Error::Corrupt("login_failures row"));
        };
        if let Some(retry_after) = policy.retry_after(count, start, now) {
            return Err(Error::Throttled { retry_after });
        }
    }
    Ok(())
}

/// After a correct password: the account's failures are forgiven, and the address gets
/// back the attempt [`charge`] counted (its other failures stand).
pub fn refund(conn: &Connection, keys: &Keys) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM login_failures WHERE key = ?1",
        &[text(&keys.account)],
    )?;
    if let Some(address) = &keys.address {
        conn.execute(
            "UPDATE login_failures SET count = max(count - 1, 0) WHERE key = ?1",
            &[text(address)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_failures: 3,
        window_secs: 60,
    };

    #[test]
    fn the_attempt_after_the_limit_waits_for_the_window_to_end() {
        assert_eq!(POLICY.retry_after(1, 1000, 1000), None);
        assert_eq!(POLICY.retry_after(3, 1000, 1010), None);
        assert_eq!(POLICY.retry_after(4, 1000, 1010), Some(50));
        assert_eq!(POLICY.retry_after(100, 1000, 1059), Some(1));
        assert_eq!(POLICY.retry_after(100, 1000, 1060), None);
    }

    #[test]
    fn keys_prefer_the_user_id_and_drop_the_port() {
        let known = Keys::new(Some("u-1"), "Bob@Example.com", Some("10.0.0.7:50123"));
        assert_eq!(known.all().collect::<Vec<_>>(), ["ip:10.0.0.7", "user:u-1"]);
        let unknown = Keys::new(None, "MALLORY", Some("[2001:db8::1]:443"));
        assert_eq!(
            unknown.all().collect::<Vec<_>>(),
            ["ip:2001:db8::1", "name:mallory"]
        );
        let no_address = Keys::new(None, "eve", None);
        assert_eq!(no_address.all().collect::<Vec<_>>(), ["name:eve"]);
    }

    #[test]
    fn client_ip_forms() {
        assert_eq!(client_ip("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(client_ip("[::1]:8080"), "::1");
        assert_eq!(client_ip("127.0.0.1"), "127.0.0.1");
        assert_eq!(client_ip("::1"), "::1");
        assert_eq!(client_ip("garbage"), "garbage");
    }
}
