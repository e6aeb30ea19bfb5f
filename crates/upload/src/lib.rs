//! What the `upload` component decides outside the streaming itself, as a native crate so
//! it is unit-tested by `cargo test`:
//!
//! * [`route`]: the component's route table and what a request asks for;
//! * [`follow`]: a status request's `?wait=` and an event stream's `Last-Event-ID`;
//! * [`runner`]: the conversion runner's HTTP API (runner/README.md) and how its answers
//!   map to the client's;
//! * [`tus`]: the resumable-upload protocol's header rules.

pub mod follow;
pub mod route;
pub mod runner;
pub mod tus;
