//! SpinKube manifests rendered from the app's own declarations, so the cluster
//! always provides exactly the variables, stores and databases `spin.toml` asks for.
//!
//! * `spinapp.yaml` — the `SpinApp` (spin-operator `core.spinkube.dev/v1alpha1`):
//!   every secret or default-less variable bound to a key of one Kubernetes Secret,
//!   the runtime config loaded from another; with [`Scaling::Autoscale`], also the
//!   HorizontalPodAutoscaler that then owns the replica count.
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
/// Keys of the app's Secret the runner reads its webhook secrets from, both optional:
/// without the first, webhooks are off; the second is set only during a rotation.
const RUNNER_WEBHOOK_SECRET_KEYS: [(&str, &str); 2] = [
    ("runner_webhook_secret", "RUNNER_WEBHOOK_SECRET"),
    (
        "runner_webhook_previous_secret",
        "RUNNER_WEBHOOK_PREVIOUS_SECRET",
    ),
];
/// The variable telling `upload` where the runner is.
const RUNNER_URL_VARIABLE: &str = "runner_url";
/// The route the readiness probe calls: served by a component, so a ready pod runs the app,
/// and answered by the pod alone (the aggregate `/health` would make every pod unready when
/// the runner is down).
const READINESS_ROUTE: &str = "/health/live";
/// Spin's own liveness endpoint (answered by the runtime, whatever the app routes).
const SPIN_HEALTH: &str = "/.well-known/spin/health";
/// CPU a SpinApp pod requests (what the scheduler reserves, and what an HPA's utilization
/// is a percentage of) and may use: small to pack pods, with room for argon2id bursts.
const CPU_REQUEST_MILLICORES: u32 = 100;
const CPU_LIMIT_MILLICORES: u32 = 1000;

/// How many pods run the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// `spec.replicas`, kept by spin-operator.
    Fixed(u32),
    /// `spec.enableAutoscaling`: spin-operator leaves the replica count of the Deployment it
    /// creates to a HorizontalPodAutoscaler, rendered beside the SpinApp.
    Autoscale(Autoscale),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscale {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Average CPU use per pod the HPA keeps to, in percent of the pod's CPU request.
    pub cpu_utilization: u32,
}

impl Autoscale {
    /// 300 % of the 100m request is 300m per pod on average: a third of the 1-CPU limit, so
    /// pods get help well before logins queue on a throttled CPU, while the new pods start.
    pub const DEFAULT_CPU_UTILIZATION: u32 = 300;
    /// Past the limit's share of the request a pod's average never gets, and the HPA would
    /// never scale out.
    pub const MAX_CPU_UTILIZATION: u32 = CPU_LIMIT_MILLICORES * 100 / CPU_REQUEST_MILLICORES;
}

/// `MIN..MAX` (e.g. `2..10`), the replica range of `--autoscale`.
pub fn parse_replica_range(text: &str) -> Result<(u32, u32)> {
    let Some((min, max)) = text.split_once("..") else {
        bail!("`{text}` is not MIN..MAX (e.g. 2..10)");
    };
    let parse = |bound: &str| {
        bound
            .trim()
            .parse::<u32>()
            .map_err(|_| anyhow::anyhow!("`{bound}` in `{text}` is not a replica count"))
    };
    Ok((parse(min)?, parse(max)?))
}

