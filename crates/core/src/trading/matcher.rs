//! The matcher: one task per instance that wakes on every price update (and at least every
//! `[trading] sync_ms`), takes the orders the new prices cross out of the book, and fills them
//! in batches of `match_batch`, one transaction each; then it expires orders whose time ran
//! out. Every instance runs one against the shared database: an order is filled, cancelled or
//! expired by whichever transaction closes it first (see `resting`), so two matchers never
//! fill it twice. The book is loaded from the database at start and picks up orders placed on
//! other instances on each sync.

use std::time::Duration;

use super::book::{Resting, Trigger};
use super::resting::{End, fill_terms, open_fill_accounts, settle};
use super::{bid_ask, usd_price};
use crate::Core;
use crate::ledger::{Failure, with_retries};
use etx_db::now_micros;
use etx_db::orders::OrderRow;
use etx_domain::Side;

/// How far back each sync looks for orders other instances placed: a transaction commits
/// after it stamped `created_at`, so the window covers a slow commit. An order committed later
/// still is matched by the instance that placed it, and every instance reloads the whole book
/// every `FULL_RELOAD_MICROS`.
const SYNC_LOOKBACK_MICROS: i64 = 1_000_000;
const FULL_RELOAD_MICROS: i64 = 300_000_000;

const EXPIRED: &str = "its time ran out";

pub fn spawn_matcher(state: Core) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut updates = state.market.subscribe();
        let mut every =
            crate::market::Market::timer(Duration::from_millis(state.config.trading.sync_ms));
        // Everything open at start; afterwards, what was placed since the last look.
        // (the last sync's start, the last full load's start)
        let mut cursor = (i64::MIN, i64::MIN);
        loop {
            // A price update only matches; the timer also syncs and expires, off the path
            // from a tick to its fills.
            let Some(timer) = crate::market::Market::next_wake(&mut updates, &mut every).await
            else {
                return;
            };
            if timer && let Err(e) = sync(&state, &mut cursor).await {
                tracing::warn!(error = %e, "order book sync failed");
            }
            if timer && let Err(e) = super::settings::sync(&state).await {
                tracing::warn!(error = %e, "pair settings sync failed");
            }
            if let Err(e) = match_all(&state).await {
                tracing::warn!(error = %e, "matching failed; the orders stay open");
            }
            if timer && let Err(e) = expire_due(&state).await {
                tracing::warn!(error = %e, "expiring orders failed");
            }
        }
    })
}

fn resting_of(o: &OrderRow) -> Option<Resting> {
    let side = Side::parse(&o.side)?;
    let stop = match o.kind.as_str() {
        "limit" => false,
        "stop" => true,
        _ => return None,
    };
    Some(Resting {
        id: o.id.clone(),
        user_id: o.user_id.clone(),
        base: o.base_asset.clone(),
        quote: o.quote_asset.clone(),
        trigger: Trigger::of(side, stop),
        price: o.trigger_price.unwrap_or(o.price),
        expires_at: o.expires_at,
    })
}

/// Adds open orders placed since the last sync (less the lookback) to the book; all of them at
/// start and every `FULL_RELOAD_MICROS`.
async fn sync(state: &Core, cursor: &mut (i64, i64)) -> Result<(), etx_db::DbErr> {
    let started = now_micros();
    if started.saturating_sub(cursor.1) > FULL_RELOAD_MICROS {
        cursor.0 = i64::MIN;
        cursor.1 = started;
    }
    let mut after = if cursor.0 == i64::MIN {
        (i64::MIN, String::new())
    } else {
        (cursor.0 - SYNC_LOOKBACK_MICROS, String::new())
    };
    loop {
        let rows = state.db.open_orders((after.0, &after.1), 5_000).await?;
        let Some(last) = rows.last() else { break };
        after = (last.created_at, last.id.clone());
        let mut book = state.book.lock();
        for o in &rows {
            if let Some(r) = resting_of(o) {
                book.insert(r);
            }
        }
    }
    cursor.0 = started;
    Ok(())
}

/// Fills every order the current prices cross, batch after batch.
pub(super) async fn match_all(state: &Core) -> Result<(), crate::CoreError> {
    if state.market.is_stale() {
        return Ok(());
    }
    // SQLite has one writer and a bound on a statement's parameters: one modest batch at a time.
    let (max, groups) = match state.db.kind() {
        etx_db::DbKind::Sqlite => (state.config.trading.match_batch.min(500), 1),
        etx_db::DbKind::Postgres => (
            state.config.trading.match_batch,
            state.config.trading.match_groups,
        ),
    };
    loop {
        let taken = take_crossed(state, max * groups);
        if taken.is_empty() {
            return Ok(());
        }
        if let Err(e) = open_fill_accounts(state, &taken).await {
            put_back(state, taken);
            return Err(e);
        }
        // One group per shard class (see `user_shard`): batches of different groups share no
        // account, so groups settle side by side without waiting on each other's locks; a
        // group's batches go one after the other.
        let mut split: Vec<Vec<Resting>> = vec![Vec::new(); groups];
        for r in taken {
            let g = (super::user_shard(&r.user_id) % groups as u128) as usize;
            split[g].push(r);
        }
        let settled =
            futures_util::future::join_all(split.into_iter().map(|mut group| async move {
                while !group.is_empty() {
                    let rest = group.split_off(group.len().min(max));
                    let ids: Vec<String> = group.iter().map(|r| r.id.clone()).collect();
                    if let Err(e) = with_retries(|| fill_batch(state, &ids)).await {
                        // Still open in the database: back in the book for the next tick.
                        put_back(state, group.into_iter().chain(rest));
                        return Err(e);
                    }
                    group = rest;
                }
                Ok(())
            }))
            .await;
        if let Some(Err(e)) = settled.into_iter().find(Result::is_err) {
            return Err(e);
        }
    }
}

