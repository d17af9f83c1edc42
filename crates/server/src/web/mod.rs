//! The server-rendered web UI. Pages are plain HTML forms (no JS needed); cookies carry the
//! session and a hidden `csrf_token` field guards every form.

mod account;
mod admin;
mod assets;
mod error;
mod etx;
mod files;
mod jobs;
mod market;
mod notice;
mod notifications;
mod payments;
mod security;
mod stats;
mod trading;
mod users;
mod wallet;

use crate::cookies;
use crate::cookies::SetCookies;
use crate::error::ApiError;
use crate::session::{Auth, authenticate, constant_time_eq};
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use error::{PageError, PageResult};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(account::view_home_get))
        .route(
            "/login",
            get(account::view_login_get).post(account::view_login_post),
        )
        .route(
            "/register",
            get(account::view_register_get).post(account::view_register_post),
        )
        .route("/terms", get(account::view_terms_get))
        .route("/offline", get(account::view_offline_get))
        .route("/leaderboard", get(account::view_leaderboard_get))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
        .route("/login/2fa", post(account::view_login_2fa_post))
        .route("/logout", post(account::view_logout_post))
        .route(
            "/profile",
            get(account::view_profile_get).post(account::view_profile_post),
        )
        // As the API's avatar route: room for the image and its multipart framing.
        .route(
            "/profile/avatar",
            post(account::view_avatar_post).layer(axum::extract::DefaultBodyLimit::max(
                state.config.avatar.max_bytes + 64 * 1024,
            )),
        )
        .route(
            "/profile/avatar/delete",
            post(account::view_avatar_delete_post),
        )
        .route("/profile/password", post(account::view_password_post))
        .route("/profile/sessions", get(account::view_sessions_get))
        .route(
            "/profile/sessions/{id}/end",
            post(account::view_session_end_post),
        )
        .route("/security", get(security::view_security_get))
        .route("/security/2fa/setup", post(security::view_2fa_setup_post))
        .route("/security/2fa/verify", post(security::view_2fa_verify_post))
        .route(
            "/security/2fa/backup-codes",
            post(security::view_2fa_backup_post),
        )
        .route(
            "/security/2fa/disable",
            post(security::view_2fa_disable_post),
        )
        .route("/security/email/code", post(security::view_email_code_post))
        .route(
            "/security/email/resend",
            post(security::view_email_resend_post),
        )
        .route("/verify-email", get(security::view_verify_email_get))
        .route(
            "/forgot-password",
            get(security::view_forgot_get).post(security::view_forgot_post),
        )
        .route(
            "/reset-password",
            get(security::view_reset_get).post(security::view_reset_post),
        )
        .route("/dev/mail", get(security::view_dev_mail_get))
        .route("/markets", get(market::view_markets_get))
        .route("/markets/{symbol}", get(market::view_market_get))
        .route("/trade", get(trading::view_trade_get))
        .route("/trade/quote", post(trading::view_quote_post))
        .route("/trade/execute", post(trading::view_execute_post))
        .route("/trade/order", post(trading::view_order_post))
        .route(
            "/trade/orders/{id}/cancel",
            post(trading::view_cancel_order_post),
        )
        .route("/portfolio", get(trading::view_portfolio_get))
        .route("/notifications", get(notifications::view_notifications_get))
        .route(
            "/notifications/read",
            post(notifications::view_notifications_read_post),
        )
        .route(
            "/admin/broadcast",
            get(notifications::view_broadcast_get).post(notifications::view_broadcast_post),
        )
        .route("/admin/users", get(users::view_users_get))
        .route(
            "/admin/users/{id}",
            get(users::view_user_get).post(users::view_user_post),
        )
        .route("/admin/trading", get(trading::view_admin_trading_get))
        .route(
            "/admin/trading/pairs/{pair}",
            post(trading::view_admin_pair_post),
        )
        .route(
            "/alerts",
            get(trading::view_alerts_get).post(trading::view_alert_create_post),
        )
        .route("/alerts/{id}/toggle", post(trading::view_alert_toggle_post))
        .route("/alerts/{id}/delete", post(trading::view_alert_delete_post))
        .route("/wallet", get(wallet::view_wallet_get))
        .route("/wallet/transfer", post(wallet::view_transfer_post))
        .route("/transactions", get(wallet::view_transactions_get))
        .route("/transactions/{id}", get(wallet::view_transaction_get))
        .route("/files", get(files::view_files_get))
        .route(
            "/files/upload",
            // The quota, checked while the bytes stream, bounds an upload.
            post(files::view_upload_post).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/folder", post(files::view_folder_post))
        .route("/files/{id}/delete", post(files::view_delete_post))
        .route("/jobs", get(jobs::view_jobs_get))
        .route("/jobs/start", post(jobs::view_start_post))
        .route("/jobs/{id}", get(jobs::view_job_get))
        .route("/jobs/{id}/cancel", post(jobs::view_cancel_post))
        .route("/jobs/{id}/retry", post(jobs::view_retry_post))
        .route("/etx", get(etx::view_etx_get).post(etx::view_etx_post))
        .route("/etx/delete", post(etx::view_etx_delete_post))
        .route(
            "/deposit",
            get(payments::view_deposit_get).post(payments::view_deposit_post),
        )
        .route("/deposit/{order_id}", get(payments::view_deposit_order_get))
        .route(
            "/deposit/{order_id}/simulate",
            post(payments::view_deposit_simulate_post),
        )
        .route(
            "/withdraw",
            get(payments::view_withdraw_get).post(payments::view_withdraw_post),
        )
        .route(
            "/withdraw/review",
            post(payments::view_withdraw_review_post),
        )
        .route(
            "/withdraw/{id}/cancel",
            post(payments::view_withdraw_cancel_post),
        )
        .route(
            "/admin/withdrawals",
            get(payments::view_admin_withdrawals_get),
        )
        .route(
            "/admin/withdrawals/{id}/{action}",
            post(payments::view_admin_withdrawal_post),
        )
        .route("/admin/aml", get(payments::view_admin_aml_get))
        .route(
            "/admin/aml/{id}/{action}",
            post(payments::view_admin_aml_post),
        )
        .route("/admin/audit", get(admin::view_audit_get))
        .route("/admin/stats", get(stats::view_stats_get))
        .route("/admin/mail", get(admin::view_mail_get))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refresh_on_navigation,
        ))
        .route("/static/{*file}", get(assets::serve))
}

