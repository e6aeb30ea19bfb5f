//! The throwaway PostgreSQL cluster lives with the other real services in the e2e
//! harness (`tests/src/services/`), where the cluster suites use it too.

#[allow(
    unused_imports,
    reason = "every suite includes `common`; only the PostgreSQL ones use it"
)]
pub use spinmesh_e2e::services::postgres::PgCluster;
