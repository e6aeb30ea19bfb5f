//! The resource bounds the host applies to connections, requests and instances.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a component instance may grow to.
    pub memory_bytes: usize,
    /// Core instances a component may create (a component is several).
    pub instances_per_request: usize,
    /// Wall-clock limit for a component to answer, from its start (a body the
    /// host reads first is not counted; a streamed body is).
    pub request_timeout: Duration,
    /// Public requests served at once, and separately service-chaining
    /// requests at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Requests whose bodies are streamed to their component (uploads) served at
    /// once, in a pool of their own: their instances run while the client sends,
    /// so slow uploaders can fill this pool but never the one other routes use.
    pub max_streaming_requests: usize,
    /// Client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, which is also
    /// how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// How long a body the host reads in full may take to arrive, and the
    /// longest pause in a body streamed to a component.
    pub body_read_timeout: Duration,
    /// Request body limit for components without their own.
    pub max_body_bytes: u64,
    /// Per-component body limits. A component whose limit is above
    /// `max_body_bytes` gets its body streamed as it arrives; every other body
    /// is received in full before an instance is started.
    pub component_max_body_bytes: HashMap<String, u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            instances_per_request: 64,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 128,
            max_streaming_requests: 32,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_body_bytes: 1 << 20,
            component_max_body_bytes: HashMap::new(),
        }
    }
}

/// How a component's request bodies are bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyPolicy {
    pub limit: u64,
    /// Passed to the instance as it arrives, rather than received first.
    pub streamed: bool,
}

impl Limits {
    pub fn body_policy(&self, component: &str) -> BodyPolicy {
        match self.component_max_body_bytes.get(component) {
            Some(&limit) => BodyPolicy {
                limit,
                streamed: limit > self.max_body_bytes,
            },
            None => BodyPolicy {
                limit: self.max_body_bytes,
                streamed: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_components_given_a_larger_limit_stream() {
        let mut limits = Limits::default();
        limits
            .component_max_body_bytes
            .insert("upload".into(), 100 << 20);
        limits.component_max_body_bytes.insert("tiny".into(), 1024);
        assert_eq!(
            limits.body_policy("upload"),
            BodyPolicy {
                limit: 100 << 20,
                streamed: true
            }
        );
        assert_eq!(
            limits.body_policy("tiny"),
            BodyPolicy {
                limit: 1024,
                streamed: false
            }
        );
        assert_eq!(
            limits.body_policy("other"),
            BodyPolicy {
                limit: 1 << 20,
                streamed: false
            }
        );
    }
}
