//! The notifications page (newest first, older ones a page at a time, mark all read) and the
//! admins' broadcast page.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, WebUser, check_form_csrf, error_page, form_outcome};
use crate::api::notifications::{
    ListQuery, MarkReadRequest, NotificationView, list_for, mark_read_for,
};
use crate::api::realtime::{AnnouncementRequest, announce_for};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Default)]
pub struct InboxQuery {
    before: Option<String>,
    msg: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications.html")]
pub struct NotificationsPage {
    layout: Layout,
    items: Vec<NotificationView>,
    unread: i64,
    next_before: Option<String>,
    older: bool,
}

pub async fn view_notifications_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<InboxQuery>,
) -> Response {
    let query = ListQuery {
        unread: None,
        before: q.before.clone(),
        limit: Some(30),
    };
    let list = match list_for(&state, &u.auth, &query).await {
        Ok(l) => l,
        Err(e) => return PageError::from(e).into_response(),
    };
    let mut layout = Layout::new(
        Some(UserView::from(&u.auth.user)),
        u.csrf.clone(),
        "notifications",
    );
    layout.notice = notice(&NoticeQuery { msg: q.msg });
    NotificationsPage {
        layout,
        items: list.items,
        unread: list.unread,
        next_before: list.next_before,
        older: q.before.is_some(),
    }
    .into_response()
}

pub async fn view_notifications_read_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    let done = async {
        check_form_csrf(&headers, &f.csrf_token)?;
        mark_read_for(&state, &u.auth, &MarkReadRequest { ids: None }).await
    };
    match done.await {
        Ok(_) => Redirect::to("/notifications?msg=all-read").into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_broadcast.html")]
pub struct BroadcastPage {
    layout: Layout,
    message: String,
    levels: super::Options,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

fn broadcast_page(
    u: &WebUser,
    form: Option<&BroadcastForm>,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    if !u.auth.role.is_admin() {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    }
    let (status, error, field_errors) = form_outcome(error);
    let level = form.map_or("info", |f| f.level.as_str());
    let mut layout = Layout::new(
        Some(UserView::from(&u.auth.user)),
        u.csrf.clone(),
        "broadcast",
    );
    layout.notice = notice_text;
    let page = BroadcastPage {
        layout,
        message: form.map(|f| f.message.clone()).unwrap_or_default(),
        levels: super::options(
            &[
                ("info", "Information"),
                ("warning", "Warning"),
                ("critical", "Critical"),
            ],
            level,
        ),
        error,
        field_errors,
    };
    (status, page).into_response()
}

pub async fn view_broadcast_get(u: WebUser, Query(q): Query<NoticeQuery>) -> Response {
    broadcast_page(&u, None, None, notice(&q))
}

#[derive(Deserialize)]
pub struct BroadcastForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    level: String,
}

pub async fn view_broadcast_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<BroadcastForm>,
) -> Response {
    if !u.auth.role.is_admin() {
        return broadcast_page(&u, None, None, None);
    }
    let sent = async {
        check_form_csrf(&headers, &f.csrf_token)?;
        let req = AnnouncementRequest {
            message: f.message.clone(),
            level: Some(f.level.clone()),
        };
        announce_for(&state, &u.auth, req).await
    };
    match sent.await {
        Ok(_) => Redirect::to("/admin/broadcast?msg=announced").into_response(),
        Err(e) => broadcast_page(&u, Some(&f), Some(e), None),
    }
}
