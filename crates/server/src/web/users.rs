//! Staff pages for users: the list (search, filters, sort, pages) and one user with the
//! changes an admin can make, each with a reason for the audit trail. Moderators read; anyone
//! else gets a 404.

use super::notice::{NoticeQuery, notice};
use super::{
    Layout, Options, PageError, WebUser, check_form_csrf, error_page, filters, form_outcome,
    options,
};
use crate::api::users::{
    AdminUpdateRequest, ListUsersQuery, admin_delete, admin_sign_out, admin_update, user_filter,
};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

const PAGE: i64 = 25;

fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

#[derive(Deserialize, Default)]
pub struct UsersPageQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
    skip: Option<String>,
    msg: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_users.html")]
pub struct UsersPage {
    layout: Layout,
    q: String,
    roles: Options,
    statuses: Options,
    sorts: Options,
    orders: Options,
    users: Vec<UserView>,
    total: i64,
    /// The filters as a query string, for the paging links.
    query: String,
    prev_skip: Option<i64>,
    next_skip: Option<i64>,
    error: Option<String>,
}

pub async fn view_users_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(p): Query<UsersPageQuery>,
) -> Response {
    if !u.auth.role.is_staff() {
        return not_found();
    }
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let skip = super::skip_param(p.skip.as_deref());
    let q = ListUsersQuery {
        q: some(&p.q),
        role: some(&p.role),
        status: some(&p.status),
        sort: some(&p.sort),
        order: some(&p.order),
        skip: Some(skip),
        limit: Some(PAGE),
    };
    let (users, total, error) = match user_filter(&q) {
        Ok((filter, sort, descending)) => {
            match state
                .db
                .list_users(&filter, sort, descending, skip, PAGE)
                .await
            {
                Ok(page) => (
                    page.items.iter().map(UserView::from).collect(),
                    page.total,
                    None,
                ),
                Err(e) => return PageError::from(ApiError::from(e)).into_response(),
            }
        }
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    let query = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &q.q),
            ("role", &q.role),
            ("status", &q.status),
            ("sort", &q.sort),
            ("order", &q.order),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.finish()
    };
    let (status, error, _) = form_outcome(error);
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "users");
    layout.notice = notice(&NoticeQuery { msg: p.msg });
    let page = UsersPage {
        layout,
        q: p.q.trim().to_string(),
        roles: options(
            &[
                ("", "Any role"),
                ("user", "User"),
                ("moderator", "Moderator"),
                ("admin", "Admin"),
            ],
            p.role.trim(),
        ),
        statuses: options(
            &[
                ("", "Any status"),
                ("active", "Active"),
                ("suspended", "Suspended"),
                ("verified", "Email verified"),
                ("unverified", "Email not verified"),
            ],
            p.status.trim(),
        ),
        sorts: options(
            &[
                ("", "Joined"),
                ("username", "Username"),
                ("exp", "Experience"),
            ],
            p.sort.trim(),
        ),
        orders: options(
            &[
                ("", "Newest or highest first"),
                ("asc", "Oldest or lowest first"),
            ],
            p.order.trim(),
        ),
        prev_skip: (skip > 0).then(|| (skip - PAGE).max(0)),
        next_skip: (skip + PAGE < total).then_some(skip + PAGE),
        users,
        total,
        query,
        error,
    };
    (status, page).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_user.html")]
pub struct UserPage {
    layout: Layout,
    user: UserView,
    balances: Vec<(String, String)>,
    is_admin: bool,
    actions: Options,
    roles: Options,
    reason: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

const ACTIONS: &[(&str, &str)] = &[
    ("", "Choose…"),
    ("role", "Change the role"),
    ("suspend", "Suspend (signs out everywhere)"),
    ("activate", "Reactivate"),
    ("verify", "Mark the email verified"),
    ("unverify", "Mark the email not verified"),
    ("sign-out", "Sign out of every session"),
    ("delete", "Delete the account"),
];

async fn user_page(
    state: &AppState,
    u: &WebUser,
    id: &str,
    form: Option<&UserForm>,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    if !u.auth.role.is_staff() {
        return not_found();
    }
    let Ok(id) = uuid::Uuid::parse_str(id) else {
        return not_found();
    };
    let user = match state.db.user_by_id(&id.to_string()).await {
        Ok(Some(user)) => user,
        Ok(None) => return not_found(),
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let balances = match etx_core::wallet::balance_list(state, &user.id).await {
        Ok((b, _)) => b,
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let (status, error, field_errors) = form_outcome(error);
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "users");
    layout.notice = notice_text;
    let user = UserView::from(&user);
    let page = UserPage {
        layout,
        balances,
        is_admin: u.auth.role.is_admin(),
        actions: options(ACTIONS, form.map_or("", |f| f.action.as_str())),
        roles: options(
            &[
                ("user", "User"),
                ("moderator", "Moderator"),
                ("admin", "Admin"),
            ],
            form.map_or(user.role.as_str(), |f| f.role.as_str()),
        ),
        reason: form.map(|f| f.reason.clone()).unwrap_or_default(),
        user,
        error,
        field_errors,
    };
    (status, page).into_response()
}

pub async fn view_user_get(
    State(state): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    user_page(&state, &u, &id, None, None, notice(&q)).await
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn view_user_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<UserForm>,
) -> Response {
    if !u.auth.role.is_staff() {
        return not_found();
    }
    let done = async {
        check_form_csrf(&headers, &f.csrf_token)?;
        // Every change says why, for the audit trail.
        if f.reason.trim().chars().count() < 3 {
            return Err(ApiError::field(
                "reason",
                "say why, in at least 3 characters",
            ));
        }
        let reason = Some(f.reason.clone());
        let update = |role: Option<&str>, is_active, is_verified| AdminUpdateRequest {
            role: role.map(str::to_string),
            is_active,
            is_verified,
            reason: reason.clone(),
        };
        let req = match f.action.as_str() {
            "role" => update(Some(&f.role), None, None),
            "suspend" => update(None, Some(false), None),
            "activate" => update(None, Some(true), None),
            "verify" => update(None, None, Some(true)),
            "unverify" => update(None, None, Some(false)),
            "sign-out" => {
                admin_sign_out(&state, &u.auth, &id, Some(&f.reason)).await?;
                return Ok("user-signed-out");
            }
            "delete" => {
                if f.confirm.is_none() {
                    return Err(ApiError::field(
                        "confirm",
                        "tick the box to confirm the deletion",
                    ));
                }
                admin_delete(&state, &u.auth, &id, Some(&f.reason)).await?;
                return Ok("user-deleted");
            }
            _ => return Err(ApiError::field("action", "choose what to change")),
        };
        admin_update(&state, &u.auth, &id, &req).await?;
        Ok("user-updated")
    };
    match done.await {
        Ok("user-deleted") => Redirect::to("/admin/users?msg=user-deleted").into_response(),
        Ok(msg) => Redirect::to(&format!("/admin/users/{id}?msg={msg}")).into_response(),
        Err(ApiError::NotFound) => not_found(),
        Err(ApiError::Forbidden(_)) => error_page(
            StatusCode::FORBIDDEN,
            "Admins only",
            "Only admins can change users; moderators can look.",
        ),
        Err(e) => user_page(&state, &u, &id, Some(&f), Some(e), None).await,
    }
}
