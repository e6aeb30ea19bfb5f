//! Decides, when the tests are built, whether the selected engine can run here. With
//! `SPINMESH_ENGINE=spin` and no `spin` CLI on PATH it sets `cfg(engine_missing)`, and
//! every test that serves the app is marked
//! `#[cfg_attr(engine_missing, ignore = "...")]`: cargo then counts those tests as
//! ignored in its summary instead of running them and letting them pass silently.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(engine_missing)");
    println!("cargo::rerun-if-env-changed=SPINMESH_ENGINE");
    if std::env::var("SPINMESH_ENGINE").as_deref() != Ok("spin") {
        return;
    }
    // Only with Spin selected does PATH matter (installing spin changes it or its contents;
    // a PATH change is what cargo can see).
    println!("cargo::rerun-if-env-changed=PATH");
    if Command::new("spin").arg("--version").output().is_err() {
        println!("cargo::rustc-cfg=engine_missing");
        println!(
            "cargo::warning=SPINMESH_ENGINE=spin, but no `spin` CLI is on PATH: the tests that serve the app are ignored"
        );
    }
}
