//! The converter on the production topology (`spinmesh_e2e::cluster`), seen as a user
//! sees it: uploads and job requests go to the `upload` component on either host, which
//! calls the two runners through their balancer; the runners share PostgreSQL and the
//! bucket. What issue #16 asks of it: a cancel stops ffmpeg wherever it runs, a job
//! store restart loses no job and completes none twice, an object store outage is a
//! clean 503 that leaves nothing behind, concurrent uploads complete once each, and
//! status reads through both balancers never fail. And of issue #21: a resumable upload
//! continues through the other host.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use spinmesh_e2e::clips::{self, LONG_CLIP_SECS, SHORT_CLIP_SECS};
use spinmesh_e2e::cluster::{Cluster, ClusterBuilder, HOSTS, RUNNERS};
use spinmesh_e2e::services::s3::S3Server;
use spinmesh_e2e::tus;
use spinmesh_e2e::{
    Api, JOB_DEADLINE, Reply, children_mentioning, client, concurrently, send, wait_for,
};

/// What issue #16 allows from a cancel request to its ffmpeg being gone.
const CANCEL_BOUND: Duration = Duration::from_secs(2);
/// How long a service may take to notice a dependency going or coming back.
const HEALTH_DEADLINE: Duration = Duration::from_secs(60);

/// A cluster without rate limits: the tests poll job status far more often than a
/// person would.
fn cluster() -> ClusterBuilder {
    Cluster::builder()
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", "0")
}

/// The aggregate `GET /health` through the balancer.
fn health(cluster: &Cluster) -> Reply {
    send(client().get(cluster.url("/health")))
}

/// Runner `index`'s own `GET /healthz`.
fn runner_health(cluster: &mut Cluster, index: usize) -> Reply {
    send(client().get(format!("{}/healthz", cluster.runner(index).url)))
}

/// The runner whose ffmpeg is converting job `id`, if one is: ffmpeg runs as the
/// runner's child on the job's input, a file named after the job.
fn converting_runner(cluster: &mut Cluster, id: &str) -> Option<usize> {
    (0..RUNNERS).find(|&index| !children_mentioning(cluster.runner(index).pid(), id).is_empty())
}

/// How many times the runners together recorded job `id` as completed.
fn completions(cluster: &mut Cluster, id: &str) -> usize {
    (0..RUNNERS)
        .map(|index| cluster.runner(index).completions_of(id))
        .sum()
}

/// Asserts that the runners recorded the finished job `id` as completed exactly once, and
/// says which runner did. The runner writes its log line just after the job store's commit,
/// which a client may see first, so the line is waited for.
fn completed_once_by(cluster: &mut Cluster, id: &str) -> usize {
    wait_for("the runner's completion log line", HEALTH_DEADLINE, || {
        (completions(cluster, id) > 0).then_some(())
    });
    assert_eq!(completions(cluster, id), 1, "{id}");
    (0..RUNNERS)
        .find(|&index| cluster.runner(index).completions_of(id) == 1)
        .expect("one runner logged it")
}

