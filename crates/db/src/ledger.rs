//! Ledger accounts, journal entries and postings, plus the idempotency records of money POSTs.
//! Every movement is applied inside a caller's write transaction: conditional balance updates in
//! account-id order (so concurrent opposite movements cannot deadlock), then the postings.

use crate::sql::{Insert, Rows, Sql, text_array};
use crate::{Batch, Db, now_micros};
use etx_domain::{AccountKind, EntryKind, TxKind};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};
use std::collections::HashMap;

pub const PLATFORM: &str = "";

/// Deterministic account ids, so a movement never has to look an account up before locking it.
pub fn account_id(owner: &str, kind: AccountKind, asset: &str) -> String {
    format!("{}:{owner}:{asset}", kind.as_str())
}

/// One side of an entry. The account is created on first credit, so a movement never has to
/// look an account up before locking it.
pub struct Leg<'a> {
    pub owner: &'a str,
    pub kind: AccountKind,
    pub amount: i64,
}

impl Leg<'_> {
    /// Platform positions such as equity may go below zero; user wallets never.
    pub fn allow_negative(&self) -> bool {
        self.kind.may_go_negative()
    }

    pub fn account_id(&self, asset: &str) -> String {
        account_id(self.owner, self.kind, asset)
    }
}

pub struct NewEntry<'a> {
    pub id: &'a str,
    pub kind: EntryKind,
    pub asset: &'a str,
    pub memo: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub legs: Vec<Leg<'a>>,
}

/// What an entry records, apart from its postings.
pub struct EntryHead<'a> {
    pub id: &'a str,
    pub kind: EntryKind,
    pub memo: Option<&'a str>,
    pub created_by: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("unbalanced entry")]
    Unbalanced,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A money POST's answer to store under its key.
pub struct NewIdempotency<'a> {
    pub user_id: &'a str,
    pub key: &'a str,
    pub scope: &'a str,
    pub request_hash: &'a str,
    pub status: u16,
    pub response: &'a str,
}

/// A money POST's stored answer, replayed for the same key.
pub struct IdemRecord {
    pub scope: String,
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

/// One row of `TX_COLUMNS`, decoded by position (exports decode millions).
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub direction: String,
    pub asset: String,
    pub amount: i64,
    pub fee: i64,
    pub status: String,
    pub counterparty_id: Option<String>,
    pub note: Option<String>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    pub counterparty_username: Option<String>,
}

pub struct NewTransaction<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: TxKind,
    pub direction: &'a str,
    pub asset: &'a str,
    pub amount: i64,
    pub fee: i64,
    pub status: &'a str,
    pub counterparty_id: Option<&'a str>,
    pub note: Option<&'a str>,
    pub entry_id: Option<&'a str>,
    /// What the amount was worth in US cents when it moved (for a fill, what was paid or
    /// received for it): the portfolio's cost basis and realised P&L are made of these.
    pub usd_value: Option<i64>,
}

impl Db {
    /// Applies a balanced entry's balance changes now and queues its entry and postings on
    /// `batch`; returns each account's new balance (account id, balance). Fails with
    /// `InsufficientFunds` if an account that may not go negative would; the caller then rolls
    /// the transaction back.
    pub async fn post_entry(
        &self,
        tx: &DatabaseTransaction,
        batch: &mut Batch,
        e: NewEntry<'_>,
    ) -> Result<Vec<(String, i64)>, PostError> {
        let head = EntryHead {
            id: e.id,
            kind: e.kind,
            memo: e.memo,
            created_by: e.created_by,
        };
        self.post_entry_assets(tx, batch, head, vec![(e.asset, e.legs)])
            .await
    }

