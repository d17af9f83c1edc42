//! The audit trail: append-only, hash-chained records of every state-changing action.
//!
//! Writers add a record to `audit_outbox` inside the transaction of the action itself. The
//! chainer (`chain_audit`) moves pending records into `audit_log` in id order, under the lock of
//! the single `audit_head` row: each gets the next `seq` and
//! `hash = HMAC-SHA256(key, [prev_hash, fields])`, the key derived from the server secret.
//! Editing, deleting or reordering a chained record breaks the links, which `verify_audit`
//! reports; deleting the newest records is caught by comparing with `audit_head`. Keyed, a
//! consistent rewrite of the whole chain needs the secret as well as write access. Records
//! chained by versions before keying keep their plain SHA-256 links; `audit_head.keyed_from`
//! says where keying began and carries its own MAC.

use crate::sql::Insert;
use crate::{Batch, Db, now_micros};
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use sha2::{Digest, Sha256};

pub struct NewAudit<'a> {
    pub actor_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// A JSON object: reason, before/after and whatever else the action needs to explain.
    pub details: &'a str,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct AuditRow {
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    pub actor_username: Option<String>,
}

#[derive(FromQueryResult)]
struct PendingRow {
    id: String,
    at: i64,
    actor_id: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: String,
}

/// Filters of the audit log; times are Unix microseconds, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The link of one record: every field in a fixed order, as a JSON array so no two different
/// records can serialise alike.
#[allow(clippy::too_many_arguments)]
fn link_hash(
    key: Option<&[u8; 32]>,
    prev: &str,
    seq: i64,
    id: &str,
    at: i64,
    actor_id: Option<&str>,
    action: &str,
    target_type: Option<&str>,
    target_id: Option<&str>,
    ip: Option<&str>,
    user_agent: Option<&str>,
    request_id: Option<&str>,
    details: &str,
) -> String {
    let canonical = serde_json::json!([
        prev,
        seq,
        id,
        at,
        actor_id,
        action,
        target_type,
        target_id,
        ip,
        user_agent,
        request_id,
        details
    ])
    .to_string();
    match key {
        Some(k) => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(k).expect("any key length");
            mac.update(canonical.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        None => hex::encode(Sha256::digest(canonical.as_bytes())),
    }
}

/// Links pending records after (`seq`, `prev`): the values of their `audit_log` rows, their
/// outbox ids, and the new head.
fn link(
    pending: &[PendingRow],
    key: Option<&[u8; 32]>,
    mut seq: i64,
    mut prev: String,
) -> (Vec<sea_orm::Value>, Vec<sea_orm::Value>, i64, String) {
    let mut rows: Vec<sea_orm::Value> = Vec::with_capacity(pending.len() * 13);
    let mut ids: Vec<sea_orm::Value> = Vec::with_capacity(pending.len());
    for p in pending {
        seq += 1;
        let hash = link_hash(
            key,
            &prev,
            seq,
            &p.id,
            p.at,
            p.actor_id.as_deref(),
            &p.action,
            p.target_type.as_deref(),
            p.target_id.as_deref(),
            p.ip.as_deref(),
            p.user_agent.as_deref(),
            p.request_id.as_deref(),
            &p.details,
        );
        rows.extend([
            seq.into(),
            p.id.clone().into(),
            p.at.into(),
            p.actor_id.clone().into(),
            p.action.clone().into(),
            p.target_type.clone().into(),
            p.target_id.clone().into(),
            p.ip.clone().into(),
            p.user_agent.clone().into(),
            p.request_id.clone().into(),
            p.details.clone().into(),
            prev.clone().into(),
            hash.clone().into(),
        ]);
        ids.push(p.id.clone().into());
        prev = hash;
    }
    (rows, ids, seq, prev)
}

/// The MAC that pins where keying began: moving `keyed_from` needs the key too.
fn key_check(key: &[u8; 32], keyed_from: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(format!("audit chain keyed from {keyed_from}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn row_hash(key: Option<&[u8; 32]>, r: &AuditRow, prev: &str) -> String {
    link_hash(
        key,
        prev,
        r.seq,
        &r.id,
        r.at,
        r.actor_id.as_deref(),
        &r.action,
        r.target_type.as_deref(),
        r.target_id.as_deref(),
        r.ip.as_deref(),
        r.user_agent.as_deref(),
        r.request_id.as_deref(),
        &r.details,
    )
}

const CHAIN_BATCH: i64 = 500;
const AUDIT_COLUMNS: &str = "a.seq, a.id, a.at, a.actor_id, a.action, a.target_type, a.target_id, \
    a.ip, a.user_agent, a.request_id, a.details, a.prev_hash, a.hash, u.username AS actor_username";

impl Db {
    /// Queues an action's record on the batch of the action's own transaction, so both commit
    /// or neither does.
    pub fn queue_audit(batch: &mut Batch, a: NewAudit<'_>) {
        batch.push(
            Insert::new(
                "audit_outbox",
                &[
                    "id",
                    "at",
                    "actor_id",
                    "action",
                    "target_type",
                    "target_id",
                    "ip",
                    "user_agent",
                    "request_id",
                    "details",
                ],
            )
            .row([
                uuid::Uuid::now_v7().to_string().into(),
                now_micros().into(),
                a.actor_id.map(str::to_string).into(),
                a.action.into(),
                a.target_type.map(str::to_string).into(),
                a.target_id.map(str::to_string).into(),
                a.ip.map(str::to_string).into(),
                a.user_agent.map(str::to_string).into(),
                a.request_id.map(str::to_string).into(),
                a.details.into(),
            ]),
        );
    }

    /// Chains up to one batch of pending records; returns how many. Safe to run from several
    /// instances at once: the head row serialises them.
    pub async fn chain_audit(&self) -> Result<usize, DbErr> {
        // A plain read first, so an idle server does not write every time it looks.
        if self.pending_audit().await? == 0 {
            return Ok(0);
        }
        let tx = self.begin_write().await?;
        let (seq, prev, key) = self.lock_audit_head(&tx).await?;
        let pending = PendingRow::find_by_statement(self.stmt(
            "SELECT id, at, actor_id, action, target_type, target_id, ip, user_agent, request_id, \
             details FROM audit_outbox ORDER BY id LIMIT $1",
            [CHAIN_BATCH.into()],
        ))
        .all(&tx)
        .await?;
        if pending.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let (rows, ids, seq, prev) = link(&pending, key, seq, prev);
        // One multi-row insert and one delete per batch: the chainer's cost stays small next
        // to the writes it follows.
        tx.execute_raw(self.stmt(
            &format!(
                "INSERT INTO audit_log (seq, id, at, actor_id, action, target_type, target_id, ip, \
                 user_agent, request_id, details, prev_hash, hash) VALUES {}",
                crate::ledger::placeholders(pending.len(), 13)
            ),
            rows,
        ))
        .await?;
        let list = crate::ledger::in_list(1, ids.len());
        tx.execute_raw(self.stmt(
            &format!("DELETE FROM audit_outbox WHERE id IN ({list})"),
            ids,
        ))
        .await?;
        tx.execute_raw(self.stmt(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            [seq.into(), prev.into()],
        ))
        .await?;
        tx.commit().await?;
        Ok(pending.len())
    }

    /// Locks the chain's head (PostgreSQL row lock; SQLite's write lock is already held) and
    /// answers its sequence number, its hash and the key new links are made with, if any.
    async fn lock_audit_head(
        &self,
        tx: &sea_orm::DatabaseTransaction,
    ) -> Result<(i64, String, Option<&[u8; 32]>), DbErr> {
        let head = tx
            .query_one_raw(self.stmt(
                "UPDATE audit_head SET updated_at = $1 WHERE id = 1 \
                 RETURNING seq, hash, keyed_from",
                [now_micros().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
        let (seq, prev): (i64, String) = (head.try_get_by_index(0)?, head.try_get_by_index(1)?);
        let mut keyed_from: Option<i64> = head.try_get_by_index(2)?;
        // The first chaining with a key marks where keyed records begin (1 on a new database;
        // after the records of an older version otherwise).
        if let (Some(key), None) = (self.audit_key.as_deref(), keyed_from) {
            tx.execute_raw(self.stmt(
                "UPDATE audit_head SET keyed_from = $1, key_check = $2 WHERE id = 1",
                [(seq + 1).into(), key_check(key, seq + 1).into()],
            ))
            .await?;
            keyed_from = Some(seq + 1);
        }
        let key = self.audit_key.as_deref().filter(|_| keyed_from.is_some());
        Ok((seq, prev, key))
    }

    /// Chains everything pending.
    pub async fn chain_all_audit(&self) -> Result<usize, DbErr> {
        let mut total = 0;
        loop {
            let n = self.chain_audit().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    fn audit_where(f: &AuditFilter) -> (String, Vec<sea_orm::Value>) {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut vals: Vec<sea_orm::Value> = Vec::new();
        let mut add = |sql: &str, v: sea_orm::Value| {
            vals.push(v);
            clauses.push(sql.replace('?', &format!("${}", vals.len())));
        };
        if let Some(a) = &f.actor_id {
            add("a.actor_id = ?", a.clone().into());
        }
        if let Some(a) = &f.action {
            add("a.action = ?", a.clone().into());
        }
        if let Some(t) = &f.target_id {
            add("a.target_id = ?", t.clone().into());
        }
        if let Some(from) = f.from {
            add("a.at >= ?", from.into());
        }
        if let Some(to) = f.to {
            add("a.at < ?", to.into());
        }
        (clauses.join(" AND "), vals)
    }

    /// Chained records, newest first.
    pub async fn list_audit(
        &self,
        f: &AuditFilter,
        skip: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRow>, i64), DbErr> {
        let (w, mut vals) = Self::audit_where(f);
        let total = self
            .scalar_i64(
                &format!("SELECT COUNT(*) FROM audit_log a WHERE {w}"),
                vals.clone(),
            )
            .await?;
        vals.push(limit.into());
        vals.push(skip.into());
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id \
             WHERE {w} ORDER BY a.seq DESC LIMIT ${} OFFSET ${}",
            vals.len() - 1,
            vals.len()
        );
        let rows = AuditRow::find_by_statement(self.stmt(&sql, vals))
            .all(self.conn())
            .await?;
        Ok((rows, total))
    }

    /// Records written but not chained yet.
    pub async fn pending_audit(&self) -> Result<i64, DbErr> {
        self.scalar_i64("SELECT COUNT(*) FROM audit_outbox", vec![])
            .await
    }

    /// Walks the whole chain and describes every break found (empty: intact), plus the number
    /// of records checked.
    pub async fn verify_audit(&self) -> Result<(Vec<String>, i64), DbErr> {
        loop {
            let mark = self.audit_keying_mark().await?;
            let found = self.walk_audit(mark.clone()).await?;
            // The first chaining with a key sets the mark, once; a walk that began before a
            // running server set it took the records keyed since for edited ones.
            if mark.0.is_none()
                && self.audit_key.is_some()
                && self.audit_keying_mark().await?.0.is_some()
            {
                continue;
            }
            return Ok(found);
        }
    }

    /// Where keyed records begin, and its check value.
    async fn audit_keying_mark(&self) -> Result<(Option<i64>, Option<String>), DbErr> {
        let keyed = self
            .conn()
            .query_one_raw(self.stmt(
                "SELECT keyed_from, key_check FROM audit_head WHERE id = 1",
                [],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
        Ok((keyed.try_get_by_index(0)?, keyed.try_get_by_index(1)?))
    }

    async fn walk_audit(
        &self,
        (keyed_from, check): (Option<i64>, Option<String>),
    ) -> Result<(Vec<String>, i64), DbErr> {
        let mut problems = Vec::new();
        let key = self.audit_key.as_deref();
        let keyed_from = match (key, keyed_from, check) {
            (Some(k), Some(from), Some(c)) => {
                if key_check(k, from) != c {
                    problems.push(format!(
                        "the chain's keying mark (keyed from sequence {from}) does not match this \
                         server's key: moved, or the server secret changed"
                    ));
                }
                from
            }
            (Some(_), None, _) => i64::MAX,
            (Some(_), Some(from), None) => {
                problems.push(format!(
                    "the chain's keying mark (keyed from sequence {from}) has no check value"
                ));
                from
            }
            (None, _, _) => i64::MAX,
        };
        let before_head = self.audit_head().await?;
        let mut prev = String::new();
        let mut expected_seq = 1i64;
        let mut checked = 0i64;
        let mut after = 0i64;
        loop {
            let page = AuditRow::find_by_statement(self.stmt(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id \
                     WHERE a.seq > $1 ORDER BY a.seq LIMIT 1000"
                ),
                [after.into()],
            ))
            .all(self.conn())
            .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                checked += 1;
                if r.seq != expected_seq {
                    problems.push(format!(
                        "record {} ({}): sequence {} where {} was expected (records missing or reordered)",
                        r.id, r.action, r.seq, expected_seq
                    ));
                }
                if r.prev_hash != prev {
                    problems.push(format!(
                        "record {} (seq {}, {}): does not link to the record before it",
                        r.id, r.seq, r.action
                    ));
                }
                let k = key.filter(|_| r.seq >= keyed_from);
                if row_hash(k, r, &r.prev_hash) != r.hash {
                    problems.push(format!(
                        "record {} (seq {}, {}): contents do not match its hash (edited)",
                        r.id, r.seq, r.action
                    ));
                }
                prev = r.hash.clone();
                expected_seq = r.seq + 1;
            }
        }
        // A running server may chain more records while the walk goes on, so the end the walk
        // found is checked against the head as it was before the walk and as it is after it.
        let (last, after_head) = (expected_seq - 1, self.audit_head().await?);
        if last < before_head.0 || (last == before_head.0 && prev != before_head.1) {
            problems.push(format!(
                "the chain ends at sequence {last} but {} records were chained (records cut from the end)",
                before_head.0
            ));
        } else if last > after_head.0 || (last == after_head.0 && prev != after_head.1) {
            problems.push(format!(
                "the chain ends at sequence {last} but only {} records were chained (records \
                 added after the head)",
                after_head.0
            ));
        }
        Ok((problems, checked))
    }

    async fn audit_head(&self) -> Result<(i64, String), DbErr> {
        let head = self
            .conn()
            .query_one_raw(self.stmt("SELECT seq, hash FROM audit_head WHERE id = 1", []))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
        Ok((head.try_get_by_index(0)?, head.try_get_by_index(1)?))
    }
}
