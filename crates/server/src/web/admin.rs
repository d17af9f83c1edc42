//! Staff pages: the audit trail with filters (admins and moderators; others get a 404).

use super::{Layout, WebUser, error_page};
use crate::api::audit::AuditRecord;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
    details: String,
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

fn day(s: &str, end: bool) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

fn field(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 254 && !s.chars().any(char::is_control)).then(|| s.to_string())
}

pub async fn view_audit_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<AuditPageQuery>,
) -> Response {
    if !u.auth.role.is_staff() {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    }
    let (from, to) = (day(&q.from, false), day(&q.to, true));
    let actor = field(&q.actor);
    let actor_id = match &actor {
        None => None,
        Some(a) => match state.db.user_by_login(a).await {
            Ok(Some(user)) => Some(user.id),
            Ok(None) => Some(a.clone()),
            Err(e) => return crate::error::ApiError::from(e).into_response(),
        },
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
    let skip = q
        .skip
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let query = [
        ("actor", &echo.actor),
        ("action", &echo.action),
        ("target", &echo.target),
        ("from", &echo.from),
        ("to", &echo.to),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", urlencoding_lite(v)))
    .collect::<Vec<_>>()
    .join("&");
    let (rows, total) = match state.db.list_audit(&filter, skip, PAGE).await {
        Ok(v) => v,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let lines = rows
        .into_iter()
        .map(|r| {
            let record = AuditRecord::from(r);
            let details = if record.details.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                record.details.to_string()
            };
            AuditLine { record, details }
        })
        .collect();
    AuditPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "audit"),
        filter: echo,
        query,
        lines,
        total,
        prev_skip: (skip > 0).then(|| (skip - PAGE).max(0)),
        next_skip: (skip + PAGE < total).then_some(skip + PAGE),
    }
    .into_response()
}

/// Percent-encodes a filter value for a link (askama then escapes the HTML).
fn urlencoding_lite(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