    /// Like `post_entry`, for an entry over several assets (a trade): each asset's legs must
    /// balance on their own. Balances are changed in one global account-id order across the
    /// assets, so concurrent entries cannot deadlock.
    pub async fn post_entry_assets(
        &self,
        tx: &DatabaseTransaction,
        batch: &mut Batch,
        head: EntryHead<'_>,
        parts: Vec<(&str, Vec<Leg<'_>>)>,
    ) -> Result<Vec<(String, i64)>, PostError> {
        for (_, legs) in &parts {
            let sum = legs
                .iter()
                .try_fold(0i64, |acc, l| acc.checked_add(l.amount));
            if sum != Some(0) || legs.len() < 2 || legs.iter().any(|l| l.amount == 0) {
                return Err(PostError::Unbalanced);
            }
        }
        let now = now_micros();
        let mut legs: Vec<(String, &str, &Leg)> = parts
            .iter()
            .flat_map(|(asset, legs)| legs.iter().map(move |l| (l.account_id(asset), *asset, l)))
            .collect();
        // One global lock order, so concurrent opposite movements cannot deadlock.
        legs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut balances = Vec::with_capacity(legs.len());
        for (id, asset, leg) in &legs {
            let row = if leg.amount < 0 && !leg.allow_negative() {
                // A debit only ever updates: a missing account has nothing to spend.
                tx.query_one_raw(self.stmt(
                    "UPDATE ledger_accounts SET balance = balance + $2, updated_at = $3 \
                     WHERE id = $1 AND balance + $2 >= 0 RETURNING balance",
                    [id.clone().into(), leg.amount.into(), now.into()],
                ))
                .await?
            } else {
                tx.query_one_raw(self.stmt(
                    "INSERT INTO ledger_accounts (id, owner_id, kind, asset, balance, allow_negative, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                     ON CONFLICT (id) DO UPDATE SET balance = ledger_accounts.balance + excluded.balance, \
                     updated_at = excluded.updated_at \
                     WHERE ledger_accounts.allow_negative OR ledger_accounts.balance + excluded.balance >= 0 \
                     RETURNING balance",
                    [
                        id.clone().into(),
                        leg.owner.into(),
                        leg.kind.as_str().into(),
                        (*asset).into(),
                        leg.amount.into(),
                        leg.allow_negative().into(),
                        now.into(),
                    ],
                ))
                .await?
            };
            let row = row.ok_or(PostError::InsufficientFunds)?;
            balances.push((id.clone(), row.try_get_by_index::<i64>(0)?));
        }
        let postings = legs
            .iter()
            .map(|(id, asset, l)| (id.as_str(), *asset, l.amount));
        Self::queue_postings(batch, &head, postings, now);
        Ok(balances)
    }

    /// Queues an entry and its postings (account id, amount), whose balances the caller has
    /// already applied.
    pub fn queue_entry(batch: &mut Batch, e: &NewEntry<'_>, postings: &[(&str, i64)], now: i64) {
        let head = EntryHead {
            id: e.id,
            kind: e.kind,
            memo: e.memo,
            created_by: e.created_by,
        };
        let postings = postings.iter().map(|(a, n)| (*a, e.asset, *n));
        Self::queue_postings(batch, &head, postings, now);
    }

    /// Queues an entry and its postings (account id, asset, amount).
    pub fn queue_postings<'p>(
        batch: &mut Batch,
        e: &EntryHead<'_>,
        postings: impl ExactSizeIterator<Item = (&'p str, &'p str, i64)>,
        now: i64,
    ) {
        batch.push(
            Insert::new(
                "journal_entries",
                &["id", "kind", "memo", "created_by", "created_at"],
            )
            .row([
                e.id.into(),
                e.kind.as_str().into(),
                e.memo.map(str::to_string).into(),
                e.created_by.map(str::to_string).into(),
                now.into(),
            ]),
        );
        let mut insert = Insert::with_capacity(
            "postings",
            &[
                "id",
                "entry_id",
                "account_id",
                "asset",
                "amount",
                "created_at",
            ],
            postings.len(),
        );
        for (account, asset, amount) in postings {
            insert.push_row([
                uuid::Uuid::now_v7().to_string().into(),
                e.id.into(),
                account.into(),
                asset.into(),
                amount.into(),
                now.into(),
            ]);
        }
        batch.push(insert);
    }

    /// Locks the accounts that exist among `ids`, in id order (one lock order for every
    /// writer), and returns (id, balance, allow_negative) for each. SQLite's write
    /// transaction already excludes other writers. The lock lets inserts of postings that
    /// reference the accounts go on (it is not a key lock).
    pub async fn lock_accounts(
        &self,
        tx: &DatabaseTransaction,
        ids: &[&str],
    ) -> Result<Vec<(String, i64, bool)>, DbErr> {
        self.accounts(tx, ids, true).await
    }

