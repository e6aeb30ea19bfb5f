//! Webhooks: the outbox on both job stores, then the real runner binary posting to a
//! receiver run by the test.

mod common;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::postgres::PgCluster;
use common::*;
use serde_json::Value;
use spinmesh_runner::job::{JobStatus, NewJob};
use spinmesh_runner::names::new_job_id;
use spinmesh_runner::pg::{self, PgJobStore};
use spinmesh_runner::store::{
    Claim, JobStore, LeaseHolder, OwnerQuota, REASON_INTERRUPTED, SqliteJobStore,
};
use spinmesh_runner::webhook::{CLAIM_TTL, Delivery, DeliveryStore, Outcome, sign};

const SECRET: &str = "test-webhook-secret-0123456789";

// ---------------------------------------------------------------------------------------
// The outbox, on SQLite and PostgreSQL

/// One store, seen as the job store and as the outbox (the same database).
struct Stores {
    jobs: Arc<dyn JobStore>,
    outbox: Arc<dyn DeliveryStore>,
}

struct Backend {
    name: &'static str,
    dir: tempfile::TempDir,
    postgres: Option<(PgCluster, tokio::runtime::Runtime)>,
}

impl Backend {
    /// A handle as runner `runner_id` has one.
    fn open(&self, runner_id: &str) -> Stores {
        let holder = LeaseHolder {
            runner_id: runner_id.into(),
            ttl: Duration::from_secs(10),
        };
        match &self.postgres {
            None => {
                let store = Arc::new(
                    SqliteJobStore::open(&self.dir.path().join("jobs.db"), holder).unwrap(),
                );
                Stores {
                    jobs: store.clone(),
                    outbox: store,
                }
            }
            Some((cluster, runtime)) => {
                let config = pg::parse_url(&cluster.url()).unwrap();
                let store = Arc::new(
                    runtime
                        .block_on(PgJobStore::connect(config, 8, holder))
                        .unwrap(),
                );
                Stores {
                    jobs: store.clone(),
                    outbox: store,
                }
            }
        }
    }
}

/// Runs `body` once per backend, naming the backend if it fails.
fn on_both(body: impl Fn(&Backend)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backends = [
        Backend {
            name: "sqlite",
            dir: tempfile::tempdir().unwrap(),
            postgres: None,
        },
        Backend {
            name: "postgres",
            dir: tempfile::tempdir().unwrap(),
            postgres: Some((PgCluster::start(), runtime)),
        },
    ];
    for backend in &backends {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(backend)));
        if let Err(panic) = outcome {
            eprintln!("failed on the {} backend", backend.name);
            std::panic::resume_unwind(panic);
        }
    }
}

/// Records a job (with a callback, or not) and claims it: it is running.
fn running_job(
    store: &dyn JobStore,
    callback: Option<&str>,
    now: i64,
) -> spinmesh_runner::store::Lease {
    let job = NewJob {
        id: new_job_id(),
        owner: "alice".into(),
        source_filename: "a.mp4".into(),
        filename: "a.mp3".into(),
        size_bytes: 10,
        created_at: now,
        started_at: None,
        callback_url: callback.map(str::to_string),
    };
    let id = job.id.clone();
    store.insert(job, &OwnerQuota::UNLIMITED, now).unwrap();
    match store.claim_next(now).unwrap() {
        Claim::Job(leased) if leased.job.id == id => leased.lease,
        other => panic!("expected to claim {id}, got {other:?}"),
    }
}

const HOOK: &str = "https://hooks.example.com/spinmesh";

