//! Service accounts for the client-credentials grant, from the `service_clients` variable
//! (`client_id:secret[,client_id:secret]`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
