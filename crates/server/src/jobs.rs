//! Periodic upkeep that runs inside the server.

use crate::state::AppState;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(3600);

/// Forgets idempotency keys past their retention, once at start and then hourly. Several
/// instances may run it at once: the delete is idempotent.
pub fn spawn_upkeep(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            purge_idempotency_keys(&state).await;
        }
    })
}

pub async fn purge_idempotency_keys(state: &AppState) -> u64 {
    let keep = i64::from(state.config.idempotency.retention_hours) * 3_600_000_000;
    match state
        .db
        .purge_idempotency_keys(etx_db::now_micros() - keep)
        .await
    {
        Ok(n) => {
            if n > 0 {
                tracing::info!(removed = n, "expired idempotency keys removed");
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "idempotency key clean-up failed; will retry");
            0
        }
    }
}
