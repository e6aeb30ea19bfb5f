//! Webhook notifications of finished jobs (runner/README.md, "Webhooks").
//!
//! An upload may name a callback URL (`X-Callback-Url`). Before its body is read the
//! runner checks it ([`Webhooks::admit`]): webhooks on, the URL's syntax, and a host
//! that resolves only to addresses it may call ([`address`]). The URL is recorded with
//! the job. When the job becomes `completed` or `failed`, the job store records a
//! delivery in the same transaction ([`outbox`]); one task per runner
//! ([`spawn_deliveries`]) claims due deliveries, POSTs each signed ([`signature`]) and
//! records the outcome: delivered on a 2xx, otherwise retried with exponential backoff
//! until `--webhook-max-attempts`, then given up. Deliveries are durable and at least
//! once: a runner that dies mid-attempt leaves the delivery to be claimed again, so a
//! receiver dedupes by `Spinmesh-Delivery`.

mod address;
mod outbox;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use ipnet::IpNet;
use serde::Serialize;
use spinmesh_jobs::JobView;
use spinmesh_jobs::webhook::{
    CALLBACK_URL_HEADER, CallbackUrlError, WebhookSecret, check_callback_url,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use url::{Host, Url};

use address::{AddressPolicy, GuardedResolver, parse_cidr};
pub use outbox::{CLAIM_TTL, Deliveries, Delivery, DeliveryStore, Outcome};
use signature::SigningSecrets;
pub use signature::sign;

use crate::api::{AppState, owner_header};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::units::{now_ms, parse_duration};

/// Attempts under way at once on one runner, so one slow receiver cannot hold up the
/// others' webhooks.
const MAX_IN_FLIGHT: usize = 8;
/// How often an idle delivery task looks for due deliveries (jobs finish on other
/// runners too): the longest a first attempt waits.
const POLL: Duration = Duration::from_secs(1);
/// One attempt, connection to answer: a receiver should answer at once and work later.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the delivery task deletes settled deliveries past retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Retries back off exponentially up to this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
const USER_AGENT: &str = "spinmesh-webhook/1";

/// The webhook flags, part of [`crate::Config`].
#[derive(clap::Args, Clone, Debug)]
pub struct WebhookConfig {
    /// Secret webhooks are signed with: each owner's key is derived from it (see
    /// `GET /webhook-secret`). Without it webhooks are off and uploads naming a callback
    /// URL get 400 `webhooks_disabled` (prefer the environment variable).
    #[arg(
        long = "webhook-secret",
        env = "RUNNER_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// The secret --webhook-secret replaced, during a rotation: webhooks then carry a
    /// second signature made with it, so receivers can switch keys at their pace.
    #[arg(
        long = "webhook-previous-secret",
        env = "RUNNER_WEBHOOK_PREVIOUS_SECRET",
        hide_env_values = true
    )]
    pub previous_secret: Option<String>,

    /// Networks webhooks may go to although they are not public (loopback, private,
    /// link-local, …): CIDRs or addresses, repeatable or comma-separated.
    #[arg(
        long = "webhook-allow-cidr",
        env = "RUNNER_WEBHOOK_ALLOW_CIDR",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub allow_cidrs: Vec<IpNet>,

    /// Attempts per webhook before it is given up.
    #[arg(
        // Its own id: the conversions' --max-attempts has this field name.
        id = "webhook_max_attempts",
        long = "webhook-max-attempts",
        env = "RUNNER_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 8
    )]
    pub max_attempts: u32,

    /// Delay before a webhook's second attempt; doubles with each further one (max 1h).
    #[arg(
        long = "webhook-retry-base",
        env = "RUNNER_WEBHOOK_RETRY_BASE",
        default_value = "1s",
        value_parser = parse_duration
    )]
    pub retry_base: Duration,
}

/// When failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts: base, 2 × base, 4 × base, … at most
    /// an hour.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .unwrap_or(MAX_RETRY_DELAY)
            .min(MAX_RETRY_DELAY)
    }

    /// What an attempt's result makes of a delivery that has had `attempts` attempts.
    pub fn outcome(
        &self,
        result: std::result::Result<StatusCode, String>,
        attempts: u32,
        now: i64,
    ) -> Outcome {
        let error = match result {
            Ok(status) if status.is_success() => return Outcome::Delivered,
            Ok(status) => format!("answered {status}"),
            Err(error) => error,
        };
        if attempts >= self.max_attempts {
            Outcome::Abandoned { error }
        } else {
            let delay = self.delay(attempts).as_millis() as i64;
            Outcome::RetryAt {
                at: now.saturating_add(delay),
                error,
            }
        }
    }
}

