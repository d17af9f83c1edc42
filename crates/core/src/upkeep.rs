//! Periodic upkeep that runs inside the server.

use crate::Core;
use std::time::Duration;

const PURGE_EVERY: Duration = Duration::from_secs(3600);
const CHAIN_EVERY: Duration = Duration::from_millis(500);

/// Forgets idempotency keys past their retention (at start, then hourly), links new audit
/// records into the chain and folds pending history counts (every half second). Several
/// instances may run all of it at once: the deletes are idempotent, the chainer takes a lock
/// and a fold only takes the rows it deleted.
pub fn spawn_upkeep(state: Core) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let purge = async {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                purge_idempotency_keys(&state).await;
                if let Err(e) = state
                    .db
                    .purge_expired_security(crate::security::EXPIRED_GRACE_MICROS)
                    .await
                {
                    tracing::warn!(error = %e, "expired token clean-up failed; will retry");
                }
                purge_market_data(&state).await;
            }
        };
        let chain = async {
            let mut tick = tokio::time::interval(CHAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.db.chain_all_audit().await {
                    tracing::warn!(error = %e, "audit chaining failed; will retry");
                }
                if let Err(e) = state.db.fold_history_counts().await {
                    tracing::warn!(error = %e, "folding history counts failed; will retry");
                }
            }
        };
        tokio::join!(purge, chain);
    })
}

pub async fn purge_idempotency_keys(state: &Core) -> u64 {
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

/// Drops raw ticks and candles past their retention (daily candles are kept).
pub async fn purge_market_data(state: &Core) {
    let m = &state.config.market;
    let now = etx_db::now_micros();
    let cutoff = |span: &'static str| (span, now - m.candle_retention(span).unwrap_or(0));
    let cutoffs = [cutoff("1m"), cutoff("5m"), cutoff("1h")];
    let ticks = now - m.tick_retention_hours * 3_600_000_000;
    if let Err(e) = state.db.purge_market(ticks, &cutoffs).await {
        tracing::warn!(error = %e, "market data clean-up failed; will retry");
    }
}
