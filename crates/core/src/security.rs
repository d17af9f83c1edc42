//! Second factor and proof of the email address, shared by the JSON API and the web pages:
//! TOTP enrolment, backup codes, the login challenge, email verification and password reset.

use crate::Core;
use crate::audit::Event;
use crate::error::CoreError;
use crate::session::ClientInfo;
use crate::session::{self, Issued, rate_limit};
use etx_auth::{hash_token, random_token, totp};
use etx_db::now_micros;
use etx_db::security::{NewEmailToken, TokenPurpose};
use etx_db::users::UserRow;
use etx_domain::AuditAction;
use etx_domain::validate_new_password;
use serde_json::json;

pub const BACKUP_CODE_COUNT: usize = 10;
const VERIFY_CODE_ATTEMPTS: i32 = 5;
/// Expired challenges and tokens are kept this long (for support questions), then removed.
pub const EXPIRED_GRACE_MICROS: i64 = 7 * 86_400 * 1_000_000;
const DEAD_LINK: &str = "This link is invalid, was already used or has expired.";

fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// What an authenticator app needs to be set up.
pub struct Enrollment {
    pub secret: String,
    pub otpauth_url: String,
    pub qr_svg: String,
}

/// A QR code as inline SVG, drawn here so no third-party image service ever sees a secret.
pub fn qr_svg(data: &str) -> Result<String, CoreError> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| anyhow::anyhow!("QR code: {e}"))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Drop the XML prolog so the markup can sit inside an HTML page.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

fn open_secret(state: &Core, user_id: &str, sealed: &str) -> Result<Vec<u8>, CoreError> {
    state
        .secret_box
        .open(sealed, user_id.as_bytes())
        .map_err(|e| CoreError::Internal(anyhow::anyhow!("stored 2FA secret unreadable: {e}")))
}

fn backup_hash(state: &Core, user_id: &str, normalized: &str) -> String {
    state
        .secret_box
        .keyed_hash("backup-code", &format!("{user_id}:{normalized}"))
}

fn new_backup_codes(state: &Core, user_id: &str) -> (Vec<String>, Vec<String>) {
    let codes = totp::generate_backup_codes(BACKUP_CODE_COUNT);
    let hashes = codes
        .iter()
        .filter_map(|c| totp::normalize_backup_code(c))
        .map(|n| backup_hash(state, user_id, &n))
        .collect();
    (codes, hashes)
}

/// One budget of code attempts per account per minute, shared by login, set-up and changes.
async fn per_user_limit(state: &Core, user_id: &str) -> Result<(), CoreError> {
    rate_limit(
        state,
        &format!("2fa:user:{user_id}"),
        state.config.rate_limit.two_factor_per_ip_per_minute,
    )
    .await
}

/// Starts enrolment with a fresh secret; 2FA stays off until a code from it is confirmed.
pub async fn setup(state: &Core, user: &UserRow) -> Result<Enrollment, CoreError> {
    per_user_limit(state, &user.id).await?;
    let secret = totp::generate_secret();
    let sealed = state.secret_box.seal(&secret, user.id.as_bytes());
    if !state.db.put_pending_two_factor(&user.id, &sealed).await? {
        return Err(CoreError::Conflict {
            message: "two-factor authentication is already on".into(),
            fields: Default::default(),
        });
    }
    let otpauth_url = totp::otpauth_url(&state.config.two_factor.issuer, &user.username, &secret);
    Event::new(Some(&user.id), AuditAction::TwoFactorSetup)
        .target("user", &user.id)
        .record(state)
        .await;
    Ok(Enrollment {
        secret: totp::base32(&secret),
        qr_svg: qr_svg(&otpauth_url)?,
        otpauth_url,
    })
}

