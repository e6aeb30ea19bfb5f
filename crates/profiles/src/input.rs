//! Validated inputs: each type can only hold values that passed its rule.

use std::fmt;

use crate::Error;

/// Longest `full_name`, in characters.
pub const MAX_FULL_NAME: usize = 100;
/// Longest `bio`, in characters.
pub const MAX_BIO: usize = 500;

/// A user id: a UUID (the ids `register` issues), canonical lower-case hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    /// Anything but 8-4-4-4-12 hex digits (any case) is [`Error::InvalidUserId`], so path
    /// junk never reaches SQL.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let shaped = raw.len() == 36
            && raw.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if shaped {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidUserId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fields a caller supplies when creating a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    pub email: String,
    pub full_name: String,
    pub bio: String,
}

impl NewProfile {
    /// Checks email, then full_name, then bio; absent texts are empty.
    pub fn new(
        email: String,
        full_name: Option<String>,
        bio: Option<String>,
    ) -> Result<Self, Error> {
        spinmesh_accounts::validate_email(&email).map_err(|_| Error::InvalidEmail)?;
        Ok(Self {
            email,
            full_name: full_name
                .map(full_name_rule)
                .transpose()?
                .unwrap_or_default(),
            bio: bio.map(bio_rule).transpose()?.unwrap_or_default(),
        })
    }
}

/// A partial update: at least one field, each valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub full_name: Option<String>,
    pub bio: Option<String>,
}

impl ProfileUpdate {
    pub fn new(full_name: Option<String>, bio: Option<String>) -> Result<Self, Error> {
        if full_name.is_none() && bio.is_none() {
            return Err(Error::EmptyUpdate);
        }
        Ok(Self {
            full_name: full_name.map(full_name_rule).transpose()?,
            bio: bio.map(bio_rule).transpose()?,
        })
    }
}

/// One line of at most [`MAX_FULL_NAME`] characters, no control characters.
fn full_name_rule(value: String) -> Result<String, Error> {
    if value.chars().count() <= MAX_FULL_NAME && !value.chars().any(char::is_control) {
        Ok(value)
    } else {
        Err(Error::InvalidFullName)
    }
}

/// At most [`MAX_BIO`] characters; line breaks and tabs are the only control characters.
fn bio_rule(value: String) -> Result<String, Error> {
    let allowed = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    if value.chars().count() <= MAX_BIO && value.chars().all(allowed) {
        Ok(value)
    } else {
        Err(Error::InvalidBio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn user_ids_are_uuids_in_canonical_form() {
        assert_eq!(UserId::parse(ID).unwrap().as_str(), ID);
        assert_eq!(UserId::parse(&ID.to_uppercase()).unwrap().as_str(), ID);
        for bad in [
            "",
            "abc",
            "-1",
            "0",
            "99999999999999999999999999",
            "me",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b-41d4-a716-4466554400000",
            "550e8400-e29b-41d4-a716_446655440000",
            "' OR '1'='1",
            "1; DROP TABLE profiles",
            "%27%20OR%201%3D1",
            "550e8400-e29b-41d4-a716-4466554400é",
        ] {
            assert!(
                matches!(UserId::parse(bad), Err(Error::InvalidUserId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_profiles_validate_every_field_in_order() {
        let profile = NewProfile::new("a@example.com".into(), None, None).unwrap();
        assert_eq!((profile.full_name.as_str(), profile.bio.as_str()), ("", ""));
        let profile = NewProfile::new(
            "a@example.com".into(),
            Some("Ada Lovelace".into()),
            Some("Line one\nline two\twith a tab".into()),
        )
        .unwrap();
        assert_eq!(profile.full_name, "Ada Lovelace");
        for bad in ["", "plain", "a@localhost", " a@example.com"] {
            assert!(
                matches!(
                    NewProfile::new(bad.into(), None, None),
                    Err(Error::InvalidEmail)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            NewProfile::new("bad".into(), Some("\u{0}".into()), None),
            Err(Error::InvalidEmail)
        ));
        assert!(matches!(
            NewProfile::new(
                "a@example.com".into(),
                Some("x\ny".into()),
                Some("\u{7}".into())
            ),
            Err(Error::InvalidFullName)
        ));
        assert!(matches!(
            NewProfile::new("a@example.com".into(), None, Some("\u{1b}[31m".into())),
            Err(Error::InvalidBio)
        ));
    }

    #[test]
    fn lengths_count_characters() {
        assert!(full_name_rule("é".repeat(MAX_FULL_NAME)).is_ok());
        assert!(matches!(
            full_name_rule("x".repeat(MAX_FULL_NAME + 1)),
            Err(Error::InvalidFullName)
        ));
        assert!(bio_rule("€".repeat(MAX_BIO)).is_ok());
        assert!(matches!(
            bio_rule("x".repeat(MAX_BIO + 1)),
            Err(Error::InvalidBio)
        ));
    }

    #[test]
    fn updates_need_a_field_and_validate_what_they_have() {
        assert!(matches!(
            ProfileUpdate::new(None, None),
            Err(Error::EmptyUpdate)
        ));
        let update = ProfileUpdate::new(None, Some(String::new())).unwrap();
        assert_eq!(
            update,
            ProfileUpdate {
                full_name: None,
                bio: Some(String::new())
            }
        );
        assert!(matches!(
            ProfileUpdate::new(Some("\t".into()), None),
            Err(Error::InvalidFullName)
        ));
        assert!(matches!(
            ProfileUpdate::new(Some("ok".into()), Some("y".repeat(MAX_BIO + 1))),
            Err(Error::InvalidBio)
        ));
    }
}
