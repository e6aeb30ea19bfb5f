//! The real services the production topology is made of, each run as a child process
//! on loopback: PostgreSQL, Redis, an S3-compatible server (moto) and the load balancer. The runner's tests, the cluster suites and `cargo xtask up
//! --cluster` all start them from here.

pub mod balancer;
pub mod postgres;
pub mod redis;
pub mod s3;

use std::net::TcpListener;
use std::process::Command;

/// A loopback port that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}
