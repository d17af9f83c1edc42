//! Account operations shared by the JSON API and the web pages: registration, login, session
//! issue and rotation, profile and password changes, avatars.

use crate::Core;
use crate::audit::Event;
use crate::error::CoreError;
use crate::session::{
    Auth, ClientInfo, INVALID_CREDENTIALS, Issued, check_own_password, count_failed_attempt,
    rate_limit, start_session,
};
use bytes::Bytes;
use etx_domain::AuditAction;

use etx_db::users::{NewUser, UserRow};
use etx_db::{DbErrorKind, now_micros};
use etx_domain::{Email, FieldErrors, Role, Username, validate_new_password};
use serde_json::json;
use std::time::Duration;

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
            Event::new(Some(&u.id), AuditAction::Register)
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
        Event::new(Some(&user.id), AuditAction::LoginFailed)
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
    Event::new(Some(&user.id), AuditAction::Login)
        .target("user", &user.id)
        .details(json!({"remember_me": remember_me}))
        .record(state)
        .await;
    Ok(LoginOutcome::Session(Box::new(user), issued))
}

/// A correct password opens a session, or, with 2FA on, a challenge waiting for a code.
pub enum LoginOutcome {
    Session(Box<UserRow>, Issued),
    SecondFactor { challenge_token: String },
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
    Event::new(Some(&auth.user.id), AuditAction::PasswordChange)
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
    Event::new(Some(&user.id), AuditAction::ProfileUpdate)
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
    Event::new(Some(&user.id), AuditAction::AvatarSet)
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
        Event::new(Some(&user.id), AuditAction::AvatarRemove)
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
