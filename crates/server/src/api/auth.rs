//! `/api/auth/*`: registration, login (JSON or OAuth2 password form), refresh, logout, the
//! current user, password change and the CSRF token.

use crate::cookies;
use crate::cookies::SetCookies;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::{Auth, ClientInfo, check_csrf, refuse_cross_site};
use crate::state::AppState;
use crate::views::UserView;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use etx_core::accounts::{self, LoginOutcome, ProfileChange, Registration};
use etx_core::session::Issued;
use etx_domain::AuditAction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(login_2fa))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(password_strength))
        .routes(routes!(csrf))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// The browser or client that signed in (its User-Agent).
    pub device: Option<String>,
    /// The same, as a person names it: "Chrome on Linux".
    #[schema(example = "Chrome on Linux")]
    pub device_name: String,
    pub ip: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    /// The session this request is made with.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// Your signed-in sessions, most recently used first.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth",
    responses(
        (status = 200, description = "Live sessions", body = SessionList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn sessions(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<SessionList>> {
    let rows = state.db.list_sessions(&auth.user.id).await?;
    Ok(Json(SessionList {
        sessions: rows
            .into_iter()
            .map(|s| SessionView {
                current: s.id == auth.session_id,
                id: s.id,
                device_name: crate::views::device_name(s.user_agent.as_deref()),
                device: s.user_agent,
                ip: s.ip,
                created_at: crate::views::rfc3339(s.created_at),
                last_seen_at: crate::views::rfc3339(s.last_seen_at),
                expires_at: crate::views::rfc3339(s.expires_at),
            })
            .collect(),
    }))
}

/// Sign one of your sessions out (any device). Another user's session is a 404.
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "auth",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 404, description = "No such live session of yours", body = ErrorBody),
    ))]