/// What the shared layout needs: the signed-in user (if any), the CSRF token for forms, which
/// navigation entry is current and an optional notice.
pub struct Layout {
    pub user: Option<UserView>,
    pub csrf: String,
    pub active: &'static str,
    pub notice: Option<&'static str>,
    pub version: &'static str,
}

impl Layout {
    pub fn new(user: Option<UserView>, csrf: String, active: &'static str) -> Self {
        Layout {
            user,
            csrf,
            active,
            notice: None,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Whether the current page sits in the header's menu `group`, which then shows as current.
    pub fn in_group(&self, group: &str) -> bool {
        let pages: &[&str] = match group {
            "trade" => &["trade", "portfolio", "alerts"],
            "wallet" => &["wallet", "deposit", "withdraw", "transactions"],
            "workspace" => &["files", "jobs", "etx"],
            "admin" => &[
                "users",
                "stats",
                "broadcast",
                "withdrawals",
                "aml",
                "trading-admin",
                "audit",
                "mail",
            ],
            "account" => &["profile", "security", "notifications", "leaderboard"],
            _ => &[],
        };
        pages.contains(&self.active)
    }
}

/// A time sent as RFC 3339 UTC, shown as `<time>`: the page's script turns it into the
/// reader's zone (or "5 minutes ago"); without script it reads as UTC to the minute. Anything
/// else (empty, never) shows as a dash.
#[derive(Clone, Debug, Default)]
pub struct Stamp(pub String);

impl Stamp {
    pub fn of(rfc3339: &str) -> Self {
        Stamp(rfc3339.to_string())
    }

    pub fn micros(at: i64) -> Self {
        Stamp(crate::views::rfc3339(at))
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let iso = self.0.as_str();
        // Written unescaped, so only the characters of a timestamp get through.
        let plain = iso.len() >= 16
            && iso
                .bytes()
                .all(|b| b.is_ascii_digit() || b"-:.TZ+".contains(&b));
        if !plain {
            return f.write_str("\u{2013}");
        }
        write!(
            f,
            "<time datetime=\"{iso}\">{} {} UTC</time>",
            &iso[..10],
            &iso[11..16]
        )
    }
}

impl askama::filters::HtmlSafe for Stamp {}

/// Template filters for figures: `|grouped` puts thousands separators into a decimal amount
/// (keeping its asset's decimals), `|price` shows a price with the decimals its size needs.
/// Anything that is not a plain decimal passes through unchanged.
/// A list page's `skip`: rows before this page, 0 when absent or not a number, and never so
/// large that the next page's offset overflows.
pub(crate) fn skip_param(given: Option<&str>) -> i64 {
    const MOST: i64 = 1_000_000_000;
    given
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, MOST)
}

/// A money form's idempotency key: the one the page rendered (checked as the API checks its
/// header), or a new one for a form posted without it.
pub(crate) fn form_key(given: &str) -> Result<String, etx_core::CoreError> {
    if given.is_empty() {
        Ok(uuid::Uuid::now_v7().to_string())
    } else {
        etx_core::ledger::idempotency_key(given)
    }
}

pub mod filters {
    use std::fmt::Display;

