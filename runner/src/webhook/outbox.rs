//! The webhook outbox: deliveries recorded by the job store, claimed and settled here.
//!
//! A delivery row is written by a trigger in the same transaction that makes a job
//! `completed` or `failed` (migrations `sqlite/0006_webhooks.sql`,
//! `postgres/0005_webhooks.sql`), so whatever finishes a job (a worker, the reaper, a
//! runner that has since died) records its webhook, or the job is not finished.
//!
//! A claim is a lease, as for jobs: it counts the attempt, pushes the row's due time
//! [`CLAIM_TTL`] ahead (should the runner vanish mid-attempt, the delivery is due again
//! then) and issues a token only the claimer's outcome can name. On PostgreSQL due rows
//! are taken with `FOR UPDATE SKIP LOCKED`, so runners never claim the same delivery.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use crate::error::Result;
use crate::pg::PgJobStore;
use crate::store::SqliteJobStore;

/// How long a claimed delivery stays the claimer's: well past one attempt's timeout.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// One pending webhook, as claimed for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `dlv_` and 32 hex digits; the `Spinmesh-Delivery` header, the same on every
    /// attempt so receivers can drop repeats.
    pub id: String,
    pub job_id: String,
    pub owner: String,
    pub callback_url: String,
    /// `job.completed` or `job.failed`.
    pub event: String,
    /// The body, fixed by the first attempt so that every attempt sends the same.
    pub payload: Option<String>,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Names this claim; an outcome recorded under another claim changes nothing.
    pub claim: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Another attempt at `at` (epoch ms).
    RetryAt { at: i64, error: String },
    /// The last attempt failed too: given up.
    Abandoned { error: String },
}

/// The outbox's operations, implemented by both job stores (the same databases).
pub trait DeliveryStore: Send + Sync + 'static {
    /// Claims up to `limit` deliveries due at `now`, oldest first.
    fn claim_due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// When the next pending delivery is due, if any is pending.
    fn next_due(&self) -> Result<Option<i64>>;
    /// Records the outcome of `delivery`'s attempt and the body it sent (kept for the
    /// next attempts; `None` if it could not be made); `false` when the claim no longer
    /// holds (it expired and another attempt was claimed).
    fn settle(
        &self,
        delivery: &Delivery,
        payload: Option<&str>,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool>;
    /// Deletes deliveries that were delivered or given up before `finished_before`.
    fn prune(&self, finished_before: i64) -> Result<u64>;
}

/// Async handle to a [`DeliveryStore`]; cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<dyn DeliveryStore>,
}

impl Deliveries {
    pub fn new(inner: Arc<dyn DeliveryStore>) -> Self {
        Deliveries { inner }
    }

    /// Runs `f` against the store on the blocking pool, like [`crate::store::Store::run`].
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&dyn DeliveryStore) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&*inner)).await?
    }
}

fn new_claim() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn claim_expiry(now: i64) -> i64 {
    now.saturating_add(CLAIM_TTL.as_millis() as i64)
}

/// The columns a claim returns, in [`Delivery`]'s order (without the claim).
const CLAIMED: &str = "id, job_id, owner, callback_url, event, payload, attempts";

/// The state, due time, error and finish time an [`Outcome`] is recorded as.
fn outcome_columns(
    outcome: &Outcome,
    now: i64,
) -> (&'static str, Option<i64>, Option<&str>, Option<i64>) {
    match outcome {
        Outcome::Delivered => ("delivered", None, None, Some(now)),
        Outcome::RetryAt { at, error } => ("pending", Some(*at), Some(error.as_str()), None),
        Outcome::Abandoned { error } => ("abandoned", None, Some(error.as_str()), Some(now)),
    }
}

/// The update behind [`DeliveryStore::settle`], `p` giving the backend's placeholder
/// for parameter n: (1) id, (2) claim, (3) state, (4) due time or NULL to keep it,
/// (5) error, (6) finished at, (7) payload.
fn settle_update(p: impl Fn(u8) -> String) -> String {
    format!(
        "UPDATE webhook_deliveries
         SET state = {state}, next_attempt_at = COALESCE({due}, next_attempt_at),
             last_error = {error}, finished_at = {finished},
             payload = COALESCE(payload, {payload}), claim_token = NULL
         WHERE id = {id} AND claim_token = {claim} AND state = 'pending'",
        id = p(1),
        claim = p(2),
        state = p(3),
        due = p(4),
        error = p(5),
        finished = p(6),
        payload = p(7),
    )
}

