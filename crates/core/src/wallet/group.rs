//! Group commit of P2P transfers. Requests validate on their own and hand the transfer to a
//! lane; a lane takes every transfer waiting (up to `max_group`) and commits them in ONE
//! database transaction, answering each request only after that commit, so an acknowledged
//! transfer is durable and the database does one commit (one WAL flush) for the whole group.
//!
//! On SQLite the write transaction excludes other writers from its start, so the group reads
//! the balances and daily totals, applies the transfers in arrival order in memory (each
//! refused on its own if funds, the cap or the AML velocity rule do not allow it) and writes.
//! On PostgreSQL the group locks last: it reads without locks, decides, writes everything that
//! does not depend on the balances (entries, postings, history, notifications, audit), then
//! locks the accounts and cap rows in one global order, decides again on what they hold and,
//! if the same transfers pass, writes the conditional balance and cap updates whose row counts
//! are checked. If the decision changed, the group is redone locking first.

use std::collections::{BTreeMap, HashMap, HashSet};

use etx_db::ledger::{NewEntry, NewIdempotency, NewTransaction, Usage, account_id};
use etx_db::{Batch, DatabaseTransaction, Db, DbErr, DbKind};
use etx_domain::format_amount;
use etx_domain::{AccountKind, EntryKind, TxKind};
use tokio::sync::oneshot;

use crate::error::CoreError;
use crate::ledger::lanes::{Lanes, balances_of, distinct, taken_keys};
use crate::ledger::{Failure, Outcome};

/// One validated transfer, with everything its commit writes besides the money itself.
pub struct Planned {
    pub sender_id: String,
    pub recipient_id: String,
    pub asset: String,
    pub amount: i64,
    pub usd_cents: i64,
    pub entry_id: String,
    pub out_id: String,
    pub in_id: String,
    pub note: Option<String>,
    /// Idempotency: key, scope and request hash.
    pub key: String,
    pub scope: &'static str,
    pub request_hash: String,
    /// The transfer as answered; the answer adds the sender's balance after it, in `scale`.
    pub answer: super::TransferView,
    pub scale: u8,
    /// Inserts that go with the transfer (its notification and audit record).
    pub extra: Batch,
}

impl Planned {
    /// The (user, key) pair its idempotency record is stored under.
    fn idempotency(&self) -> (&str, &str) {
        (self.sender_id.as_str(), self.key.as_str())
    }
}

/// A committed transfer: the answer stored under its key, and both balances after it.
pub struct Posted {
    pub outcome: Outcome,
    pub sender_balance: i64,
    pub recipient_balance: i64,
}

/// How the group decided a transfer that was not refused.
pub enum Decided {
    Posted(Posted),
    /// Not moved: the sender already made this many operations (counted up to the limit) in
    /// the velocity window, so the transfer goes to review instead.
    Velocity(i64),
}

/// The AML velocity rule (`aml.max_operations_in_window`, 0 = off). It is decided here,
/// under the locks that serialise a sender's transfers and counting the transfers decided
/// earlier in the same group, because a count read before the commit lets parallel
/// requests all see the same old number.
#[derive(Debug, Clone, Copy)]
pub struct Velocity {
    pub max_operations: i64,
    pub window_micros: i64,
}

type Reply = oneshot::Sender<Result<Decided, Failure>>;

struct Job {
    plan: Planned,
    reply: Reply,
}

/// Why one transfer of a group was refused; the others go on.
enum Refusal {
    Insufficient,
    DailyCap,
    Overflow,
}

#[derive(Clone)]
pub struct GroupCommit {
    lanes: Lanes<Job>,
}

impl GroupCommit {
    /// Starts `lanes` committers (one on SQLite, whose writers queue on one lock anyway).
    /// They end when the last handle is dropped.
    pub fn start(
        db: Db,
        lanes: usize,
        max_group: usize,
        daily_cap_cents: i64,
        velocity: Velocity,
    ) -> Self {
        let lanes = if db.kind() == DbKind::Sqlite {
            1
        } else {
            lanes.max(1)
        };
        let lanes = Lanes::start(lanes, max_group, move |_, jobs: Vec<Job>| {
            let db = db.clone();
            async move {
                metrics::histogram!("etx_transfer_group_size").record(jobs.len() as f64);
                commit_group(&db, daily_cap_cents, velocity, jobs).await;
            }
        });
        GroupCommit { lanes }
    }