/// Webhook settings and the client that sends them, shared by uploads, the secret route
/// and the delivery task.
pub struct Webhooks {
    /// `None`: no secret configured, webhooks are off.
    secrets: Option<Arc<SigningSecrets>>,
    policy: Arc<AddressPolicy>,
    retry: RetryPolicy,
    client: reqwest::Client,
}

impl Webhooks {
    /// Checks the flags and builds the client; errors are start-up failures.
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let secret = |value: &Option<String>, flag: &str| match value.as_deref().map(str::trim) {
            None => Ok(None),
            Some(secret) if secret.len() >= 16 => Ok(Some(secret.to_string())),
            Some(_) => Err(anyhow::anyhow!(
                "{flag} must be at least 16 characters; use a long random secret"
            )),
        };
        let current = secret(&config.secret, "--webhook-secret")?;
        let previous = secret(&config.previous_secret, "--webhook-previous-secret")?;
        if current.is_none() && previous.is_some() {
            anyhow::bail!("--webhook-previous-secret needs --webhook-secret");
        }
        if config.max_attempts == 0 {
            anyhow::bail!("--webhook-max-attempts must be at least 1");
        }
        if config.retry_base.is_zero() {
            anyhow::bail!("--webhook-retry-base must be greater than 0");
        }
        let policy = Arc::new(AddressPolicy::new(config.allow_cidrs.clone()));
        let client = reqwest::Client::builder()
            // Connections go only to addresses the policy permits, wherever the name
            // points by the time of the attempt.
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            // A redirect could lead anywhere: it is a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would make the connection instead of us.
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Webhooks {
            secrets: current.map(|current| Arc::new(SigningSecrets::new(current, previous))),
            policy,
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                base: config.retry_base,
            },
            client,
        })
    }

    /// The checked callback URL of an upload (`X-Callback-Url`), if it names one: 400
    /// `webhooks_disabled` without a secret, `invalid_callback_url` for bad syntax,
    /// `callback_not_allowed` for a host the runner may not call (why is logged, not
    /// told: the addresses internal names resolve to are not the caller's to learn).
    /// Called before the body is read.
    pub async fn admit(&self, headers: &HeaderMap) -> Result<Option<String>> {
        let Some(value) = headers.get(CALLBACK_URL_HEADER) else {
            return Ok(None);
        };
        if self.secrets.is_none() {
            return Err(Error::WebhooksDisabled);
        }
        let text = value
            .to_str()
            .map_err(|_| Error::InvalidCallbackUrl(CallbackUrlError::NotPrintableAscii))?
            .trim();
        check_callback_url(text).map_err(Error::InvalidCallbackUrl)?;
        let url = Url::parse(text)
            .map_err(|_| Error::InvalidCallbackUrl(CallbackUrlError::InvalidHost))?;
        if let Err(refusal) = self.policy.resolve_url(&url).await {
            info!(reason = %refusal, "refusing upload: callback not allowed");
            return Err(Error::CallbackNotAllowed);
        }
        // Recorded as parsed: what was judged is what is called.
        Ok(Some(url.into()))
    }

    /// The key `owner`'s webhooks are signed with.
    fn owner_secret(&self, owner: &str) -> Result<WebhookSecret> {
        let secrets = self.secrets.as_ref().ok_or(Error::NoWebhookSecret)?;
        Ok(WebhookSecret {
            secret: secrets.owner_key(owner),
        })
    }
}

/// `GET /webhook-secret` (`X-Owner-Id`): the key that owner's webhooks are signed with.
pub async fn secret_route(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<([(header::HeaderName, &'static str); 1], Json<WebhookSecret>)> {
    let owner = owner_header(&headers)?;
    let secret = state.webhooks.owner_secret(&owner)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(secret)))
}

/// A webhook's body: the job as its owner sees it (`GET /api/jobs/:id`), with the event
/// and the delivery's id.
#[derive(Serialize)]
struct Notification<'a> {
    event: &'a str,
    delivery_id: &'a str,
    #[serde(flatten)]
    job: JobView,
}

