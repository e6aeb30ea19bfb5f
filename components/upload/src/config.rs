use spin_sdk::variables;
use spinmesh_api::ApiError;
use spinmesh_api::authn::Verifier;
use spinmesh_media::UploadPolicy;

use crate::runner::Runner;

/// The component's settings, from the Spin variables granted to it in `spin.toml`.
pub struct Config {
    pub verifier: Verifier,
    pub runner: Runner,
    pub policy: UploadPolicy,
}

impl Config {
    /// Misconfiguration is the operator's problem: a logged, generic 500.
    pub fn load() -> Result<Self, ApiError> {
        let verifier = Verifier::from_base64(
            &get("auth_public_key")?,
            get("auth_issuer")?,
            get("auth_audience")?,
        )?;
        let runner = Runner::new(&get("runner_url")?, get("runner_token")?);
        let max_bytes = get("upload_max_bytes")?
            .trim()
            .parse()
            .map_err(|_| ApiError::internal_logged("upload_max_bytes is not a number of bytes"))?;
        let policy =
            UploadPolicy::new(&get("upload_allowed_extensions")?, max_bytes).ok_or_else(|| {
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

fn get(name: &str) -> Result<String, ApiError> {
    variables::get(name)
        .map_err(|error| ApiError::internal_logged(format_args!("variable {name}: {error}")))
}