    /// Commits the transfer with whatever others are waiting; answers once it is durable.
    pub(crate) async fn submit(&self, plan: Planned) -> Result<Decided, Failure> {
        let (reply, answer) = oneshot::channel();
        let closed = || {
            Failure::Api(CoreError::Internal(anyhow::anyhow!(
                "transfer committer stopped"
            )))
        };
        if !self.lanes.send(Job { plan, reply }).await {
            return Err(closed());
        }
        answer.await.map_err(|_| closed())?
    }
}

/// Why a group attempt committed nothing and failed.
enum AttemptError {
    Db(DbErr),
    /// A concurrent write got in between: the transfers go again.
    Conflict(&'static str),
}

impl From<DbErr> for AttemptError {
    fn from(e: DbErr) -> Self {
        AttemptError::Db(e)
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Db(e) => e.fmt(f),
            AttemptError::Conflict(why) => f.write_str(why),
        }
    }
}

impl AttemptError {
    /// The failure one transfer of the group answers with.
    fn failure(&self) -> Failure {
        match self {
            AttemptError::Db(e) => Failure::Db(e.clone()),
            AttemptError::Conflict(why) => Failure::Conflict(why),
        }
    }
}

async fn commit_group(db: &Db, cap: i64, velocity: Velocity, jobs: Vec<Job>) {
    // A key sent twice in one group: the later request waits for the first one's outcome and
    // then answers as a replay (or goes again if the first was refused).
    let mut seen = HashSet::new();
    let (mut jobs, repeats): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| seen.insert((j.plan.sender_id.clone(), j.plan.key.clone())));
    let mut tries = 0;
    let mut optimistic = true;
    while !jobs.is_empty() {
        tries += 1;
        match attempt(db, cap, velocity, &jobs, optimistic).await {
            Ok(Attempt::Moved) => {
                metrics::counter!("etx_transfer_groups_redone_total").increment(1);
                tracing::debug!(
                    size = jobs.len(),
                    "balances moved under a transfer group; deciding it again under lock"
                );
                optimistic = false;
            }
            Ok(Attempt::Done(results)) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Ok(Attempt::KeysTaken(taken)) if tries < 5 => {
                let (gone, rest): (Vec<Job>, Vec<Job>) = jobs
                    .into_iter()
                    .partition(|j| taken.contains(&(j.plan.sender_id.clone(), j.plan.key.clone())));
                for job in gone {
                    let _ = job.reply.send(Err(Failure::KeyTaken));
                }
                jobs = rest;
            }
            Ok(Attempt::KeysTaken(_)) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(Failure::KeyTaken));
                }
            }
            Err(e) if jobs.len() > 1 => {
                // Whatever failed, one transfer must not take the others down with it:
                // each goes again on its own.
                tracing::warn!(error = %e, size = jobs.len(), "transfer group failed; committing its transfers one by one");
                for job in jobs.drain(..) {
                    Box::pin(commit_group(db, cap, velocity, vec![job])).await;
                }
            }
            Err(e) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.failure()));
                }
            }
        }
    }
    for job in repeats {
        let _ = job.reply.send(Err(Failure::KeyTaken));
    }
}

enum Attempt {
    /// Committed (or nothing to commit): one result per job, in order.
    Done(Vec<Result<Decided, Failure>>),
    /// Nothing committed: these (user, key) pairs were stored by other requests meanwhile.
    KeysTaken(HashSet<(String, String)>),
    /// Nothing committed: balances or daily totals changed between the first read and the
    /// lock so that the group would be decided differently. It goes again, locking first.
    Moved,
}

struct Accepted {
    index: usize,
    response: String,
    sender_balance: i64,
    recipient_balance: i64,
}

