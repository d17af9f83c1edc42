//! `/api/auth/2fa/*`, email verification and password reset, and the mail queue for admins.

use super::auth::MessageResponse;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::{Auth, ClientInfo};
use crate::state::AppState;
use crate::views::mail::{MailView, mail_view, parse_mail_status};
use crate::views::rfc3339;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use etx_core::security;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(confirm))
        .routes(routes!(status))
        .routes(routes!(disable))
        .routes(routes!(backup_codes))
        .routes(routes!(verify_email))
        .routes(routes!(verify_email_code))
        .routes(routes!(resend_verification))
        .routes(routes!(forgot_password))
        .routes(routes!(validate_reset_token))
        .routes(routes!(reset_password))
        .routes(routes!(mail_queue))
}

fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}

#[derive(Serialize, ToSchema)]
pub struct SetupResponse {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    pub otpauth_url: String,
    /// The `otpauth_url` as a QR code, an SVG document drawn by this server.
    pub qr_svg: String,
}

/// Start turning on 2FA: a new secret for the authenticator app. 2FA stays off until a code
/// from it is confirmed at `/api/auth/2fa/verify`.
#[utoipa::path(post, path = "/api/auth/2fa/setup", tag = "auth",
    responses(
        (status = 200, description = "Secret, otpauth URI and QR code", body = SetupResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 409, description = "2FA is already on", body = ErrorBody),
    ))]