fn put_back(state: &Core, orders: impl IntoIterator<Item = Resting>) {
    let mut book = state.book.lock();
    for r in orders {
        book.insert(r);
    }
}

/// Takes up to `max` crossed orders out of the book, over every pair that has some.
fn take_crossed(state: &Core, max: usize) -> Vec<Resting> {
    let mut book = state.book.lock();
    let mut taken = Vec::new();
    for pair in book.pairs() {
        let (Some(base), Some(quote)) = (state.assets.get(&pair.0), state.assets.get(&pair.1))
        else {
            continue;
        };
        // A halted pair's orders wait, still open, until it trades again.
        let Ok(cfg) = super::settings::config_for(state, &super::Pair { base, quote }) else {
            continue;
        };
        let (Ok(b), Ok(q)) = (usd_price(state, base), usd_price(state, quote)) else {
            continue;
        };
        let (bid, ask) = bid_ask(&cfg, b, q);
        let (bid, ask) = (
            i64::try_from(bid).unwrap_or(i64::MAX),
            i64::try_from(ask).unwrap_or(i64::MAX),
        );
        taken.extend(book.take_crossed(&pair, bid, ask, max - taken.len()));
        if taken.len() >= max {
            break;
        }
    }
    taken
}

/// Closes and fills the orders among `ids` that are still open, in one transaction.
async fn fill_batch(state: &Core, ids: &[String]) -> Result<usize, Failure> {
    let tx = state.db.begin_write().await?;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let entry = uuid::Uuid::now_v7().to_string();
    let rows = state
        .db
        .close_open_orders(&tx, &refs, None, "filled", None, Some(&entry))
        .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let n = rows.len();
    let assets = crate::ledger::lanes::distinct(
        rows.iter()
            .flat_map(|o| [o.base_asset.as_str(), o.quote_asset.as_str()])
            .filter(|a| *a != "USD"),
    );
    let mut positions = super::positions(&state.db, &tx, &assets).await?;
    let ends = rows
        .into_iter()
        .map(|o| {
            let end = within_exposure(state, &o, fill_terms(state, &o), &mut positions);
            (o, end)
        })
        .collect();
    let settled = settle(state, &tx, ends, &entry, etx_db::Batch::default()).await?;
    tx.commit().await?;
    metrics::counter!("etx_orders_filled_total").increment(n as u64);
    tracing::info!(orders = n, "resting orders settled");
    settled.send(state);
    Ok(n)
}

/// A fill that would grow the platform's position in one of its assets past
/// `[trading] max_exposure_cents` is rejected and its hold released; the fills of a batch count
/// each other, in order.
fn within_exposure(
    state: &Core,
    o: &OrderRow,
    end: End,
    positions: &mut std::collections::HashMap<String, i64>,
) -> End {
    let End::Fill(t) = &end else {
        return end;
    };
    let Some(side) = Side::parse(&o.side) else {
        return end;
    };
    let limit = i128::from(state.config.trading.max_exposure_cents);
    let (base_change, quote_change) = super::inventory_change(side, t);
    let mut moved = Vec::new();
    for (code, change) in [(&o.base_asset, base_change), (&o.quote_asset, quote_change)] {
        let Some(asset) = state.assets.get(code).filter(|_| code != "USD") else {
            continue;
        };
        let was = positions.get(code).copied().unwrap_or(0);
        let now = usd_price(state, asset)
            .ok()
            .and_then(|usd| super::position_after(was, change, usd, asset.scale, limit));
        match now {
            Some(now) => moved.push((code, now)),
            None => {
                return End::Release(
                    "rejected",
                    "the platform's position in the pair was at its limit when the order crossed",
                );
            }
        }
    }
    for (code, now) in moved {
        positions.insert(code.clone(), now);
    }
    end
}

/// Ends the orders whose time ran out, releasing what they held.
async fn expire_due(state: &Core) -> Result<(), crate::CoreError> {
    let max = state.config.trading.match_batch;
    loop {
        let due = state.book.lock().take_expired(now_micros(), max);
        if due.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = due.iter().map(|r| r.id.clone()).collect();
        let done = with_retries(|| async {
            let tx = state.db.begin_write().await?;
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let rows = state
                .db
                .close_open_orders(&tx, &refs, None, "expired", Some(EXPIRED), None)
                .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(None);
            }
            let ends = rows
                .into_iter()
                .map(|o| (o, End::Release("expired", EXPIRED)))
                .collect();
            let settled = settle(state, &tx, ends, "", etx_db::Batch::default()).await?;
            tx.commit().await?;
            Ok(Some(settled))
        })
        .await;
        match done {
            Ok(Some(s)) => s.send(state),
            Ok(None) => {}
            Err(e) => {
                put_back(state, due);
                return Err(e);
            }
        }
    }
}
