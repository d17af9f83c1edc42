//! Limit and stop orders. Placing one moves exactly what it needs into the owner's orders hold
//! (a buy: its cost and fee in the quote asset; a sell: the base amount). From then on one of
//! three things happens to it, exactly once: the matcher fills it (the hold pays the platform,
//! the platform pays the wallet), the owner cancels it, or its time runs out (the hold goes
//! back to the wallet). Each is a conditional update of the order from `open`, committed with
//! its ledger entries, so whichever commits first wins and the others find nothing to do.

use std::collections::BTreeMap;

use super::book::{Resting, Trigger};
use super::{
    OrderPlaced, OrderRequest, OrderView, Pair, Terms, bid_ask, parse_side, stale, terms_at,
    usd_price,
};
use crate::ledger::{
    Failure, Movement, Notice, Outcome, Taken, amount_field, balance_of, leg, notice, post,
    scale_of, stored_answer, with_retries,
};
use crate::market::{PRICE_SCALE, price_text};
use crate::{Core, CoreError};
use etx_db::ledger::{EntryHead, account_id};
use etx_db::orders::{OrderEnd, OrderRow};
use etx_db::users::UserRow;
use etx_db::{Batch, DatabaseTransaction, Db, now_micros};
use etx_domain::money::{format_amount, parse_positive_amount};
use etx_domain::{AccountKind, AuditAction, EntryKind, Side};
use serde_json::json;

const CANCELLED: &str = "cancelled by you";

/// The longest a limit or stop order may rest.
const MAX_LIFETIME_MICROS: i64 = 366 * 24 * 3600 * 1_000_000;

/// A limit or stop order, checked and priced, before anything moved.
struct Plan<'a> {
    id: String,
    user_id: String,
    pair: Pair<'a>,
    side: Side,
    stop: bool,
    trigger: i64,
    terms: Terms,
    held: i64,
    held_asset: &'a crate::ledger::Asset,
    expires_at: Option<i64>,
}

impl Plan<'_> {
    fn resting(&self) -> Resting {
        Resting {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            base: self.pair.base.code.clone(),
            quote: self.pair.quote.code.clone(),
            trigger: Trigger::of(self.side, self.stop),
            price: self.trigger,
            expires_at: self.expires_at,
        }
    }
}

fn price_field(field: &'static str, v: &serde_json::Value) -> Result<i64, CoreError> {
    let text = match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(CoreError::field(
                field,
                "must be a decimal string such as \"61000.50\"",
            ));
        }
    };
    parse_positive_amount(&text, PRICE_SCALE).map_err(|e| CoreError::field(field, &e.to_string()))
}

