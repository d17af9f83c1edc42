//! `/etx`: the signed-in user's ETX platform connection settings as a page: what is stored (the
//! password and data source key only as set or not), the form that saves them and the removal.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageResult, Stamp, WebUser, check_form_csrf, form_error, form_expired};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use etx_core::error::CoreError;
use etx_core::processing::platform::settings::{
    self, DEFAULT_API_VERSION, SettingsInput, SettingsView,
};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The form's visible fields: the stored values, or what was just submitted when it was
/// refused. The password and key fields always start empty.
#[derive(Default)]
pub struct FormValues {
    pub http_uri: String,
    pub ws_uri: String,
    pub api_version: String,
    pub email: String,
}

/// What is stored, as shown: the password and key only as whether they are set.
pub struct Stored {
    pub configured: bool,
    pub http_uri: String,
    pub ws_uri: String,
    pub api_version: String,
    pub email: String,
    pub password_set: bool,
    pub ds_key_set: bool,
    pub updated_at: Stamp,
}

impl From<SettingsView> for Stored {
    fn from(v: SettingsView) -> Self {
        Stored {
            configured: v.configured,
            http_uri: v.http_uri.unwrap_or_default(),
            ws_uri: v.ws_uri.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            email: v.email.unwrap_or_default(),
            password_set: v.password_set,
            ds_key_set: v.ds_key_set,
            updated_at: Stamp(v.updated_at.unwrap_or_default()),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "etx.html")]
pub struct EtxPage {
    layout: Layout,
    stored: Stored,
    form: FormValues,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

/// Fixed messages for a refused form, chosen by key so nothing from the URL reaches the page.
fn problem(key: &str) -> Option<&'static str> {
    match key {
        "etx-none" => Some("There were no platform settings to remove."),
        _ => None,
    }
}

async fn page(
    state: &AppState,
    u: &WebUser,
    form: Option<FormValues>,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
    msg: Option<String>,
) -> PageResult<EtxPage> {
    let stored = Stored::from(
        settings::view(state, &u.auth.user)
            .await
            .map_err(ApiError::from)?,
    );
    let form = form.unwrap_or_else(|| FormValues {
        http_uri: stored.http_uri.clone(),
        ws_uri: stored.ws_uri.clone(),
        api_version: if stored.configured {
            stored.api_version.clone()
        } else {
            DEFAULT_API_VERSION.into()
        },
        email: stored.email.clone(),
    });
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "etx");
    let q = NoticeQuery { msg };
    layout.notice = notice(&q);
    Ok(EtxPage {
        layout,
        stored,
        form,
        error: error.or_else(|| q.msg.as_deref().and_then(problem).map(str::to_string)),
        field_errors,
    })
}

pub async fn view_etx_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    Ok(page(&state, &u, None, None, BTreeMap::new(), q.msg)
        .await?
        .into_response())
}

#[derive(Deserialize)]
pub struct SettingsForm {
    pub csrf_token: String,
    #[serde(default)]
    pub http_uri: String,
    #[serde(default)]
    pub ws_uri: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub email: String,
    /// Empty keeps the stored one.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Empty keeps the stored one.
    #[serde(default)]
    pub ds_key: Option<SecretString>,
}

/// An empty secret field means "keep the stored one", as leaving it out of the API's PUT does.
fn entered(s: Option<SecretString>) -> Option<SecretString> {
    use secrecy::ExposeSecret;
    s.filter(|s| !s.expose_secret().is_empty())
}

/// Saves the settings; a refused form shows the page again with the field messages and the
/// values typed (never the password or key), and nothing stored changes.
pub async fn view_etx_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<SettingsForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    let typed = FormValues {
        http_uri: f.http_uri.clone(),
        ws_uri: f.ws_uri.clone(),
        api_version: f.api_version.clone(),
        email: f.email.clone(),
    };
    let input = SettingsInput {
        http_uri: f.http_uri,
        ws_uri: f.ws_uri,
        api_version: Some(f.api_version).filter(|v| !v.trim().is_empty()),
        email: f.email,
        password: entered(f.password),
        ds_key: entered(f.ds_key),
    };
    match settings::save(&state, &u.auth.user, input).await {
        Ok(_) => Ok(Redirect::to("/etx?msg=etx-saved").into_response()),
        Err(e) => {
            let (error, fields) = form_error(ApiError::from(e));
            let p = page(&state, &u, Some(typed), error, fields, None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    pub csrf_token: String,
}

pub async fn view_etx_delete_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<RemoveForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    match settings::delete(&state, &u.auth.user).await {
        Ok(()) => Ok(Redirect::to("/etx?msg=etx-removed").into_response()),
        Err(CoreError::NotFound) => Ok(Redirect::to("/etx?msg=etx-none").into_response()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}
