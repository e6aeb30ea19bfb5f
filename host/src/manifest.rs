//! `spin.toml` (manifest version 2): parsing and validation.
//!
//! Only what a Spin HTTP application uses is accepted; anything else is refused
//! with an error naming the file and the key, so the embedded host never quietly
//! runs an app differently from `spin up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::template::{template_references, validate_variable_name};

/// A validated application manifest.
#[derive(Debug)]
pub struct Manifest {
    /// Directory holding `spin.toml`; component sources are relative to it.
    pub root: PathBuf,
    pub application: Application,
    pub variables: BTreeMap<String, VariableDecl>,
    pub http_triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    pub http: Option<HttpTriggerSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTriggerSettings {
    /// Spin 1 style base path; Spin 2+ ignores everything but "/".
    pub base: Option<String>,
}

/// An application variable from `[variables]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub route: Route,
    pub component: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A route pattern served on the public listener.
    Public(String),
    /// Reachable only through `http://<id>.spin.internal`.
    Private,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    /// Absolute path of the component's `.wasm`.
    pub source: PathBuf,
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    /// Component variable name → template (may reference `{{ app_variable }}`).
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
}

// --- raw TOML shapes -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<RawTrigger>>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    id: Option<String>,
    route: Option<RawRoute>,
    component: Option<toml::Value>,
    executor: Option<RawExecutor>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Used by `spin build` only.
    #[allow(dead_code, reason = "read by `spin build`, never by the host")]
    build: Option<toml::Value>,
    #[serde(default)]
    files: Vec<toml::Value>,
}

impl Manifest {
    /// `(route, component)` for each public HTTP trigger, in declaration order.
    pub fn public_routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.http_triggers
            .iter()
            .filter_map(|trigger| match &trigger.route {
                Route::Public(route) => Some((route.as_str(), trigger.component.as_str())),
                Route::Private => None,
            })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let root = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", path.display()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::parse(&text, &root).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses manifest text; `root` is the directory relative sources resolve against.
    pub fn parse(text: &str, root: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version.as_integer() != Some(2) {
            bail!("`spin_manifest_version` must be 2 (this host reads manifest v2 only)");
        }
        if let Some(base) = raw
            .application
            .trigger
            .http
            .as_ref()
            .and_then(|h| h.base.as_deref())
            && base != "/"
        {
            bail!("`application.trigger.http.base` must be \"/\" (Spin 2+ ignores other bases)");
        }
        for (name, decl) in &raw.variables {
            validate_variable_name(name).with_context(|| format!("in `[variables]`: `{name}`"))?;
            if decl.required == decl.default.is_some() {
                bail!("variable `{name}`: must be `required` OR have a `default`");
            }
        }

        let mut components = BTreeMap::new();
        for (id, raw_component) in raw.component {
            let component = parse_component(&id, raw_component, root, &raw.variables)
                .with_context(|| format!("in `[component.{id}]`"))?;
            components.insert(id, component);
        }

        let mut http_triggers = Vec::new();
        for (kind, triggers) in raw.trigger {
            if kind != "http" {
                bail!("`[[trigger.{kind}]]`: only HTTP triggers are supported");
            }
            for (index, trigger) in triggers.into_iter().enumerate() {
                let trigger = parse_http_trigger(trigger, &components)
                    .with_context(|| format!("in `[[trigger.http]]` #{}", index + 1))?;
                http_triggers.push(trigger);
            }
        }
        if http_triggers.is_empty() {
            bail!("no `[[trigger.http]]` entries: the app would serve nothing");
        }

        Ok(Manifest {
            root: root.to_path_buf(),
            application: raw.application,
            variables: raw.variables,
            http_triggers,
            components,
        })
    }
}

fn parse_component(
    id: &str,
    raw: RawComponent,
    root: &Path,
    app_variables: &BTreeMap<String, VariableDecl>,
) -> Result<Component> {
    validate_component_id(id)?;
    let source = match raw.source {
        toml::Value::String(path) => root.join(path),
        _ => bail!("`source`: only a local file path is supported by the embedded host"),
    };
    if !raw.files.is_empty() {
        bail!("`files`: mounting files is not supported by the embedded host");
    }
    let _ = raw.description;
    for (name, template) in &raw.variables {
        validate_variable_name(name).with_context(|| format!("in `variables`: `{name}`"))?;
        for reference in
            template_references(template).with_context(|| format!("in `variables.{name}`"))?
        {
            if !app_variables.contains_key(&reference) {
                bail!(
                    "`variables.{name}` refers to `{{{{ {reference} }}}}`, which `[variables]` does not declare"
                );
            }
        }
    }
    for host in &raw.allowed_outbound_hosts {
        crate::outbound::AllowedHost::parse_template(host)
            .with_context(|| format!("in `allowed_outbound_hosts`: `{host}`"))?;
    }
    Ok(Component {
        id: id.to_string(),
        source,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        key_value_stores: raw.key_value_stores,
        sqlite_databases: raw.sqlite_databases,
        variables: raw.variables,
        environment: raw.environment,
    })
}

