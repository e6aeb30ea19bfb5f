//! Spin variables: application `[variables]`, component variable templates, and
//! the providers that give them values (`--variable`, `SPIN_VARIABLE_*`, defaults).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};

use crate::manifest::Manifest;
use crate::template::{expand_template, validate_variable_name};

/// Names a guest may ask for: Spin's looser runtime rule (a lowercase letter
/// first, then lowercase letters, digits and single `_`, not ending in `_`).
fn is_valid_lookup_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// Where values come from, highest precedence first: `--variable` flags, then
/// `SPIN_VARIABLE_<NAME>` environment variables, then manifest defaults.
#[derive(Debug, Default, Clone)]
pub struct Providers {
    pub cli: HashMap<String, String>,
    pub env: HashMap<String, String>,
}

impl Providers {
    /// Reads `SPIN_VARIABLE_*` from this process's environment.
    pub fn from_process_env(cli: HashMap<String, String>) -> Self {
        let env = std::env::vars()
            .filter_map(|(key, value)| {
                key.strip_prefix("SPIN_VARIABLE_")
                    .map(|name| (name.to_ascii_lowercase(), value))
            })
            .collect();
        Providers { cli, env }
    }
}

/// Parses a `--variable name=value` flag; `name=@path` reads the value from a file.
pub fn parse_cli_variable(flag: &str) -> Result<(String, String)> {
    let Some((name, value)) = flag.split_once('=') else {
        bail!("--variable {flag:?}: expected NAME=VALUE");
    };
    let name = name.trim().to_string();
    validate_variable_name(&name)?;
    let value = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("--variable {name}: cannot read {path}: {err}"))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        None => value.to_string(),
    };
    Ok((name, value))
}

/// Every component's variables, resolved once at start-up.
#[derive(Debug, Default)]
pub struct ResolvedVariables {
    app: HashMap<String, String>,
    by_component: HashMap<String, HashMap<String, String>>,
}

impl ResolvedVariables {
    /// Resolves all application variables, then expands each component's
    /// templates. Fails when a required variable has no value.
    pub fn resolve(manifest: &Manifest, providers: &Providers) -> Result<Self> {
        for name in providers.cli.keys() {
            if !manifest.variables.contains_key(name) {
                // Spin ignores such flags too; say so, since it is usually a typo.
                tracing::warn!(
                    "--variable {name}: the manifest declares no such variable; ignored"
                );
            }
        }
        let mut app_values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            let value = providers
                .cli
                .get(name)
                .or_else(|| providers.env.get(name))
                .cloned()
                .or_else(|| decl.default.clone());
            match value {
                Some(value) => {
                    app_values.insert(name.clone(), value);
                }
                None if decl.required => missing.push(name.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            let hints: Vec<String> = missing
                .iter()
                .map(|name| {
                    format!(
                        "`{name}` (set SPIN_VARIABLE_{} or --variable {name}=…)",
                        name.to_uppercase()
                    )
                })
                .collect();
            bail!("required variables have no value: {}", hints.join(", "));
        }

        let mut by_component = HashMap::new();
        for (id, component) in &manifest.components {
            let mut values = HashMap::new();
            for (name, template) in &component.variables {
                let value = expand_template(template, &app_values)
                    .with_context(|| format!("component {id:?}, variable `{name}`"))?;
                values.insert(name.clone(), value);
            }
            by_component.insert(id.clone(), values);
        }
        Ok(ResolvedVariables {
            app: app_values,
            by_component,
        })
    }

    /// Application variable values, for templates the host itself expands
    /// (e.g. in `allowed_outbound_hosts`).
    pub fn app_values(&self) -> &HashMap<String, String> {
        &self.app
    }

    /// What a component's `variables::get(name)` answers.
    pub fn get(&self, component: &str, name: &str) -> Result<String, VariableError> {
        if !is_valid_lookup_name(name) {
            return Err(VariableError::InvalidName(name.to_string()));
        }
        self.by_component
            .get(component)
            .and_then(|values| values.get(name))
            .cloned()
            .ok_or_else(|| VariableError::Undefined(name.to_string()))
    }
}

#[derive(Debug, PartialEq)]
pub enum VariableError {
    InvalidName(String),
    Undefined(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "vars"
[variables]
host = { default = "db.local" }
port = { default = "5432" }
secret = { required = true, secret = true }
optional = { default = "" }
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "app.wasm"
variables = { url = "pg://{{ host }}:{{port}}/x", key = "{{ secret }}", maybe = "{{ optional }}" }
"#,
            Path::new("/"),
        )
        .unwrap()
    }

    #[test]
    fn cli_beats_env_beats_default() {
        let mut providers = Providers::default();
        providers.env.insert("secret".into(), "from-env".into());
        providers.env.insert("port".into(), "6000".into());
        providers.cli.insert("port".into(), "7000".into());
        let resolved = ResolvedVariables::resolve(&manifest(), &providers).unwrap();
        assert_eq!(resolved.get("app", "url").unwrap(), "pg://db.local:7000/x");
        assert_eq!(resolved.get("app", "key").unwrap(), "from-env");
    }

    #[test]
    fn missing_required_variable_is_a_startup_error() {
        let err = ResolvedVariables::resolve(&manifest(), &Providers::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`secret`") && message.contains("SPIN_VARIABLE_SECRET"),
            "{message}"
        );
    }

    #[test]
    fn guest_lookups_distinguish_invalid_and_undefined() {
        let mut providers = Providers::default();
        providers.env.insert("secret".into(), "s".into());
        let resolved = ResolvedVariables::resolve(&manifest(), &providers).unwrap();
        assert_eq!(
            resolved.get("app", "Bad-Name"),
            Err(VariableError::InvalidName("Bad-Name".into()))
        );
        assert_eq!(
            resolved.get("app", "nope"),
            Err(VariableError::Undefined("nope".into()))
        );
        assert_eq!(resolved.get("app", "maybe").unwrap(), "");
    }

    #[test]
    fn cli_flag_for_unknown_variable_is_ignored() {
        let mut providers = Providers::default();
        providers.env.insert("secret".into(), "s".into());
        providers.cli.insert("typo".into(), "x".into());
        let resolved = ResolvedVariables::resolve(&manifest(), &providers).unwrap();
        assert_eq!(resolved.get("app", "url").unwrap(), "pg://db.local:5432/x");
    }

    #[test]
    fn parses_cli_flags() {
        assert_eq!(
            parse_cli_variable("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_cli_variable("novalue").is_err());
    }
}
