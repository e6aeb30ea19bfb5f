//! The resource bounds the host applies to requests and instances.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a component instance may grow to.
    pub memory_bytes: usize,
    /// Core instances a component may create (a component is several).
    pub instances_per_request: usize,
    /// Wall-clock limit for one request, including streaming its body.
    pub request_timeout: Duration,
    /// Public requests served at once; more wait their turn.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            instances_per_request: 64,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 128,
        }
    }
}
