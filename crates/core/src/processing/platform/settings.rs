//! Each user's platform connection settings: URIs, API version and login in the clear, the
//! password and data source key sealed.
//!
//! The password and the data source key are stored together as the JSON
//! `{"password","ds_key"}` sealed with the server's `SecretBox` (ChaCha20-Poly1305, key derived
//! from the server secret) with the associated data `etx-platform-settings:<user id>`: a
//! database dump alone reveals neither, and a sealed value copied to another user's row does
//! not open. They are never shown again: a view says only that they are set. Saving without a
//! password (or key) keeps the stored one, as long as the URIs stay the same: pointing the
//! settings at another address needs both entered again, so a borrowed session cannot send the
//! stored secrets to a host of its choosing. Changes and removals are audited, without secrets.

use crate::Core;
use crate::error::{CoreError, CoreResult};
use crate::time::rfc3339;
use etx_db::now_micros;
use etx_db::platform::PlatformSettingsRow;
use etx_db::users::UserRow;
use etx_domain::{AuditAction, FieldErrors};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The API version used when none is given.
pub const DEFAULT_API_VERSION: &str = "ctx/v1";

const MAX_URI: usize = 2048;
const MAX_EMAIL: usize = 254;
const MAX_SECRET: usize = 1024;
const MAX_API_VERSION: usize = 64;

/// A user's settings, decrypted: what a connection needs.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// `http(s)://…`, no trailing `/`.
    pub http_uri: String,
    /// `ws(s)://…`, no trailing `/`.
    pub ws_uri: String,
    /// Path between the HTTP URI and an API call's name, e.g. `ctx/v1`.
    pub api_version: String,
    pub email: String,
    pub password: SecretString,
    /// The data source key, sent as `DTX-DS-KEY`.
    pub ds_key: SecretString,
}

/// The settings as the API and pages show them: never the password or the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsView {
    /// `false` when the user has none; the other fields are then empty.
    pub configured: bool,
    pub http_uri: Option<String>,
    pub ws_uri: Option<String>,
    pub api_version: Option<String>,
    pub email: Option<String>,
    pub password_set: bool,
    pub ds_key_set: bool,
    pub updated_at: Option<String>,
}

impl SettingsView {
    fn none() -> Self {
        SettingsView {
            configured: false,
            http_uri: None,
            ws_uri: None,
            api_version: None,
            email: None,
            password_set: false,
            ds_key_set: false,
            updated_at: None,
        }
    }
}

impl From<&PlatformSettingsRow> for SettingsView {
    fn from(r: &PlatformSettingsRow) -> Self {
        SettingsView {
            configured: true,
            http_uri: Some(r.http_uri.clone()),
            ws_uri: Some(r.ws_uri.clone()),
            api_version: Some(r.api_version.clone()),
            email: Some(r.email.clone()),
            password_set: true,
            ds_key_set: true,
            updated_at: Some(rfc3339(r.updated_at)),
        }
    }
}

/// New settings. `password` and `ds_key` may be left out (or `null`) to keep the stored ones
/// while `http_uri` and `ws_uri` stay the same; the first save needs both.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// `http://` or `https://`, e.g. `https://platform.example.com`.
    pub http_uri: String,
    /// `ws://` or `wss://`, e.g. `wss://platform.example.com/ws`.
    pub ws_uri: String,
    /// Default `ctx/v1`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The platform login's email (or user name).
    pub email: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password))]
    pub password: Option<SecretString>,
    /// The data source key.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password))]
    pub ds_key: Option<SecretString>,
}

/// The sealed part.
#[derive(Serialize, Deserialize)]
struct Secrets {
    password: String,
    ds_key: String,
}

/// Input that passed validation; secrets still optional.
struct Checked {
    http_uri: String,
    ws_uri: String,
    api_version: String,
    email: String,
    password: Option<SecretString>,
    ds_key: Option<SecretString>,
}

fn aad(user_id: &str) -> Vec<u8> {
    format!("etx-platform-settings:{user_id}").into_bytes()
}

/// A URI with one of `schemes`, a host, and no credentials, query or fragment; returned
/// trimmed and without a trailing `/`.
fn check_uri(f: &mut FieldErrors, field: &str, raw: &str, schemes: &[&str]) -> String {
    let uri = raw.trim().trim_end_matches('/').to_string();
    let wanted = schemes.join(" or ");
    if uri.is_empty() {
        f.add(field, "is required");
    } else if uri.len() > MAX_URI {
        f.add(field, format!("must be at most {MAX_URI} characters"));
    } else {
        match reqwest::Url::parse(&uri) {
            Err(_) => f.add(field, format!("must be a {wanted} URL")),
            Ok(u) if !schemes.contains(&u.scheme()) => {
                f.add(field, format!("must be a {wanted} URL"))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => f.add(field, "must name a host"),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => f.add(
                field,
                "must not contain credentials; use the email and password fields",
            ),
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                f.add(field, "must not have a query or fragment")
            }
            Ok(_) => {}
        }
    }
    uri
}

