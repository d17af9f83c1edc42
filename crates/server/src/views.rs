//! JSON shapes of users as the API returns them. Secrets (password hash, lockout counters) are
//! not fields here, so no handler can leak them by accident.

use chrono::{DateTime, SecondsFormat, Utc};
use etx_db::users::UserRow;
use etx_domain::Level;
use serde::Serialize;
use utoipa::ToSchema;

pub fn rfc3339(micros: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, micros);
    out
}

/// `2026-11-23T12:34:56.789Z` (UTC, milliseconds) into a buffer, without chrono's general
/// formatter: exports write a million of these.
pub fn write_rfc3339(out: &mut String, micros: i64) {
    use chrono::{Datelike, Timelike};
    let t = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
    let Ok(year) = u32::try_from(t.year()) else {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true));
        return;
    };
    if year > 9999 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true));
        return;
    }
    push_num(out, year, 4);
    out.push('-');
    push_num(out, t.month(), 2);
    out.push('-');
    push_num(out, t.day(), 2);
    out.push('T');
    push_num(out, t.hour(), 2);
    out.push(':');
    push_num(out, t.minute(), 2);
    out.push(':');
    push_num(out, t.second(), 2);
    out.push('.');
    push_num(out, t.nanosecond() / 1_000_000 % 1000, 3);
    out.push('Z');
}

/// `v` zero-padded to `width` (at most 4) digits.
fn push_num(out: &mut String, v: u32, width: usize) {
    let mut buf = [b'0'; 4];
    let mut v = v;
    for b in buf[..width].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in &buf[..width] {
        out.push(char::from(b));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_chrono() {
        use chrono::{DateTime, SecondsFormat, Utc};
        for micros in [
            0,
            1_700_000_000_123_456,
            1_600_000_000_000_999,
            253_402_300_799_999_999,
        ] {
            let expected = DateTime::<Utc>::from_timestamp_micros(micros)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(super::rfc3339(micros), expected);
        }
    }
}

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
