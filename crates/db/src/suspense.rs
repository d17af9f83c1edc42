//! Money that arrived for an owner who no longer exists, waiting in `suspense::<asset>` for
//! staff. Resolving an item is one conditional UPDATE on `status = 'open'` in the transaction
//! of the ledger entry that moves the money on, so it happens once.

use crate::sql::Insert;
use crate::{Batch, Db, now_micros};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct SuspenseRow {
    pub id: String,
    pub asset: String,
    pub amount: i64,
    pub source_type: String,
    pub source_id: String,
    pub owner_id: Option<String>,
    pub status: String,
    pub resolved_by: Option<String>,
    pub credited_to: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

const COLUMNS: &str = "id, asset, amount, source_type, source_id, owner_id, status, resolved_by, \
    credited_to, note, created_at, resolved_at";

impl Db {
    pub fn queue_suspense_item(
        batch: &mut Batch,
        id: &str,
        asset: &str,
        amount: i64,
        source: (&str, &str),
        owner_id: Option<&str>,
    ) {
        batch.push(
            Insert::new(
                "suspense_items",
                &[
                    "id",
                    "asset",
                    "amount",
                    "source_type",
                    "source_id",
                    "owner_id",
                    "status",
                    "created_at",
                ],
            )
            .row([
                id.into(),
                asset.into(),
                amount.into(),
                source.0.into(),
                source.1.into(),
                owner_id.map(str::to_string).into(),
                "open".into(),
                now_micros().into(),
            ]),
        );
    }

    /// Newest first; `status` `None` for all.
    pub async fn suspense_items(
        &self,
        status: Option<&str>,
        limit: u64,
    ) -> Result<Vec<SuspenseRow>, DbErr> {
        let limit = i64::try_from(limit.min(500)).unwrap_or(500);
        let stmt = match status {
            Some(s) => self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM suspense_items WHERE status = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                [s.into(), limit.into()],
            ),
            None => self.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM suspense_items ORDER BY created_at DESC, id DESC LIMIT $1"
                ),
                [limit.into()],
            ),
        };
        SuspenseRow::find_by_statement(stmt).all(self.conn()).await
    }

    pub async fn suspense_item(
        &self,
        conn: &impl ConnectionTrait,
        id: &str,
    ) -> Result<Option<SuspenseRow>, DbErr> {
        SuspenseRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM suspense_items WHERE id = $1"),
            [id.into()],
        ))
        .one(conn)
        .await
    }

    /// Moves an open item to `to` ('refunded' or 'credited'); `None` if it was not open.
    pub async fn resolve_suspense(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        to: &str,
        staff: &str,
        credited_to: Option<&str>,
        note: &str,
    ) -> Result<Option<SuspenseRow>, DbErr> {
        SuspenseRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE suspense_items SET status = $2, resolved_by = $3, credited_to = $4, \
                 note = $5, resolved_at = $6 WHERE id = $1 AND status = 'open' RETURNING {COLUMNS}"
            ),
            [
                id.into(),
                to.into(),
                staff.into(),
                credited_to.map(str::to_string).into(),
                note.into(),
                now_micros().into(),
            ],
        ))
        .one(tx)
        .await
    }
}
