//! `/api/users*` and `/api/leaderboard`: staff user management, public profiles, recipient
//! search and avatars.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery, check_content_length, read_image_part};
use crate::session::{Auth, ClientInfo};
use crate::state::AppState;
use crate::views::{PublicUserView, UserView};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etx_core::accounts;
use etx_db::users::Deletion;
use etx_db::users::{AdminPatch, SortField, UserFilter};
use etx_domain::AuditAction;
use etx_domain::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    // Multipart framing needs a little room beyond the image itself; the exact image limit is
    // enforced while streaming the part.
    let avatar_limit = state.config.avatar.max_bytes + 64 * 1024;
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(search_users))
        .routes(routes!(leaderboard))
        .routes(routes!(my_xp))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(get_avatar))
        .routes(routes!(upload_avatar, delete_avatar).layer(DefaultBodyLimit::max(avatar_limit)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Matches username, email or name (case-insensitive substring).
    pub q: Option<String>,
    /// `user`, `moderator` or `admin`.
    pub role: Option<String>,
    /// `active`, `suspended`, `verified` or `unverified`.
    pub status: Option<String>,
    /// `created_at` (default), `username`, `level` or `exp`.
    pub sort: Option<String>,
    /// `asc` or `desc` (default).
    pub order: Option<String>,
    pub skip: Option<i64>,
    /// At most 100 (default 20).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

pub fn paging(skip: Option<i64>, limit: Option<i64>) -> Result<(i64, i64), ApiError> {
    let skip = skip.unwrap_or(0);
    let limit = limit.unwrap_or(20);
    if skip < 0 {
        return Err(ApiError::field("skip", "must be zero or more"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 100"));
    }
    Ok((skip, limit))
}

/// The list's filter, sort field and direction from the query; bad values are a 422 naming the
/// parameter.
pub(crate) fn user_filter(q: &ListUsersQuery) -> Result<(UserFilter, SortField, bool), ApiError> {
    let mut filter = UserFilter {
        search: q.q.clone(),
        ..Default::default()
    };
    if let Some(r) = q.role.as_deref() {
        let role: Role = r
            .parse()
            .map_err(|_| ApiError::field("role", "must be user, moderator or admin"))?;
        filter.role = Some(role.as_str().to_string());
    }
    match q.status.as_deref() {
        None => {}
        Some("active") => filter.is_active = Some(true),
        Some("suspended") | Some("inactive") => filter.is_active = Some(false),
        Some("verified") => filter.is_verified = Some(true),
        Some("unverified") => filter.is_verified = Some(false),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "must be active, suspended, verified or unverified",
            ));
        }
    }
    let sort = match q.sort.as_deref() {
        None | Some("created_at") => SortField::CreatedAt,
        Some("username") => SortField::Username,
        Some("level") | Some("exp") => SortField::Exp,
        Some(_) => {
            return Err(ApiError::field(
                "sort",
                "must be created_at, username, level or exp",
            ));
        }
    };
    let descending = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::field("order", "must be asc or desc")),
    };
    Ok((filter, sort, descending))
}

/// List users (staff). Search, filter by role and status, sort, page.
#[utoipa::path(get, path = "/api/users", tag = "users", params(ListUsersQuery),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not staff", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody),
    ))]