/// The body of `delivery` for `job`, through the same JSON the upload component reads.
fn render(delivery: &Delivery, job: &Job) -> serde_json::Result<String> {
    let wire: spinmesh_jobs::Job = serde_json::from_value(serde_json::to_value(job)?)?;
    serde_json::to_string(&Notification {
        event: &delivery.event,
        delivery_id: &delivery.id,
        job: JobView::from(wire),
    })
}

/// What the delivery task and its attempts share.
struct Courier {
    secrets: Arc<SigningSecrets>,
    policy: Arc<AddressPolicy>,
    retry: RetryPolicy,
    client: reqwest::Client,
    deliveries: Deliveries,
    store: Store,
    /// Settled deliveries are deleted this long after they were settled.
    retention: Duration,
    metrics: Arc<Metrics>,
}

/// Starts this runner's delivery task, which ends when `stop` is cancelled (attempts
/// under way end with the process; their claims make those deliveries due again).
/// Without a secret webhooks are off, and deliveries still pending wait for one.
/// Delivered and given-up deliveries are deleted after `retention`, like finished
/// jobs' files.
pub fn spawn_deliveries(
    webhooks: &Webhooks,
    deliveries: Deliveries,
    store: Store,
    retention: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let Some(secrets) = webhooks.secrets.clone() else {
        info!("no --webhook-secret: webhooks are off");
        return;
    };
    let courier = Arc::new(Courier {
        secrets,
        policy: webhooks.policy.clone(),
        retry: webhooks.retry,
        client: webhooks.client.clone(),
        deliveries,
        store,
        retention,
        metrics,
    });
    tokio::spawn(run_deliveries(courier, stop));
}

/// Claims due deliveries, as many as there are free slots, and attempts each in its
/// own task; when none is due, sleeps until the next is (or [`POLL`]).
async fn run_deliveries(courier: Arc<Courier>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            prune(&courier).await;
        }
        let first_slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.cancelled() => return,
        };
        let free = slots.available_permits() + 1;
        let now = now_ms();
        let claimed = courier
            .deliveries
            .run(move |s| s.claim_due(now, free as u32))
            .await;
        let batch = match claimed {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => {
                drop(first_slot);
                idle(&courier, &stop).await;
                continue;
            }
            Err(err) => {
                drop(first_slot);
                warn!(error = %err, "cannot claim webhook deliveries; retrying");
                pause(POLL, &stop).await;
                continue;
            }
        };
        let mut first_slot = Some(first_slot);
        for delivery in batch {
            // Only this task takes slots, and it claimed no more than were free.
            let slot = match first_slot.take() {
                Some(slot) => slot,
                None => slots
                    .clone()
                    .try_acquire_owned()
                    .expect("no more deliveries claimed than slots free"),
            };
            let span = info_span!("webhook", delivery_id = %delivery.id, job_id = %delivery.job_id);
            tokio::spawn(attempt(courier.clone(), delivery, slot).instrument(span));
        }
    }
}

/// Deletes deliveries settled more than the retention ago.
async fn prune(courier: &Courier) {
    let before = now_ms().saturating_sub(courier.retention.as_millis() as i64);
    match courier.deliveries.run(move |s| s.prune(before)).await {
        Ok(0) => {}
        Ok(deleted) => info!(deleted, "removed settled webhook deliveries past retention"),
        Err(err) => warn!(error = %err, "cannot remove old webhook deliveries"),
    }
}

/// Waits until the next delivery is due, at most [`POLL`].
async fn idle(courier: &Courier, stop: &CancellationToken) {
    let wait = match courier.deliveries.run(|s| s.next_due()).await {
        Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).max(10) as u64),
        Ok(None) => POLL,
        Err(err) => {
            warn!(error = %err, "cannot read when webhooks are due");
            POLL
        }
    };
    pause(wait.min(POLL), stop).await;
}

async fn pause(wait: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.cancelled() => {}
    }
}

