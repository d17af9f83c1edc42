//! `/api/alerts`: price alerts of the signed-in user.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use etx_core::alerts::{self, AlertView, NewAlert};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, remove))
}

/// A new alert: `above` or `below` a `price`, or a `move` of `move_percent` within
/// `window_minutes`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct NewAlertBody {
    #[schema(example = "BTC")]
    asset: String,
    /// `above`, `below` or `move`.
    #[schema(example = "above")]
    kind: String,
    /// US dollars (above, below).
    #[schema(value_type = Option<String>, example = "70000")]
    price: Option<String>,
    /// Percent, 0.1 to 100 (move).
    #[schema(value_type = Option<String>, example = "5")]
    move_percent: Option<String>,
    /// 1 to 1440 (move).
    window_minutes: Option<i64>,
    /// Fire again after the cool-down instead of once (default false).
    repeat: Option<bool>,
    /// 1 to 10080, default 60.
    cooldown_minutes: Option<i64>,
    /// Also email you when it fires (default false).
    email: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

/// Your price alerts, newest first.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts",
    responses(
        (status = 200, description = "Your alerts", body = AlertList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<AlertList>> {
    Ok(Json(AlertList {
        alerts: alerts::list(&state, &auth.user).await?,
    }))
}

/// Create a price alert. It fires while the price is at or past the level (or once it moved
/// by the percentage within the window), once, or again after each cool-down with `repeat`:
/// a stored notification and a `notification` event to your clients. At most 100 alerts.
#[utoipa::path(post, path = "/api/alerts", tag = "alerts", request_body = NewAlertBody,
    responses(
        (status = 201, description = "The alert", body = AlertView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid fields, or LIMIT_EXCEEDED (100 alerts)", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<NewAlert>,
) -> ApiResult<(StatusCode, Json<AlertView>)> {
    Ok((
        StatusCode::CREATED,
        Json(alerts::create(&state, &auth.user, &body).await?),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct AlertUpdate {
    /// Switch the alert on or off.
    pub active: bool,
}

/// Switch one of your alerts on or off; another user's is a 404.
#[utoipa::path(patch, path = "/api/alerts/{id}", tag = "alerts", request_body = AlertUpdate,
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such alert of yours", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<AlertUpdate>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(
        alerts::set_active(&state, &auth.user, &id, body.active).await?,
    ))
}

/// Delete one of your alerts; another user's is a 404.
#[utoipa::path(delete, path = "/api/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such alert of yours", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    alerts::delete(&state, &auth.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
