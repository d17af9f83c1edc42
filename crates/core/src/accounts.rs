//! Account operations shared by the JSON API and the web pages: registration, login, session
//! issue and rotation, profile and password changes, avatars.

use crate::Core;
use crate::audit::Event;
use crate::error::CoreError;
use crate::session::{Auth, ClientInfo};
use bytes::Bytes;
use etx_db::sessions::{NewSession, RotateRefresh, Rotation};
use etx_db::users::{NewUser, UserRow};
use etx_db::{DbErrorKind, now_micros};
use etx_domain::{Email, FieldErrors, Role, Username, validate_new_password};
use serde_json::json;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
pub const INVALID_CREDENTIALS: &str = "Invalid credentials";

/// Tokens handed to a client that has just logged in or refreshed.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_max_age: i64,
    pub csrf_token: String,
}

pub struct Registration<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub name: Option<&'a str>,
}

fn check_name(name: Option<&str>, errors: &mut FieldErrors) -> Option<String> {
    let n = name.map(str::trim).filter(|n| !n.is_empty())?;
    if n.chars().count() > 100 || n.chars().any(char::is_control) {
        errors.add("name", "must be at most 100 printable characters");
        return None;
    }
    Some(n.to_string())
}

pub(crate) async fn rate_limit(state: &Core, key: &str, limit: u32) -> Result<(), CoreError> {
    let d = state.limiter.hit(key, limit, MINUTE).await?;
    if d.allowed {
        Ok(())
    } else {
        Err(CoreError::RateLimited {
            retry_after_secs: d.reset_after_secs,
            limit,
        })
    }
}

/// Creates an account with the `user` role; a role in the request is never honoured.
pub async fn register(
    state: &Core,
    r: Registration<'_>,
    client: &ClientInfo,
) -> Result<UserRow, CoreError> {
    rate_limit(
        state,
        &format!("register:ip:{}", client.ip),
        state.config.rate_limit.register_per_ip_per_minute,
    )
    .await?;
    let mut errors = FieldErrors::new();
    let username = errors.check(Username::parse(r.username));
    let email = errors.check(Email::parse(r.email));
    let password = errors.check(validate_new_password(
        r.password,
        Some(r.username),
        Some(r.email),
    ));
    let name = check_name(r.name, &mut errors);
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(CoreError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(CoreError::validation(errors));
    }
    ensure_unique(state, &username, &email, None).await?;
    let hash = state.hasher.hash(password.expose()).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let new = NewUser {
        id: &id,
        username: username.as_str(),
        email: email.as_str(),
        name: name.as_deref(),
        password_hash: &hash,
        role: Role::User.as_str(),
        is_verified: false,
    };
    match state.db.insert_user(new).await {
        Ok(u) => {
            tracing::info!(user_id = %u.id, "account registered");
            Event::new(Some(&u.id), "auth.register")
                .target("user", &u.id)
                .details(json!({"username": u.username}))
                .record(state)
                .await;
            // The account exists either way; a mail that could not be queued can be asked for
            // again from the security page.
            if let Err(e) = crate::security::send_verification(state, &u).await {
                tracing::error!(user_id = %u.id, error = %e, "verification mail not queued");
            }
            Ok(u)
        }
        // Two registrations racing for the same name: the database decides.
        Err(e) => match etx_db::classify(&e) {
            DbErrorKind::UniqueViolation { constraint } => {
                Err(duplicate_error(state, constraint.as_deref(), &username, &email, None).await)
            }
            _ => Err(e.into()),
        },
    }
}

/// The answer to a write the unique keys on `users` refused: PostgreSQL names the violated
/// constraint; SQLite names none, so there the values are looked up again.
async fn duplicate_error(
    state: &Core,
    constraint: Option<&str>,
    username: &Username,
    email: &Email,
    except: Option<&str>,
) -> CoreError {
    match constraint {
        Some(etx_db::users::EMAIL_KEY) => {
            CoreError::conflict_field("email", "is already registered")
        }
        Some(etx_db::users::USERNAME_KEY) => {
            CoreError::conflict_field("username", "is already taken")
        }
        _ => match ensure_unique(state, username, email, except).await {
            Err(e) => e,
            // The row that collided is gone again; the name is the likelier collision.
            Ok(()) => CoreError::conflict_field("username", "is already taken"),
        },
    }
}

