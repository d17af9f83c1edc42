//! Account pages: home, login, registration, logout and profile (details, avatar, password).

use super::notice::{NoticeQuery, notice};
use super::{
    Layout, PageError, PageResult, WebUser, check_form_csrf, check_sign_in_form, ensure_csrf,
    filters, form_expired,
};
use crate::cookies::SetCookies;
use crate::error::ApiError;
use crate::extract::{check_content_length, read_image_part};
use crate::session::ClientInfo;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::accounts::{self, ProfileChange, Registration};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomePage {
    layout: Layout,
    user: UserView,
    initial: String,
    worth: WorthCard,
    recent: Vec<crate::views::wallet::TransactionView>,
    /// (title, points, earned)
    achievements: Vec<(&'static str, i64, bool)>,
    /// This week's leaders: (rank, username, points)
    leaders: Vec<(usize, String, i64)>,
}

/// The home page's total: what everything held is worth, its 24-hour move, and each holding
/// with what the page's script needs to follow live prices.
pub struct WorthCard {
    value: i64,
    /// "+$12.00 (+0.10 %)"; empty without price history.
    change: String,
    down: bool,
    lines: Vec<WorthRow>,
}

pub struct WorthRow {
    asset: String,
    amount: String,
    /// US cents, if the feed prices it.
    value: Option<i64>,
    price: String,
    open: String,
}

impl From<etx_core::portfolio::Worth> for WorthCard {
    fn from(w: etx_core::portfolio::Worth) -> Self {
        let cents = |c: i64| super::group_digits(&etx_domain::money::format_amount(c.abs(), 2));
        let change = match w.change_24h {
            Some(c) => {
                let sign = if c < 0 { "\u{2212}" } else { "+" };
                let pct = w.change_bps.map_or(String::new(), |b| {
                    format!(
                        " ({sign}{}.{:02} %)",
                        b.unsigned_abs() / 100,
                        b.unsigned_abs() % 100
                    )
                });
                format!("{sign}${}{pct}", cents(c))
            }
            None => String::new(),
        };
        let price = |p: Option<i64>| p.map(etx_core::market::price_text).unwrap_or_default();
        WorthCard {
            value: w.value,
            down: w.change_24h.is_some_and(|c| c < 0),
            change,
            lines: w
                .lines
                .into_iter()
                .map(|l| WorthRow {
                    amount: etx_domain::money::format_amount(l.total, l.scale),
                    value: l.value,
                    price: price(l.price),
                    open: price(l.open_24h),
                    asset: l.asset,
                })
                .collect(),
        }
    }
}

fn initial(u: &UserView) -> String {
    u.username
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase().to_string())
        .unwrap_or_default()
}

