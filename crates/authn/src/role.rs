use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a caller may do. Roles are flat: `admin` does not imply `user`, so grant both
/// where both are meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    /// A service account authenticated with client credentials (e.g. orders → products).
    Service,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Admin, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// Returned by [`Role::from_str`] for a name that is not a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

pub fn has_role(roles: &[Role], role: Role) -> bool {
    roles.contains(&role)
}

/// `Ok` when `role` is among `roles`, else [`Error::Forbidden`].
pub fn require_role(roles: &[Role], role: Role) -> Result<(), Error> {
    if has_role(roles, role) {
        Ok(())
    } else {
        Err(Error::Forbidden(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_uses_lowercase_names() {
        let json = serde_json::to_string(&Role::ALL).unwrap();
        assert_eq!(json, r#"["user","admin","service"]"#);
        let back: Vec<Role> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Role::ALL);
        assert!(serde_json::from_str::<Role>(r#""Admin""#).is_err());
        assert!(serde_json::from_str::<Role>(r#""root""#).is_err());
    }

    #[test]
    fn parses_and_displays() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!("ADMIN".parse::<Role>(), Err(UnknownRole));
    }

    #[test]
    fn require_is_exact_without_hierarchy() {
        let roles = [Role::User];
        assert!(has_role(&roles, Role::User));
        assert_eq!(require_role(&roles, Role::User), Ok(()));
        assert_eq!(
            require_role(&roles, Role::Admin),
            Err(Error::Forbidden(Role::Admin))
        );
        assert_eq!(
            require_role(&[Role::Admin], Role::User),
            Err(Error::Forbidden(Role::User))
        );
        assert!(!has_role(&[], Role::Service));
    }
}
