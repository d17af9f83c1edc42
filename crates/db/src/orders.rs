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
    /// A limit or stop order's limit or stop price (quote asset × 10^8).
    pub trigger_price: Option<i64>,
    /// What an open order holds, in `held_asset`.
    pub held: i64,
    pub held_asset: Option<String>,
    pub expires_at: Option<i64>,
    /// Why an order ended without filling.
    pub reason: Option<String>,
}

const ORDER_COLUMNS: &str = "id, user_id, base_asset, quote_asset, side, type AS kind, status, \
     amount, price, value, fee, total, quote_id, entry_id, created_at, updated_at, \
     trigger_price, held, held_asset, expires_at, reason";

/// How a resting order ended: its terms as filled (or as they stood), the fill's entry.
pub struct OrderEnd<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub price: i64,
    pub value: i64,
    pub fee: i64,
    pub total: i64,
    pub entry_id: Option<&'a str>,
    pub reason: Option<&'a str>,
}

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
                    "trigger_price",
                    "held",
                    "held_asset",
                    "expires_at",
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
                o.trigger_price.into(),
                o.held.into(),
                o.held_asset.clone().into(),
                o.expires_at.into(),
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
    /// The total balance per asset of the accounts `ids` (for example one asset's shards of
    /// the platform's inventory), as this transaction sees them; assets without an account are
    /// left out.
    pub async fn sums_by_asset(
        &self,
        tx: &DatabaseTransaction,
        ids: &[&str],
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = match self.kind() {
            crate::DbKind::Postgres => self.stmt(
                "SELECT asset, CAST(SUM(balance) AS BIGINT) FROM ledger_accounts \
                 WHERE id = ANY($1::text[]) GROUP BY asset",
                [crate::sql::text_array(ids.iter().copied())],
            ),
            crate::DbKind::Sqlite => self.stmt(
                &format!(
                    "SELECT asset, CAST(SUM(balance) AS BIGINT) FROM ledger_accounts \
                     WHERE id IN ({}) GROUP BY asset",
                    crate::ledger::in_list(1, ids.len())
                ),
                ids.iter().map(|i| (*i).into()),
            ),
        };
        crate::sql::pairs(tx.query_all_raw(stmt).await?)
    }

    /// Which of `quote_ids` filled an order already.
    pub async fn quotes_used(
        &self,
        tx: &DatabaseTransaction,
        quote_ids: &[&str],
    ) -> Result<Vec<String>, DbErr> {
        if quote_ids.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = self.stmt(
            &format!(
                "SELECT quote_id FROM orders WHERE quote_id IN ({})",
                crate::ledger::in_list(1, quote_ids.len())
            ),
            quote_ids.iter().map(|i| (*i).into()),
        );
        tx.query_all_raw(stmt)
            .await?
            .into_iter()
            .map(|r| r.try_get_by_index(0))
            .collect()
    }

    /// The total of `user_id`'s orders (with `status` and of the pair `base`/`quote` when
    /// given) and one page of them, newest first.
    pub async fn list_orders(
        &self,
        user_id: &str,
        status: Option<&str>,
        pair: Option<(&str, &str)>,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<OrderRow>), DbErr> {
        let (filter, values) = order_filter(user_id, status, pair);
        self.newest_first("orders", ORDER_COLUMNS, "", &filter, values, skip, limit)
            .await
    }

    /// A page of the user's orders, newest first, older than `before` (created_at, id) when
    /// given: keyset paging for exports of any length.
    pub async fn orders_before(
        &self,
        user_id: &str,
        status: Option<&str>,
        pair: Option<(&str, &str)>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<OrderRow>, DbErr> {
        let (mut filter, mut values) = order_filter(user_id, status, pair);
        if let Some((at, id)) = before {
            values.push(at.into());
            values.push(id.into());
            let (a, i) = (values.len() - 1, values.len());
            filter.push_str(&format!(
                " AND (created_at < ${a} OR (created_at = ${a} AND id < ${i}))"
            ));
        }
        values.push(limit.into());
        OrderRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE {filter} \
                 ORDER BY created_at DESC, id DESC LIMIT ${}",
                values.len()
            ),
            values,
        ))
        .all(self.conn())
        .await
    }

    /// Moves open orders among `ids` (of `user_id` when given) to `status` with `reason` and
    /// `entry_id` (the fills' journal entry), and returns them; an order no longer open is not
    /// returned. This conditional update is what makes a fill, a cancel and an
    /// expiry exclusive: whichever commits first wins, on any instance. `held` keeps what the
    /// order held while it was open.
    pub async fn close_open_orders(
        &self,
        tx: &DatabaseTransaction,
        ids: &[&str],
        user_id: Option<&str>,
        status: &str,
        reason: Option<&str>,
        entry_id: Option<&str>,
    ) -> Result<Vec<OrderRow>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::now_micros();
        let mut values: Vec<sea_orm::Value> = vec![
            status.into(),
            now.into(),
            reason.map(str::to_string).into(),
            entry_id.map(str::to_string).into(),
        ];
        let owner = match user_id {
            Some(u) => {
                values.push(u.into());
                " AND user_id = $5"
            }
            None => "",
        };
        let first = values.len() + 1;
        let matching = match self.kind() {
            crate::DbKind::Postgres => {
                values.push(crate::sql::text_array(ids.iter().copied()));
                format!("id = ANY(${first}::text[])")
            }
            crate::DbKind::Sqlite => {
                values.extend(ids.iter().map(|i| sea_orm::Value::from(*i)));
                format!("id IN ({})", crate::ledger::in_list(first, ids.len()))
            }
        };
        OrderRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE orders SET status = $1, updated_at = $2, reason = $3, \
                 entry_id = $4 \
                 WHERE {matching}{owner} AND status = 'open' RETURNING {ORDER_COLUMNS}"
            ),
            values,
        ))
        .all(tx)
        .await
    }

    /// Records the terms a closed order ended with where they differ from those it was placed
    /// with (a stop fills at the market's price; a stop can be rejected when it triggers).
    pub fn queue_order_ends(batch: &mut Batch, ends: &[OrderEnd<'_>]) {
        if ends.is_empty() {
            return;
        }
        let mut rows = crate::sql::Rows::with_capacity(8, ends.len());
        for e in ends {
            rows.push([
                e.id.into(),
                e.price.into(),
                e.value.into(),
                e.fee.into(),
                e.total.into(),
                e.entry_id.map(str::to_string).into(),
                e.reason.map(str::to_string).into(),
                e.status.into(),
            ]);
        }
        batch.push(
            crate::sql::Sql::new(
                "UPDATE orders SET price = v.column2, value = v.column3, fee = v.column4, \
                 total = v.column5, entry_id = v.column6, reason = v.column7, status = v.column8 \
                 FROM ",
            )
            .rows(rows, "v")
            .sql(" WHERE orders.id = v.column1"),
        );
    }

    /// Open orders created at or after `since`, after (`created_at`, `id`) = `after`, oldest
    /// first: the matcher's book is loaded and kept up to date from these.
    pub async fn open_orders(
        &self,
        after: (i64, &str),
        limit: i64,
    ) -> Result<Vec<OrderRow>, DbErr> {
        OrderRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'open' \
                 AND (created_at > $1 OR (created_at = $1 AND id > $2)) \
                 ORDER BY created_at, id LIMIT $3"
            ),
            [after.0.into(), after.1.into(), limit.into()],
        ))
        .all(self.conn())
        .await
    }

    /// How many open orders `user_id` has, as `tx` sees them.
    pub async fn count_open_orders(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
    ) -> Result<i64, DbErr> {
        self.scalar_i64_in(
            tx,
            "SELECT COUNT(*) FROM orders WHERE user_id = $1 AND status = 'open'",
            vec![user_id.into()],
        )
        .await
    }
}

/// `WHERE` text and values for a user's orders, with a status and a pair when given.
fn order_filter(
    user_id: &str,
    status: Option<&str>,
    pair: Option<(&str, &str)>,
) -> (String, Vec<sea_orm::Value>) {
    let mut filter = String::from("user_id = $1");
    let mut values: Vec<sea_orm::Value> = vec![user_id.into()];
    if let Some(s) = status {
        values.push(s.into());
        filter.push_str(&format!(" AND status = ${}", values.len()));
    }
    if let Some((base, quote)) = pair {
        values.push(base.into());
        values.push(quote.into());
        filter.push_str(&format!(
            " AND base_asset = ${} AND quote_asset = ${}",
            values.len() - 1,
            values.len()
        ));
    }
    (filter, values)
}
