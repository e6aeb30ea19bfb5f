//! `allowed_outbound_hosts`: which URLs a component may call, and the check
//! every outbound request a component makes goes through.
//!
//! Entries are `scheme://host[:port]`, where the scheme may be `*`, the host `*`
//! or `*.suffix`, and the port a number, a range `a..b` (end exclusive) or `*`.
//! Without a port the scheme's default applies. `{{ variable }}` templates are
//! expanded with application variables at start-up.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Range(Range<u16>),
}

impl AllowedHost {
    /// Checks the syntax of an entry that may still contain templates.
    pub fn parse_template(entry: &str) -> Result<()> {
        let references = crate::template::template_references(entry)?;
        let placeholders: HashMap<String, String> = references
            .into_iter()
            .map(|name| (name, "placeholder".to_string()))
            .collect();
        let expanded = crate::template::expand_template(entry, &placeholders)?;
        if placeholders.is_empty() {
            Self::parse(&expanded)?;
        }
        Ok(())
    }

    /// Expands templates, then parses.
    pub fn resolve(entry: &str, values: &HashMap<String, String>) -> Result<Self> {
        let expanded = crate::template::expand_template(entry, values)?;
        Self::parse(&expanded).with_context(|| format!("`{entry}` expands to `{expanded}`"))
    }

    pub fn parse(entry: &str) -> Result<Self> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            if entry == "self" {
                bail!(
                    "\"self\" is not supported; call other components at http://<id>.spin.internal"
                );
            }
            bail!("expected scheme://host[:port]");
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                Some(s.to_ascii_lowercase())
            }
            _ => bail!("invalid scheme {scheme:?}"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("paths are not allowed, only scheme://host[:port]");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                (host, Some(port))
            }
            _ => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "" => bail!("missing host"),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_string()),
            h if h.contains('*') => bail!("`*` may only stand for a whole host or a leading label"),
            "self" => bail!(
                "\"self\" is not supported; call other components at http://<id>.spin.internal"
            ),
            h => HostPattern::Exact(h.to_string()),
        };
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(spec) => PortPattern::Range(parse_port_spec(spec)?),
            None => match scheme.as_deref().and_then(default_port) {
                Some(port) => PortPattern::Range(port..port + 1),
                None => bail!("a port is required when the scheme has no default port"),
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self
            .scheme
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(scheme));
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => {
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }
            HostPattern::Exact(exact) => *exact == host,
        };
        let port_ok = match &self.port {
            PortPattern::Any => true,
            PortPattern::Range(range) => range.contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn parse_port_spec(spec: &str) -> Result<Range<u16>> {
    let number = |s: &str| {
        s.parse::<u16>()
            .with_context(|| format!("invalid port {s:?}"))
    };
    match spec.split_once("..") {
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            if start >= end {
                bail!("empty port range {spec:?}");
            }
            Ok(start..end)
        }
        None => {
            let port = number(spec)?;
            Ok(port..port.saturating_add(1))
        }
    }
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// A component's resolved allow-list.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    pub fn resolve(entries: &[String], values: &HashMap<String, String>) -> Result<Self> {
        let allowed = entries
            .iter()
            .map(|entry| AllowedHost::resolve(entry, values))
            .collect::<Result<_>>()?;
        Ok(OutboundPolicy { allowed })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let Some(port) = port.or_else(|| default_port(scheme)) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|allowed| allowed.allows(scheme, host, port))
    }

    /// Enforces the policy on one outbound request of `component`: a URL the
    /// allow-list does not cover is logged and refused as wasi:http's
    /// `HttpRequestDenied`; an allowed one is either in-app or external.
    pub fn authorize(
        &self,
        component: &str,
        uri: &http::Uri,
    ) -> Result<Destination, wasmtime_wasi_http::Error> {
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16();
        if !self.allows(&scheme, &host, port) {
            tracing::warn!(
                component,
                "outbound request to {scheme}://{host}{} denied: not in allowed_outbound_hosts",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
        }
        Ok(match host.strip_suffix(".spin.internal") {
            Some(target) => Destination::Internal(target.to_string()),
            None => Destination::External,
        })
    }
}

/// Where an allowed outbound request goes.
#[derive(Debug, PartialEq)]
pub enum Destination {
    /// `http://<component>.spin.internal`: served in-process by that component.
    Internal(String),
    /// Anywhere else: sent over the network.
    External,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let values = HashMap::from([("runner_host".to_string(), "127.0.0.1:3001".to_string())]);
        OutboundPolicy::resolve(&entries, &values).unwrap()
    }

    #[test]
    fn exact_hosts_use_default_ports() {
        let p = policy(&["https://api.example.com"]);
        assert!(p.allows("https", "api.example.com", None));
        assert!(p.allows("https", "API.example.com", Some(443)));
        assert!(!p.allows("https", "api.example.com", Some(8443)));
        assert!(!p.allows("http", "api.example.com", None));
        assert!(!p.allows("https", "evil.com", None));
    }

    #[test]
    fn wildcards_and_ranges() {
        let p = policy(&[
            "http://*.spin.internal",
            "*://localhost:*",
            "http://10.0.0.1:8000..8002",
        ]);
        assert!(p.allows("http", "products.spin.internal", None));
        assert!(!p.allows("http", "spin.internal", None));
        assert!(!p.allows("https", "products.spin.internal", None));
        assert!(p.allows("https", "localhost", Some(1234)));
        assert!(p.allows("http", "10.0.0.1", Some(8001)));
        assert!(!p.allows("http", "10.0.0.1", Some(8002)));
    }

    #[test]
    fn templates_expand_from_variables() {
        let p = policy(&["http://{{ runner_host }}"]);
        assert!(p.allows("http", "127.0.0.1", Some(3001)));
        assert!(!p.allows("http", "127.0.0.1", Some(3002)));
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in [
            "example.com",
            "http://",
            "http://a/b",
            "http://a:x",
            "http://a*b.com",
            "self",
            "http://self",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
        assert!(
            AllowedHost::parse("*://example.com").is_err(),
            "wildcard scheme needs a port"
        );
        AllowedHost::parse_template("http://{{ runner_host }}").unwrap();
    }

    #[test]
    fn authorize_refuses_or_says_where_a_request_goes() {
        let p = policy(&["http://*.spin.internal", "https://api.example.com"]);
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(
            p.authorize("c", &uri("http://Users.spin.internal/x"))
                .unwrap(),
            Destination::Internal("users".into())
        );
        assert_eq!(
            p.authorize("c", &uri("https://api.example.com/v1"))
                .unwrap(),
            Destination::External
        );
        assert!(matches!(
            p.authorize("c", &uri("http://api.example.com/v1")),
            Err(wasmtime_wasi_http::Error::HttpRequestDenied)
        ));
    }

    #[test]
    fn empty_policy_denies_everything() {
        assert!(!OutboundPolicy::default().allows("https", "example.com", None));
    }
}
