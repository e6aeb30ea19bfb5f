//! SpinKube manifests rendered from the app's own declarations, so the cluster
//! always provides exactly the variables, stores and databases `spin.toml` asks for.
//!
//! * `spinapp.yaml` — the `SpinApp` (spin-operator `core.spinkube.dev/v1alpha1`):
//!   every secret or default-less variable bound to a key of one Kubernetes Secret,
//!   the runtime config loaded from another.
//! * `runtime-config.toml` — the cluster runtime config: each key-value label on
//!   Redis, each SQLite label on libSQL. A template: URLs and tokens are filled in
//!   out of the repository, then stored as the runtime-config Secret.
//! * `runner.yaml` — the conversion runner: a Deployment of replicas sharing a
//!   PostgreSQL job store and an S3 bucket for the media (each with scratch in an
//!   `emptyDir`), probes on `/healthz`, a PodDisruptionBudget, Service, and a
//!   NetworkPolicy letting only the app's pods reach it.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::app::AppSpec;

/// Port the runner listens on inside its pod (`RUNNER_LISTEN`).
pub const RUNNER_PORT: u16 = 3001;
/// Where the runner's scratch directory (its spool, with the media in object storage)
/// is mounted.
pub const RUNNER_SPOOL_DIR: &str = "/var/lib/spinmesh-runner";
/// Runner replicas: any of them serves any job, so two keep conversions going while
/// one is replaced.
pub const RUNNER_REPLICAS: u32 = 2;
/// `--shutdown-grace` of the runner pods: a running conversion's time to finish.
pub const RUNNER_SHUTDOWN_GRACE_SECONDS: u32 = 20;
/// Keys of the Secret with the runner's shared stores (see [`Names::runner_storage`]),
/// each with the environment variable it sets and whether it may be absent.
pub const RUNNER_STORAGE_KEYS: [(&str, &str, bool); 6] = [
    ("database_url", "RUNNER_DATABASE_URL", false),
    ("object_store", "RUNNER_OBJECT_STORE", false),
    ("s3_region", "AWS_REGION", false),
    ("s3_access_key_id", "AWS_ACCESS_KEY_ID", false),
    ("s3_secret_access_key", "AWS_SECRET_ACCESS_KEY", false),
    // Only for S3-compatible services other than AWS.
    ("s3_endpoint", "AWS_ENDPOINT_URL", true),
];
/// Key of the runtime-config Secret that spin-operator mounts as `/runtime-config.toml`.
pub const RUNTIME_CONFIG_KEY: &str = "runtime-config.toml";
/// Label spin-operator puts on the pods of a SpinApp.
const SPINAPP_POD_LABEL: &str = "core.spinkube.dev/app-name";
/// The variable holding the runner's bearer token; the runner reads the same Secret key.
const RUNNER_TOKEN_VARIABLE: &str = "runner_token";
/// The variable telling `upload` where the runner is.
const RUNNER_URL_VARIABLE: &str = "runner_url";
/// The route the readiness probe calls: served by a component, so a ready pod runs the app,
/// and answered by the pod alone (the aggregate `/health` would make every pod unready when
/// the runner is down).
const READINESS_ROUTE: &str = "/health/live";
/// Spin's own liveness endpoint (answered by the runtime, whatever the app routes).
const SPIN_HEALTH: &str = "/.well-known/spin/health";

/// What varies between clusters; everything else comes from `spin.toml`.
#[derive(Debug, Clone)]
pub struct Options {
    /// OCI reference of the app pushed with `spin registry push`.
    pub image: String,
    /// Container image of the runner (`runner/Dockerfile`).
    pub runner_image: String,
    pub replicas: u32,
    /// Redis URL per key-value label; `{label}` is replaced by the label as a DNS name
    /// (`_` becomes `-`), since the default names a Kubernetes Service after it.
    pub redis_url_template: String,
    /// libSQL URL per SQLite label; `{label}` is replaced by the label.
    pub libsql_url_template: String,
    /// Size limit of each runner pod's scratch `emptyDir`.
    pub scratch_size: String,
}

impl Options {
    /// The values the committed manifests under `deploy/spinkube/` use.
    pub fn defaults_for(app: &AppSpec) -> Options {
        let version = app.version.as_deref().unwrap_or("latest");
        Options {
            image: format!("registry.example.com/{}:{version}", app.name),
            runner_image: format!("registry.example.com/{}-runner:{version}", app.name),
            replicas: 2,
            redis_url_template: format!("redis://{}-redis-{{label}}:6379", app.name),
            libsql_url_template: format!("https://{}-{{label}}-YOUR-ORG.turso.io", app.name),
            scratch_size: "20Gi".into(),
        }
    }
}

