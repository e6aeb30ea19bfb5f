//! The host's admin listener: `/metrics` in the Prometheus text format counts
//! what the public listener and service chaining served, and neither listener
//! serves the other's paths.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use spinmesh_e2e::{App, AppBuilder, Engine, client, wasm_artifact};

/// The fixture behind a wildcard route, an exact route and a private route;
/// `extra` adds manifest text.
fn manifest(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = wasm_artifact("conformance_fixture.wasm");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "metrics"

[[trigger.http]]
route = "/items/..."
component = "items"
[[trigger.http]]
route = "/items/special"
component = "special"
[[trigger.http]]
route = {{ private = true }}
component = "hidden"
{extra}
[component.items]
source = "{fixture}"
allowed_outbound_hosts = ["http://hidden.spin.internal"]
[component.special]
source = "{fixture}"
[component.hidden]
source = "{fixture}"
"#,
        fixture = fixture.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn app(extra: &str) -> (tempfile::TempDir, AppBuilder) {
    let (dir, path) = manifest(extra);
    // The host's own admin listener, whatever engine the suite runs on.
    (dir, App::with_manifest(path).engine(Engine::Host))
}

fn status(method: &str, url: &str) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    client()
        .request(method, url)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly: every line is a `# HELP`,
/// a `# TYPE` or a sample of a declared family, with well-formed labels.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name, kind).is_none(), "declared twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(labels.strip_suffix('}').expect("closing brace")),
            ),
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(base) == Some(&"histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample of an undeclared family: {line:?}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels {text:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated label value in {text:?}"))
            {
                (_, '\\') => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?} in {text:?}"),
                },
                (index, '"') => break index,
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_string(), value).is_none(),
            "label {key} twice in {text:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// The sum of the samples named `name` whose labels include all of `selector`.