async fn setup(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let e = security::setup(&state, &auth.user).await?;
    Ok(no_store(Json(SetupResponse {
        secret: e.secret,
        otpauth_url: e.otpauth_url,
        qr_svg: e.qr_svg,
    })))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodesResponse {
    /// Ten single-use codes, shown only this once; each signs in instead of an app code.
    pub backup_codes: Vec<String>,
}

/// Confirm the set-up with a code from the app: 2FA is on from now, and the backup codes are
/// returned (only here).
#[utoipa::path(post, path = "/api/auth/2fa/verify", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 200, description = "2FA is on; every other session of the user is signed out", body = BackupCodesResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "No set-up waiting, or 2FA already on", body = ErrorBody),
        (status = 422, description = "Wrong or expired code", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
async fn confirm(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<CodeRequest>,
) -> ApiResult<Response> {
    let codes = security::confirm(&state, &auth.user, &auth.session_id, &req.code).await?;
    Ok(no_store(Json(BackupCodesResponse {
        backup_codes: codes,
    })))
}

#[derive(Serialize, ToSchema)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    pub enabled_at: Option<String>,
    pub backup_codes_remaining: i64,
}

/// Whether 2FA is on, and how many backup codes are left.
#[utoipa::path(get, path = "/api/auth/2fa/status", tag = "auth",
    responses(
        (status = 200, description = "2FA status", body = TwoFactorStatus),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn status(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<TwoFactorStatus>> {
    let s = security::status(&state, &auth.user.id).await?;
    Ok(Json(TwoFactorStatus {
        enabled: s.enabled,
        enabled_at: s.enabled_at.map(rfc3339),
        backup_codes_remaining: s.backup_codes_left,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DisableRequest {
    pub password: String,
    /// A code from the app or an unused backup code.
    pub code: String,
}

/// Turn 2FA off. Needs the password and a code.
#[utoipa::path(post, path = "/api/auth/2fa/disable", tag = "auth", request_body = DisableRequest,
    responses(
        (status = 200, description = "2FA is off", body = MessageResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "2FA is not on", body = ErrorBody),
        (status = 422, description = "Wrong password or code", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
async fn disable(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<DisableRequest>,
) -> ApiResult<Json<MessageResponse>> {
    security::disable(&state, &auth.user, &req.password, &req.code).await?;
    Ok(Json(MessageResponse {
        message: "two-factor authentication is off".into(),
    }))
}

/// Replace the backup codes (the old ones stop working). Needs a code from the app.
#[utoipa::path(post, path = "/api/auth/2fa/backup-codes", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 200, description = "New backup codes", body = BackupCodesResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "2FA is not on", body = ErrorBody),
        (status = 422, description = "Wrong code", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
async fn backup_codes(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<CodeRequest>,
) -> ApiResult<Response> {
    let codes = security::regenerate_backup_codes(&state, &auth.user, &req.code).await?;
    Ok(no_store(Json(BackupCodesResponse {
        backup_codes: codes,
    })))
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The token from the link in the mail.
    pub token: String,
}

/// Verify an email address with the token from the mailed link. No sign-in needed.
#[utoipa::path(post, path = "/api/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, description = "Address verified", body = MessageResponse),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
    ))]
async fn verify_email(
    State(state): State<AppState>,
    AppJson(req): AppJson<TokenRequest>,
) -> ApiResult<Json<MessageResponse>> {
    security::verify_email_token(&state, &req.token).await?;
    Ok(Json(MessageResponse {
        message: "email address verified".into(),
    }))
}

/// Verify the signed-in user's address with the 6-digit code from the mail. Five wrong codes
/// use the code up.
#[utoipa::path(post, path = "/api/auth/verify-email/code", tag = "auth", request_body = CodeRequest,
    responses(
        (status = 200, description = "Address verified", body = MessageResponse),
        (status = 400, description = "No live code", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Wrong code", body = ErrorBody),
    ))]
async fn verify_email_code(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<CodeRequest>,
) -> ApiResult<Json<MessageResponse>> {
    security::verify_email_code(&state, &auth.user, &req.code).await?;
    Ok(Json(MessageResponse {
        message: "email address verified".into(),
    }))
}

/// Send the verification mail again (earlier links and codes stop working).
#[utoipa::path(post, path = "/api/auth/resend-verification", tag = "auth",
    responses(
        (status = 202, description = "Mail queued", body = MessageResponse),
        (status = 200, description = "Already verified; nothing sent", body = MessageResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 429, description = "Asked too often", body = ErrorBody),
    ))]
async fn resend_verification(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<(StatusCode, Json<MessageResponse>)> {
    if security::resend_verification(&state, &auth.user).await? {
        Ok((
            StatusCode::ACCEPTED,
            Json(MessageResponse {
                message: "a verification mail is on its way".into(),
            }),
        ))
    } else {
        Ok((
            StatusCode::OK,
            Json(MessageResponse {
                message: "your address is already verified".into(),
            }),
        ))
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ForgotRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
}

/// Ask for a password-reset link. The answer is the same whether or not the address is
/// registered.
#[utoipa::path(post, path = "/api/auth/forgot-password", tag = "auth", request_body = ForgotRequest,
    responses(
        (status = 202, description = "Accepted (always, for any address)", body = MessageResponse),
        (status = 422, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    ))]
async fn forgot_password(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(req): AppJson<ForgotRequest>,
) -> ApiResult<(StatusCode, Json<MessageResponse>)> {
    security::forgot_password(&state, &req.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: security::FORGOT_ANSWER.into(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct TokenValidity {
    pub valid: bool,
}

/// Whether a reset link can still be used.
#[utoipa::path(get, path = "/api/auth/validate-reset-token/{token}", tag = "auth",
    params(("token" = String, Path, description = "The token from the reset link")),
    responses((status = 200, description = "Validity", body = TokenValidity)))]
async fn validate_reset_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    let valid = security::reset_token_live(&state, &token).await?;
    Ok(no_store(Json(TokenValidity { valid })))
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    pub token: String,
    pub new_password: String,
}

/// Set a new password with a reset token. Every session of the account is signed out, and a
/// lockout is lifted.
#[utoipa::path(post, path = "/api/auth/reset-password", tag = "auth", request_body = ResetRequest,
    responses(
        (status = 200, description = "Password changed", body = MessageResponse),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
        (status = 422, description = "Weak password", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    ))]
async fn reset_password(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(req): AppJson<ResetRequest>,
) -> ApiResult<Json<MessageResponse>> {
    security::reset_password(&state, &req.token, &req.new_password, &client).await?;
    Ok(Json(MessageResponse {
        message: "password changed; sign in with the new one".into(),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct MailQuery {
    /// `pending`, `sent` or `failed`; all when absent.
    pub status: Option<String>,
    /// At most this many, newest first (1–500, default 100).
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct MailList {
    pub items: Vec<MailView>,
}

/// Outgoing mail and its delivery state, so failures are visible (admins). Bodies are never
/// shown: they carry single-use links.
#[utoipa::path(get, path = "/api/admin/emails", tag = "admin", params(MailQuery),
    responses(
        (status = 200, description = "Mail, newest first", body = MailList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody),
    ))]
async fn mail_queue(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<MailQuery>,
) -> ApiResult<Json<MailList>> {
    auth.require_admin()?;
    let status = parse_mail_status(q.status.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows = state.db.list_mail(status, limit).await?;
    Ok(Json(MailList {
        items: rows.into_iter().map(mail_view).collect(),
    }))
}