fn parse_http_trigger(
    raw: RawTrigger,
    components: &BTreeMap<String, Component>,
) -> Result<HttpTrigger> {
    let _ = raw.id;
    if let Some(executor) = raw.executor
        && executor.kind != "spin"
    {
        bail!(
            "`executor`: only the \"spin\" executor is supported, not {:?}",
            executor.kind
        );
    }
    let route = match raw.route {
        Some(RawRoute::Path(path)) => {
            crate::routes::validate_route(&path).with_context(|| format!("`route` {path:?}"))?;
            Route::Public(path)
        }
        Some(RawRoute::Private { private: true }) => Route::Private,
        Some(RawRoute::Private { private: false }) => {
            bail!("`route`: `{{ private = false }}` is not a route; give a path instead")
        }
        None => bail!("missing `route`"),
    };
    let component = match raw.component {
        Some(toml::Value::String(id)) => id,
        Some(_) => bail!("`component`: inline component tables are not supported; use an id"),
        None => bail!("missing `component`"),
    };
    if !components.contains_key(&component) {
        bail!("`component` = {component:?}, but there is no `[component.{component}]`");
    }
    Ok(HttpTrigger { route, component })
}

/// Spin component ids: lowercase words of letters and digits joined by `-`
/// (they become host names under `spin.internal`).
fn validate_component_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && id.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!("component id {id:?} must be lowercase kebab-case (e.g. `user-profiles`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/hello/..."
component = "hello"
[[trigger.http]]
route = { private = true }
component = "hidden"
[component.hello]
source = "target/hello.wasm"
key_value_stores = ["default"]
variables = { message = "{{ greeting }}, world" }
[component.hidden]
source = "hidden.wasm"
"#;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("/app"))
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn parses_triggers_components_and_variables() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.application.name, "demo");
        assert_eq!(manifest.http_triggers.len(), 2);
        assert_eq!(
            manifest.http_triggers[0].route,
            Route::Public("/hello/...".into())
        );
        assert_eq!(manifest.http_triggers[1].route, Route::Private);
        assert_eq!(
            manifest.public_routes().collect::<Vec<_>>(),
            [("/hello/...", "hello")]
        );
        let hello = &manifest.components["hello"];
        assert_eq!(hello.source, Path::new("/app/target/hello.wasm"));
        assert_eq!(hello.key_value_stores, ["default"]);
        assert!(manifest.variables["token"].required);
    }

    #[test]
    fn rejects_unknown_keys_naming_them() {
        let text = MINIMAL.replace("[component.hidden]", "[component.hidden]\nmystery = 1");
        assert!(error_of(&text).contains("mystery"), "{}", error_of(&text));
    }

    #[test]
    fn rejects_wrong_manifest_version() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(error_of(&text).contains("spin_manifest_version"));
    }

    #[test]
    fn rejects_trigger_for_missing_component() {
        let text = MINIMAL.replace("component = \"hidden\"", "component = \"ghost\"");
        assert!(error_of(&text).contains("ghost"));
    }

    #[test]
    fn rejects_template_referring_to_undeclared_variable() {
        let text = MINIMAL.replace("{{ greeting }}", "{{ nope }}");
        assert!(error_of(&text).contains("nope"));
    }

    #[test]
    fn rejects_bad_component_ids_and_routes() {
        let text = MINIMAL
            .replace("[component.hidden]", "[component.Hidden]")
            .replace("component = \"hidden\"", "component = \"Hidden\"");
        assert!(error_of(&text).contains("kebab-case"));
        let text = MINIMAL.replace("/hello/...", "hello");
        assert!(error_of(&text).contains("route"), "{}", error_of(&text));
    }

    #[test]
    fn rejects_non_http_triggers() {
        let text = format!("{MINIMAL}\n[[trigger.redis]]\ncomponent = \"hello\"\n");
        assert!(error_of(&text).contains("trigger.redis"));
    }
}