async fn list_users(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListUsersQuery>,
) -> ApiResult<Json<UserList>> {
    auth.require_staff()?;
    let (skip, limit) = paging(q.skip, q.limit)?;
    let (filter, sort, descending) = user_filter(&q)?;
    let page = state
        .db
        .list_users(&filter, sort, descending, skip, limit)
        .await?;
    Ok(Json(UserList {
        users: page.items.iter().map(UserView::from).collect(),
        total: page.total,
        skip,
        limit,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Username prefix, or an exact email address.
    pub q: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecipientList {
    pub users: Vec<PublicUserView>,
}

/// Recipient lookup as you type: active, verified users other than yourself, at most 10.
#[utoipa::path(get, path = "/api/users/search", tag = "users", params(SearchQuery),
    responses(
        (status = 200, description = "Matching users", body = RecipientList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Query too short or too long", body = ErrorBody),
    ))]
async fn search_users(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<SearchQuery>,
) -> ApiResult<Json<RecipientList>> {
    let term = q.q.trim();
    if term.chars().count() < 2 || term.len() > 254 {
        return Err(ApiError::field("q", "must be 2 to 254 characters"));
    }
    let rows = state.db.search_recipients(term, &auth.user.id, 10).await?;
    Ok(Json(RecipientList {
        users: rows.iter().map(PublicUserView::from).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaderboardQuery {
    /// `all` (the default: total experience) or `week` (points earned since Monday 00:00 UTC).
    pub period: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Leaderboard {
    pub period: String,
    pub users: Vec<LeaderboardUser>,
}

#[derive(Serialize, ToSchema)]
pub struct LeaderboardUser {
    pub rank: usize,
    /// Experience in the period.
    pub points: i64,
    #[serde(flatten)]
    pub user: PublicUserView,
}

/// The 20 users with the most experience, of all time or this week.
#[utoipa::path(get, path = "/api/leaderboard", tag = "users", params(LeaderboardQuery),
    responses(
        (status = 200, description = "Top users", body = Leaderboard),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Unknown period", body = ErrorBody),
    ))]
async fn leaderboard(
    State(state): State<AppState>,
    _auth: Auth,
    AppQuery(q): AppQuery<LeaderboardQuery>,
) -> ApiResult<Json<Leaderboard>> {
    let week = match q.period.as_deref() {
        None | Some("all") => false,
        Some("week") => true,
        Some(_) => {
            return Err(ApiError::field("period", "must be all or week"));
        }
    };
    let ranked = etx_core::xp::leaderboard(&state.core, week, 20).await?;
    Ok(Json(Leaderboard {
        period: if week { "week" } else { "all" }.into(),
        users: ranked
            .iter()
            .enumerate()
            .map(|(i, (u, points))| LeaderboardUser {
                rank: i + 1,
                points: *points,
                user: PublicUserView::from(u),
            })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct XpQuery {
    /// Awards per page, 1–100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct XpView {
    pub exp: i64,
    pub level: i64,
    pub exp_into_level: i64,
    pub exp_for_next: i64,
    /// Every achievement, earned or not.
    pub achievements: Vec<AchievementView>,
    /// The awards, newest first.
    pub events: Vec<XpEventView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AchievementView {
    pub kind: String,
    pub title: String,
    pub points: i64,
    pub earned_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct XpEventView {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub points: i64,
    pub created_at: String,
}

/// Your experience, level, achievements and the awards that earned them.
#[utoipa::path(get, path = "/api/xp", tag = "users", params(XpQuery),
    responses(
        (status = 200, description = "Experience and awards", body = XpView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad limit or cursor", body = ErrorBody),
    ))]
async fn my_xp(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<XpQuery>,
) -> ApiResult<Json<XpView>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 100"));
    }
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.split_once('_')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
                .filter(|(_, id)| !id.is_empty())
                .ok_or_else(|| ApiError::field("cursor", "is not one this server gave"))?,
        ),
    };
    let user = state
        .db
        .user_by_id(&auth.user.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut rows = state.db.xp_events_of(&user.id, cursor, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| format!("{}_{}", r.created_at, r.id))
    } else {
        None
    };
    let earned = state.db.achievements_of(&user.id).await?;
    let level = etx_domain::Level::from_exp(user.exp);
    let title = |k: &str| {
        etx_domain::XpKind::parse(k)
            .map_or_else(|| k.to_string(), |k| etx_core::xp::title(k).to_string())
    };
    Ok(Json(XpView {
        exp: user.exp,
        level: level.level,
        exp_into_level: level.exp_into_level,
        exp_for_next: level.exp_for_next,
        achievements: etx_domain::XpKind::ALL
            .iter()
            .filter(|k| k.is_achievement())
            .map(|k| AchievementView {
                kind: k.as_str().into(),
                title: etx_core::xp::title(*k).into(),
                points: etx_core::xp::points(*k).0,
                earned_at: earned
                    .iter()
                    .find(|e| e.kind == k.as_str())
                    .map(|e| crate::views::rfc3339(e.created_at)),
            })
            .collect(),
        events: rows
            .iter()
            .map(|r| XpEventView {
                id: r.id.clone(),
                kind: r.kind.clone(),
                title: title(&r.kind),
                points: r.points,
                created_at: crate::views::rfc3339(r.created_at),
            })
            .collect(),
        next_cursor,
    }))
}

fn parse_id(id: &str) -> Result<String, ApiError> {
    // Anything that is not a UUID cannot name a user; answer as for a missing one.
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound)
}

/// A user. Yourself and staff see the full record; others see the public profile of an active
/// user.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "Full record (self or staff) or public profile", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
async fn get_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let user = state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    if user.id == auth.user.id || auth.role.is_staff() {
        return Ok(Json(UserView::from(&user)).into_response());
    }
    if !user.is_active {
        return Err(ApiError::NotFound);
    }
    Ok(Json(PublicUserView::from(&user)).into_response())
}

/// Fields an admin may change. Unknown fields (level, exp, password…) are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUpdateRequest {
    pub role: Option<String>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
    /// Why, for the audit trail (at most 500 characters).
    pub reason: Option<String>,
}

/// Change a user's role, active or verified flag (admin). The last active admin cannot be
/// demoted or suspended. Suspending signs the user out everywhere.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    request_body = AdminUpdateRequest,
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin, or CSRF failure", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Would leave no active admin", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ))]
async fn update_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<AdminUpdateRequest>,
) -> ApiResult<Json<UserView>> {
    let user = admin_update(&state, &auth, &id, &req).await?;
    Ok(Json((&user).into()))
}

