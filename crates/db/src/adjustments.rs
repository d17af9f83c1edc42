//! Admin balance adjustments waiting for a second admin. A request is a row; approving or
//! rejecting it is one conditional UPDATE on `status = 'pending'` that also names an approver
//! other than the requester, run in the same transaction as the ledger entry it causes.

use crate::sql::Insert;
use crate::{Batch, Db, now_micros};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct AdjustmentRow {
    pub id: String,
    pub user_id: String,
    pub asset: String,
    pub amount: i64,
    pub usd_cents: i64,
    pub reason: String,
    pub requested_by: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, asset, amount, usd_cents, reason, requested_by, status, \
    decided_by, decision_note, entry_id, created_at, decided_at";

pub struct NewAdjustment<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub asset: &'a str,
    pub amount: i64,
    pub usd_cents: i64,
    pub reason: &'a str,
    pub requested_by: &'a str,
}

impl Db {
    pub fn queue_adjustment_request(batch: &mut Batch, a: &NewAdjustment<'_>) {
        batch.push(
            Insert::new(
                "adjustment_requests",
                &[
                    "id",
                    "user_id",
                    "asset",
                    "amount",
                    "usd_cents",
                    "reason",
                    "requested_by",
                    "status",
                    "created_at",
                ],
            )
            .row([
                a.id.into(),
                a.user_id.into(),
                a.asset.into(),
                a.amount.into(),
                a.usd_cents.into(),
                a.reason.into(),
                a.requested_by.into(),
                "pending".into(),
                now_micros().into(),
            ]),
        );
    }

    pub async fn adjustment_request(
        &self,
        conn: &impl ConnectionTrait,
        id: &str,
    ) -> Result<Option<AdjustmentRow>, DbErr> {
        AdjustmentRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM adjustment_requests WHERE id = $1"),
            [id.into()],
        ))
        .one(conn)
        .await
    }

    /// Newest first; `status` `None` for all.
    pub async fn adjustment_requests(
        &self,
        status: Option<&str>,
        limit: u64,
    ) -> Result<Vec<AdjustmentRow>, DbErr> {
        let limit = i64::try_from(limit.min(500)).unwrap_or(500);
        let stmt = match status {
            Some(s) => self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM adjustment_requests WHERE status = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                [s.into(), limit.into()],
            ),
            None => self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM adjustment_requests \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ),
                [limit.into()],
            ),
        };
        AdjustmentRow::find_by_statement(stmt)
            .all(self.conn())
            .await
    }

    /// Moves a pending request to `to` ('applied' or 'rejected') by `staff`, who must not be
    /// the requester. `None` when it was not pending or `staff` asked for it: the caller looks
    /// at the row to say which.
    pub async fn decide_adjustment(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        staff: &str,
        to: &str,
        note: Option<&str>,
        entry_id: Option<&str>,
    ) -> Result<Option<AdjustmentRow>, DbErr> {
        AdjustmentRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE adjustment_requests SET status = $3, decided_by = $2, decision_note = $4, \
                 entry_id = $5, decided_at = $6 \
                 WHERE id = $1 AND status = 'pending' AND requested_by <> $2 RETURNING {COLUMNS}"
            ),
            [
                id.into(),
                staff.into(),
                to.into(),
                note.map(str::to_string).into(),
                entry_id.map(str::to_string).into(),
                now_micros().into(),
            ],
        ))
        .one(tx)
        .await
    }
}
