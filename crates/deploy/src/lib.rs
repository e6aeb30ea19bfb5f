//! Deployment artefacts derived from `spin.toml`, so what a platform
//! provides — variables, key-value stores, SQLite databases — cannot drift from what
//! the app declares. `cargo xtask deploy render` writes them; the tests in `tests/`
//! check the committed copies and the docs against the manifest. [`local`] generates
//! the app's secrets and keeps the local copy private.

pub mod app;
pub mod local;
pub mod spinkube;

pub use app::{AppSpec, ComponentSpec, StoreLabels, Variable};

/// Variables of the app that `docs` never names as `` `name` ``, sorted.
pub fn undocumented_variables(app: &AppSpec, docs: &str) -> Vec<String> {
    app.variables
        .keys()
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_counts_as_documented_only_when_named_as_code() {
        let app = AppSpec::parse(
            "[application]\nname = \"a\"\n[variables]\nrunner_url = { default = \"x\" }\nrunner = { default = \"y\" }\ntoken = { required = true }\n",
        )
        .unwrap();
        let docs = "| `runner_url` | where the runner is |\nThe token is secret.";
        // `runner` is a prefix of a documented name and `token` appears only as prose.
        assert_eq!(undocumented_variables(&app, docs), ["runner", "token"]);
        assert!(undocumented_variables(&app, "`runner_url` `runner` `token`").is_empty());
    }
}
