//! Staff pages: the audit trail with filters (admins and moderators) and the outgoing mail
//! queue (admins); others get a 404.

use super::{Layout, PageResult, WebUser, day, error_page};
use crate::state::AppState;
use crate::views::UserView;
use crate::views::audit::{AuditRecord, actor_id};
use crate::views::mail::{MailView, mail_view, parse_mail_status};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use etx_db::audit::AuditFilter;
use serde::Deserialize;

const PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct AuditPageQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    skip: Option<String>,
}

/// The filters as shown back in the form and carried in paging links.
pub struct AuditEcho {
    actor: String,
    action: String,
    target: String,
    from: String,
    to: String,
}

pub struct AuditLine {
    record: AuditRecord,
    details: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    layout: Layout,
    filter: AuditEcho,
    query: String,
    lines: Vec<AuditLine>,
    total: i64,
    prev_skip: Option<i64>,
    next_skip: Option<i64>,
}

fn field(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 254 && !s.chars().any(char::is_control)).then(|| s.to_string())
}

pub async fn view_audit_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<AuditPageQuery>,
) -> PageResult {
    if !u.auth.role.is_staff() {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
        ));
    }
    let (from, to) = (day(&q.from, false), day(&q.to, true));
    let actor = field(&q.actor);
    let actor_id = match &actor {
        None => None,
        Some(a) => Some(actor_id(&state, a.clone()).await?),
    };
    let echo = AuditEcho {
        actor: actor.unwrap_or_default(),
        action: field(&q.action).unwrap_or_default(),
        target: field(&q.target).unwrap_or_default(),
        from: if from.is_some() {
            q.from.trim().to_string()
        } else {
            String::new()
        },
        to: if to.is_some() {
            q.to.trim().to_string()
        } else {
            String::new()
        },
    };
    let filter = AuditFilter {
        actor_id,
        action: field(&echo.action),
        target_id: field(&echo.target),
        from,
        to,
    };
    let skip = super::skip_param(q.skip.as_deref());
    // Built in a block: the serializer is not `Send` and must not live across an await.
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &echo.actor),
            ("action", &echo.action),
            ("target", &echo.target),
            ("from", &echo.from),
            ("to", &echo.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    };
    let (rows, total) = state.db.list_audit(&filter, skip, PAGE).await?;
    let lines = rows
        .into_iter()
        .map(|r| {
            let record = AuditRecord::from(r);
            let details = super::detail_list(&record.details);
            AuditLine { record, details }
        })
        .collect();
    Ok(AuditPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "audit"),
        filter: echo,
        query,
        lines,
        total,
        prev_skip: (skip > 0).then(|| (skip - PAGE).max(0)),
        next_skip: (skip + PAGE < total).then_some(skip + PAGE),
    }
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct MailPageQuery {
    #[serde(default)]
    status: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_mail.html")]
pub struct MailPage {
    layout: Layout,
    status: String,
    mails: Vec<MailView>,
}

/// Outgoing mail and delivery failures (admins; others get a 404).
pub async fn view_mail_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<MailPageQuery>,
) -> PageResult {
    if !u.auth.role.is_admin() {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
        ));
    }
    let status = parse_mail_status(Some(q.status.as_str())).unwrap_or(None);
    let rows = state.db.list_mail(status, 200).await?;
    Ok(MailPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "mail"),
        status: match status {
            Some(_) => q.status,
            None => String::new(),
        },
        mails: rows.into_iter().map(mail_view).collect(),
    }
    .into_response())
}
