//! Schema fuzzing: schemathesis (pinned in tests/schema/requirements.txt, installed by
//! `cargo xtask test`) generates requests for every operation of the served OpenAPI
//! document and checks that no response is a server error and every response matches
//! its documented schema. Deterministic (no random variation, no example database) and
//! bounded (a few examples per operation, one worker).

use std::path::PathBuf;
use std::process::Command;

use spinmesh_e2e::{Api, App, repo_root};

/// Where `cargo xtask test` installs the schemathesis CLI.
fn schemathesis() -> PathBuf {
    let path = repo_root().join("target/schemathesis/bin/st");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`, which installs schemathesis",
        path.display()
    );
    path
}

/// Runs schemathesis against `app` with `token`, over the operations `filter` selects.
fn fuzz(app: &App, token: &str, filter: &[&str]) {
    let output = Command::new(schemathesis())
        .arg("--config-file")
        .arg(repo_root().join("tests/schema/schemathesis.toml"))
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .args(["--url", &app.url("")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .args([
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--generation-deterministic",
        ])
        .args([
            "--workers",
            "1",
            "--no-shrink",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Shown with `--nocapture`: what was run and how it went.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[cfg_attr(
    engine_missing,
    ignore = "SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH"
)]
fn no_server_errors_and_every_response_matches_the_document() {
    // Limits that would throttle the fuzzer are raised here, so it reaches the logic
    // behind them (throttling itself is covered by the components' own tests).
    let app = App::builder()
        .with_runner()
        .variable("login_max_failures", "1000000")
        .variable("rate_limit_per_address", "0")
        .variable("rate_limit_per_user", "0")
        .start();
    let api = Api::new(&app);
    let user = api.user("fuzzer").token;
    let admin = api.admin();

    // Everything as an ordinary user. Logging out would revoke the token every other
    // operation runs with (logout itself is covered by tests/tests/auth.rs).
    fuzz(&app, &user, &["--exclude-path", "/api/logout"]);
    // The admin-only operations as an admin, so their success responses are checked too.
    fuzz(&app, &admin, &["--include-tag", "admin"]);
}
