//! Parsed user input: a `Username`, `Email` or `Password` value exists only if it passed the rules
//! of SPEC §5, so code further in never re-checks them.

use crate::ValidationError;

/// 3–50 characters of `[A-Za-z0-9_.-]`; uniqueness is case-insensitive (see `lower`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(3..=50).contains(&n) {
            return Err(ValidationError::new(
                "username",
                "must be 3 to 50 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ValidationError::new(
                "username",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Username(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn lower(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A syntactically plausible address; stored as given, compared lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        let bad = || ValidationError::new("email", "must be a valid email address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(bad());
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn lower(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A password that meets the policy. Deliberately not `Debug`-printable in clear.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// 8–128 characters with upper case, lower case and a digit, not a well-known password, and not
/// the username or email itself.
pub fn validate_new_password(
    raw: &str,
    username: Option<&str>,
    email: Option<&str>,
) -> Result<Password, ValidationError> {
    let err = |m: &str| ValidationError::new("password", m);
    let n = raw.chars().count();
    if n < 8 {
        return Err(err("must be at least 8 characters"));
    }
    if n > 128 {
        return Err(err("must be at most 128 characters"));
    }
    if !raw.chars().any(|c| c.is_uppercase())
        || !raw.chars().any(|c| c.is_lowercase())
        || !raw.chars().any(|c| c.is_ascii_digit())
    {
        return Err(err(
            "must contain an upper-case letter, a lower-case letter and a digit",
        ));
    }
    let lower = raw.to_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Err(err("is too common; choose another"));
    }
    let same_as = |other: Option<&str>| other.is_some_and(|o| o.to_lowercase() == lower);
    if same_as(username) || same_as(email) {
        return Err(err("must not be your username or email"));
    }
    Ok(Password(raw.to_string()))
}

/// Lower-cased entries from public breach lists that also satisfy the composition rule once
/// capitalised, which is exactly what people try first.
const COMMON_PASSWORDS: &[&str] = &[
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword1",
    "qwerty123",
    "qwerty1234",
    "qwertyuiop1",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein123",
    "admin123",
    "admin1234",
    "administrator1",
    "abc12345",
    "abcd1234",
    "iloveyou1",
    "sunshine1",
    "princess1",
    "football1",
    "baseball1",
    "monkey123",
    "dragon123",
    "master123",
    "superman1",
    "trustno1",
    "starwars1",
    "changeme1",
    "changeme123",
    "summer2024",
    "summer2025",
    "summer2026",
    "winter2024",
    "winter2025",
    "winter2026",
    "spring2025",
    "autumn2025",
    "secret123",
    "login123",
    "test1234",
    "testing123",
    "hello123",
    "freedom1",
    "shadow123",
    "michael1",
    "charlie1",
    "jennifer1",
    "jordan23",
    "computer1",
    "internet1",
    "whatever1",
    "password!1",
    "zaq12wsx",
    "1qaz2wsx",
    "qazwsx123",
    "asdfgh123",
    "default1",
    "guest1234",
    "user1234",
    "root1234",
    "company1",
    "company123",
    "mustang1",
    "access14",
    "batman123",
    "killer123",
    "pokemon1",
    "liverpool1",
    "chelsea1",
    "arsenal1",
    "letmein!1",
    "a1b2c3d4",
    "aa123456",
    "qwe12345",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(51)).is_err());
        assert!(Username::parse("bad name").is_err());
        assert!(Username::parse("bad<script>").is_err());
        let u = Username::parse(" Alice_1.x-y ").unwrap();
        assert_eq!(u.as_str(), "Alice_1.x-y");
        assert_eq!(u.lower(), "alice_1.x-y");
    }

    #[test]
    fn emails() {
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.de", "a@-b.com", "a@b..com", "a@@b.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse("Bob@Example.COM").unwrap().lower(),
            "bob@example.com"
        );
    }

    #[test]
    fn password_policy() {
        assert!(validate_new_password("Short1", None, None).is_err());
        assert!(validate_new_password("alllowercase1", None, None).is_err());
        assert!(validate_new_password("NoDigitsHere", None, None).is_err());
        assert!(validate_new_password("Password123", None, None).is_err());
        assert!(validate_new_password(&format!("Aa1{}", "x".repeat(126)), None, None).is_err());
        assert!(validate_new_password("Alice12345", Some("alice12345"), None).is_err());
        let p = validate_new_password("Correct-Horse-9", None, None).unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
