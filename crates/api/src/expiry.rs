//! Entries that expire, in key-value stores that have no expiry of their own:
//! `wasi:keyvalue` (Spin's key-value) sets keys forever, on the local store and on Redis
//! alike. The token cache, the logout denylist and the rate-limit counters all describe
//! something with an end (a token's `exp`, a window's end), so each such store keeps an
//! index of its entries by the window in which they end, and the first writer of each
//! window deletes what ended in the windows before.
//!
//! Layout in the store itself, `W` being `expiry_window_secs`, a window `t / W`:
//! * `expiry:<w>:count`: how many entries window `w` lists (an atomic counter, so writers
//!   on any number of hosts each get their own slot);
//! * `expiry:<w>:<n>`: the key of the `n`th entry ending in window `w`;
//! * `expiry:swept:<w>`: counts writers in window `w`; the first one sweeps;
//! * `expiry:next`: the oldest window not swept yet.
//!
//! A sweep is bounded ([`MAX_SWEPT_ENTRIES`], [`MAX_SWEPT_WINDOWS`]) and resumes where
//! the last one stopped. It is best effort: a failed sweep leaves the entries for the next.

use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

use crate::config::positive_u64;

/// Most entries one sweep deletes, so no request pays for a backlog at once.
const MAX_SWEPT_ENTRIES: usize = 4096;
/// Most windows one sweep walks, for the same reason (after a long idle time).
const MAX_SWEPT_WINDOWS: u64 = 64;
const NEXT: &str = "expiry:next";

/// A store's index of expiring entries, in windows of `expiry_window_secs`.
pub struct Index<'a> {
    bucket: &'a store::Bucket,
    window_secs: u64,
}

impl<'a> Index<'a> {
    /// The index of `bucket`, with the window length from variable `expiry_window_secs`.
    pub fn new(bucket: &'a store::Bucket) -> Result<Self, crate::ApiError> {
        Ok(Self {
            bucket,
            window_secs: positive_u64("expiry_window_secs")?,
        })
    }

    /// Sets `key` to `value` until `expires_at` (Unix seconds): the entry is listed for
    /// deletion once its window has ended, and the first writer of the window sweeps.
    /// Only the entry and its listing can fail the call: a failed sweep is logged and
    /// left for the next one.
    pub fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_at: u64,
        now: u64,
    ) -> Result<(), store::Error> {
        self.bucket.set(key, value)?;
        self.list(key, expires_at)?;
        if let Err(error) = self.sweep_once_per_window(now) {
            eprintln!("expiry sweep: key-value: {error:?}");
        }
        Ok(())
    }

    /// Lists the existing `key` for deletion after `expires_at`.
    pub fn list(&self, key: &str, expires_at: u64) -> Result<(), store::Error> {
        let window = expires_at / self.window_secs;
        let slot = atomics::increment(self.bucket, &count_key(window), 1)?;
        self.bucket.set(&slot_key(window, slot), key.as_bytes())
    }

    /// The first call of each window (on any host) deletes what ended before it.
    pub fn sweep_once_per_window(&self, now: u64) -> Result<(), store::Error> {
        let current = now / self.window_secs;
        if atomics::increment(self.bucket, &swept_key(current), 1)? != 1 {
            return Ok(());
        }
        self.sweep(current)
    }

    /// Deletes the entries of every window before `current`, and the window's own keys,
    /// within the bounds.
    fn sweep(&self, current: u64) -> Result<(), store::Error> {
        let mut window = match self.bucket.get(NEXT)? {
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(current),
            // Never swept: every entry so far was listed in this window or later.
            None => current,
        };
        let last = current.min(window.saturating_add(MAX_SWEPT_WINDOWS));
        let mut budget = MAX_SWEPT_ENTRIES;
        while window < last && budget > 0 {
            let listed = usize::try_from(atomics::increment(self.bucket, &count_key(window), 0)?)
                .unwrap_or(0);
            if listed > budget {
                // Too many for this sweep: the last slots that fit go, the rest stays
                // for the next. Nobody lists into an ended window, so the count holds.
                self.delete_slots(window, listed - budget + 1..=listed)?;
                atomics::increment(
                    self.bucket,
                    &count_key(window),
                    -i64::try_from(budget).unwrap_or(i64::MAX),
                )?;
                break;
            }
            self.delete_slots(window, 1..=listed)?;
            batch::delete_many(self.bucket, &[count_key(window), swept_key(window)])?;
            budget -= listed;
            window += 1;
        }
        self.bucket.set(NEXT, window.to_string().as_bytes())
    }

    /// Deletes the entries listed in `slots` of `window`, and those slots.
    fn delete_slots(
        &self,
        window: u64,
        slots: std::ops::RangeInclusive<usize>,
    ) -> Result<(), store::Error> {
        let slot_keys: Vec<String> = slots
            .map(|slot| slot_key(window, i64::try_from(slot).unwrap_or(i64::MAX)))
            .collect();
        if slot_keys.is_empty() {
            return Ok(());
        }
        let listed = batch::get_many(self.bucket, &slot_keys)?;
        let entries: Vec<String> = listed
            .into_iter()
            .filter_map(|(_, key)| String::from_utf8(key?).ok())
            .collect();
        if !entries.is_empty() {
            batch::delete_many(self.bucket, &entries)?;
        }
        batch::delete_many(self.bucket, &slot_keys)
    }
}

fn count_key(window: u64) -> String {
    format!("expiry:{window}:count")
}

fn slot_key(window: u64, slot: i64) -> String {
    format!("expiry:{window}:{slot}")
}

fn swept_key(window: u64) -> String {
    format!("expiry:swept:{window}")
}