#[test]
fn finishing_a_job_records_its_webhook_in_the_same_change() {
    on_both(|backend| {
        let stores = backend.open("a");
        let (jobs, outbox) = (&*stores.jobs, &*stores.outbox);
        assert_eq!(outbox.next_due().unwrap(), None);

        let lease = running_job(jobs, Some(HOOK), 100);
        // Nothing until the job finishes; progress is no event.
        assert!(jobs.renew(&lease, Some(50), 150).unwrap());
        assert!(outbox.claim_due(10_000, 10).unwrap().is_empty());
        assert!(jobs.complete(&lease, 99, 200).unwrap());
        assert_eq!(outbox.next_due().unwrap(), Some(200));
        let claimed = outbox.claim_due(200, 10).unwrap();
        let [delivery] = claimed.as_slice() else {
            panic!("one delivery: {claimed:?}")
        };
        assert_eq!(delivery.job_id, lease.job_id);
        assert_eq!(
            (
                delivery.event.as_str(),
                delivery.owner.as_str(),
                delivery.callback_url.as_str()
            ),
            ("job.completed", "alice", HOOK)
        );
        assert!(
            delivery.id.starts_with("dlv_") && delivery.id.len() == 36,
            "{}",
            delivery.id
        );
        assert_eq!((delivery.attempts, delivery.payload.as_deref()), (1, None));
        assert!(
            outbox
                .settle(delivery, None, &Outcome::Delivered, 250)
                .unwrap()
        );

        // Without a callback, no webhook.
        let quiet = running_job(jobs, None, 300);
        assert!(jobs.complete(&quiet, 1, 301).unwrap());
        // A failure is an event too, and so is the reaper's.
        let failing = running_job(jobs, Some(HOOK), 400);
        assert!(
            jobs.fail(&failing, "Input is not a valid media file", 401)
                .unwrap()
        );
        let interrupted = running_job(jobs, Some(HOOK), 500);
        let reaped = jobs.reap_expired(1, 1_000_000).unwrap();
        assert_eq!(reaped.failed, vec![interrupted.job_id.clone()]);
        assert_eq!(
            jobs.get(&interrupted.job_id)
                .unwrap()
                .unwrap()
                .error
                .as_deref(),
            Some(REASON_INTERRUPTED)
        );
        let failures = outbox.claim_due(1_000_000, 10).unwrap();
        for delivery in &failures {
            assert!(
                outbox
                    .settle(delivery, None, &Outcome::Delivered, 1_000_001)
                    .unwrap()
            );
        }
        let events: HashSet<(String, String)> =
            failures.into_iter().map(|d| (d.job_id, d.event)).collect();
        assert_eq!(
            events,
            HashSet::from([
                (failing.job_id.clone(), "job.failed".to_string()),
                (interrupted.job_id.clone(), "job.failed".to_string()),
            ])
        );

        // A retried job that finishes again is a new event, with a new delivery id.
        jobs.retry(&failing.job_id, &OwnerQuota::UNLIMITED)
            .unwrap()
            .unwrap();
        let Claim::Job(again) = jobs.claim_next(2_000_000).unwrap() else {
            panic!("the retried job is queued")
        };
        assert!(jobs.complete(&again.lease, 5, 2_000_001).unwrap());
        let claimed = outbox.claim_due(2_000_001, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (claimed[0].job_id.as_str(), claimed[0].event.as_str()),
            (failing.job_id.as_str(), "job.completed")
        );
        assert_eq!(
            jobs.get(&failing.job_id).unwrap().unwrap().status,
            JobStatus::Completed
        );
    });
}

/// Completed jobs with callbacks, so that `count` deliveries are due at `now`.
fn due_deliveries(jobs: &dyn JobStore, count: usize, now: i64) {
    for _ in 0..count {
        let lease = running_job(jobs, Some(HOOK), now);
        assert!(jobs.complete(&lease, 1, now).unwrap());
    }
}

#[test]
fn runners_never_claim_the_same_delivery() {
    on_both(|backend| {
        let runners = [backend.open("a"), backend.open("b")];
        due_deliveries(&*runners[0].jobs, 30, 100);
        let outboxes: Vec<Arc<dyn DeliveryStore>> =
            runners.iter().map(|r| Arc::clone(&r.outbox)).collect();
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let outbox = Arc::clone(&outboxes[n % 2]);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let batch = outbox.claim_due(100, 3).unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|d| d.id));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            for id in handle.join().unwrap() {
                assert!(seen.insert(id), "a delivery was claimed twice");
            }
        }
        assert_eq!(seen.len(), 30);
    });
}

