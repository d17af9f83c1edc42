//! Audit records for state-changing actions. The request's id, client address and user agent
//! come from the request context, so a call site names only who did what to what.

use crate::Core;
use crate::error::current_request_id;
use etx_db::audit::NewAudit;
use etx_domain::AuditAction;
use serde_json::Value;

tokio::task_local! {
    /// Client address and user agent of the request being served.
    pub static CLIENT: (String, Option<String>);
}

pub struct Event<'a> {
    pub actor_id: Option<&'a str>,
    pub action: AuditAction,
    pub target: Option<(&'a str, &'a str)>,
    pub details: Value,
}

impl<'a> Event<'a> {
    pub fn new(actor_id: Option<&'a str>, action: AuditAction) -> Self {
        Event {
            actor_id,
            action,
            target: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, kind: &'a str, id: &'a str) -> Self {
        self.target = Some((kind, id));
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    fn with_context<T>(self, f: impl FnOnce(NewAudit<'_>) -> T) -> T {
        let (ip, ua) = CLIENT
            .try_with(|(ip, ua)| (Some(ip.clone()), ua.clone()))
            .unwrap_or((None, None));
        let request_id = current_request_id();
        let details = self.details.to_string();
        f(NewAudit {
            actor_id: self.actor_id,
            action: self.action.as_str(),
            target_type: self.target.map(|t| t.0),
            target_id: self.target.map(|t| t.1),
            ip: ip.as_deref(),
            user_agent: ua.as_deref(),
            request_id: (!request_id.is_empty()).then_some(request_id.as_str()),
            details: &details,
        })
    }

    /// Queues the record on the batch of the action's own transaction, so the record and the
    /// action commit together.
    pub fn queue(self, batch: &mut etx_db::Batch) {
        self.with_context(|a| etx_db::Db::queue_audit(batch, a));
    }

    /// For an action whose transaction has no batch of its own: the record is written in it
    /// now, so both commit together.
    pub async fn write(
        self,
        db: &etx_db::Db,
        conn: &impl etx_db::ConnectionTrait,
    ) -> Result<(), etx_db::DbErr> {
        let mut batch = etx_db::Batch::default();
        self.queue(&mut batch);
        db.run_batch(conn, batch).await?;
        Ok(())
    }

    /// For actions that committed on their own: the record follows in its own statement. A
    /// failure is logged, not returned, because the action already happened.
    pub async fn record(self, state: &Core) {
        let action = self.action.as_str();
        let mut batch = etx_db::Batch::default();
        self.queue(&mut batch);
        if let Err(e) = state.db.run_batch(state.db.conn(), batch).await {
            tracing::error!(error = %e, action, "audit record could not be written");
        }
    }
}