/// Confirms enrolment with a code from the app; returns the backup codes, shown only now. Every
/// other session is signed out: one opened with the password alone (perhaps by whoever made
/// the owner turn 2FA on) must not outlive it.
pub async fn confirm(
    state: &Core,
    user: &UserRow,
    current_session: &str,
    code: &str,
) -> Result<Vec<String>, CoreError> {
    per_user_limit(state, &user.id).await?;
    let row = state.db.two_factor(&user.id).await?;
    let Some(row) = row.filter(|r| !r.enabled) else {
        return Err(CoreError::Conflict {
            message: "there is no two-factor set-up waiting for a code".into(),
            fields: Default::default(),
        });
    };
    let secret = open_secret(state, &user.id, &row.secret_sealed)?;
    let Some(step) = totp::verify(&secret, code, now_secs(), None) else {
        return Err(CoreError::field("code", "is incorrect or has expired"));
    };
    let (codes, hashes) = new_backup_codes(state, &user.id);
    let step = i64::try_from(step).map_err(anyhow::Error::from)?;
    if !state.db.enable_two_factor(&user.id, step, &hashes).await? {
        return Err(CoreError::Conflict {
            message: "two-factor authentication is already on".into(),
            fields: Default::default(),
        });
    }
    state
        .xp
        .award(&user.id, etx_domain::XpKind::TwoFactorEnabled);
    let ended = state
        .db
        .revoke_user_sessions(&user.id, Some(current_session), "2fa_enabled")
        .await?;
    for sid in &ended {
        state.events.session_ended(&user.id, sid).await;
    }
    tracing::info!(user_id = %user.id, other_sessions_ended = ended.len(), "two-factor authentication enabled");
    Event::new(Some(&user.id), AuditAction::TwoFactorEnable)
        .target("user", &user.id)
        .details(json!({"other_sessions_ended": ended.len()}))
        .record(state)
        .await;
    Ok(codes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    BackupCode,
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
            Factor::BackupCode => "backup_code",
        }
    }
}

/// Checks and uses up a second-factor code of a user with 2FA on: a TOTP code (each time step
/// at most once) or an unused backup code (`allow_backup`). `None`: refused.
pub async fn use_factor(
    state: &Core,
    user_id: &str,
    code: &str,
    allow_backup: bool,
) -> Result<Option<Factor>, CoreError> {
    let Some(row) = state.db.two_factor(user_id).await?.filter(|r| r.enabled) else {
        return Ok(None);
    };
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let secret = open_secret(state, user_id, &row.secret_sealed)?;
        let last = row.last_step.and_then(|s| u64::try_from(s).ok());
        if let Some(step) = totp::verify(&secret, &digits, now_secs(), last)
            && let Ok(step) = i64::try_from(step)
            && state.db.use_totp_step(user_id, step).await?
        {
            return Ok(Some(Factor::Totp));
        }
        return Ok(None);
    }
    if allow_backup && let Some(n) = totp::normalize_backup_code(code) {
        let hash = backup_hash(state, user_id, &n);
        if state.db.use_backup_code(user_id, &hash).await? {
            return Ok(Some(Factor::BackupCode));
        }
    }
    Ok(None)
}

pub struct Status {
    pub enabled: bool,
    pub enabled_at: Option<i64>,
    pub backup_codes_left: i64,
}

pub async fn status(state: &Core, user_id: &str) -> Result<Status, CoreError> {
    let row = state.db.two_factor(user_id).await?.filter(|r| r.enabled);
    let left = if row.is_some() {
        state.db.backup_codes_left(user_id).await?
    } else {
        0
    };
    Ok(Status {
        enabled: row.is_some(),
        enabled_at: row.and_then(|r| r.enabled_at),
        backup_codes_left: left,
    })
}

fn two_factor_off() -> CoreError {
    CoreError::Conflict {
        message: "two-factor authentication is not on".into(),
        fields: Default::default(),
    }
}

/// Turns 2FA off; needs the password and a code (TOTP or backup).
pub async fn disable(
    state: &Core,
    user: &UserRow,
    password: &str,
    code: &str,
) -> Result<(), CoreError> {
    per_user_limit(state, &user.id).await?;
    if !status(state, &user.id).await?.enabled {
        return Err(two_factor_off());
    }
    session::check_own_password(state, &user.id, password, "password").await?;
    let Some(factor) = use_factor(state, &user.id, code, true).await? else {
        return Err(CoreError::field("code", "is incorrect or was already used"));
    };
    state.db.disable_two_factor(&user.id).await?;
    tracing::info!(user_id = %user.id, "two-factor authentication disabled");
    Event::new(Some(&user.id), AuditAction::TwoFactorDisable)
        .target("user", &user.id)
        .details(json!({"factor": factor.as_str()}))
        .record(state)
        .await;
    Ok(())
}

