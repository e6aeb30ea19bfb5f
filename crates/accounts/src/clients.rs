//! Service accounts for the client-credentials grant, from the `service_clients` variable
//! (`client_id:secret[,client_id:secret]`), and how a client presents its credentials at
//! the token endpoint.

use base64::{Engine, engine::general_purpose::STANDARD};
use percent_encoding::percent_decode_str;
use spinmesh_authn::secrets_equal;

use crate::{Error, validate_username};

pub struct ServiceClients(Vec<(String, String)>);

impl std::fmt::Debug for ServiceClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(id, _)| id))
            .finish()
    }
}

impl ServiceClients {
    /// Parses the variable. Ids follow the username rules (they become the token's
    /// `username`); secrets must not be empty; an empty variable means no clients.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("variable `service_clients`: {why}"));
        let mut clients: Vec<(String, String)> = Vec::new();
        for entry in spec
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (id, secret) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected client_id:secret"))?;
            validate_username(id)
                .map_err(|_| bad("client ids are 3-32 characters of [A-Za-z0-9_.-]"))?;
            if secret.is_empty() {
                return Err(bad("empty secret"));
            }
            if clients.iter().any(|(known, _)| known == id) {
                return Err(bad("duplicate client id"));
            }
            clients.push((id.to_owned(), secret.to_owned()));
        }
        Ok(Self(clients))
    }

    /// The client id when `secret` is its secret. Secrets are compared in constant time;
    /// an unknown id costs the same comparison.
    pub fn authenticate<'a>(&'a self, client_id: &str, secret: &str) -> Result<&'a str, Error> {
        let found = self.0.iter().find(|(id, _)| id == client_id);
        let expected = found.map_or("\0no such client", |(_, secret)| secret.as_str());
        match found {
            Some((id, _)) if secrets_equal(secret, expected) => Ok(id),
            _ => {
                let _ = secrets_equal(secret, expected);
                Err(Error::InvalidClient)
            }
        }
    }
}

/// How a client authenticated at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic { id: String, secret: String },
    /// `client_id` and `client_secret` parameters (`client_secret_post`).
    Body { id: String, secret: String },
    /// No secret: a public client. A bare `client_id` identifies, it does not authenticate.
    Public,
}

impl ClientAuth {
    /// From the `Authorization` header and the `client_id`/`client_secret` parameters.
    /// Schemes other than Basic are not client authentication and are ignored; using Basic
    /// and a `client_secret` together is refused (§2.3: one method per request).
    pub fn new(
        authorization: Option<&str>,
        client_id: Option<String>,
        client_secret: Option<String>,
    ) -> Result<Self, Error> {
        match (basic_credentials(authorization), client_id, client_secret) {
            (Some(Err(error)), _, _) => Err(error),
            (Some(Ok(_)), _, Some(_)) => Err(Error::InvalidTokenRequest(
                "Use one client authentication method: HTTP Basic or client_secret",
            )),
            (Some(Ok((id, _))), Some(other), None) if other != id => Err(
                Error::InvalidTokenRequest("client_id differs from the HTTP Basic client"),
            ),
            (Some(Ok((id, secret))), _, None) => Ok(Self::Basic { id, secret }),
            (None, Some(id), Some(secret)) => Ok(Self::Body { id, secret }),
            (None, _, _) => Ok(Self::Public),
        }
    }

    /// The id and secret to check; `None` for a public client.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Self::Basic { id, secret } | Self::Body { id, secret } => Some((id, secret)),
            Self::Public => None,
        }
    }
}

