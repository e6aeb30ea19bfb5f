//! `runtime-config.toml`: where key-value stores and SQLite databases live.
//!
//! Only Spin's local (`type = "spin"`) backends are supported. Without a runtime
//! config, the `default` store and database live under the state directory
//! (`.spin/` by default), as with `spin up`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::db::SqliteFile;
use crate::manifest::Manifest;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawBackend>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawBackend>,
}

/// Other backends (redis, libsql, ...) carry other keys; they are refused by
/// `type` with a clear message rather than by an unknown-key error.
#[derive(Debug, Deserialize)]
struct RawBackend {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
}

/// Resolved file locations per label.
#[derive(Debug, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: BTreeMap<String, PathBuf>,
    pub sqlite_databases: BTreeMap<String, PathBuf>,
}

impl RuntimeConfig {
    /// Reads the file (if given). Relative paths resolve against the file's
    /// directory; `default` labels fall back to the state directory.
    pub fn load(file: Option<&Path>, state_dir: &Path) -> Result<Self> {
        let (raw, base) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read runtime config {}", path.display()))?;
                let raw: RawRuntimeConfig = toml::from_str(&text)
                    .with_context(|| format!("invalid runtime config {}", path.display()))?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (raw, base)
            }
            None => (RawRuntimeConfig::default(), PathBuf::new()),
        };
        let resolve = |section: &str, label: &str, backend: RawBackend| -> Result<PathBuf> {
            if backend.kind != "spin" {
                bail!(
                    "[{section}.{label}]: type {:?} is not supported by the embedded host (only \"spin\")",
                    backend.kind
                );
            }
            let path = backend
                .path
                .with_context(|| format!("[{section}.{label}]: `path` is required"))?;
            Ok(if path.is_absolute() {
                path
            } else {
                base.join(path)
            })
        };
        let mut config = RuntimeConfig::default();
        for (label, backend) in raw.key_value_store {
            let path = resolve("key_value_store", &label, backend)?;
            config.key_value_stores.insert(label, path);
        }
        for (label, backend) in raw.sqlite_database {
            let path = resolve("sqlite_database", &label, backend)?;
            config.sqlite_databases.insert(label, path);
        }
        config
            .key_value_stores
            .entry("default".into())
            .or_insert_with(|| state_dir.join("sqlite_key_value.db"));
        config
            .sqlite_databases
            .entry("default".into())
            .or_insert_with(|| state_dir.join("sqlite_db.db"));
        Ok(config)
    }

    /// Checks every label a component lists is defined (Spin refuses to start
    /// otherwise), then opens the files those labels use.
    pub fn open_stores(&self, manifest: &Manifest) -> Result<Stores> {
        let mut stores = Stores::default();
        let mut files: HashMap<PathBuf, Arc<SqliteFile>> = HashMap::new();
        let mut open = |path: &PathBuf| -> Result<Arc<SqliteFile>> {
            if let Some(file) = files.get(path) {
                return Ok(Arc::clone(file));
            }
            let file = SqliteFile::open(path)?;
            files.insert(path.clone(), Arc::clone(&file));
            Ok(file)
        };
        for (id, component) in &manifest.components {
            for label in &component.key_value_stores {
                let Some(path) = self.key_value_stores.get(label) else {
                    bail!(
                        "unknown key_value_stores label {label:?} for component {id:?}: define it in the runtime config as [key_value_store.{label}]"
                    );
                };
                if !stores.key_value.contains_key(label) {
                    let file = open(path)?;
                    // Once here, not on every `open` a request makes.
                    file.checkout()?.execute_batch(KV_SCHEMA).with_context(|| {
                        format!(
                            "cannot prepare key-value store {label:?} at {}",
                            path.display()
                        )
                    })?;
                    stores.key_value.insert(label.clone(), file);
                }
            }
            for label in &component.sqlite_databases {
                let Some(path) = self.sqlite_databases.get(label) else {
                    bail!(
                        "unknown sqlite_databases label {label:?} for component {id:?}: define it in the runtime config as [sqlite_database.{label}]"
                    );
                };
                if !stores.sqlite.contains_key(label) {
                    stores.sqlite.insert(label.clone(), open(path)?);
                }
            }
        }
        Ok(stores)
    }
}

/// Spin's table for key-value data (one file may hold several stores).
const KV_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))";

/// The opened files, by label.
#[derive(Debug, Default)]
pub struct Stores {
    pub key_value: HashMap<String, Arc<SqliteFile>>,
    pub sqlite: HashMap<String, Arc<SqliteFile>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime-config.toml");
        std::fs::write(
            &path,
            "[key_value_store.cache]\ntype = \"spin\"\npath = \"data/cache.db\"\n[sqlite_database.auth]\ntype = \"spin\"\npath = \"/abs/auth.db\"\n",
        )
        .unwrap();
        let config = RuntimeConfig::load(Some(&path), Path::new("/state")).unwrap();
        assert_eq!(
            config.key_value_stores["cache"],
            dir.path().join("data/cache.db")
        );
        assert_eq!(
            config.key_value_stores["default"],
            Path::new("/state/sqlite_key_value.db")
        );
        assert_eq!(config.sqlite_databases["auth"], Path::new("/abs/auth.db"));
        assert_eq!(
            config.sqlite_databases["default"],
            Path::new("/state/sqlite_db.db")
        );
    }

    #[test]
    fn rejects_unsupported_backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rc.toml");
        std::fs::write(
            &path,
            "[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://x\"\n",
        )
        .unwrap();
        assert!(RuntimeConfig::load(Some(&path), dir.path()).is_err());
    }

    #[test]
    fn undefined_labels_refuse_to_start() {
        let manifest = Manifest::parse(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"full\"\n[component.full]\nsource = \"f.wasm\"\nkey_value_stores = [\"cache\"]\n",
            Path::new("/"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = RuntimeConfig::load(None, dir.path()).unwrap();
        let err = config.open_stores(&manifest).unwrap_err().to_string();
        assert!(
            err.contains("unknown key_value_stores label \"cache\" for component \"full\""),
            "{err}"
        );
    }
}