fn plan<'a>(
    state: &'a Core,
    user_id: &str,
    req: &OrderRequest,
    stop: bool,
) -> Result<Plan<'a>, CoreError> {
    let kind = if stop { "stop" } else { "limit" };
    if req.quote_id.is_some() {
        return Err(CoreError::field(
            "quote_id",
            "is for market orders: a limit or stop order names its own price",
        ));
    }
    if req.price.is_some() {
        return Err(CoreError::field(
            "price",
            "is not used: give limit_price for a limit order or stop_price for a stop order",
        ));
    }
    let (field, given, other, other_given) = if stop {
        (
            "stop_price",
            &req.stop_price,
            "limit_price",
            &req.limit_price,
        )
    } else {
        (
            "limit_price",
            &req.limit_price,
            "stop_price",
            &req.stop_price,
        )
    };
    if other_given.is_some() {
        return Err(CoreError::field(
            other,
            &format!("is not used by a {kind} order"),
        ));
    }
    let missing = |f: &str| CoreError::field(f, &format!("is required for a {kind} order"));
    let pair = Pair::parse(state, req.pair.as_deref().ok_or_else(|| missing("pair"))?)?;
    let side = parse_side(req.side.as_deref().ok_or_else(|| missing("side"))?)?;
    let amount = req.amount.as_ref().ok_or_else(|| missing("amount"))?;
    let amount = parse_positive_amount(amount.0.trim(), pair.base.scale).map_err(amount_field)?;
    let trigger = price_field(field, given.as_ref().ok_or_else(|| missing(field))?)?;
    let now = now_micros();
    let expires_at = match req.expires_at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| CoreError::field("expires_at", "must be an RFC 3339 time"))?
                .timestamp_micros();
            if at <= now || at > now + MAX_LIFETIME_MICROS {
                return Err(CoreError::field(
                    "expires_at",
                    "must be in the future and at most 366 days away",
                ));
            }
            Some(at)
        }
    };
    let cfg = super::settings::config_for(state, &pair)?;
    let (base_usd, quote_usd) = (usd_price(state, pair.base)?, usd_price(state, pair.quote)?);
    let (bid, ask) = bid_ask(&cfg, base_usd, quote_usd);
    let t = Trigger::of(side, stop);
    if t.crossed(trigger, to64(bid), to64(ask)) {
        let now_price = match side {
            Side::Buy => ask,
            Side::Sell => bid,
        };
        return Err(CoreError::field(
            field,
            &format!(
                "would trigger at once: {} {} is {} now (place a market order instead)",
                side,
                pair.name(),
                price_text(to64(now_price))
            ),
        ));
    }
    let terms = terms_at(&cfg, pair, quote_usd, side, amount, i128::from(trigger))?;
    let held = match (side, stop) {
        (Side::Sell, _) => amount,
        (Side::Buy, false) => terms.total,
        (Side::Buy, true) => {
            let margin = i128::from(terms.total) * i128::from(cfg.stop_margin_bps);
            let margin = margin.div_euclid(10_000) + i128::from(margin.rem_euclid(10_000) != 0);
            terms
                .total
                .checked_add(
                    i64::try_from(margin)
                        .map_err(|_| amount_field(etx_domain::money::AmountError::Overflow))?,
                )
                .ok_or_else(|| amount_field(etx_domain::money::AmountError::Overflow))?
        }
    };
    Ok(Plan {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_string(),
        pair,
        side,
        stop,
        trigger,
        terms,
        held,
        held_asset: match side {
            Side::Buy => pair.quote,
            Side::Sell => pair.base,
        },
        expires_at,
    })
}

fn to64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Places a limit or stop order: its funds move into the orders hold, and it rests in the
/// book until it fills, is cancelled or expires.
pub(super) async fn place(
    state: &Core,
    user: &UserRow,
    m: &Movement<'_>,
    req: &OrderRequest,
    stop: bool,
) -> Result<Outcome, CoreError> {
    let p = match plan(state, &user.id, req, stop) {
        Ok(p) => p,
        Err(e) => {
            return match m.earlier(state).await? {
                Some(o) => Ok(o),
                None => Err(e),
            };
        }
    };
    let out = m.run(state, || hold(state, user, m, &p)).await?;
    if !out.replayed {
        state.book.lock().insert(p.resting());
    }
    Ok(out)
}

async fn hold(
    state: &Core,
    user: &UserRow,
    m: &Movement<'_>,
    p: &Plan<'_>,
) -> Result<Outcome, Failure> {
    if state.market.is_stale() {
        return Err(stale().into());
    }
    let u = user.id.as_str();
    let tx = state.db.begin_write().await?;
    state.db.lock_user(&tx, u).await?;
    if state.db.count_open_orders(&tx, u).await? >= state.config.trading.max_open_orders {
        return Err(CoreError::LimitExceeded(format!(
            "you have {} open orders, the most allowed: cancel one first",
            state.config.trading.max_open_orders
        ))
        .into());
    }
    let mut batch = Batch::default();
    let kind = if p.stop { "stop" } else { "limit" };
    let memo = format!("hold for {kind} order {}", p.id);
    let asset = p.held_asset.code.as_str();
    let balances = post(
        &state.db,
        &tx,
        &mut batch,
        EntryKind::OrderHold,
        asset,
        Some(&memo),
        Some(u),
        vec![
            leg(u, AccountKind::Wallet, -p.held),
            leg(u, AccountKind::OrdersHold, p.held),
        ],
    )
    .await?;
    let wallet = balance_of(&balances, &account_id(u, AccountKind::Wallet, asset))?;
    let now = now_micros();
    let t = p.terms;
    let order = OrderRow {
        id: p.id.clone(),
        user_id: u.to_string(),
        base_asset: p.pair.base.code.clone(),
        quote_asset: p.pair.quote.code.clone(),
        side: p.side.to_string(),
        kind: kind.into(),
        status: "open".into(),
        amount: t.amount,
        price: p.trigger,
        value: t.value,
        fee: t.fee,
        total: t.total,
        quote_id: None,
        entry_id: None,
        created_at: now,
        updated_at: now,
        trigger_price: Some(p.trigger),
        held: p.held,
        held_asset: Some(asset.to_string()),
        expires_at: p.expires_at,
        reason: None,
    };
    Db::queue_order(&mut batch, &order);
    crate::audit::Event::new(Some(u), AuditAction::OrderPlace)
        .target("order", &order.id)
        .details(json!({
            "pair": p.pair.name(),
            "side": order.side,
            "type": kind,
            "amount": format_amount(t.amount, p.pair.base.scale),
            "trigger_price": price_text(p.trigger),
            "held": format_amount(p.held, p.held_asset.scale),
            "held_currency": asset,
            "expires_at": p.expires_at.map(crate::time::rfc3339),
        }))
        .queue(&mut batch);
    let mut shown = BTreeMap::new();
    shown.insert(asset.to_string(), format_amount(wallet, p.held_asset.scale));
    let view = OrderView::new(state, &order);
    let body = stored_answer(&OrderPlaced {
        order: view.clone(),
        balances: shown,
    })?;
    let out = m.commit(state, tx, batch, Taken::Completed, body).await?;
    tracing::info!(order = %order.id, user = %u, pair = %p.pair.name(), kind, "order resting");
    state.events.to_user(
        u,
        "wallet_update",
        json!({"currency": asset, "balance": format_amount(wallet, p.held_asset.scale)}),
    );
    state.events.to_user(u, "order_update", json!(view));
    Ok(out)
}