fn check_secret(
    f: &mut FieldErrors,
    field: &str,
    v: Option<SecretString>,
    header_safe: bool,
) -> Option<SecretString> {
    let s = v?;
    let text = s.expose_secret();
    if text.is_empty() {
        f.add(
            field,
            "must not be empty; leave it out to keep the stored one",
        );
    } else if text.len() > MAX_SECRET {
        f.add(field, format!("must be at most {MAX_SECRET} characters"));
    } else if header_safe && !text.bytes().all(|b| b.is_ascii_graphic()) {
        f.add(field, "must be printable ASCII without spaces");
    } else if text.chars().any(char::is_control) {
        f.add(field, "must not contain control characters");
    }
    Some(s)
}

fn check(input: SettingsInput) -> Result<Checked, FieldErrors> {
    let mut f = FieldErrors::new();
    let http_uri = check_uri(&mut f, "http_uri", &input.http_uri, &["http", "https"]);
    let ws_uri = check_uri(&mut f, "ws_uri", &input.ws_uri, &["ws", "wss"]);
    let api_version = input
        .api_version
        .as_deref()
        .map(|v| v.trim().trim_matches('/'))
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION)
        .to_string();
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if api_version.len() > MAX_API_VERSION {
        f.add(
            "api_version",
            format!("must be at most {MAX_API_VERSION} characters"),
        );
    } else if !api_version.split('/').all(segment_ok) {
        f.add(
            "api_version",
            "must be path segments of letters, digits, '.', '_' or '-' (like ctx/v1)",
        );
    }
    let email = input.email.trim().to_string();
    if email.is_empty() {
        f.add("email", "is required");
    } else if email.len() > MAX_EMAIL {
        f.add("email", format!("must be at most {MAX_EMAIL} characters"));
    } else if email.chars().any(char::is_control) {
        f.add("email", "must not contain control characters");
    }
    let password = check_secret(&mut f, "password", input.password, false);
    let ds_key = check_secret(&mut f, "ds_key", input.ds_key, true);
    f.into_result()?;
    Ok(Checked {
        http_uri,
        ws_uri,
        api_version,
        email,
        password,
        ds_key,
    })
}

