//! Group commit of market orders, as P2P transfers have (`wallet::group`): each request
//! prices and checks its order, builds everything the order writes whatever the balances
//! hold (the order row, its history rows and audit record) and hands it to a lane; a lane takes
//! every order waiting and commits them in one transaction, answering each request after the
//! commit.
//!
//! A lane locks the group's accounts first (in id order, one statement), decides each order in
//! arrival order in memory (funds, overflow, the platform's exposure per asset) and writes the
//! accepted ones with multi-row statements, in one journal entry for the group. Each lane posts
//! against its own shard of the platform's trading accounts, so lanes never wait on each
//! other's platform rows; only a user with orders in two lanes at once makes one wait for the
//! other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use etx_db::ledger::{EntryHead, NewIdempotency, account_id};
use etx_db::orders::OrderRow;
use etx_db::{Batch, Db, DbErr, DbKind};
use etx_domain::format_amount;
use etx_domain::{AccountKind, EntryKind, Side};
use tokio::sync::oneshot;

use super::{OrderPlaced, OrderView, Terms, TradeHistory};
use crate::ledger::lanes::{Lanes, distinct, taken_keys};
use crate::ledger::{Failure, Outcome, Taken};
use crate::{Core, CoreError};

/// One priced market order and everything its commit writes besides the money.
pub(super) struct Planned {
    pub user_id: String,
    /// Idempotency: key, scope and request hash.
    pub key: String,
    pub scope: &'static str,
    pub request_hash: String,
    pub base: String,
    pub quote: String,
    pub base_scale: u8,
    pub quote_scale: u8,
    pub side: Side,
    pub terms: Terms,
    pub quote_id: Option<String>,
    /// The journal entry's memo when the order commits alone.
    pub memo: String,
    /// The pair's assets other than USD with their USD price (× 10^8) and scale, for the
    /// exposure limit.
    pub exposure: Vec<(String, i128, u8)>,
    /// The order as answered once filled.
    pub view: OrderView,
    /// The order row and its history rows, written pointing at the group's journal entry.
    pub order: OrderRow,
    pub history: TradeHistory,
    /// Its audit record, queued by the request for its client context.
    pub inserts: Batch,
}

/// A committed order: the answer stored under its key and the user's balances after it.
pub(super) struct Filled {
    pub outcome: Outcome,
    pub base_balance: i64,
    pub quote_balance: i64,
}

type Reply = oneshot::Sender<Result<Filled, Failure>>;

struct Job {
    plan: Planned,
    reply: Reply,
}

/// The market-order committers, started by the first order.
#[derive(Default)]
pub struct OrderCommit {
    lanes: OnceLock<Lanes<Job>>,
}

/// What a lane needs besides its jobs.
#[derive(Clone)]
struct Lane {
    db: Db,
    /// `[trading] max_exposure_cents`.
    limit: i128,
    /// Accounts known to exist, shared by the lanes: a group whose accounts are all known
    /// skips the read that finds the ones to open (accounts are never deleted).
    known: Arc<Mutex<HashSet<String>>>,
}

/// Known accounts kept at most; the set starts again empty when full.
const KNOWN_MAX: usize = 200_000;

impl Lane {
    fn all_known(&self, ids: &[&str]) -> bool {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().all(|id| known.contains(*id))
    }

    /// Only accounts that are committed: one opened by a transaction that rolls back is gone.
    fn learn<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
            if !known.contains(id) {
                known.insert(id.to_string());
            }
        }
    }
}

impl OrderCommit {
    /// Commits the order with whatever others are waiting; answers once it is durable.
    pub(super) async fn submit(&self, state: &Core, plan: Planned) -> Result<Filled, Failure> {
        let lanes = self.lanes.get_or_init(|| {
            let lane = Lane {
                db: state.db.clone(),
                limit: i128::from(state.config.trading.max_exposure_cents),
                known: Default::default(),
            };
            let n = match state.db.kind() {
                // SQLite's writers queue on one lock anyway.
                DbKind::Sqlite => 1,
                DbKind::Postgres => state.config.trading.commit_lanes,
            };
            Lanes::start(
                n,
                state.config.transfers.max_group,
                move |k, jobs: Vec<Job>| {
                    let lane = lane.clone();
                    async move {
                        metrics::histogram!("etx_order_group_size").record(jobs.len() as f64);
                        let shard = super::shard_owner(k as u128 % super::TRADING_SHARDS);
                        commit_group(&lane, &shard, jobs).await;
                    }
                },
            )
        });
        let closed = || {
            Failure::Api(CoreError::Internal(anyhow::anyhow!(
                "order committer stopped"
            )))
        };
        let (reply, answer) = oneshot::channel();
        if !lanes.send(Job { plan, reply }).await {
            return Err(closed());
        }
        answer.await.map_err(|_| closed())?
    }
}