/// New backup codes (the old ones stop working); needs a code from the app.
pub async fn regenerate_backup_codes(
    state: &Core,
    user: &UserRow,
    code: &str,
) -> Result<Vec<String>, CoreError> {
    per_user_limit(state, &user.id).await?;
    if !status(state, &user.id).await?.enabled {
        return Err(two_factor_off());
    }
    if use_factor(state, &user.id, code, false).await?.is_none() {
        return Err(CoreError::field("code", "is incorrect or was already used"));
    }
    let (codes, hashes) = new_backup_codes(state, &user.id);
    state.db.replace_backup_codes(&user.id, &hashes).await?;
    Event::new(Some(&user.id), AuditAction::TwoFactorBackupCodes)
        .target("user", &user.id)
        .record(state)
        .await;
    Ok(codes)
}

/// After a correct password for an account with 2FA on: a short-lived, single-use challenge
/// instead of a session.
pub async fn open_challenge(
    state: &Core,
    user: &UserRow,
    remember_me: bool,
) -> Result<String, CoreError> {
    let token = random_token();
    let ttl = state.config.two_factor.challenge_ttl_secs * 1_000_000;
    state
        .db
        .insert_login_challenge(
            &hash_token(&token),
            &user.id,
            remember_me,
            now_micros() + ttl,
        )
        .await?;
    Event::new(Some(&user.id), AuditAction::LoginChallenge)
        .target("user", &user.id)
        .record(state)
        .await;
    Ok(token)
}

pub const CHALLENGE_DEAD: &str = "This sign-in has expired or was used up; please sign in again.";

/// Second step of a login: the challenge and a code open the session.
pub async fn complete_login(
    state: &Core,
    challenge_token: &str,
    code: &str,
    client: &ClientInfo,
) -> Result<(UserRow, Issued), CoreError> {
    rate_limit(
        state,
        &format!("2fa:ip:{}", client.ip),
        state.config.rate_limit.two_factor_per_ip_per_minute,
    )
    .await?;
    if challenge_token.is_empty() || challenge_token.len() > 128 || code.len() > 64 {
        return Err(CoreError::Unauthorized(CHALLENGE_DEAD.into()));
    }
    let hash = hash_token(challenge_token);
    let Some(ch) = state
        .db
        .take_challenge_attempt(&hash, state.config.two_factor.max_attempts)
        .await?
    else {
        return Err(CoreError::Unauthorized(CHALLENGE_DEAD.into()));
    };
    let user = state.db.user_by_id(&ch.user_id).await?;
    let Some(user) = user else {
        return Err(CoreError::Unauthorized(CHALLENGE_DEAD.into()));
    };
    if !user.is_active {
        return Err(CoreError::Forbidden("this account is suspended".into()));
    }
    // Across all challenges and addresses, an account gets a bounded number of code tries.
    per_user_limit(state, &user.id).await?;
    // Wrong codes lock the account like wrong passwords; while locked no code is even checked,
    // so a stolen password buys a handful of guesses per lock period, not thousands a day.
    if user.locked_until.is_some_and(|t| t > now_micros()) {
        return Err(CoreError::Unauthorized(
            "This account is locked after too many failed attempts; try again later.".into(),
        ));
    }
    let Some(factor) = use_factor(state, &user.id, code, true).await? else {
        second_factor_failed(state, &user).await?;
        return Err(CoreError::Unauthorized("Invalid code".into()));
    };
    state.db.reset_failed_logins(&user.id).await?;
    if !state.db.consume_challenge(&hash).await? {
        return Err(CoreError::Unauthorized(CHALLENGE_DEAD.into()));
    }
    let issued = session::start_session(state, &user, ch.remember_me, client).await?;
    tracing::info!(user_id = %user.id, "logged in with a second factor");
    Event::new(Some(&user.id), AuditAction::Login)
        .target("user", &user.id)
        .details(json!({"remember_me": ch.remember_me, "second_factor": factor.as_str()}))
        .record(state)
        .await;
    Ok((user, issued))
}