fn sum(samples: &[Sample], name: &str, selector: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && selector
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn scrape(app: &App) -> Vec<Sample> {
    let response = client()
        .get(
            app.admin_url("/metrics")
                .expect("the harness sets an admin listener"),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&response.text().unwrap())
}

/// Instances end just after their response is sent; wait for the gauge to settle.
fn scrape_when_idle(app: &App) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let samples = scrape(app);
        if sum(&samples, "spinmesh_host_instances", &[]) == 0.0 || Instant::now() > deadline {
            return samples;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const REQUESTS: &str = "spinmesh_host_requests_total";
const DURATION_COUNT: &str = "spinmesh_host_request_duration_seconds_count";

#[test]
fn metrics_count_requests_by_component_route_and_status() {
    let (_dir, builder) = app("");
    let app = builder.start();
    let url = |path: &str| app.url(path);
    assert_eq!(status("GET", &url("/items/a")), 200);
    assert_eq!(status("GET", &url("/items/b?x=1")), 200);
    assert_eq!(status("POST", &url("/items/c")), 200);
    // Methods outside the standard set share one label value.
    assert_eq!(status("BREW", &url("/items/d")), 200);
    assert_eq!(status("GET", &url("/items/special")), 200);
    assert_eq!(status("GET", &url("/items/trap")), 500);
    let chained: Value = client()
        .get(url("/items/outbound?url=http://hidden.spin.internal/inner"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(chained["status"], 200, "{chained}");
    // Turned away by the host: no route, and an in-app Host from outside.
    assert_eq!(status("GET", &url("/nowhere")), 404);
    assert_eq!(
        status("GET", &url("/metrics")),
        404,
        "the app listener has no /metrics of its own"
    );
    let spoofed = client()
        .get(url("/items/a"))
        .header("host", "hidden.spin.internal")
        .send()
        .unwrap();
    assert_eq!(spoofed.status(), 400);

    let samples = scrape_when_idle(&app);
    let items = [
        ("component", "items"),
        ("route", "/items/..."),
        ("source", "public"),
    ];
    let requests = |extra: &[(&str, &str)]| sum(&samples, REQUESTS, &[&items[..], extra].concat());
    assert_eq!(requests(&[("method", "GET"), ("status", "200")]), 3.0);
    assert_eq!(requests(&[("method", "POST"), ("status", "200")]), 1.0);
    assert_eq!(requests(&[("method", "OTHER"), ("status", "200")]), 1.0);
    assert_eq!(requests(&[("method", "GET"), ("status", "500")]), 1.0);
    let special = [
        ("component", "special"),
        ("route", "/items/special"),
        ("source", "public"),
    ];
    assert_eq!(
        sum(
            &samples,
            REQUESTS,
            &[&special[..], &[("method", "GET"), ("status", "200")]].concat()
        ),
        1.0
    );
    // The chained call, told apart by its source; its route is Spin's catch-all.
    let hidden = [
        ("component", "hidden"),
        ("route", "/..."),
        ("source", "internal"),
    ];
    assert_eq!(
        sum(
            &samples,
            REQUESTS,
            &[&hidden[..], &[("method", "GET"), ("status", "200")]].concat()
        ),
        1.0
    );
    // Nothing else was answered by a component: the rejected requests are counted apart.
    assert_eq!(sum(&samples, REQUESTS, &[]), 8.0);
    assert!(
        samples
            .iter()
            .filter(|s| s.name == REQUESTS)
            .all(|s| s.labels["status"] != "404")
    );
    let rejected = |reason| {
        sum(
            &samples,
            "spinmesh_host_requests_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("no_route"), 2.0);
    assert_eq!(rejected("internal_host"), 1.0);
    assert_eq!(rejected("chain_too_deep"), 0.0);

    // Latency: one observation per request, in cumulative buckets ending at +Inf.
    assert_eq!(sum(&samples, DURATION_COUNT, &items), 6.0);
    assert_eq!(sum(&samples, DURATION_COUNT, &special), 1.0);
    assert_eq!(sum(&samples, DURATION_COUNT, &hidden), 1.0);
    assert!(
        sum(
            &samples,
            "spinmesh_host_request_duration_seconds_sum",
            &items
        ) > 0.0
    );
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| {
            s.name == "spinmesh_host_request_duration_seconds_bucket"
                && items.iter().all(|(k, v)| s.labels[*k] == *v)
        })
        .map(|s| (s.labels["le"].parse().unwrap(), s.value))
        .collect();
    assert_eq!(buckets.first().unwrap().0, 0.0005);
    assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 6.0));
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );

    // One instance per request, none left running.
    let instantiations = |component| {
        sum(
            &samples,
            "spinmesh_host_instantiations_total",
            &[("component", component)],
        )
    };
    assert_eq!(
        (
            instantiations("items"),
            instantiations("special"),
            instantiations("hidden")
        ),
        (6.0, 1.0, 1.0)
    );
    assert_eq!(sum(&samples, "spinmesh_host_instances", &[]), 0.0);
    let failures = |reason| {
        sum(
            &samples,
            "spinmesh_host_component_failures_total",
            &[("component", "items"), ("reason", reason)],
        )
    };
    assert_eq!((failures("error"), failures("timeout")), (1.0, 0.0));
    assert_eq!(sum(&samples, "spinmesh_host_requests_waiting", &[]), 0.0);
}

#[test]
fn timeouts_are_counted_per_component() {
    let (_dir, builder) = app("");
    let app = builder.arg("--request-timeout").arg("1").start();
    // Too slow is not broken: the client gets 503 (with Retry-After).
    assert_eq!(status("GET", &app.url("/items/spin")), 503);
    let samples = scrape_when_idle(&app);
    let failures = |reason| {
        sum(
            &samples,
            "spinmesh_host_component_failures_total",
            &[("component", "items"), ("reason", reason)],
        )
    };
    assert_eq!((failures("timeout"), failures("error")), (1.0, 0.0));
    let requests = [
        ("component", "items"),
        ("route", "/items/..."),
        ("status", "503"),
    ];
    assert_eq!(sum(&samples, REQUESTS, &requests), 1.0);
}

#[test]
fn the_admin_listener_serves_only_its_own_paths() {
    let (_dir, builder) = app("[[trigger.http]]\nroute = \"/metrics\"\ncomponent = \"special\"\n");
    let app = builder.start();
    let admin = |path: &str| app.admin_url(path).unwrap();
    assert_eq!(
        client()
            .get(admin("/healthz"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "OK"
    );
    assert_eq!(
        status("GET", &admin("/items/a")),
        404,
        "app routes are not on the admin listener"
    );
    assert_eq!(status("GET", &admin("/.well-known/spin/health")), 404);
    let post = client().post(admin("/metrics")).send().unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    // A manifest route named /metrics belongs to the app, as with `spin up`.
    let routed: Value = client()
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(routed["headers"]["spin-matched-route"], "/metrics");
    let samples = scrape(&app);
    let metrics_route = [
        ("component", "special"),
        ("route", "/metrics"),
        ("status", "200"),
    ];
    assert_eq!(sum(&samples, REQUESTS, &metrics_route), 1.0);
}

#[test]
fn admin_listen_off_disables_the_listener() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_dir, builder) = app("");
    // The flag beats the environment.
    let mut app = builder
        .env("SPINMESH_ADMIN_LISTEN", &unused.to_string())
        .arg("--admin-listen")
        .arg("off")
        .start();
    assert_eq!(app.admin_url("/metrics"), None);
    assert_eq!(status("GET", &app.url("/items/a")), 200);
    assert!(
        std::net::TcpStream::connect(unused).is_err(),
        "nothing listens on {unused}"
    );
    assert!(!app.log().contains("admin listener"), "{}", app.log());
}
