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

/// How hard a password is to guess, by zxcvbn's estimate (dictionaries of common passwords,
/// names and words, keyboard patterns, repeats, sequences, dates and l33t substitutions),
/// counting the user's own username and email as known words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    /// 0 (guessed at once) to 4 (very hard to guess).
    pub score: u8,
    /// log10 of the estimated number of guesses.
    pub guesses_log10: u8,
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

/// The lowest score a new password may have: below it, an online attacker's throttled
/// guessing (or any offline attack on a leaked hash) finds it quickly.
pub const MIN_PASSWORD_SCORE: u8 = 2;

impl Strength {
    pub fn label(&self) -> &'static str {
        match self.score {
            0 => "Very weak",
            1 => "Weak",
            2 => "Fair",
            3 => "Strong",
            _ => "Very strong",
        }
    }

    pub fn acceptable(&self) -> bool {
        self.score >= MIN_PASSWORD_SCORE
    }
}

/// Estimates `raw`'s strength; `known` are the user's own words (username, email, name).
/// Only the first 128 characters count, the longest password allowed.
pub fn password_strength(raw: &str, known: &[&str]) -> Strength {
    let raw: String = raw.chars().take(128).collect();
    if raw.is_empty() {
        return Strength {
            score: 0,
            guesses_log10: 0,
            warning: None,
            suggestions: vec![],
        };
    }
    let mut words: Vec<String> = Vec::new();
    for k in known.iter().filter(|k| !k.is_empty()) {
        words.push(k.to_lowercase());
        if let Some((local, _)) = k.split_once('@') {
            words.push(local.to_lowercase());
        }
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let e = zxcvbn::zxcvbn(&raw, &refs);
    let feedback = e.feedback();
    Strength {
        score: u8::from(e.score()),
        guesses_log10: e.guesses_log10().clamp(0.0, 255.0) as u8,
        warning: feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
        suggestions: feedback
            .map(|f| f.suggestions().iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    }
}

/// 8–128 characters with upper case, lower case and a digit, not a well-known password, not
/// the username or email itself, and not easy to guess by `password_strength`.
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
    let known: Vec<&str> = [username, email].into_iter().flatten().collect();
    let strength = password_strength(raw, &known);
    if !strength.acceptable() {
        let why = strength
            .warning
            .map(|w| format!(" ({})", w.trim_end_matches('.').to_lowercase()))
            .unwrap_or_default();
        return Err(err(&format!(
            "is too easy to guess{why}; add words or make it longer"
        )));
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

    #[test]
    fn strength_is_an_estimate_of_guessing_not_of_character_classes() {
        // Repeats, a common password dressed up, keyboard walks: weak however long.
        for weak in ["aaaaaaaaaaaa", "Password123!", "Qwerty123456"] {
            let s = password_strength(weak, &[]);
            assert!(s.score < MIN_PASSWORD_SCORE, "{weak}: {s:?}");
            assert!(
                validate_new_password(weak, None, None).is_err(),
                "{weak} is refused"
            );
        }
        let s = password_strength("Password123!", &[]);
        assert!(s.warning.is_some(), "says why: {s:?}");
        // A passphrase is strong without any symbol rules.
        let s = password_strength("correct horse battery staple", &[]);
        assert_eq!((s.score, s.label()), (4, "Very strong"));
        // The user's own name counts as a known word.
        let alone = password_strength("Xylophrax1987", &[]);
        let known = password_strength("Xylophrax1987", &["Xylophrax", "x@example.com"]);
        assert!(known.score < alone.score, "{known:?} vs {alone:?}");
        assert!(validate_new_password("Xylophrax1987", None, None).is_ok());
        assert!(validate_new_password("Xylophrax1987", Some("Xylophrax"), None).is_err());
        assert!(
            validate_new_password("Xylophrax1987", None, Some("xylophrax@example.com")).is_err()
        );
        assert_eq!(password_strength("", &[]).score, 0);
        // Only the 128 characters a password may have are looked at.
        assert!(password_strength(&"Ab1-".repeat(10_000), &[]).score <= 4);
    }
}
