//! What the core tells connected clients. The core only says what happened; the server
//! delivers it (Socket.IO, across instances), and tests may record it instead.

use crate::ledger::MovementEvent;
use futures_util::future::BoxFuture;

pub trait Events: Send + Sync + 'static {
    /// Committed money movements: each party gets its history row, new balance and notice.
    /// Must not wait for delivery: called on the path of the response.
    fn movements(&self, events: Vec<MovementEvent>);

    /// A session has ended: its live connections lose the user's private events at once.
    fn session_ended<'a>(&'a self, user_id: &'a str, session_id: &'a str) -> BoxFuture<'a, ()>;

    /// Every connection of the user loses its private events (suspension, deletion).
    fn user_cut_off<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, ()>;

    /// A job of the user was queued, made progress or ended. Must not wait for delivery.
    fn job_update(&self, user_id: &str, job: &crate::jobs::JobView);

    /// Any other message for one user's clients (`order_update`, a `wallet_update` without a
    /// history row, a `notification`). Must not wait for delivery.
    fn to_user(&self, user_id: &str, event: &'static str, payload: serde_json::Value);
}

/// Delivers nothing: for commands and tests that run the core without clients.
pub struct NoEvents;

impl Events for NoEvents {
    fn movements(&self, _events: Vec<MovementEvent>) {}

    fn session_ended<'a>(&'a self, _user_id: &'a str, _session_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn user_cut_off<'a>(&'a self, _user_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn job_update(&self, _user_id: &str, _job: &crate::jobs::JobView) {}

    fn to_user(&self, _user_id: &str, _event: &'static str, _payload: serde_json::Value) {}
}
