//! The SpinKube manifests against the published schemas, offline: built-in kinds against
//! the Kubernetes API's (kubernetes-validate, strict), the SpinApp against spin-operator's
//! CRD schema (`crates/deploy/schemas/README.md` says which and where from). The validator
//! must also refuse what a cluster would refuse, or passing proves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use spinmesh_deploy::AppSpec;
use spinmesh_deploy::spinkube::{self, Autoscale, Options, Scaling};

/// The oldest Kubernetes minor the manifests are meant for, and the newest the pinned
/// kubernetes-validate ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30", "1.37"];
const SPIN_APP: &str = "core.spinkube.dev/v1alpha1/SpinApp";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schemas() -> PathBuf {
    repo().join("crates/deploy/schemas")
}

/// The virtualenv `cargo xtask test` installs from `crates/deploy/schemas/requirements.txt`.
fn python() -> PathBuf {
    let path = repo().join("target/kubernetes-validate/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`, which installs kubernetes-validate",
        path.display()
    );
    path
}

struct Verdict {
    passed: bool,
    lines: Vec<String>,
}

impl Verdict {
    fn lines_for(&self, file: &Path) -> Vec<&str> {
        let prefix = format!(" {} ", file.display());
        self.lines
            .iter()
            .filter(|line| line.contains(&prefix))
            .map(String::as_str)
            .collect()
    }
}

fn validate(files: &[PathBuf]) -> Verdict {
    let mut command = Command::new(python());
    command.arg(schemas().join("validate.py")).arg("check");
    for version in KUBERNETES_VERSIONS {
        command.args(["--kubernetes-version", version]);
    }
    command
        .arg("--schema")
        .arg(format!(
            "{SPIN_APP}={}",
            schemas().join("spinapp-v1alpha1.json").display()
        ))
        .args(files);
    let output = command.output().expect("the validator runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "the validator itself failed ({}): {stderr}",
        output.status
    );
    Verdict {
        passed: output.status.success(),
        lines: String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    }
}

fn app() -> AppSpec {
    AppSpec::load(&repo().join("spin.toml")).unwrap()
}

fn autoscaled(app: &AppSpec) -> Options {
    Options {
        scaling: Scaling::Autoscale(Autoscale {
            min_replicas: 2,
            max_replicas: 10,
            cpu_utilization: Autoscale::DEFAULT_CPU_UTILIZATION,
        }),
        ..Options::defaults_for(app)
    }
}

/// The rendered YAML files written to `dir`, by name.
fn render_into(dir: &Path, options: &Options) -> BTreeMap<&'static str, PathBuf> {
    spinkube::render(&app(), options)
        .unwrap()
        .into_iter()
        .filter(|file| file.name.ends_with(".yaml"))
        .map(|file| {
            let path = dir.join(file.name);
            std::fs::write(&path, &file.contents).unwrap();
            (file.name, path)
        })
        .collect()
}

/// Every object of `files` passed: one `ok` line each, and no other line.
fn assert_all_pass(files: &[PathBuf]) -> Vec<String> {
    let verdict = validate(files);
    let lines = verdict.lines.join("\n");
    assert!(
        verdict.passed,
        "the manifests do not match the schemas:\n{lines}"
    );
    let mut objects = Vec::new();
    for file in files {
        let documents =
            spinkube::parse_yaml_stream(&std::fs::read_to_string(file).unwrap()).unwrap();
        let reported = verdict.lines_for(file);
        assert_eq!(
            reported.len(),
            documents.len(),
            "one line per object of {}:\n{lines}",
            file.display()
        );
        for (document, line) in documents.iter().zip(reported) {
            let object = format!(
                "{}/{}",
                document["kind"].as_str().unwrap(),
                document["metadata"]["name"].as_str().unwrap()
            );
            assert_eq!(line, format!("ok {} {object}", file.display()));
            objects.push(object);
        }
    }
    objects
}

#[test]
fn committed_manifests_match_the_kubernetes_and_spinapp_schemas() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/spinkube"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let objects = assert_all_pass(&files);
    for object in [
        "SpinApp/spinmesh",
        "Deployment/spinmesh-runner",
        "Service/spinmesh-runner",
    ] {
        assert!(
            objects.iter().any(|o| o == object),
            "{object} in {objects:?}"
        );
    }
}

#[test]
fn an_autoscaled_render_matches_the_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let files = render_into(dir.path(), &autoscaled(&app()));
    let objects = assert_all_pass(&files.into_values().collect::<Vec<_>>());
    for object in ["SpinApp/spinmesh", "HorizontalPodAutoscaler/spinmesh"] {
        assert!(
            objects.iter().any(|o| o == object),
            "{object} in {objects:?}"
        );
    }
}

