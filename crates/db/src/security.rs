//! Second factor (TOTP secret, backup codes, login challenges) and the single-use email tokens
//! for address verification and password reset. Every "use once" is one conditional UPDATE, so
//! two requests racing with the same code or token cannot both succeed.

use crate::mail::NewMail;
use crate::{Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct TwoFactorRow {
    pub secret_sealed: String,
    pub enabled: bool,
    pub last_step: Option<i64>,
    pub enabled_at: Option<i64>,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct ChallengeRow {
    pub user_id: String,
    pub remember_me: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Verify,
    Reset,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Verify => "verify",
            TokenPurpose::Reset => "reset",
        }
    }
}

pub struct NewEmailToken<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub purpose: TokenPurpose,
    pub email: &'a str,
    pub code_hash: Option<&'a str>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct EmailTokenRow {
    pub token_hash: String,
    pub user_id: String,
    pub email: String,
    pub code_hash: Option<String>,
    pub expires_at: i64,
}

impl Db {
    pub async fn two_factor(&self, user_id: &str) -> Result<Option<TwoFactorRow>, DbErr> {
        TwoFactorRow::find_by_statement(self.stmt(
            "SELECT secret_sealed, enabled, last_step, enabled_at FROM two_factor \
             WHERE user_id = $1",
            [user_id.into()],
        ))
        .one(self.conn())
        .await
    }