    pub fn grouped(v: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::group_digits(&v.to_string()))
    }

    pub fn price(v: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::price_display(&v.to_string()))
    }

    /// Whole cents as dollars: `123456` → `1,234.56`.
    pub fn cents(v: &i64, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::group_digits(&etx_domain::money::format_amount(
            *v, 2,
        )))
    }
}

/// `-1234567.50` → `-1,234,567.50`, `1500 USD` → `1,500 USD`; not a decimal → unchanged.
pub fn group_digits(text: &str) -> String {
    if let Some((number, unit)) = text.split_once(' ') {
        return format!("{} {unit}", group_digits(number));
    }
    let (sign, rest) = match text.chars().next() {
        Some(c @ ('-' | '+' | '\u{2212}')) => (c.to_string(), &text[c.len_utf8()..]),
        _ => (String::new(), text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(rest.contains('.') && frac.is_empty());
    if !plain {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + int.len() / 3);
    out.push_str(&sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rest.contains('.') {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// A USD price with as many decimals as its size needs, the same for every row and tick of
/// that asset: 2 from $1 up, 4 from a cent, 6 below (rounded half up), then grouped.
pub fn price_display(text: &str) -> String {
    use etx_core::market::PRICE_SCALE;
    let Ok(minor) = etx_domain::money::parse_amount(text, PRICE_SCALE) else {
        return text.to_string();
    };
    let unit = 10i64.pow(u32::from(PRICE_SCALE));
    let places: u8 = match minor.unsigned_abs() {
        m if m >= unit.unsigned_abs() => 2,
        m if m >= (unit / 100).unsigned_abs() => 4,
        _ => 6,
    };
    let step = 10i64.pow(u32::from(PRICE_SCALE - places));
    let rounded = (minor.abs() + step / 2) / step * minor.signum();
    group_digits(&etx_domain::money::format_amount(rounded, places))
}

/// A JSON object of event details as (label, value) lines a person can read: `input_name`
/// becomes "Input name", nested objects name their parent ("Limits: daily"), lists are
/// joined with commas and nulls are left out.
pub fn detail_list(v: &serde_json::Value) -> Vec<(String, String)> {
    fn label(key: &str) -> String {
        let words = key.replace(['_', '-'], " ");
        let mut c = words.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    }
    fn text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    let name = if prefix.is_empty() {
                        label(k)
                    } else {
                        format!("{prefix}: {}", k.replace('_', " "))
                    };
                    walk(&name, v, out);
                }
            }
            other => out.push((
                if prefix.is_empty() {
                    "Value".into()
                } else {
                    prefix.into()
                },
                text(other),
            )),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// A `<select>`'s options: (value, label, selected).
pub type Options = Vec<(&'static str, &'static str, bool)>;

/// The options of a `<select>` with `current` selected.
pub fn options(choices: &[(&'static str, &'static str)], current: &str) -> Options {
    choices
        .iter()
        .map(|(v, l)| (*v, *l, *v == current))
        .collect()
}

/// A form that carries nothing but its CSRF token (a button that signs out, cancels, marks
/// read); a missing token is answered as a wrong one.
#[derive(serde::Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf_token: String,
}

/// The signed-in user of a page request, or a redirect to the login page.
pub struct WebUser {
    pub auth: Auth,
    pub csrf: String,
}

pub struct LoginRedirect;

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        Redirect::to("/login").into_response()
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = LoginRedirect;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookies::get(&parts.headers, cookies::ACCESS).ok_or(LoginRedirect)?;
        let auth = authenticate(state, token, true)
            .await
            .map_err(|_| LoginRedirect)?;
        let csrf = cookies::get(&parts.headers, cookies::CSRF)
            .unwrap_or_default()
            .to_string();
        Ok(WebUser { auth, csrf })
    }
}

/// The page for a form whose CSRF token did not match.
pub fn form_expired() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "Please go back, reload the page and try again.",
    )
}

