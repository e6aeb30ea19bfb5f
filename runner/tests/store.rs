//! The job store's contract: every test body runs against SQLite and against a real
//! PostgreSQL server, so the two backends behave the same.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::postgres::PgCluster;
use spinmesh_runner::Error;
use spinmesh_runner::job::{Job, JobStatus, NewJob, Timestamp};
use spinmesh_runner::names::new_job_id;
use spinmesh_runner::pg::{self, PgJobStore};
use spinmesh_runner::store::{
    Claim, JobStore, LeaseHolder, Leased, OwnerQuota, OwnerUsage, SqliteJobStore,
};

/// Leases last 10 s of the tests' made-up clock (times are passed in explicitly).
const TTL_MS: i64 = 10_000;

/// One backend's database; `open` gives a store whose leases belong to `runner_id`.
struct Backend {
    name: &'static str,
    dir: tempfile::TempDir,
    postgres: Option<(PgCluster, tokio::runtime::Runtime)>,
}

impl Backend {
    fn open(&self, runner_id: &str) -> Arc<dyn JobStore> {
        let holder = LeaseHolder {
            runner_id: runner_id.into(),
            ttl: Duration::from_millis(TTL_MS as u64),
        };
        match &self.postgres {
            None => {
                Arc::new(SqliteJobStore::open(&self.dir.path().join("jobs.db"), holder).unwrap())
            }
            Some((cluster, runtime)) => {
                let config = pg::parse_url(&cluster.url()).unwrap();
                Arc::new(
                    runtime
                        .block_on(PgJobStore::connect(config, 8, holder))
                        .unwrap(),
                )
            }
        }
    }
}

/// Runs `body` once per backend, naming the backend if it fails.
fn on_both(body: impl Fn(&Backend)) {
    let sqlite = Backend {
        name: "sqlite",
        dir: tempfile::tempdir().unwrap(),
        postgres: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let postgres = Backend {
        name: "postgres",
        dir: tempfile::tempdir().unwrap(),
        postgres: Some((PgCluster::start(), runtime)),
    };
    for backend in [&sqlite, &postgres] {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(backend)));
        if let Err(panic) = outcome {
            eprintln!("failed on the {} backend", backend.name);
            std::panic::resume_unwind(panic);
        }
    }
}

fn new_job(owner: &str, created_at: i64) -> NewJob {
    NewJob {
        id: new_job_id(),
        owner: owner.into(),
        source_filename: "a.mp4".into(),
        filename: "a.mp3".into(),
        size_bytes: 1000,
        created_at,
        started_at: None,
        callback_url: None,
    }
}

fn insert(store: &dyn JobStore, owner: &str, created_at: i64) -> Job {
    store
        .insert(
            new_job(owner, created_at),
            &OwnerQuota::UNLIMITED,
            created_at,
        )
        .unwrap()
        .0
}

fn claim(store: &dyn JobStore, now: i64) -> Option<Leased> {
    match store.claim_next(now).unwrap() {
        Claim::Job(leased) => Some(*leased),
        Claim::Idle { .. } => None,
    }
}

fn status(store: &dyn JobStore, id: &str) -> JobStatus {
    store.get(id).unwrap().unwrap().status
}

#[test]
fn lifecycle() {
    on_both(|backend| {
        let store = backend.open("a");
        let job = insert(&*store, "alice", 1);
        assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));

        let Leased {
            job: running,
            lease,
        } = claim(&*store, 10).unwrap();
        assert_eq!(running.id, job.id);
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(running.attempts, 1);
        assert_eq!(running.started_at, Some(Timestamp(10)));
        assert!(claim(&*store, 10).is_none());

        assert!(store.renew(&lease, Some(42), 11).unwrap());
        assert_eq!(store.get(&job.id).unwrap().unwrap().progress, 42);
        assert!(store.complete(&lease, 500, 20).unwrap());
        let done = store.get(&job.id).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.progress, 100);
        assert_eq!(done.output_bytes, Some(500));
        assert!(!store.renew(&lease, Some(50), 21).unwrap());
        assert!(!store.fail(&lease, "x", 30).unwrap());

        let stats = store.stats().unwrap();
        assert_eq!(
            (
                stats.completed,
                stats.total,
                stats.bytes_in,
                stats.bytes_out
            ),
            (1, 1, 1000, 500)
        );
    });
}