/// An optional reason for a staff action: trimmed, printable, at most 500 characters.
pub(crate) fn reason_of(reason: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    if r.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(ApiError::field(
            "reason",
            "must be at most 500 printable characters",
        ));
    }
    Ok(Some(r.to_string()))
}

/// An admin changes a user's role, active or verified flag; suspending signs the user out
/// everywhere. Staff who are not admins get a 403, others a 404.
pub(crate) async fn admin_update(
    state: &AppState,
    auth: &Auth,
    id: &str,
    req: &AdminUpdateRequest,
) -> ApiResult<etx_db::users::UserRow> {
    if !auth.role.is_admin() {
        // Staff may know the user exists; others get the same answer as for any foreign object.
        return Err(if auth.role.is_staff() {
            ApiError::Forbidden("admins only".into())
        } else {
            ApiError::NotFound
        });
    }
    let id = parse_id(id)?;
    let reason = reason_of(req.reason.as_deref())?;
    let role = match req.role.as_deref() {
        Some(r) => Some(
            r.parse::<Role>()
                .map_err(|e| ApiError::field("role", &e.message))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let patch = AdminPatch {
        role,
        is_active: req.is_active,
        is_verified: req.is_verified,
    };
    let before = state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    if !state.db.admin_update_user(&id, &patch).await? {
        return Err(ApiError::Conflict {
            message: "this change would leave no active admin".into(),
            fields: Default::default(),
        });
    }
    if req.is_active == Some(false) {
        state
            .db
            .revoke_user_sessions(&id, None, "suspended")
            .await?;
        state.realtime.user_cut_off(&id).await;
    }
    let user = state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    tracing::info!(actor = %auth.user.id, target = %id, "user updated by admin");
    let snapshot = |u: &etx_db::users::UserRow| serde_json::json!({"role": u.role, "is_active": u.is_active, "is_verified": u.is_verified});
    etx_core::audit::Event::new(Some(&auth.user.id), AuditAction::AdminUpdate)
        .target("user", &id)
        .details(serde_json::json!({"before": snapshot(&before), "after": snapshot(&user), "reason": reason}))
        .record(state)
        .await;
    Ok(user)
}

/// Delete a user (admin). Never the last active admin.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin, or CSRF failure", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Last active admin, or the user holds funds", body = ErrorBody),
    ))]
