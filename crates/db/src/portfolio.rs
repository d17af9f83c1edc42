//! What the portfolio is computed from: every balance a user owns and the history rows that
//! moved them, with what each was worth when it moved.

use crate::Db;
use sea_orm::{DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct HoldingRow {
    pub kind: String,
    pub asset: String,
    pub balance: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct MovementRow {
    pub r#type: String,
    pub direction: String,
    pub asset: String,
    pub amount: i64,
    pub fee: i64,
    pub usd_value: Option<i64>,
    pub created_at: i64,
}

impl Db {
    /// Every non-zero balance the user owns, of any kind (wallet, held for review, held by
    /// open orders).
    pub async fn holdings(&self, user_id: &str) -> Result<Vec<HoldingRow>, DbErr> {
        HoldingRow::find_by_statement(self.stmt(
            "SELECT kind, asset, balance FROM ledger_accounts \
             WHERE owner_id = $1 AND balance <> 0 ORDER BY asset, kind",
            [user_id.into()],
        ))
        .all(self.conn())
        .await
    }

    /// The user's history rows that moved their money, oldest first: held, rejected and
    /// cancelled rows moved nothing that stayed moved, and a refund undoes one of those.
    pub async fn movements(&self, user_id: &str) -> Result<Vec<MovementRow>, DbErr> {
        MovementRow::find_by_statement(self.stmt(
            "SELECT type, direction, asset, amount, fee, usd_value, created_at FROM transactions \
             WHERE user_id = $1 AND type <> 'refund' \
             AND status NOT IN ('held', 'rejected', 'cancelled', 'failed') \
             ORDER BY created_at, id",
            [user_id.into()],
        ))
        .all(self.conn())
        .await
    }
}