#[test]
fn a_job_converted_while_arriving_is_recorded_running_and_can_fall_back() {
    on_both(|backend| {
        let store = backend.open("a");
        let (job, lease) = store
            .insert(
                NewJob {
                    started_at: Some(5),
                    ..new_job("alice", 9)
                },
                &OwnerQuota::UNLIMITED,
                9,
            )
            .unwrap();
        let lease = lease.expect("a running job comes with a lease");
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!((job.attempts, job.started_at), (1, Some(Timestamp(5))));
        assert!(claim(&*store, 10).is_none(), "nobody else may claim it");
        assert!(store.renew(&lease, Some(30), 11).unwrap());

        // The head start failed: the job goes to the queue without using up an attempt.
        assert!(store.release(&lease).unwrap());
        let again = claim(&*store, 20).unwrap();
        assert_eq!(
            (again.job.id.as_str(), again.job.attempts),
            (job.id.as_str(), 1)
        );
        assert_ne!(again.lease, lease);
        assert!(
            store
                .insert(new_job("a", 1), &OwnerQuota::UNLIMITED, 1)
                .unwrap()
                .1
                .is_none()
        );
    });
}

#[test]
fn retries_wait_for_their_backoff() {
    on_both(|backend| {
        let store = backend.open("a");
        let job = insert(&*store, "a", 1);
        let first = claim(&*store, 10).unwrap();
        assert!(store.retry_later(&first.lease, 100).unwrap());
        assert_eq!(
            store.claim_next(50).unwrap(),
            Claim::Idle {
                next_due: Some(100)
            }
        );
        let again = claim(&*store, 100).unwrap();
        assert_eq!(again.job.attempts, 2);
        assert!(
            !store.release(&first.lease).unwrap(),
            "the first lease is over"
        );
        assert!(store.release(&again.lease).unwrap());
        assert_eq!(store.get(&job.id).unwrap().unwrap().attempts, 1);
    });
}

#[test]
fn cancel_wins_over_a_late_completion() {
    on_both(|backend| {
        let store = backend.open("a");
        let job = insert(&*store, "a", 1);
        let leased = claim(&*store, 10).unwrap();
        let cancelled = store.cancel(&job.id, 15).unwrap().unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        assert!(cancelled.expired);
        assert!(!store.renew(&leased.lease, Some(99), 16).unwrap());
        assert!(!store.complete(&leased.lease, 1, 20).unwrap());
        assert_eq!(status(&*store, &job.id), JobStatus::Cancelled);
        assert!(store.cancel("job_missing", 1).unwrap().is_none());
    });
}

#[test]
fn a_runner_that_lost_its_lease_cannot_touch_the_job() {
    on_both(|backend| {
        let (a, b) = (backend.open("runner-a"), backend.open("runner-b"));
        let job = insert(&*a, "u", 1);
        let stale = claim(&*a, 10).unwrap();
        // Runner a stops renewing; after its lease expires the reaper hands the job on.
        let reaped = b.reap_expired(3, 10 + TTL_MS + 1).unwrap();
        assert_eq!(reaped.requeued, vec![job.id.clone()]);
        let fresh = claim(&*b, 10 + TTL_MS + 2).unwrap();
        assert_eq!(fresh.job.attempts, 2);

        let later = 10 + TTL_MS + 3;
        assert!(!a.renew(&stale.lease, Some(80), later).unwrap());
        assert!(!a.complete(&stale.lease, 1, later).unwrap());
        assert!(!a.fail(&stale.lease, "stale", later).unwrap());
        assert!(!a.retry_later(&stale.lease, later).unwrap());
        assert!(!a.release(&stale.lease).unwrap());
        let current = a.get(&job.id).unwrap().unwrap();
        assert_eq!((current.status, current.attempts), (JobStatus::Running, 2));

        assert!(b.renew(&fresh.lease, Some(10), later).unwrap());
        assert!(b.complete(&fresh.lease, 7, later).unwrap());
        assert_eq!(status(&*a, &job.id), JobStatus::Completed);
    });
}

