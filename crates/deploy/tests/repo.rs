//! The repository's own deployment files checked against its `spin.toml`: the
//! committed SpinKube manifests are what the renderer makes now, bind every
//! variable, store and database the app needs, and carry the fields SpinKube and
//! Kubernetes require; the docs name every variable; `spin build` builds every
//! component.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use spinmesh_deploy::spinkube::{self, Names, Options, RUNNER_PORT, RUNTIME_CONFIG_KEY};
use spinmesh_deploy::{AppSpec, StoreLabels, undocumented_variables};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn app() -> AppSpec {
    AppSpec::load(&repo().join("spin.toml")).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Value> {
    spinkube::parse_yaml_stream(&read(path))
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn by_kind(documents: &[Value]) -> BTreeMap<&str, &Value> {
    documents
        .iter()
        .map(|d| (d["kind"].as_str().expect("every document has a kind"), d))
        .collect()
}

#[test]
fn committed_spinkube_manifests_are_current() {
    let app = app();
    let files = spinkube::render(&app, &Options::defaults_for(&app)).unwrap();
    let stale = spinkube::stale_files(&repo().join("deploy/spinkube"), &files);
    assert!(
        stale.is_empty(),
        "deploy/spinkube/{stale:?} differ from what spin.toml renders: run `cargo xtask deploy render --target spinkube`"
    );
}

#[test]
fn spin_app_binds_every_variable_the_app_needs_from_the_secret() {
    let app = app();
    let names = Names::for_app(&app);
    let documents = yaml("deploy/spinkube/spinapp.yaml");
    assert_eq!(documents.len(), 1);
    let spin_app = &documents[0];
    assert_eq!(spin_app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(spin_app["kind"], "SpinApp");
    assert_eq!(spin_app["metadata"]["name"], app.name.as_str());
    let spec = &spin_app["spec"];
    assert!(
        spec["image"]
            .as_str()
            .is_some_and(|image| !image.is_empty()),
        "spec.image is required"
    );
    assert_eq!(spec["executor"], "containerd-shim-spin");
    assert!(spec["replicas"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(
        spec["runtimeConfig"]["loadFromSecret"],
        names.runtime_config.as_str()
    );
    for probe in ["readiness", "liveness"] {
        let path = spec["checks"][probe]["httpGet"]["path"].as_str().unwrap();
        assert!(
            path == "/.well-known/spin/health" || app.routes.iter().any(|r| r == path),
            "{probe} probe path {path}"
        );
    }

    let bound: BTreeMap<&str, &Value> = spec["variables"]
        .as_array()
        .expect("spec.variables")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    for name in bound.keys() {
        assert!(
            app.variables.contains_key(*name),
            "the SpinApp sets `{name}`, which spin.toml does not declare"
        );
    }
    for (name, variable) in &app.variables {
        if variable.default.is_none() {
            let binding = bound
                .get(name.as_str())
                .unwrap_or_else(|| panic!("required variable `{name}` is not bound"));
            let key_ref = &binding["valueFrom"]["secretKeyRef"];
            assert_eq!(key_ref["name"], names.secrets.as_str(), "`{name}`");
            assert_eq!(key_ref["key"], name.as_str(), "`{name}`");
            assert!(
                key_ref.get("optional").is_none(),
                "required `{name}` must not be optional"
            );
        }
        if variable.secret {
            let binding = bound
                .get(name.as_str())
                .unwrap_or_else(|| panic!("secret variable `{name}` is not bound"));
            assert!(
                binding.get("value").is_none(),
                "secret `{name}` must come from the Secret, not a literal"
            );
            assert!(binding["valueFrom"]["secretKeyRef"].is_object(), "`{name}`");
        }
    }
}

#[test]
fn cluster_runtime_config_puts_every_label_on_a_shared_backend() {
    let app = app();
    let text = read("deploy/spinkube/runtime-config.toml");
    let labels = StoreLabels::parse(&text).unwrap();
    assert_eq!(
        labels.missing_for(&app),
        Vec::<String>::new(),
        "labels used by components but not configured"
    );
    let config: toml::Table = toml::from_str(&text).unwrap();
    for (label, kind) in &labels.key_value_stores {
        assert_eq!(kind, "redis", "key-value label {label}");
        assert!(
            config["key_value_store"][label]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("redis://"))
        );
    }
    for (label, kind) in &labels.sqlite_databases {
        assert_eq!(kind, "libsql", "SQLite label {label}");
        let entry = &config["sqlite_database"][label];
        // Spin talks to libSQL over HTTP(S) only, and requires a token entry.
        assert!(
            entry["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
        );
        assert!(entry["token"].is_str());
    }
    assert_eq!(
        RUNTIME_CONFIG_KEY, "runtime-config.toml",
        "the key spin-operator mounts"
    );
}

#[test]
fn runner_workloads_have_what_kubernetes_requires_and_fit_together() {
    let app = app();
    let names = Names::for_app(&app);
    let documents = yaml("deploy/spinkube/runner.yaml");
    let objects = by_kind(&documents);
    assert_eq!(
        objects.keys().copied().collect::<Vec<_>>(),
        [
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service"
        ]
    );

    let deployment = objects["Deployment"];
    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2));
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["metadata"]["name"], names.runner.as_str());
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let pod = &deployment["spec"]["template"];
    for (key, value) in selector.as_object().expect("spec.selector.matchLabels") {
        assert_eq!(
            &pod["metadata"]["labels"][key], value,
            "the selector must match the pod template"
        );
    }
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert!(container["name"].is_string() && container["image"].is_string());
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["ports"][0]["containerPort"], RUNNER_PORT);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    assert_eq!(
        env["RUNNER_LISTEN"]["value"],
        format!("0.0.0.0:{RUNNER_PORT}").as_str()
    );
    let token = &env["RUNNER_TOKEN"]["valueFrom"]["secretKeyRef"];
    assert_eq!(token["name"], names.secrets.as_str());
    assert!(
        app.variables.contains_key(token["key"].as_str().unwrap()),
        "the runner's token is the app's variable"
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    // Several replicas share the job store and the bucket, not a volume.
    for (variable, key) in [
        ("RUNNER_DATABASE_URL", "database_url"),
        ("RUNNER_OBJECT_STORE", "object_store"),
        ("AWS_ACCESS_KEY_ID", "s3_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "s3_secret_access_key"),
    ] {
        let reference = &env[variable]["valueFrom"]["secretKeyRef"];
        assert_eq!(
            reference["name"],
            names.runner_storage.as_str(),
            "{variable}"
        );
        assert_eq!(reference["key"], key, "{variable}");
    }
    let grace: u64 = env["RUNNER_SHUTDOWN_GRACE"]["value"]
        .as_str()
        .and_then(|g| g.strip_suffix('s'))
        .and_then(|g| g.parse().ok())
        .expect("RUNNER_SHUTDOWN_GRACE in seconds");
    assert!(
        pod["spec"]["terminationGracePeriodSeconds"].as_u64() > Some(grace),
        "Kubernetes must wait for the runner's own shutdown grace"
    );
    let spool_dir = env["RUNNER_SPOOL_DIR"]["value"].as_str().unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == spool_dir)
        .unwrap();
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(
        volume["emptyDir"].is_object(),
        "scratch only, no ReadWriteOnce volume: {volume}"
    );

    let budget = objects["PodDisruptionBudget"];
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], selector);
    assert!(budget["spec"]["minAvailable"].as_u64() >= Some(1));

    let service = objects["Service"];
    assert_eq!(service["metadata"]["name"], names.runner.as_str());
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(service["spec"]["ports"][0]["port"], RUNNER_PORT);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    // `upload` reaches the runner at the Service's name.
    let spin_app = &yaml("deploy/spinkube/spinapp.yaml")[0];
    let runner_url = spin_app["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "runner_url")
        .unwrap();
    assert_eq!(
        runner_url["value"],
        format!("http://{}:{}", names.runner, RUNNER_PORT).as_str()
    );

    let policy = objects["NetworkPolicy"];
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["core.spinkube.dev/app-name"],
        app.name.as_str()
    );
}