/// A group's transfers and the rows they touch.
struct Group<'a> {
    jobs: &'a [Job],
    from_ids: &'a [String],
    to_ids: &'a [String],
    taken: HashSet<(String, String)>,
    cap: i64,
    max_operations: i64,
}

/// What the group does given the balances and daily totals: one result per job (`None` for
/// an accepted one), the accepted transfers with their answers, the net change per account
/// and the cents added per sender, both in id order.
struct Decision<'a> {
    results: Vec<Option<Result<Decided, Failure>>>,
    accepted: Vec<Accepted>,
    deltas: Vec<(&'a str, i64)>,
    adds: Vec<(&'a str, i64)>,
}

impl Decision<'_> {
    fn accepted_indices(&self) -> Vec<usize> {
        self.accepted.iter().map(|a| a.index).collect()
    }

    /// The answers when nothing was accepted.
    fn refused(self) -> Vec<Result<Decided, Failure>> {
        self.results
            .into_iter()
            .map(|r| r.expect("refused"))
            .collect()
    }
}

/// Applies the transfers in arrival order in memory, each refused on its own when funds,
/// the daily cap or the recipient's balance do not allow it, or sent to review when the
/// sender's operations in the velocity window (`ops`, committed ones) reach the limit.
fn decide<'a>(
    g: &Group<'a>,
    mut balances: HashMap<String, i64>,
    mut used: HashMap<String, i64>,
    mut ops: HashMap<String, i64>,
) -> Decision<'a> {
    let mut results: Vec<Option<Result<Decided, Failure>>> = Vec::with_capacity(g.jobs.len());
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    let mut adds: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, job) in g.jobs.iter().enumerate() {
        let p = &job.plan;
        if g.taken.contains(&(p.sender_id.clone(), p.key.clone())) {
            results.push(Some(Err(Failure::KeyTaken)));
            continue;
        }
        if g.max_operations > 0 {
            let n = ops.entry(p.sender_id.clone()).or_default();
            if *n >= g.max_operations {
                // A held transfer is an operation too: later ones in the group count it.
                results.push(Some(Ok(Decided::Velocity(*n))));
                *n += 1;
                continue;
            }
        }
        let (from, to) = (g.from_ids[i].as_str(), g.to_ids[i].as_str());
        let refusal = (|| {
            let have = balances.get(from).copied().unwrap_or(0);
            let after = have
                .checked_sub(p.amount)
                .filter(|b| *b >= 0)
                .ok_or(Refusal::Insufficient)?;
            let spent = used.get(p.sender_id.as_str()).copied().unwrap_or(0);
            let spent = spent
                .checked_add(p.usd_cents)
                .filter(|s| *s <= g.cap)
                .ok_or(Refusal::DailyCap)?;
            let credited = balances
                .get(to)
                .copied()
                .unwrap_or(0)
                .checked_add(p.amount)
                .ok_or(Refusal::Overflow)?;
            Ok((after, spent, credited))
        })();
        match refusal {
            Err(r) => results.push(Some(Err(Failure::Api(refusal_error(r, g.cap))))),
            Ok((after, spent, credited)) => {
                balances.insert(from.to_string(), after);
                balances.insert(to.to_string(), credited);
                used.insert(p.sender_id.clone(), spent);
                if g.max_operations > 0 {
                    *ops.entry(p.sender_id.clone()).or_default() += 1;
                }
                *deltas.entry(from).or_default() -= p.amount;
                *deltas.entry(to).or_default() += p.amount;
                *adds.entry(p.sender_id.as_str()).or_default() += p.usd_cents;
                let answer = super::TransferCreated {
                    transfer: p.answer.clone(),
                    balance: format_amount(after, p.scale),
                };
                accepted.push(Accepted {
                    index: i,
                    response: serde_json::to_string(&answer).expect("a transfer view serializes"),
                    sender_balance: after,
                    recipient_balance: credited,
                });
                results.push(None);
            }
        }
    }
    Decision {
        results,
        accepted,
        deltas: deltas.into_iter().filter(|(_, d)| *d != 0).collect(),
        adds: adds.into_iter().collect(),
    }
}

