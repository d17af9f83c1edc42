//! The outgoing mail queue as admins see it, in the API and on the pages.

use crate::error::ApiError;
use crate::views::rfc3339;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct MailView {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub template: String,
    pub status: &'static str,
    pub attempts: i32,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    pub failed_at: Option<String>,
    pub last_error: Option<String>,
}

pub fn mail_view(m: etx_db::mail::MailRow) -> MailView {
    let status = if m.sent_at.is_some() {
        "sent"
    } else if m.failed_at.is_some() {
        "failed"
    } else {
        "pending"
    };
    MailView {
        status,
        next_attempt_at: (status == "pending").then(|| rfc3339(m.next_attempt_at)),
        id: m.id,
        to: m.to_addr,
        subject: m.subject,
        template: m.template,
        attempts: m.attempts,
        created_at: rfc3339(m.created_at),
        sent_at: m.sent_at.map(rfc3339),
        failed_at: m.failed_at.map(rfc3339),
        last_error: m.last_error,
    }
}

pub fn parse_mail_status(s: Option<&str>) -> Result<Option<etx_db::mail::MailStatus>, ApiError> {
    use etx_db::mail::MailStatus;
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some("pending") => Ok(Some(MailStatus::Pending)),
        Some("sent") => Ok(Some(MailStatus::Sent)),
        Some("failed") => Ok(Some(MailStatus::Failed)),
        Some(_) => Err(ApiError::field("status", "must be pending, sent or failed")),
    }
}
