//! Who is acting: sessions and the tokens that carry them, password checks and lockout, and
//! where a request came from.

use crate::Core;
use crate::audit::Event;
use crate::error::CoreError;
use etx_db::now_micros;
use etx_db::sessions::{NewSession, RotateRefresh, Rotation};
use etx_db::users::UserRow;
use etx_domain::AuditAction;
use etx_domain::Role;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

/// A live session and its user, checked against the database on every request.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: UserRow,
    pub role: Role,
    pub session_id: String,
}

impl Auth {
    pub fn require_staff(&self) -> Result<(), CoreError> {
        if self.role.is_staff() {
            Ok(())
        } else {
            Err(CoreError::Forbidden("staff only".into()))
        }
    }

    pub fn require_admin(&self) -> Result<(), CoreError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(CoreError::Forbidden("admins only".into()))
        }
    }
}

/// Client address and user agent, for session records and audit.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

pub const INVALID_CREDENTIALS: &str = "Invalid credentials";

/// Tokens handed to a client that has just logged in or refreshed.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_max_age: i64,
    pub csrf_token: String,
    /// The user asked to stay signed in: the browser keeps the cookies across restarts.
    pub remember_me: bool,
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

pub(crate) fn refresh_lifetime_secs(state: &Core, remember_me: bool) -> i64 {
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
    Ok(issue(state, &user.id, &session_id, refresh, remember_me))
}

pub(crate) fn issue(
    state: &Core,
    user_id: &str,
    session_id: &str,
    refresh: String,
    remember_me: bool,
) -> Issued {
    let lifetime = refresh_lifetime_secs(state, remember_me);
    let (access, _) = state.tokens.issue_access(user_id, session_id);
    Issued {
        access_token: access,
        expires_in: state.tokens.access_ttl_secs,
        refresh_token: refresh,
        refresh_max_age: lifetime,
        csrf_token: etx_auth::random_token(),
        remember_me,
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
    Ok((
        user,
        issue(state, &user_id, &session_id, refresh_token, remember_me),
    ))
}

/// Ends the current session.
pub async fn logout(state: &Core, auth: &Auth) -> Result<(), etx_db::DbErr> {
    state.db.revoke_session(&auth.session_id, "logout").await?;
    state
        .events
        .session_ended(&auth.user.id, &auth.session_id)
        .await;
    Event::new(Some(&auth.user.id), AuditAction::Logout)
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
    Event::new(Some(&auth.user.id), AuditAction::SessionRevoke)
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

pub(crate) fn lock_wait_secs(locked_until: Option<i64>, now: i64) -> Option<u64> {
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
        Event::new(Some(&user.id), AuditAction::PasswordCheckFailed)
            .target("user", &user.id)
            .details(json!({"failures": failures}))
            .record(state)
            .await;
        return Err(CoreError::field(field, "is incorrect"));
    }
    state.db.reset_failed_logins(&user.id).await?;
    Ok(())
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