/// Cancels one of the user's open orders and releases what it holds. An order that already
/// filled, expired or was cancelled is a 409; another user's is a 404.
pub async fn cancel_order(state: &Core, user: &UserRow, id: &str) -> Result<OrderView, CoreError> {
    let view = with_retries(|| cancel_once(state, user, id)).await?;
    state.book.lock().remove(id);
    Ok(view)
}

async fn cancel_once(state: &Core, user: &UserRow, id: &str) -> Result<OrderView, Failure> {
    let tx = state.db.begin_write().await?;
    let rows = state
        .db
        .close_open_orders(
            &tx,
            &[id],
            Some(&user.id),
            "cancelled",
            Some(CANCELLED),
            None,
        )
        .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Err(match state.db.order(&user.id, id).await? {
            None => CoreError::NotFound,
            Some(o) => CoreError::Conflict {
                message: format!(
                    "the order is {} already: it can no longer be cancelled",
                    o.status
                ),
                fields: Default::default(),
            },
        }
        .into());
    }
    let mut extra = Batch::default();
    crate::audit::Event::new(Some(&user.id), AuditAction::OrderCancel)
        .target("order", id)
        .details(json!({"pair": format!("{}/{}", rows[0].base_asset, rows[0].quote_asset)}))
        .queue(&mut extra);
    let ends = rows
        .into_iter()
        .map(|o| (o, End::Release("cancelled", CANCELLED)))
        .collect();
    let mut settled = settle(state, &tx, ends, "", extra).await?;
    tx.commit().await?;
    let view = settled.views.pop().ok_or_else(|| {
        Failure::Api(CoreError::Internal(anyhow::anyhow!(
            "cancel settled nothing"
        )))
    })?;
    settled.send(state);
    Ok(view)
}

/// How a closed order ends.
pub(super) enum End {
    /// Filled at these terms.
    Fill(Terms),
    /// Nothing traded: (status, reason); the hold goes back to the wallet.
    Release(&'static str, &'static str),
}