pub async fn view_home_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let user = UserView::from(&u.auth.user);
    // What the user holds; the wallet page lists every asset.
    let worth = etx_core::portfolio::worth(&state, &u.auth.user.id)
        .await?
        .into();
    let recent = super::wallet::recent(&state, &u.auth.user.id, None, 5).await?;
    let earned = state.db.achievements_of(&u.auth.user.id).await?;
    let achievements = etx_domain::XpKind::ALL
        .iter()
        .filter(|k| k.is_achievement())
        .map(|k| {
            (
                etx_core::xp::title(*k),
                etx_core::xp::points(*k).0,
                earned.iter().any(|e| e.kind == k.as_str()),
            )
        })
        .collect();
    let leaders = etx_core::xp::leaderboard(&state, true, 5)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, (u, p))| (i + 1, u.username, p))
        .collect();
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "home");
    layout.notice = notice(&q);
    Ok(HomePage {
        initial: initial(&user),
        layout,
        user,
        worth,
        recent,
        achievements,
        leaders,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    layout: Layout,
    login: String,
    error: Option<String>,
}

pub async fn view_login_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let mut layout = Layout::new(None, csrf, "login");
    layout.notice = notice(&q);
    (
        out,
        LoginPage {
            layout,
            login: String::new(),
            error: None,
        },
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginFormInput {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    remember_me: Option<String>,
}

pub async fn view_login_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Form(f): Form<LoginFormInput>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let result = match check_sign_in_form(&state, &headers, &f.csrf_token) {
        Ok(()) => accounts::login(
            &state,
            &f.login,
            &f.password,
            f.remember_me.is_some(),
            &client,
        )
        .await
        .map_err(ApiError::from),
        Err(_) => Err(ApiError::BadRequest(
            "Your form expired; please try again.".into(),
        )),
    };
    match result {
        Ok(accounts::LoginOutcome::Session(_, issued)) => {
            issued.set_cookies(state.secure_cookies(), &mut out);
            (out, Redirect::to("/")).into_response()
        }
        Ok(accounts::LoginOutcome::SecondFactor { challenge_token }) => {
            let page = SecondFactorPage {
                layout: Layout::new(None, csrf, "login"),
                challenge_token,
                error: None,
            };
            (out, page).into_response()
        }
        Err(e) => {
            e.log_if_internal();
            let status = e.status();
            let mut wait = HeaderMap::new();
            e.retry_headers(&mut wait);
            let retry = wait.remove(axum::http::header::RETRY_AFTER);
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    "Too many attempts. Please wait a minute and try again.".to_string()
                }
                StatusCode::INTERNAL_SERVER_ERROR => {
                    "Something went wrong. Please try again.".to_string()
                }
                _ => login_message(status),
            };
            let page = LoginPage {
                layout: Layout::new(None, csrf, "login"),
                login: f.login,
                error: Some(message),
            };
            let mut r = (status, out, page).into_response();
            if let Some(v) = retry {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            r
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login_2fa.html")]
pub struct SecondFactorPage {
    layout: Layout,
    challenge_token: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SecondFactorForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    challenge_token: String,
    #[serde(default)]
    code: String,
}

/// The code step of a login with 2FA on. A wrong code keeps the challenge (until it is used
/// up); an expired or used-up one sends the user back to the password step.
pub async fn view_login_2fa_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Form(f): Form<SecondFactorForm>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    if check_sign_in_form(&state, &headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match etx_core::security::complete_login(&state, &f.challenge_token, &f.code, &client)
        .await
        .map_err(ApiError::from)
    {
        Ok((_, issued)) => {
            issued.set_cookies(state.secure_cookies(), &mut out);
            (out, Redirect::to("/")).into_response()
        }
        Err(e) => {
            let status = e.status();
            let message = match &e {
                ApiError::Unauthorized(m) if m == etx_core::security::CHALLENGE_DEAD => {
                    let page = LoginPage {
                        layout: Layout::new(None, csrf, "login"),
                        login: String::new(),
                        error: Some(m.clone()),
                    };
                    return (status, out, page).into_response();
                }
                ApiError::RateLimited { .. } => {
                    "Too many attempts. Please wait a minute and try again.".to_string()
                }
                ApiError::Forbidden(_) => "This account is suspended.".to_string(),
                ApiError::Unauthorized(_) => "That code is not right. Try the current one.".into(),
                _ => "Something went wrong. Please try again.".to_string(),
            };
            let page = SecondFactorPage {
                layout: Layout::new(None, csrf, "login"),
                challenge_token: f.challenge_token,
                error: Some(message),
            };
            (status, out, page).into_response()
        }
    }
}

fn login_message(status: StatusCode) -> String {
    match status {
        StatusCode::FORBIDDEN => "This account is suspended.".into(),
        StatusCode::BAD_REQUEST => "Your form expired; please try again.".into(),
        _ => etx_core::session::INVALID_CREDENTIALS.to_string() + ".",
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "register.html")]
pub struct RegisterPage {
    layout: Layout,
    username: String,
    email: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

pub async fn view_register_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let page = RegisterPage {
        layout: Layout::new(None, csrf, "register"),
        username: String::new(),
        email: String::new(),
        error: None,
        field_errors: BTreeMap::new(),
    };
    (out, page).into_response()
}

#[derive(Deserialize)]
pub struct RegisterFormInput {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
    terms: Option<String>,
}

pub async fn view_register_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    Form(f): Form<RegisterFormInput>,
) -> Response {
    let mut out = HeaderMap::new();
    let csrf = ensure_csrf(&state, &headers, &mut out);
    let mut fields = BTreeMap::new();
    if f.password != f.confirm_password {
        fields.insert(
            "confirm_password".to_string(),
            "does not match the password".to_string(),
        );
    }
    if f.terms.is_none() {
        fields.insert(
            "terms".to_string(),
            "You must accept the terms to register.".to_string(),
        );
    }
    let result = if let Err(e) = check_sign_in_form(&state, &headers, &f.csrf_token) {
        Err(e)
    } else if !fields.is_empty() {
        Err(ApiError::Validation {
            message: "please correct the marked fields".into(),
            fields: BTreeMap::new(),
        })
    } else {
        let r = Registration {
            username: &f.username,
            email: &f.email,
            password: &f.password,
            name: None,
        };
        match accounts::register(&state, r, &client).await {
            Ok(user) => etx_core::session::start_session(&state, &user, false, &client).await,
            Err(e) => Err(e),
        }
        .map_err(ApiError::from)
    };
    match result {
        Ok(issued) => {
            issued.set_cookies(state.secure_cookies(), &mut out);
            (out, Redirect::to("/?msg=welcome")).into_response()
        }
        Err(e) => {
            let status = e.status();
            let error = match &e {
                ApiError::Validation { fields: f2, .. } | ApiError::Conflict { fields: f2, .. } => {
                    for (k, v) in f2 {
                        fields.insert(k.clone(), v.clone());
                    }
                    Some("Please correct the marked fields.".to_string())
                }
                ApiError::CsrfMissing | ApiError::CsrfInvalid => {
                    Some("Your form expired; please try again.".into())
                }
                ApiError::RateLimited { .. } => {
                    Some("Too many attempts. Please wait a minute.".into())
                }
                _ => Some("Something went wrong. Please try again.".into()),
            };
            let page = RegisterPage {
                layout: Layout::new(None, csrf, "register"),
                username: f.username,
                email: f.email,
                error,
                field_errors: fields,
            };
            (status, out, page).into_response()
        }
    }
}

pub async fn view_logout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: Result<WebUser, super::LoginRedirect>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    if let Ok(u) = u
        && let Err(e) = etx_core::session::logout(&state, &u.auth).await
    {
        return PageError::from(e).into_response();
    }
    let mut out = HeaderMap::new();
    crate::cookies::clear_cookies(state.secure_cookies(), &mut out);
    (out, Redirect::to("/login?msg=logged-out")).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "profile.html")]
