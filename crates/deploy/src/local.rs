//! Values for the app's required secret variables, and the private local state that
//! holds them. `cargo xtask deploy secrets` prints a fresh set for a platform's secret
//! store; the tests get a fresh set per app; `cargo xtask up` keeps one set in
//! `.spin/dev-secrets.env` so tokens and accounts survive restarts.

use std::fs::{DirBuilder, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use spinmesh_authn::{Issuer, PublicKey};

/// The service account the `orders` component uses for client credentials.
pub const ORDERS_CLIENT_ID: &str = "orders";

#[derive(Clone, Debug)]
pub struct DevSecrets {
    pub auth_signing_key: String,
    pub auth_public_key: String,
    pub admin_password: String,
    pub orders_client_secret: String,
    pub runner_token: String,
}

/// The names in a secrets file, in the order it is written.
const FIELDS: [&str; 5] = [
    "auth_signing_key",
    "auth_public_key",
    "admin_password",
    "orders_client_secret",
    "runner_token",
];

impl DevSecrets {
    pub fn generate() -> DevSecrets {
        let keys = spinmesh_authn::generate_key_pair().expect("key generation");
        DevSecrets {
            auth_signing_key: keys.signing_key,
            auth_public_key: keys.public_key,
            admin_password: random_secret(),
            orders_client_secret: random_secret(),
            runner_token: random_secret(),
        }
    }

    /// Reads the set stored at `path`, or creates it there on first use (its directory
    /// 0700, the file 0600, written atomically). A file that exists but cannot be read
    /// back is an error saying what to do: regenerating would silently invalidate every
    /// token and the admin's password.
    pub fn load_or_create(path: &Path) -> Result<DevSecrets> {
        match std::fs::read_to_string(path) {
            Ok(text) => DevSecrets::parse(&text).map_err(|problem| {
                anyhow::anyhow!(
                    "{} is damaged ({problem}). Restore it from a backup, or delete it to \
                     start over with new secrets (tokens issued so far stop working).",
                    path.display()
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secrets = DevSecrets::generate();
                if let Some(dir) = path.parent() {
                    create_private_dir(dir)?;
                }
                write_private(path, &secrets.to_env_file())?;
                Ok(secrets)
            }
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Reads `NAME=VALUE` lines (blank lines and `#` comments aside); every field exactly
    /// once, nothing else, and keys that parse.
    fn parse(text: &str) -> Result<DevSecrets, String> {
        let mut values: [Option<String>; 5] = Default::default();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
        {
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| format!("a line without `=`: {line:?}"))?;
            let index = FIELDS
                .iter()
                .position(|field| *field == name)
                .ok_or_else(|| format!("unknown name `{name}`"))?;
            if value.is_empty() {
                return Err(format!("`{name}` is empty"));
            }
            if values[index].replace(value.to_owned()).is_some() {
                return Err(format!("`{name}` appears twice"));
            }
        }
        let [
            Some(auth_signing_key),
            Some(auth_public_key),
            Some(admin_password),
            Some(orders_client_secret),
            Some(runner_token),
        ] = values
        else {
            let missing = FIELDS
                .iter()
                .zip(&values)
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| *name);
            return Err(format!(
                "missing {}",
                missing.collect::<Vec<_>>().join(", ")
            ));
        };
        Issuer::new(&auth_signing_key, "spinmesh", "spinmesh", 900)
            .map_err(|_| "`auth_signing_key` is not a key")?;
        PublicKey::from_base64(&auth_public_key).map_err(|_| "`auth_public_key` is not a key")?;
        Ok(DevSecrets {
            auth_signing_key,
            auth_public_key,
            admin_password,
            orders_client_secret,
            runner_token,
        })
    }

    fn to_env_file(&self) -> String {
        let values = [
            &self.auth_signing_key,
            &self.auth_public_key,
            &self.admin_password,
            &self.orders_client_secret,
            &self.runner_token,
        ];
        let mut text = String::from(
            "# Local development secrets, generated by cargo xtask up. Never commit.\n",
        );
        for (name, value) in FIELDS.iter().zip(values) {
            text.push_str(&format!("{name}={value}\n"));
        }
        text
    }

    /// The `service_clients` variable: `client_id:secret` pairs.
    pub fn service_clients(&self) -> String {
        format!("{ORDERS_CLIENT_ID}:{}", self.orders_client_secret)
    }

    /// The app variables these secrets provide, as `(name, value)`.
    pub fn variables(&self) -> Vec<(String, String)> {
        vec![
            ("auth_signing_key".into(), self.auth_signing_key.clone()),
            ("auth_public_key".into(), self.auth_public_key.clone()),
            ("admin_password".into(), self.admin_password.clone()),
            ("service_clients".into(), self.service_clients()),
            (
                "orders_client_secret".into(),
                self.orders_client_secret.clone(),
            ),
            ("runner_token".into(), self.runner_token.clone()),
        ]
    }
}

/// 256 random bits, URL-safe base64.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Creates `dir` (and its parents) accessible to this user only; an existing `dir` is
/// narrowed to 0700, since it holds secrets, stores and logs.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {} to its owner", dir.display()))
}

/// Replaces `path` with `text`, mode 0600, so that a crash leaves the old file or the
/// new one, never a torn one: a temporary file beside it, flushed to disk, renamed over
/// it, and the rename itself flushed.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // tempfile creates its files 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Makes the files and directories this process and its children create private to
/// this user (umask 077): the host's SQLite stores and logs and the runner's spool
/// hold accounts, tokens and uploads.
pub fn keep_created_files_private() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn stored_secrets_are_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state/.spin");
        let path = state.join("dev-secrets.env");
        let first = DevSecrets::load_or_create(&path).unwrap();
        let second = DevSecrets::load_or_create(&path).unwrap();
        assert_eq!(first.variables(), second.variables());
        assert_ne!(first.runner_token, DevSecrets::generate().runner_token);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state), 0o700);
        // Nothing but the file itself is left beside it.
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_state_directory_is_narrowed_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".spin");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
    }

    #[test]
    fn a_damaged_secrets_file_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-secrets.env");
        let good = DevSecrets::generate().to_env_file();
        let truncated = &good[..good.find("runner_token").unwrap()];
        let damaged = [
            (truncated.to_owned(), "missing runner_token"),
            (
                good.replace("admin_password=", "admin_pasword="),
                "unknown name `admin_pasword`",
            ),
            (
                format!("{good}runner_token=again\n"),
                "`runner_token` appears twice",
            ),
            (
                good.replacen("auth_signing_key=", "auth_signing_key=x", 1),
                "`auth_signing_key` is not a key",
            ),
            (
                good.replacen("\nadmin_password=", "\nadmin_password", 1),
                "a line without `=`",
            ),
            (String::new(), "missing auth_signing_key"),
        ];
        for (text, problem) in damaged {
            std::fs::write(&path, &text).unwrap();
            let error = DevSecrets::load_or_create(&path).unwrap_err().to_string();
            assert!(error.contains(problem), "{error}");
            assert!(error.contains("delete it"), "says what to do: {error}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                text,
                "not regenerated"
            );
        }
    }

    #[test]
    fn a_written_file_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, "old and longer").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
    }
}