/// A `YYYY-MM-DD` filter field as Unix micros: its start, or with `end` the start of the next
/// day (an exclusive bound). Anything else is no filter.
pub fn day(s: &str, end: bool) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// The status a form page answers with after `error` (200 without one), its message and its
/// messages per field.
pub fn form_outcome(
    error: Option<ApiError>,
) -> (
    StatusCode,
    Option<String>,
    std::collections::BTreeMap<String, String>,
) {
    match error {
        None => (StatusCode::OK, None, Default::default()),
        Some(e) => {
            let status = e.status();
            let (message, fields) = form_error(e);
            (status, message, fields)
        }
    }
}

/// What a form page says about a failed action: a message, and messages per field.
pub fn form_error(e: ApiError) -> (Option<String>, std::collections::BTreeMap<String, String>) {
    match e {
        ApiError::Validation { message, fields } => (
            Some(if fields.is_empty() {
                message
            } else {
                "Please correct the marked fields.".into()
            }),
            fields,
        ),
        ApiError::CsrfMissing | ApiError::CsrfInvalid => (
            Some("Your form expired; please try again.".into()),
            Default::default(),
        ),
        ApiError::Internal(_) => (
            Some("Something went wrong; nothing was changed.".into()),
            Default::default(),
        ),
        other => (Some(other.public_message()), Default::default()),
    }
}

/// For pages that decide themselves what an anonymous visitor sees.
impl OptionalFromRequestParts<AppState> for WebUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <WebUser as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// A form's `csrf_token` must match the cookie.
pub fn check_form_csrf(headers: &HeaderMap, submitted: &str) -> Result<(), ApiError> {
    match cookies::get(headers, cookies::CSRF) {
        None => Err(ApiError::CsrfMissing),
        Some(_) if submitted.is_empty() => Err(ApiError::CsrfMissing),
        Some(c) if constant_time_eq(c.as_bytes(), submitted.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::CsrfInvalid),
    }
}

