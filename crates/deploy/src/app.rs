//! What a deployment needs to know about the app, read from `spin.toml` and a
//! runtime config. Reading is lenient (unknown keys are ignored): the embedded
//! host validates the manifest strictly; here only the parts that decide what a
//! platform must provide are read, so nothing about them is written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The application as `spin.toml` declares it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub version: Option<String>,
    pub variables: BTreeMap<String, Variable>,
    pub components: BTreeMap<String, ComponentSpec>,
    /// Public routes of `[[trigger.http]]` entries.
    pub routes: Vec<String>,
}

/// An entry of `[variables]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Variable {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

impl Variable {
    /// Secrets, and values the app cannot run without, come from a platform secret store.
    pub fn comes_from_secret_store(&self) -> bool {
        self.secret || self.default.is_none()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ComponentSpec {
    /// A local path; `None` for a registry or URL source.
    pub source: Option<String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub variables: BTreeMap<String, String>,
    pub build_command: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<RawTrigger>>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: String,
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawTrigger {
    route: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawComponent {
    source: Option<toml::Value>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    build: Option<RawBuild>,
}

#[derive(Deserialize)]
struct RawBuild {
    command: Option<String>,
}

impl AppSpec {
    pub fn load(path: &Path) -> Result<AppSpec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        AppSpec::parse(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AppSpec> {
        let raw: RawManifest = toml::from_str(text)?;
        let routes = raw
            .trigger
            .get("http")
            .into_iter()
            .flatten()
            .filter_map(|trigger| trigger.route.as_ref()?.as_str().map(str::to_string))
            .collect();
        let components = raw
            .component
            .into_iter()
            .map(|(id, component)| {
                let spec = ComponentSpec {
                    source: component
                        .source
                        .as_ref()
                        .and_then(toml::Value::as_str)
                        .map(str::to_string),
                    key_value_stores: component.key_value_stores,
                    sqlite_databases: component.sqlite_databases,
                    variables: component.variables,
                    build_command: component.build.and_then(|build| build.command),
                };
                (id, spec)
            })
            .collect();
        Ok(AppSpec {
            name: raw.application.name,
            version: raw.application.version,
            variables: raw.variables,
            components,
            routes,
        })
    }

    /// Every key-value store label some component is granted.
    pub fn key_value_labels(&self) -> BTreeSet<&str> {
        self.components
            .values()
            .flat_map(|c| c.key_value_stores.iter().map(String::as_str))
            .collect()
    }

    /// Every SQLite database label some component is granted.
    pub fn sqlite_labels(&self) -> BTreeSet<&str> {
        self.components
            .values()
            .flat_map(|c| c.sqlite_databases.iter().map(String::as_str))
            .collect()
    }

    /// Variables a platform must supply from its secret store, sorted by name.
    pub fn secret_store_variables(&self) -> Vec<(&str, &Variable)> {
        self.variables
            .iter()
            .filter(|(_, variable)| variable.comes_from_secret_store())
            .map(|(name, variable)| (name.as_str(), variable))
            .collect()
    }
}

/// The store and database labels a runtime config defines, with each one's `type`.
#[derive(Debug, Default, Clone)]
pub struct StoreLabels {
    pub key_value_stores: BTreeMap<String, String>,
    pub sqlite_databases: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawBackend>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawBackend>,
}

#[derive(Deserialize)]
struct RawBackend {
    #[serde(rename = "type")]
    kind: String,
}

impl StoreLabels {
    pub fn parse(text: &str) -> Result<StoreLabels> {
        let raw: RawRuntimeConfig = toml::from_str(text)?;
        Ok(StoreLabels {
            key_value_stores: raw
                .key_value_store
                .into_iter()
                .map(|(label, b)| (label, b.kind))
                .collect(),
            sqlite_databases: raw
                .sqlite_database
                .into_iter()
                .map(|(label, b)| (label, b.kind))
                .collect(),
        })
    }

    /// Labels some component uses that this runtime config leaves undefined, as
    /// `key_value_stores "x"` / `sqlite_databases "y"`. `default` counts as
    /// undefined too: on a cluster it would otherwise be a file inside one pod.
    pub fn missing_for(&self, app: &AppSpec) -> Vec<String> {
        let kv = app
            .key_value_labels()
            .into_iter()
            .filter(|label| !self.key_value_stores.contains_key(*label))
            .map(|label| format!("key_value_stores \"{label}\""));
        let sql = app
            .sqlite_labels()
            .into_iter()
            .filter(|label| !self.sqlite_databases.contains_key(*label))
            .map(|label| format!("sqlite_databases \"{label}\""));
        kv.chain(sql).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
version = "1.2.3"
[variables]
signing_key = { required = true, secret = true }
public_key = { required = true }
api_token = { default = "", secret = true }
ttl = { default = "900" }
[[trigger.http]]
route = "/health"
component = "web"
[[trigger.http]]
route = { private = true }
component = "catalog"
[component.web]
source = "target/wasm32-wasip2/release/web.wasm"
key_value_stores = ["default"]
variables = { ttl = "{{ ttl }}" }
[component.web.build]
command = "cargo build --target wasm32-wasip2 --release -p web"
[component.catalog]
source = { url = "https://example.com/catalog.wasm", digest = "sha256:00" }
sqlite_databases = ["catalog", "default"]
key_value_stores = ["default", "cache"]
"#;

    #[test]
    fn reads_variables_components_labels_and_routes() {
        let app = AppSpec::parse(MANIFEST).unwrap();
        assert_eq!(app.name, "shop");
        assert_eq!(app.version.as_deref(), Some("1.2.3"));
        assert_eq!(app.routes, ["/health"]);
        assert_eq!(
            app.key_value_labels().into_iter().collect::<Vec<_>>(),
            ["cache", "default"]
        );
        assert_eq!(
            app.sqlite_labels().into_iter().collect::<Vec<_>>(),
            ["catalog", "default"]
        );
        let web = &app.components["web"];
        assert_eq!(
            web.source.as_deref(),
            Some("target/wasm32-wasip2/release/web.wasm")
        );
        assert_eq!(
            web.build_command.as_deref(),
            Some("cargo build --target wasm32-wasip2 --release -p web")
        );
        assert_eq!(web.variables["ttl"], "{{ ttl }}");
        assert_eq!(app.components["catalog"].source, None);
        assert_eq!(app.components["catalog"].build_command, None);
    }

    #[test]
    fn secrets_and_required_values_come_from_the_secret_store() {
        let app = AppSpec::parse(MANIFEST).unwrap();
        let names: Vec<&str> = app
            .secret_store_variables()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        // `ttl` has a default and is not secret: the platform need not set it.
        assert_eq!(names, ["api_token", "public_key", "signing_key"]);
    }

    #[test]
    fn missing_labels_are_named() {
        let app = AppSpec::parse(MANIFEST).unwrap();
        let labels = StoreLabels::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://r\"\n[sqlite_database.catalog]\ntype = \"spin\"\npath = \"c.db\"\n",
        )
        .unwrap();
        assert_eq!(labels.sqlite_databases["catalog"], "spin");
        assert_eq!(
            labels.missing_for(&app),
            ["key_value_stores \"cache\"", "sqlite_databases \"default\""]
        );
    }

    #[test]
    fn malformed_manifest_is_an_error() {
        assert!(AppSpec::parse("[application]\n").is_err());
        assert!(AppSpec::parse("not toml = = 1").is_err());
        assert!(
            StoreLabels::parse("[key_value_store.default]\npath = \"x\"\n").is_err(),
            "type is required"
        );
    }
}