/// Names of the Kubernetes objects, all derived from the app's name.
#[derive(Debug, Clone)]
pub struct Names {
    pub app: String,
    /// Secret holding one key per variable from the secret store.
    pub secrets: String,
    /// Secret holding `runtime-config.toml`.
    pub runtime_config: String,
    pub runner: String,
    /// Secret with the runner's PostgreSQL URL and object store settings.
    pub runner_storage: String,
}

impl Names {
    pub fn for_app(app: &AppSpec) -> Names {
        let name = &app.name;
        Names {
            app: name.clone(),
            secrets: format!("{name}-secrets"),
            runtime_config: format!("{name}-runtime-config"),
            runner: format!("{name}-runner"),
            runner_storage: format!("{name}-runner-storage"),
        }
    }

    /// The runner's in-cluster URL, what `runner_url` is set to.
    pub fn runner_url(&self) -> String {
        format!("http://{}:{RUNNER_PORT}", self.runner)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderedFile {
    pub name: &'static str,
    pub contents: String,
}

pub fn render(app: &AppSpec, options: &Options) -> Result<Vec<RenderedFile>> {
    check_app(app)?;
    if options.replicas == 0 {
        bail!("replicas must be at least 1");
    }
    let names = Names::for_app(app);
    let header = |what: &str| {
        format!(
            "# {what}\n# Generated from spin.toml by `cargo xtask deploy render --target spinkube`; do not edit by hand.\n"
        )
    };
    Ok(vec![
        RenderedFile {
            name: "spinapp.yaml",
            contents: header("The spinmesh SpinApp (spin-operator).")
                + &to_yaml(&[spin_app(app, options, &names)])?,
        },
        RenderedFile {
            name: "runtime-config.toml",
            contents: header(&format!(
                "Cluster runtime config, a template: fill in URLs and tokens in a copy outside the\n# repository and store that as Secret `{}` (see README.md).",
                names.runtime_config
            )) + &runtime_config(app, options)?,
        },
        RenderedFile {
            name: "runner.yaml",
            contents: header(
                "The conversion runner: Deployment, PodDisruptionBudget, Service, NetworkPolicy.",
            ) + &to_yaml(&runner(options, &names))?,
        },
    ])
}

/// What the manifests rely on the app to declare.
fn check_app(app: &AppSpec) -> Result<()> {
    for name in [RUNNER_TOKEN_VARIABLE, RUNNER_URL_VARIABLE] {
        if !app.variables.contains_key(name) {
            bail!("spin.toml declares no `{name}` variable, which the runner manifests use");
        }
    }
    if app.variables[RUNNER_URL_VARIABLE].secret {
        bail!("`{RUNNER_URL_VARIABLE}` is a secret variable; the manifests set it in plain text");
    }
    if !app.routes.iter().any(|route| route == READINESS_ROUTE) {
        bail!(
            "spin.toml routes nothing to `{READINESS_ROUTE}`, which the SpinApp's readiness probe calls"
        );
    }
    Ok(())
}

fn spin_app(app: &AppSpec, options: &Options, names: &Names) -> Value {
    let mut variables: Vec<Value> = app
        .secret_store_variables()
        .into_iter()
        .map(|(name, variable)| {
            let mut key_ref = json!({ "name": names.secrets, "key": name });
            if variable.default.is_some() {
                // Absent from the Secret, the variable keeps its spin.toml default.
                key_ref["optional"] = json!(true);
            }
            json!({ "name": name, "valueFrom": { "secretKeyRef": key_ref } })
        })
        .collect();
    variables.push(json!({ "name": RUNNER_URL_VARIABLE, "value": names.runner_url() }));
    variables.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let probe = |path: &str, initial_delay: u32| json!({ "httpGet": { "path": path }, "initialDelaySeconds": initial_delay, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3 });
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": { "name": names.app, "labels": part_of(names) },
        "spec": {
            "image": options.image,
            "executor": "containerd-shim-spin",
            "replicas": options.replicas,
            "variables": variables,
            "runtimeConfig": { "loadFromSecret": names.runtime_config },
            // argon2id hashes take 19 MiB each; a login burst needs headroom.
            "resources": {
                "requests": { "cpu": "100m", "memory": "128Mi" },
                "limits": { "cpu": "1", "memory": "512Mi" },
            },
            "checks": {
                "readiness": probe(READINESS_ROUTE, 2),
                "liveness": probe(SPIN_HEALTH, 10),
            },
        },
    })
}

