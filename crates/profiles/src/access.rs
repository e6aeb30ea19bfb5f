//! Who may do what: everyone signed in reads profiles, but sees an email only on their own
//! profile (admins on every one); a profile is created by its own account only, and
//! changed or deleted by its owner or an `admin`.

use spinmesh_authn::{Claims, Role};

use crate::{Error, Profile, UserId};

/// Path segment naming the caller's own profile (`/api/users/me`).
pub const ME: &str = "me";

/// The account a new profile belongs to, from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user_id: UserId,
    pub username: String,
}

/// The caller's own account as profile owner. A `user_id`/`username` in the body (seed
/// clients send both) must name that same account: nobody creates someone else's profile.
pub fn creator(
    claims: &Claims,
    user_id: Option<&str>,
    username: Option<&str>,
) -> Result<Owner, Error> {
    // Service accounts (`service:<name>`) have tokens but no profile.
    let own = UserId::parse(&claims.sub)
        .map_err(|_| Error::Forbidden("Only user accounts have profiles"))?;
    let same_id = user_id.is_none_or(|id| UserId::parse(id).is_ok_and(|id| id == own));
    // Usernames are unique regardless of case in the `auth` database.
    let same_name = username.is_none_or(|name| name.eq_ignore_ascii_case(&claims.username));
    if !(same_id && same_name) {
        return Err(Error::Forbidden("You can only create your own profile"));
    }
    Ok(Owner {
        user_id: own,
        username: claims.username.clone(),
    })
}

/// The profile a path segment names: [`ME`] is the caller's own.
pub fn target(claims: &Claims, segment: &str) -> Result<UserId, Error> {
    if segment == ME {
        // A service account has no profile of its own.
        UserId::parse(&claims.sub).map_err(|_| Error::NotFound)
    } else {
        UserId::parse(segment)
    }
}

/// `Ok` for the profile's owner and for admins.
pub fn ensure_may_modify(claims: &Claims, profile: &UserId) -> Result<(), Error> {
    let own = UserId::parse(&claims.sub).is_ok_and(|own| own == *profile);
    if own || claims.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Error::Forbidden("You can only modify your own profile"))
    }
}

/// `profile` as `claims` may see it: without the email unless it is the caller's own or the
/// caller is an admin.
pub fn visible_to(claims: &Claims, mut profile: Profile) -> Profile {
    let own = UserId::parse(&claims.sub).is_ok_and(|own| own.as_str() == profile.user_id);
    if !(own || claims.has_role(Role::Admin)) {
        profile.email = None;
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "550e8400-e29b-41d4-a716-446655440000";
    const BOB: &str = "660e8400-e29b-41d4-a716-446655440001";

    fn claims(sub: &str, username: &str, roles: &[Role]) -> Claims {
        Claims {
            sub: sub.into(),
            username: username.into(),
            roles: roles.to_vec(),
            iss: "spinmesh".into(),
            aud: "spinmesh".into(),
            iat: 0,
            nbf: 0,
            exp: 900,
            jti: "jti".into(),
        }
    }

    fn forbidden<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
        matches!(result, Err(Error::Forbidden(_)))
    }

    #[test]
    fn creators_make_only_their_own_profile() {
        let alice = claims(ALICE, "alice", &[Role::User]);
        let owner = creator(&alice, None, None).unwrap();
        assert_eq!(
            (owner.user_id.as_str(), owner.username.as_str()),
            (ALICE, "alice")
        );
        assert_eq!(
            creator(&alice, Some(&ALICE.to_uppercase()), Some("Alice")).unwrap(),
            owner
        );
        assert!(forbidden(creator(&alice, Some(BOB), None)));
        assert!(forbidden(creator(&alice, Some("abc"), None)));
        assert!(forbidden(creator(&alice, None, Some("bob"))));
        assert!(forbidden(creator(&alice, Some(ALICE), Some("bob"))));
        // Not even an admin creates a profile for someone else.
        let admin = claims(ALICE, "admin", &[Role::User, Role::Admin]);
        assert!(forbidden(creator(&admin, Some(BOB), None)));
        let service = claims("service:orders", "orders", &[Role::Service]);
        assert!(forbidden(creator(&service, None, None)));
    }

    #[test]
    fn targets_resolve_me() {
        let alice = claims(ALICE, "alice", &[Role::User]);
        assert_eq!(target(&alice, ME).unwrap().as_str(), ALICE);
        assert_eq!(target(&alice, BOB).unwrap().as_str(), BOB);
        assert!(matches!(target(&alice, "abc"), Err(Error::InvalidUserId)));
        let service = claims("service:orders", "orders", &[Role::Service]);
        assert!(matches!(target(&service, ME), Err(Error::NotFound)));
    }

    #[test]
    fn emails_show_only_to_their_owner_and_admins() {
        let profile = Profile {
            user_id: BOB.into(),
            username: "bob".into(),
            email: Some("bob@example.com".into()),
            full_name: String::new(),
            bio: String::new(),
            created_at: "2024-01-15T10:30:00Z".into(),
            updated_at: "2024-01-15T10:30:00Z".into(),
        };
        let seen_by = |claims: &Claims| visible_to(claims, profile.clone()).email;
        assert_eq!(seen_by(&claims(BOB, "bob", &[Role::User])), profile.email);
        assert_eq!(
            seen_by(&claims(ALICE, "admin", &[Role::Admin])),
            profile.email
        );
        assert_eq!(seen_by(&claims(ALICE, "alice", &[Role::User])), None);
        assert_eq!(
            seen_by(&claims("service:orders", "orders", &[Role::Service])),
            None
        );
        let hidden =
            serde_json::to_value(visible_to(&claims(ALICE, "alice", &[]), profile.clone()))
                .unwrap();
        assert!(hidden.get("email").is_none(), "{hidden}");
        assert_eq!(hidden["username"], "bob");
    }

    #[test]
    fn owners_and_admins_modify() {
        let alice = claims(ALICE, "alice", &[Role::User]);
        let bob = UserId::parse(BOB).unwrap();
        assert!(ensure_may_modify(&alice, &UserId::parse(ALICE).unwrap()).is_ok());
        assert!(forbidden(ensure_may_modify(&alice, &bob)));
        let admin = claims(ALICE, "admin", &[Role::Admin]);
        assert!(ensure_may_modify(&admin, &bob).is_ok());
        let service = claims("service:orders", "orders", &[Role::Service]);
        assert!(forbidden(ensure_may_modify(&service, &bob)));
    }
}
