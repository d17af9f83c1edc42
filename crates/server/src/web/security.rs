//! Security pages: two-factor set-up and management, email verification, forgotten password
//! and reset, and (in dev mode only) the local mail outbox.

use super::{
    Layout, PageError, PageResult, WebUser, check_form_csrf, ensure_csrf, error_page, form_expired,
};
use crate::error::ApiError;
use crate::session::ClientInfo;
use crate::state::AppState;
use crate::views::{UserView, rfc3339};
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::security;
use serde::Deserialize;

pub struct Enrolling {
    secret: String,
    otpauth_url: String,
    qr_svg: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "security.html")]
pub struct SecurityPage {
    layout: Layout,
    user: UserView,
    enabled: bool,
    enabled_at: Option<String>,
    backup_left: i64,
    enrolling: Option<Enrolling>,
    /// Backup codes to show once, with a `data:` URL to download them as text.
    backup_codes: Option<(Vec<String>, String)>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    msg: Option<String>,
}

fn notice(q: &NoticeQuery) -> Option<&'static str> {
    match q.msg.as_deref()? {
        "verified" => Some("Your email address is verified."),
        "sent" => Some("A new verification mail is on its way."),
        "already" => Some("Your email address is already verified."),
        "2fa-off" => Some("Two-factor authentication is off."),
        _ => None,
    }
}

async fn page(
    state: &AppState,
    u: &WebUser,
    enrolling: Option<Enrolling>,
    backup_codes: Option<Vec<String>>,
    error: Option<String>,
) -> PageResult<SecurityPage> {
    let s = security::status(state, &u.auth.user.id).await?;
    let backup_codes = backup_codes.map(|codes| {
        let text = format!(
            "ETX Processor backup codes for {}\nEach code signs in once.\n\n{}\n",
            u.auth.user.username,
            codes.join("\n")
        );
        let url = format!(
            "data:text/plain;charset=utf-8,{}",
            form_urlencoded::byte_serialize(text.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        );
        (codes, url)
    });
    Ok(SecurityPage {
        layout: Layout::new(
            Some(UserView::from(&u.auth.user)),
            u.csrf.clone(),
            "security",
        ),
        user: UserView::from(&u.auth.user),
        enabled: s.enabled,
        enabled_at: s.enabled_at.map(rfc3339),
        backup_left: s.backup_codes_left,
        enrolling,
        backup_codes,
        error,
    })
}

fn render(r: PageResult<SecurityPage>, status: StatusCode) -> Response {
    match r {
        Ok(p) => (status, p).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The message for a failed action, or `None` when the failure is not the user's to fix.
fn problem(e: &ApiError) -> String {
    match e {
        ApiError::Validation { fields, message } => fields
            .iter()
            .next()
            .map(|(k, v)| format!("The {k} {v}."))
            .unwrap_or_else(|| message.clone()),
        ApiError::RateLimited { .. } => "Too many attempts. Wait a minute and try again.".into(),
        ApiError::Conflict { message, .. } | ApiError::BadRequest(message) => {
            let mut m = message.clone();
            if let Some(c) = m.get(0..1) {
                m.replace_range(0..1, &c.to_uppercase());
            }
            m
        }
        _ => "Something went wrong. Please try again.".into(),
    }
}

async fn failed(state: &AppState, u: &WebUser, e: ApiError) -> Response {
    if matches!(e, ApiError::Internal(_)) {
        return PageError::from(e).into_response();
    }
    let status = e.status();
    render(page(state, u, None, None, Some(problem(&e))).await, status)
}

pub async fn view_security_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    match page(&state, &u, None, None, None).await {
        Ok(mut p) => {
            p.layout.notice = notice(&q);
            p.into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

pub async fn view_2fa_setup_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::setup(&state, &u.auth.user).await {
        Ok(e) => {
            let enrolling = Enrolling {
                secret: e.secret,
                otpauth_url: e.otpauth_url,
                qr_svg: e.qr_svg,
            };
            render(
                page(&state, &u, Some(enrolling), None, None).await,
                StatusCode::OK,
            )
        }
        Err(e) => failed(&state, &u, e.into()).await,
    }
}

pub async fn view_2fa_verify_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::confirm(&state, &u.auth.user, &u.auth.session_id, &f.code)
        .await
        .map_err(ApiError::from)
    {
        Ok(codes) => render(
            page(&state, &u, None, Some(codes), None).await,
            StatusCode::OK,
        ),
        Err(e @ ApiError::Validation { .. }) => {
            // Keep the QR code on screen so the user can try the next code.
            let enrolling = re_enrolling(&state, &u).await;
            let status = e.status();
            render(
                page(&state, &u, enrolling, None, Some(problem(&e))).await,
                status,
            )
        }
        Err(e) => failed(&state, &u, e).await,
    }
}

/// The pending enrolment again, read back from the sealed secret.
async fn re_enrolling(state: &AppState, u: &WebUser) -> Option<Enrolling> {
    let row = state.db.two_factor(&u.auth.user.id).await.ok()??;
    if row.enabled {
        return None;
    }
    let secret = state
        .secret_box
        .open(&row.secret_sealed, u.auth.user.id.as_bytes())
        .ok()?;
    let otpauth_url = etx_auth::totp::otpauth_url(
        &state.config.two_factor.issuer,
        &u.auth.user.username,
        &secret,
    );
    Some(Enrolling {
        secret: etx_auth::totp::base32(&secret),
        qr_svg: security::qr_svg(&otpauth_url).ok()?,
        otpauth_url,
    })
}

pub async fn view_2fa_backup_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::regenerate_backup_codes(&state, &u.auth.user, &f.code).await {
        Ok(codes) => render(
            page(&state, &u, None, Some(codes), None).await,
            StatusCode::OK,
        ),
        Err(e) => failed(&state, &u, e.into()).await,
    }
}

pub async fn view_2fa_disable_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::disable(&state, &u.auth.user, &f.password, &f.code).await {
        Ok(()) => Redirect::to("/security?msg=2fa-off").into_response(),
        Err(e) => failed(&state, &u, e.into()).await,
    }
}

pub async fn view_email_code_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::verify_email_code(&state, &u.auth.user, &f.code).await {
        Ok(()) => Redirect::to("/security?msg=verified").into_response(),
        Err(e) => failed(&state, &u, e.into()).await,
    }
}