/// A wrong code at login counts toward the account lock; the failure that locks the account
/// tells its owner, whose password is evidently known to someone.
async fn second_factor_failed(state: &Core, user: &UserRow) -> Result<(), CoreError> {
    let a = &state.config.auth;
    let failures = session::count_failed_attempt(state, user).await?;
    Event::new(Some(&user.id), AuditAction::TwoFactorFailed)
        .target("user", &user.id)
        .details(json!({"failures": failures}))
        .record(state)
        .await;
    if failures == a.lockout_threshold {
        tracing::warn!(user_id = %user.id, failures, "account locked after failed second-factor codes");
        crate::mail::send_notice(
            state,
            &user.username,
            &user.email,
            "Failed sign-in codes on your account",
            &[
                format!(
                    "Someone signed in with your password and then entered {failures} wrong \
                     two-factor codes. Your account is locked for {} minutes.",
                    a.lockout_minutes
                ),
                "Your password is known to whoever did this: change it now.".to_string(),
            ],
        )
        .await;
    }
    Ok(())
}

fn verify_code_hash(state: &Core, user_id: &str, code: &str) -> String {
    state
        .secret_box
        .keyed_hash("verify-code", &format!("{user_id}:{code}"))
}

/// Queues a verification mail (link and 6-digit code) for the user's current address. Earlier
/// links and codes stop working.
pub async fn send_verification(state: &Core, user: &UserRow) -> Result<(), CoreError> {
    let token = random_token();
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let mail = crate::mail::verification_mail(state, &user.username, &user.email, &token, &code)?;
    let ttl = state.config.email.verify_ttl_hours * 3_600_000_000;
    let code_hash = verify_code_hash(state, &user.id, &code);
    send_token_mail(
        state,
        user,
        TokenPurpose::Verify,
        &token,
        Some(&code_hash),
        ttl,
        mail,
    )
    .await
}

/// Stores a token (hashed) with the mail that carries it, and wakes the sender.
async fn send_token_mail(
    state: &Core,
    user: &UserRow,
    purpose: TokenPurpose,
    token: &str,
    code_hash: Option<&str>,
    ttl_micros: i64,
    mail: etx_db::mail::NewMail,
) -> Result<(), CoreError> {
    state
        .db
        .issue_email_token(
            NewEmailToken {
                token_hash: &hash_token(token),
                user_id: &user.id,
                purpose,
                email: &user.email,
                code_hash,
                expires_at: now_micros() + ttl_micros,
            },
            mail,
        )
        .await?;
    state.mailer.wake.notify_one();
    Ok(())
}

/// Another verification mail on request; `false` when the address is already verified.
pub async fn resend_verification(state: &Core, user: &UserRow) -> Result<bool, CoreError> {
    if user.is_verified {
        return Ok(false);
    }
    rate_limit(state, &format!("verify-mail:user:{}", user.id), 3).await?;
    send_verification(state, user).await?;
    Event::new(Some(&user.id), AuditAction::VerificationSent)
        .target("user", &user.id)
        .record(state)
        .await;
    Ok(true)
}

async fn email_verified(state: &Core, user_id: &str, how: &str) {
    tracing::info!(user_id, "email verified");
    state.xp.award(user_id, etx_domain::XpKind::EmailVerified);
    Event::new(Some(user_id), AuditAction::EmailVerified)
        .target("user", user_id)
        .details(json!({"with": how}))
        .record(state)
        .await;
}

/// Verifies with the link's token; no sign-in needed, since the token proves the mailbox.
pub async fn verify_email_token(state: &Core, token: &str) -> Result<(), CoreError> {
    if token.is_empty() || token.len() > 128 {
        return Err(CoreError::BadRequest(DEAD_LINK.into()));
    }
    match state.db.verify_email_with(&hash_token(token)).await? {
        Some(user_id) => {
            email_verified(state, &user_id, "link").await;
            Ok(())
        }
        None => Err(CoreError::BadRequest(DEAD_LINK.into())),
    }
}

/// Verifies the signed-in user's address with the 6-digit code; five wrong codes use it up.
pub async fn verify_email_code(state: &Core, user: &UserRow, code: &str) -> Result<(), CoreError> {
    if user.is_verified {
        return Ok(());
    }
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CoreError::field(
            "code",
            "must be the 6 digits from the mail",
        ));
    }
    let Some(row) = state
        .db
        .take_verify_code_attempt(&user.id, VERIFY_CODE_ATTEMPTS)
        .await?
    else {
        return Err(CoreError::BadRequest(
            "There is no live code; ask for a new mail.".into(),
        ));
    };
    let expected = row.code_hash.unwrap_or_default();
    let given = verify_code_hash(state, &user.id, code);
    if !crate::session::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(CoreError::field("code", "is incorrect"));
    }
    match state.db.verify_email_with(&row.token_hash).await? {
        Some(user_id) => {
            email_verified(state, &user_id, "code").await;
            Ok(())
        }
        None => Err(CoreError::BadRequest(
            "There is no live code; ask for a new mail.".into(),
        )),
    }
}

