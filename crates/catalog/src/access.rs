//! Who may do what: every signed-in caller reads the catalogue; `admin` and `service`
//! accounts create products; only `admin` changes or deletes them; only `service`
//! accounts (orders) reserve and release stock.

use spinmesh_authn::{Claims, Role};

use crate::Error;

pub fn ensure_may_create(claims: &Claims) -> Result<(), Error> {
    if claims.has_role(Role::Admin) || claims.has_role(Role::Service) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Only administrators and services may create products",
        ))
    }
}

pub fn ensure_may_modify(claims: &Claims) -> Result<(), Error> {
    if claims.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Only administrators may change or delete products",
        ))
    }
}

pub fn ensure_may_reserve(claims: &Claims) -> Result<(), Error> {
    if claims.has_role(Role::Service) {
        Ok(())
    } else {
        Err(Error::Forbidden("Only services may reserve stock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: &[Role]) -> Claims {
        Claims {
            sub: "x".into(),
            username: "x".into(),
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
    fn roles_decide() {
        let user = claims(&[Role::User]);
        let admin = claims(&[Role::User, Role::Admin]);
        let service = claims(&[Role::Service]);
        assert!(matches!(ensure_may_create(&user), Err(Error::Forbidden(_))));
        assert!(ensure_may_create(&admin).is_ok());
        assert!(ensure_may_create(&service).is_ok());
        assert!(matches!(ensure_may_modify(&user), Err(Error::Forbidden(_))));
        assert!(matches!(
            ensure_may_modify(&service),
            Err(Error::Forbidden(_))
        ));
        assert!(ensure_may_modify(&admin).is_ok());
        assert!(matches!(
            ensure_may_reserve(&user),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            ensure_may_reserve(&admin),
            Err(Error::Forbidden(_))
        ));
        assert!(ensure_may_reserve(&service).is_ok());
        assert!(matches!(
            ensure_may_create(&claims(&[])),
            Err(Error::Forbidden(_))
        ));
    }
}
