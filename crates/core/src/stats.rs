//! The staff statistics' aggregates over the whole history, read at most once per `[admin]
//! stats_cache_ms` and shared by the requests in between: at a few page views a second they
//! would otherwise be most of the database's work.

use crate::Core;
use etx_db::DbErr;
use etx_db::stats::{AssetVolume, DayPoint, LedgerTotal};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000_000;
/// Days each daily series covers, today included.
pub const DAYS: i64 = 30;

pub struct Aggregates {
    /// When they were read (microseconds) and that day's number.
    pub read_at: i64,
    pub today: i64,
    pub signups: Vec<DayPoint>,
    pub active: Vec<DayPoint>,
    pub deposits: Vec<DayPoint>,
    pub withdrawals: Vec<DayPoint>,
    pub volume: Vec<AssetVolume>,
    pub totals: Vec<LedgerTotal>,
}

#[derive(Default)]
pub struct StatsCache(Mutex<Option<(Instant, Arc<Aggregates>)>>);

/// The daily series of the last `DAYS` days, the volume over them and the ledger's totals.
pub async fn aggregates(state: &Core) -> Result<Arc<Aggregates>, DbErr> {
    let fresh_for = Duration::from_millis(state.config.admin.stats_cache_ms);
    {
        let cached = state.stats.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, a)) = cached.as_ref()
            && at.elapsed() < fresh_for
        {
            return Ok(a.clone());
        }
    }
    let started = Instant::now();
    let db = &state.db;
    let read_at = etx_db::now_micros();
    let today = read_at.div_euclid(DAY);
    let since = (today - DAYS + 1) * DAY;
    let a = Arc::new(Aggregates {
        read_at,
        today,
        signups: db.signups_per_day(since).await?,
        active: db.active_per_day(since).await?,
        deposits: db.deposits_per_day(since).await?,
        withdrawals: db.withdrawals_per_day(since).await?,
        volume: db.volume_per_asset(since).await?,
        totals: db.ledger_totals().await?,
    });
    *state.stats.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((started, a.clone()));
    Ok(a)
}