/// What a settlement tells the owners once it is committed.
pub(super) struct Settled {
    pub views: Vec<OrderView>,
    messages: Vec<(String, &'static str, serde_json::Value)>,
}

impl Settled {
    pub(super) fn send(self, state: &Core) {
        for (user, event, payload) in self.messages {
            if event == "transaction_update" {
                state.xp.note_movement(state, &user, &payload);
            }
            state.events.to_user(&user, event, payload);
        }
    }
}

/// An order whose end differs from how it was closed or placed.
struct Ended {
    row: OrderRow,
    /// The fill's entry.
    entry: Option<String>,
}

/// Settles orders that `tx` closed from `open` (see `close_open_orders`): one journal entry
/// `fill_entry` for the fills (each owner's legs order by order, the platform's inventory and
/// fee legs netted per account) and one for the holds released, each order's history rows
/// and notice, and its terms where a stop changed them; every account's change summed into
/// one conditional update for the whole batch. The inserts go first and the accounts are locked
/// last, so batches settling side by side hold the shared platform accounts only briefly.
pub(super) async fn settle(
    state: &Core,
    tx: &DatabaseTransaction,
    orders: Vec<(OrderRow, End)>,
    fill_entry: &str,
    mut batch: Batch,
) -> Result<Settled, Failure> {
    let now = now_micros();
    // Each account's change over the whole batch.
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    let mut platform: BTreeMap<(String, String), i64> = BTreeMap::new();
    let (mut trade_legs, mut release_legs) = (Vec::new(), Vec::new());
    let mut changed: Vec<Ended> = Vec::new();
    let mut messages = Vec::new();
    let mut touched: Vec<(String, String)> = Vec::new();
    let mut views = Vec::with_capacity(orders.len());
    let mut noticed: BTreeMap<String, Vec<Notice>> = BTreeMap::new();
    for (mut o, end) in orders {
        let u = o.user_id.clone();
        let u = u.as_str();
        let held_asset = o.held_asset.clone().unwrap_or_default();
        let side = Side::parse(&o.side).unwrap_or(Side::Buy);
        // (asset, owner, kind, amount) of every leg.
        let mut legs: Vec<(String, String, AccountKind, i64)> = Vec::new();
        let mut add = |asset: &str, owner: &str, kind: AccountKind, amount: i64| {
            if amount != 0 {
                legs.push((asset.to_string(), owner.to_string(), kind, amount));
            }
        };
        let (base, quote) = (o.base_asset.clone(), o.quote_asset.clone());
        let (base, quote) = (base.as_str(), quote.as_str());
        let shard = super::shard_owner(super::user_shard(&o.user_id));
        let fill = matches!(end, End::Fill(_));
        match &end {
            End::Fill(t) => {
                match side {
                    Side::Buy => {
                        add(quote, u, AccountKind::OrdersHold, -o.held);
                        add(quote, &shard, AccountKind::TradingInventory, t.value);
                        add(quote, &shard, AccountKind::Fees, t.fee);
                        add(quote, u, AccountKind::Wallet, o.held - t.total);
                        add(base, &shard, AccountKind::TradingInventory, -t.amount);
                        add(base, u, AccountKind::Wallet, t.amount);
                    }
                    Side::Sell => {
                        add(base, u, AccountKind::OrdersHold, -o.held);
                        add(base, &shard, AccountKind::TradingInventory, t.amount);
                        add(quote, &shard, AccountKind::TradingInventory, -t.value);
                        add(quote, u, AccountKind::Wallet, t.total);
                        add(quote, &shard, AccountKind::Fees, t.fee);
                    }
                }
                let moved =
                    (t.price, t.value, t.fee, t.total) != (o.price, o.value, o.fee, o.total);
                (o.price, o.value, o.fee, o.total) = (t.price, t.value, t.fee, t.total);
                o.status = "filled".into();
                if moved {
                    changed.push(Ended {
                        row: o.clone(),
                        entry: Some(fill_entry.to_string()),
                    });
                }
            }
            End::Release(status, reason) => {
                add(&held_asset, u, AccountKind::OrdersHold, -o.held);
                add(&held_asset, u, AccountKind::Wallet, o.held);
                let was = std::mem::replace(&mut o.status, (*status).to_string());
                o.reason = Some((*reason).to_string());
                if was != *status {
                    // Closed as a fill, ended otherwise: a stop rejected when it triggered.
                    changed.push(Ended {
                        row: o.clone(),
                        entry: None,
                    });
                }
            }
        };
        for (asset, owner, kind, amount) in legs {
            let id = account_id(&owner, kind, &asset);
            *deltas.entry(id.clone()).or_insert(0) += amount;
            match (fill, owner == u) {
                // The platform's side of the fills, netted per account.
                (true, false) => *platform.entry((id, asset)).or_insert(0) += amount,
                (true, true) => trade_legs.push((id, asset, amount)),
                (false, _) => release_legs.push((id, asset, amount)),
            }
        }
        touched.push((u.to_string(), held_asset.clone()));
        if let End::Fill(t) = &end {
            let other = if held_asset == base { quote } else { base };
            touched.push((u.to_string(), other.to_string()));
            let note = format!("{} {}/{} ({})", side, base, quote, o.kind);
            let (history, b, q) = super::TradeHistory::new(
                state,
                super::TradeRows {
                    user_id: u,
                    base,
                    quote,
                    side,
                    terms: t,
                    note: &note,
                },
            );
            history.queue(&mut batch, fill_entry);
            for view in [b, q] {
                messages.push((u.to_string(), "transaction_update", view));
            }
        }
        o.updated_at = now;
        let view = OrderView::new(state, &o);
        // A notice for what the owner did not do themselves.
        if o.status != "cancelled" {
            noticed
                .entry(u.to_string())
                .or_default()
                .push(order_notice(state, &o, &o.status));
        }
        messages.push((u.to_string(), "order_update", json!(view)));
        views.push(view);
    }
    // One notification per owner per settlement: a tick that fills fifty of someone's orders
    // is one event to them, not fifty.
    for (u, notices) in noticed {
        let n = combined_notice(notices);
        n.queue(&mut batch, &u);
        messages.push((u, "notification", n.view()));
    }
    // One entry for the batch's fills (the owners' legs order by order, the platform's netted)
    // and one for its releases.
    trade_legs.extend(
        platform
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|((id, asset), n)| (id, asset, n)),
    );
    let release_entry = uuid::Uuid::now_v7().to_string();
    for (id, kind, legs) in [
        (fill_entry, EntryKind::Trade, &trade_legs),
        (
            release_entry.as_str(),
            EntryKind::OrderRelease,
            &release_legs,
        ),
    ] {
        if legs.is_empty() {
            continue;
        }
        let memo = format!("{} of resting orders", kind.as_str().replace('_', " "));
        Db::queue_postings(
            &mut batch,
            &EntryHead {
                id,
                kind,
                memo: Some(&memo),
                created_by: None,
            },
            legs.iter().map(|(a, s, n)| (a.as_str(), s.as_str(), *n)),
            now,
        );
    }
    let ends: Vec<OrderEnd<'_>> = changed
        .iter()
        .map(|e| OrderEnd {
            id: &e.row.id,
            status: &e.row.status,
            price: e.row.price,
            value: e.row.value,
            fee: e.row.fee,
            total: e.row.total,
            entry_id: e.entry.as_deref(),
            reason: e.row.reason.as_deref(),
        })
        .collect();
    Db::queue_order_ends(&mut batch, &ends);
    // The accounts a fill credits first were opened before (`open_fill_accounts`); a release
    // only touches accounts its order was paid from.
    state.db.run_batch(tx, batch.merge_inserts()).await?;
    // Every account of the batch changes in one statement, after locking them in id order.
    let ids: Vec<&str> = deltas.keys().map(String::as_str).collect();
    state.db.lock_accounts(tx, &ids).await?;
    let changes: Vec<(&str, i64)> = deltas.iter().map(|(id, d)| (id.as_str(), *d)).collect();
    let balances = state.db.apply_balance_changes(tx, &changes).await?;
    if balances.len() != changes.len() {
        return Err(CoreError::Internal(anyhow::anyhow!(
            "an order's hold no longer covers it ({} of {} accounts changed)",
            balances.len(),
            changes.len()
        ))
        .into());
    }
    touched.sort();
    touched.dedup();
    for (user, asset) in touched {
        let id = account_id(&user, AccountKind::Wallet, &asset);
        if let Some((_, b)) = balances.iter().find(|(a, _)| *a == id) {
            let balance = format_amount(*b, scale_of(state, &asset));
            messages.push((
                user,
                "wallet_update",
                json!({"currency": asset, "balance": balance}),
            ));
        }
    }
    Ok(Settled { views, messages })
}