#[test]
fn an_attempt_is_settled_by_its_claim_only_and_retries_come_when_due() {
    on_both(|backend| {
        let (a, b) = (backend.open("a"), backend.open("b"));
        due_deliveries(&*a.jobs, 1, 100);
        let first: Delivery = a.outbox.claim_due(100, 1).unwrap().remove(0);

        // The attempt failed: due again at 600, with the body it sent kept.
        let retry = Outcome::RetryAt {
            at: 600,
            error: "answered 500".into(),
        };
        assert!(
            a.outbox
                .settle(&first, Some("{\"v\":1}"), &retry, 110)
                .unwrap()
        );
        assert!(b.outbox.claim_due(599, 1).unwrap().is_empty());
        assert_eq!(b.outbox.next_due().unwrap(), Some(600));
        let second = b.outbox.claim_due(600, 1).unwrap().remove(0);
        assert_eq!(
            (second.id.as_str(), second.attempts),
            (first.id.as_str(), 2)
        );
        assert_eq!(second.payload.as_deref(), Some("{\"v\":1}"));

        // Runner b vanishes mid-attempt: once its claim expires, a takes the delivery,
        // and b's late outcome changes nothing.
        let expired = 600 + CLAIM_TTL.as_millis() as i64;
        assert!(a.outbox.claim_due(expired - 1, 1).unwrap().is_empty());
        let third = a.outbox.claim_due(expired, 1).unwrap().remove(0);
        assert_eq!(third.attempts, 3);
        assert!(
            !b.outbox
                .settle(&second, None, &Outcome::Delivered, expired)
                .unwrap()
        );
        assert!(
            a.outbox
                .settle(&third, None, &Outcome::Delivered, expired)
                .unwrap()
        );
        assert_eq!(a.outbox.next_due().unwrap(), None);

        // One given up is done too.
        due_deliveries(&*a.jobs, 1, 700);
        let last = a.outbox.claim_due(expired, 1).unwrap().remove(0);
        let gave_up = Outcome::Abandoned {
            error: "connection refused".into(),
        };
        assert!(a.outbox.settle(&last, None, &gave_up, expired).unwrap());
        assert_eq!(a.outbox.next_due().unwrap(), None);

        // Settled deliveries go once past retention; pending ones never do.
        due_deliveries(&*a.jobs, 1, expired);
        assert_eq!(a.outbox.prune(expired).unwrap(), 0);
        assert_eq!(a.outbox.prune(expired + 1).unwrap(), 2);
        assert_eq!(a.outbox.next_due().unwrap(), Some(expired));
    });
}

#[test]
fn a_sqlite_runner_takes_back_its_claims_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let holder = || LeaseHolder {
        runner_id: "a".into(),
        ttl: Duration::from_secs(10),
    };
    let store = SqliteJobStore::open(&path, holder()).unwrap();
    due_deliveries(&store, 1, 100);
    assert_eq!(store.claim_due(100, 1).unwrap().len(), 1);
    drop(store);
    // The next start: the claim of the runner that was stopped mid-attempt is void.
    let store = SqliteJobStore::open(&path, holder()).unwrap();
    assert_eq!(store.release_webhook_claims(150).unwrap(), 1);
    let again = store.claim_due(150, 1).unwrap();
    assert_eq!(again[0].attempts, 2);
}

// ---------------------------------------------------------------------------------------
// The runner binary and a receiver

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    path_and_query: String,
    headers: HeaderMap,
    body: String,
    answered: u16,
}

