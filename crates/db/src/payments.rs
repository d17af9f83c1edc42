//! Deposits, provider notifications, withdrawals with their approvals, AML flags and transfers
//! held for review. Every change of state here is a conditional UPDATE that names the state it
//! leaves, so two requests racing for the same change cannot both make it.

use crate::ledger::{Usage, in_list};
use crate::sql::{Insert, Sql, text_array};
use crate::{Batch, Db, now_micros};
use etx_domain::{CreditState, WithdrawalStatus};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, Value};

#[derive(Debug, Clone, FromQueryResult)]
pub struct DepositRow {
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub provider: String,
    pub provider_payment_id: Option<String>,
    pub price_amount: i64,
    pub pay_currency: String,
    pub pay_amount: i64,
    pub pay_address: String,
    pub status: String,
    pub status_rank: i32,
    pub actually_paid: i64,
    pub credit_state: String,
    pub credited: i64,
    pub held: i64,
    pub transaction_id: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const DEPOSIT_COLUMNS: &str = "id, order_id, user_id, provider, provider_payment_id, price_amount, \
    pay_currency, pay_amount, pay_address, status, status_rank, actually_paid, credit_state, \
    credited, held, transaction_id, expires_at, created_at, updated_at";

pub struct NewDeposit<'a> {
    pub id: &'a str,
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub provider: &'a str,
    pub provider_payment_id: Option<&'a str>,
    pub price_amount: i64,
    pub pay_currency: &'a str,
    pub pay_amount: i64,
    pub pay_address: &'a str,
    pub status: &'a str,
    pub status_rank: i32,
    pub expires_at: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct WithdrawalRow {
    pub id: String,
    pub user_id: String,
    pub asset: String,
    pub amount: i64,
    pub fee: i64,
    pub usd_cents: i64,
    pub address: String,
    pub status: String,
    pub approvals_required: i32,
    pub approvals: i32,
    pub tx_hash: Option<String>,
    pub reason: Option<String>,
    pub transaction_id: String,
    pub day: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const WITHDRAWAL_COLUMNS: &str = "id, user_id, asset, amount, fee, usd_cents, address, status, \
    approvals_required, approvals, tx_hash, reason, transaction_id, day, created_at, updated_at";

#[derive(Debug, Clone, FromQueryResult)]
pub struct ApprovalRow {
    pub staff_id: String,
    pub username: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct FlagRow {
    pub id: String,
    pub user_id: String,
    pub subject_type: String,
    pub subject_id: String,
    pub rule: String,
    pub details: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
    pub username: Option<String>,
}

const FLAG_COLUMNS: &str = "f.id, f.user_id, f.subject_type, f.subject_id, f.rule, f.details, \
    f.status, f.decided_by, f.decision_reason, f.decided_at, f.created_at, u.username";

#[derive(Debug, Clone, FromQueryResult)]
pub struct HeldTransferRow {
    pub id: String,
    pub sender_id: String,
    pub recipient_id: String,
    pub asset: String,
    pub amount: i64,
    pub note: Option<String>,
    pub transaction_id: String,
    pub status: String,
    pub usd_cents: i64,
    pub day: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct WebhookRow {
    pub id: String,
    pub provider: String,
    pub signature_ok: bool,
    pub order_id: Option<String>,
    pub payment_status: Option<String>,
    pub body: String,
    pub outcome: String,
    pub received_at: i64,
}

/// Filters of the staff withdrawal queue.
#[derive(Debug, Clone, Default)]
pub struct WithdrawalFilter {
    pub statuses: Vec<String>,
    pub asset: Option<String>,
    pub user_id: Option<String>,
}

impl Db {
    pub async fn insert_deposit(&self, d: NewDeposit<'_>) -> Result<(), DbErr> {
        let now = now_micros();
        self.conn()
            .execute_raw(self.stmt(
                "INSERT INTO deposits (id, order_id, user_id, provider, provider_payment_id, \
                 price_amount, pay_currency, pay_amount, pay_address, status, status_rank, \
                 expires_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
                [
                    d.id.into(),
                    d.order_id.into(),
                    d.user_id.into(),
                    d.provider.into(),
                    d.provider_payment_id.map(str::to_string).into(),
                    d.price_amount.into(),
                    d.pay_currency.into(),
                    d.pay_amount.into(),
                    d.pay_address.into(),
                    d.status.into(),
                    d.status_rank.into(),
                    d.expires_at.into(),
                    now.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    pub async fn deposit_by_order(&self, order_id: &str) -> Result<Option<DepositRow>, DbErr> {
        self.deposit_by_order_in(self.conn(), order_id).await
    }

    /// Inside a write transaction reads go through it: a second pool connection taken while
    /// holding the SQLite write lock (or a row lock) can wait on the very writers queued
    /// behind it until the pool times out.
    pub async fn deposit_by_order_in(
        &self,
        c: &impl ConnectionTrait,
        order_id: &str,
    ) -> Result<Option<DepositRow>, DbErr> {
        DepositRow::find_by_statement(self.stmt(
            &format!("SELECT {DEPOSIT_COLUMNS} FROM deposits WHERE order_id = $1"),
            [order_id.into()],
        ))
        .one(c)
        .await
    }

    pub async fn deposits_of_user(
        &self,
        user_id: &str,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<DepositRow>), DbErr> {
        let total = self
            .scalar_i64(
                "SELECT COUNT(*) FROM deposits WHERE user_id = $1",
                vec![user_id.into()],
            )
            .await?;
        let rows = DepositRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {DEPOSIT_COLUMNS} FROM deposits WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            [user_id.into(), limit.into(), skip.into()],
        ))
        .all(self.conn())
        .await?;
        Ok((total, rows))
    }

    /// Moves a deposit's provider status forward to `status` (rank `rank`); `None` when the
    /// deposit is already at that rank or past it, except that a partial payment may be
    /// reported again with more paid. The paid amount only ever grows.
    pub async fn advance_deposit(
        &self,
        tx: &DatabaseTransaction,
        order_id: &str,
        status: &str,
        rank: i32,
        actually_paid: i64,
    ) -> Result<Option<DepositRow>, DbErr> {
        DepositRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE deposits SET status = $2, status_rank = $3, \
                 actually_paid = CASE WHEN $4 > actually_paid THEN $4 ELSE actually_paid END, \
                 updated_at = $5 WHERE order_id = $1 AND (status_rank < $3 \
                 OR (status_rank = $3 AND status = 'partially_paid' AND $4 > actually_paid)) \
                 RETURNING {DEPOSIT_COLUMNS}"
            ),
            [
                order_id.into(),
                status.into(),
                rank.into(),
                actually_paid.into(),
                now_micros().into(),
            ],
        ))
        .one(tx)
        .await
    }

    /// Changes a deposit's credit state from `from` to `to`, adding `credited` to what was
    /// credited and `held` to what of it waits for review; `None` if the state was no longer
    /// `from`.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_deposit_credit(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        from: CreditState,
        to: CreditState,
        credited: i64,
        held: i64,
        transaction_id: Option<&str>,
    ) -> Result<Option<DepositRow>, DbErr> {
        DepositRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE deposits SET credit_state = $3, credited = credited + $4, held = held + $7, \
                 transaction_id = COALESCE($5, transaction_id), updated_at = $6 \
                 WHERE id = $1 AND credit_state = $2 RETURNING {DEPOSIT_COLUMNS}"
            ),
            [
                id.into(),
                from.as_str().into(),
                to.as_str().into(),
                credited.into(),
                transaction_id.map(str::to_string).into(),
                now_micros().into(),
                held.into(),
            ],
        ))
        .one(tx)
        .await
    }

    /// Takes the deposit's row lock for the rest of the transaction, so a review decision and
    /// a provider notification on the same deposit run one after the other.
    pub async fn lock_deposit(
        &self,
        tx: &DatabaseTransaction,
        order_id: &str,
    ) -> Result<(), DbErr> {
        tx.execute_raw(self.stmt(
            "UPDATE deposits SET updated_at = updated_at WHERE order_id = $1",
            [order_id.into()],
        ))
        .await?;
        Ok(())
    }

    /// Opens a subject's review again (or for the first time) under `rule`.
    pub fn queue_reopen_flag(
        batch: &mut Batch,
        user_id: &str,
        subject_type: &str,
        subject_id: &str,
        rule: &str,
        details: &str,
    ) {
        Self::queue_flag(
            batch,
            &uuid::Uuid::now_v7().to_string(),
            user_id,
            subject_type,
            subject_id,
            rule,
            details,
        );
        batch.push(
            Sql::new("UPDATE aml_flags SET status = 'open', rule = ")
                .bind(rule)
                .sql(", details = ")
                .bind(details)
                .sql(
                    ", decided_by = NULL, decision_reason = NULL, decided_at = NULL, created_at = ",
                )
                .bind(now_micros())
                .sql(" WHERE subject_type = ")
                .bind(subject_type)
                .sql(" AND subject_id = ")
                .bind(subject_id)
                .sql(" AND status <> 'open'"),
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_webhook(
        &self,
        id: &str,
        provider: &str,
        signature_ok: bool,
        order_id: Option<&str>,
        payment_status: Option<&str>,
        body: &str,
        outcome: &str,
    ) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(self.stmt(
                "INSERT INTO payment_webhooks (id, provider, signature_ok, order_id, payment_status, \
                 body, outcome, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [
                    id.into(),
                    provider.into(),
                    signature_ok.into(),
                    order_id.map(str::to_string).into(),
                    payment_status.map(str::to_string).into(),
                    body.into(),
                    outcome.into(),
                    now_micros().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Notifications received for an order, oldest first.
    pub async fn webhooks_of_order(&self, order_id: &str) -> Result<Vec<WebhookRow>, DbErr> {
        WebhookRow::find_by_statement(self.stmt(
            "SELECT id, provider, signature_ok, order_id, payment_status, body, outcome, received_at \
             FROM payment_webhooks WHERE order_id = $1 ORDER BY received_at, id",
            [order_id.into()],
        ))
        .all(self.conn())
        .await
    }

    pub fn queue_withdrawal(batch: &mut Batch, w: &WithdrawalRow) {
        batch.push(
            Insert::new(
                "withdrawals",
                &[
                    "id",
                    "user_id",
                    "asset",
                    "amount",
                    "fee",
                    "usd_cents",
                    "address",
                    "status",
                    "approvals_required",
                    "approvals",
                    "tx_hash",
                    "reason",
                    "transaction_id",
                    "day",
                    "created_at",
                    "updated_at",
                ],
            )
            .row([
                w.id.clone().into(),
                w.user_id.clone().into(),
                w.asset.clone().into(),
                w.amount.into(),
                w.fee.into(),
                w.usd_cents.into(),
                w.address.clone().into(),
                w.status.clone().into(),
                w.approvals_required.into(),
                w.approvals.into(),
                w.tx_hash.clone().into(),
                w.reason.clone().into(),
                w.transaction_id.clone().into(),
                w.day.into(),
                w.created_at.into(),
                w.updated_at.into(),
            ]),
        );
    }

    pub async fn withdrawal(&self, id: &str) -> Result<Option<WithdrawalRow>, DbErr> {
        WithdrawalRow::find_by_statement(self.stmt(
            &format!("SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE id = $1"),
            [id.into()],
        ))
        .one(self.conn())
        .await
    }

    /// A page of withdrawals, newest first: one user's (`filter.user_id`) or the staff queue.
    pub async fn list_withdrawals(
        &self,
        filter: &WithdrawalFilter,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<WithdrawalRow>), DbErr> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut vals: Vec<Value> = Vec::new();
        if !filter.statuses.is_empty() {
            clauses.push(format!(
                "status IN ({})",
                in_list(vals.len() + 1, filter.statuses.len())
            ));
            vals.extend(filter.statuses.iter().map(|s| Value::from(s.clone())));
        }
        if let Some(a) = &filter.asset {
            vals.push(a.clone().into());
            clauses.push(format!("asset = ${}", vals.len()));
        }
        if let Some(u) = &filter.user_id {
            vals.push(u.clone().into());
            clauses.push(format!("user_id = ${}", vals.len()));
        }
        let w = clauses.join(" AND ");
        self.newest_first("withdrawals", WITHDRAWAL_COLUMNS, "", &w, vals, skip, limit)
            .await
    }

    /// The total matching `filter` in `table` (alias `f` where a join needs it), and one page of
    /// its rows, newest first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn newest_first<T: FromQueryResult>(
        &self,
        table: &str,
        columns: &str,
        join: &str,
        filter: &str,
        mut vals: Vec<Value>,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<T>), DbErr> {
        let total = self
            .scalar_i64(
                &format!("SELECT COUNT(*) FROM {table} f WHERE {filter}"),
                vals.clone(),
            )
            .await?;
        vals.push(limit.into());
        vals.push(skip.into());
        let rows = T::find_by_statement(self.stmt(
            &format!(
                "SELECT {columns} FROM {table} f {join} WHERE {filter} \
                 ORDER BY f.created_at DESC, f.id DESC LIMIT ${} OFFSET ${}",
                vals.len() - 1,
                vals.len()
            ),
            vals,
        ))
        .all(self.conn())
        .await?;
        Ok((total, rows))
    }

    /// Moves a withdrawal from one of `from` to `to`, optionally recording the reason or
    /// transaction hash; `None` if it was in none of `from`.
    pub async fn transition_withdrawal(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        from: &[WithdrawalStatus],
        to: WithdrawalStatus,
        reason: Option<&str>,
        tx_hash: Option<&str>,
    ) -> Result<Option<WithdrawalRow>, DbErr> {
        let mut vals: Vec<Value> = vec![
            id.into(),
            to.as_str().into(),
            reason.map(str::to_string).into(),
            tx_hash.map(str::to_string).into(),
            now_micros().into(),
        ];
        let list = in_list(vals.len() + 1, from.len());
        vals.extend(from.iter().map(|s| Value::from(s.as_str())));
        WithdrawalRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE withdrawals SET status = $2, reason = COALESCE($3, reason), \
                 tx_hash = COALESCE($4, tx_hash), updated_at = $5 \
                 WHERE id = $1 AND status IN ({list}) RETURNING {WITHDRAWAL_COLUMNS}"
            ),
            vals,
        ))
        .one(tx)
        .await
    }

    /// Records one staff member's approval; `false` if they had already approved it.
    pub async fn add_approval(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        staff_id: &str,
        note: Option<&str>,
    ) -> Result<bool, DbErr> {
        let n = tx
            .execute_raw(self.stmt(
                "INSERT INTO withdrawal_approvals (withdrawal_id, staff_id, note, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [
                    id.into(),
                    staff_id.into(),
                    note.map(str::to_string).into(),
                    now_micros().into(),
                ],
            ))
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Counts an approval on a withdrawal awaiting one: it goes to `processing` once it has as
    /// many as it needs, else to `pending_approval`. `None` if it was not awaiting approval.
    pub async fn count_approval(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
    ) -> Result<Option<WithdrawalRow>, DbErr> {
        WithdrawalRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE withdrawals SET approvals = approvals + 1, \
                 status = CASE WHEN approvals + 1 >= approvals_required THEN 'processing' \
                 ELSE 'pending_approval' END, updated_at = $2 \
                 WHERE id = $1 AND status IN ('pending', 'pending_approval') \
                 RETURNING {WITHDRAWAL_COLUMNS}"
            ),
            [id.into(), now_micros().into()],
        ))
        .one(tx)
        .await
    }

    pub async fn approvals_of(&self, id: &str) -> Result<Vec<ApprovalRow>, DbErr> {
        ApprovalRow::find_by_statement(self.stmt(
            "SELECT a.staff_id, u.username, a.note, a.created_at FROM withdrawal_approvals a \
             LEFT JOIN users u ON u.id = a.staff_id WHERE a.withdrawal_id = $1 ORDER BY a.created_at",
            [id.into()],
        ))
        .all(self.conn())
        .await
    }

    pub async fn add_withdrawal_usage(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
        day: i64,
        cents: i64,
        cap: i64,
    ) -> Result<bool, DbErr> {
        self.add_usage(tx, Usage::Withdrawals, user_id, day, cents, cap)
            .await
    }

    /// Gives back what a withdrawal or transfer that never happened counted against its day's
    /// cap.
    pub fn queue_release_usage(
        batch: &mut Batch,
        usage: Usage,
        user_id: &str,
        day: i64,
        cents: i64,
    ) {
        let t = usage.table();
        batch.push(
            Sql::new(format!("UPDATE {t} SET used_cents = used_cents - "))
                .bind(cents)
                .sql(" WHERE user_id = ")
                .bind(user_id)
                .sql(" AND day = ")
                .bind(day)
                .sql(" AND used_cents >= ")
                .bind(cents),
        );
    }

    pub fn queue_transaction_status(batch: &mut Batch, transaction_id: &str, status: &str) {
        batch.push(
            Sql::new("UPDATE transactions SET status = ")
                .bind(status)
                .sql(" WHERE id = ")
                .bind(transaction_id),
        );
    }

    /// How many deposits, withdrawals and outgoing transfers the user made since `since`.
    /// Per user, how many operations (outgoing transfers, deposits, withdrawals, held ones
    /// included) they made since `since`, counting at most `limit`: the velocity rule only
    /// needs to know whether the limit is reached, and a capped count reads a bounded number
    /// of index entries however busy the user is. One statement for any number of users.
    pub async fn operations_since(
        &self,
        conn: &impl ConnectionTrait,
        users: &[&str],
        since: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        const OPS: &str =
            "((type = 'p2p' AND direction = 'out') OR type IN ('deposit', 'withdrawal'))";
        let stmt = match self.kind() {
            crate::DbKind::Postgres => self.stmt(
                &format!(
                    "SELECT u.id, (SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT 1 FROM transactions t \
                     WHERE t.user_id = u.id AND t.created_at >= $2 AND {OPS} LIMIT $3) x) \
                     FROM unnest($1::text[]) AS u(id)"
                ),
                [
                    text_array(users.iter().copied()),
                    since.into(),
                    limit.into(),
                ],
            ),
            crate::DbKind::Sqlite => {
                let parts = (0..users.len())
                    .map(|i| {
                        let u = i + 3;
                        format!(
                            "SELECT ${u}, (SELECT COUNT(*) FROM (SELECT 1 FROM transactions \
                             WHERE user_id = ${u} AND created_at >= $1 AND {OPS} LIMIT $2))"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                self.stmt(
                    &parts,
                    [since.into(), limit.into()]
                        .into_iter()
                        .chain(users.iter().map(|u| (*u).into())),
                )
            }
        };
        let rows = conn.query_all_raw(stmt).await?;
        crate::sql::pairs(rows)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn queue_flag(
        batch: &mut Batch,
        id: &str,
        user_id: &str,
        subject_type: &str,
        subject_id: &str,
        rule: &str,
        details: &str,
    ) {
        batch.push(
            Insert::new(
                "aml_flags",
                &[
                    "id",
                    "user_id",
                    "subject_type",
                    "subject_id",
                    "rule",
                    "details",
                    "status",
                    "created_at",
                ],
            )
            .row([
                id.into(),
                user_id.into(),
                subject_type.into(),
                subject_id.into(),
                rule.into(),
                details.into(),
                "open".into(),
                now_micros().into(),
            ])
            .suffix(" ON CONFLICT DO NOTHING"),
        );
    }

    pub async fn flag(&self, id: &str) -> Result<Option<FlagRow>, DbErr> {
        FlagRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {FLAG_COLUMNS} FROM aml_flags f LEFT JOIN users u ON u.id = f.user_id WHERE f.id = $1"
            ),
            [id.into()],
        ))
        .one(self.conn())
        .await
    }

    pub async fn flag_of(
        &self,
        subject_type: &str,
        subject_id: &str,
    ) -> Result<Option<FlagRow>, DbErr> {
        self.flag_of_in(self.conn(), subject_type, subject_id).await
    }

    pub async fn flag_of_in(
        &self,
        c: &impl ConnectionTrait,
        subject_type: &str,
        subject_id: &str,
    ) -> Result<Option<FlagRow>, DbErr> {
        FlagRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {FLAG_COLUMNS} FROM aml_flags f LEFT JOIN users u ON u.id = f.user_id \
                 WHERE f.subject_type = $1 AND f.subject_id = $2"
            ),
            [subject_type.into(), subject_id.into()],
        ))
        .one(c)
        .await
    }

    pub async fn list_flags(
        &self,
        status: Option<&str>,
        skip: i64,
        limit: i64,
    ) -> Result<(i64, Vec<FlagRow>), DbErr> {
        let (w, vals): (&str, Vec<Value>) = match status {
            Some(s) => ("f.status = $1", vec![s.into()]),
            None => ("1 = 1", vec![]),
        };
        self.newest_first(
            "aml_flags",
            FLAG_COLUMNS,
            "LEFT JOIN users u ON u.id = f.user_id",
            w,
            vals,
            skip,
            limit,
        )
        .await
    }

    /// Closes an open flag as `released` or `rejected`; `None` if it was not open.
    pub async fn decide_flag(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        status: &str,
        staff_id: &str,
        reason: &str,
    ) -> Result<Option<FlagRow>, DbErr> {
        let row = tx
            .query_one_raw(self.stmt(
                "UPDATE aml_flags SET status = $2, decided_by = $3, decision_reason = $4, decided_at = $5 \
                 WHERE id = $1 AND status = 'open' RETURNING id",
                [
                    id.into(),
                    status.into(),
                    staff_id.into(),
                    reason.into(),
                    now_micros().into(),
                ],
            ))
            .await?;
        if row.is_none() {
            return Ok(None);
        }
        FlagRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {FLAG_COLUMNS} FROM aml_flags f LEFT JOIN users u ON u.id = f.user_id WHERE f.id = $1"
            ),
            [id.into()],
        ))
        .one(tx)
        .await
    }

    pub fn queue_held_transfer(batch: &mut Batch, t: &HeldTransferRow) {
        batch.push(
            Insert::new(
                "held_transfers",
                &[
                    "id",
                    "sender_id",
                    "recipient_id",
                    "asset",
                    "amount",
                    "note",
                    "transaction_id",
                    "status",
                    "usd_cents",
                    "day",
                    "created_at",
                ],
            )
            .row([
                t.id.clone().into(),
                t.sender_id.clone().into(),
                t.recipient_id.clone().into(),
                t.asset.clone().into(),
                t.amount.into(),
                t.note.clone().into(),
                t.transaction_id.clone().into(),
                t.status.clone().into(),
                t.usd_cents.into(),
                t.day.into(),
                t.created_at.into(),
            ]),
        );
    }

    /// Settles a held transfer (`released` or `rejected`); `None` if it was no longer held.
    pub async fn settle_held_transfer(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        status: &str,
    ) -> Result<Option<HeldTransferRow>, DbErr> {
        HeldTransferRow::find_by_statement(self.stmt(
            "UPDATE held_transfers SET status = $2 WHERE id = $1 AND status = 'held' \
             RETURNING id, sender_id, recipient_id, asset, amount, note, transaction_id, status, \
             usd_cents, day, created_at",
            [id.into(), status.into()],
        ))
        .one(tx)
        .await
    }
}
