//! `runtime-config.toml`: where key-value stores and SQLite databases live.
//!
//! Key-value stores are Spin's local files (`type = "spin"`) or a Redis server
//! (`type = "redis"`, `url = "redis://…"`); SQLite databases are local files.
//! Without a runtime config, the `default` store and database live under the
//! state directory (`.spin/` by default), as with `spin up`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::db::SqliteFile;
use crate::kv::{self, RedisServer, RedisStore, SqliteStore};
use crate::manifest::Manifest;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawBackend>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawBackend>,
}

/// Other backends (libsql, azure_cosmos, ...) carry other keys; they are
/// refused by `type` with a clear message rather than by an unknown-key error.
#[derive(Debug, Deserialize)]
struct RawBackend {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
}

/// Where a key-value store label lives.
#[derive(Debug)]
pub enum KeyValueBackend {
    Sqlite(PathBuf),
    Redis(RedisServer),
}

/// Resolved locations per label.
#[derive(Debug, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: BTreeMap<String, KeyValueBackend>,
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
        let local_path = |section: &str, label: &str, backend: RawBackend| -> Result<PathBuf> {
            let path = backend
                .path
                .with_context(|| format!("[{section}.{label}]: `path` is required"))?;
            Ok(if path.is_absolute() {
                path
            } else {
                base.join(path)
            })
        };
        let unsupported = |section: &str, label: &str, kind: &str, supported: &str| {
            anyhow::anyhow!(
                "[{section}.{label}]: type {kind:?} is not supported by the embedded host (only {supported})"
            )
        };
        let mut config = RuntimeConfig::default();
        for (label, backend) in raw.key_value_store {
            let section = "key_value_store";
            let store = match backend.kind.as_str() {
                "spin" => KeyValueBackend::Sqlite(local_path(section, &label, backend)?),
                "redis" => {
                    let url = backend
                        .url
                        .with_context(|| format!("[{section}.{label}]: `url` is required"))?;
                    KeyValueBackend::Redis(
                        RedisServer::parse(&url).with_context(|| format!("[{section}.{label}]"))?,
                    )
                }
                kind => bail!(unsupported(section, &label, kind, "\"spin\" and \"redis\"")),
            };
            config.key_value_stores.insert(label, store);
        }
        for (label, backend) in raw.sqlite_database {
            let section = "sqlite_database";
            if backend.kind != "spin" {
                bail!(unsupported(section, &label, &backend.kind, "\"spin\""));
            }
            let path = local_path(section, &label, backend)?;
            config.sqlite_databases.insert(label, path);
        }
        config
            .key_value_stores
            .entry("default".into())
            .or_insert_with(|| KeyValueBackend::Sqlite(state_dir.join("sqlite_key_value.db")));
        config
            .sqlite_databases
            .entry("default".into())
            .or_insert_with(|| state_dir.join("sqlite_db.db"));
        Ok(config)
    }

    /// Checks every label a component lists is defined (Spin refuses to start
    /// otherwise), then opens the files those labels use. Redis servers are
    /// connected to on first use, so the host starts while one is down.
    pub fn open_stores(&self, manifest: &Manifest) -> Result<Stores> {
        let mut stores = Stores::default();
        let mut files: HashMap<PathBuf, Arc<SqliteFile>> = HashMap::new();
        // Labels on one server share its connection, as labels in one file share its pool.
        let mut servers: HashMap<&str, Arc<RedisStore>> = HashMap::new();
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
                let Some(backend) = self.key_value_stores.get(label) else {
                    bail!(
                        "unknown key_value_stores label {label:?} for component {id:?}: define it in the runtime config as [key_value_store.{label}]"
                    );
                };
                if stores.key_value.contains_key(label) {
                    continue;
                }
                let store: kv::Store = match backend {
                    KeyValueBackend::Sqlite(path) => {
                        let file = open(path)?;
                        // Once here, not on every `open` a request makes.
                        file.checkout()?
                            .execute_batch(kv::SQLITE_SCHEMA)
                            .with_context(|| {
                                format!(
                                    "cannot prepare key-value store {label:?} at {}",
                                    path.display()
                                )
                            })?;
                        Arc::new(SqliteStore::new(label, file))
                    }
                    KeyValueBackend::Redis(server) => servers
                        .entry(server.url())
                        .or_insert_with(|| Arc::new(RedisStore::new(server.clone())))
                        .clone(),
                };
                stores.key_value.insert(label.clone(), store);
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

/// The opened stores, by label.
#[derive(Default)]
pub struct Stores {
    pub key_value: HashMap<String, kv::Store>,
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
        assert!(matches!(
            &config.key_value_stores["cache"],
            KeyValueBackend::Sqlite(path) if *path == dir.path().join("data/cache.db")
        ));
        assert!(matches!(
            &config.key_value_stores["default"],
            KeyValueBackend::Sqlite(path) if path == Path::new("/state/sqlite_key_value.db")
        ));
        assert_eq!(config.sqlite_databases["auth"], Path::new("/abs/auth.db"));
        assert_eq!(
            config.sqlite_databases["default"],
            Path::new("/state/sqlite_db.db")
        );
    }

    fn load_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rc.toml");
        std::fs::write(&path, text).unwrap();
        format!(
            "{:#}",
            RuntimeConfig::load(Some(&path), dir.path()).unwrap_err()
        )
    }

    #[test]
    fn rejects_unsupported_backends() {
        let err = load_error("[key_value_store.cache]\ntype = \"azure_cosmos\"\n");
        assert!(err.contains("\"spin\" and \"redis\""), "{err}");
        let err = load_error("[sqlite_database.db]\ntype = \"libsql\"\nurl = \"https://x\"\n");
        assert!(err.contains("only \"spin\""), "{err}");
    }

    #[test]
    fn redis_stores_need_a_valid_url_and_never_show_its_password() {
        let err = load_error("[key_value_store.cache]\ntype = \"redis\"\n");
        assert!(err.contains("`url` is required"), "{err}");
        let err = load_error(
            "[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://:hunter2@[bad\"\n",
        );
        assert!(err.contains("[key_value_store.cache]"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rc.toml");
        std::fs::write(
            &path,
            "[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1:6390/3\"\n",
        )
        .unwrap();
        let config = RuntimeConfig::load(Some(&path), dir.path()).unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("redis at 127.0.0.1:6390/3"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
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
        let Err(err) = config.open_stores(&manifest) else {
            panic!("started with an undefined label")
        };
        let err = err.to_string();
        assert!(
            err.contains("unknown key_value_stores label \"cache\" for component \"full\""),
            "{err}"
        );
    }
}