async fn ensure_unique(
    state: &Core,
    username: &Username,
    email: &Email,
    except: Option<&str>,
) -> Result<(), CoreError> {
    let (u, e) = state
        .db
        .username_or_email_taken(username.as_str(), email.as_str(), except)
        .await?;
    if u {
        return Err(CoreError::conflict_field("username", "is already taken"));
    }
    if e {
        return Err(CoreError::conflict_field("email", "is already registered"));
    }
    Ok(())
}

/// Checks credentials and opens a session. Unknown user, wrong password and a locked account all
/// answer the same generic message, after the same amount of hashing work.
pub async fn login(
    state: &Core,
    login: &str,
    password: &str,
    remember_me: bool,
    client: &ClientInfo,
) -> Result<LoginOutcome, CoreError> {
    let cfg = &state.config;
    rate_limit(
        state,
        &format!("login:ip:{}", client.ip),
        cfg.rate_limit.login_per_ip_per_minute,
    )
    .await?;
    if login.trim().is_empty() || password.is_empty() || password.len() > 1024 {
        return Err(CoreError::Unauthorized(INVALID_CREDENTIALS.into()));
    }
    let user = state.db.user_by_login(login).await?;
    let ok = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await;
    let Some(user) = user else {
        return Err(CoreError::Unauthorized(INVALID_CREDENTIALS.into()));
    };
    let now = now_micros();
    let locked = user.locked_until.is_some_and(|t| t > now);
    if locked {
        tracing::warn!(user_id = %user.id, "login refused: account locked");
        return Err(CoreError::Unauthorized(INVALID_CREDENTIALS.into()));
    }
    if !ok {
        count_failed_attempt(state, &user).await?;
        tracing::info!(user_id = %user.id, "login failed: wrong password");
        Event::new(Some(&user.id), "auth.login_failed")
            .target("user", &user.id)
            .record(state)
            .await;
        return Err(CoreError::Unauthorized(INVALID_CREDENTIALS.into()));
    }
    if !user.is_active {
        return Err(CoreError::Forbidden("this account is suspended".into()));
    }
    if crate::security::status(state, &user.id).await?.enabled {
        // The failure count stays until the second factor passes too: a known password must
        // not buy a fresh set of code guesses.
        let token = crate::security::open_challenge(state, &user, remember_me).await?;
        return Ok(LoginOutcome::SecondFactor {
            challenge_token: token,
        });
    }
    state.db.reset_failed_logins(&user.id).await?;
    let issued = start_session(state, &user, remember_me, client).await?;
    tracing::info!(user_id = %user.id, "logged in");
    Event::new(Some(&user.id), "auth.login")
        .target("user", &user.id)
        .details(json!({"remember_me": remember_me}))
        .record(state)
        .await;
    Ok(LoginOutcome::Session(Box::new(user), issued))
}

/// Counts a failed password or second-factor check toward the account lock-out (a lock that
/// has already run out starts a fresh count); returns the failures so far.
pub(crate) async fn count_failed_attempt(state: &Core, user: &UserRow) -> Result<i32, CoreError> {
    let a = &state.config.auth;
    if user.locked_until.is_some() {
        state.db.reset_failed_logins(&user.id).await?;
    }
    Ok(state
        .db
        .record_failed_login(
            &user.id,
            a.lockout_threshold,
            a.lockout_minutes * 60_000_000,
        )
        .await?)
}

/// A correct password opens a session, or, with 2FA on, a challenge waiting for a code.
pub enum LoginOutcome {
    Session(Box<UserRow>, Issued),
    SecondFactor { challenge_token: String },
}

fn refresh_lifetime_secs(state: &Core, remember_me: bool) -> i64 {
    let a = &state.config.auth;
    86_400
        * if remember_me {
            a.refresh_remember_days
        } else {
            a.refresh_ttl_days
        }
}

