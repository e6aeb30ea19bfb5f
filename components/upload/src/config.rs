use spinmesh_api::ApiError;
use spinmesh_api::authn::Verifier;
use spinmesh_api::config::{positive_u64, token_verifier, var};
use spinmesh_media::UploadPolicy;
use spinmesh_upload::runner::Runner;

/// The component's settings, from the Spin variables granted to it in `spin.toml`.
pub struct Config {
    pub verifier: Verifier,
    pub runner: Runner,
    pub policy: UploadPolicy,
}

impl Config {
    /// Misconfiguration is the operator's problem: a logged, generic 500.
    pub fn load() -> Result<Self, ApiError> {
        let verifier = token_verifier()?;
        let runner = Runner::new(&var("runner_url")?, var("runner_token")?);
        let max_bytes = positive_u64("upload_max_bytes")?;
        let policy =
            UploadPolicy::new(&var("upload_allowed_extensions")?, max_bytes).ok_or_else(|| {
                ApiError::internal_logged(
                    "upload_allowed_extensions and upload_max_bytes admit no upload",
                )
            })?;
        Ok(Self {
            verifier,
            runner,
            policy,
        })
    }
}