/// Moves the value at `pointer` (a JSON pointer to a field) to the sibling `to`.
fn rename(document: &mut Value, pointer: &str, to: &str) {
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let object = document
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"));
    let value = object
        .remove(field)
        .unwrap_or_else(|| panic!("{pointer} is not set"));
    object.insert(to.into(), value);
}

fn set(document: &mut Value, pointer: &str, value: Value) {
    *document
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not set")) = value;
}

#[test]
fn misspelled_fields_wrong_types_and_unknown_kinds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let autoscaled_files = render_into(dir.path(), &autoscaled(&app()));
    let read = |name: &str| {
        spinkube::parse_yaml_stream(&std::fs::read_to_string(&autoscaled_files[name]).unwrap())
            .unwrap()
    };
    let spinapp_yaml = read("spinapp.yaml");
    let runner_yaml = read("runner.yaml");
    let kind = |documents: &[Value], kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let spin_app = kind(&spinapp_yaml, "SpinApp");
    let hpa = kind(&spinapp_yaml, "HorizontalPodAutoscaler");
    let runner = kind(&runner_yaml, "Deployment");
    let fixed_spin_app = spinkube::parse_yaml_stream(
        &spinkube::render(&app(), &Options::defaults_for(&app())).unwrap()[0].contents,
    )
    .unwrap()
    .remove(0);

    type Mistake = fn(&mut Value);
    let mistakes: [(&str, Value, Mistake, &str); 7] = [
        (
            "spinapp-misspelled-field",
            spin_app.clone(),
            |d| rename(d, "/spec/enableAutoscaling", "enableAutoScaling"),
            "spec: Additional properties are not allowed ('enableAutoScaling' was unexpected)",
        ),
        (
            "spinapp-wrong-type",
            spin_app.clone(),
            |d| set(d, "/spec/checks/readiness/periodSeconds", json!("10")),
            "spec.checks.readiness.periodSeconds: '10' is not of type 'integer'",
        ),
        (
            "spinapp-int32-overflow",
            fixed_spin_app,
            |d| set(d, "/spec/replicas", json!(3_000_000_000_u64)),
            "spec.replicas: 3000000000 is not a 'int32'",
        ),
        (
            "spinapp-misspelled-metadata",
            spin_app.clone(),
            |d| rename(d, "/metadata/labels", "lables"),
            "metadata: Additional properties are not allowed ('lables' was unexpected)",
        ),
        (
            "hpa-misspelled-field",
            hpa.clone(),
            // An optional field: a required one misspelled is reported as missing.
            |d| rename(d, "/spec/minReplicas", "minReplica"),
            "spec: Additional properties are not allowed ('minReplica' was unexpected)",
        ),
        (
            "hpa-unknown-api-version",
            hpa,
            |d| set(d, "/apiVersion", json!("autoscaling/v3")),
            "Couldn't find schema for kind HorizontalPodAutoscaler with api version autoscaling/v3",
        ),
        (
            "runner-misspelled-probe",
            runner,
            |d| {
                rename(
                    d,
                    "/spec/template/spec/containers/0/readinessProbe",
                    "readynessProbe",
                )
            },
            "'readynessProbe' was unexpected",
        ),
    ];
    // The unaltered SpinApp in the same run: the failures are the mistakes', not the file's.
    let control = dir.path().join("control.yaml");
    std::fs::write(&control, serde_json::to_string_pretty(&spin_app).unwrap()).unwrap();
    let mut files = vec![control.clone()];
    for (name, document, mistake, _) in &mistakes {
        let mut document = document.clone();
        mistake(&mut document);
        // JSON is YAML.
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, serde_json::to_string_pretty(&document).unwrap()).unwrap();
        files.push(path);
    }

    let verdict = validate(&files);
    let lines = verdict.lines.join("\n");
    assert!(!verdict.passed, "every mistake passed:\n{lines}");
    assert_eq!(
        verdict.lines_for(&control),
        [format!("ok {} SpinApp/spinmesh", control.display())],
        "{lines}"
    );
    for ((name, _, _, expected), file) in mistakes.iter().zip(&files[1..]) {
        let reported = verdict.lines_for(file);
        assert!(
            reported
                .iter()
                .any(|line| line.starts_with("FAIL ") && line.contains(expected)),
            "{name}: expected a failure saying {expected:?}, got {reported:?}"
        );
        assert!(
            !reported.iter().any(|line| line.starts_with("ok ")),
            "{name}: {reported:?}"
        );
    }
}
