//! `/api/admin/audit-logs`: the audit trail for staff.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AppQuery;
use crate::session::Auth;
use crate::state::AppState;
use crate::views::audit::{AuditRecord, actor_id};
use axum::Json;
use axum::extract::State;
use etx_db::audit::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted: a user id, username or email.
    pub actor: Option<String>,
    /// E.g. `wallet.adjust`, `transfer.p2p`, `auth.login`, `user.update`.
    pub action: Option<String>,
    /// Id of the object acted on.
    pub target: Option<String>,
    /// Inclusive start: RFC 3339 time or `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Exclusive end: RFC 3339 time, or `YYYY-MM-DD` meaning the end of that day.
    pub to: Option<String>,
    pub skip: Option<i64>,
    /// At most 100 (default 20).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub logs: Vec<AuditRecord>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

fn text(field: &str, v: Option<&str>) -> Result<Option<String>, ApiError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() > 254 || s.chars().any(char::is_control) => {
            Err(ApiError::field(field, "is not a valid filter"))
        }
        other => Ok(other.map(str::to_string)),
    }
}

/// The audit trail, newest first (admins and moderators). Records appear here once linked
/// into the hash chain, within about a second of the action.
#[utoipa::path(get, path = "/api/admin/audit-logs", tag = "admin", params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit records", body = AuditList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not staff", body = ErrorBody),
        (status = 422, description = "Bad filter or paging", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    auth.require_staff()?;
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let actor_id = match text("actor", q.actor.as_deref())? {
        None => None,
        Some(a) => Some(actor_id(&state, a).await?),
    };
    let from = q
        .from
        .as_deref()
        .map(|v| super::transactions::parse_time("from", v, false))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|v| super::transactions::parse_time("to", v, true))
            .transpose()?;
    let filter = AuditFilter {
        actor_id,
        action: text("action", q.action.as_deref())?,
        target_id: text("target", q.target.as_deref())?,
        from,
        to,
    };
    let (rows, total) = state.db.list_audit(&filter, skip, limit).await?;
    Ok(Json(AuditList {
        logs: rows.into_iter().map(AuditRecord::from).collect(),
        total,
        skip,
        limit,
    }))
}