    /// Stores a new, not yet confirmed secret. `false` when 2FA is already on (the secret in
    /// use is never replaced this way).
    pub async fn put_pending_two_factor(&self, user_id: &str, sealed: &str) -> Result<bool, DbErr> {
        let n = self
            .execute(
                "INSERT INTO two_factor (user_id, secret_sealed, enabled, created_at) \
                 VALUES ($1, $2, FALSE, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
                 last_step = NULL, created_at = excluded.created_at \
                 WHERE two_factor.enabled = FALSE",
                [user_id.into(), sealed.into(), now_micros().into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records `step` as used if it is newer than every step used before. `false` means the
    /// code was already used (or an older one): refuse it.
    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, DbErr> {
        let n = self
            .execute(
                "UPDATE two_factor SET last_step = $2 \
                 WHERE user_id = $1 AND enabled = TRUE AND (last_step IS NULL OR last_step < $2)",
                [user_id.into(), step.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Turns 2FA on with the pending secret confirmed at `step`, replacing any backup codes.
    pub async fn enable_two_factor(
        &self,
        user_id: &str,
        step: i64,
        code_hashes: &[String],
    ) -> Result<bool, DbErr> {
        let tx = self.begin_write().await?;
        let now = now_micros();
        let n = tx
            .execute_raw(self.stmt(
                "UPDATE two_factor SET enabled = TRUE, enabled_at = $3, last_step = $2 \
                 WHERE user_id = $1 AND enabled = FALSE",
                [user_id.into(), step.into(), now.into()],
            ))
            .await?
            .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        self.put_backup_codes(&tx, user_id, code_hashes).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn put_backup_codes(
        &self,
        tx: &impl ConnectionTrait,
        user_id: &str,
        code_hashes: &[String],
    ) -> Result<(), DbErr> {
        tx.execute_raw(self.stmt(
            "DELETE FROM backup_codes WHERE user_id = $1",
            [user_id.into()],
        ))
        .await?;
        if code_hashes.is_empty() {
            return Ok(());
        }
        let mut sql = String::from("INSERT INTO backup_codes (user_id, code_hash) VALUES ");
        let mut values = vec![user_id.into()];
        for (i, h) in code_hashes.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, ${})", i + 2));
            values.push(h.clone().into());
        }
        tx.execute_raw(self.stmt(&sql, values)).await?;
        Ok(())
    }

    /// Replaces the backup codes of a user who has 2FA on.
    pub async fn replace_backup_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
    ) -> Result<(), DbErr> {
        let tx = self.begin_write().await?;
        self.put_backup_codes(&tx, user_id, code_hashes).await?;
        tx.commit().await
    }

    /// Uses up a backup code; `false` if it is unknown or was used before.
    pub async fn use_backup_code(&self, user_id: &str, code_hash: &str) -> Result<bool, DbErr> {
        let n = self
            .execute(
                "UPDATE backup_codes SET used_at = $3 \
                 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                [user_id.into(), code_hash.into(), now_micros().into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn backup_codes_left(&self, user_id: &str) -> Result<i64, DbErr> {
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM backup_codes \
                 WHERE user_id = $1 AND used_at IS NULL",
                [user_id.into()],
            ))
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0))
    }

    pub async fn disable_two_factor(&self, user_id: &str) -> Result<bool, DbErr> {
        let tx = self.begin_write().await?;
        let n = tx
            .execute_raw(self.stmt(
                "DELETE FROM two_factor WHERE user_id = $1",
                [user_id.into()],
            ))
            .await?
            .rows_affected();
        self.put_backup_codes(&tx, user_id, &[]).await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn insert_login_challenge(
        &self,
        token_hash: &str,
        user_id: &str,
        remember_me: bool,
        expires_at: i64,
    ) -> Result<(), DbErr> {
        self.execute(
            "INSERT INTO login_challenges (token_hash, user_id, remember_me, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
            [
                token_hash.into(),
                user_id.into(),
                remember_me.into(),
                now_micros().into(),
                expires_at.into(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Spends one of a live challenge's attempts before its code is checked, so at most
    /// `max_attempts` codes are ever tried against it, however many arrive at once.
    pub async fn take_challenge_attempt(
        &self,
        token_hash: &str,
        max_attempts: i32,
    ) -> Result<Option<ChallengeRow>, DbErr> {
        ChallengeRow::find_by_statement(self.stmt(
            "UPDATE login_challenges SET attempts = attempts + 1 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3 \
             RETURNING user_id, remember_me",
            [token_hash.into(), now_micros().into(), max_attempts.into()],
        ))
        .one(self.conn())
        .await
    }

    /// Uses the challenge up; `false` when another request already did.
    pub async fn consume_challenge(&self, token_hash: &str) -> Result<bool, DbErr> {
        let n = self
            .execute(
                "UPDATE login_challenges SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                [token_hash.into(), now_micros().into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Issues a token (voiding earlier unused ones of the same purpose) and queues the mail
    /// that carries it, in one transaction: a token exists exactly when its mail is queued.
    pub async fn issue_email_token(
        &self,
        t: NewEmailToken<'_>,
        mail: NewMail,
    ) -> Result<(), DbErr> {
        let now = now_micros();
        let tx = self.begin_write().await?;
        tx.execute_raw(self.stmt(
            "UPDATE email_tokens SET used_at = $3 \
             WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            [t.user_id.into(), t.purpose.as_str().into(), now.into()],
        ))
        .await?;
        tx.execute_raw(self.stmt(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, email, code_hash, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                t.token_hash.into(),
                t.user_id.into(),
                t.purpose.as_str().into(),
                t.email.into(),
                t.code_hash.map(str::to_string).into(),
                now.into(),
                t.expires_at.into(),
            ],
        ))
        .await?;
        self.insert_mail(&tx, mail).await?;
        tx.commit().await
    }

    /// A live (unused, unexpired) token, without using it.
    pub async fn live_email_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
    ) -> Result<Option<EmailTokenRow>, DbErr> {
        EmailTokenRow::find_by_statement(self.stmt(
            "SELECT token_hash, user_id, email, code_hash, expires_at FROM email_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
            [
                token_hash.into(),
                purpose.as_str().into(),
                now_micros().into(),
            ],
        ))
        .one(self.conn())
        .await
    }

    /// Spends an attempt on the user's newest live verification code and returns it, so the
    /// caller can compare; `None` when there is none left to try.
    pub async fn take_verify_code_attempt(
        &self,
        user_id: &str,
        max_attempts: i32,
    ) -> Result<Option<EmailTokenRow>, DbErr> {
        EmailTokenRow::find_by_statement(self.stmt(
            "UPDATE email_tokens SET attempts = attempts + 1 \
             WHERE token_hash = (SELECT token_hash FROM email_tokens \
                WHERE user_id = $1 AND purpose = 'verify' AND used_at IS NULL AND expires_at > $2 \
                AND code_hash IS NOT NULL ORDER BY created_at DESC LIMIT 1) \
             AND attempts < $3 \
             RETURNING token_hash, user_id, email, code_hash, expires_at",
            [user_id.into(), now_micros().into(), max_attempts.into()],
        ))
        .one(self.conn())
        .await
    }

    /// Uses a verification token and marks the address verified, if the account still has
    /// the address the token was sent to. Returns the user id when the address was verified.
    pub async fn verify_email_with(&self, token_hash: &str) -> Result<Option<String>, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let tx = self.begin_write().await?;
        let Some((user_id, email)) = self
            .consume_email_token(&tx, token_hash, TokenPurpose::Verify)
            .await?
        else {
            return Ok(None);
        };
        let n = tx
            .execute_raw(self.stmt(
                "UPDATE users SET is_verified = TRUE, updated_at = $3 \
                 WHERE id = $1 AND email_lower = $2",
                [
                    user_id.clone().into(),
                    email.to_lowercase().into(),
                    now_micros().into(),
                ],
            ))
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((n == 1).then_some(user_id))
    }

    async fn consume_email_token(
        &self,
        tx: &impl ConnectionTrait,
        token_hash: &str,
        purpose: TokenPurpose,
    ) -> Result<Option<(String, String)>, DbErr> {
        let row = tx
            .query_one_raw(self.stmt(
                "UPDATE email_tokens SET used_at = $3 \
                 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 \
                 RETURNING user_id, email",
                [
                    token_hash.into(),
                    purpose.as_str().into(),
                    now_micros().into(),
                ],
            ))
            .await?;
        row.map(|r| Ok((r.try_get("", "user_id")?, r.try_get("", "email")?)))
            .transpose()
    }

    /// Uses a reset token: sets the new password hash, lifts any lockout and signs out every
    /// session, all at once. Returns the user id and the ended sessions, or `None` for a dead
    /// token.
    pub async fn reset_password_with(
        &self,
        token_hash: &str,
        password_hash: &str,
    ) -> Result<Option<(String, Vec<String>)>, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let tx = self.begin_write().await?;
        let Some((user_id, _)) = self
            .consume_email_token(&tx, token_hash, TokenPurpose::Reset)
            .await?
        else {
            return Ok(None);
        };
        let now = now_micros();
        tx.execute_raw(self.stmt(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL, \
             updated_at = $3 WHERE id = $1",
            [user_id.clone().into(), password_hash.into(), now.into()],
        ))
        .await?;
        let ended = tx
            .query_all_raw(self.stmt(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = 'password_reset' \
                 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
                [user_id.clone().into(), now.into()],
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "id"))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(Some((user_id, ended)))
    }

    /// Removes challenges and tokens that expired more than `grace_micros` ago. Nothing else is
    /// touched: an expired token never takes an account or a mail with it.
    pub async fn purge_expired_security(&self, grace_micros: i64) -> Result<u64, DbErr> {
        let cutoff = now_micros() - grace_micros;
        let a = self
            .execute(
                "DELETE FROM login_challenges WHERE expires_at < $1",
                [cutoff.into()],
            )
            .await?;
        let b = self
            .execute(
                "DELETE FROM email_tokens WHERE expires_at < $1",
                [cutoff.into()],
            )
            .await?;
        Ok(a + b)
    }
}