#[test]
fn renewing_keeps_the_reaper_away_and_it_honours_max_attempts() {
    on_both(|backend| {
        let store = backend.open("a");
        let kept = insert(&*store, "a", 1);
        let worn = insert(&*store, "a", 2);
        let kept_lease = claim(&*store, 10).unwrap().lease;
        let worn_lease = claim(&*store, 10).unwrap().lease;
        // `worn` has been interrupted once already.
        assert!(store.retry_later(&worn_lease, 0).unwrap());
        let worn_lease = claim(&*store, 20).unwrap().lease;
        assert_eq!(worn_lease.job_id, worn.id);

        // Not expired yet: nothing happens.
        assert_eq!(
            store
                .reap_expired(2, 10 + TTL_MS - 1)
                .unwrap()
                .requeued
                .len(),
            0
        );
        assert!(store.renew(&kept_lease, None, 9_000).unwrap());
        let reaped = store.reap_expired(2, 20 + TTL_MS + 1).unwrap();
        assert!(reaped.requeued.is_empty(), "{reaped:?}");
        assert_eq!(reaped.failed, vec![worn.id.clone()]);
        let failed = store.get(&worn.id).unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("Conversion was interrupted too many times")
        );

        let reaped = store.reap_expired(2, 9_000 + TTL_MS + 1).unwrap();
        assert_eq!(reaped.requeued, vec![kept.id.clone()]);
        assert_eq!(status(&*store, &kept.id), JobStatus::Queued);
        assert!(!store.renew(&kept_lease, None, 30_000).unwrap());
    });
}

#[test]
fn list_is_newest_first_and_filtered() {
    on_both(|backend| {
        let store = backend.open("a");
        let ids: Vec<String> = (0..5)
            .map(|i| insert(&*store, if i % 2 == 0 { "even" } else { "odd" }, i).id)
            .collect();
        let (all, total) = store.list(None, 10, 0).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            all.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            ids.iter().rev().cloned().collect::<Vec<_>>()
        );
        let (even, total) = store.list(Some("even"), 2, 1).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            even.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            vec![ids[2].clone(), ids[0].clone()]
        );
    });
}

#[test]
fn retention_candidates() {
    on_both(|backend| {
        let store = backend.open("a");
        let old = insert(&*store, "a", 1);
        let fresh = insert(&*store, "a", 2);
        let old_lease = claim(&*store, 5).unwrap().lease;
        let fresh_lease = claim(&*store, 5).unwrap().lease;
        store.complete(&old_lease, 1, 100).unwrap();
        store.fail(&fresh_lease, "bad", 300).unwrap();
        assert_eq!(
            store.finished_before(200, 10).unwrap(),
            vec![old.id.clone()]
        );
        store.mark_expired(&old.id).unwrap();
        assert!(store.finished_before(200, 10).unwrap().is_empty());
        assert!(store.get(&old.id).unwrap().unwrap().expired);
        assert_eq!(status(&*store, &fresh.id), JobStatus::Failed);
    });
}

#[test]
fn concurrent_claims_never_share_a_job() {
    on_both(|backend| {
        let stores = [backend.open("a"), backend.open("b")];
        for i in 0..40 {
            insert(&*stores[0], "a", i);
        }
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let store = Arc::clone(&stores[n % 2]);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(leased) = claim(&*store, 1000) {
                        mine.push(leased.job.id);
                    }
                    mine
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut count = 0;
        for handle in handles {
            for id in handle.join().unwrap() {
                count += 1;
                assert!(seen.insert(id), "a job was claimed twice");
            }
        }
        assert_eq!(count, 40);
    });
}

#[test]
fn migrations_are_applied_once() {
    on_both(|backend| {
        let store = backend.open("a");
        let job = insert(&*store, "a", 1);
        drop(store);
        // Opening again (as every later start does) keeps the data.
        let store = backend.open("a");
        assert_eq!(status(&*store, &job.id), JobStatus::Queued);
    });
}

