//! spinmesh-runner: a native job runner that converts uploaded media to MP3 with ffmpeg.
//!
//! The `upload` component authenticates end users and streams their files here; this
//! service stores them in a spool directory (or S3-compatible object storage), records jobs in a durable store and runs a
//! pool of ffmpeg workers.

pub mod api;
pub mod app;
pub mod changes;
pub mod config;
pub mod early;
pub mod error;
pub mod events;
pub mod ffmpeg;
pub mod job;
pub mod media;
pub mod metrics;
pub mod names;
pub mod pg;
pub mod range;
pub mod registry;
pub mod resumable;
pub mod spool;
pub mod store;
pub mod units;
pub mod webhook;
pub mod worker;

pub use config::Config;
pub use error::{Error, Result};