pub struct ProfilePage {
    layout: Layout,
    user: UserView,
    initial: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

fn profile_page(
    u: &WebUser,
    user: &etx_db::users::UserRow,
    notice_text: Option<&'static str>,
) -> ProfilePage {
    let view = UserView::from(user);
    let mut layout = Layout::new(Some(UserView::from(user)), u.csrf.clone(), "profile");
    layout.notice = notice_text;
    ProfilePage {
        initial: initial(&view),
        layout,
        user: view,
        error: None,
        field_errors: BTreeMap::new(),
    }
}

pub async fn view_profile_get(u: WebUser, Query(q): Query<NoticeQuery>) -> ProfilePage {
    profile_page(&u, &u.auth.user, notice(&q))
}

/// Renders the profile page again with the error of a failed form.
fn profile_error(u: &WebUser, e: ApiError) -> Response {
    e.log_if_internal();
    let status = e.status();
    let mut page = profile_page(u, &u.auth.user, None);
    match e {
        ApiError::Validation { fields, message } | ApiError::Conflict { fields, message } => {
            page.error = Some(if fields.is_empty() {
                message
            } else {
                "Please correct the marked fields.".into()
            });
            page.field_errors = fields;
        }
        ApiError::CsrfMissing | ApiError::CsrfInvalid => {
            page.error = Some("Your form expired; please try again.".into())
        }
        ApiError::Internal(_) => {
            page.error = Some("Something went wrong. Please try again.".into());
        }
        other => page.error = Some(other.public_message()),
    }
    (status, page).into_response()
}

#[derive(Deserialize)]
pub struct ProfileFormInput {
    #[serde(default)]
    csrf_token: String,
    username: Option<String>,
    email: Option<String>,
    name: Option<String>,
    current_password: Option<String>,
    code: Option<String>,
}

pub async fn view_profile_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<ProfileFormInput>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return profile_error(&u, e);
    }
    let change = ProfileChange {
        username: f.username.as_deref(),
        email: f.email.as_deref(),
        name: f.name.as_deref(),
        current_password: f.current_password.as_deref(),
        code: f.code.as_deref(),
    };
    match accounts::update_profile(&state, &u.auth.user, change).await {
        Ok(_) => Redirect::to("/profile?msg=saved").into_response(),
        Err(e) => profile_error(&u, e.into()),
    }
}

/// Multipart avatar form: the CSRF field comes first, then the file.
pub async fn view_avatar_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    client: ClientInfo,
    mut mp: Multipart,
) -> Response {
    let max = state.config.avatar.max_bytes;
    if let Err(e) = check_content_length(&headers, max) {
        return profile_error(&u, e);
    }
    let token = match mp.next_field().await {
        Ok(Some(field)) if field.name() == Some("csrf_token") => {
            field.text().await.unwrap_or_default()
        }
        _ => String::new(),
    };
    if let Err(e) = check_form_csrf(&headers, &token) {
        return profile_error(&u, e);
    }
    if let Err(e) = accounts::avatar_upload_budget(&state, &u.auth.user.id, &client).await {
        return profile_error(&u, e.into());
    }
    let result = match read_image_part(mp, max).await {
        Ok(data) => accounts::set_avatar(&state, &u.auth.user, data)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/profile?msg=avatar").into_response(),
        Err(e) => profile_error(&u, e),
    }
}

