//! Shapes built from database rows that both the JSON API and the pages show: users here,
//! the rest in the submodules. Secrets (password hash, lockout counters) are not fields here,
//! so no handler can leak them by accident.

pub mod audit;
pub mod mail;
pub mod market;
pub mod wallet;

use etx_db::users::UserRow;
use etx_domain::Level;
use serde::Serialize;
use utoipa::ToSchema;

pub use etx_core::time::{rfc3339, write_rfc3339};

pub fn avatar_url(u: &UserRow) -> Option<String> {
    u.avatar_key
        .as_ref()
        .map(|_| format!("/api/users/{}/avatar?v={}", u.id, u.updated_at))
}

/// The full record: for the user themself and for staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    #[schema(example = "user")]
    pub role: String,
    pub avatar_url: Option<String>,
    pub level: i64,
    pub exp: i64,
    /// Experience inside the current level and the amount that completes it.
    pub exp_into_level: i64,
    pub exp_for_next_level: i64,
    pub is_active: bool,
    pub is_verified: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        let l = Level::from_exp(u.exp);
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            avatar_url: avatar_url(u),
            level: l.level,
            exp: u.exp,
            exp_into_level: l.exp_into_level,
            exp_for_next_level: l.exp_for_next,
            is_active: u.is_active,
            is_verified: u.is_verified,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// What any signed-in user may see of another.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicUserView {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub role: String,
    pub avatar_url: Option<String>,
    pub level: i64,
    pub exp: i64,
}

impl From<&UserRow> for PublicUserView {
    fn from(u: &UserRow) -> Self {
        PublicUserView {
            id: u.id.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            avatar_url: avatar_url(u),
            level: Level::from_exp(u.exp).level,
            exp: u.exp,
        }
    }
}

/// A User-Agent as a person names their device: "Chrome on Linux", "Safari on iPhone",
/// "curl". Edge, Opera and Samsung Internet say "Chrome" and "Safari" in their strings too,
/// so the more specific names are looked for first.
pub fn device_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return "Unknown device".into();
    };
    const BROWSERS: &[(&str, &str)] = &[
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Version/", "Safari"),
        ("curl/", "curl"),
        ("python-requests/", "Python requests"),
        ("python-httpx/", "Python httpx"),
        ("okhttp/", "OkHttp"),
        ("Wget/", "Wget"),
    ];
    const SYSTEMS: &[(&str, &str)] = &[
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("Windows", "Windows"),
        ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    let browser = BROWSERS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name);
    let system = SYSTEMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.into(),
        (None, Some(s)) => format!("A browser on {s}"),
        // An unknown client: its product name, the part before the first slash.
        (None, None) => ua
            .split(['/', ' '])
            .next()
            .filter(|p| !p.is_empty())
            .map(|p| p.chars().take(40).collect())
            .unwrap_or_else(|| "Unknown device".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn devices_are_named_as_people_say_them() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("etx-sync/2.1 (build 7)", "etx-sync"),
            ("", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(device_name(Some(ua)), want, "{ua}");
        }
        assert_eq!(device_name(None), "Unknown device");
    }
}
