//! Staff settings per trading pair, and the platform's trading position per asset.

use crate::Db;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct PairSettingRow {
    pub pair: String,
    pub halted: bool,
    pub fee_bps: Option<i64>,
    pub spread_bps: Option<i64>,
    pub updated_by: Option<String>,
    pub updated_at: i64,
}

impl Db {
    pub async fn pair_settings(&self) -> Result<Vec<PairSettingRow>, DbErr> {
        PairSettingRow::find_by_statement(self.stmt(
            "SELECT pair, halted, fee_bps, spread_bps, updated_by, updated_at FROM pair_settings \
             ORDER BY pair",
            [],
        ))
        .all(self.conn())
        .await
    }

    pub async fn save_pair_setting(
        &self,
        tx: &DatabaseTransaction,
        s: &PairSettingRow,
    ) -> Result<(), DbErr> {
        tx.execute_raw(self.stmt(
            "INSERT INTO pair_settings (pair, halted, fee_bps, spread_bps, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pair) DO UPDATE SET \
             halted = excluded.halted, fee_bps = excluded.fee_bps, \
             spread_bps = excluded.spread_bps, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
            [
                s.pair.clone().into(),
                s.halted.into(),
                s.fee_bps.into(),
                s.spread_bps.into(),
                s.updated_by.clone().into(),
                s.updated_at.into(),
            ],
        ))
        .await
        .map(|_| ())
    }

    /// The platform's trading accounts summed over their shards: (kind, asset, balance), for
    /// `trading_inventory` (its position: negative where users bought more than they sold)
    /// and `fees` (what trading earned).
    pub async fn trading_positions(&self) -> Result<Vec<(String, String, i64)>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT kind, asset, CAST(SUM(balance) AS BIGINT) FROM ledger_accounts \
                 WHERE kind IN ('trading_inventory', 'fees') AND owner_id LIKE 'platform-%' \
                 GROUP BY kind, asset ORDER BY asset, kind",
                [],
            ))
            .await?;
        crate::sql::triples(rows)
    }
}
