//! `/api/etx/config`: the signed-in user's connection settings for the external ETX/CTX
//! platform. The password and data source key go in, and never come out.

use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::extract::AppJson;
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use etx_core::processing::platform::settings::{self, SettingsInput, SettingsView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_config, put_config, delete_config))
}

/// Your platform settings. Always 200: `configured` is `false` when you have none. The
/// password and data source key are never returned, only `password_set` and `ds_key_set`.
#[utoipa::path(get, path = "/api/etx/config", tag = "etx",
    responses(
        (status = 200, description = "Your settings", body = SettingsView),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn get_config(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<SettingsView>> {
    Ok(Json(settings::view(&state, &auth.user).await?))
}

/// Create or replace your platform settings. Leave `password` or `ds_key` out to keep the
/// stored one (the first save, and a save that changes `http_uri` or `ws_uri`, needs both).
/// Invalid input changes nothing.
#[utoipa::path(put, path = "/api/etx/config", tag = "etx", request_body = SettingsInput,
    responses(
        (status = 200, description = "The saved settings", body = SettingsView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A cookie session without the CSRF token", body = ErrorBody),
        (status = 422, description = "A bad URI, email, API version, password or key", body = ErrorBody),
    ))]
async fn put_config(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(b): AppJson<SettingsInput>,
) -> ApiResult<Json<SettingsView>> {
    Ok(Json(settings::save(&state, &auth.user, b).await?))
}

/// Remove your platform settings.
#[utoipa::path(delete, path = "/api/etx/config", tag = "etx",
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "You have none", body = ErrorBody),
    ))]
async fn delete_config(State(state): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    settings::delete(&state, &auth.user).await?;
    Ok(StatusCode::NO_CONTENT)
}