impl DeliveryStore for SqliteJobStore {
    fn claim_due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        let claim = new_claim();
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "UPDATE webhook_deliveries
                 SET attempts = attempts + 1, next_attempt_at = ?2, claim_token = ?3
                 WHERE seq IN (SELECT seq FROM webhook_deliveries
                               WHERE state = 'pending' AND next_attempt_at <= ?1
                               ORDER BY next_attempt_at, seq LIMIT ?4)
                 RETURNING {CLAIMED}"
            ))?;
            stmt.query_map(params![now, claim_expiry(now), claim, limit], |row| {
                Ok(Delivery {
                    id: row.get(0)?,
                    job_id: row.get(1)?,
                    owner: row.get(2)?,
                    callback_url: row.get(3)?,
                    event: row.get(4)?,
                    payload: row.get(5)?,
                    attempts: row.get::<_, i64>(6)?.max(0) as u32,
                    claim: claim.clone(),
                })
            })?
            .collect()
        })
    }

    fn next_due(&self) -> Result<Option<i64>> {
        self.with_conn(|conn| {
            conn.query_row(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )
        })
    }

    fn settle(
        &self,
        delivery: &Delivery,
        payload: Option<&str>,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool> {
        let (state, due, error, finished) = outcome_columns(outcome, now);
        self.with_conn(|conn| {
            let n = conn.execute(
                &settle_update(|n| format!("?{n}")),
                params![
                    delivery.id,
                    delivery.claim,
                    state,
                    due,
                    error,
                    finished,
                    payload
                ],
            )?;
            Ok(n > 0)
        })
    }

    fn prune(&self, finished_before: i64) -> Result<u64> {
        self.with_conn(|conn| {
            let n = conn.execute(&prune_delete("?1"), [finished_before])?;
            Ok(n as u64)
        })
    }
}

/// The delete behind [`DeliveryStore::prune`], `param` the backend's placeholder.
fn prune_delete(param: &str) -> String {
    format!("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND finished_at < {param}")
}

impl DeliveryStore for PgJobStore {
    fn claim_due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        let claim = new_claim();
        self.block_on(async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    &format!(
                        "WITH due AS (
                             SELECT seq FROM webhook_deliveries
                             WHERE state = 'pending' AND next_attempt_at <= $1
                             ORDER BY next_attempt_at, seq LIMIT $4
                             FOR UPDATE SKIP LOCKED)
                         UPDATE webhook_deliveries d
                         SET attempts = d.attempts + 1, next_attempt_at = $2, claim_token = $3
                         FROM due WHERE d.seq = due.seq
                         RETURNING {}",
                        CLAIMED
                            .split(", ")
                            .map(|column| format!("d.{column}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    &[&now, &claim_expiry(now), &claim, &i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(Delivery {
                        id: row.try_get(0)?,
                        job_id: row.try_get(1)?,
                        owner: row.try_get(2)?,
                        callback_url: row.try_get(3)?,
                        event: row.try_get(4)?,
                        payload: row.try_get(5)?,
                        attempts: row.try_get::<_, i32>(6)?.max(0) as u32,
                        claim: claim.clone(),
                    })
                })
                .collect()
        })
    }

    fn next_due(&self) -> Result<Option<i64>> {
        self.block_on(async {
            let client = self.pool.get().await?;
            Ok(client
                .query_one(
                    "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
                    &[],
                )
                .await?
                .try_get(0)?)
        })
    }

    fn settle(
        &self,
        delivery: &Delivery,
        payload: Option<&str>,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool> {
        let (state, due, error, finished) = outcome_columns(outcome, now);
        self.block_on(async {
            let client = self.pool.get().await?;
            let n = client
                .execute(
                    &settle_update(|n| format!("${n}")),
                    &[
                        &delivery.id,
                        &delivery.claim,
                        &state,
                        &due,
                        &error,
                        &finished,
                        &payload,
                    ],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn prune(&self, finished_before: i64) -> Result<u64> {
        self.block_on(async {
            let client = self.pool.get().await?;
            Ok(client
                .execute(&prune_delete("$1"), &[&finished_before])
                .await?)
        })
    }
}

impl SqliteJobStore {
    /// Voids every claim, making those deliveries due at `now`: called at start, when
    /// the exclusive spool lock proves whoever claimed them gone.
    pub fn release_webhook_claims(&self, now: i64) -> Result<u64> {
        self.with_conn(|conn| {
            let n = conn.execute(
                "UPDATE webhook_deliveries SET claim_token = NULL, next_attempt_at = ?1
                 WHERE state = 'pending' AND claim_token IS NOT NULL",
                [now],
            )?;
            Ok(n as u64)
        })
    }
}