/// A database written by the release before leases: its `running` rows have no lease,
/// so the reaper takes them back at once.
#[test]
fn a_sqlite_database_from_before_leases_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_jobs.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, owner, status, filename, source_filename, size_bytes,
                               created_at, started_at, attempts)
             VALUES ('job_old', 'u', 'running', 'a.mp3', 'a.mp4', 5, 1, 2, 1)",
            [],
        )
        .unwrap();
    }
    let holder = LeaseHolder {
        runner_id: "a".into(),
        ttl: Duration::from_secs(10),
    };
    let store = SqliteJobStore::open(&path, holder).unwrap();
    let reaped = store.reap_expired(3, 5).unwrap();
    assert_eq!(reaped.requeued, vec!["job_old".to_string()]);
    let again = claim(&store, 6).unwrap();
    assert_eq!((again.job.id.as_str(), again.job.attempts), ("job_old", 2));
}

#[test]
fn one_owners_backlog_delays_another_owners_job_by_one_conversion_at_most() {
    on_both(|backend| {
        let store = backend.open("a");
        let backlog: Vec<Job> = (1..=5).map(|t| insert(&*store, "alice", t)).collect();
        // One worker: alice's first job runs, then bob uploads one.
        let first = claim(&*store, 10).unwrap();
        assert_eq!(first.job.id, backlog[0].id);
        let bob = insert(&*store, "bob", 11);
        assert!(store.complete(&first.lease, 1, 20).unwrap());
        // Nobody is running now; bob has never started a job, alice just did.
        let next = claim(&*store, 20).unwrap();
        assert_eq!(next.job.id, bob.id);
        assert!(store.complete(&next.lease, 1, 30).unwrap());
        let next = claim(&*store, 30).unwrap();
        assert_eq!(next.job.id, backlog[1].id, "alice's jobs stay in order");
        // Round robin: bob's second job goes before alice's third.
        let bob_again = insert(&*store, "bob", 31);
        assert!(store.complete(&next.lease, 1, 40).unwrap());
        assert_eq!(claim(&*store, 40).unwrap().job.id, bob_again.id);
    });
}

#[test]
fn owners_with_fewer_running_jobs_go_first() {
    on_both(|backend| {
        let store = backend.open("a");
        for t in 1..=4 {
            insert(&*store, "alice", t);
        }
        insert(&*store, "bob", 5);
        insert(&*store, "bob", 6);
        insert(&*store, "carol", 7);
        let claim_at = |now| claim(&*store, now).expect("a job is runnable");
        // Workers claiming one after the other take one job of each owner first.
        let owners: Vec<String> = (10..13).map(|now| claim_at(now).job.owner).collect();
        assert_eq!(owners, ["alice", "bob", "carol"]);
        // Alice and bob run one job each; alice's last start is the older one.
        assert_eq!(claim_at(13).job.owner, "alice");
        let bobs_second = claim_at(14);
        assert_eq!(
            bobs_second.job.owner, "bob",
            "bob runs fewer jobs than alice"
        );
        // A retry waiting for its backoff is not runnable, however few jobs bob runs.
        assert!(store.retry_later(&bobs_second.lease, 100).unwrap());
        assert_eq!(claim_at(15).job.owner, "alice");
        assert_eq!(claim_at(100).job.id, bobs_second.job.id);
    });
}