async fn commit_group(lane: &Lane, shard: &str, jobs: Vec<Job>) {
    // A key sent twice in one group: the later request answers from the first one's record
    // (or goes again if the first was refused).
    let mut seen = HashSet::new();
    let (mut jobs, repeats): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| seen.insert((j.plan.user_id.clone(), j.plan.key.clone())));
    let mut tries = 0;
    while !jobs.is_empty() {
        tries += 1;
        match attempt(lane, shard, &jobs).await {
            Ok(Attempt::Done(results)) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Ok(Attempt::KeysTaken(taken)) if tries < 5 => {
                let (gone, rest): (Vec<Job>, Vec<Job>) = jobs
                    .into_iter()
                    .partition(|j| taken.contains(&(j.plan.user_id.clone(), j.plan.key.clone())));
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
                // One order must not take the others down with it: each goes again alone.
                tracing::warn!(error = %e, size = jobs.len(), "order group failed; committing its orders one by one");
                for job in jobs.drain(..) {
                    Box::pin(commit_group(lane, shard, vec![job])).await;
                }
            }
            Err(e) => {
                let quoted = jobs.iter().any(|j| j.plan.quote_id.is_some());
                for job in jobs.drain(..) {
                    let failure = match &e {
                        // Another order took the same quote in between: the next attempt
                        // answers 409.
                        e if quoted
                            && matches!(
                                etx_db::classify(e),
                                etx_db::DbErrorKind::UniqueViolation { .. }
                            ) =>
                        {
                            Failure::Conflict("a quote used by two orders at once")
                        }
                        e => Failure::Db(e.clone()),
                    };
                    let _ = job.reply.send(Err(failure));
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
    Done(Vec<Result<Filled, Failure>>),
    /// Nothing committed: these (user, key) pairs were stored by other requests meanwhile.
    KeysTaken(HashSet<(String, String)>),
}

/// One posting of an order: account, its owner and kind, asset, amount.
struct Posting {
    account: String,
    owner: String,
    kind: AccountKind,
    asset: String,
    amount: i64,
}

/// An order's postings with the platform's side on `shard`: the user's wallet legs first
/// (base, then quote).
fn postings(p: &Planned, shard: &str) -> Vec<Posting> {
    let t = &p.terms;
    let u = p.user_id.as_str();
    let post = |owner: &str, kind, asset: &str, amount| Posting {
        account: account_id(owner, kind, asset),
        owner: owner.to_string(),
        kind,
        asset: asset.to_string(),
        amount,
    };
    let (b, q) = (p.base.as_str(), p.quote.as_str());
    let (w, inv, fees) = (
        AccountKind::Wallet,
        AccountKind::TradingInventory,
        AccountKind::Fees,
    );
    match p.side {
        Side::Buy => vec![
            post(u, w, b, t.amount),
            post(u, w, q, -t.total),
            post(shard, inv, b, -t.amount),
            post(shard, inv, q, t.value),
            post(shard, fees, q, t.fee),
        ],
        Side::Sell => vec![
            post(u, w, b, -t.amount),
            post(u, w, q, t.total),
            post(shard, inv, b, t.amount),
            post(shard, inv, q, -t.value),
            post(shard, fees, q, t.fee),
        ],
    }
    .into_iter()
    .filter(|p| p.amount != 0)
    .collect()
}

/// An order the group took, with its stored answer and the user's balances after it.
struct Accepted {
    index: usize,
    response: String,
    base_balance: i64,
    quote_balance: i64,
}

/// Why one order of a group was refused; the others go on.
fn refusal(why: &str) -> Failure {
    match why {
        "funds" => CoreError::InsufficientFunds.into(),
        "overflow" => CoreError::field("amount", "is too large for a balance").into(),
        asset => CoreError::LimitExceeded(format!(
            "the platform cannot take more {asset} now: try a smaller order"
        ))
        .into(),
    }
}

/// The accounts of the group with (balance, may go negative), and the platform's position
/// per asset of the pairs' exposure.
struct Book {
    accounts: HashMap<String, (i64, bool)>,
    positions: HashMap<String, i64>,
}

/// Applies the orders in arrival order in memory, each refused on its own when the user's
/// funds, a balance's range or the platform's exposure limit do not allow it.
fn decide(
    jobs: &[Job],
    posts: &[Vec<Posting>],
    taken: &HashSet<(String, String)>,
    used: &HashSet<String>,
    mut book: Book,
    limit: i128,
) -> (Vec<Option<Result<Filled, Failure>>>, Vec<Accepted>) {
    let mut results = Vec::with_capacity(jobs.len());
    let mut accepted = Vec::new();
    let mut quotes: HashSet<&str> = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let p = &job.plan;
        if taken.contains(&(p.user_id.clone(), p.key.clone())) {
            results.push(Some(Err(Failure::KeyTaken)));
            continue;
        }
        if let Some(q) = p.quote_id.as_deref()
            && (used.contains(q) || !quotes.insert(q))
        {
            results.push(Some(Err(CoreError::Conflict {
                message: "this quote was used by another order already".into(),
                fields: Default::default(),
            }
            .into())));
            continue;
        }
        let decided = (|| {
            let mut after: Vec<(&str, i64)> = Vec::with_capacity(posts[i].len());
            for post in &posts[i] {
                let (have, negative) = book
                    .accounts
                    .get(&post.account)
                    .copied()
                    .unwrap_or((0, false));
                let now = have.checked_add(post.amount).ok_or("overflow")?;
                if now < 0 && !negative {
                    return Err("funds");
                }
                after.push((post.account.as_str(), now));
            }
            let mut moved: Vec<(&str, i64)> = Vec::new();
            let (base_change, quote_change) = super::inventory_change(p.side, &p.terms);
            for (asset, usd, scale) in &p.exposure {
                let was = book.positions.get(asset).copied().unwrap_or(0);
                let change = if *asset == p.base {
                    base_change
                } else {
                    quote_change
                };
                let now = super::position_after(was, change, *usd, *scale, limit)
                    .ok_or(asset.as_str())?;
                moved.push((asset.as_str(), now));
            }
            Ok((after, moved))
        })();
        match decided {
            Err(why) => results.push(Some(Err(refusal(why)))),
            Ok((after, moved)) => {
                for (id, b) in &after {
                    if let Some(a) = book.accounts.get_mut(*id) {
                        a.0 = *b;
                    }
                }
                for (asset, n) in moved {
                    book.positions.insert(asset.to_string(), n);
                }
                // The user's wallet legs come first: base, then quote.
                let (base_balance, quote_balance) = (after[0].1, after[1].1);
                let mut shown = BTreeMap::new();
                shown.insert(p.base.clone(), format_amount(base_balance, p.base_scale));
                shown.insert(p.quote.clone(), format_amount(quote_balance, p.quote_scale));
                let response = serde_json::to_string(&OrderPlaced {
                    order: p.view.clone(),
                    balances: shown,
                })
                .expect("an order view serializes");
                accepted.push(Accepted {
                    index: i,
                    response,
                    base_balance,
                    quote_balance,
                });
                results.push(None);
            }
        }
    }
    (results, accepted)
}

/// One try at committing the group: lock, decide, write, commit.
async fn attempt(lane: &Lane, shard: &str, jobs: &[Job]) -> Result<Attempt, DbErr> {
    let db = &lane.db;
    let posts: Vec<Vec<Posting>> = jobs.iter().map(|j| postings(&j.plan, shard)).collect();
    let mut opened: BTreeMap<&str, &Posting> = BTreeMap::new();
    for p in posts.iter().flatten() {
        opened.entry(p.account.as_str()).or_insert(p);
    }
    let ids: Vec<&str> = opened.keys().copied().collect();
    let tx = db.begin_write().await?;
    // Accounts an order is the first to credit are opened before any row is locked, so that a
    // lane never waits on another's new account while holding rows that one waits for.
    if !lane.all_known(&ids) {
        let have = db.accounts(&tx, &ids, false).await?;
        lane.learn(have.iter().map(|(id, ..)| id.as_str()));
        let have: HashSet<&str> = have.iter().map(|(id, ..)| id.as_str()).collect();
        let missing: Vec<(&str, &str, &str, &str)> = opened
            .iter()
            .filter(|(id, _)| !have.contains(**id))
            .map(|(id, p)| (*id, p.owner.as_str(), p.kind.as_str(), p.asset.as_str()))
            .collect();
        db.open_accounts(&tx, &missing).await?;
    }
    let accounts = db
        .accounts(&tx, &ids, true)
        .await?
        .into_iter()
        .map(|(id, b, negative)| (id, (b, negative)))
        .collect();
    let assets = distinct(
        jobs.iter()
            .flat_map(|j| j.plan.exposure.iter().map(|(a, ..)| a.as_str())),
    );
    let positions = super::positions(db, &tx, &assets).await?;
    let pairs: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.plan.user_id.as_str(), j.plan.key.as_str()))
        .collect();
    let taken = taken_keys(db, &tx, &pairs).await?;
    let quote_ids: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.plan.quote_id.as_deref())
        .collect();
    let used: HashSet<String> = db.quotes_used(&tx, &quote_ids).await?.into_iter().collect();
    let book = Book {
        accounts,
        positions,
    };
    let (mut results, accepted) = decide(jobs, &posts, &taken, &used, book, lane.limit);
    if accepted.is_empty() {
        tx.rollback().await?;
        return Ok(Attempt::Done(
            results.into_iter().map(|r| r.expect("refused")).collect(),
        ));
    }

    let now = etx_db::now_micros();
    // One journal entry for the group: each user's legs order by order and the platform's
    // netted per account, as a matcher's settlement does. Three postings an order fewer, and
    // one entry a group instead of one an order.
    let entry_id = uuid::Uuid::now_v7().to_string();
    let mut inserts = Batch::default();
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    let mut legs: Vec<(&str, &str, i64)> = Vec::new();
    let mut platform: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    for a in &accepted {
        let p = &jobs[a.index].plan;
        for l in &posts[a.index] {
            *deltas.entry(l.account.as_str()).or_default() += l.amount;
            if l.owner == p.user_id {
                legs.push((l.account.as_str(), l.asset.as_str(), l.amount));
            } else {
                platform
                    .entry(l.account.as_str())
                    .or_insert((l.asset.as_str(), 0))
                    .1 += l.amount;
            }
        }
        let order = OrderRow {
            entry_id: Some(entry_id.clone()),
            ..p.order.clone()
        };
        Db::queue_order(&mut inserts, &order);
        p.history.queue(&mut inserts, &entry_id);
        inserts.append(p.inserts.clone());
    }
    legs.extend(
        platform
            .into_iter()
            .filter(|(_, (_, n))| *n != 0)
            .map(|(id, (asset, n))| (id, asset, n)),
    );
    let (memo, created_by) = match accepted.as_slice() {
        [one] => {
            let p = &jobs[one.index].plan;
            (p.memo.clone(), Some(p.user_id.as_str()))
        }
        many => (format!("{} market orders", many.len()), None),
    };
    Db::queue_postings(
        &mut inserts,
        &EntryHead {
            id: &entry_id,
            kind: EntryKind::Trade,
            memo: Some(&memo),
            created_by,
        },
        legs.into_iter(),
        now,
    );
    db.run_batch(&tx, inserts.merge_inserts()).await?;

    let deltas: Vec<(&str, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    let mut batch = Batch::default();
    if !deltas.is_empty() {
        Db::queue_balance_changes(&mut batch, &deltas, now);
    }
    let records: Vec<NewIdempotency<'_>> = accepted
        .iter()
        .map(|a| {
            let p = &jobs[a.index].plan;
            NewIdempotency {
                user_id: &p.user_id,
                key: &p.key,
                scope: p.scope,
                request_hash: &p.request_hash,
                status: Taken::Completed.code(),
                response: &a.response,
            }
        })
        .collect();
    Db::queue_idempotency(&mut batch, &records, now);
    let counts = db.run_batch_counts(&tx, batch).await?;
    if counts.last().copied().unwrap_or(0) != accepted.len() as u64 {
        tx.rollback().await?;
        let pairs: Vec<(&str, &str)> = accepted
            .iter()
            .map(|a| {
                let p = &jobs[a.index].plan;
                (p.user_id.as_str(), p.key.as_str())
            })
            .collect();
        return Ok(Attempt::KeysTaken(taken_keys(db, db.conn(), &pairs).await?));
    }
    if !deltas.is_empty() && counts[0] != deltas.len() as u64 {
        // The rows are locked and were decided on: only a writer that broke the lock order
        // could change them.
        tx.rollback().await?;
        return Err(DbErr::Custom(
            "a locked balance changed under an order group".into(),
        ));
    }
    tx.commit().await?;
    lane.learn(ids.iter().copied());
    for a in accepted {
        results[a.index] = Some(Ok(Filled {
            outcome: Outcome {
                status: Taken::Completed,
                body: a.response,
                replayed: false,
            },
            base_balance: a.base_balance,
            quote_balance: a.quote_balance,
        }));
    }
    Ok(Attempt::Done(
        results
            .into_iter()
            .map(|r| r.expect("every order answered"))
            .collect(),
    ))
}
