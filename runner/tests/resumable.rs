//! Resumable uploads (`/uploads`) on the real runner binary with its SQLite job store and
//! spool: offsets survive a crash, a wrong offset or another owner is refused, a
//! broken-off append keeps what arrived, the last byte makes the job, termination and
//! expiry remove the bytes. (Object storage and several runners: `objstore.rs`.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const OWNER: &str = "owner-1";

async fn create(runner: &Runner, owner: &str, filename: &str, length: u64) -> (u16, Value) {
    let resp = auth(client().post(runner.url("/uploads")))
        .header("x-owner-id", owner)
        .header("x-filename", percent_encode(filename))
        .header("upload-length", length.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn status(runner: &Runner, owner: &str, id: &str) -> (u16, Value) {
    let resp = auth(client().get(runner.url(&format!("/uploads/{id}"))))
        .header("x-owner-id", owner)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn append(runner: &Runner, owner: &str, id: &str, offset: u64, data: &[u8]) -> (u16, Value) {
    let resp = auth(client().patch(runner.url(&format!("/uploads/{id}"))))
        .header("x-owner-id", owner)
        .header("upload-offset", offset.to_string())
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn error_code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_pieces_survives_a_crash_and_becomes_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut runner = Runner::start_on(&spool, &[], tmp.path());
    let video = std::fs::read(make_video(tmp.path(), "clip.mp4", 3)).unwrap();
    let length = video.len() as u64;
    let third = video.len() / 3;

    let (code, created) = create(&runner, OWNER, "Mon clip.mp4", length).await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("upl_"), "{created}");
    assert_eq!(
        (created["offset"].as_u64(), created["length"].as_u64()),
        (Some(0), Some(length))
    );
    assert!(created["job_id"].is_null());
    assert_eq!(created["source_filename"], "Mon clip.mp4");

    let (code, after) = append(&runner, OWNER, &id, 0, &video[..third]).await;
    assert_eq!(
        (code, after["offset"].as_u64()),
        (200, Some(third as u64)),
        "{after}"
    );

    // Refusals leave the offset alone.
    let (code, body) = append(&runner, OWNER, &id, 0, &video[..10]).await;
    assert_eq!(
        (code, error_code(&body)),
        (409, "upload_offset_mismatch"),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&third.to_string()),
        "{body}"
    );
    let (code, body) = append(&runner, "someone-else", &id, third as u64, &video[third..]).await;
    assert_eq!(
        (code, error_code(&body)),
        (404, "upload_not_found"),
        "{body}"
    );
    let (code, body) = status(&runner, "someone-else", &id).await;
    assert_eq!(
        (code, error_code(&body)),
        (404, "upload_not_found"),
        "{body}"
    );
    let mut too_much = video[third..].to_vec();
    too_much.push(0);
    let (code, body) = append(&runner, OWNER, &id, third as u64, &too_much).await;
    assert_eq!(
        (code, error_code(&body)),
        (413, "upload_length_exceeded"),
        "{body}"
    );

    // A crash between appends loses nothing recorded.
    runner.kill();
    let runner = Runner::start_on(&spool, &[], tmp.path());
    let (code, now) = status(&runner, OWNER, &id).await;
    assert_eq!(
        (code, now["offset"].as_u64()),
        (200, Some(third as u64)),
        "{now}"
    );

    let (code, after) = append(&runner, OWNER, &id, third as u64, &video[third..2 * third]).await;
    assert_eq!(code, 200, "{after}");
    let (code, done) = append(&runner, OWNER, &id, 2 * third as u64, &video[2 * third..]).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["offset"].as_u64(), Some(length));
    let job_id = done["job_id"]
        .as_str()
        .expect("the last byte makes the job")
        .to_string();
    assert!(job_id.starts_with("job_"));
    // Asking again shows the same job; the upload's bytes moved to the job.
    let (_, again) = status(&runner, OWNER, &id).await;
    assert_eq!(again["job_id"], job_id.as_str());
    assert!(runner.spool_files("partial").is_empty());

    let seen = poll_job(&runner, &job_id, is_finished).await;
    let job = seen.last().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["owner"], OWNER);
    assert_eq!(job["size_bytes"].as_u64(), Some(length));
    assert_eq!(job["filename"], "Mon clip.mp3");
    let duration = download_duration(&runner, &job_id, tmp.path()).await;
    assert!((duration - 3.0).abs() < 0.5, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_off_append_keeps_what_arrived() {
    let runner = Runner::start(&[]);
    let length = 4 << 20;
    let (_, created) = create(&runner, OWNER, "big.mp4", length).await;
    let id = created["id"].as_str().unwrap().to_string();

    let held = HeldUpload::send_with(
        auth(client().patch(runner.url(&format!("/uploads/{id}"))))
            .header("x-owner-id", OWNER)
            .header("upload-offset", "0"),
    );
    held.send(&vec![7u8; 1 << 20]).await;
    // Half of it is on the runner's disk, then the client goes away.
    eventually("the append is under way", Duration::from_secs(60), || {
        std::fs::metadata(runner.spool.join("partial").join(&id))
            .is_ok_and(|meta| meta.len() >= 512 << 10)
    })
    .await;
    let _ = held.abort().await;

    // The append ends, keeping what arrived, and gives up its hold: the client resumes
    // from the offset it is told (423 while the broken append is still ending).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (offset, resumed) = loop {
        let (_, now) = status(&runner, OWNER, &id).await;
        let offset = now["offset"].as_u64().unwrap();
        let (code, body) = append(&runner, OWNER, &id, offset, &[7u8; 10]).await;
        if code == 200 {
            break (offset, body);
        }
        assert!(
            matches!(code, 409 | 423) && std::time::Instant::now() < deadline,
            "{code} {body}\n{}",
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        (512 << 10..=1 << 20).contains(&offset),
        "kept {offset} bytes"
    );
    assert_eq!(resumed["offset"].as_u64(), Some(offset + 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_expiry_and_quota() {
    let runner = Runner::start(&[
        "--upload-expiry",
        "2s",
        "--sweep-interval",
        "1s",
        "--max-spool-bytes-per-owner",
        "10000000",
    ]);

    // Terminated: gone, with its bytes.
    let (_, created) = create(&runner, OWNER, "a.mp4", 1000).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(append(&runner, OWNER, &id, 0, &[1u8; 100]).await.0, 200);
    assert_eq!(runner.spool_files("partial").len(), 1);
    let resp = auth(client().delete(runner.url(&format!("/uploads/{id}"))))
        .header("x-owner-id", OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(status(&runner, OWNER, &id).await.0, 404);
    assert!(runner.spool_files("partial").is_empty());

    // The owner's storage quota counts an upload's whole announced length.
    let (code, body) = create(&runner, OWNER, "b.mp4", 6_000_000).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = create(&runner, OWNER, "c.mp4", 6_000_000).await;
    assert_eq!(
        (code, error_code(&body)),
        (507, "storage_quota_exceeded"),
        "{body}"
    );
    let (code, body) = create(&runner, OWNER, "d.mp3", 0).await;
    assert_eq!((code, error_code(&body)), (400, "empty_upload"), "{body}");

    // Abandoned: expired, then swept with its bytes; the quota is free again.
    let expiring = body_id(&create(&runner, "owner-2", "e.mp4", 500).await.1);
    assert_eq!(
        append(&runner, "owner-2", &expiring, 0, &[2u8; 50]).await.0,
        200
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&runner, "owner-2", &expiring).await.0, 404);
    eventually(
        "the sweep removes expired uploads",
        Duration::from_secs(10),
        || runner.spool_files("partial").is_empty(),
    )
    .await;
    let (code, body) = create(&runner, OWNER, "f.mp4", 6_000_000).await;
    assert_eq!(code, 201, "the expired b.mp4 no longer counts: {body}");
}

fn body_id(body: &Value) -> String {
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_append_ends_and_keeps_what_arrived() {
    let runner = Runner::start(&[]);
    let (_, created) = create(&runner, OWNER, "slow.mp4", 1 << 20).await;
    let id = body_id(&created);
    let held = HeldUpload::send_with(
        auth(client().patch(runner.url(&format!("/uploads/{id}"))))
            .header("x-owner-id", OWNER)
            .header("upload-offset", "0"),
    );
    held.send(&[5u8; 100 << 10]).await;
    // The client sends nothing more but keeps the connection: after the runner's stall
    // limit (30 s) the append ends with what arrived, and its hold with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let offset = loop {
        let (_, now) = status(&runner, OWNER, &id).await;
        let offset = now["offset"].as_u64().unwrap();
        if offset > 0 {
            break offset;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            runner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(offset, 100 << 10);
    let (code, body) = append(&runner, OWNER, &id, offset, &[5u8; 10]).await;
    assert_eq!(
        (code, body["offset"].as_u64()),
        (200, Some(offset + 10)),
        "{body}"
    );
    drop(held);
}