async fn end_session(
    State(state): State<AppState>,
    auth: Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<StatusCode> {
    etx_core::session::end_session(&state, &auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(example = "Str0ng-Passphrase")]
    pub password: String,
    pub name: Option<String>,
}

/// Tokens issued at login, registration or refresh. The same tokens are also set as cookies.
#[derive(Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: UserView,
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, single-use; send it to `/api/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Echo it in `X-CSRF-Token` on unsafe requests authenticated by cookie.
    pub csrf_token: String,
}

fn auth_response(
    state: &AppState,
    status: StatusCode,
    user: &etx_db::users::UserRow,
    issued: Issued,
) -> Response {
    let mut headers = HeaderMap::new();
    issued.set_cookies(state.secure_cookies(), &mut headers);
    headers.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    let body = AuthResponse {
        user: user.into(),
        access_token: issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        csrf_token: issued.csrf_token,
    };
    (status, headers, Json(body)).into_response()
}

async fn do_register(
    state: &AppState,
    client: &ClientInfo,
    req: RegisterRequest,
) -> ApiResult<Response> {
    let user = accounts::register(
        state,
        Registration {
            username: &req.username,
            email: &req.email,
            password: &req.password,
            name: req.name.as_deref(),
        },
        client,
    )
    .await?;
    let issued = etx_core::session::start_session(state, &user, false, client).await?;
    Ok(auth_response(state, StatusCode::CREATED, &user, issued))
}

/// Create an account. The new user always has the `user` role; a `role` field is ignored.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Cross-site request refused", body = ErrorBody),
        (status = 409, description = "Username or email already taken", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    AppJson(req): AppJson<RegisterRequest>,
) -> ApiResult<Response> {
    refuse_cross_site(&state, &headers)?;
    do_register(&state, &client, req).await
}

/// Alias of `/api/auth/register`.
#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthResponse),
        (status = 409, description = "Username or email already taken", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ))]
async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    AppJson(req): AppJson<RegisterRequest>,
) -> ApiResult<Response> {
    refuse_cross_site(&state, &headers)?;
    do_register(&state, &client, req).await
}

#[derive(Deserialize, ToSchema)]
pub struct StrengthRequest {
    pub password: String,
    /// The username and email the password is for: a password made of them is weak.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StrengthView {
    /// 0 (guessed at once) to 4 (very hard to guess).
    pub score: u8,
    #[schema(example = "Strong")]
    pub label: &'static str,
    /// Whether registration, a change or a reset would take it (score 2 or more, and the
    /// length and character rules).
    pub acceptable: bool,
    /// Why it is weak, if it is.
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

/// How hard a password would be to guess (zxcvbn's estimate), for a strength meter. Nothing is
/// stored or logged; limited per client address.
#[utoipa::path(post, path = "/api/auth/password-strength", tag = "auth", request_body = StrengthRequest,
    responses(
        (status = 200, description = "The estimate", body = StrengthView),
        (status = 422, description = "Invalid body", body = ErrorBody),
        (status = 429, description = "Too many estimates from this address", body = ErrorBody),
    ))]
async fn password_strength(
    State(state): State<AppState>,
    client: ClientInfo,
    AppJson(req): AppJson<StrengthRequest>,
) -> ApiResult<Json<StrengthView>> {
    let limit = state.config.rate_limit.strength_checks_per_ip_per_minute;
    let d = state
        .limiter
        .hit(
            &format!("strength:ip:{}", client.ip),
            limit,
            std::time::Duration::from_secs(60),
        )
        .await?;
    if !d.allowed {
        return Err(ApiError::RateLimited {
            retry_after_secs: d.reset_after_secs,
            limit,
        });
    }
    let (username, email) = (req.username.as_deref(), req.email.as_deref());
    let known: Vec<&str> = [username, email].into_iter().flatten().collect();
    let s = etx_domain::password_strength(&req.password, &known);
    let acceptable = etx_domain::validate_new_password(&req.password, username, email).is_ok();
    Ok(Json(StrengthView {
        score: s.score,
        label: s.label(),
        acceptable,
        warning: s.warning,
        suggestions: s.suggestions,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    #[schema(example = "alice")]
    pub login: String,
    pub password: String,
    #[serde(default)]
    pub remember_me: bool,
}

/// OAuth2 resource-owner password form, for standard password-flow clients.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
}

/// Either body format, chosen by Content-Type.
pub struct LoginInput(LoginRequest);

impl FromRequest<AppState> for LoginInput {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        refuse_cross_site(state, req.headers())?;
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let Form(f) = Form::<LoginForm>::from_request(req, state)
                .await
                .map_err(|e| ApiError::Validation {
                    message: e.body_text(),
                    fields: Default::default(),
                })?;
            if f.grant_type.as_deref().is_some_and(|g| g != "password") {
                return Err(ApiError::BadRequest(
                    "unsupported grant_type; use password".into(),
                ));
            }
            let _ = f.scope;
            Ok(LoginInput(LoginRequest {
                login: f.username,
                password: f.password,
                remember_me: false,
            }))
        } else {
            let AppJson(r) = AppJson::<LoginRequest>::from_request(req, state).await?;
            Ok(LoginInput(r))
        }
    }
}

/// Log in with username or email and password.
///
/// Unknown user, wrong password and a locked account all answer 401 "Invalid credentials".
/// Five failures lock the account for 15 minutes; each address is also throttled (429).
/// OAuth2 password-flow clients may send the same as an `application/x-www-form-urlencoded`
/// form (`username`, `password`, `grant_type=password`).
// Only the JSON body is documented: client generators that meet two media types for one
// request body (openapi-python-client among them) emit a login module that does not import.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in, or (with 2FA on) a challenge waiting for a code", body = LoginResult),
        (status = 401, description = "Invalid credentials", body = ErrorBody),
        (status = 403, description = "Account suspended, or a cross-site request", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    LoginInput(req): LoginInput,
) -> ApiResult<Response> {
    match accounts::login(&state, &req.login, &req.password, req.remember_me, &client).await? {
        LoginOutcome::Session(user, issued) => {
            Ok(auth_response(&state, StatusCode::OK, &user, issued))
        }
        LoginOutcome::SecondFactor { challenge_token } => Ok((
            [(header::CACHE_CONTROL, "no-store")],
            Json(ChallengeResponse {
                two_factor_required: true,
                challenge_token,
                expires_in: state.config.two_factor.challenge_ttl_secs,
            }),
        )
            .into_response()),
    }
}

/// With 2FA on, a correct password yields this instead of tokens: no session exists yet.
#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    pub two_factor_required: bool,
    /// Send it with a code to `/api/auth/login/2fa`; single-use, short-lived.
    pub challenge_token: String,
    /// Seconds the challenge stays valid.
    pub expires_in: i64,
}

/// The two shapes a successful login answer takes (documentation only).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LoginResult {
    Signed(Box<AuthResponse>),
    Challenge(ChallengeResponse),
}

#[derive(Deserialize, ToSchema)]
pub struct SecondFactorRequest {
    pub challenge_token: String,
    /// A 6-digit code from the authenticator app, or an unused backup code.
    #[schema(example = "123456")]
    pub code: String,
}

/// Second step of a login with 2FA on: the challenge and a code open the session.
///
/// Each challenge allows five codes; then it is void and the login starts over.
#[utoipa::path(post, path = "/api/auth/login/2fa", tag = "auth", request_body = SecondFactorRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 401, description = "Wrong code, or the challenge expired or was used up", body = ErrorBody),
        (status = 403, description = "Account suspended, or a cross-site request", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    ))]
async fn login_2fa(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
    AppJson(req): AppJson<SecondFactorRequest>,
) -> ApiResult<Response> {
    refuse_cross_site(&state, &headers)?;
    let (user, issued) =
        etx_core::security::complete_login(&state, &req.challenge_token, &req.code, &client)
            .await?;
    Ok(auth_response(&state, StatusCode::OK, &user, issued))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

/// Exchange a refresh token (cookie, or body for non-browser clients) for a new token pair.
///
/// The presented token is used up. Presenting it again ends the session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body(content = Option<RefreshRequest>),
    responses(
        (status = 200, description = "New tokens", body = AuthResponse),
        (status = 401, description = "Invalid, expired or reused refresh token", body = ErrorBody),
        (status = 403, description = "Cookie used without a valid CSRF token, or a cross-site request", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
    ))]
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    refuse_cross_site(&state, &headers)?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // Only JSON: a form or text/plain body is what another site's page can send without
        // a preflight.
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the refresh token as application/json".into(),
            ));
        }
        let r: RefreshRequest =
            serde_json::from_slice(&body).map_err(|e| ApiError::Validation {
                message: e.to_string(),
                fields: Default::default(),
            })?;
        r.refresh_token
    };
    let token = match from_body {
        Some(t) => t,
        None => {
            let t = cookies::get(&headers, cookies::REFRESH)
                .ok_or_else(|| ApiError::Unauthorized("refresh token required".into()))?
                .to_string();
            check_csrf(&headers, None)?;
            t
        }
    };
    let (user, issued) = etx_core::session::refresh(&state, &token).await?;
    etx_core::audit::Event::new(Some(&user.id), AuditAction::Refresh)
        .target("user", &user.id)
        .record(&state)
        .await;
    Ok(auth_response(&state, StatusCode::OK, &user, issued))
}

/// End the current session and clear the auth cookies.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
    ))]
async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    etx_core::session::logout(&state, &auth).await?;
    let mut headers = HeaderMap::new();
    crate::cookies::clear_cookies(state.secure_cookies(), &mut headers);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The current user", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn me(auth: Auth) -> Json<UserView> {
    Json((&auth.user).into())
}

/// Editable profile fields. Anything else (role, level, exp, …) is refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Required when `email` changes.
    pub current_password: Option<String>,
    /// Required when `email` changes and 2FA is on: an app code or a backup code.
    pub code: Option<String>,
}

/// Update the signed-in user's username, email or display name.
///
/// Changing the email needs `current_password` (and `code` with 2FA on), clears the verified
/// flag, voids unused reset and verification links, and tells the old address.
#[utoipa::path(put, path = "/api/auth/me", tag = "auth", request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "Updated user", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 422, description = "Invalid or forbidden fields, or a missing or wrong password or code for an email change", body = ErrorBody),
        (status = 429, description = "Too many password checks", body = ErrorBody),
    ))]
async fn update_me(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<UpdateMeRequest>,
) -> ApiResult<Json<UserView>> {
    let change = ProfileChange {
        username: req.username.as_deref(),
        email: req.email.as_deref(),
        name: req.name.as_deref(),
        current_password: req.current_password.as_deref(),
        code: req.code.as_deref(),
    };
    let user = accounts::update_profile(&state, &auth.user, change).await?;
    Ok(Json((&user).into()))
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

/// Change the password. Every other session of the user is signed out.
#[utoipa::path(post, path = "/api/auth/change-password", tag = "auth", request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Password changed", body = MessageResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 422, description = "Wrong current password or weak new one", body = ErrorBody),
    ))]
async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> ApiResult<Json<MessageResponse>> {
    accounts::change_password(&state, &auth, &req.current_password, &req.new_password).await?;
    Ok(Json(MessageResponse {
        message: "password changed; other sessions were signed out".into(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct CsrfResponse {
    pub csrf_token: String,
    /// The header to echo it in.
    #[schema(example = "X-CSRF-Token")]
    pub header: &'static str,
}

/// The CSRF token for cookie-authenticated requests; sets the `csrf_token` cookie if missing.
#[utoipa::path(get, path = "/api/csrf", tag = "auth",
    responses((status = 200, description = "The token", body = CsrfResponse)))]
async fn csrf(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let existing = cookies::get(&headers, cookies::CSRF).filter(|t| t.len() >= 32 && t.len() <= 64);
    let mut out = HeaderMap::new();
    let token = match existing {
        Some(t) => t.to_string(),
        None => {
            let t = etx_auth::random_token();
            let max_age = state.config.auth.refresh_remember_days * 86_400;
            cookies::append(
                &mut out,
                cookies::build(cookies::CSRF, &t, max_age, false, state.secure_cookies()),
            );
            t
        }
    };
    out.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    (
        out,
        Json(CsrfResponse {
            csrf_token: token,
            header: "X-CSRF-Token",
        }),
    )
        .into_response()
}