pub async fn view_email_resend_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<CodeForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::resend_verification(&state, &u.auth.user).await {
        Ok(true) => Redirect::to("/security?msg=sent").into_response(),
        Ok(false) => Redirect::to("/security?msg=already").into_response(),
        Err(e) => failed(&state, &u, e.into()).await,
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The link in the verification mail. Opening it is the proof, so it verifies at once.
pub async fn view_verify_email_get(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    match security::verify_email_token(&state, &q.token)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => error_page(
            StatusCode::OK,
            "Email verified",
            "Thank you: your email address is verified.",
        ),
        Err(ApiError::BadRequest(m)) => error_page(StatusCode::BAD_REQUEST, "Link not valid", &m),
        Err(e) => PageError::from(e).into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "forgot.html")]
pub struct ForgotPage {
    layout: Layout,
    email: String,
    sent: bool,
    error: Option<String>,
}

pub async fn view_forgot_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let page = ForgotPage {
        layout: Layout::new(None, csrf, "login"),
        email: String::new(),
        sent: false,
        error: None,
    };
    (out, page).into_response()
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

pub async fn view_forgot_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Form(f): Form<ForgotForm>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    let result = security::forgot_password(&state, &f.email, &client)
        .await
        .map_err(ApiError::from);
    let status = result
        .as_ref()
        .err()
        .map_or(StatusCode::OK, ApiError::status);
    let page = ForgotPage {
        layout: Layout::new(None, csrf, "login"),
        sent: result.is_ok(),
        error: result.err().map(|e| problem(&e)),
        email: f.email,
    };
    (status, out, page).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "reset.html")]
pub struct ResetPage {
    layout: Layout,
    token: String,
    live: bool,
    error: Option<String>,
}

pub async fn view_reset_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let live = match security::reset_token_live(&state, &q.token).await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).into_response(),
    };
    let status = if live {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = ResetPage {
        layout: Layout::new(None, csrf, "login"),
        token: q.token,
        live,
        error: None,
    };
    (status, out, page).into_response()
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

pub async fn view_reset_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Form(f): Form<ResetForm>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match security::reset_password(&state, &f.token, &f.new_password, &client)
        .await
        .map_err(ApiError::from)
    {
        Ok(()) => Redirect::to("/login?msg=reset").into_response(),
        Err(e) => {
            let status = e.status();
            let live = !matches!(e, ApiError::BadRequest(_));
            let page = ResetPage {
                layout: Layout::new(None, csrf, "login"),
                token: f.token,
                live,
                error: Some(problem(&e)),
            };
            (status, out, page).into_response()
        }
    }
}

pub struct DevMail {
    file: String,
    to: String,
    subject: String,
    date: String,
    text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "dev_mail.html")]
pub struct DevMailPage {
    layout: Layout,
    mails: Vec<DevMail>,
    dir: String,
}

const DEV_MAIL_SHOWN: usize = 30;

/// Development only: the newest messages the file transport wrote, readable in the browser.
/// In production (or with SMTP) there is no such page. The messages are everyone's, reset and
/// verification links included, so even in dev only admins see it: anyone else signed in gets
/// a 404, and a visitor the login page.
pub async fn view_dev_mail_get(State(state): State<AppState>, u: Option<WebUser>) -> Response {
    let here = || axum::http::Uri::from_static("/dev/mail");
    let Some(dir) = state.mailer.outbox_dir().filter(|_| state.config.is_dev()) else {
        return super::not_found(here(), u).await;
    };
    let Some(u) = u else {
        return super::LoginRedirect.into_response();
    };
    if !u.auth.role.is_admin() {
        return super::not_found(here(), Some(u)).await;
    }
    let dir = dir.to_path_buf();
    let mails = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || read_outbox(&dir)
    })
    .await
    .unwrap_or_default();
    DevMailPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), ""),
        mails,
        dir: dir.display().to_string(),
    }
    .into_response()
}

fn read_outbox(dir: &std::path::Path) -> Vec<DevMail> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
        .collect();
    // Names start with the queue time, so the newest sort last.
    names.sort_unstable_by(|a, b| b.cmp(a));
    names
        .into_iter()
        .take(DEV_MAIL_SHOWN)
        .filter_map(|n| {
            let raw = std::fs::read_to_string(dir.join(&n)).ok()?;
            Some(parse_eml(n, &raw))
        })
        .collect()
}

fn parse_eml(file: String, raw: &str) -> DevMail {
    use etx_core::mail::{header_value, plain_text_part};
    DevMail {
        file,
        to: header_value(raw, "To"),
        subject: header_value(raw, "Subject"),
        date: header_value(raw, "Date"),
        text: plain_text_part(raw),
    }
}