/// One try at committing the group. With `optimistic` (PostgreSQL only; SQLite's write
/// transaction excludes other writers from the start) the balances and daily totals are read
/// without locks, everything that does not depend on them (entries, postings, history,
/// notifications, audit records) is written, and only then are the rows locked, the
/// decisions checked against what they hold now and the balances changed: the locks are held
/// for that last statement and the commit, so lanes whose groups share accounts overlap most
/// of their work instead of queueing for all of it.
async fn attempt(
    db: &Db,
    cap: i64,
    velocity: Velocity,
    jobs: &[Job],
    optimistic: bool,
) -> Result<Attempt, AttemptError> {
    let optimistic = optimistic && db.kind() == DbKind::Postgres;
    let tx = db.begin_write().await?;
    let day = chrono::Utc::now().timestamp().div_euclid(86_400);
    let wallet = |owner: &str, j: &Job| account_id(owner, AccountKind::Wallet, &j.plan.asset);
    let from_ids: Vec<String> = jobs.iter().map(|j| wallet(&j.plan.sender_id, j)).collect();
    let to_ids: Vec<String> = jobs
        .iter()
        .map(|j| wallet(&j.plan.recipient_id, j))
        .collect();
    let ids = distinct(from_ids.iter().chain(&to_ids).map(String::as_str));
    let senders = distinct(jobs.iter().map(|j| j.plan.sender_id.as_str()));

    let balances = first_balances(db, &tx, jobs, &to_ids, &ids, optimistic).await?;
    let used = usage_of(db, &tx, day, &senders, !optimistic).await?;
    // Keys committed before this group (a replay racing its first request) are answered from
    // their stored record; checked once here so that they do not make the group roll back.
    let pairs: Vec<(&str, &str)> = jobs.iter().map(|j| j.plan.idempotency()).collect();
    let group = Group {
        jobs,
        from_ids: &from_ids,
        to_ids: &to_ids,
        taken: taken_keys(db, &tx, &pairs).await?,
        cap,
        max_operations: velocity.max_operations,
    };
    // Read after the locks above (except on PostgreSQL's optimistic pass, which reads again
    // under them below), so a sender's committed operations are all counted.
    let ops = operations(db, &tx, velocity, &senders).await?;
    let first = decide(&group, balances, used, ops);
    if first.accepted.is_empty() {
        tx.rollback().await?;
        return Ok(Attempt::Done(first.refused()));
    }

    let now = etx_db::now_micros();
    db.run_batch_counts(&tx, history(&group, &first.accepted, now))
        .await?;
    let decision = if optimistic {
        let balances = balances_of(db, &tx, &ids, true).await?;
        let used = usage_of(db, &tx, day, &senders, true).await?;
        let ops = operations(db, &tx, velocity, &senders).await?;
        let locked = decide(&group, balances, used, ops);
        if locked.accepted_indices() != first.accepted_indices() {
            tx.rollback().await?;
            return Ok(Attempt::Moved);
        }
        locked
    } else {
        first
    };
    settle(db, tx, jobs, decision, day, cap, now).await
}

/// The balances of the group's accounts, opening the recipients' accounts that do not exist
/// yet. On SQLite and when locking first on PostgreSQL they are read under lock.
async fn first_balances(
    db: &Db,
    tx: &DatabaseTransaction,
    jobs: &[Job],
    to_ids: &[String],
    ids: &[&str],
    optimistic: bool,
) -> Result<HashMap<String, i64>, DbErr> {
    // On PostgreSQL the first read never locks, so that missing accounts are opened before
    // any row is locked: a group locking first must not wait on another group's new account
    // while holding accounts that group waits for.
    let pg = db.kind() == DbKind::Postgres;
    let mut balances = balances_of(db, tx, ids, !pg).await?;
    // A recipient's first credit of an asset opens the account.
    let mut missing: Vec<(&str, &str, &str, &str)> = jobs
        .iter()
        .zip(to_ids)
        .filter(|(_, id)| !balances.contains_key(id.as_str()))
        .map(|(j, id)| {
            let p = &j.plan;
            (
                id.as_str(),
                p.recipient_id.as_str(),
                "wallet",
                p.asset.as_str(),
            )
        })
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        db.open_accounts(tx, &missing).await?;
        let new: Vec<&str> = missing.iter().map(|m| m.0).collect();
        balances.extend(balances_of(db, tx, &new, !pg).await?);
    }
    if pg && !optimistic {
        balances = balances_of(db, tx, ids, true).await?;
    }
    Ok(balances)
}

