//! Orders against the platform.

use crate::sql::Insert;
use crate::{Batch, Db};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub base_asset: String,
    pub quote_asset: String,
    pub side: String,
    /// The `type` column.
    pub kind: String,
    pub status: String,
    pub amount: i64,
    pub price: i64,
    pub value: i64,
    pub fee: i64,
    pub total: i64,
    pub quote_id: Option<String>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ORDER_COLUMNS: &str = "id, user_id, base_asset, quote_asset, side, type AS kind, status, \
     amount, price, value, fee, total, quote_id, entry_id, created_at, updated_at";

impl Db {
    pub fn queue_order(batch: &mut Batch, o: &OrderRow) {
        batch.push(
            Insert::new(
                "orders",
                &[
                    "id",
                    "user_id",
                    "base_asset",
                    "quote_asset",
                    "side",
                    "type",
                    "status",
                    "amount",
                    "price",
                    "value",
                    "fee",
                    "total",
                    "quote_id",
                    "entry_id",
                    "created_at",
                    "updated_at",
                ],
            )
            .row([
                o.id.clone().into(),
                o.user_id.clone().into(),
                o.base_asset.clone().into(),
                o.quote_asset.clone().into(),
                o.side.clone().into(),
                o.kind.clone().into(),
                o.status.clone().into(),
                o.amount.into(),
                o.price.into(),
                o.value.into(),
                o.fee.into(),
                o.total.into(),
                o.quote_id.clone().into(),
                o.entry_id.clone().into(),
                o.created_at.into(),
                o.updated_at.into(),
            ]),
        );
    }

    /// `user_id`'s order `id`; `None` for another user's.
    pub async fn order(&self, user_id: &str, id: &str) -> Result<Option<OrderRow>, DbErr> {
        OrderRow::find_by_statement(self.stmt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND user_id = $2"),
            [id.into(), user_id.into()],
        ))
        .one(self.conn())
        .await
    }

    /// The sum of the balances of `accounts` (ids), as `tx` sees them.
    pub async fn sum_of_accounts(
        &self,
        tx: &DatabaseTransaction,
        accounts: &[String],
    ) -> Result<i64, DbErr> {
        let marks: Vec<String> = (1..=accounts.len()).map(|i| format!("${i}")).collect();
        let row = tx
            .query_one_raw(
                self.stmt(
                    &format!(
                        "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts \
                     WHERE id IN ({})",
                        marks.join(", ")
                    ),
                    accounts
                        .iter()
                        .map(|a| a.clone().into())
                        .collect::<Vec<sea_orm::Value>>(),
                ),
            )
            .await?;
        match row {
            Some(r) => r.try_get_by_index::<i64>(0),
            None => Ok(0),
        }
    }

    /// Whether a quote has filled an order already.
    pub async fn quote_used(&self, quote_id: &str) -> Result<bool, DbErr> {
        Ok(self
            .scalar_i64(
                "SELECT COUNT(*) FROM orders WHERE quote_id = $1",
                vec![quote_id.into()],
            )
            .await?
            > 0)
    }

    /// The total of `user_id`'s orders and one page of them, newest first.
    pub async fn list_orders(
        &self,
        user_id: &str,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<OrderRow>), DbErr> {
        self.newest_first(
            "orders",
            ORDER_COLUMNS,
            "",
            "user_id = $1",
            vec![user_id.into()],
            skip,
            limit,
        )
        .await
    }
}