/// A webhook receiver on loopback: answers the statuses it is given in turn, then 200.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> Receiver {
        Receiver::start_on(0, answers).await
    }

    async fn start_on(port: u16, answers: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(
            answers.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (recorded, script) = (hits.clone(), answers.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (recorded, script) = (recorded.clone(), script.clone());
                async move {
                    let answered = script.lock().unwrap().pop_front().unwrap_or(200);
                    recorded.lock().unwrap().push(Hit {
                        path_and_query: uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers,
                        body: String::from_utf8(body.to_vec()).unwrap(),
                        answered,
                    });
                    StatusCode::from_u16(answered).unwrap()
                }
            },
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, hits, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits for the receiver to have answered `count` requests.
    async fn wait_for(&self, count: usize, runner: &Runner) -> Vec<Hit> {
        let end = Instant::now() + JOB_DEADLINE;
        loop {
            let hits = self.hits();
            if hits.len() >= count {
                return hits;
            }
            assert!(
                Instant::now() < end,
                "the receiver got {} of {count} requests\n{}",
                hits.len(),
                runner.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A runner that may call loopback receivers, retrying quickly.
fn webhook_flags() -> Vec<&'static str> {
    vec![
        "--webhook-secret",
        SECRET,
        "--webhook-allow-cidr",
        "127.0.0.0/8",
        "--webhook-retry-base",
        "200ms",
    ]
}

async fn upload_with_callback(
    runner: &Runner,
    owner: &str,
    filename: &str,
    data: Vec<u8>,
    callback: &str,
) -> reqwest::Response {
    auth(client().post(runner.url("/jobs")))
        .header("x-owner-id", owner)
        .header("x-filename", percent_encode(filename))
        .header("x-callback-url", callback)
        .body(data)
        .send()
        .await
        .expect("upload request")
}

async fn accepted_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn owner_key(runner: &Runner, owner: &str) -> String {
    let response = auth(client().get(runner.url("/webhook-secret")))
        .header("x-owner-id", owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let secret = response.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    secret
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {hit:?}"))
        .to_str()
        .unwrap()
}

/// Checks a hit's signature as a receiver would: recent timestamp, matching `v1`.
fn assert_signed(hit: &Hit, key: &str) {
    let signature = header(hit, "spinmesh-signature");
    let (t, v1) = signature
        .split_once(',')
        .unwrap_or_else(|| panic!("{signature}"));
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t).abs() < 300, "timestamp {t} is not recent");
    assert_eq!(
        v1.strip_prefix("v1=").unwrap(),
        sign(key, t, hit.body.as_bytes())
    );
}

/// `(state, attempts)` of job `id`'s deliveries, from the runner's SQLite database.
fn deliveries_of(spool: &Path, id: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(spool.join("jobs.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT state, attempts FROM webhook_deliveries WHERE job_id = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Waits until job `id`'s deliveries are as `want`.
async fn deliveries_reach(runner: &Runner, id: &str, want: &[(&str, i64)]) {
    let want: Vec<(String, i64)> = want.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    let end = Instant::now() + JOB_DEADLINE;
    loop {
        let now = deliveries_of(&runner.spool, id);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "deliveries of {id}: {now:?}, expected {want:?}\n{}",
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_delivered_once_signed_and_retried_after_a_500() {
    let runner = Runner::start(&webhook_flags());
    let tmp = tempfile::tempdir().unwrap();
    let video = make_video(tmp.path(), "clip.mp4", 2);
    let completions = Receiver::start(&[500]).await;
    let failures = Receiver::start(&[]).await;

    let callback = completions.url("/hooks/spinmesh?token=abc");
    let id = accepted_id(
        upload_with_callback(
            &runner,
            "42",
            "clip.mp4",
            std::fs::read(&video).unwrap(),
            &callback,
        )
        .await,
    )
    .await;
    let mut corrupt = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    corrupt.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let failed_id = accepted_id(
        upload_with_callback(
            &runner,
            "42",
            "broken.mp4",
            corrupt,
            &failures.url("/failed"),
        )
        .await,
    )
    .await;
    let key = owner_key(&runner, "42").await;
    assert_ne!(key, owner_key(&runner, "43").await, "keys are per owner");

    // The completion: a 500 first, then the same delivery again, accepted.
    let hits = completions.wait_for(2, &runner).await;
    deliveries_reach(&runner, &id, &[("delivered", 2)]).await;
    assert_eq!(completions.hits().len(), 2, "nothing after the 2xx");
    assert_eq!((hits[0].answered, hits[1].answered), (500, 200));
    let delivery_id = header(&hits[0], "spinmesh-delivery");
    assert!(delivery_id.starts_with("dlv_"), "{delivery_id}");
    assert_eq!(header(&hits[1], "spinmesh-delivery"), delivery_id);
    assert_eq!(
        hits[0].body, hits[1].body,
        "every attempt sends the same body"
    );
    for hit in &hits {
        assert_eq!(hit.path_and_query, "/hooks/spinmesh?token=abc");
        assert_eq!(header(hit, "content-type"), "application/json");
        assert_eq!(header(hit, "user-agent"), "spinmesh-webhook/1");
        assert_eq!(header(hit, "spinmesh-event"), "job.completed");
        assert_signed(hit, &key);
    }
    let body: Value = serde_json::from_str(&hits[1].body).unwrap();
    assert_eq!(body["event"], "job.completed");
    assert_eq!(body["delivery_id"], delivery_id);
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["progress"], 100);
    assert_eq!(body["filename"], "clip.mp3");
    assert!(body["completed_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("owner").is_none(), "the owner's view only: {body}");

    // The failure, delivered at the first attempt.
    let hits = failures.wait_for(1, &runner).await;
    deliveries_reach(&runner, &failed_id, &[("delivered", 1)]).await;
    assert_eq!(header(&hits[0], "spinmesh-event"), "job.failed");
    assert_signed(&hits[0], &key);
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(
        (
            body["event"].as_str(),
            body["status"].as_str(),
            body["job_id"].as_str()
        ),
        (Some("job.failed"), Some("failed"), Some(failed_id.as_str()))
    );
    assert_eq!(body["error"], "Input is not a valid media file");

    let attempts =
        |outcome: &str| format!("spinmesh_runner_webhook_attempts_total{{outcome=\"{outcome}\"}}");
    assert_eq!(metric(&runner, &attempts("delivered")).await, 2.0);
    assert_eq!(metric(&runner, &attempts("retried")).await, 1.0);
    assert_eq!(metric(&runner, &attempts("abandoned")).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_the_runner_may_not_call_are_refused_before_the_upload_is_read() {
    let runner = Runner::start(&["--webhook-secret", SECRET]);
    let refusals = [
        ("http://127.0.0.1:9/hook", "callback_not_allowed"),
        ("http://localhost:9/hook", "callback_not_allowed"),
        (
            "http://[::ffff:169.254.169.254]/latest",
            "callback_not_allowed",
        ),
        ("http://10.1.2.3/hook", "callback_not_allowed"),
        ("https://user:pw@example.com/hook", "invalid_callback_url"),
        ("ftp://example.com/hook", "invalid_callback_url"),
    ];
    for (callback, code) in refusals {
        let response =
            upload_with_callback(&runner, "42", "clip.mp4", vec![0; 4096], callback).await;
        assert_eq!(response.status(), 400, "{callback}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["status"].as_str(), body["code"].as_str()),
            (Some("400"), Some(code))
        );
        assert!(
            !body["message"].as_str().unwrap().contains("127.0.0.1"),
            "{body}"
        );
    }
    assert_eq!(job_count(&runner).await, 0, "no job was recorded");
    assert!(runner.spool_files("incoming").is_empty());
    drop(runner);

    // Without a secret there are no webhooks.
    let runner = Runner::start(&["--webhook-allow-cidr", "127.0.0.0/8"]);
    let response = upload_with_callback(
        &runner,
        "42",
        "clip.mp4",
        vec![0; 16],
        "https://example.com/",
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "webhooks_disabled"
    );
    let response = auth(client().get(runner.url("/webhook-secret")))
        .header("x-owner-id", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "webhooks_disabled"
    );
    assert_eq!(job_count(&runner).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // Enough attempts that the receiver being down cannot use them up.
    let mut flags = webhook_flags();
    flags.extend(["--webhook-max-attempts", "30"]);
    let mut runner = Runner::start_on(&spool, &flags, tmp.path());
    // A port nobody listens on: the receiver is down, connections are refused.
    let port = free_port();
    let video = make_video(tmp.path(), "clip.mp4", 2);
    let callback = format!("http://127.0.0.1:{port}/hook");
    let id = accepted_id(
        upload_with_callback(
            &runner,
            "42",
            "clip.mp4",
            std::fs::read(&video).unwrap(),
            &callback,
        )
        .await,
    )
    .await;
    poll_job(&runner, &id, |job| status_is(job, "completed")).await;
    // At least one attempt failed and another is scheduled.
    let end = Instant::now() + JOB_DEADLINE;
    while !deliveries_of(&spool, &id)
        .first()
        .is_some_and(|(state, attempts)| state == "pending" && *attempts >= 1)
    {
        assert!(
            Instant::now() < end,
            "no failed attempt\n{}",
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30));

    let receiver = Receiver::start_on(port, &[]).await;
    let runner = Runner::start_on(&spool, &flags, tmp.path());
    let hits = receiver.wait_for(1, &runner).await;
    let attempts = deliveries_of(&spool, &id)[0].1;
    deliveries_reach(&runner, &id, &[("delivered", attempts)]).await;
    assert_eq!(receiver.hits().len(), 1, "delivered once");
    assert_eq!(hits[0].answered, 200);
    assert_signed(&hits[0], &owner_key(&runner, "42").await);
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(
        (body["job_id"].as_str(), body["status"].as_str()),
        (Some(id.as_str()), Some("completed"))
    );
}