pub const FORGOT_ANSWER: &str =
    "If an account uses that address, a link to reset its password is on its way.";

/// Queues a reset mail if an active account has this address. The answer, and the time it
/// takes, are the same either way: the lookup and the mail happen after the response.
pub async fn forgot_password(
    state: &Core,
    email: &str,
    client: &ClientInfo,
) -> Result<(), CoreError> {
    rate_limit(
        state,
        &format!("forgot:ip:{}", client.ip),
        state.config.rate_limit.forgot_password_per_ip_per_minute,
    )
    .await?;
    let email = email.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err(CoreError::field("email", "must be an email address"));
    }
    let state = state.clone();
    let ctx = crate::audit::CLIENT.try_with(Clone::clone).ok();
    let request_id = crate::error::current_request_id();
    let work = async move {
        if let Err(e) = send_reset(&state, &email).await {
            tracing::error!(error = %e, "reset mail could not be queued");
        }
    };
    // The audit record of the queued mail keeps the request's context.
    let work = crate::error::REQUEST_ID.scope(request_id, work);
    tokio::spawn(async move {
        match ctx {
            Some(c) => crate::audit::CLIENT.scope(c, work).await,
            None => work.await,
        }
    });
    Ok(())
}

async fn send_reset(state: &Core, email: &str) -> Result<(), CoreError> {
    let Some(user) = state.db.user_by_login(email).await? else {
        return Ok(());
    };
    if user.email.to_lowercase() != email || !user.is_active {
        return Ok(());
    }
    // At most a few mails per account per minute, however many addresses ask.
    if rate_limit(state, &format!("reset-mail:user:{}", user.id), 3)
        .await
        .is_err()
    {
        return Ok(());
    }
    let token = random_token();
    let mail = crate::mail::reset_mail(state, &user.username, &user.email, &token)?;
    let ttl = state.config.email.reset_ttl_minutes * 60_000_000;
    send_token_mail(state, &user, TokenPurpose::Reset, &token, None, ttl, mail).await?;
    Event::new(Some(&user.id), AuditAction::PasswordResetRequested)
        .target("user", &user.id)
        .record(state)
        .await;
    Ok(())
}

/// Whether a reset link is still usable (for the page that asks for the new password).
pub async fn reset_token_live(state: &Core, token: &str) -> Result<bool, CoreError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(false);
    }
    Ok(state
        .db
        .live_email_token(&hash_token(token), TokenPurpose::Reset)
        .await?
        .is_some())
}

/// Sets a new password with a reset token; every session of the account is signed out.
pub async fn reset_password(
    state: &Core,
    token: &str,
    new_password: &str,
    client: &ClientInfo,
) -> Result<(), CoreError> {
    rate_limit(
        state,
        &format!("reset:ip:{}", client.ip),
        state.config.rate_limit.forgot_password_per_ip_per_minute * 2,
    )
    .await?;
    let dead = || CoreError::BadRequest(DEAD_LINK.into());
    if token.is_empty() || token.len() > 128 {
        return Err(dead());
    }
    let hash = hash_token(token);
    let Some(row) = state
        .db
        .live_email_token(&hash, TokenPurpose::Reset)
        .await?
    else {
        return Err(dead());
    };
    let Some(user) = state.db.user_by_id(&row.user_id).await? else {
        return Err(dead());
    };
    let password = validate_new_password(new_password, Some(&user.username), Some(&user.email))
        .map_err(|e| CoreError::field("new_password", &e.message))?;
    let password_hash = state.hasher.hash(password.expose()).await?;
    let Some((user_id, ended)) = state.db.reset_password_with(&hash, &password_hash).await? else {
        return Err(dead());
    };
    tracing::info!(user_id = %user_id, sessions_ended = ended.len(), "password reset");
    for sid in &ended {
        state.events.session_ended(&user_id, sid).await;
    }
    Event::new(Some(&user_id), AuditAction::PasswordReset)
        .target("user", &user_id)
        .details(json!({"sessions_ended": ended.len()}))
        .record(state)
        .await;
    Ok(())
}