/// A store label as it may appear in a Kubernetes Service name (RFC 1123: lowercase
/// letters, digits and `-`); Spin labels allow `_`, which Kubernetes refuses.
fn dns_label(label: &str) -> String {
    label.to_ascii_lowercase().replace('_', "-")
}

fn runtime_config(app: &AppSpec, options: &Options) -> Result<String> {
    let mut config = toml::Table::new();
    let mut kv = toml::Table::new();
    for label in app.key_value_labels() {
        let url = options
            .redis_url_template
            .replace("{label}", &dns_label(label));
        kv.insert(
            label.into(),
            toml::Value::Table(backend(&[("type", "redis"), ("url", &url)])),
        );
    }
    let mut sql = toml::Table::new();
    for label in app.sqlite_labels() {
        let url = options.libsql_url_template.replace("{label}", label);
        let token = format!("REPLACE-WITH-THE-LIBSQL-TOKEN-FOR-{}", label.to_uppercase());
        sql.insert(
            label.into(),
            toml::Value::Table(backend(&[
                ("type", "libsql"),
                ("url", &url),
                ("token", &token),
            ])),
        );
    }
    if !kv.is_empty() {
        config.insert("key_value_store".into(), toml::Value::Table(kv));
    }
    if !sql.is_empty() {
        config.insert("sqlite_database".into(), toml::Value::Table(sql));
    }
    Ok(toml::to_string(&config)?)
}

fn backend(entries: &[(&str, &str)]) -> toml::Table {
    entries
        .iter()
        .map(|(key, value)| (key.to_string(), toml::Value::String(value.to_string())))
        .collect()
}

fn runner(options: &Options, names: &Names) -> Vec<Value> {
    let selector = json!({ "app.kubernetes.io/name": names.runner });
    let mut labels = part_of(names);
    labels["app.kubernetes.io/name"] = json!(names.runner);
    let probe = |initial_delay: u32, period: u32| json!({ "httpGet": { "path": "/healthz", "port": "http" }, "initialDelaySeconds": initial_delay, "periodSeconds": period, "timeoutSeconds": 3, "failureThreshold": 3 });
    let secret = |key: &str, optional: bool| {
        let mut reference = json!({ "name": names.runner_storage, "key": key });
        if optional {
            reference["optional"] = json!(true);
        }
        json!({ "secretKeyRef": reference })
    };
    let mut env = vec![
        json!({ "name": "RUNNER_LISTEN", "value": format!("0.0.0.0:{RUNNER_PORT}") }),
        json!({ "name": "RUNNER_SPOOL_DIR", "value": RUNNER_SPOOL_DIR }),
        json!({ "name": "RUNNER_SHUTDOWN_GRACE", "value": format!("{RUNNER_SHUTDOWN_GRACE_SECONDS}s") }),
        json!({ "name": "RUNNER_TOKEN", "valueFrom": { "secretKeyRef": { "name": names.secrets, "key": RUNNER_TOKEN_VARIABLE } } }),
    ];
    env.extend(RUNNER_STORAGE_KEYS.iter().map(|(key, variable, optional)| {
        json!({ "name": variable, "valueFrom": secret(key, *optional) })
    }));
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": names.runner, "labels": labels },
        "spec": {
            // The replicas share PostgreSQL and the bucket; a pod holds nothing the others
            // cannot take over, so they are replaced one at a time.
            "replicas": RUNNER_REPLICAS,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    // The runner's shutdown grace, then up to 15 s to stop ffmpeg and hand
                    // the jobs back, and a margin.
                    "terminationGracePeriodSeconds": RUNNER_SHUTDOWN_GRACE_SECONDS + 25,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": { "matchLabels": selector },
                    }],
                    "containers": [{
                        "name": "runner",
                        "image": options.runner_image,
                        "ports": [{ "name": "http", "containerPort": RUNNER_PORT }],
                        "env": env,
                        "readinessProbe": probe(2, 10),
                        "livenessProbe": probe(10, 20),
                        "resources": {
                            "requests": { "cpu": "500m", "memory": "256Mi" },
                            "limits": { "cpu": "2", "memory": "1Gi" },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "scratch", "mountPath": RUNNER_SPOOL_DIR },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        // Scratch only: the media live in the bucket, the jobs in PostgreSQL.
                        { "name": "scratch", "emptyDir": { "sizeLimit": options.scratch_size } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": names.runner, "labels": labels },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{ "name": "http", "port": RUNNER_PORT, "targetPort": "http" }],
        },
    });
    // The runner's API is internal: only the app's pods may call it.
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": names.runner, "labels": labels },
        "spec": {
            "podSelector": { "matchLabels": selector },
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{ "podSelector": { "matchLabels": { SPINAPP_POD_LABEL: names.app } } }],
                "ports": [{ "protocol": "TCP", "port": RUNNER_PORT }],
            }],
        },
    });
    // Voluntary disruptions (node drains, upgrades) keep one runner serving.
    let budget = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": { "name": names.runner, "labels": labels },
        "spec": {
            "minAvailable": 1,
            "selector": { "matchLabels": selector },
        },
    });
    vec![deployment, budget, service, policy]
}