pub async fn view_avatar_delete_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return profile_error(&u, e);
    }
    match accounts::remove_avatar(&state, &u.auth.user).await {
        Ok(_) => Redirect::to("/profile?msg=avatar-removed").into_response(),
        Err(e) => profile_error(&u, e.into()),
    }
}

#[derive(Deserialize)]
pub struct PasswordFormInput {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn view_password_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<PasswordFormInput>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return profile_error(&u, e);
    }
    match accounts::change_password(&state, &u.auth, &f.current_password, &f.new_password).await {
        Ok(()) => Redirect::to("/profile?msg=password").into_response(),
        Err(e) => profile_error(&u, e.into()),
    }
}

pub struct SessionLine {
    id: String,
    device: String,
    /// The full User-Agent, shown on hover.
    agent: String,
    ip: String,
    created_at: String,
    last_seen_at: String,
    current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    layout: Layout,
    sessions: Vec<SessionLine>,
}

/// Where you are signed in, with a sign-out button per session.
pub async fn view_sessions_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let rows = state.db.list_sessions(&u.auth.user.id).await?;
    let mut layout = Layout::new(
        Some(UserView::from(&u.auth.user)),
        u.csrf.clone(),
        "profile",
    );
    layout.notice = notice(&q);
    Ok(SessionsPage {
        layout,
        sessions: rows
            .into_iter()
            .map(|s| SessionLine {
                current: s.id == u.auth.session_id,
                device: crate::views::device_name(s.user_agent.as_deref()),
                agent: s.user_agent.unwrap_or_default(),
                ip: s.ip.unwrap_or_default(),
                created_at: crate::views::rfc3339(s.created_at),
                last_seen_at: crate::views::rfc3339(s.last_seen_at),
                id: s.id,
            })
            .collect(),
    }
    .into_response())
}

pub async fn view_session_end_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return form_expired();
    }
    match etx_core::session::end_session(&state, &u.auth, &id).await {
        Ok(()) if id == u.auth.session_id => {
            let mut out = HeaderMap::new();
            crate::cookies::clear_cookies(state.secure_cookies(), &mut out);
            (out, Redirect::to("/login?msg=logged-out")).into_response()
        }
        Ok(()) => Redirect::to("/profile/sessions?msg=session-ended").into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "terms.html")]
pub struct TermsPage {
    layout: Layout,
}

#[derive(Template, WebTemplate)]
#[template(path = "offline.html")]
pub struct OfflinePage {
    layout: Layout,
}

/// What the service worker shows when the network is gone; the same for everyone, so it
/// carries no user and no form token.
pub async fn view_offline_get() -> Response {
    OfflinePage {
        layout: Layout::new(None, String::new(), "offline"),
    }
    .into_response()
}

/// The terms a user accepts when registering; anyone can read them.
pub async fn view_terms_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Option<WebUser>,
) -> Response {
    let mut out = HeaderMap::new();
    let layout = match user {
        Some(u) => Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "terms"),
        None => Layout::new(None, ensure_csrf(&state, &headers, &mut out), "terms"),
    };
    (out, TermsPage { layout }).into_response()
}

pub struct LeaderRow {
    rank: usize,
    username: String,
    level: i64,
    points: i64,
    me: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "leaderboard.html")]
pub struct LeaderboardPage {
    layout: Layout,
    week: bool,
    rows: Vec<LeaderRow>,
}

#[derive(serde::Deserialize)]
pub struct LeaderboardQuery {
    period: Option<String>,
}

/// The 50 people with the most experience this week (or ever), the reader marked.
pub async fn view_leaderboard_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<LeaderboardQuery>,
) -> PageResult {
    let week = q.period.as_deref() != Some("all");
    let rows = etx_core::xp::leaderboard(&state, week, 50)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, (user, points))| LeaderRow {
            rank: i + 1,
            level: etx_domain::Level::from_exp(user.exp).level,
            me: user.id == u.auth.user.id,
            username: user.username,
            points,
        })
        .collect();
    Ok(LeaderboardPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "leaderboard"),
        week,
        rows,
    }
    .into_response())
}
