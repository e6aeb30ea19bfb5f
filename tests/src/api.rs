//! One typed client for the app's HTTP API, shared by every suite: accounts
//! (register, login, the configured admin, service credentials), JSON requests
//! with or without a bearer token, uploads and their conversion jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::{App, DevSecrets, ORDERS_CLIENT_ID, Reply, client, client_from, send, wait_for};

/// The password every test account is registered with.
pub const PASSWORD: &str = "correct horse battery";

/// How long a conversion may take: they share two cores with everything else, so this
/// is generous, and never a measure of speed.
pub const JOB_DEADLINE: Duration = Duration::from_secs(300);

/// The multipart boundary of [`Api::upload`]'s forms.
const BOUNDARY: &str = "spinmesh-e2e-boundary-b6Xq2rT9";

/// A registered account with a fresh access token.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

/// The app's API. Holds no process handle, so threads can share it.
#[derive(Clone)]
pub struct Api {
    base: String,
    /// The HTTP client, for requests the typed helpers do not cover.
    pub http: Client,
    admin_password: String,
    orders_client_secret: String,
}

impl Api {
    pub fn new(app: &App) -> Api {
        Api::with_client(app, client())
    }

    /// Requests sent from `ip`, another loopback address such as `127.0.0.2`, which
    /// the app's per-address limits count separately.
    pub fn from_address(app: &App, ip: &str) -> Api {
        Api::with_client(app, client_from(ip))
    }

    fn with_client(app: &App, http: Client) -> Api {
        Api::at(&app.url(""), app.secrets(), http)
    }

    /// The cluster's app through its balancer.
    pub fn cluster(cluster: &Cluster) -> Api {
        Api::at(&cluster.url, cluster.secrets(), client())
    }

    /// Host `index` of the cluster directly, bypassing the balancer.
    pub fn cluster_host(cluster: &Cluster, index: usize) -> Api {
        Api::at(&cluster.host(index).url, cluster.secrets(), client())
    }

    /// The app at `base` (e.g. a balancer in front of several hosts) started with `secrets`.
    pub fn at(base: &str, secrets: &DevSecrets, http: Client) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http,
            admin_password: secrets.admin_password.clone(),
            orders_client_secret: secrets.orders_client_secret.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        send(self.request(Method::GET, path, Some(token)))
    }

    pub fn delete(&self, path: &str, token: &str) -> Reply {
        send(self.request(Method::DELETE, path, Some(token)))
    }

    /// A JSON request with a bearer token.
    pub fn send_json(&self, method: Method, path: &str, token: &str, body: Value) -> Reply {
        send(self.request(method, path, Some(token)).json(&body))
    }

    /// An unauthenticated JSON `POST`.
    pub fn post(&self, path: &str, body: Value) -> Reply {
        send(self.request(Method::POST, path, None).json(&body))
    }

    /// Registers `username` with `email` and [`PASSWORD`].
    pub fn register(&self, username: &str, email: &str) -> Reply {
        self.post(
            "/api/register",
            json!({ "username": username, "email": email, "password": PASSWORD }),
        )
    }

    /// Registers `username` (email `<username>@example.com`); its user id.
    pub fn registered(&self, username: &str) -> String {
        self.register(username, &format!("{username}@example.com"))
            .str("user_id")
            .to_owned()
    }

    pub fn login(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/api/login",
            json!({ "username": username, "password": password }),
        )
    }

    /// The access token of a login that must succeed.
    pub fn token(&self, username: &str, password: &str) -> String {
        let reply = self.login(username, password);
        assert_eq!(reply.status, 200, "login of {username}: {}", reply.body);
        reply.str("token").to_owned()
    }

    /// Registers and logs in `username`: a plain `user`.
    pub fn user(&self, username: &str) -> User {
        let id = self.registered(username);
        User {
            id,
            username: username.to_owned(),
            token: self.token(username, PASSWORD),
        }
    }

    /// A token of the configured administrator `admin` (created on first login).
    pub fn admin(&self) -> String {
        self.token("admin", &self.admin_password)
    }

    /// A service token for the orders component's account, by the seed's `POST /get-token`.
    pub fn service(&self) -> String {
        let reply = self.post(
            "/get-token",
            json!({ "service_name": ORDERS_CLIENT_ID, "client_secret": self.orders_client_secret }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.str("token").to_owned()
    }

    pub fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/token/refresh",
            json!({ "refresh_token": refresh_token }),
        )
    }

    /// `GET /api/validate` with `token` as the bearer.
    pub fn validate(&self, token: &str) -> Reply {
        self.get("/api/validate", token)
    }

    pub fn logout(&self, token: &str) -> Reply {
        send(self.request(Method::POST, "/api/logout", Some(token)))
    }

    /// `POST /api/upload` of `bytes` as the form's `file` part named `filename`.
    pub fn upload(&self, token: &str, filename: &str, bytes: &[u8]) -> Reply {
        let form = crate::multipart_body(BOUNDARY, &[("file", Some(filename), bytes)]);
        send(
            self.request(Method::POST, "/api/upload", Some(token))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(form),
        )
    }

    /// An upload that must be accepted (202); its job id.
    pub fn queue(&self, token: &str, filename: &str, bytes: &[u8]) -> String {
        let reply = self.upload(token, filename, bytes);
        assert_eq!(reply.status, 202, "upload of {filename}: {}", reply.body);
        reply.str("job_id").to_owned()
    }

    /// `GET /api/jobs/{id}`.
    pub fn job(&self, token: &str, id: &str) -> Reply {
        self.get(&format!("/api/jobs/{id}"), token)
    }

    /// Polls job `id` (every read must succeed) until it has finished, within
    /// [`JOB_DEADLINE`]; its last state.
    pub fn finished_job(&self, token: &str, id: &str) -> Value {
        wait_for(&format!("job {id} to finish"), JOB_DEADLINE, || {
            let job = self.job(token, id).ok();
            is_finished(&job).then_some(job)
        })
    }

    /// The MP3 of job `id` (which must be ready), whole.
    pub fn download(&self, token: &str, id: &str) -> Vec<u8> {
        let response = self
            .request(
                Method::GET,
                &format!("/api/jobs/{id}/download"),
                Some(token),
            )
            .send()
            .expect("request sent");
        assert_eq!(response.status(), 200, "download of {id}");
        assert_eq!(response.headers()["content-type"], "audio/mpeg");
        response.bytes().expect("body read").to_vec()
    }
}

/// Whether a job's state is final: `completed`, `failed` or `cancelled`.
pub fn is_finished(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

/// Runs `work(0..count)` on as many threads at once; the results in index order.
pub fn concurrently<T: Send>(count: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (0..count)
            .map(|index| scope.spawn(move || work(index)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker panicked"))
            .collect()
    })
}

/// How many times each status occurs, for asserting on racing requests.
pub fn status_counts(statuses: &[u16]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(*status).or_insert(0) += 1;
    }
    counts
}

/// A timestamp in the app's one format: RFC 3339, UTC, whole seconds
/// (`2025-01-31T12:00:00Z`).
pub fn is_rfc3339_utc(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.len() == 20
            && text.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                19 => c == 'Z',
                _ => c.is_ascii_digit(),
            })
    })
}
