//! Reading and writing the three cookies: `access_token` and `refresh_token` (HttpOnly) and
//! `csrf_token` (readable by scripts, echoed back in `X-CSRF-Token`).

use axum::http::{HeaderMap, HeaderValue, header};
use etx_core::session::Issued;

pub const ACCESS: &str = "access_token";
pub const REFRESH: &str = "refresh_token";
pub const CSRF: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value. `max_age_secs = 0` deletes the cookie.
pub fn build(
    name: &str,
    value: &str,
    max_age_secs: i64,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    build_for(name, value, Some(max_age_secs), http_only, secure)
}

/// A cookie kept for `max_age_secs`, or for the browser session with `None`.
fn build_for(
    name: &str,
    value: &str,
    max_age_secs: Option<i64>,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut s = format!("{name}={value}; Path=/; SameSite=Lax");
    if let Some(age) = max_age_secs {
        s.push_str(&format!("; Max-Age={age}"));
    }
    if http_only {
        s.push_str("; HttpOnly");
    }
    if secure {
        s.push_str("; Secure");
    }
    HeaderValue::from_str(&s).expect("cookie values are URL-safe base64 or JWTs")
}

pub fn append(headers: &mut HeaderMap, v: HeaderValue) {
    headers.append(header::SET_COOKIE, v);
}

/// Sets the session cookies for freshly issued tokens; `secure` adds the `Secure` attribute
/// (`AppState::secure_cookies`).
pub trait SetCookies {
    fn set_cookies(&self, secure: bool, h: &mut HeaderMap);
}

impl SetCookies for Issued {
    fn set_cookies(&self, secure: bool, h: &mut HeaderMap) {
        // Without "remember me" they are session cookies: gone when the browser closes (the
        // server still ends the session after its own, shorter lifetime).
        let keep = |secs: i64| self.remember_me.then_some(secs);
        for (name, value, age, http_only) in [
            (ACCESS, &self.access_token, keep(self.expires_in), true),
            (
                REFRESH,
                &self.refresh_token,
                keep(self.refresh_max_age),
                true,
            ),
            (CSRF, &self.csrf_token, keep(self.refresh_max_age), false),
        ] {
            append(h, build_for(name, value, age, http_only, secure));
        }
    }
}

/// Deletes the session cookies; `secure` as for `SetCookies::set_cookies`.
pub fn clear_cookies(secure: bool, h: &mut HeaderMap) {
    for (name, http_only) in [(ACCESS, true), (REFRESH, true), (CSRF, false)] {
        append(h, build(name, "", 0, http_only, secure));
    }
}
