//! The throwaway S3-compatible server lives with the other real services in the e2e
//! harness (`tests/src/services/s3.rs`), where the cluster uses it too.

#[allow(
    unused_imports,
    reason = "every suite includes `common`; only the object-storage ones use it"
)]
pub use spinmesh_e2e::services::s3::{PREFIX, S3Server};
