//! Input rules for new accounts.

use crate::Error;

/// A registration that passed validation.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl NewAccount {
    /// Checks username, then email, then password; the first failure is reported.
    pub fn new(username: String, email: String, password: String) -> Result<Self, Error> {
        validate_username(&username)?;
        validate_email(&email)?;
        validate_password(&password)?;
        Ok(Self {
            username,
            email,
            password,
        })
    }
}

/// 3–32 characters of `[A-Za-z0-9_.-]`. No `@`, so a login name is never mistaken for an email.
pub fn validate_username(username: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if (3..=32).contains(&username.len()) && username.chars().all(allowed) {
        Ok(())
    } else {
        Err(Error::InvalidUsername)
    }
}

/// 8–128 characters (not bytes: a multi-byte passphrase is not penalised).
pub fn validate_password(password: &str) -> Result<(), Error> {
    if (8..=128).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(Error::InvalidPassword)
    }
}

/// The practical subset of RFC 5321 addresses: `local@domain`, an ASCII dot-atom local part
/// of at most 64 characters, and a domain of at least two DNS labels whose last is not
/// numeric. Quoted local parts, IP literals and internationalised addresses are refused.
pub fn validate_email(email: &str) -> Result<(), Error> {
    let Some((local, domain)) = email.split_once('@') else {
        return Err(Error::InvalidEmail);
    };
    let local_ok = dot_atom(local, |c| {
        c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
    }) && local.len() <= 64;
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if local_ok && domain_ok && email.len() <= 254 {
        Ok(())
    } else {
        Err(Error::InvalidEmail)
    }
}

/// Non-empty atoms of `allowed` characters separated by single dots.
fn dot_atom(text: &str, allowed: impl Fn(char) -> bool) -> bool {
    text.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(&allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["bob", "john_doe", "a.b-c_9", &"x".repeat(32), "ADMIN"] {
            assert!(validate_username(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "john doe",
            "a@b.c",
            "émile",
            "bob!",
            "tab\tx",
            "new\nline",
        ] {
            assert!(
                matches!(validate_username(bad), Err(Error::InvalidUsername)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_count_characters() {
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"p".repeat(128)).is_ok());
        // 8 characters, 16 bytes.
        assert!(validate_password("ééééééée").is_ok());
        for bad in ["", "1234567", &"p".repeat(129)] {
            assert!(
                matches!(validate_password(bad), Err(Error::InvalidPassword)),
                "{bad:?}"
            );
        }
        // 65 three-byte characters are 195 bytes but only 65 characters.
        assert!(validate_password(&"€".repeat(65)).is_ok());
    }

    #[test]
    fn emails() {
        for ok in [
            "john@example.com",
            "John.Doe+tag@mail.example.co.uk",
            "a@b.io",
            "x_y-z@sub-domain.example",
            "o'brien@example.ie",
        ] {
            assert!(validate_email(ok).is_ok(), "{ok:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let long_total = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        for bad in [
            "",
            "plain",
            "@example.com",
            "john@",
            "john@localhost",
            "john@@example.com",
            "jo@hn@example.com",
            "john doe@example.com",
            ".john@example.com",
            "john.@example.com",
            "jo..hn@example.com",
            "john@-example.com",
            "john@example-.com",
            "john@example..com",
            "john@example.com.",
            "john@192.168.0.1",
            "john@[127.0.0.1]",
            "\"john\"@example.com",
            "jöhn@example.com",
            "john@exämple.com",
            " john@example.com",
            "john@example.com\n",
            long_local.as_str(),
            long_label.as_str(),
            long_total.as_str(),
        ] {
            assert!(
                matches!(validate_email(bad), Err(Error::InvalidEmail)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn new_account_reports_the_first_problem_and_hides_the_password() {
        let account = NewAccount::new(
            "bob".into(),
            "bob@example.com".into(),
            "hunter2hunter2".into(),
        )
        .unwrap();
        assert!(!format!("{account:?}").contains("hunter2"));
        assert!(matches!(
            NewAccount::new("b".into(), "bad".into(), "short".into()),
            Err(Error::InvalidUsername)
        ));
        assert!(matches!(
            NewAccount::new("bob".into(), "bad".into(), "short".into()),
            Err(Error::InvalidEmail)
        ));
        assert!(matches!(
            NewAccount::new("bob".into(), "bob@example.com".into(), "short".into()),
            Err(Error::InvalidPassword)
        ));
    }
}