pub async fn start_session(
    state: &Core,
    user: &UserRow,
    remember_me: bool,
    client: &ClientInfo,
) -> Result<Issued, CoreError> {
    let session_id = uuid::Uuid::now_v7().to_string();
    let refresh = etx_auth::random_token();
    let lifetime = refresh_lifetime_secs(state, remember_me);
    let ip = client.ip.to_string();
    state
        .db
        .insert_session(NewSession {
            id: &session_id,
            user_id: &user.id,
            refresh_hash: &etx_auth::hash_token(&refresh),
            remember_me,
            user_agent: client.user_agent.as_deref(),
            ip: Some(&ip),
            expires_at: now_micros() + lifetime * 1_000_000,
        })
        .await?;
    Ok(issue(state, &user.id, &session_id, refresh, lifetime))
}

fn issue(state: &Core, user_id: &str, session_id: &str, refresh: String, lifetime: i64) -> Issued {
    let (access, _) = state.tokens.issue_access(user_id, session_id);
    Issued {
        access_token: access,
        expires_in: state.tokens.access_ttl_secs,
        refresh_token: refresh,
        refresh_max_age: lifetime,
        csrf_token: etx_auth::random_token(),
    }
}

/// Rotates a refresh token. Reuse of a rotated token ends the session it belonged to.
pub async fn refresh(state: &Core, token: &str) -> Result<(UserRow, Issued), CoreError> {
    let new_refresh = etx_auth::random_token();
    let old_hash = etx_auth::hash_token(token);
    let a = &state.config.auth;
    let rotation = state
        .db
        .rotate_refresh(
            RotateRefresh {
                old_hash: &old_hash,
                new_hash: &etx_auth::hash_token(&new_refresh),
                successor_sealed: &state
                    .secret_box
                    .seal(new_refresh.as_bytes(), old_hash.as_bytes()),
                grace_micros: a.refresh_grace_secs * 1_000_000,
                max_lifetime_micros: a.session_max_days * 86_400_000_000,
            },
            |remember| now_micros() + refresh_lifetime_secs(state, remember) * 1_000_000,
        )
        .await?;
    let (session_id, user_id, remember_me, refresh_token) = match rotation {
        Rotation::Rotated {
            session_id,
            user_id,
            remember_me,
        } => (session_id, user_id, remember_me, new_refresh),
        Rotation::Replayed {
            session_id,
            user_id,
            remember_me,
            successor_sealed,
        } => {
            let successor = state
                .secret_box
                .open(&successor_sealed, old_hash.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    CoreError::Unauthorized("invalid or expired refresh token".into())
                })?;
            (session_id, user_id, remember_me, successor)
        }
        Rotation::Reused => {
            tracing::warn!("refresh token reuse detected; session revoked");
            return Err(CoreError::Unauthorized(
                "refresh token was already used; the session has been ended".into(),
            ));
        }
        Rotation::Invalid => {
            return Err(CoreError::Unauthorized(
                "invalid or expired refresh token".into(),
            ));
        }
    };
    let user = state.db.user_by_id(&user_id).await?;
    let Some(user) = user.filter(|u| u.is_active) else {
        state.db.revoke_session(&session_id, "suspended").await?;
        return Err(CoreError::Unauthorized("account suspended".into()));
    };
    let lifetime = refresh_lifetime_secs(state, remember_me);
    Ok((
        user,
        issue(state, &user_id, &session_id, refresh_token, lifetime),
    ))
}

/// Ends the current session.
pub async fn logout(state: &Core, auth: &Auth) -> Result<(), etx_db::DbErr> {
    state.db.revoke_session(&auth.session_id, "logout").await?;
    state
        .events
        .session_ended(&auth.user.id, &auth.session_id)
        .await;
    Event::new(Some(&auth.user.id), "auth.logout")
        .target("session", &auth.session_id)
        .record(state)
        .await;
    Ok(())
}

/// Signs one of the user's own sessions out; another user's (or an ended) session is a 404.
pub async fn end_session(state: &Core, auth: &Auth, id: &str) -> Result<(), CoreError> {
    if id.len() > 64 || !state.db.revoke_own_session(&auth.user.id, id).await? {
        return Err(CoreError::NotFound);
    }
    state.events.session_ended(&auth.user.id, id).await;
    Event::new(Some(&auth.user.id), "auth.session_revoke")
        .target("session", id)
        .details(json!({"current": id == auth.session_id}))
        .record(state)
        .await;
    Ok(())
}

/// Users with a password check running. A signed-in user gets one hashing slot at a time, so
/// one account flooding a password form cannot queue everyone else's logins behind it.
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<String>>);

pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    user_id: String,
}

impl InFlight {
    pub fn try_begin(&self, user_id: &str) -> Option<InFlightGuard<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(user_id.to_string()).then(|| InFlightGuard {
            set: self,
            user_id: user_id.to_string(),
        })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.user_id);
    }
}

fn lock_wait_secs(locked_until: Option<i64>, now: i64) -> Option<u64> {
    let until = locked_until.filter(|t| *t > now)?;
    Some(u64::try_from((until - now) / 1_000_000).unwrap_or(0) + 1)
}

/// Checks a signed-in user's current password before a change that could take the account over
/// (password, email, turning 2FA off). Throttled per account and per address, one check at a
/// time per account, refused while the account is locked, and each wrong password counts
/// toward the lock like a failed login. A wrong password is a 422 on `field`.
pub async fn check_own_password(
    state: &Core,
    user_id: &str,
    password: &str,
    field: &str,
) -> Result<(), CoreError> {
    let rl = &state.config.rate_limit;
    rate_limit(
        state,
        &format!("pwcheck:user:{user_id}"),
        rl.password_checks_per_user_per_minute,
    )
    .await?;
    let ip = crate::audit::CLIENT
        .try_with(|c| c.0.clone())
        .unwrap_or_default();
    rate_limit(
        state,
        &format!("pwcheck:ip:{ip}"),
        rl.password_checks_per_ip_per_minute,
    )
    .await?;
    let Some(_slot) = state.password_checks.try_begin(user_id) else {
        return Err(CoreError::RateLimited {
            retry_after_secs: 1,
            limit: 1,
        });
    };
    // Fresh from the database: the session's copy may predate a lock or a new password.
    let user = state
        .db
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| CoreError::Unauthorized("session has ended; log in again".into()))?;
    if let Some(wait) = lock_wait_secs(user.locked_until, now_micros()) {
        return Err(CoreError::RateLimited {
            retry_after_secs: wait,
            limit: u32::try_from(state.config.auth.lockout_threshold).unwrap_or(0),
        });
    }
    if password.len() > 1024
        || !state
            .hasher
            .verify(password, Some(&user.password_hash))
            .await
    {
        let failures = count_failed_attempt(state, &user).await?;
        tracing::info!(user_id = %user.id, failures, "password check failed");
        Event::new(Some(&user.id), "auth.password_check_failed")
            .target("user", &user.id)
            .details(json!({"failures": failures}))
            .record(state)
            .await;
        return Err(CoreError::field(field, "is incorrect"));
    }
    state.db.reset_failed_logins(&user.id).await?;
    Ok(())
}

pub async fn change_password(
    state: &Core,
    auth: &Auth,
    current: &str,
    new: &str,
) -> Result<(), CoreError> {
    check_own_password(state, &auth.user.id, current, "current_password").await?;
    let password = validate_new_password(new, Some(&auth.user.username), Some(&auth.user.email))
        .map_err(|e| CoreError::field("new_password", &e.message))?;
    if current == new {
        return Err(CoreError::field(
            "new_password",
            "must differ from the current password",
        ));
    }
    let hash = state.hasher.hash(password.expose()).await?;
    state.db.set_password_hash(&auth.user.id, &hash).await?;
    let ended = state
        .db
        .revoke_user_sessions(&auth.user.id, Some(&auth.session_id), "password_changed")
        .await?;
    tracing::info!(user_id = %auth.user.id, other_sessions_ended = ended.len(), "password changed");
    for sid in &ended {
        state.events.session_ended(&auth.user.id, sid).await;
    }
    Event::new(Some(&auth.user.id), "auth.password_change")
        .target("user", &auth.user.id)
        .details(json!({"other_sessions_ended": ended.len()}))
        .record(state)
        .await;
    Ok(())
}

pub struct ProfileChange<'a> {
    pub username: Option<&'a str>,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    /// Needed to change the email address (whoever controls it can reset the password).
    pub current_password: Option<&'a str>,
    /// With 2FA on, changing the email needs a code too (app or backup code).
    pub code: Option<&'a str>,
}

