//! A user's portfolio: what they hold (from the ledger's balances, available and held), what
//! it is worth at live prices, what it cost and what they made.
//!
//! Cost basis is the average cost: every acquisition adds its amount and what it was worth
//! when it happened (a fill: what was paid for it, fee included; a deposit: its value when it
//! was credited; a transfer in: its value at that moment) to the asset's position; every
//! disposal takes out the position's average cost for its amount. A sale (a fill) realises
//! the difference between what it received and that cost; a withdrawal or a transfer out
//! realises nothing, it only takes its share of the cost away. The history rows carry those
//! values (`transactions.usd_value`); rows written before there was one count at today's
//! price. US dollars are the unit: their cost is their amount and they make no P&L.
//!
//! Value over time is one point per UTC day: the balances at that day's end (today's balances
//! walked back through the history) at that day's closing price (the feed's daily candles),
//! and today from live prices. It is computed, so a day is right whenever it is asked for.

use crate::Core;
use crate::CoreError;
use crate::ledger::{PRICE_ONE, cents_of};
use etx_db::now_micros;
use etx_db::portfolio::MovementRow;
use etx_domain::AccountKind;
use std::collections::BTreeMap;

const DAY: i64 = 86_400_000_000;

/// One asset's running position while the history is replayed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Position {
    /// Minor units.
    pub qty: i128,
    /// US cents.
    pub cost: i128,
    pub realised: i128,
}