/// The ids in the caller's job list, sorted.
fn listed_ids(api: &Api, token: &str) -> Vec<String> {
    let jobs = api.get("/api/jobs?limit=100", token).ok();
    let mut ids: Vec<String> = jobs
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|job| job["job_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_cancel_through_either_host_stops_ffmpeg_on_the_runner_holding_the_job() {
    let mut cluster = cluster().start();
    let token = Api::cluster(&cluster).user("gus").token;
    for host in 0..HOSTS {
        let api = Api::cluster_host(&cluster, host);
        let id = api.queue(&token, "long.mp4", &clips::long_clip());
        let holder = wait_for("ffmpeg converting the job", JOB_DEADLINE, || {
            converting_runner(&mut cluster, &id)
        });
        let holder_pid = cluster.runner(holder).pid();

        let asked = Instant::now();
        let cancelled = api.delete(&format!("/api/jobs/{id}"), &token).ok();
        let answered = asked.elapsed();
        assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
        // Measured finely (the bound is what is tested), but given far longer to happen.
        while !children_mentioning(holder_pid, &id).is_empty() && asked.elapsed() < JOB_DEADLINE {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = asked.elapsed();
        eprintln!(
            "cancel through host {host}: answered after {answered:?}, \
             ffmpeg on runner {holder} gone after {stopped:?}"
        );
        assert!(
            stopped <= CANCEL_BOUND,
            "ffmpeg on runner {holder} ran {stopped:?} after the cancel (bound {CANCEL_BOUND:?})"
        );

        // Killed by the cancel, not finished on its own; and cancelled for the other host too.
        let log_says = |log: &str, what: &str| {
            log.lines()
                .any(|line| line.contains(&id) && line.contains(what))
        };
        wait_for("the holder to log the cancel", HEALTH_DEADLINE, || {
            log_says(&cluster.runner(holder).log(), "conversion cancelled").then_some(())
        });
        assert!(
            !log_says(&cluster.runner(holder).log(), "conversion finished after"),
            "the conversion had ended before the cancel reached it"
        );
        let other = Api::cluster_host(&cluster, (host + 1) % HOSTS);
        assert_eq!(other.job(&token, &id).ok()["status"], "cancelled");
        other
            .get(&format!("/api/jobs/{id}/download"), &token)
            .assert_error(409, "job_not_ready");
        assert_eq!(completions(&mut cluster, &id), 0);
        wait_for("the job's objects deleted", HEALTH_DEADLINE, || {
            cluster
                .s3
                .blocking_keys(&S3Server::job_prefix(&id))
                .is_empty()
                .then_some(())
        });
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_job_store_restart_mid_run_loses_no_job_and_completes_none_twice() {
    // Two owners, as each may have only five jobs waiting.
    const JOBS: usize = 6;
    const OWNERS: usize = 2;
    let mut cluster = cluster()
        // One conversion at a time per runner, so that jobs wait in the queue.
        .runner_env("RUNNER_WORKERS", "1")
        // Short leases, which the outage tends to outlast: the reaper may then hand a
        // finished conversion on before its runner can record it, the hardest case for
        // completing each job exactly once.
        .runner_env("RUNNER_LEASE_TTL", "3s")
        .start();
    let api = Api::cluster(&cluster);
    let owners: Vec<String> = (0..OWNERS)
        .map(|n| api.user(&format!("owner{n}")).token)
        .collect();
    let owner_of = |n: usize| &owners[n % OWNERS];
    let long = clips::long_clip();
    let ids: Vec<String> = (0..JOBS)
        .map(|n| Api::cluster_host(&cluster, n % HOSTS).queue(owner_of(n), "long.mp4", &long))
        .collect();
    let statuses = || -> Vec<String> {
        ids.iter()
            .enumerate()
            .map(|(n, id)| {
                api.job(owner_of(n), id).ok()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let (before, converting) = wait_for("a job converting", JOB_DEADLINE, || {
        let converting: Vec<&String> = ids
            .iter()
            .filter(|id| converting_runner(&mut cluster, id).is_some())
            .collect();
        (!converting.is_empty()).then(|| (statuses(), converting))
    });
    assert!(
        before.iter().any(|status| status == "queued"),
        "jobs should be waiting when the job store goes: {before:?}"
    );

    cluster.postgres.stop();
    let down = Instant::now();
    // Meanwhile: the converter is reported down and the rest up, each runner says why,
    // and a job's status is a clean 503.
    let report = wait_for("/health to report degraded", HEALTH_DEADLINE, || {
        let reply = health(&cluster);
        (reply.status == 503).then_some(reply.body)
    });
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["services"]["converter"], "disconnected", "{report}");
    assert_eq!(report["services"]["auth"], "connected", "{report}");
    for index in 0..RUNNERS {
        let reply = wait_for("the runner to report degraded", HEALTH_DEADLINE, || {
            let reply = runner_health(&mut cluster, index);
            (reply.status == 503).then_some(reply)
        });
        reply.assert_error(503, "degraded");
    }
    api.job(owner_of(0), &ids[0])
        .assert_error(503, "service_unavailable");
    // The conversions under way finish while their completion cannot be recorded.
    wait_for("the conversions to end", JOB_DEADLINE, || {
        converting
            .iter()
            .all(|id| converting_runner(&mut cluster, id).is_none())
            .then_some(())
    });

    cluster.postgres.resume();
    // Both runners reconnect by themselves, and the app is whole again.
    for index in 0..RUNNERS {
        wait_for("the runner to reconnect", HEALTH_DEADLINE, || {
            (runner_health(&mut cluster, index).status == 200).then_some(())
        });
    }
    wait_for("/health to recover", HEALTH_DEADLINE, || {
        (health(&cluster).status == 200).then_some(())
    });
    eprintln!("the job store was down for {:?}", down.elapsed());

    // Every job completes, with its whole MP3, and is recorded as completed once.
    for (n, id) in ids.iter().enumerate() {
        let job = api.finished_job(owner_of(n), id);
        assert_eq!(job["status"], "completed", "{job}");
        clips::probe(&api.download(owner_of(n), id)).assert_mp3_of(LONG_CLIP_SECS);
        completed_once_by(&mut cluster, id);
    }
    for (owner, token) in owners.iter().enumerate() {
        let own: Vec<String> = ids.iter().skip(owner).step_by(OWNERS).cloned().collect();
        assert_eq!(listed_ids(&api, token), sorted(&own));
    }
    let reaped: usize = (0..RUNNERS)
        .map(|index| {
            cluster
                .runner(index)
                .log()
                .matches("re-queued job whose runner stopped renewing its lease")
                .count()
        })
        .sum();
    eprintln!("jobs before the outage: {before:?}; re-queued by the reaper: {reaped}");
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn an_object_store_outage_refuses_uploads_with_503_and_keeps_nothing() {
    let mut cluster = cluster().start();
    let api = Api::cluster(&cluster);
    let token = api.user("joy").token;
    let clip = clips::short_clip();

    cluster.s3.stop();
    for host in 0..HOSTS {
        let refused = Api::cluster_host(&cluster, host).upload(&token, "clip.mp4", &clip);
        refused.assert_error(503, "service_unavailable");
        assert!(
            !refused.str("message").contains("127.0.0.1"),
            "{}",
            refused.body
        );
    }
    // Nothing half-recorded: no job, and no partial upload left on either runner.
    assert_eq!(listed_ids(&api, &token), Vec::<String>::new());
    for index in 0..RUNNERS {
        wait_for("the partial upload removed", HEALTH_DEADLINE, || {
            let runner = cluster.runner(index);
            (runner.spool_files("incoming").is_empty() && runner.spool_files("scratch").is_empty())
                .then_some(())
        });
    }

    // Back (moto starts empty): uploads work again and only the new one is recorded.
    cluster.s3.resume();
    wait_for("/health to recover", HEALTH_DEADLINE, || {
        (health(&cluster).status == 200).then_some(())
    });
    assert_eq!(listed_ids(&api, &token), Vec::<String>::new());
    let id = api.queue(&token, "clip.mp4", &clip);
    assert_eq!(api.finished_job(&token, &id)["status"], "completed");
    assert_eq!(listed_ids(&api, &token), vec![id.clone()]);
    // Its input goes once the completion is recorded; the MP3 is all the bucket holds.
    let output = format!("{}output.1.mp3", S3Server::job_prefix(&id));
    wait_for("only the MP3 in the bucket", HEALTH_DEADLINE, || {
        (cluster.s3.blocking_keys("") == [output.clone()]).then_some(())
    });
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn twenty_concurrent_uploads_over_both_hosts_complete_exactly_once() {
    const UPLOADS: usize = 20;
    // Four each: within the runners' quota of five waiting jobs per owner.
    const OWNERS: usize = 5;
    let mut cluster = cluster().start();
    let api = Api::cluster(&cluster);
    let owners: Vec<String> = (0..OWNERS)
        .map(|n| api.user(&format!("owner{n}")).token)
        .collect();
    let hosts: Vec<Api> = (0..HOSTS)
        .map(|index| Api::cluster_host(&cluster, index))
        .collect();
    let clip = clips::short_clip();
    // Every owner's uploads go to both hosts (upload n: host n % 2, owner n % 5).
    let ids = concurrently(UPLOADS, |n| {
        hosts[n % HOSTS].queue(&owners[n % OWNERS], "clip.mp4", &clip)
    });
    let mut distinct = sorted(&ids);
    distinct.dedup();
    assert_eq!(distinct.len(), UPLOADS, "{ids:?}");

    for (n, id) in ids.iter().enumerate() {
        let owner = &owners[n % OWNERS];
        let job = api.finished_job(owner, id);
        assert_eq!(job["status"], "completed", "{job}");
        clips::probe(&api.download(owner, id)).assert_mp3_of(SHORT_CLIP_SECS);
        completed_once_by(&mut cluster, id);
    }
    for (owner, token) in owners.iter().enumerate() {
        let own: Vec<String> = ids.iter().skip(owner).step_by(OWNERS).cloned().collect();
        assert_eq!(listed_ids(&api, token), sorted(&own));
    }
    for index in 0..RUNNERS {
        let converted = ids
            .iter()
            .filter(|id| cluster.runner(index).completions_of(id) > 0)
            .count();
        eprintln!("runner {index} converted {converted} of the {UPLOADS} uploads");
        assert!(converted > 0, "runner {index} converted none");
    }
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn thousands_of_status_reads_through_both_balancers_all_succeed() {
    const READERS: usize = 8;
    const READS_EACH: usize = 400;
    let cluster = cluster().start();
    let api = Api::cluster(&cluster);
    let token = api.user("kim").token;
    let id = api.queue(&token, "clip.mp4", &clips::short_clip());
    assert_eq!(api.finished_job(&token, &id)["status"], "completed");

    // Client → nginx → either host → nginx → either runner, and back, each time.
    let started = Instant::now();
    let failures = concurrently(READERS, |_| {
        (0..READS_EACH)
            .filter_map(|_| failed_read(&api, &token, &id))
            .collect::<Vec<_>>()
    })
    .concat();
    eprintln!(
        "{} status reads in {:?}: {} failed",
        READERS * READS_EACH,
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} reads failed: {failures:#?}",
        failures.len(),
        READERS * READS_EACH
    );
}

/// What went wrong with one read of the completed job `id`, if anything did.
fn failed_read(api: &Api, token: &str, id: &str) -> Option<String> {
    let path = format!("/api/jobs/{id}");
    let response = match api.request(Method::GET, &path, Some(token)).send() {
        Ok(response) => response,
        Err(error) => return Some(format!("not answered: {error}")),
    };
    let status = response.status();
    let text = response.text().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    (status != 200 || body["status"] != "completed").then(|| format!("{status}: {text}"))
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_runner_killed_mid_conversion_hands_the_job_to_the_other() {
    let mut cluster = cluster().runner_env("RUNNER_LEASE_TTL", "3s").start();
    let api = Api::cluster(&cluster);
    let token = api.user("fay").token;
    let id = api.queue(&token, "long.mp4", &clips::long_clip());

    // Whichever runner converts it is killed while it does.
    let holder = wait_for("the job to start converting", JOB_DEADLINE, || {
        converting_runner(&mut cluster, &id)
    });
    cluster.runner(holder).kill();
    let finished = api.finished_job(&token, &id);
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(completed_once_by(&mut cluster, &id), 1 - holder);

    // Its MP3 comes from the bucket through either host, whole or in part.
    let whole = api.download(&token, &id);
    clips::probe(&whole).assert_mp3_of(LONG_CLIP_SECS);
    let part = api
        .request(
            Method::GET,
            &format!("/api/jobs/{id}/download"),
            Some(&token),
        )
        .header("range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap(), whole[100..200]);
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn a_resumable_upload_continues_through_the_other_host() {
    let cluster = cluster().start();
    let hosts = [
        Api::cluster_host(&cluster, 0),
        Api::cluster_host(&cluster, 1),
    ];
    let token = hosts[0].user("hal").token;
    let clip = clips::short_clip();
    let path = tus::created(tus::create(&hosts[0], &token, "relay.mp4", clip.len()));

    // Thirds, each through the other host than the one before (and so through either
    // runner behind the runners' balancer); each host sees the others' progress.
    let cuts = [0, clip.len() / 3, 2 * clip.len() / 3, clip.len()];
    let mut last = None;
    for (piece, bounds) in cuts.windows(2).enumerate() {
        let api = &hosts[piece % HOSTS];
        let other = &hosts[(piece + 1) % HOSTS];
        assert_eq!(tus::offset_of(&tus::head(other, &token, &path)), bounds[0]);
        let response = tus::patch(api, &token, &path, bounds[0], &clip[bounds[0]..bounds[1]]);
        assert_eq!(response.status(), 204);
        assert_eq!(tus::offset_of(&response), bounds[1]);
        last = Some(response);
    }
    let job_id = last.unwrap().headers()["job-id"]
        .to_str()
        .unwrap()
        .to_string();
    let api = Api::cluster(&cluster);
    let finished = api.finished_job(&token, &job_id);
    assert_eq!(finished["status"], "completed", "{finished}");
    clips::probe(&api.download(&token, &job_id)).assert_mp3_of(SHORT_CLIP_SECS);
}