/// The notices of one owner's orders ended together, as one: the order's own when alone.
fn combined_notice(mut notices: Vec<Notice>) -> Notice {
    const LISTED: usize = 5;
    if notices.len() == 1 {
        return notices.remove(0);
    }
    let count = notices.len();
    let filled = notices
        .iter()
        .filter(|n| n.data["status"] == "filled")
        .count();
    let title = if filled == count {
        format!("{count} of your orders filled")
    } else {
        format!("{count} of your orders ended ({filled} filled)")
    };
    let mut body: Vec<String> = notices
        .iter()
        .take(LISTED)
        .map(|n| format!("{}: {}", n.title.trim_start_matches("Your "), n.body))
        .collect();
    if count > LISTED {
        body.push(format!("and {} more", count - LISTED));
    }
    let orders: Vec<serde_json::Value> = notices.into_iter().map(|n| n.data).collect();
    notice("order", title, body.join("; "), json!({ "orders": orders }))
}

fn order_notice(state: &Core, o: &OrderRow, status: &str) -> Notice {
    let amount = format_amount(o.amount, scale_of(state, &o.base_asset));
    let pair = format!("{}/{}", o.base_asset, o.quote_asset);
    let title = match status {
        "filled" => format!("Your {} order filled", o.kind),
        "expired" => format!("Your {} order expired", o.kind),
        _ => format!("Your {} order did not fill", o.kind),
    };
    let body = match status {
        "filled" => format!(
            "{} {} {} at {} {}",
            o.side,
            amount,
            o.base_asset,
            price_text(o.price),
            o.quote_asset
        ),
        _ => format!(
            "{} {} {} ({pair}): {}; what it held is back in your wallet",
            o.side,
            amount,
            o.base_asset,
            o.reason.as_deref().unwrap_or(status)
        ),
    };
    notice(
        "order",
        title,
        body,
        json!({"order_id": o.id, "pair": pair, "status": status}),
    )
}

