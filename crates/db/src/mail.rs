//! The mail outbox. Requests only queue a row; a background sender delivers it, retrying with
//! backoff, and several instances can share the queue because each send first claims its row.

use crate::{Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

pub struct NewMail {
    pub to: String,
    pub subject: String,
    /// Which template produced it (for admins reading the queue).
    pub template: &'static str,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct MailRow {
    pub id: String,
    pub to_addr: String,
    pub subject: String,
    pub template: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: i64,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    Pending,
    Sent,
    Failed,
}

const COLUMNS: &str = "id, to_addr, subject, template, body_text, body_html, created_at, \
    attempts, next_attempt_at, sent_at, failed_at, last_error";

impl Db {
    /// Queues a mail that carries no token (notices).
    pub async fn queue_mail(&self, m: NewMail) -> Result<String, DbErr> {
        self.insert_mail(self.conn(), m).await
    }

    /// Queues a mail in `tx`: it exists exactly when what it reports happened.
    pub async fn queue_mail_in(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        m: NewMail,
    ) -> Result<String, DbErr> {
        self.insert_mail(tx, m).await
    }

    pub(crate) async fn insert_mail(
        &self,
        c: &impl ConnectionTrait,
        m: NewMail,
    ) -> Result<String, DbErr> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_micros();
        c.execute_raw(self.stmt(
            "INSERT INTO email_outbox (id, to_addr, subject, template, body_text, body_html, \
             created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            [
                id.clone().into(),
                m.to.into(),
                m.subject.into(),
                m.template.into(),
                m.text.into(),
                m.html.into(),
                now.into(),
            ],
        ))
        .await?;
        Ok(id)
    }

    /// Mail whose next attempt is due, oldest first.
    pub async fn due_mail(&self, limit: u64) -> Result<Vec<MailRow>, DbErr> {
        MailRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
                 AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2"
            ),
            [now_micros().into(), (limit as i64).into()],
        ))
        .all(self.conn())
        .await
    }

    /// Claims a due message until `lease_until`; `false` if another sender got it first.
    pub async fn claim_mail(
        &self,
        id: &str,
        seen_next_attempt: i64,
        lease_until: i64,
    ) -> Result<bool, DbErr> {
        let n = self
            .conn()
            .execute_raw(self.stmt(
                "UPDATE email_outbox SET next_attempt_at = $3 WHERE id = $1 \
                 AND next_attempt_at = $2 AND sent_at IS NULL AND failed_at IS NULL",
                [id.into(), seen_next_attempt.into(), lease_until.into()],
            ))
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Delivered: the bodies (which carry single-use links) are dropped.
    pub async fn mail_sent(&self, id: &str) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(self.stmt(
                "UPDATE email_outbox SET sent_at = $2, attempts = attempts + 1, body_text = '', \
                 body_html = '', last_error = NULL WHERE id = $1",
                [id.into(), now_micros().into()],
            ))
            .await
            .map(|_| ())
    }

    /// A failed attempt: retried at `retry_at`, or given up for good when it is `None`.
    pub async fn mail_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), DbErr> {
        let now = now_micros();
        let sql = if retry_at.is_some() {
            "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = $3 WHERE id = $1"
        } else {
            "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, failed_at = $3, \
             body_text = '', body_html = '' WHERE id = $1"
        };
        let error: String = error.chars().take(500).collect();
        self.conn()
            .execute_raw(self.stmt(
                sql,
                [id.into(), error.into(), retry_at.unwrap_or(now).into()],
            ))
            .await
            .map(|_| ())
    }

    /// The queue for admins, newest first; bodies are not included.
    pub async fn list_mail(
        &self,
        status: Option<MailStatus>,
        limit: u64,
    ) -> Result<Vec<MailRow>, DbErr> {
        let cond = match status {
            None => "TRUE",
            Some(MailStatus::Pending) => "sent_at IS NULL AND failed_at IS NULL",
            Some(MailStatus::Sent) => "sent_at IS NOT NULL",
            Some(MailStatus::Failed) => "failed_at IS NOT NULL",
        };
        MailRow::find_by_statement(self.stmt(
            &format!(
                "SELECT id, to_addr, subject, template, '' AS body_text, '' AS body_html, \
                 created_at, attempts, next_attempt_at, sent_at, failed_at, last_error \
                 FROM email_outbox WHERE {cond} ORDER BY created_at DESC LIMIT $1"
            ),
            [(limit as i64).into()],
        ))
        .all(self.conn())
        .await
    }
}