async fn usage_of(
    db: &Db,
    tx: &DatabaseTransaction,
    day: i64,
    senders: &[&str],
    lock: bool,
) -> Result<HashMap<String, i64>, DbErr> {
    let rows = db.usage(tx, Usage::Transfers, day, senders, lock).await?;
    Ok(rows.into_iter().collect())
}

/// What the accepted transfers write whatever the balances hold: journal entries with their
/// postings, both sides' history rows, and each transfer's notification and audit record.
fn history(group: &Group<'_>, accepted: &[Accepted], now: i64) -> Batch {
    let mut inserts = Batch::default();
    let mut entries = Batch::default();
    let mut rows: Vec<NewTransaction<'_>> = Vec::with_capacity(accepted.len() * 2);
    for a in accepted {
        let p = &group.jobs[a.index].plan;
        let (from, to) = (
            group.from_ids[a.index].as_str(),
            group.to_ids[a.index].as_str(),
        );
        let mut legs = [(from, -p.amount), (to, p.amount)];
        legs.sort_unstable();
        Db::queue_entry(
            &mut entries,
            &NewEntry {
                id: &p.entry_id,
                kind: EntryKind::P2p,
                asset: &p.asset,
                memo: p.note.as_deref(),
                created_by: Some(&p.sender_id),
                legs: Vec::new(),
            },
            &legs,
            now,
        );
        let side = |id, user, direction, other| NewTransaction {
            id,
            user_id: user,
            kind: TxKind::P2p,
            direction,
            asset: &p.asset,
            amount: p.amount,
            fee: 0,
            status: "completed",
            counterparty_id: Some(other),
            note: p.note.as_deref(),
            entry_id: Some(&p.entry_id),
            usd_value: Some(p.usd_cents),
        };
        rows.push(side(&p.out_id, &p.sender_id, "out", &p.recipient_id));
        rows.push(side(&p.in_id, &p.recipient_id, "in", &p.sender_id));
    }
    inserts.append(entries.merge_inserts());
    Db::insert_transactions(&mut inserts, &mut rows);
    let mut extra = Batch::default();
    for a in accepted {
        extra.append(group.jobs[a.index].plan.extra.clone());
    }
    inserts.append(extra.merge_inserts());
    inserts
}