#[test]
fn usage_counts_what_an_owners_jobs_keep() {
    on_both(|backend| {
        let store = backend.open("a");
        let usage = |owner| store.usage(owner).unwrap();
        assert_eq!(usage("alice"), OwnerUsage::default());
        let done = insert(&*store, "alice", 1);
        let broken = insert(&*store, "alice", 2);
        insert(&*store, "alice", 3);
        insert(&*store, "bob", 4);
        let all_queued = OwnerUsage {
            unfinished_jobs: 3,
            spooled_bytes: 3000,
        };
        assert_eq!(usage("alice"), all_queued);

        let leased = claim(&*store, 10).unwrap();
        assert_eq!(leased.job.id, done.id);
        assert_eq!(usage("alice"), all_queued, "a running job keeps its input");
        // Completed: its input is gone, its output kept.
        assert!(store.complete(&leased.lease, 400, 11).unwrap());
        let leased = claim(&*store, 12).unwrap();
        assert_eq!(leased.job.owner, "bob");
        let leased_broken = claim(&*store, 12).unwrap();
        assert_eq!(leased_broken.job.id, broken.id);
        // Failed: its input is kept for a retry, until retention.
        assert!(store.fail(&leased_broken.lease, "bad", 13).unwrap());
        assert_eq!(
            usage("alice"),
            OwnerUsage {
                unfinished_jobs: 1,
                spooled_bytes: 2400,
            }
        );
        // Expired (retention) or deleted: nothing.
        store.mark_expired(&done.id).unwrap();
        store.mark_expired(&broken.id).unwrap();
        assert_eq!(
            usage("alice"),
            OwnerUsage {
                unfinished_jobs: 1,
                spooled_bytes: 1000,
            }
        );
        assert_eq!(usage("bob").unfinished_jobs, 1);
        assert!(store.complete(&leased.lease, 1, 14).unwrap());
    });
}

#[test]
fn insert_refuses_what_the_quota_does_not_allow() {
    on_both(|backend| {
        let store = backend.open("a");
        let two_jobs = OwnerQuota {
            max_unfinished_jobs: 2,
            max_spooled_bytes: u64::MAX,
        };
        let insert_within = |owner: &str, quota: &OwnerQuota| {
            store
                .insert(new_job(owner, 1), quota, 1)
                .map(|(job, _)| job)
        };
        let first = insert_within("alice", &two_jobs).unwrap();
        insert_within("alice", &two_jobs).unwrap();
        let refused = insert_within("alice", &two_jobs).unwrap_err();
        assert!(
            matches!(
                refused,
                spinmesh_runner::Error::JobQuotaExceeded { limit: 2 }
            ),
            "{refused:?}"
        );
        insert_within("bob", &two_jobs).expect("quotas are per owner");
        // A finished job frees its place.
        let leased = claim(&*store, 5).unwrap();
        assert_eq!(leased.job.id, first.id);
        assert!(store.complete(&leased.lease, 100, 6).unwrap());
        insert_within("alice", &two_jobs).unwrap();

        // Each job brings 1000 bytes; alice keeps 2100 already (two inputs, one output).
        let bytes = |max_spooled_bytes| OwnerQuota {
            max_unfinished_jobs: 10,
            max_spooled_bytes,
        };
        let refused = insert_within("alice", &bytes(3099)).unwrap_err();
        assert!(
            matches!(
                refused,
                spinmesh_runner::Error::StorageQuotaExceeded { limit: 3099 }
            ),
            "{refused:?}"
        );
        insert_within("alice", &bytes(3100)).expect("exactly at the quota is allowed");
    });
}

#[test]
fn concurrent_uploads_of_one_owner_cannot_overshoot_the_quota() {
    on_both(|backend| {
        let stores = [backend.open("a"), backend.open("b")];
        let quota = OwnerQuota {
            max_unfinished_jobs: 3,
            max_spooled_bytes: u64::MAX,
        };
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let store = Arc::clone(&stores[n % 2]);
                std::thread::spawn(move || store.insert(new_job("alice", 1), &quota, 1).is_ok())
            })
            .collect();
        let accepted = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .filter(|accepted| *accepted)
            .count();
        assert_eq!(accepted, 3);
        assert_eq!(stores[0].usage("alice").unwrap().unfinished_jobs, 3);
    });
}

