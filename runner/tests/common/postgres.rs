//! The throwaway PostgreSQL cluster lives with the other real services in the e2e
//! harness (`tests/src/services/`), where the cluster suites use it too.

pub use spinmesh_e2e::services::postgres::PgCluster;