/// Proof that the signed-in person owns the account, for a change that hands it to whoever
/// controls the new email address: the password, and a second-factor code when 2FA is on.
async fn reauthenticate(
    state: &Core,
    user: &UserRow,
    c: &ProfileChange<'_>,
) -> Result<(), CoreError> {
    let Some(password) = c.current_password.filter(|p| !p.is_empty()) else {
        return Err(CoreError::field(
            "current_password",
            "is required to change the email address",
        ));
    };
    check_own_password(state, &user.id, password, "current_password").await?;
    if crate::security::status(state, &user.id).await?.enabled {
        let code = c.code.map(str::trim).unwrap_or_default();
        if code.is_empty() {
            return Err(CoreError::field(
                "code",
                "a two-factor code is required to change the email address",
            ));
        }
        if crate::security::use_factor(state, &user.id, code, true)
            .await?
            .is_none()
        {
            return Err(CoreError::field("code", "is incorrect or was already used"));
        }
    }
    Ok(())
}

pub async fn update_profile(
    state: &Core,
    user: &UserRow,
    c: ProfileChange<'_>,
) -> Result<UserRow, CoreError> {
    let mut errors = FieldErrors::new();
    let username = errors.check(Username::parse(c.username.unwrap_or(&user.username)));
    let email = errors.check(Email::parse(c.email.unwrap_or(&user.email)));
    let name = match c.name {
        Some(n) => check_name(Some(n), &mut errors),
        None => user.name.clone(),
    };
    let (Some(username), Some(email)) = (username, email) else {
        return Err(CoreError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(CoreError::validation(errors));
    }
    ensure_unique(state, &username, &email, Some(&user.id)).await?;
    let email_changed = email.lower() != user.email.to_lowercase();
    if email_changed {
        reauthenticate(state, user, &c).await?;
    }
    match state
        .db
        .update_profile(
            &user.id,
            username.as_str(),
            email.as_str(),
            name.as_deref(),
            email_changed,
        )
        .await
    {
        Ok(()) => {}
        Err(e) => {
            return Err(match etx_db::classify(&e) {
                DbErrorKind::UniqueViolation { constraint } => {
                    duplicate_error(
                        state,
                        constraint.as_deref(),
                        &username,
                        &email,
                        Some(&user.id),
                    )
                    .await
                }
                _ => e.into(),
            });
        }
    }
    Event::new(Some(&user.id), "user.profile_update")
        .target("user", &user.id)
        .details(json!({
            "before": {"username": user.username, "email": user.email, "name": user.name},
            "after": {"username": username.as_str(), "email": email.as_str(), "name": name},
        }))
        .record(state)
        .await;
    let updated = state
        .db
        .user_by_id(&user.id)
        .await?
        .ok_or(CoreError::NotFound)?;
    if email_changed {
        if let Err(e) = crate::security::send_verification(state, &updated).await {
            tracing::error!(user_id = %user.id, error = %e, "verification mail not queued");
        }
        crate::mail::send_notice(
            state,
            &updated.username,
            &user.email,
            "The email address of your account was changed",
            &[format!(
                "The email address of your ETX Processor account was changed from {} to {}. \
                 Password reset links sent earlier no longer work.",
                user.email, updated.email
            )],
        )
        .await;
    }
    Ok(updated)
}

/// Every avatar upload costs a decode, so uploads are budgeted per account and per client
/// address before the body is even read. Both counters are hit, so a refused upload from an
/// address still counts against it.
pub async fn avatar_upload_budget(
    state: &Core,
    user_id: &str,
    client: &ClientInfo,
) -> Result<(), CoreError> {
    const HOUR: Duration = Duration::from_secs(3600);
    let rl = &state.config.rate_limit;
    let checks = [
        (
            format!("avatar:user:{user_id}"),
            rl.avatar_uploads_per_user_per_hour,
        ),
        (
            format!("avatar:ip:{}", client.ip),
            rl.avatar_uploads_per_ip_per_hour,
        ),
    ];
    let mut refused: Option<CoreError> = None;
    for (key, limit) in checks {
        let d = state.limiter.hit(&key, limit, HOUR).await?;
        if !d.allowed {
            let later = match &refused {
                Some(CoreError::RateLimited {
                    retry_after_secs, ..
                }) => d.reset_after_secs.max(*retry_after_secs),
                _ => d.reset_after_secs,
            };
            refused = Some(CoreError::RateLimited {
                retry_after_secs: later,
                limit,
            });
        }
    }
    refused.map_or(Ok(()), Err)
}

/// Validates and re-encodes an avatar, stores it under a fresh key, points the user at it and
/// only then removes the previous object.
pub async fn set_avatar(state: &Core, user: &UserRow, data: Bytes) -> Result<UserRow, CoreError> {
    if data.is_empty() {
        return Err(CoreError::field("file", "is empty"));
    }
    let processed = etx_storage::process_avatar_bounded(data)
        .await
        .map_err(|e| match e {
            etx_storage::AvatarError::UnsupportedType => {
                CoreError::UnsupportedMediaType(e.to_string())
            }
            etx_storage::AvatarError::Busy => CoreError::Busy {
                message: e.to_string(),
                retry_after_secs: etx_storage::image_upload::DECODE_WAIT.as_secs(),
            },
            other => CoreError::field("file", &other.to_string()),
        })?;
    let key = format!(
        "avatars/{}/{}.{}",
        user.id,
        uuid::Uuid::now_v7(),
        processed.extension
    );
    state
        .storage
        .put(&key, Bytes::from(processed.bytes))
        .await?;
    state
        .db
        .set_avatar(&user.id, Some(&key), Some(processed.content_type))
        .await?;
    if let Some(old) = &user.avatar_key
        && let Err(e) = state.storage.delete(old).await
    {
        tracing::warn!(error = %e, "old avatar could not be removed");
    }
    Event::new(Some(&user.id), "user.avatar_set")
        .target("user", &user.id)
        .details(json!({"content_type": processed.content_type}))
        .record(state)
        .await;
    state
        .db
        .user_by_id(&user.id)
        .await?
        .ok_or(CoreError::NotFound)
}

pub async fn remove_avatar(state: &Core, user: &UserRow) -> Result<UserRow, CoreError> {
    if let Some(old) = &user.avatar_key {
        state.db.set_avatar(&user.id, None, None).await?;
        state.storage.delete(old).await?;
        Event::new(Some(&user.id), "user.avatar_remove")
            .target("user", &user.id)
            .record(state)
            .await;
    }
    state
        .db
        .user_by_id(&user.id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Creates an administrator (CLI and first-start bootstrap). Fails if the name is taken.
pub async fn create_admin(
    db: &etx_db::Db,
    hasher: &etx_auth::PasswordHasher,
    email: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<UserRow> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("{e}"))?;
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = validate_new_password(password, Some(username.as_str()), Some(email.as_str()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (u, e) = db
        .username_or_email_taken(username.as_str(), email.as_str(), None)
        .await?;
    if u || e {
        anyhow::bail!("a user with that username or email already exists");
    }
    let hash = hasher.hash(password.expose()).await?;
    let id = uuid::Uuid::now_v7().to_string();
    Ok(db
        .insert_user(NewUser {
            id: &id,
            username: username.as_str(),
            email: email.as_str(),
            name: None,
            password_hash: &hash,
            role: Role::Admin.as_str(),
            is_verified: true,
        })
        .await?)
}

/// Authenticates an access token against its live session.
pub async fn authenticate(state: &Core, token: &str) -> Result<Auth, CoreError> {
    let claims = state.tokens.verify_access(token).map_err(|e| match e {
        etx_auth::TokenError::Expired => CoreError::Unauthorized("access token expired".into()),
        etx_auth::TokenError::Invalid => CoreError::Unauthorized("invalid access token".into()),
    })?;
    let active = state
        .db
        .active_session(&claims.sid)
        .await?
        .ok_or_else(|| CoreError::Unauthorized("session has ended; log in again".into()))?;
    if active.user.id != claims.sub {
        return Err(CoreError::Unauthorized("invalid access token".into()));
    }
    if !active.user.is_active {
        return Err(CoreError::Unauthorized("account suspended".into()));
    }
    if active.session.last_seen_at < etx_db::now_micros() - 60_000_000 {
        state.db.touch_session(&active.session.id).await?;
    }
    let role = active.user.role.parse().unwrap_or(Role::User);
    Ok(Auth {
        user: active.user,
        role,
        session_id: active.session.id,
    })
}