/// Spin refuses to start when a component lists a label the runtime config does not
/// define (`default` excepted), so the local config must cover every other label.
#[test]
fn local_runtime_config_defines_every_label_but_default() {
    let app = app();
    let labels = StoreLabels::parse(&read("runtime-config.toml")).unwrap();
    let missing: Vec<String> = labels
        .missing_for(&app)
        .into_iter()
        .filter(|m| !m.ends_with("\"default\""))
        .collect();
    assert!(
        missing.is_empty(),
        "runtime-config.toml does not define {missing:?}"
    );
}

/// `spin build` runs each component's build command; each must produce the
/// `.wasm` the component's `source` names.
#[test]
fn spin_build_builds_every_component() {
    for (id, component) in &app().components {
        let command = component
            .build_command
            .as_deref()
            .unwrap_or_else(|| panic!("[component.{id}.build] command is missing"));
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(&words[..2], ["cargo", "build"], "{id}: {command}");
        assert!(
            command.contains("--target wasm32-wasip2") && words.contains(&"--release"),
            "{id}: {command}"
        );
        let package = words
            .iter()
            .position(|w| *w == "-p")
            .map(|i| words[i + 1])
            .unwrap_or_else(|| panic!("{id}: no -p"));
        let source = component.source.as_deref().unwrap();
        assert_eq!(
            source,
            format!(
                "target/wasm32-wasip2/release/{}.wasm",
                package.replace('-', "_")
            ),
            "{id}: the build command must produce the source"
        );
    }
}