fn part_of(names: &Names) -> Value {
    json!({ "app.kubernetes.io/part-of": names.app })
}

/// Documents joined as a YAML stream.
fn to_yaml(documents: &[Value]) -> Result<String> {
    let mut out = String::new();
    for (index, document) in documents.iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(document)?);
    }
    Ok(out)
}

/// Parses a rendered YAML stream back into documents.
pub fn parse_yaml_stream(text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|document| Ok(Value::deserialize(document)?))
        .collect()
}

/// The Secret keys the manifests read, sorted: for `kubectl create secret`.
pub fn secret_keys(app: &AppSpec) -> Vec<String> {
    let mut keys: BTreeSet<&str> = app
        .secret_store_variables()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    keys.insert(RUNNER_TOKEN_VARIABLE);
    keys.into_iter().map(str::to_string).collect()
}

/// Rendered files whose copy in `dir` is missing or differs, by name.
pub fn stale_files<'a>(dir: &std::path::Path, rendered: &'a [RenderedFile]) -> Vec<&'a str> {
    rendered
        .iter()
        .filter(|file| {
            std::fs::read_to_string(dir.join(file.name)).ok().as_deref()
                != Some(file.contents.as_str())
        })
        .map(|file| file.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A later version of the app: a new component with its own database and
    /// client secret, a secret variable with a default, a plain tunable.
    const GROWN: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
version = "2.0.0"
[variables]
auth_signing_key = { required = true, secret = true }
auth_public_key = { required = true }
orders_client_secret = { required = true, secret = true }
metrics_token = { default = "", secret = true }
rate_limit = { default = "100" }
runner_url = { default = "http://127.0.0.1:3001" }
runner_token = { required = true, secret = true }
[[trigger.http]]
route = "/health/live"
component = "gateway"
[component.gateway]
source = "gateway.wasm"
key_value_stores = ["default", "limits"]
[component.orders]
source = "orders.wasm"
sqlite_databases = ["orders"]
key_value_stores = ["default"]
[component.products]
source = "products.wasm"
sqlite_databases = ["catalog"]
"#;

    fn rendered(manifest: &str) -> BTreeMap<&'static str, String> {
        let app = AppSpec::parse(manifest).unwrap();
        render(&app, &Options::defaults_for(&app))
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.contents))
            .collect()
    }

    #[test]
    fn redis_service_names_are_valid_dns_labels_even_for_labels_with_underscores() {
        let files = rendered(include_str!("../../../spin.toml"));
        let config: toml::Table = toml::from_str(&files["runtime-config.toml"]).unwrap();
        let kv = config["key_value_store"].as_table().unwrap();
        assert!(
            kv.contains_key("token_cache"),
            "the repository's spin.toml has a label with `_`"
        );
        for (label, backend) in kv {
            let url = backend["url"].as_str().unwrap();
            let host = url
                .trim_start_matches("redis://")
                .split(':')
                .next()
                .unwrap();
            let valid = host.len() <= 63
                && host
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !host.starts_with('-')
                && !host.ends_with('-');
            assert!(
                valid,
                "store {label}: {host} is not a Kubernetes Service name"
            );
        }
    }

    #[test]
    fn every_secret_or_default_less_variable_is_bound_to_the_secret() {
        let files = rendered(GROWN);
        let spin_app = &parse_yaml_stream(&files["spinapp.yaml"]).unwrap()[0];
        let variables = spin_app["spec"]["variables"].as_array().unwrap();
        let by_name: BTreeMap<&str, &Value> = variables
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            [
                "auth_public_key",
                "auth_signing_key",
                "metrics_token",
                "orders_client_secret",
                "runner_token",
                "runner_url"
            ],
            "rate_limit keeps its default and is not listed"
        );
        for name in [
            "auth_public_key",
            "auth_signing_key",
            "orders_client_secret",
            "runner_token",
        ] {
            assert_eq!(
                by_name[name]["valueFrom"]["secretKeyRef"],
                json!({ "name": "shop-secrets", "key": name }),
                "{name} is required: its Secret key must exist"
            );
            assert!(by_name[name].get("value").is_none());
        }
        // A secret with a default may be absent from the Secret; then the default applies.
        assert_eq!(
            by_name["metrics_token"]["valueFrom"]["secretKeyRef"]["optional"],
            json!(true)
        );
        assert_eq!(by_name["runner_url"]["value"], "http://shop-runner:3001");
        assert_eq!(spin_app["spec"]["image"], "registry.example.com/shop:2.0.0");
        assert_eq!(
            spin_app["spec"]["runtimeConfig"]["loadFromSecret"],
            "shop-runtime-config"
        );
    }

    #[test]
    fn every_store_and_database_label_gets_a_shared_backend() {
        let files = rendered(GROWN);
        let config: toml::Table = toml::from_str(&files["runtime-config.toml"]).unwrap();
        let kv = config["key_value_store"].as_table().unwrap();
        assert_eq!(kv.keys().collect::<Vec<_>>(), ["default", "limits"]);
        assert_eq!(kv["limits"]["type"].as_str(), Some("redis"));
        assert_eq!(
            kv["limits"]["url"].as_str(),
            Some("redis://shop-redis-limits:6379")
        );
        let sql = config["sqlite_database"].as_table().unwrap();
        assert_eq!(sql.keys().collect::<Vec<_>>(), ["catalog", "orders"]);
        assert_eq!(sql["catalog"]["type"].as_str(), Some("libsql"));
        assert_eq!(
            sql["catalog"]["url"].as_str(),
            Some("https://shop-catalog-YOUR-ORG.turso.io")
        );
        assert!(
            sql["orders"]["token"]
                .as_str()
                .is_some_and(|t| t.contains("ORDERS"))
        );
        let labels = crate::StoreLabels::parse(&files["runtime-config.toml"]).unwrap();
        assert!(
            labels
                .missing_for(&AppSpec::parse(GROWN).unwrap())
                .is_empty()
        );
    }

    #[test]
    fn secret_keys_cover_the_spin_app_and_the_runner() {
        let app = AppSpec::parse(GROWN).unwrap();
        assert_eq!(
            secret_keys(&app),
            [
                "auth_public_key",
                "auth_signing_key",
                "metrics_token",
                "orders_client_secret",
                "runner_token"
            ]
        );
    }

    #[test]
    fn options_reach_the_manifests() {
        let app = AppSpec::parse(GROWN).unwrap();
        let options = Options {
            image: "ghcr.io/acme/shop:2.0.0".into(),
            runner_image: "ghcr.io/acme/shop-runner:2.0.0".into(),
            replicas: 5,
            redis_url_template: "redis://redis:6379/{label}".into(),
            libsql_url_template: "http://sqld-{label}:8080".into(),
            scratch_size: "100Gi".into(),
        };
        let files: BTreeMap<_, _> = render(&app, &options)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.contents))
            .collect();
        let spin_app = &parse_yaml_stream(&files["spinapp.yaml"]).unwrap()[0];
        assert_eq!(spin_app["spec"]["replicas"], 5);
        assert_eq!(spin_app["spec"]["image"], "ghcr.io/acme/shop:2.0.0");
        assert!(files["runtime-config.toml"].contains("url = \"http://sqld-orders:8080\""));
        let runner = parse_yaml_stream(&files["runner.yaml"]).unwrap();
        let pod = &runner[0]["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "100Gi");
        assert_eq!(
            pod["containers"][0]["image"],
            "ghcr.io/acme/shop-runner:2.0.0"
        );
    }

    #[test]
    fn what_the_manifests_rely_on_must_be_declared() {
        let without = |needle: &str| GROWN.replace(needle, "");
        let error = |manifest: &str| {
            let app = AppSpec::parse(manifest).unwrap();
            render(&app, &Options::defaults_for(&app))
                .unwrap_err()
                .to_string()
        };
        assert!(
            error(&without(
                "runner_token = { required = true, secret = true }"
            ))
            .contains("`runner_token`")
        );
        assert!(
            error(&without(
                "runner_url = { default = \"http://127.0.0.1:3001\" }"
            ))
            .contains("`runner_url`")
        );
        assert!(
            error(&GROWN.replace("route = \"/health/live\"", "route = \"/...\""))
                .contains("/health/live")
        );
        let app = AppSpec::parse(GROWN).unwrap();
        let options = Options {
            replicas: 0,
            ..Options::defaults_for(&app)
        };
        assert!(render(&app, &options).is_err());
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(rendered(GROWN), rendered(GROWN));
    }
}
