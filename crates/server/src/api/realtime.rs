//! Staff broadcasts to everyone connected over Socket.IO.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::Auth;
use crate::state::AppState;
use crate::views::rfc3339;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use etx_core::audit::Event;
use etx_domain::AuditAction;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(announce))
}

#[derive(Deserialize, ToSchema)]
pub struct AnnouncementRequest {
    #[schema(example = "Maintenance tonight from 22:00 UTC")]
    pub message: String,
    /// `info` (default), `warning` or `critical`.
    pub level: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Announcement {
    pub message: String,
    pub level: String,
    pub from: String,
    pub at: String,
}

/// Send an announcement to every connected client (Socket.IO event `announcement`) on every
/// instance. Admins only.
#[utoipa::path(post, path = "/api/admin/announcements", tag = "admin", request_body = AnnouncementRequest,
    responses(
        (status = 202, description = "Sent", body = Announcement),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Empty or too long", body = ErrorBody),
    ))]
async fn announce(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<AnnouncementRequest>,
) -> ApiResult<(StatusCode, Json<Announcement>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(announce_for(&state, &auth, req).await?),
    ))
}

/// An admin's announcement to every connected client, audited (the API's and the page's).
pub(crate) async fn announce_for(
    state: &AppState,
    auth: &Auth,
    req: AnnouncementRequest,
) -> ApiResult<Announcement> {
    auth.require_admin()?;
    let message = req.message.trim();
    if message.is_empty() || message.chars().count() > 500 {
        return Err(ApiError::field("message", "must be 1 to 500 characters"));
    }
    let level = req.level.unwrap_or_else(|| "info".into());
    if !matches!(level.as_str(), "info" | "warning" | "critical") {
        return Err(ApiError::field(
            "level",
            "must be info, warning or critical",
        ));
    }
    let a = Announcement {
        message: message.to_string(),
        level,
        from: auth.user.username.clone(),
        at: rfc3339(etx_db::now_micros()),
    };
    state.realtime.to_everyone("announcement", &a).await;
    Event::new(Some(&auth.user.id), AuditAction::Announcement)
        .details(json!({"message": a.message, "level": a.level}))
        .record(state)
        .await;
    Ok(a)
}