/// Writes the decided balance and daily-total changes and the idempotency records, checks
/// that each statement changed the rows it had to, and commits.
async fn settle(
    db: &Db,
    tx: DatabaseTransaction,
    jobs: &[Job],
    decision: Decision<'_>,
    day: i64,
    cap: i64,
    now: i64,
) -> Result<Attempt, AttemptError> {
    let Decision {
        mut results,
        accepted,
        deltas,
        adds,
    } = decision;
    let mut batch = Batch::default();
    if !deltas.is_empty() {
        Db::queue_balance_changes(&mut batch, &deltas, now);
    }
    Db::queue_usage(&mut batch, Usage::Transfers, day, cap, &adds);
    let records: Vec<NewIdempotency<'_>> = accepted
        .iter()
        .map(|a| {
            let p = &jobs[a.index].plan;
            NewIdempotency {
                user_id: &p.sender_id,
                key: &p.key,
                scope: p.scope,
                request_hash: &p.request_hash,
                status: crate::ledger::Taken::Completed.code(),
                response: &a.response,
            }
        })
        .collect();
    Db::queue_idempotency(&mut batch, &records, now);
    let counts = db.run_batch_counts(&tx, batch).await?;
    let stored = counts.last().copied().unwrap_or(0);
    if stored != accepted.len() as u64 {
        tx.rollback().await?;
        let pairs: Vec<(&str, &str)> = accepted
            .iter()
            .map(|a| jobs[a.index].plan.idempotency())
            .collect();
        let taken = taken_keys(db, db.conn(), &pairs).await?;
        if taken.is_empty() {
            return Err(AttemptError::Conflict("idempotency key vanished"));
        }
        return Ok(Attempt::KeysTaken(taken));
    }
    let changed = if deltas.is_empty() { 0 } else { counts[0] };
    let usage_changed = counts[usize::from(!deltas.is_empty())];
    if changed != deltas.len() as u64 || usage_changed != adds.len() as u64 {
        // The rows are locked, so this means another writer broke the lock order.
        tx.rollback().await?;
        return Err(AttemptError::Conflict(
            "a locked balance or daily total changed under the group",
        ));
    }
    tx.commit().await?;
    for a in accepted {
        results[a.index] = Some(Ok(Decided::Posted(Posted {
            outcome: Outcome {
                status: crate::ledger::Taken::Completed,
                body: a.response,
                replayed: false,
            },
            sender_balance: a.sender_balance,
            recipient_balance: a.recipient_balance,
        })));
    }
    Ok(Attempt::Done(
        results
            .into_iter()
            .map(|r| r.expect("every job answered"))
            .collect(),
    ))
}

/// Each sender's committed operations in the velocity window, up to the limit; empty when
/// the rule is off.
async fn operations(
    db: &Db,
    tx: &DatabaseTransaction,
    velocity: Velocity,
    senders: &[&str],
) -> Result<HashMap<String, i64>, DbErr> {
    if velocity.max_operations == 0 {
        return Ok(HashMap::new());
    }
    let since = etx_db::now_micros() - velocity.window_micros;
    Ok(db
        .operations_since(tx, senders, since, velocity.max_operations)
        .await?
        .into_iter()
        .collect())
}

