//! A real load balancer in front of several app hosts (and several runners): Debian's
//! nginx, configured here, run in the foreground as a child process.
//!
//! Configured as a production front end would be for this app: requests are spread
//! round-robin, a backend that refuses connections is skipped (`proxy_next_upstream`
//! retries only requests it never sent), bodies stream both ways instead of being spooled
//! to disk (uploads and downloads are large), and the client's address goes on in
//! `X-Forwarded-For` for the hosts to believe (`trusted_proxies`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::running_as_root;
use crate::ManagedProcess;

/// One address the balancer listens on and the backends it spreads requests over.
pub struct Frontend {
    pub listen: String,
    pub backends: Vec<String>,
}

pub struct Balancer {
    process: ManagedProcess,
}

impl Balancer {
    /// Writes `dir/nginx.conf` and starts nginx with it; returns once every frontend
    /// accepts connections.
    pub fn start(dir: &Path, frontends: &[Frontend]) -> Result<Balancer, String> {
        std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, frontends)).map_err(|err| err.to_string())?;
        let mut command = Command::new("nginx");
        // `-e`: the start-up log goes to stderr too, not to /var/log/nginx.
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"]);
        let first = frontends.first().ok_or("a balancer needs a frontend")?;
        let mut process = ManagedProcess::start_listening(command, &first.listen)?;
        for frontend in &frontends[1..] {
            if std::net::TcpStream::connect(&frontend.listen).is_err() {
                return Err(format!(
                    "nginx does not listen on {}: {}",
                    frontend.listen,
                    process.log()
                ));
            }
        }
        Ok(Balancer { process })
    }

    pub fn log(&mut self) -> String {
        self.process.log()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}

/// The nginx configuration: everything under `dir`, nothing from /etc/nginx.
fn config(dir: &Path, frontends: &[Frontend]) -> String {
    let dir = dir.display();
    // As root, nginx's workers would drop to `nobody`, who cannot enter a private state
    // directory; they stay with the invoking user instead.
    let user = if running_as_root() {
        "user root;\n"
    } else {
        ""
    };
    let mut text = format!(
        "{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # The hosts enforce each route's own body limit.
    client_max_body_size 0;
    # Stream uploads and downloads instead of spooling them.
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_connect_timeout 2s;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;
    proxy_next_upstream error timeout;
"
    );
    for (index, frontend) in frontends.iter().enumerate() {
        let _ = writeln!(text, "    upstream backends_{index} {{");
        for backend in &frontend.backends {
            let _ = writeln!(
                text,
                "        server {backend} max_fails=1 fail_timeout=2s;"
            );
        }
        let _ = writeln!(text, "        keepalive 32;\n    }}");
        let _ = writeln!(
            text,
            "    server {{\n        listen {};\n        location / {{ proxy_pass http://backends_{index}; }}\n    }}",
            frontend.listen
        );
    }
    text.push_str("}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frontend_gets_its_own_upstream() {
        let text = config(
            Path::new("/state"),
            &[
                Frontend {
                    listen: "127.0.0.1:3000".into(),
                    backends: vec!["127.0.0.1:4001".into(), "127.0.0.1:4002".into()],
                },
                Frontend {
                    listen: "127.0.0.1:3001".into(),
                    backends: vec!["127.0.0.1:5001".into()],
                },
            ],
        );
        assert!(text.contains("server 127.0.0.1:4001 max_fails=1"));
        assert!(text.contains("server 127.0.0.1:4002 max_fails=1"));
        assert!(text.contains(
            "listen 127.0.0.1:3000;\n        location / { proxy_pass http://backends_0; }"
        ));
        assert!(text.contains(
            "listen 127.0.0.1:3001;\n        location / { proxy_pass http://backends_1; }"
        ));
        assert!(text.contains("pid /state/nginx.pid;"));
        assert!(text.contains("proxy_request_buffering off;"));
    }
}
