//! Figures for the staff's statistics page: activity per UTC day, volume per asset, the open
//! review queues and the ledger's totals. Read-only aggregates over the existing tables.

use crate::Db;
use sea_orm::{ConnectionTrait, DbErr};

const DAY: i64 = 86_400_000_000;

/// One UTC day (its number since the epoch) with a count and an amount (US cents; 0 where
/// the series has no amount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPoint {
    pub day: i64,
    pub count: i64,
    pub cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetVolume {
    pub asset: String,
    /// Minor units sent (transfers) or paid and sold (trades).
    pub amount: i64,
    /// Their US value when they happened, in cents.
    pub usd_cents: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTotal {
    pub asset: String,
    /// Everything users hold: wallets and every hold.
    pub users: i64,
    /// The platform's own accounts other than equity (fees, clearing, inventory, …).
    pub platform: i64,
    /// Equity: what the platform put in or took out; balances the rest.
    pub equity: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queues {
    pub aml_open: i64,
    pub withdrawals_waiting: i64,
    pub adjustments_pending: i64,
    pub mail_failed: i64,
    pub jobs_waiting: i64,
}

fn int(r: &sea_orm::QueryResult, i: usize) -> Result<i64, DbErr> {
    r.try_get_by_index::<Option<i64>>(i)
        .or_else(|_| {
            r.try_get_by_index::<Option<i32>>(i)
                .map(|v| v.map(i64::from))
        })
        .map(Option::unwrap_or_default)
}

impl Db {
    async fn per_day(&self, sql: &str, since: i64) -> Result<Vec<DayPoint>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(&sql.replace("{DAY}", &DAY.to_string()), [since.into()]))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DayPoint {
                    day: int(r, 0)?,
                    count: int(r, 1)?,
                    cents: int(r, 2)?,
                })
            })
            .collect()
    }

    /// Accounts created per day since `since` (microseconds).
    pub async fn signups_per_day(&self, since: i64) -> Result<Vec<DayPoint>, DbErr> {
        self.per_day(
            "SELECT created_at / {DAY}, COUNT(*), 0 FROM users WHERE created_at >= $1 \
             GROUP BY created_at / {DAY} ORDER BY 1",
            since,
        )
        .await
    }

    /// People who did something the audit trail records (signed in, moved money, …) per day.
    pub async fn active_per_day(&self, since: i64) -> Result<Vec<DayPoint>, DbErr> {
        self.per_day(
            "SELECT at / {DAY}, COUNT(DISTINCT actor_id), 0 FROM audit_log \
             WHERE at >= $1 AND actor_id IS NOT NULL GROUP BY at / {DAY} ORDER BY 1",
            since,
        )
        .await
    }

    /// Deposits credited per day (by when they were ordered), with their US value.
    pub async fn deposits_per_day(&self, since: i64) -> Result<Vec<DayPoint>, DbErr> {
        self.per_day(
            "SELECT created_at / {DAY}, COUNT(*), CAST(SUM(price_amount) AS BIGINT) FROM deposits \
             WHERE created_at >= $1 AND credit_state = 'credited' GROUP BY created_at / {DAY} ORDER BY 1",
            since,
        )
        .await
    }

    /// Withdrawals sent per day (by when they were asked for), with their US value.
    pub async fn withdrawals_per_day(&self, since: i64) -> Result<Vec<DayPoint>, DbErr> {
        self.per_day(
            "SELECT created_at / {DAY}, COUNT(*), CAST(SUM(usd_cents) AS BIGINT) FROM withdrawals \
             WHERE created_at >= $1 AND status = 'completed' GROUP BY created_at / {DAY} ORDER BY 1",
            since,
        )
        .await
    }

    /// What moved between users and through trades since `since`, per asset: each movement
    /// counted once, on the side it left.
    pub async fn volume_per_asset(&self, since: i64) -> Result<Vec<AssetVolume>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT asset, CAST(SUM(amount) AS BIGINT), CAST(SUM(COALESCE(usd_value, 0)) AS BIGINT), \
                 COUNT(*) FROM transactions WHERE created_at >= $1 AND direction = 'out' \
                 AND type IN ('p2p', 'trade') GROUP BY asset ORDER BY asset",
                [since.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AssetVolume {
                    asset: r.try_get_by_index(0)?,
                    amount: int(r, 1)?,
                    usd_cents: int(r, 2)?,
                    count: int(r, 3)?,
                })
            })
            .collect()
    }

    /// Every asset's balances summed by who holds them.
    pub async fn ledger_totals(&self) -> Result<Vec<LedgerTotal>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT asset, \
                 CAST(SUM(CASE WHEN owner_id <> '' THEN balance ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN owner_id = '' AND kind <> 'equity' THEN balance ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN owner_id = '' AND kind = 'equity' THEN balance ELSE 0 END) AS BIGINT) \
                 FROM ledger_accounts GROUP BY asset ORDER BY asset",
                [],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerTotal {
                    asset: r.try_get_by_index(0)?,
                    users: int(r, 1)?,
                    platform: int(r, 2)?,
                    equity: int(r, 3)?,
                })
            })
            .collect()
    }

    /// What waits for staff or a worker.
    pub async fn queues(&self) -> Result<Queues, DbErr> {
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "SELECT \
                 (SELECT COUNT(*) FROM aml_flags WHERE status = 'open'), \
                 (SELECT COUNT(*) FROM withdrawals WHERE status IN ('held', 'pending', 'pending_approval')), \
                 (SELECT COUNT(*) FROM adjustment_requests WHERE status = 'pending'), \
                 (SELECT COUNT(*) FROM email_outbox WHERE failed_at IS NOT NULL), \
                 (SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running'))",
                [],
            ))
            .await?;
        let Some(r) = row else {
            return Ok(Queues::default());
        };
        Ok(Queues {
            aml_open: int(&r, 0)?,
            withdrawals_waiting: int(&r, 1)?,
            adjustments_pending: int(&r, 2)?,
            mail_failed: int(&r, 3)?,
            jobs_waiting: int(&r, 4)?,
        })
    }
}