fn refusal_error(r: Refusal, cap: i64) -> CoreError {
    match r {
        Refusal::Insufficient => CoreError::InsufficientFunds,
        Refusal::DailyCap => CoreError::LimitExceeded(format!(
            "this transfer would pass your daily limit of ${}",
            format_amount(cap, 2)
        )),
        Refusal::Overflow => CoreError::field("amount", "is too large for the recipient's balance"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sender: &str, recipient: &str, amount: i64, usd_cents: i64, key: &str) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            plan: Planned {
                sender_id: sender.into(),
                recipient_id: recipient.into(),
                asset: "USD".into(),
                amount,
                usd_cents,
                entry_id: format!("e-{key}"),
                out_id: format!("o-{key}"),
                in_id: format!("i-{key}"),
                note: None,
                key: key.into(),
                scope: "p2p",
                request_hash: String::new(),
                answer: crate::wallet::TransferView {
                    id: key.into(),
                    entry_id: None,
                    sender: crate::wallet::TransferParty {
                        id: sender.into(),
                        username: sender.into(),
                    },
                    recipient: crate::wallet::TransferParty {
                        id: recipient.into(),
                        username: recipient.into(),
                    },
                    amount: format_amount(amount, 2),
                    currency: "USD".into(),
                    note: None,
                    status: "completed".into(),
                    review: None,
                    created_at: String::new(),
                },
                scale: 2,
                extra: Batch::default(),
            },
            reply,
        }
    }

    /// Decides `jobs` with each user's wallet holding `balances` and nothing spent today.
    fn decide_with(
        jobs: &[Job],
        balances: &[(&str, i64)],
        cap: i64,
        max_operations: i64,
        taken: &[(&str, &str)],
    ) -> Vec<String> {
        let from: Vec<String> = jobs
            .iter()
            .map(|j| account_id(&j.plan.sender_id, AccountKind::Wallet, "USD"))
            .collect();
        let to: Vec<String> = jobs
            .iter()
            .map(|j| account_id(&j.plan.recipient_id, AccountKind::Wallet, "USD"))
            .collect();
        let g = Group {
            jobs,
            from_ids: &from,
            to_ids: &to,
            taken: taken
                .iter()
                .map(|(u, k)| (u.to_string(), k.to_string()))
                .collect(),
            cap,
            max_operations,
        };
        let balances = balances
            .iter()
            .map(|(u, b)| (account_id(u, AccountKind::Wallet, "USD"), *b))
            .collect();
        let d = decide(&g, balances, HashMap::new(), HashMap::new());
        let net: i64 = d.deltas.iter().map(|(_, v)| v).sum();
        assert_eq!(net, 0, "a group's balance changes must cancel out");
        d.results
            .iter()
            .zip(jobs)
            .map(|(r, j)| match r {
                None => {
                    let a = d
                        .accepted
                        .iter()
                        .find(|a| jobs[a.index].plan.key == j.plan.key);
                    format!("sent, balance {}", a.unwrap().sender_balance)
                }
                Some(Ok(Decided::Velocity(n))) => format!("review after {n}"),
                Some(Ok(Decided::Posted(_))) => "posted".into(),
                Some(Err(Failure::KeyTaken)) => "key taken".into(),
                Some(Err(Failure::Api(e))) => e.to_string(),
                Some(Err(_)) => "other".into(),
            })
            .collect()
    }

    #[test]
    fn transfers_apply_in_arrival_order_each_refused_on_its_own() {
        let jobs = [
            job("alice", "bob", 600, 600, "1"),
            job("alice", "bob", 600, 600, "2"),
            job("bob", "carol", 1_000, 1_000, "3"),
            job("alice", "carol", 400, 400, "4"),
        ];
        let got = decide_with(&jobs, &[("alice", 1_000), ("bob", 500)], 1_000_000, 0, &[]);
        assert_eq!(
            got,
            [
                "sent, balance 400",
                "insufficient funds",
                // Bob has 500 of his own and 600 from the first transfer of this group.
                "sent, balance 100",
                "sent, balance 0",
            ]
        );
    }

    #[test]
    fn the_daily_cap_counts_earlier_transfers_of_the_group() {
        let jobs = [
            job("alice", "bob", 700, 700, "1"),
            job("alice", "bob", 400, 400, "2"),
            job("alice", "bob", 300, 300, "3"),
        ];
        let got = decide_with(&jobs, &[("alice", 10_000)], 1_000, 0, &[]);
        assert_eq!(got[0], "sent, balance 9300");
        assert!(got[1].contains("daily limit of $10.00"), "{}", got[1]);
        assert_eq!(got[2], "sent, balance 9000");
    }

    #[test]
    fn past_the_velocity_limit_transfers_go_to_review_and_count_too() {
        let jobs = [
            job("alice", "bob", 100, 100, "1"),
            job("alice", "bob", 100, 100, "2"),
            job("alice", "bob", 100, 100, "3"),
            job("carol", "bob", 100, 100, "4"),
        ];
        let got = decide_with(
            &jobs,
            &[("alice", 1_000), ("carol", 100)],
            1_000_000,
            1,
            &[],
        );
        assert_eq!(
            got,
            [
                "sent, balance 900",
                "review after 1",
                "review after 2",
                "sent, balance 0"
            ]
        );
    }

    #[test]
    fn keys_stored_meanwhile_are_skipped_and_overflow_is_refused() {
        let jobs = [
            job("alice", "bob", 100, 100, "1"),
            job("alice", "bob", 100, 100, "2"),
        ];
        let got = decide_with(&jobs, &[("alice", 1_000)], 1_000_000, 0, &[("alice", "1")]);
        assert_eq!(got, ["key taken", "sent, balance 900"]);

        let jobs = [job("alice", "bob", 10, 10, "1")];
        let got = decide_with(
            &jobs,
            &[("alice", 10), ("bob", i64::MAX)],
            1_000_000,
            0,
            &[],
        );
        assert!(got[0].contains("too large"), "{}", got[0]);
    }
}