    /// The accounts that exist among `ids` with (id, balance, allow_negative): locked as in
    /// `lock_accounts` with `lock`, else as of now, which a writer that goes on to change them
    /// must check again under the lock.
    pub async fn accounts(
        &self,
        tx: &DatabaseTransaction,
        ids: &[&str],
        lock: bool,
    ) -> Result<Vec<(String, i64, bool)>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = match self.kind() {
            // One array parameter: the same prepared statement for any number of accounts.
            crate::DbKind::Postgres => self.stmt(
                if lock {
                    "SELECT id, balance, allow_negative FROM ledger_accounts \
                     WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE"
                } else {
                    "SELECT id, balance, allow_negative FROM ledger_accounts \
                     WHERE id = ANY($1::text[])"
                },
                [text_array(ids.iter().copied())],
            ),
            crate::DbKind::Sqlite => self.stmt(
                &format!(
                    "SELECT id, balance, allow_negative FROM ledger_accounts WHERE id IN ({}) ORDER BY id",
                    in_list(1, ids.len())
                ),
                ids.iter().map(|i| (*i).into()),
            ),
        };
        let rows = tx.query_all_raw(stmt).await?;
        crate::sql::triples(rows)
    }

    /// Creates accounts (id, owner, kind, asset) with a zero balance where missing; platform
    /// positions that may go negative are created so.
    pub async fn open_accounts(
        &self,
        tx: &impl ConnectionTrait,
        accounts: &[(&str, &str, &str, &str)],
    ) -> Result<(), DbErr> {
        if accounts.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        let mut vals: Vec<sea_orm::Value> = Vec::with_capacity(accounts.len() * 6);
        for (id, owner, kind, asset) in accounts {
            let negative = AccountKind::parse(kind).is_some_and(AccountKind::may_go_negative);
            vals.extend([
                (*id).into(),
                (*owner).into(),
                (*kind).into(),
                (*asset).into(),
                negative.into(),
                now.into(),
            ]);
        }
        let tuples = (0..accounts.len())
            .map(|r| {
                let b = r * 6;
                format!(
                    "(${}, ${}, ${}, ${}, 0, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 6
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        tx.execute_raw(self.stmt(
            &format!(
                "INSERT INTO ledger_accounts (id, owner_id, kind, asset, balance, allow_negative, \
                 created_at, updated_at) VALUES {tuples} ON CONFLICT (id) DO NOTHING"
            ),
            vals,
        ))
        .await?;
        Ok(())
    }

    /// Queues balance changes (account id, delta) of accounts the transaction has locked, as
    /// one conditional update: an account that may not go negative is not changed if it
    /// would, and the caller compares the rows affected with the number of accounts.
    pub fn queue_balance_changes(batch: &mut Batch, deltas: &[(&str, i64)], now: i64) {
        batch.push(
            Sql::new(
                "UPDATE ledger_accounts SET balance = ledger_accounts.balance + v.column2, updated_at = ",
            )
            .bind(now)
            .sql(" FROM ")
            .rows(pair_rows(deltas), "v")
            .sql(
                " WHERE ledger_accounts.id = v.column1 \
                 AND (ledger_accounts.allow_negative OR ledger_accounts.balance + v.column2 >= 0)",
            ),
        );
    }

    /// Applies balance changes (account id, delta) now, as one conditional update like
    /// `queue_balance_changes`, and returns the accounts changed with their new balances:
    /// fewer than asked when one that may not go negative would have.
    pub async fn apply_balance_changes(
        &self,
        tx: &DatabaseTransaction,
        deltas: &[(&str, i64)],
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let sql = Sql::new(
            "UPDATE ledger_accounts SET balance = ledger_accounts.balance + v.column2, updated_at = ",
        )
        .bind(now_micros())
        .sql(" FROM ")
        .rows(pair_rows(deltas), "v")
        .sql(
            " WHERE ledger_accounts.id = v.column1 \
             AND (ledger_accounts.allow_negative OR ledger_accounts.balance + v.column2 >= 0) \
             RETURNING ledger_accounts.id, ledger_accounts.balance",
        );
        let rows = tx.query_all_raw(self.render(sql.into())).await?;
        crate::sql::pairs(rows)
    }

    /// The users' rows of `table` for `day` as (user id, used cents). With `lock`, missing
    /// rows are created at zero and all are locked in user-id order; without, the totals are
    /// as of now and missing rows are not returned.
    pub async fn usage(
        &self,
        tx: &DatabaseTransaction,
        table: Usage,
        day: i64,
        users: &[&str],
        lock: bool,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let t = table.table();
        let pg = self.kind() == crate::DbKind::Postgres;
        let args: Vec<sea_orm::Value> = if pg {
            vec![day.into(), text_array(users.iter().copied())]
        } else {
            std::iter::once(day.into())
                .chain(users.iter().map(|u| (*u).into()))
                .collect()
        };
        let (select, insert) = if pg {
            (
                format!(
                    "SELECT user_id, used_cents FROM {t} WHERE day = $1 AND user_id = ANY($2::text[]){}",
                    if lock {
                        " ORDER BY user_id FOR NO KEY UPDATE"
                    } else {
                        ""
                    }
                ),
                format!(
                    "INSERT INTO {t} (user_id, day, used_cents) SELECT u, $1, 0 FROM unnest($2::text[]) AS u \
                     ON CONFLICT (user_id, day) DO NOTHING"
                ),
            )
        } else {
            let tuples = (0..users.len())
                .map(|i| format!("(${}, $1, 0)", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            (
                format!(
                    "SELECT user_id, used_cents FROM {t} WHERE day = $1 AND user_id IN ({}) ORDER BY user_id",
                    in_list(2, users.len())
                ),
                format!(
                    "INSERT INTO {t} (user_id, day, used_cents) VALUES {tuples} ON CONFLICT (user_id, day) DO NOTHING"
                ),
            )
        };
        let mut rows = tx.query_all_raw(self.stmt(&select, args.clone())).await?;
        if lock && rows.len() < users.len() {
            tx.execute_raw(self.stmt(&insert, args.clone())).await?;
            rows = tx.query_all_raw(self.stmt(&select, args)).await?;
        }
        crate::sql::pairs(rows)
    }

    /// Queues additions (user id, cents) to locked rows of `table` for `day`; each row is
    /// changed only if it stays within `cap`.
    pub fn queue_usage(batch: &mut Batch, table: Usage, day: i64, cap: i64, adds: &[(&str, i64)]) {
        let t = table.table();
        batch.push(
            Sql::new(format!(
                "UPDATE {t} SET used_cents = {t}.used_cents + v.column2 FROM "
            ))
            .rows(pair_rows(adds), "v")
            .sql(format!(" WHERE {t}.user_id = v.column1 AND {t}.day = "))
            .bind(day)
            .sql(format!(" AND {t}.used_cents + v.column2 <= "))
            .bind(cap),
        );
    }

    /// Queues the stored answers of money POSTs committed together; a key already taken is
    /// skipped, which the caller sees in the rows affected.
    pub fn queue_idempotency(batch: &mut Batch, records: &[NewIdempotency<'_>], now: i64) {
        let mut insert = Insert::with_capacity(
            "idempotency_keys",
            &[
                "user_id",
                "idem_key",
                "scope",
                "request_hash",
                "status",
                "response",
                "created_at",
            ],
            records.len(),
        )
        .suffix(" ON CONFLICT DO NOTHING");
        for r in records {
            insert.push_row([
                r.user_id.into(),
                r.key.into(),
                r.scope.into(),
                r.request_hash.into(),
                i32::from(r.status).into(),
                r.response.into(),
                now.into(),
            ]);
        }
        batch.push(insert);
    }

    /// Which of the (user id, key) pairs already have a stored answer.
    pub async fn taken_idempotency_keys(
        &self,
        conn: &impl ConnectionTrait,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, DbErr> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = match self.kind() {
            crate::DbKind::Postgres => self.stmt(
                "SELECT user_id, idem_key FROM idempotency_keys \
                 WHERE (user_id, idem_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                [
                    text_array(pairs.iter().map(|p| p.0)),
                    text_array(pairs.iter().map(|p| p.1)),
                ],
            ),
            crate::DbKind::Sqlite => {
                let cond = (0..pairs.len())
                    .map(|i| format!("(user_id = ${} AND idem_key = ${})", i * 2 + 1, i * 2 + 2))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                self.stmt(
                    &format!("SELECT user_id, idem_key FROM idempotency_keys WHERE {cond}"),
                    pairs.iter().flat_map(|(u, k)| [(*u).into(), (*k).into()]),
                )
            }
        };
        let rows = conn.query_all_raw(stmt).await?;
        crate::sql::pairs(rows)
    }

    /// Queues the history rows of one movement, as one statement. Rows go in user-id order
    /// because on SQLite they bump their users' rows in `transaction_counts` (a trigger).
    pub fn insert_transactions(batch: &mut Batch, rows: &mut [NewTransaction<'_>]) {
        if rows.is_empty() {
            return;
        }
        rows.sort_by(|a, b| a.user_id.cmp(b.user_id));
        let now = now_micros();
        let mut insert = Insert::with_capacity(
            "transactions",
            &[
                "id",
                "user_id",
                "type",
                "direction",
                "asset",
                "amount",
                "fee",
                "status",
                "counterparty_id",
                "note",
                "entry_id",
                "usd_value",
                "created_at",
            ],
            rows.len(),
        );
        for t in rows.iter() {
            insert.push_row([
                t.id.into(),
                t.user_id.into(),
                t.kind.as_str().into(),
                t.direction.into(),
                t.asset.into(),
                t.amount.into(),
                t.fee.into(),
                t.status.into(),
                t.counterparty_id.map(str::to_string).into(),
                t.note.map(str::to_string).into(),
                t.entry_id.map(str::to_string).into(),
                t.usd_value.into(),
                now.into(),
            ]);
        }
        batch.push(insert);
    }

    /// Adds `cents` to the user's sent-today total unless that would pass `cap`; `false` when
    /// the cap would be exceeded. One statement, so concurrent transfers cannot both slip under.
    pub async fn add_transfer_usage(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
        day: i64,
        cents: i64,
        cap: i64,
    ) -> Result<bool, DbErr> {
        self.add_usage(tx, Usage::Transfers, user_id, day, cents, cap)
            .await
    }

    /// Adds `cents` to a user's total for `day` in `table` unless that would pass `cap`.
    pub(crate) async fn add_usage(
        &self,
        tx: &DatabaseTransaction,
        table: Usage,
        user_id: &str,
        day: i64,
        cents: i64,
        cap: i64,
    ) -> Result<bool, DbErr> {
        if cents > cap {
            return Ok(false);
        }
        let t = table.table();
        let n = tx
            .execute_raw(self.stmt(
                &format!(
                    "INSERT INTO {t} (user_id, day, used_cents) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, day) DO UPDATE SET used_cents = {t}.used_cents + excluded.used_cents \
                     WHERE {t}.used_cents + excluded.used_cents <= $4"
                ),
                [user_id.into(), day.into(), cents.into(), cap.into()],
            ))
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Runs the queued statements, storing a money POST's answer under its key last. `false`
    /// when the key is already taken: the caller rolls back and answers as the first request
    /// did. Storing at the end (not claiming first) saves a round trip; a concurrent duplicate
    /// waits on the key's index entry until the first commits, then finds it.
    pub async fn finish_with_idempotency(
        &self,
        tx: &DatabaseTransaction,
        mut batch: Batch,
        record: NewIdempotency<'_>,
    ) -> Result<bool, DbErr> {
        Self::queue_idempotency(&mut batch, &[record], now_micros());
        Ok(self.run_batch(tx, batch).await? == 1)
    }

    pub async fn idempotency_record(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdemRecord>, DbErr> {
        let Some(row) = self
            .conn()
            .query_one_raw(self.stmt(
                "SELECT scope, request_hash, status, response FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
                [user_id.into(), key.into()],
            ))
            .await?
        else {
            return Ok(None);
        };
        let status: i32 = row.try_get("", "status")?;
        Ok(Some(IdemRecord {
            scope: row.try_get("", "scope")?,
            request_hash: row.try_get("", "request_hash")?,
            status: u16::try_from(status).unwrap_or(200),
            response: row.try_get("", "response")?,
        }))
    }

    /// Forgets idempotency keys stored before `cutoff` (Unix micros); returns how many.
    pub async fn purge_idempotency_keys(&self, cutoff: i64) -> Result<u64, DbErr> {
        Ok(self
            .conn()
            .execute_raw(self.stmt(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                [cutoff.into()],
            ))
            .await?
            .rows_affected())
    }

    /// Folds pending history-count additions into the per-user counters; returns how many
    /// were folded. One statement, so a total read at any moment counts each row once; two
    /// instances folding at once each take the pending rows the other did not lock.
    pub async fn fold_history_counts(&self) -> Result<u64, DbErr> {
        if self.kind() != crate::DbKind::Postgres {
            return Ok(0);
        }
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "WITH d AS (DELETE FROM transaction_count_deltas RETURNING user_id, n), \
                 f AS (INSERT INTO transaction_counts (user_id, n) \
                 SELECT user_id, SUM(n) FROM d GROUP BY user_id ORDER BY user_id \
                 ON CONFLICT (user_id) DO UPDATE SET n = transaction_counts.n + excluded.n) \
                 SELECT CAST(COUNT(*) AS BIGINT) FROM d",
                [],
            ))
            .await?;
        let n = row.map_or(Ok(0), |r| r.try_get_by_index::<i64>(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// True when the user holds a non-zero balance of any asset, or has money on its way in
    /// or out: an unfinished withdrawal, a transfer held for review either way, or a deposit
    /// that is held or may still be paid.
    pub async fn holds_funds(&self, user_id: &str) -> Result<bool, DbErr> {
        self.holds_funds_in(self.conn(), user_id).await
    }

    /// `holds_funds` read through `conn` (a transaction that locked the user's rows).
    pub async fn holds_funds_in(
        &self,
        conn: &impl ConnectionTrait,
        user_id: &str,
    ) -> Result<bool, DbErr> {
        let row = conn
            .query_one_raw(self.stmt(
                "SELECT (SELECT COUNT(*) FROM ledger_accounts WHERE owner_id = $1 \
                 AND kind IN ('wallet', 'held') AND balance <> 0) \
                 + (SELECT COUNT(*) FROM withdrawals WHERE user_id = $1 \
                 AND status IN ('held', 'pending', 'pending_approval', 'processing')) \
                 + (SELECT COUNT(*) FROM held_transfers WHERE (sender_id = $1 OR recipient_id = $1) \
                 AND status = 'held') \
                 + (SELECT COUNT(*) FROM deposits WHERE user_id = $1 AND (credit_state = 'held' \
                 OR (credit_state = 'none' AND status_rank < 6 AND expires_at > $2)))",
                [user_id.into(), crate::now_micros().into()],
            ))
            .await?;
        Ok(row.map_or(Ok(0), |r| r.try_get_by_index::<i64>(0))? > 0)
    }

    /// A user's wallet balance of one asset read through `conn` (0 before the first credit).
    pub async fn wallet_balance_in(
        &self,
        conn: &impl ConnectionTrait,
        user_id: &str,
        asset: &str,
    ) -> Result<i64, DbErr> {
        let row = conn
            .query_one_raw(self.stmt(
                "SELECT balance FROM ledger_accounts WHERE id = $1",
                [account_id(user_id, AccountKind::Wallet, asset).into()],
            ))
            .await?;
        row.map_or(Ok(0), |r| r.try_get_by_index::<i64>(0))
    }

    /// Wallet balances of a user by asset (only assets that have an account).
    pub async fn wallet_balances(&self, user_id: &str) -> Result<Vec<(String, i64, i64)>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT asset, balance, updated_at FROM ledger_accounts WHERE owner_id = $1 AND kind = 'wallet'",
                [user_id.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("", "asset")?,
                    r.try_get("", "balance")?,
                    r.try_get("", "updated_at")?,
                ))
            })
            .collect()
    }
}

/// Per-user daily totals kept for caps.
#[derive(Debug, Clone, Copy)]
pub enum Usage {
    Transfers,
    Withdrawals,
}

impl Usage {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Usage::Transfers => "transfer_usage",
            Usage::Withdrawals => "withdrawal_usage",
        }
    }
}

/// `($1, $2, …), (…)`: `rows` groups of `cols` numbered placeholders.
/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list.
pub(crate) fn in_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// Checks every ledger invariant and describes each violation found (empty: all hold).
    /// Per asset all postings sum to zero; every entry has two or more postings summing to zero;
    /// each cached balance equals its postings; no account that may not go negative is negative.
    pub async fn verify_ledger(&self) -> Result<Vec<String>, DbErr> {
        let mut problems = Vec::new();
        let c = self.conn();
        for r in c
            .query_all_raw(self.stmt(
                "SELECT asset, CAST(SUM(amount) AS BIGINT) AS s FROM postings GROUP BY asset HAVING SUM(amount) <> 0",
                [],
            ))
            .await?
        {
            let (asset, s): (String, i64) = (r.try_get("", "asset")?, r.try_get("", "s")?);
            problems.push(format!("asset {asset}: postings sum to {s}, not 0"));
        }
        for r in c
            .query_all_raw(self.stmt(
                "SELECT e.id AS id, COUNT(p.id) AS n, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS s \
                 FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id GROUP BY e.id \
                 HAVING COUNT(p.id) < 2 OR COALESCE(SUM(p.amount), 0) <> 0",
                [],
            ))
            .await?
        {
            let (id, n, s): (String, i64, i64) = (r.try_get("", "id")?, r.try_get("", "n")?, r.try_get("", "s")?);
            problems.push(format!("entry {id}: {n} postings summing to {s}"));
        }
        // What each user's orders hold is exactly what their open orders say they hold.
        for r in c
            .query_all_raw(self.stmt(
                "SELECT COALESCE(a.owner_id, o.user_id) AS owner, COALESCE(a.asset, o.held_asset) AS asset, \
                 CAST(COALESCE(a.balance, 0) AS BIGINT) AS balance, CAST(COALESCE(o.held, 0) AS BIGINT) AS held \
                 FROM (SELECT owner_id, asset, balance FROM ledger_accounts WHERE kind = 'orders_hold') a \
                 FULL OUTER JOIN (SELECT user_id, held_asset, SUM(held) AS held FROM orders \
                 WHERE status = 'open' GROUP BY user_id, held_asset) o \
                 ON o.user_id = a.owner_id AND o.held_asset = a.asset \
                 WHERE COALESCE(a.balance, 0) <> COALESCE(o.held, 0)",
                [],
            ))
            .await?
        {
            let (owner, asset, balance, held): (String, String, i64, i64) = (
                r.try_get("", "owner")?,
                r.try_get("", "asset")?,
                r.try_get("", "balance")?,
                r.try_get("", "held")?,
            );
            problems.push(format!(
                "user {owner}: orders hold {balance} {asset}, open orders hold {held}"
            ));
        }
        // An entry over several assets (a trade) balances in each of them.
        for r in c
            .query_all_raw(self.stmt(
                "SELECT entry_id, asset, CAST(SUM(amount) AS BIGINT) AS s FROM postings \
                 GROUP BY entry_id, asset HAVING SUM(amount) <> 0",
                [],
            ))
            .await?
        {
            let (id, asset, s): (String, String, i64) = (
                r.try_get("", "entry_id")?,
                r.try_get("", "asset")?,
                r.try_get("", "s")?,
            );
            problems.push(format!("entry {id}: its {asset} postings sum to {s}"));
        }
        for r in c
            .query_all_raw(self.stmt(
                "SELECT p.id AS id FROM postings p JOIN ledger_accounts a ON a.id = p.account_id \
                 WHERE p.asset <> a.asset",
                [],
            ))
            .await?
        {
            let id: String = r.try_get("", "id")?;
            problems.push(format!("posting {id}: its asset is not its account's"));
        }
        for r in c
            .query_all_raw(self.stmt(
                "SELECT a.id AS id, a.balance AS balance, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS s \
                 FROM ledger_accounts a LEFT JOIN postings p ON p.account_id = a.id \
                 GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)",
                [],
            ))
            .await?
        {
            let (id, b, s): (String, i64, i64) = (r.try_get("", "id")?, r.try_get("", "balance")?, r.try_get("", "s")?);
            problems.push(format!("account {id}: cached balance {b} but postings sum to {s}"));
        }
        for r in c
            .query_all_raw(self.stmt(
                "SELECT id, balance FROM ledger_accounts WHERE allow_negative = FALSE AND balance < 0",
                [],
            ))
            .await?
        {
            let (id, b): (String, i64) = (r.try_get("", "id")?, r.try_get("", "balance")?);
            problems.push(format!("account {id}: negative balance {b}"));
        }
        // The id names the account's (owner, kind, asset); it is what keeps that triple unique.
        for r in c
            .query_all_raw(self.stmt(
                "SELECT id FROM ledger_accounts WHERE id <> kind || ':' || owner_id || ':' || asset",
                [],
            ))
            .await?
        {
            let id: String = r.try_get("", "id")?;
            problems.push(format!("account {id}: id does not match its owner, kind and asset"));
        }
        // Suspense holds exactly the open items staff have yet to resolve, per asset.
        for r in c
            .query_all_raw(self.stmt(
                "SELECT a.asset, a.balance, CAST(COALESCE((SELECT SUM(s.amount) FROM suspense_items s \
                 WHERE s.asset = a.asset AND s.status = 'open'), 0) AS BIGINT) AS open_sum \
                 FROM ledger_accounts a WHERE a.kind = 'suspense' \
                 AND a.balance <> COALESCE((SELECT SUM(s.amount) FROM suspense_items s \
                 WHERE s.asset = a.asset AND s.status = 'open'), 0)",
                [],
            ))
            .await?
        {
            let (asset, b, open): (String, i64, i64) = (
                r.try_get("", "asset")?,
                r.try_get("", "balance")?,
                r.try_get("", "open_sum")?,
            );
            problems.push(format!(
                "suspense::{asset}: balance {b} but open suspense items add up to {open}"
            ));
        }
        Ok(problems)
    }
}

/// A filtered history count stops here (see `count_transactions`).
pub const COUNT_CAP: i64 = 10_000;

/// Filters of a user's history. Times are Unix microseconds, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct TxFilter {
    pub kind: Option<String>,
    pub asset: Option<String>,
    pub status: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Position after which the next keyset page starts (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxCursor {
    pub created_at: i64,
    pub id: String,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct TxSummaryRow {
    pub kind: String,
    pub asset: String,
    pub direction: String,
    pub n: i64,
    pub total: i64,
}

impl FromQueryResult for TransactionRow {
    fn from_query_result(r: &sea_orm::QueryResult, _pre: &str) -> Result<Self, DbErr> {
        Ok(TransactionRow {
            id: r.try_get_by_index(0)?,
            user_id: r.try_get_by_index(1)?,
            kind: r.try_get_by_index(2)?,
            direction: r.try_get_by_index(3)?,
            asset: r.try_get_by_index(4)?,
            amount: r.try_get_by_index(5)?,
            fee: r.try_get_by_index(6)?,
            status: r.try_get_by_index(7)?,
            counterparty_id: r.try_get_by_index(8)?,
            note: r.try_get_by_index(9)?,
            entry_id: r.try_get_by_index(10)?,
            created_at: r.try_get_by_index(11)?,
            counterparty_username: r.try_get_by_index(12)?,
        })
    }
}

/// The column order `TransactionRow` decodes.
const TX_COLUMNS: &str = "t.id, t.user_id, t.type AS kind, t.direction, t.asset, t.amount, t.fee, \
    t.status, t.counterparty_id, t.note, t.entry_id, t.created_at, u.username AS counterparty_username";
/// What an export writes: the owner and the journal entry are left out, since each is one more
/// string to send and decode per row, and the names come from a per-export cache.
const TX_COLUMNS_EXPORT: &str = "t.id, '' AS user_id, t.type AS kind, t.direction, t.asset, t.amount, \
    t.fee, t.status, t.counterparty_id, t.note, NULL AS entry_id, t.created_at, NULL AS counterparty_username";

impl Db {
    fn tx_where(user_id: &str, f: &TxFilter) -> (String, Vec<sea_orm::Value>) {
        let mut clauses = vec!["t.user_id = $1".to_string()];
        let mut vals: Vec<sea_orm::Value> = vec![user_id.into()];
        let mut add = |sql: &str, v: sea_orm::Value, vals: &mut Vec<sea_orm::Value>| {
            vals.push(v);
            clauses.push(sql.replace('?', &format!("${}", vals.len())));
        };
        if let Some(k) = &f.kind {
            add("t.type = ?", k.clone().into(), &mut vals);
        }
        if let Some(a) = &f.asset {
            add("t.asset = ?", a.clone().into(), &mut vals);
        }
        if let Some(s) = &f.status {
            add("t.status = ?", s.clone().into(), &mut vals);
        }
        if let Some(from) = f.from {
            add("t.created_at >= ?", from.into(), &mut vals);
        }
        if let Some(to) = f.to {
            add("t.created_at < ?", to.into(), &mut vals);
        }
        (clauses.join(" AND "), vals)
    }

    /// How many transactions match: exact and O(1) without filters (a per-user counter kept by
    /// a trigger); with filters, exact up to `cap` matches and `(cap, false)` beyond, so a
    /// filtered count never scans a whole long history.
    pub async fn count_transactions(
        &self,
        user_id: &str,
        f: &TxFilter,
        cap: i64,
    ) -> Result<(i64, bool), DbErr> {
        if f.kind.is_none()
            && f.asset.is_none()
            && f.status.is_none()
            && f.from.is_none()
            && f.to.is_none()
        {
            let n = self
                .conn()
                .query_one_raw(self.stmt(
                    "SELECT CAST(COALESCE((SELECT n FROM transaction_counts WHERE user_id = $1), 0) \
                     + COALESCE((SELECT SUM(n) FROM transaction_count_deltas WHERE user_id = $1), 0) \
                     AS BIGINT)",
                    [user_id.into()],
                ))
                .await?
                .map(|r| r.try_get_by_index::<i64>(0))
                .transpose()?
                .unwrap_or(0);
            return Ok((n, true));
        }
        let (w, mut vals) = Self::tx_where(user_id, f);
        vals.push((cap + 1).into());
        let n = self
            .scalar_i64(
                &format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM transactions t WHERE {w} LIMIT ${}) x",
                    vals.len()
                ),
                vals,
            )
            .await?;
        Ok(if n > cap { (cap, false) } else { (n, true) })
    }

    /// A page of history, newest first: after `cursor` when given (keyset, any depth at the
    /// same cost), else at `skip`.
    pub async fn list_transactions(
        &self,
        user_id: &str,
        f: &TxFilter,
        cursor: Option<&TxCursor>,
        skip: i64,
        limit: i64,
    ) -> Result<Vec<TransactionRow>, DbErr> {
        self.tx_page(user_id, f, cursor, skip, limit, false).await
    }

    /// A page for an export: counterparties' usernames come from `names`, a cache the caller
    /// keeps across pages, filled with one lookup per page for the ids it lacks, instead of a
    /// join that looks a user up for every row of a long history.
    pub async fn export_page(
        &self,
        user_id: &str,
        f: &TxFilter,
        cursor: Option<&TxCursor>,
        limit: i64,
        names: &mut HashMap<String, Option<String>>,
    ) -> Result<Vec<TransactionRow>, DbErr> {
        let mut rows = self.tx_page(user_id, f, cursor, 0, limit, true).await?;
        let mut missing: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.counterparty_id.as_deref())
            .filter(|id| !names.contains_key(*id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            // Bounded memory whatever the number of counterparties.
            if names.len() + missing.len() > 10_000 {
                names.clear();
            }
            let list = in_list(1, missing.len());
            let found = self
                .conn()
                .query_all_raw(self.stmt(
                    &format!("SELECT id, username FROM users WHERE id IN ({list})"),
                    missing.iter().map(|id| (*id).into()),
                ))
                .await?;
            for id in &missing {
                names.insert((*id).to_string(), None);
            }
            for r in found {
                names.insert(r.try_get_by_index(0)?, Some(r.try_get_by_index(1)?));
            }
        }
        for r in &mut rows {
            if let Some(id) = &r.counterparty_id {
                r.counterparty_username = names.get(id).cloned().flatten();
            }
        }
        Ok(rows)
    }

    async fn tx_page(
        &self,
        user_id: &str,
        f: &TxFilter,
        cursor: Option<&TxCursor>,
        skip: i64,
        limit: i64,
        for_export: bool,
    ) -> Result<Vec<TransactionRow>, DbErr> {
        let (mut w, mut vals) = Self::tx_where(user_id, f);
        let mut offset = skip;
        if let Some(c) = cursor {
            vals.push(c.created_at.into());
            let a = vals.len();
            vals.push(c.id.clone().into());
            let b = vals.len();
            // A row value, so both databases seek the (user_id, created_at, id) index straight
            // to the cursor instead of filtering every newer row.
            w.push_str(&format!(" AND (t.created_at, t.id) < (${a}, ${b})"));
            offset = 0;
        }
        vals.push(limit.into());
        let l = vals.len();
        vals.push(offset.into());
        let o = vals.len();
        let (columns, join) = if for_export {
            (TX_COLUMNS_EXPORT, "")
        } else {
            (TX_COLUMNS, " LEFT JOIN users u ON u.id = t.counterparty_id")
        };
        let sql = format!(
            "SELECT {columns} FROM transactions t{join} \
             WHERE {w} ORDER BY t.created_at DESC, t.id DESC LIMIT ${l} OFFSET ${o}"
        );
        TransactionRow::find_by_statement(self.stmt(&sql, vals))
            .all(self.conn())
            .await
    }

    pub async fn transaction_of_user(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<TransactionRow>, DbErr> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM transactions t LEFT JOIN users u ON u.id = t.counterparty_id \
             WHERE t.user_id = $1 AND t.id = $2"
        );
        TransactionRow::find_by_statement(self.stmt(&sql, [user_id.into(), id.into()]))
            .one(self.conn())
            .await
    }

    pub async fn transaction_summary(
        &self,
        user_id: &str,
        f: &TxFilter,
    ) -> Result<Vec<TxSummaryRow>, DbErr> {
        let (w, vals) = Self::tx_where(user_id, f);
        let sql = format!(
            "SELECT t.type AS kind, t.asset AS asset, t.direction AS direction, COUNT(*) AS n, \
             CAST(SUM(t.amount) AS BIGINT) AS total FROM transactions t WHERE {w} \
             GROUP BY t.type, t.asset, t.direction ORDER BY t.type, t.asset, t.direction"
        );
        TxSummaryRow::find_by_statement(self.stmt(&sql, vals))
            .all(self.conn())
            .await
    }
}

/// (text, number) pairs as two-column rows.
fn pair_rows(pairs: &[(&str, i64)]) -> Rows {
    let mut rows = Rows::with_capacity(2, pairs.len());
    for (text, n) in pairs {
        rows.push([(*text).into(), (*n).into()]);
    }
    rows
}