async fn delete_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin_delete(&state, &auth, &id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An admin signs a user out of every session (their sockets too); answers how many ended.
pub(crate) async fn admin_sign_out(
    state: &AppState,
    auth: &Auth,
    id: &str,
    reason: Option<&str>,
) -> ApiResult<usize> {
    if !auth.role.is_admin() {
        return Err(if auth.role.is_staff() {
            ApiError::Forbidden("admins only".into())
        } else {
            ApiError::NotFound
        });
    }
    let id = parse_id(id)?;
    let reason = reason_of(reason)?;
    state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    let ended = state.db.revoke_user_sessions(&id, None, "admin").await?;
    state.realtime.user_cut_off(&id).await;
    etx_core::audit::Event::new(Some(&auth.user.id), AuditAction::SessionRevoke)
        .target("user", &id)
        .details(serde_json::json!({"all": true, "sessions": ended.len(), "reason": reason}))
        .record(state)
        .await;
    Ok(ended.len())
}

/// An admin deletes a user (SPEC §5: never the last active admin, never one holding funds).
pub(crate) async fn admin_delete(
    state: &AppState,
    auth: &Auth,
    id: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    if !auth.role.is_admin() {
        return Err(if auth.role.is_staff() {
            ApiError::Forbidden("admins only".into())
        } else {
            ApiError::NotFound
        });
    }
    let id = parse_id(id)?;
    let reason = reason_of(reason)?;
    let user = state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    match state.db.delete_user(&id).await? {
        Deletion::NotFound => Err(ApiError::NotFound),
        Deletion::HoldsFunds => Err(ApiError::Conflict {
            message: "this user still holds funds; move or adjust them to zero first".into(),
            fields: Default::default(),
        }),
        Deletion::LastAdmin => Err(ApiError::Conflict {
            message: "the last active admin cannot be deleted".into(),
            fields: Default::default(),
        }),
        Deletion::Deleted => {
            etx_core::audit::Event::new(Some(&auth.user.id), AuditAction::UserDelete)
                .target("user", &id)
                .details(serde_json::json!({"username": user.username, "email": user.email, "role": user.role, "reason": reason}))
                .record(state)
                .await;
            if let Some(key) = &user.avatar_key
                && let Err(e) = state.storage.delete(key).await
            {
                tracing::warn!(error = %e, "avatar of deleted user could not be removed");
            }
            tracing::info!(actor = %auth.user.id, target = %id, "user deleted by admin");
            Ok(())
        }
    }
}

/// A user's avatar image (signed-in users only).
#[utoipa::path(get, path = "/api/users/{id}/avatar", tag = "users", params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The image", content_type = "image/*"),
        (status = 304, description = "Unchanged"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No avatar", body = ErrorBody),
    ))]
async fn get_avatar(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let user = state.db.user_by_id(&id).await?.ok_or(ApiError::NotFound)?;
    if !user.is_active && user.id != auth.user.id && !auth.role.is_staff() {
        return Err(ApiError::NotFound);
    }
    let (Some(key), Some(ct)) = (&user.avatar_key, &user.avatar_content_type) else {
        return Err(ApiError::NotFound);
    };
    let etag = format!("\"{}\"", key.rsplit('/').next().unwrap_or(key));
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, etag.parse().map_err(anyhow::Error::from)?);
    out.insert(
        header::CACHE_CONTROL,
        "private, max-age=86400".parse().expect("static header"),
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let data = state.storage.get(key).await?.ok_or(ApiError::NotFound)?;
    out.insert(
        header::CONTENT_TYPE,
        ct.parse().map_err(anyhow::Error::from)?,
    );
    Ok((out, data).into_response())
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AvatarUpload {
    /// PNG, JPEG, WebP or GIF, at most 5 MB.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Upload or replace your avatar (multipart field `file`). The image is checked by content,
/// re-encoded without metadata and scaled to fit 512×512; the previous one is deleted.
#[utoipa::path(post, path = "/api/users/avatar", tag = "users",
    request_body(content = AvatarUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 400, description = "Malformed multipart body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 413, description = "Larger than 5 MB", body = ErrorBody),
        (status = 415, description = "Not a PNG, JPEG, WebP or GIF", body = ErrorBody),
        (status = 422, description = "Missing, empty, undecodable or too large image (at most 4096×4096 pixels)", body = ErrorBody),
        (status = 429, description = "Too many uploads from this account or address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many images being processed; see Retry-After", body = ErrorBody),
    ))]
async fn upload_avatar(
    State(state): State<AppState>,
    auth: Auth,
    client: ClientInfo,
    headers: HeaderMap,
    mp: Multipart,
) -> ApiResult<Json<UserView>> {
    accounts::avatar_upload_budget(&state, &auth.user.id, &client).await?;
    let max = state.config.avatar.max_bytes;
    check_content_length(&headers, max)?;
    let data = read_image_part(mp, max).await?;
    let user = accounts::set_avatar(&state, &auth.user, data).await?;
    Ok(Json((&user).into()))
}

/// Remove your avatar.
#[utoipa::path(delete, path = "/api/users/avatar", tag = "users",
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
    ))]
async fn delete_avatar(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<UserView>> {
    let user = accounts::remove_avatar(&state, &auth.user).await?;
    Ok(Json((&user).into()))
}
