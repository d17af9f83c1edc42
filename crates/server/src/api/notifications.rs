//! `/api/notifications`: the signed-in user's notifications, newest first, and marking them
//! read.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::Auth;
use crate::state::AppState;
use crate::views::rfc3339;
use axum::Json;
use axum::extract::{Query, State};
use etx_core::audit::Event;
use etx_domain::AuditAction;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(mark_read))
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only unread ones.
    pub unread: Option<bool>,
    /// Only older than this notification id (the `next_before` of the previous page).
    pub before: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    /// e.g. `transfer_received`, `balance_adjusted`.
    pub kind: String,
    pub title: String,
    pub body: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub created_at: String,
    pub read: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationList {
    pub items: Vec<NotificationView>,
    pub unread: i64,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// Your notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", params(ListQuery),
    responses(
        (status = 200, description = "Notifications", body = NotificationList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<NotificationList>> {
    Ok(Json(list_for(&state, &auth, &q).await?))
}

/// A page of the user's notifications (the API's and the page's).
pub(crate) async fn list_for(
    state: &AppState,
    auth: &Auth,
    q: &ListQuery,
) -> ApiResult<NotificationList> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let before = q
        .before
        .as_deref()
        .filter(|b| !b.is_empty() && b.len() <= 64);
    let rows = state
        .db
        .list_notifications(&auth.user.id, q.unread.unwrap_or(false), before, limit)
        .await?;
    let unread = state.db.unread_notifications(&auth.user.id).await?;
    let next_before = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(NotificationList {
        items: rows
            .into_iter()
            .map(|r| NotificationView {
                data: serde_json::from_str(&r.data).unwrap_or(Value::Null),
                id: r.id,
                kind: r.kind,
                title: r.title,
                body: r.body,
                created_at: rfc3339(r.created_at),
                read: r.read_at.is_some(),
            })
            .collect(),
        unread,
        next_before,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// The notifications to mark read (at most 100); all of yours when absent.
    pub ids: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct MarkReadResponse {
    pub updated: u64,
    pub unread: i64,
}

/// Mark notifications read: the listed ones, or all. Ids that are not yours change nothing.
#[utoipa::path(post, path = "/api/notifications/read", tag = "notifications", request_body = MarkReadRequest,
    responses(
        (status = 200, description = "Marked", body = MarkReadResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Too many ids", body = ErrorBody),
    ))]
async fn mark_read(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<MarkReadRequest>,
) -> ApiResult<Json<MarkReadResponse>> {
    Ok(Json(mark_read_for(&state, &auth, &req).await?))
}

/// Marks the listed notifications of the user read, or all of them (the API's and the page's).
pub(crate) async fn mark_read_for(
    state: &AppState,
    auth: &Auth,
    req: &MarkReadRequest,
) -> ApiResult<MarkReadResponse> {
    if req.ids.as_ref().is_some_and(|ids| ids.len() > 100) {
        return Err(ApiError::field("ids", "at most 100 at a time"));
    }
    let updated = state
        .db
        .mark_notifications_read(&auth.user.id, req.ids.as_deref())
        .await?;
    Event::new(Some(&auth.user.id), AuditAction::NotificationRead)
        .target("user", &auth.user.id)
        .details(json!({"updated": updated, "all": req.ids.is_none()}))
        .record(state)
        .await;
    let unread = state.db.unread_notifications(&auth.user.id).await?;
    Ok(MarkReadResponse { updated, unread })
}