#[test]
fn operations_doc_names_every_variable() {
    let missing = undocumented_variables(&app(), &read("docs/operations.md"));
    assert!(
        missing.is_empty(),
        "docs/operations.md does not document {missing:?} (name each as `name` in the configuration reference)"
    );
}

#[test]
fn fermyon_cloud_doc_names_every_value_the_platform_must_supply() {
    let text = read("deploy/fermyon-cloud.md");
    let app = app();
    let missing: Vec<&str> = app
        .secret_store_variables()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/fermyon-cloud.md does not say how to set {missing:?}"
    );
    for label in app
        .sqlite_labels()
        .into_iter()
        .chain(app.key_value_labels())
    {
        assert!(
            text.contains(&format!("`{label}`")),
            "deploy/fermyon-cloud.md does not mention the label `{label}`"
        );
    }
}

/// Every runner flag, with its environment variable and default, is in the
/// configuration reference (read from the runner's own clap definition).
#[test]
fn operations_doc_names_every_runner_flag_with_its_env_and_default() {
    use clap::CommandFactory;
    let docs = read("docs/operations.md");
    let section = docs
        .split("### Runner flags")
        .nth(1)
        .expect("a `### Runner flags` section");
    let section = section.split("\n### ").next().unwrap();
    let command = spinmesh_runner::Config::command();
    let mut checked = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let row = section
            .lines()
            .find(|line| line.starts_with(&format!("| `--{long}` |")))
            .unwrap_or_else(|| panic!("docs/operations.md has no row for runner flag `--{long}`"));
        if let Some(env) = arg.get_env() {
            assert!(
                row.contains(&format!("`{}`", env.to_string_lossy())),
                "`--{long}` row lacks its env var: {row}"
            );
        }
        for default in arg.get_default_values() {
            assert!(
                row.contains(&format!("`{}`", default.to_string_lossy())),
                "`--{long}` row lacks its default: {row}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "the runner's flags were not found");
}