fn open_secrets(state: &Core, row: &PlatformSettingsRow) -> Option<Secrets> {
    let plain = state
        .secret_box
        .open(&row.secrets, &aad(&row.user_id))
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// The user's settings decrypted, for a connection; `None` when there are none.
pub async fn settings(state: &Core, user: &UserRow) -> CoreResult<Option<PlatformSettings>> {
    let Some(row) = state
        .db
        .platform_settings(state.db.conn(), &user.id)
        .await?
    else {
        return Ok(None);
    };
    let s = open_secrets(state, &row).ok_or_else(|| {
        CoreError::Unavailable(
            "the stored ETX platform password cannot be decrypted (was the server secret \
             changed?); save the platform settings again"
                .into(),
        )
    })?;
    Ok(Some(PlatformSettings {
        http_uri: row.http_uri,
        ws_uri: row.ws_uri,
        api_version: row.api_version,
        email: row.email,
        password: s.password.into(),
        ds_key: s.ds_key.into(),
    }))
}

/// The user's settings as shown: no password or key, only whether they are set.
pub async fn view(state: &Core, user: &UserRow) -> CoreResult<SettingsView> {
    Ok(state
        .db
        .platform_settings(state.db.conn(), &user.id)
        .await?
        .as_ref()
        .map_or_else(SettingsView::none, SettingsView::from))
}

/// Creates or replaces the user's settings. Invalid input changes nothing.
pub async fn save(state: &Core, user: &UserRow, input: SettingsInput) -> CoreResult<SettingsView> {
    let c = check(input).map_err(CoreError::validation)?;
    let db = &state.db;
    let tx = db.begin_write().await?;
    let old = db.platform_settings(&tx, &user.id).await?;
    // The stored secrets only ever go to the addresses they were entered for: a session that
    // points the settings elsewhere must know them.
    let moved = old
        .as_ref()
        .is_some_and(|o| o.http_uri != c.http_uri || o.ws_uri != c.ws_uri);
    if moved && (c.password.is_none() || c.ds_key.is_none()) {
        let mut f = FieldErrors::new();
        let again = "is required when the platform's address changes";
        if c.password.is_none() {
            f.add("password", again);
        }
        if c.ds_key.is_none() {
            f.add("ds_key", again);
        }
        return Err(CoreError::validation(f));
    }
    let kept = match (&old, c.password.is_none() || c.ds_key.is_none()) {
        (Some(row), true) => Some(open_secrets(state, row).ok_or_else(|| {
            CoreError::field(
                if c.password.is_none() {
                    "password"
                } else {
                    "ds_key"
                },
                "the stored one cannot be decrypted any more; enter it again",
            )
        })?),
        _ => None,
    };
    let mut f = FieldErrors::new();
    let password = match (&c.password, &kept) {
        (Some(p), _) => p.expose_secret().to_string(),
        (None, Some(k)) => k.password.clone(),
        (None, None) => {
            f.add("password", "is required");
            String::new()
        }
    };
    let ds_key = match (&c.ds_key, &kept) {
        (Some(k), _) => k.expose_secret().to_string(),
        (None, Some(k)) => k.ds_key.clone(),
        (None, None) => {
            f.add("ds_key", "is required");
            String::new()
        }
    };
    f.into_result().map_err(CoreError::validation)?;
    let plain = serde_json::to_vec(&Secrets { password, ds_key })
        .map_err(|e| CoreError::Internal(e.into()))?;
    let now = now_micros();
    let row = PlatformSettingsRow {
        user_id: user.id.clone(),
        http_uri: c.http_uri,
        ws_uri: c.ws_uri,
        api_version: c.api_version,
        email: c.email,
        secrets: state.secret_box.seal(&plain, &aad(&user.id)),
        created_at: old.as_ref().map_or(now, |o| o.created_at),
        updated_at: now,
    };
    db.save_platform_settings(&tx, &row).await?;
    let details = json!({
        "created": old.is_none(),
        "http_uri": row.http_uri,
        "ws_uri": row.ws_uri,
        "api_version": row.api_version,
        "email": row.email,
        "password_changed": c.password.is_some(),
        "ds_key_changed": c.ds_key.is_some(),
    });
    crate::audit::Event::new(Some(&user.id), AuditAction::EtxConfigUpdate)
        .target("etx_config", &user.id)
        .details(details)
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    Ok(SettingsView::from(&row))
}

/// Removes the user's settings; `NotFound` when there were none.
pub async fn delete(state: &Core, user: &UserRow) -> CoreResult<()> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let Some(old) = db.platform_settings(&tx, &user.id).await? else {
        return Err(CoreError::NotFound);
    };
    db.delete_platform_settings(&tx, &user.id).await?;
    crate::audit::Event::new(Some(&user.id), AuditAction::EtxConfigDelete)
        .target("etx_config", &user.id)
        .details(json!({"http_uri": old.http_uri, "email": old.email}))
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SettingsInput {
        SettingsInput {
            http_uri: " https://platform.example.com/ ".into(),
            ws_uri: "wss://platform.example.com/ws".into(),
            api_version: None,
            email: "ops@example.com".into(),
            password: Some("pw".into()),
            ds_key: Some("KEY-1".into()),
        }
    }

    fn errors(i: SettingsInput) -> Vec<String> {
        match check(i) {
            Ok(_) => vec![],
            Err(f) => f.0.into_keys().collect(),
        }
    }

    #[test]
    fn good_settings_are_normalised() {
        let c = check(input()).ok().unwrap();
        assert_eq!(c.http_uri, "https://platform.example.com");
        assert_eq!(c.api_version, "ctx/v1");
        let mut i = input();
        i.api_version = Some("/ctx/v2/".into());
        assert_eq!(check(i).ok().unwrap().api_version, "ctx/v2");
    }

    #[test]
    fn bad_settings_name_their_fields() {
        let mut i = input();
        i.http_uri = "ftp://x".into();
        i.ws_uri = "https://platform.example.com".into();
        i.email = "  ".into();
        i.api_version = Some("ctx/../v1".into());
        i.password = Some("".into());
        i.ds_key = Some("has space".into());
        assert_eq!(
            errors(i),
            [
                "api_version",
                "ds_key",
                "email",
                "http_uri",
                "password",
                "ws_uri"
            ]
        );
        let mut i = input();
        i.http_uri = "https://user:pw@platform.example.com".into();
        assert_eq!(errors(i), ["http_uri"]);
        let mut i = input();
        i.ws_uri = "wss://platform.example.com/ws?x=1".into();
        assert_eq!(errors(i), ["ws_uri"]);
        let mut i = input();
        i.http_uri = format!("https://example.com/{}", "a".repeat(MAX_URI));
        assert_eq!(errors(i), ["http_uri"]);
        let mut i = input();
        i.password = None;
        i.ds_key = None;
        assert!(errors(i).is_empty(), "left out: kept");
    }
}