/// The terms a crossed order fills at: a limit at its own price, a stop at the market's now,
/// or why it cannot (a buy stop whose cost went past what it holds, or an order the size
/// limits no longer allow at today's price).
pub(super) fn fill_terms(state: &Core, o: &OrderRow) -> End {
    let (Some(base), Some(quote), Some(side)) = (
        state.assets.get(&o.base_asset),
        state.assets.get(&o.quote_asset),
        Side::parse(&o.side),
    ) else {
        return End::Release("rejected", "the pair is no longer traded");
    };
    if o.kind == "limit" {
        return End::Fill(Terms {
            amount: o.amount,
            price: o.price,
            value: o.value,
            fee: o.fee,
            total: o.total,
            usd_cents: 0,
        });
    }
    let pair = Pair { base, quote };
    let priced = usd_price(state, base).and_then(|b| {
        let q = usd_price(state, quote)?;
        let cfg = super::settings::config_for(state, &pair)?;
        super::price_order(&cfg, pair, b, q, side, o.amount)
    });
    match priced {
        Ok(t) if side == Side::Sell || t.total <= o.held => End::Fill(t),
        Ok(_) => End::Release(
            "rejected",
            "the price moved past what the order held when its stop triggered",
        ),
        Err(_) => End::Release(
            "rejected",
            "it could not be priced within the order size limits when its stop triggered",
        ),
    }
}

/// Opens, outside any transaction, the accounts that fills of `orders` may be the first to
/// credit: the owner's wallet of the asset bought or sold for, and the platform's inventory
/// and fee shards of both assets. Opened ahead, they are never inserted by two settling
/// batches at once (the second would wait for the first to commit).
pub(super) async fn open_fill_accounts(state: &Core, orders: &[Resting]) -> Result<(), CoreError> {
    let mut accounts: BTreeMap<String, (String, AccountKind, String)> = BTreeMap::new();
    for r in orders {
        let received = match r.trigger {
            Trigger::BuyLimit | Trigger::BuyStop => &r.base,
            Trigger::SellLimit | Trigger::SellStop => &r.quote,
        };
        let wallet = (r.user_id.clone(), AccountKind::Wallet, received.clone());
        accounts.insert(account_id(&wallet.0, wallet.1, &wallet.2), wallet);
        let shard = super::shard_owner(super::user_shard(&r.user_id));
        for (kind, asset) in [
            (AccountKind::TradingInventory, &r.base),
            (AccountKind::TradingInventory, &r.quote),
            (AccountKind::Fees, &r.quote),
        ] {
            accounts.insert(
                account_id(&shard, kind, asset),
                (shard.clone(), kind, asset.clone()),
            );
        }
    }
    let rows: Vec<(&str, &str, &str, &str)> = accounts
        .iter()
        .map(|(id, (owner, kind, asset))| {
            (id.as_str(), owner.as_str(), kind.as_str(), asset.as_str())
        })
        .collect();
    for chunk in rows.chunks(2_000) {
        state.db.open_accounts(state.db.conn(), chunk).await?;
    }
    Ok(())
}
