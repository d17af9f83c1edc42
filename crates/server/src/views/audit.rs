//! Audit records as staff see them, in the API and on the pages.

use crate::state::AppState;
use crate::views::rfc3339;
use etx_db::audit::AuditRow;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct AuditActor {
    pub id: String,
    pub username: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub actor: Option<AuditActor>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// What the action needs to be understood: reason, before/after, amounts.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub hash: String,
    pub prev_hash: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            seq: r.seq,
            at: rfc3339(r.at),
            actor: r.actor_id.map(|id| AuditActor {
                id,
                username: r.actor_username,
            }),
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
            id: r.id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            hash: r.hash,
            prev_hash: r.prev_hash,
        }
    }
}

/// The user id an `actor` filter means: a username or email of a user, else taken as an id
/// (so records of a deleted user can still be found).
pub async fn actor_id(state: &AppState, actor: String) -> Result<String, etx_db::DbErr> {
    Ok(match state.db.user_by_login(&actor).await? {
        Some(u) => u.id,
        None => actor,
    })
}