/// Whether `authorization` uses the Basic scheme (a failure then carries its challenge).
pub fn is_basic(authorization: Option<&str>) -> bool {
    basic_credentials(authorization).is_some()
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` decoded (§2.3.1 form-urlencodes both
/// before RFC 7617 joins them); `None` for another scheme, [`Error::InvalidClient`] for a
/// malformed one.
fn basic_credentials(authorization: Option<&str>) -> Option<Result<(String, String), Error>> {
    let value = authorization?.trim();
    let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = || {
        let decoded = STANDARD.decode(encoded.trim()).ok()?;
        let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some((form_decode(id)?, form_decode(secret)?))
    };
    Some(decode().ok_or(Error::InvalidClient))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
fn form_decode(value: &str) -> Option<String> {
    percent_decode_str(&value.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let auth = ClientAuth::new(Some(&basic("orders", "s3cret")), None, None).unwrap();
        assert_eq!(auth.credentials(), Some(("orders", "s3cret")));
        // Reserved characters arrive percent-encoded, spaces as `+` (RFC 6749 §2.3.1).
        let auth = ClientAuth::new(Some(&basic("my+app", "p%3Aw%25d%2B")), None, None).unwrap();
        assert_eq!(auth.credentials(), Some(("my app", "p:w%d+")));
        // The scheme is case-insensitive; the same client_id in the body is harmless.
        let auth = ClientAuth::new(
            Some(&basic("orders", "x").replace("Basic", "bAsIc")),
            Some("orders".into()),
            None,
        )
        .unwrap();
        assert!(matches!(auth, ClientAuth::Basic { .. }));
        assert!(is_basic(Some(&basic("a", "b"))));
        assert!(!is_basic(Some("Bearer abc")));
        assert!(!is_basic(None));
    }

    #[test]
    fn body_public_and_conflicting_authentication() {
        let auth = ClientAuth::new(None, Some("orders".into()), Some("s".into())).unwrap();
        assert_eq!(
            auth,
            ClientAuth::Body {
                id: "orders".into(),
                secret: "s".into()
            }
        );
        assert_eq!(
            ClientAuth::new(None, Some("web".into()), None).unwrap(),
            ClientAuth::Public
        );
        // A bearer token is no client authentication.
        assert_eq!(
            ClientAuth::new(Some("Bearer abc"), None, None).unwrap(),
            ClientAuth::Public
        );
        for (id, secret) in [(None, Some("s")), (Some("other"), None)] {
            let error = ClientAuth::new(
                Some(&basic("orders", "s")),
                id.map(str::to_owned),
                secret.map(str::to_owned),
            )
            .unwrap_err();
            assert!(
                matches!(error, Error::InvalidTokenRequest(_)),
                "{id:?} {secret:?}"
            );
        }
    }

    #[test]
    fn malformed_basic_is_a_client_authentication_failure() {
        for header in [
            "Basic",
            "Basic !!!",
            "Basic b3JkZXJz",
            "Basic /w==",
            "Basic b3JkZXJzOiVGRg==",
        ] {
            assert!(
                matches!(
                    ClientAuth::new(Some(header), None, None),
                    Err(Error::InvalidClient)
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn parses_pairs_and_authenticates() {
        let clients = ServiceClients::parse("orders:s3cret, billing:p:w").unwrap();
        assert_eq!(clients.authenticate("orders", "s3cret").unwrap(), "orders");
        // Only the first colon separates: secrets may contain colons.
        assert_eq!(clients.authenticate("billing", "p:w").unwrap(), "billing");
        for (id, secret) in [
            ("orders", "wrong"),
            ("orders", ""),
            ("Orders", "s3cret"),
            ("nobody", "s3cret"),
            ("billing", "s3cret"),
        ] {
            assert!(
                matches!(clients.authenticate(id, secret), Err(Error::InvalidClient)),
                "{id} {secret}"
            );
        }
        assert!(!format!("{clients:?}").contains("s3cret"));
    }

    #[test]
    fn empty_means_no_clients() {
        let clients = ServiceClients::parse(" ").unwrap();
        assert!(clients.authenticate("orders", "x").is_err());
    }

    #[test]
    fn malformed_lists_are_configuration_errors() {
        for bad in [
            "orders",
            "orders:",
            ":hunter22",
            "a b:hunter22",
            "orders:x,orders:hunter22",
        ] {
            let error = ServiceClients::parse(bad).unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{bad:?}");
            assert!(!error.to_string().contains("hunter22"), "{error}");
        }
    }
}