#[test]
fn only_a_failed_job_with_its_input_is_retried_and_within_the_quota() {
    on_both(|backend| {
        let store = backend.open("a");
        let unlimited = OwnerQuota::UNLIMITED;
        let failed = insert(&*store, "alice", 1);
        let leased = claim(&*store, 10).unwrap();
        assert!(store.fail(&leased.lease, "bad", 11).unwrap());

        let one_job = OwnerQuota {
            max_unfinished_jobs: 1,
            max_spooled_bytes: 1000,
        };
        let queued = insert(&*store, "alice", 12);
        assert!(matches!(
            store.retry(&failed.id, &one_job),
            Err(Error::JobQuotaExceeded { limit: 1 })
        ));
        assert!(matches!(
            store.retry(&queued.id, &unlimited),
            Err(Error::JobNotRetryable(JobStatus::Queued))
        ));
        // Its input is counted already: a full storage quota does not stop a retry.
        let full_storage = OwnerQuota {
            max_unfinished_jobs: 2,
            max_spooled_bytes: 2000,
        };
        let retried = store.retry(&failed.id, &full_storage).unwrap().unwrap();
        assert_eq!(retried.status, JobStatus::Queued);
        assert_eq!((retried.attempts, retried.progress), (0, 0));
        assert!(retried.error.is_none() && retried.completed_at.is_none());
        assert!(retried.revision > leased.job.revision);
        assert!(matches!(
            store.retry(&failed.id, &unlimited),
            Err(Error::JobNotRetryable(JobStatus::Queued))
        ));
        // The retried job is claimed like a new one.
        let again = claim(&*store, 20).unwrap();
        assert_eq!(
            (again.job.id.as_str(), again.job.attempts),
            (failed.id.as_str(), 1)
        );
        assert!(store.complete(&again.lease, 5, 21).unwrap());
        assert!(matches!(
            store.retry(&failed.id, &unlimited),
            Err(Error::JobNotRetryable(JobStatus::Completed))
        ));

        // Cancelled (files removed at once) or swept: the input is gone.
        let cancelled = store.cancel(&queued.id, 30).unwrap().unwrap();
        assert!(matches!(
            store.retry(&cancelled.id, &unlimited),
            Err(Error::InputGone)
        ));
        let swept = insert(&*store, "bob", 31);
        let leased = claim(&*store, 32).unwrap();
        assert!(store.fail(&leased.lease, "bad", 33).unwrap());
        store.mark_expired(&swept.id).unwrap();
        assert!(matches!(
            store.retry(&swept.id, &unlimited),
            Err(Error::InputGone)
        ));
        assert!(store.retry("job_missing", &unlimited).unwrap().is_none());
    });
}

#[test]
fn concurrent_retries_requeue_a_job_once() {
    on_both(|backend| {
        let stores = [backend.open("a"), backend.open("b")];
        let job = insert(&*stores[0], "alice", 1);
        let leased = claim(&*stores[0], 10).unwrap();
        assert!(stores[0].fail(&leased.lease, "bad", 11).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let store = Arc::clone(&stores[n % 2]);
                let id = job.id.clone();
                std::thread::spawn(move || store.retry(&id, &OwnerQuota::UNLIMITED))
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let requeued = outcomes.iter().filter(|o| matches!(o, Ok(Some(_)))).count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(Error::JobNotRetryable(JobStatus::Queued))))
            .count();
        assert_eq!((requeued, refused), (1, 3), "{outcomes:?}");
    });
}

#[test]
fn revisions_grow_with_every_change_a_client_sees() {
    on_both(|backend| {
        let store = backend.open("a");
        let job = insert(&*store, "alice", 1);
        let revision = |store: &dyn JobStore| store.get(&job.id).unwrap().unwrap().revision;
        let mut seen = vec![job.revision];
        let leased = claim(&*store, 10).unwrap();
        seen.push(leased.job.revision);
        assert!(store.renew(&leased.lease, Some(30), 11).unwrap());
        seen.push(revision(&*store));
        // Renewing without new progress changes nothing a client sees.
        assert!(store.renew(&leased.lease, None, 12).unwrap());
        assert!(store.renew(&leased.lease, Some(30), 12).unwrap());
        assert_eq!(revision(&*store), *seen.last().unwrap());
        // Back to the queue and claimed again: the progress restarts, the revision not.
        assert!(store.release(&leased.lease).unwrap());
        seen.push(revision(&*store));
        let leased = claim(&*store, 13).unwrap();
        seen.push(leased.job.revision);
        assert!(store.retry_later(&leased.lease, 14).unwrap());
        seen.push(revision(&*store));
        let leased = claim(&*store, 14).unwrap();
        seen.push(leased.job.revision);
        assert!(store.complete(&leased.lease, 5, 15).unwrap());
        seen.push(revision(&*store));
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    });
}