/// What varies between clusters; everything else comes from `spin.toml`.
#[derive(Debug, Clone)]
pub struct Options {
    /// OCI reference of the app pushed with `spin registry push`.
    pub image: String,
    /// Container image of the runner (`runner/Dockerfile`).
    pub runner_image: String,
    pub scaling: Scaling,
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
            // Fixed by default: an HPA needs a metrics pipeline (metrics-server) that not
            // every cluster runs, and a fixed count keeps the connections to Redis and
            // libSQL predictable. `--autoscale` turns it on.
            scaling: Scaling::Fixed(2),
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
    check_scaling(options.scaling)?;
    let names = Names::for_app(app);
    let header = |what: &str| {
        format!(
            "# {what}\n# Generated from spin.toml by `cargo xtask deploy render --target spinkube`; do not edit by hand.\n"
        )
    };
    Ok(vec![
        RenderedFile {
            name: "spinapp.yaml",
            contents: header(match options.scaling {
                Scaling::Fixed(_) => "The spinmesh SpinApp (spin-operator).",
                Scaling::Autoscale(_) => {
                    "The spinmesh SpinApp (spin-operator) and the HorizontalPodAutoscaler that sizes it."
                }
            }) + &to_yaml(&spin_app_objects(app, options, &names))?,
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

fn check_scaling(scaling: Scaling) -> Result<()> {
    // Both counts are int32 in the SpinApp and HPA schemas.
    let int32 = |count: u32| i32::try_from(count).is_ok();
    match scaling {
        Scaling::Fixed(replicas) if replicas == 0 || !int32(replicas) => {
            bail!("replicas must be between 1 and {}", i32::MAX)
        }
        Scaling::Autoscale(Autoscale {
            min_replicas,
            max_replicas,
            ..
        }) if min_replicas == 0 || min_replicas > max_replicas || !int32(max_replicas) => {
            bail!(
                "autoscaling needs 1 <= MIN <= MAX <= {}, not {min_replicas}..{max_replicas}",
                i32::MAX
            )
        }
        Scaling::Autoscale(Autoscale {
            cpu_utilization, ..
        }) if cpu_utilization == 0 || cpu_utilization > Autoscale::MAX_CPU_UTILIZATION => {
            bail!(
                "the CPU target must be between 1 and {} % of the pod's CPU request ({CPU_REQUEST_MILLICORES}m; its limit is {CPU_LIMIT_MILLICORES}m), not {cpu_utilization}",
                Autoscale::MAX_CPU_UTILIZATION
            )
        }
        _ => Ok(()),
    }
}

/// The SpinApp, and with autoscaling its HorizontalPodAutoscaler: one file, so the two
/// are applied together (an HPA beside a SpinApp that sets replicas would fight the
/// operator; `enableAutoscaling` without an HPA leaves the Deployment at one pod).
fn spin_app_objects(app: &AppSpec, options: &Options, names: &Names) -> Vec<Value> {
    let mut objects = vec![spin_app(app, options, names)];
    if let Scaling::Autoscale(autoscale) = options.scaling {
        objects.push(autoscaler(&autoscale, names));
    }
    objects
}

/// spin-operator names the Deployment it creates after the SpinApp (in its namespace);
/// the HPA scales that.
fn autoscaler(autoscale: &Autoscale, names: &Names) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": names.app, "labels": part_of(names) },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": names.app },
            "minReplicas": autoscale.min_replicas,
            "maxReplicas": autoscale.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": { "type": "Utilization", "averageUtilization": autoscale.cpu_utilization },
                },
            }],
        },
    })
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
    let mut spin_app = json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": { "name": names.app, "labels": part_of(names) },
        "spec": {
            "image": options.image,
            "executor": "containerd-shim-spin",
            "enableAutoscaling": matches!(options.scaling, Scaling::Autoscale(_)),
            "variables": variables,
            "runtimeConfig": { "loadFromSecret": names.runtime_config },
            // argon2id hashes take 19 MiB each; a login burst needs headroom.
            "resources": {
                "requests": { "cpu": format!("{CPU_REQUEST_MILLICORES}m"), "memory": "128Mi" },
                "limits": { "cpu": format!("{CPU_LIMIT_MILLICORES}m"), "memory": "512Mi" },
            },
            "checks": {
                "readiness": probe(READINESS_ROUTE, 2),
                "liveness": probe(SPIN_HEALTH, 10),
            },
        },
    });
    // spin-operator's admission webhook refuses `replicas` beside `enableAutoscaling`.
    if let Scaling::Fixed(replicas) = options.scaling {
        spin_app["spec"]["replicas"] = json!(replicas);
    }
    spin_app
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
    env.extend(RUNNER_WEBHOOK_SECRET_KEYS.iter().map(|(key, variable)| {
        json!({ "name": variable, "valueFrom": { "secretKeyRef": { "name": names.secrets, "key": key, "optional": true } } })
    }));
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
    fn the_runner_reads_its_webhook_secrets_from_the_apps_secret_if_there() {
        let files = rendered(GROWN);
        let documents = parse_yaml_stream(&files["runner.yaml"]).unwrap();
        let deployment = documents
            .iter()
            .find(|document| document["kind"] == "Deployment")
            .unwrap();
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        for (variable, key) in [
            ("RUNNER_WEBHOOK_SECRET", "runner_webhook_secret"),
            (
                "RUNNER_WEBHOOK_PREVIOUS_SECRET",
                "runner_webhook_previous_secret",
            ),
        ] {
            let entry = env.iter().find(|entry| entry["name"] == variable).unwrap();
            assert_eq!(
                entry["valueFrom"]["secretKeyRef"],
                json!({ "name": "shop-secrets", "key": key, "optional": true }),
                "{variable}"
            );
        }
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
            scaling: Scaling::Fixed(5),
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
            scaling: Scaling::Fixed(0),
            ..Options::defaults_for(&app)
        };
        assert!(render(&app, &options).is_err());
    }

    fn autoscaled(min_replicas: u32, max_replicas: u32, cpu_utilization: u32) -> Options {
        let app = AppSpec::parse(GROWN).unwrap();
        Options {
            scaling: Scaling::Autoscale(Autoscale {
                min_replicas,
                max_replicas,
                cpu_utilization,
            }),
            ..Options::defaults_for(&app)
        }
    }

    #[test]
    fn autoscaling_hands_the_replica_count_to_an_hpa_on_the_operators_deployment() {
        let app = AppSpec::parse(GROWN).unwrap();
        let files = render(&app, &autoscaled(2, 12, 250)).unwrap();
        let documents = parse_yaml_stream(&files[0].contents).unwrap();
        let [spin_app, hpa] = &documents[..] else {
            panic!("spinapp.yaml holds the SpinApp and its HPA: {documents:?}")
        };
        assert_eq!(spin_app["spec"]["enableAutoscaling"], true);
        assert!(
            spin_app["spec"].get("replicas").is_none(),
            "the operator refuses replicas beside enableAutoscaling"
        );
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["kind"], "HorizontalPodAutoscaler");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "shop" }),
            "spin-operator's Deployment carries the SpinApp's name"
        );
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["maxReplicas"], 12);
        let target = &hpa["spec"]["metrics"][0]["resource"];
        assert_eq!(target["name"], "cpu");
        assert_eq!(
            target["target"],
            json!({ "type": "Utilization", "averageUtilization": 250 })
        );
        // Utilization is relative to the request, so the SpinApp must set one.
        assert_eq!(spin_app["spec"]["resources"]["requests"]["cpu"], "100m");
    }

    #[test]
    fn fixed_replicas_render_no_hpa_and_keep_the_operator_in_charge() {
        let files = rendered(GROWN);
        let documents = parse_yaml_stream(&files["spinapp.yaml"]).unwrap();
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0]["spec"]["enableAutoscaling"], false);
        assert_eq!(documents[0]["spec"]["replicas"], 2);
    }

    #[test]
    fn autoscaling_bounds_are_checked() {
        let app = AppSpec::parse(GROWN).unwrap();
        let error = |options: Options| render(&app, &options).unwrap_err().to_string();
        assert!(error(autoscaled(0, 3, 300)).contains("1 <= MIN <= MAX"));
        assert!(error(autoscaled(5, 2, 300)).contains("not 5..2"));
        assert!(error(autoscaled(1, u32::MAX, 300)).contains("MAX <="));
        assert!(error(autoscaled(1, 3, 0)).contains("CPU target"));
        // The 1-CPU limit is 1000 % of the 100m request: a higher target is never reached.
        assert!(render(&app, &autoscaled(1, 3, 1000)).is_ok());
        assert!(error(autoscaled(1, 3, 1001)).contains("between 1 and 1000"));
        assert!(render(&app, &autoscaled(1, 1, 70)).is_ok());
    }

    #[test]
    fn replica_ranges_parse_as_min_dot_dot_max() {
        assert_eq!(parse_replica_range("2..10").unwrap(), (2, 10));
        assert_eq!(parse_replica_range(" 1 .. 3 ").unwrap(), (1, 3));
        for bad in ["3", "2-10", "..4", "a..b", "2..=10", "-1..3", "2..10..20"] {
            assert!(parse_replica_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(rendered(GROWN), rendered(GROWN));
    }
}
