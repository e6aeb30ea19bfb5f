//! Who sees which orders: an order belongs to the account that placed it; admins see all.

use spinmesh_authn::{Claims, Role};

use crate::Error;

/// Whose orders a list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everyone,
    Owner(String),
}

pub fn list_scope(claims: &Claims) -> Scope {
    if claims.has_role(Role::Admin) {
        Scope::Everyone
    } else {
        Scope::Owner(claims.sub.clone())
    }
}

/// `Ok` for the order's owner and for admins.
pub fn ensure_may_read(claims: &Claims, owner_id: &str) -> Result<(), Error> {
    if claims.sub == owner_id || claims.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, roles: &[Role]) -> Claims {
        Claims {
            sub: sub.into(),
            username: sub.into(),
            roles: roles.to_vec(),
            iss: "spinmesh".into(),
            aud: "spinmesh".into(),
            iat: 0,
            nbf: 0,
            exp: 900,
            jti: "jti".into(),
        }
    }

    #[test]
    fn owners_and_admins() {
        let alice = claims("alice-id", &[Role::User]);
        let admin = claims("admin-id", &[Role::User, Role::Admin]);
        let service = claims("service:orders", &[Role::Service]);
        assert_eq!(list_scope(&alice), Scope::Owner("alice-id".into()));
        assert_eq!(list_scope(&admin), Scope::Everyone);
        assert_eq!(list_scope(&service), Scope::Owner("service:orders".into()));
        assert!(ensure_may_read(&alice, "alice-id").is_ok());
        assert!(matches!(
            ensure_may_read(&alice, "bob-id"),
            Err(Error::Forbidden)
        ));
        assert!(ensure_may_read(&admin, "bob-id").is_ok());
        assert!(matches!(
            ensure_may_read(&service, "bob-id"),
            Err(Error::Forbidden)
        ));
    }
}
