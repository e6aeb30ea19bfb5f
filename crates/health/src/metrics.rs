//! One Prometheus text exposition from several sources (the host's admin listener, the
//! runner), so an admin scrapes the app in one place. A source that cannot be read is
//! reported by a gauge instead of failing the whole answer.

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One source: its name and its text, `None` when it could not be read.
pub struct Source<'a> {
    pub name: &'a str,
    pub text: Option<&'a str>,
}

/// The sources' texts one after the other, then `spinmesh_metrics_source_up` (1 or 0)
/// for each source. Sources use distinct metric prefixes, so no family repeats.
pub fn merge(sources: &[Source<'_>]) -> String {
    let mut out = String::new();
    for source in sources {
        if let Some(text) = source.text {
            out.push_str(text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out.push_str("# HELP spinmesh_metrics_source_up Whether the gateway could read this source's metrics (1) or not (0).\n");
    out.push_str("# TYPE spinmesh_metrics_source_up gauge\n");
    for source in sources {
        let up = u8::from(source.text.is_some());
        out.push_str(&format!(
            "spinmesh_metrics_source_up{{source=\"{}\"}} {up}\n",
            source.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenates_and_reports_each_source() {
        let text = merge(&[
            Source {
                name: "host",
                text: Some(
                    "# TYPE spinmesh_host_requests_total counter\nspinmesh_host_requests_total 3",
                ),
            },
            Source {
                name: "runner",
                text: Some("spinmesh_runner_jobs 1\n"),
            },
        ]);
        assert!(text.starts_with("# TYPE spinmesh_host_requests_total counter\nspinmesh_host_requests_total 3\nspinmesh_runner_jobs 1\n"), "{text}");
        assert!(text.contains("spinmesh_metrics_source_up{source=\"host\"} 1\n"));
        assert!(text.contains("spinmesh_metrics_source_up{source=\"runner\"} 1\n"));
    }

    #[test]
    fn unreadable_source_is_a_zero_gauge() {
        let text = merge(&[
            Source {
                name: "host",
                text: None,
            },
            Source {
                name: "runner",
                text: Some("spinmesh_runner_jobs 1\n"),
            },
        ]);
        assert!(text.starts_with("spinmesh_runner_jobs 1\n"), "{text}");
        assert!(text.contains("spinmesh_metrics_source_up{source=\"host\"} 0\n"));
        assert_eq!(text.matches("# TYPE").count(), 1);
    }
}