/// One attempt of `delivery`, and its outcome recorded.
async fn attempt(courier: Arc<Courier>, delivery: Delivery, _slot: OwnedSemaphorePermit) {
    let payload = match &delivery.payload {
        Some(payload) => Ok(payload.clone()),
        None => payload_of(&courier.store, &delivery).await,
    };
    let result = match &payload {
        Ok(payload) => courier.post(&delivery, payload).await,
        Err(error) => Err(error.clone()),
    };
    let host = Url::parse(&delivery.callback_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_default();
    let outcome = courier.retry.outcome(result, delivery.attempts, now_ms());
    match &outcome {
        Outcome::Delivered => courier.metrics.webhook_delivered(),
        Outcome::RetryAt { .. } => courier.metrics.webhook_retried(),
        Outcome::Abandoned { .. } => courier.metrics.webhook_abandoned(),
    }
    match &outcome {
        Outcome::Delivered => {
            info!(event = %delivery.event, host, attempts = delivery.attempts, "webhook delivered")
        }
        Outcome::RetryAt { at, error } => info!(
            event = %delivery.event, host, attempts = delivery.attempts, error,
            retry_in_ms = at - now_ms(),
            "webhook attempt failed; will retry"
        ),
        Outcome::Abandoned { error } => warn!(
            event = %delivery.event, host, attempts = delivery.attempts, error,
            "webhook attempts used up; giving up"
        ),
    }
    let sent = payload.ok();
    let settled = courier
        .deliveries
        .run(move |s| s.settle(&delivery, sent.as_deref(), &outcome, now_ms()))
        .await;
    match settled {
        Ok(true) => {}
        Ok(false) => warn!("webhook claim expired before its outcome was recorded"),
        // The claim expires and the delivery is attempted again: at least once.
        Err(err) => warn!(error = %err, "cannot record the webhook's outcome"),
    }
}

/// The body of a delivery's first attempt, from its job as it is now (just finished).
async fn payload_of(store: &Store, delivery: &Delivery) -> std::result::Result<String, String> {
    let id = delivery.job_id.clone();
    let job = store
        .run(move |s| s.get(&id))
        .await
        .map_err(|err| format!("cannot read the job: {err}"))?
        .ok_or_else(|| "the job does not exist".to_string())?;
    render(delivery, &job).map_err(|err| format!("cannot render the job: {err}"))
}

impl Courier {
    /// POSTs `payload` signed; the receiver's status, or why there is none.
    async fn post(
        &self,
        delivery: &Delivery,
        payload: &str,
    ) -> std::result::Result<StatusCode, String> {
        let url = Url::parse(&delivery.callback_url).map_err(|err| err.to_string())?;
        // IP literals never reach the resolver that guards names.
        if !matches!(url.host(), Some(Host::Domain(_))) {
            self.policy
                .resolve_url(&url)
                .await
                .map_err(|refusal| refusal.to_string())?;
        }
        let timestamp = now_ms().div_euclid(1000);
        let signature = self
            .secrets
            .header(&delivery.owner, timestamp, payload.as_bytes());
        let response = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("spinmesh-event", &delivery.event)
            .header("spinmesh-delivery", &delivery.id)
            .header("spinmesh-signature", signature)
            .body(payload.to_string())
            .send()
            .await
            .map_err(|err| describe(&err.without_url()))?;
        Ok(response.status())
    }
}

/// An error with its causes, for the log and the delivery's `last_error`.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobStatus;

    fn retry(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_secs(1),
        }
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let delays: Vec<u64> = (1..=14).map(|n| retry(20).delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600
            ]
        );
        assert_eq!(retry(20).delay(u32::MAX), MAX_RETRY_DELAY);
        let fast = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(200),
        };
        assert_eq!(fast.delay(3), Duration::from_millis(800));
    }

    #[test]
    fn only_a_2xx_delivers_and_the_last_failure_gives_up() {
        let policy = retry(3);
        assert_eq!(policy.outcome(Ok(StatusCode::OK), 1, 0), Outcome::Delivered);
        assert_eq!(
            policy.outcome(Ok(StatusCode::NO_CONTENT), 3, 0),
            Outcome::Delivered
        );
        assert_eq!(
            policy.outcome(Ok(StatusCode::INTERNAL_SERVER_ERROR), 1, 5_000),
            Outcome::RetryAt {
                at: 6_000,
                error: "answered 500 Internal Server Error".into()
            }
        );
        // A redirect is not followed: it is a failed attempt.
        assert!(matches!(
            policy.outcome(Ok(StatusCode::FOUND), 2, 0),
            Outcome::RetryAt { at: 2_000, .. }
        ));
        assert_eq!(
            policy.outcome(Err("connection refused".into()), 3, 0),
            Outcome::Abandoned {
                error: "connection refused".into()
            }
        );
    }

    #[test]
    fn the_body_is_the_owners_view_with_the_event_and_delivery() {
        let mut job = Job::sample(JobStatus::Completed, 100, 3);
        job.completed_at = Some(crate::job::Timestamp(1_000));
        let delivery = Delivery {
            id: "dlv_0123456789abcdef0123456789abcdef".into(),
            job_id: job.id.clone(),
            owner: job.owner.clone(),
            callback_url: "https://hooks.example.com/".into(),
            event: "job.completed".into(),
            payload: None,
            attempts: 1,
            claim: "c".into(),
        };
        let body: serde_json::Value =
            serde_json::from_str(&render(&delivery, &job).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "event": "job.completed",
                "delivery_id": "dlv_0123456789abcdef0123456789abcdef",
                "job_id": job.id,
                "status": "completed",
                "progress": 100,
                "filename": "a.mp3",
                "created_at": "1970-01-01T00:00:00Z",
                "completed_at": "1970-01-01T00:00:01Z",
            })
        );
    }

    fn config(args: &[&str]) -> WebhookConfig {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            webhooks: WebhookConfig,
        }
        let args = std::iter::once("runner").chain(args.iter().copied());
        <Flags as clap::Parser>::try_parse_from(args)
            .unwrap()
            .webhooks
    }

    #[test]
    fn flags_and_their_checks() {
        let defaults = config(&[]);
        assert!(defaults.secret.is_none() && defaults.allow_cidrs.is_empty());
        assert_eq!(
            (defaults.max_attempts, defaults.retry_base),
            (8, Duration::from_secs(1))
        );
        assert!(Webhooks::new(&defaults).unwrap().secrets.is_none());
        let set = config(&[
            "--webhook-secret",
            "0123456789abcdef",
            "--webhook-allow-cidr",
            "127.0.0.0/8,10.0.0.0/8",
            "--webhook-allow-cidr",
            "fd00::/8",
            "--webhook-retry-base",
            "200ms",
            "--webhook-max-attempts",
            "3",
        ]);
        assert_eq!(set.allow_cidrs.len(), 3);
        assert_eq!(set.retry_base, Duration::from_millis(200));
        assert!(Webhooks::new(&set).unwrap().secrets.is_some());
        for bad in [
            &["--webhook-secret", "short"][..],
            &["--webhook-previous-secret", "0123456789abcdef"],
            &["--webhook-max-attempts", "0"],
            &["--webhook-retry-base", "0s"],
        ] {
            assert!(Webhooks::new(&config(bad)).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn uploads_name_callbacks_the_runner_may_call_or_are_refused() {
        let headers = |url: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CALLBACK_URL_HEADER, url.parse().unwrap());
            headers
        };
        let off = Webhooks::new(&config(&[])).unwrap();
        assert!(off.admit(&HeaderMap::new()).await.unwrap().is_none());
        assert!(matches!(
            off.admit(&headers("https://example.com/")).await,
            Err(Error::WebhooksDisabled)
        ));
        assert!(matches!(
            off.owner_secret("42"),
            Err(Error::NoWebhookSecret)
        ));
        let on = Webhooks::new(&config(&["--webhook-secret", "0123456789abcdef"])).unwrap();
        assert!(matches!(
            on.admit(&headers("ftp://example.com/")).await,
            Err(Error::InvalidCallbackUrl(CallbackUrlError::NotHttp))
        ));
        for refused in [
            "http://127.0.0.1:9/hook",
            "http://[::1]/",
            "http://10.0.0.1/",
        ] {
            assert!(
                matches!(
                    on.admit(&headers(refused)).await,
                    Err(Error::CallbackNotAllowed)
                ),
                "{refused}"
            );
        }
        assert_eq!(
            on.admit(&headers("http://198.41.0.4:8080/hook?x=1"))
                .await
                .unwrap()
                .as_deref(),
            Some("http://198.41.0.4:8080/hook?x=1")
        );
        assert!(on.owner_secret("42").unwrap().secret.starts_with("whsec_"));
    }
}