impl Position {
    /// Applies one movement worth `usd` cents; `sale` realises against the average cost.
    pub fn apply(&mut self, incoming: bool, amount: i128, usd: i128, sale: bool) {
        if incoming {
            self.qty += amount;
            self.cost += usd;
            return;
        }
        let taken = amount.min(self.qty.max(0));
        let cost_out = if self.qty > 0 {
            self.cost * taken / self.qty
        } else {
            0
        };
        if sale {
            // Any part sold beyond the known position had no recorded cost: all of it is gain.
            self.realised += usd - cost_out;
        }
        self.qty -= amount;
        self.cost -= cost_out;
        if self.qty <= 0 {
            self.qty = 0;
            self.cost = 0;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Holding {
    pub asset: String,
    pub scale: u8,
    pub available: i64,
    pub held: i64,
    /// USD × 10^8, if the feed has a price.
    pub price: Option<i64>,
    /// US cents.
    pub value: Option<i64>,
    pub cost_basis: Option<i64>,
    pub unrealised: Option<i64>,
    pub realised: i64,
    /// Basis points of the portfolio's value.
    pub allocation_bps: Option<i64>,
}

impl Holding {
    pub fn total(&self) -> i64 {
        self.available + self.held
    }

    /// USD × 10^8 per whole unit.
    pub fn avg_cost(&self) -> Option<i64> {
        let total = i128::from(self.total());
        let cost = i128::from(self.cost_basis?);
        (total > 0).then(|| {
            i64::try_from(cost * (PRICE_ONE / 100) * 10i128.pow(u32::from(self.scale)) / total)
                .unwrap_or(i64::MAX)
        })
    }
}

#[derive(Debug, Clone)]
pub struct Portfolio {
    pub holdings: Vec<Holding>,
    /// US cents.
    pub value: i64,
    pub cost_basis: i64,
    pub unrealised: i64,
    pub realised: i64,
    /// (day start in micros, value in cents), oldest first; the last is today at live prices.
    pub history: Vec<(i64, i64)>,
    /// The feed is stale: values are at the last prices it gave.
    pub stale: bool,
}

/// Replays movements into positions per asset.
pub fn replay<'a>(
    rows: impl IntoIterator<Item = &'a MovementRow>,
    value_now: impl Fn(&str, i64) -> Option<i64>,
) -> BTreeMap<String, Position> {
    let mut out: BTreeMap<String, Position> = BTreeMap::new();
    for r in rows {
        let incoming = r.direction == "in";
        let amount = i128::from(r.amount) + if incoming { 0 } else { i128::from(r.fee) };
        let usd = r
            .usd_value
            .or_else(|| value_now(&r.asset, r.amount))
            .unwrap_or(0);
        out.entry(r.asset.clone()).or_default().apply(
            incoming,
            amount,
            i128::from(usd),
            r.r#type == "trade",
        );
    }
    out
}

pub async fn portfolio(state: &Core, user_id: &str, days: i64) -> Result<Portfolio, CoreError> {
    let price_of = |asset: &str| -> Option<i64> {
        if asset == "USD" {
            Some(PRICE_ONE as i64)
        } else {
            state
                .market
                .quote(asset)
                .map(|q| q.price)
                .filter(|p| *p > 0)
        }
    };
    let scale_of = |asset: &str| state.assets.get(asset).map_or(2, |a| a.scale);
    let worth = |asset: &str, amount: i64, price: i64| -> i64 {
        i64::try_from(cents_of(
            i128::from(amount),
            i128::from(price),
            scale_of(asset),
        ))
        .unwrap_or(i64::MAX)
    };

    let mut balances: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for h in state.db.holdings(user_id).await? {
        let e = balances.entry(h.asset).or_default();
        if h.kind == AccountKind::Wallet.as_str() {
            e.0 += h.balance;
        } else {
            e.1 += h.balance;
        }
    }
    let rows = state.db.movements(user_id).await?;
    let positions = replay(&rows, |asset, amount| {
        price_of(asset).map(|p| worth(asset, amount, p))
    });

    let mut assets: Vec<String> = balances.keys().cloned().collect();
    for (a, p) in &positions {
        if p.realised != 0 && !balances.contains_key(a) {
            assets.push(a.clone());
        }
    }
    assets.sort();
    let mut holdings = Vec::new();
    for asset in assets {
        let (available, held) = balances.get(&asset).copied().unwrap_or((0, 0));
        let total = available + held;
        let price = price_of(&asset);
        let value = price.map(|p| worth(&asset, total, p));
        let pos = positions.get(&asset).cloned().unwrap_or_default();
        let cost_basis = if asset == "USD" {
            value
        } else if pos.qty > 0 {
            // The replay's quantity can differ from the ledger's by what is on hold for review;
            // the average cost applies to what the ledger says is held.
            i64::try_from(pos.cost * i128::from(total) / pos.qty).ok()
        } else if total == 0 {
            Some(0)
        } else {
            None
        };
        let unrealised = match (value, cost_basis) {
            (Some(v), Some(c)) if asset != "USD" => Some(v - c),
            (Some(_), Some(_)) => Some(0),
            _ => None,
        };
        holdings.push(Holding {
            scale: scale_of(&asset),
            asset,
            available,
            held,
            price,
            value,
            cost_basis,
            unrealised,
            realised: i64::try_from(pos.realised).unwrap_or(0),
            allocation_bps: None,
        });
    }
    let value: i64 = holdings.iter().filter_map(|h| h.value).sum();
    for h in &mut holdings {
        h.allocation_bps = match h.value {
            Some(v) if value > 0 => Some(v * 10_000 / value),
            _ => None,
        };
    }
    let history = history(state, &balances, &rows, days, value, scale_of).await?;
    Ok(Portfolio {
        cost_basis: holdings.iter().filter_map(|h| h.cost_basis).sum(),
        unrealised: holdings.iter().filter_map(|h| h.unrealised).sum(),
        realised: holdings.iter().map(|h| h.realised).sum(),
        value,
        holdings,
        history,
        stale: state.market.is_stale(),
    })
}

/// The value at the end of each of the last `days` UTC days before today, then today's.
async fn history(
    state: &Core,
    balances: &BTreeMap<String, (i64, i64)>,
    rows: &[MovementRow],
    days: i64,
    today_value: i64,
    scale_of: impl Fn(&str) -> u8,
) -> Result<Vec<(i64, i64)>, CoreError> {
    let today = now_micros().div_euclid(DAY) * DAY;
    let first = today - days * DAY;
    // Balances at the end of each day, walking back from now.
    let mut qty: BTreeMap<String, i128> = balances
        .iter()
        .map(|(a, (av, h))| (a.clone(), i128::from(*av + *h)))
        .collect();
    let mut ends: Vec<BTreeMap<String, i128>> = Vec::with_capacity(days as usize);
    let mut next = rows.len();
    for d in (0..days).rev() {
        let end = first + (d + 1) * DAY;
        while next > 0 && rows[next - 1].created_at >= end {
            next -= 1;
            let r = &rows[next];
            let q = qty.entry(r.asset.clone()).or_default();
            if r.direction == "in" {
                *q -= i128::from(r.amount);
            } else {
                *q += i128::from(r.amount) + i128::from(r.fee);
            }
        }
        ends.push(qty.clone());
    }
    ends.reverse();
    let mut closes: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let assets: std::collections::BTreeSet<&String> = ends.iter().flat_map(|m| m.keys()).collect();
    for asset in assets {
        if asset == "USD" {
            continue;
        }
        let candles = state
            .db
            .candles(asset, "1d", first - 30 * DAY, today, days as u64 + 31)
            .await?;
        closes.insert(
            asset.clone(),
            candles.iter().map(|c| (c.start, c.close)).collect(),
        );
    }
    let mut out = Vec::with_capacity(days as usize + 1);
    for (d, held) in ends.iter().enumerate() {
        let start = first + d as i64 * DAY;
        let mut cents: i128 = 0;
        for (asset, q) in held {
            if *q <= 0 {
                continue;
            }
            let price = if asset == "USD" {
                Some(PRICE_ONE as i64)
            } else {
                // The last close on or before that day; before the first candle, the first.
                closes.get(asset).and_then(|c| {
                    c.iter()
                        .rev()
                        .find(|(s, _)| *s <= start)
                        .or(c.first())
                        .map(|(_, p)| *p)
                })
            };
            if let Some(p) = price {
                cents += cents_of(*q, i128::from(p), scale_of(asset));
            }
        }
        out.push((start, i64::try_from(cents).unwrap_or(i64::MAX)));
    }
    out.push((today, today_value));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, dir: &str, amount: i64, usd: i64) -> MovementRow {
        MovementRow {
            r#type: t.into(),
            direction: dir.into(),
            asset: "BTC".into(),
            amount,
            fee: 0,
            usd_value: Some(usd),
            created_at: 0,
        }
    }

    #[test]
    fn average_cost_and_realised_gain() {
        // Buy 1 BTC for 100 $, 1 for 300 $: average 200 $. Sell 1 for 250 $: +50 $ realised,
        // the remaining one still costs 200 $.
        let rows = [
            row("trade", "in", 100_000_000, 10_000),
            row("trade", "in", 100_000_000, 30_000),
            row("trade", "out", 100_000_000, 25_000),
        ];
        let p = &replay(&rows, |_, _| None)["BTC"];
        assert_eq!(p.qty, 100_000_000);
        assert_eq!(p.cost, 20_000);
        assert_eq!(p.realised, 5_000);
    }

    #[test]
    fn transfers_out_take_cost_without_realising() {
        let rows = [
            row("deposit", "in", 200_000_000, 40_000),
            row("p2p", "out", 100_000_000, 99_999),
        ];
        let p = &replay(&rows, |_, _| None)["BTC"];
        assert_eq!((p.qty, p.cost, p.realised), (100_000_000, 20_000, 0));
    }

    #[test]
    fn selling_everything_resets_the_position() {
        let rows = [
            row("trade", "in", 50, 1_000),
            row("trade", "out", 50, 800),
            row("trade", "in", 10, 500),
        ];
        let p = &replay(&rows, |_, _| None)["BTC"];
        assert_eq!((p.qty, p.cost, p.realised), (10, 500, -200));
    }

    #[test]
    fn rows_without_a_value_count_at_the_price_given() {
        let mut r = row("deposit", "in", 100, 0);
        r.usd_value = None;
        let p = &replay([&r], |_, amount| Some(amount * 3))["BTC"];
        assert_eq!(p.cost, 300);
    }
}

/// What the home page leads with: everything held (available and on hold) at live prices,
/// and how much that same holding moved over the last 24 hours.
#[derive(Debug, Clone)]
pub struct Worth {
    /// US cents.
    pub value: i64,
    /// US cents; `None` while no asset held has 24 hours of price history.
    pub change_24h: Option<i64>,
    /// Basis points of the value 24 hours ago.
    pub change_bps: Option<i64>,
    pub lines: Vec<WorthLine>,
}

#[derive(Debug, Clone)]
pub struct WorthLine {
    pub asset: String,
    pub scale: u8,
    /// Available plus held, minor units.
    pub total: i64,
    /// USD × 10^8 now and 24 hours ago (US dollars: one, both).
    pub price: Option<i64>,
    pub open_24h: Option<i64>,
    /// US cents at the live price.
    pub value: Option<i64>,
}

pub async fn worth(state: &Core, user_id: &str) -> Result<Worth, CoreError> {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for h in state.db.holdings(user_id).await? {
        *totals.entry(h.asset).or_default() += h.balance;
    }
    let mut lines = Vec::new();
    for (asset, total) in totals.into_iter().filter(|(_, t)| *t != 0) {
        let scale = state.assets.get(&asset).map_or(2, |a| a.scale);
        let (price, open_24h) = if asset == "USD" {
            (Some(PRICE_ONE as i64), Some(PRICE_ONE as i64))
        } else {
            let price = state
                .market
                .quote(&asset)
                .map(|q| q.price)
                .filter(|p| *p > 0);
            let open = crate::market::day_candles(state, &asset)
                .await?
                .first()
                .map(|c| c.open)
                .filter(|p| *p > 0);
            (price, open)
        };
        let at = |p: i64| i64::try_from(cents_of(i128::from(total), i128::from(p), scale)).ok();
        lines.push(WorthLine {
            value: price.and_then(at),
            asset,
            scale,
            total,
            price,
            open_24h,
        });
    }
    let value = lines.iter().filter_map(|l| l.value).sum();
    // The change of what is held now: assets without a price 24 hours ago count as unchanged.
    let mut before = 0i64;
    let mut known = false;
    for l in &lines {
        let then = match (l.open_24h, l.value) {
            (Some(open), _) => {
                known |= l.asset != "USD";
                i64::try_from(cents_of(i128::from(l.total), i128::from(open), l.scale)).ok()
            }
            (None, v) => v,
        };
        before += then.unwrap_or(0);
    }
    let change_24h = known.then_some(value - before);
    let change_bps = change_24h
        .filter(|_| before > 0)
        .map(|c| (i128::from(c) * 10_000 / i128::from(before)) as i64);
    Ok(Worth {
        value,
        change_24h,
        change_bps,
        lines,
    })
}