/// Forms that sign a browser in (log-in, second factor, registration): the CSRF token, and no
/// cross-site origin either, since a cookie planted from a sibling site could match the token.
pub fn check_sign_in_form(
    state: &AppState,
    headers: &HeaderMap,
    submitted: &str,
) -> Result<(), ApiError> {
    check_form_csrf(headers, submitted)?;
    crate::session::refuse_cross_site(state, headers)
}

/// The page's CSRF token, creating the cookie on first visit.
pub fn ensure_csrf(state: &AppState, headers: &HeaderMap, out: &mut HeaderMap) -> String {
    if let Some(t) = cookies::get(headers, cookies::CSRF) {
        return t.to_string();
    }
    let t = etx_auth::random_token();
    let max_age = state.config.auth.refresh_remember_days * 86_400;
    cookies::append(
        out,
        cookies::build(cookies::CSRF, &t, max_age, false, state.secure_cookies()),
    );
    t
}

/// Keeps a browsing user signed in: when the short-lived access cookie has expired but a
/// refresh cookie is present, rotate it before the page handler runs and pass the new cookies
/// both to the handler and back to the browser.
async fn refresh_on_navigation(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let needs = match cookies::get(headers, cookies::ACCESS) {
        None => true,
        Some(t) => state.tokens.verify_access(t).is_err(),
    };
    let refresh = cookies::get(headers, cookies::REFRESH).map(str::to_string);
    let (Some(refresh), true) = (refresh, needs) else {
        return next.run(req).await;
    };
    let Ok((_, issued)) = etx_core::session::refresh(&state, &refresh).await else {
        return next.run(req).await;
    };
    let mut req = req;
    let cookie_line = format!(
        "{}={}; {}={}; {}={}",
        cookies::ACCESS,
        issued.access_token,
        cookies::REFRESH,
        issued.refresh_token,
        cookies::CSRF,
        issued.csrf_token
    );
    req.headers_mut().remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&cookie_line) {
        req.headers_mut().insert(header::COOKIE, v);
    }
    let mut resp = next.run(req).await;
    issued.set_cookies(state.secure_cookies(), resp.headers_mut());
    resp
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    error_page_in(Layout::new(None, String::new(), ""), status, title, message)
}

fn error_page_in(layout: Layout, status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        layout,
        title: title.to_string(),
        message: message.to_string(),
    };
    (status, page).into_response()
}

/// The not-found page for a signed-in user: what an address that is not theirs shows.
pub fn not_found_for(u: &WebUser) -> Response {
    error_page_in(
        Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), ""),
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
    )
}

/// Unknown paths: JSON for API clients, a page for people (with their header when signed in).
pub async fn not_found(uri: Uri, user: Option<WebUser>) -> Response {
    let p = uri.path();
    if p.starts_with("/api/")
        || p == "/api"
        || p.starts_with("/health")
        || p.starts_with("/metrics")
    {
        ApiError::NotFound.into_response()
    } else {
        match user {
            Some(u) => not_found_for(&u),
            None => error_page_in(
                Layout::new(None, String::new(), ""),
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{group_digits, price_display};

    #[test]
    fn figures_get_separators_and_prices_their_decimals() {
        for (text, want) in [
            ("0.5", "0.5"),
            ("999.00", "999.00"),
            ("1000", "1,000"),
            ("-1234567.50", "-1,234,567.50"),
            ("\u{2212}12345.00000001", "\u{2212}12,345.00000001"),
            ("1500 USD", "1,500 USD"),
            ("n/a", "n/a"),
            ("12.", "12."),
            ("", ""),
        ] {
            assert_eq!(group_digits(text), want, "{text:?}");
        }
        for (text, want) in [
            ("97234.5", "97,234.50"),
            ("97234.505", "97,234.51"),
            ("1.2", "1.20"),
            ("0.2231456", "0.2231"),
            ("0.00123456", "0.001235"),
            ("-5", "-5.00"),
            ("abc", "abc"),
        ] {
            assert_eq!(price_display(text), want, "{text:?}");
        }
    }
}
