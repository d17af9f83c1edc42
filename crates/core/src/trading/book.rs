//! The matcher's index of open limit and stop orders: per pair, four sets ordered by trigger
//! price (buy limits, sell limits, buy stops, sell stops), so a tick finds the orders it
//! crosses with one range per set, O(log n + crossed), never a scan; and one set by expiry.
//! It is a cache of the `orders` table (status `open`), rebuilt from it at start and kept up
//! to date from it: an order it lists may have been filled or cancelled by another instance
//! meanwhile, which the conditional update of the fill finds out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use etx_domain::Side;

/// How an order waits for the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Fills at its price once the buy price (ask) is at or below it.
    BuyLimit,
    /// Fills at its price once the sell price (bid) is at or above it.
    SellLimit,
    /// Becomes a market buy once the ask is at or above it.
    BuyStop,
    /// Becomes a market sell once the bid is at or below it.
    SellStop,
}

impl Trigger {
    pub fn of(side: Side, stop: bool) -> Trigger {
        match (side, stop) {
            (Side::Buy, false) => Trigger::BuyLimit,
            (Side::Sell, false) => Trigger::SellLimit,
            (Side::Buy, true) => Trigger::BuyStop,
            (Side::Sell, true) => Trigger::SellStop,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// Whether a pair quoted at `bid`/`ask` crosses an order of this kind at `price`.
    pub fn crossed(self, price: i64, bid: i64, ask: i64) -> bool {
        match self {
            Trigger::BuyLimit => price >= ask,
            Trigger::SellLimit => price <= bid,
            Trigger::BuyStop => price <= ask,
            Trigger::SellStop => price >= bid,
        }
    }
}

/// One open order as the matcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resting {
    pub id: String,
    pub user_id: String,
    pub base: String,
    pub quote: String,
    pub trigger: Trigger,
    /// The limit or stop price, quote asset × 10^8.
    pub price: i64,
    pub expires_at: Option<i64>,
}

type Key = (i64, String);

#[derive(Default)]
struct PairBook {
    sets: [BTreeSet<Key>; 4],
}

#[derive(Default)]
pub struct Book {
    pairs: HashMap<(String, String), PairBook>,
    orders: HashMap<String, Resting>,
    expiries: BTreeSet<Key>,
}

impl Book {
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Adds an order; false if it is listed already.
    pub fn insert(&mut self, r: Resting) -> bool {
        if self.orders.contains_key(&r.id) {
            return false;
        }
        self.pairs
            .entry((r.base.clone(), r.quote.clone()))
            .or_default()
            .sets[r.trigger.slot()]
        .insert((r.price, r.id.clone()));
        if let Some(at) = r.expires_at {
            self.expiries.insert((at, r.id.clone()));
        }
        self.orders.insert(r.id.clone(), r);
        true
    }

    pub fn remove(&mut self, id: &str) -> Option<Resting> {
        let r = self.orders.remove(id)?;
        let key = (r.price, r.id.clone());
        let pair = (r.base.clone(), r.quote.clone());
        if let Some(p) = self.pairs.get_mut(&pair) {
            p.sets[r.trigger.slot()].remove(&key);
            if p.sets.iter().all(BTreeSet::is_empty) {
                self.pairs.remove(&pair);
            }
        }
        if let Some(at) = r.expires_at {
            self.expiries.remove(&(at, r.id.clone()));
        }
        Some(r)
    }

    /// The pairs that have open orders.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.pairs.keys().cloned().collect();
        v.sort();
        v
    }

    /// Takes out up to `max` orders of `pair` that a quote of `bid`/`ask` crosses, best
    /// trigger first within each kind.
    pub fn take_crossed(
        &mut self,
        pair: &(String, String),
        bid: i64,
        ask: i64,
        max: usize,
    ) -> Vec<Resting> {
        let Some(p) = self.pairs.get(pair) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = Vec::new();
        for t in [
            Trigger::BuyLimit,
            Trigger::SellLimit,
            Trigger::BuyStop,
            Trigger::SellStop,
        ] {
            let set = &p.sets[t.slot()];
            let room = max - ids.len();
            if room == 0 {
                break;
            }
            // Every range starts or ends at the quote, so only crossed orders are visited.
            let found: Vec<String> = match t {
                Trigger::BuyLimit => set
                    .range((ask, String::new())..)
                    .rev()
                    .take(room)
                    .map(|k| k.1.clone())
                    .collect(),
                Trigger::SellLimit => set
                    .range(..(bid.saturating_add(1), String::new()))
                    .take(room)
                    .map(|k| k.1.clone())
                    .collect(),
                Trigger::BuyStop => set
                    .range(..(ask.saturating_add(1), String::new()))
                    .take(room)
                    .map(|k| k.1.clone())
                    .collect(),
                Trigger::SellStop => set
                    .range((bid, String::new())..)
                    .rev()
                    .take(room)
                    .map(|k| k.1.clone())
                    .collect(),
            };
            ids.extend(found);
        }
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Takes out up to `max` orders whose time ran out at `now`.
    pub fn take_expired(&mut self, now: i64, max: usize) -> Vec<Resting> {
        let ids: Vec<String> = self
            .expiries
            .range(..(now.saturating_add(1), String::new()))
            .take(max)
            .map(|k| k.1.clone())
            .collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }
}

/// The book shared by the matcher and the requests that place and cancel orders.
#[derive(Default)]
pub struct OrderBook(Mutex<Book>);

impl OrderBook {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(i: u32, pair: u8, t: u8, price: i64, exp: Option<i64>) -> Resting {
        let triggers = [
            Trigger::BuyLimit,
            Trigger::SellLimit,
            Trigger::BuyStop,
            Trigger::SellStop,
        ];
        Resting {
            id: format!("o{i:05}"),
            user_id: "u".into(),
            base: ["BTC", "ETH"][usize::from(pair % 2)].into(),
            quote: "USD".into(),
            trigger: triggers[usize::from(t % 4)],
            price,
            expires_at: exp,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, i64, Option<i64>),
        Remove(u32),
        Tick(u8, i64, i64, usize),
        Expire(i64, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..2, 0u8..4, 90i64..110, prop::option::of(0i64..50))
                .prop_map(|(p, t, x, e)| Op::Insert(p, t, x, e)),
            1 => (0u32..40).prop_map(Op::Remove),
            2 => (0u8..2, 90i64..110, 0i64..4, 1usize..6)
                .prop_map(|(p, b, s, m)| Op::Tick(p, b, b + s, m)),
            1 => (0i64..50, 1usize..6).prop_map(|(n, m)| Op::Expire(n, m)),
        ]
    }

    proptest! {
        /// Against a plain list scanned in full: the same orders are crossed, expired and
        /// left, and an order taken once is never taken again.
        #[test]
        fn the_index_finds_exactly_what_a_full_scan_finds(ops in prop::collection::vec(op(), 1..120)) {
            let mut book = Book::default();
            let mut model: Vec<Resting> = Vec::new();
            let mut taken = std::collections::HashSet::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(p, t, x, e) => {
                        let o = order(next, p, t, x, e);
                        next += 1;
                        prop_assert!(book.insert(o.clone()));
                        prop_assert!(!book.insert(o.clone()));
                        model.push(o);
                    }
                    Op::Remove(i) => {
                        let id = format!("o{i:05}");
                        let expect = model.iter().position(|o| o.id == id).map(|k| model.remove(k));
                        prop_assert_eq!(book.remove(&id), expect);
                    }
                    Op::Tick(p, bid, ask, max) => {
                        let pair = (["BTC", "ETH"][usize::from(p)].to_string(), "USD".to_string());
                        let got = book.take_crossed(&pair, bid, ask, max);
                        let crossed: Vec<&Resting> = model
                            .iter()
                            .filter(|o| (o.base.clone(), o.quote.clone()) == pair && o.trigger.crossed(o.price, bid, ask))
                            .collect();
                        prop_assert_eq!(got.len(), crossed.len().min(max));
                        for o in &got {
                            prop_assert!(o.trigger.crossed(o.price, bid, ask));
                            prop_assert!(taken.insert(o.id.clone()), "taken twice");
                        }
                        model.retain(|o| !got.contains(o));
                    }
                    Op::Expire(now, max) => {
                        let got = book.take_expired(now, max);
                        let due = model.iter().filter(|o| o.expires_at.is_some_and(|e| e <= now)).count();
                        prop_assert_eq!(got.len(), due.min(max));
                        for o in &got {
                            prop_assert!(o.expires_at.unwrap() <= now);
                            prop_assert!(taken.insert(o.id.clone()), "taken twice");
                        }
                        model.retain(|o| !got.contains(o));
                    }
                }
                prop_assert_eq!(book.len(), model.len());
            }
            let mut left: Vec<String> = model.iter().map(|o| o.id.clone()).collect();
            left.sort();
            let mut listed: Vec<String> = book.orders.keys().cloned().collect();
            listed.sort();
            prop_assert_eq!(left, listed);
        }
    }

    #[test]
    fn a_tick_takes_the_best_priced_orders_first() {
        let mut book = Book::default();
        for (i, p) in [100, 105, 103, 99].into_iter().enumerate() {
            book.insert(order(i as u32, 0, 0, p, None));
        }
        let pair = ("BTC".to_string(), "USD".to_string());
        let got = book.take_crossed(&pair, 98, 100, 2);
        let prices: Vec<i64> = got.iter().map(|o| o.price).collect();
        assert_eq!(prices, [105, 103]);
        assert_eq!(book.take_crossed(&pair, 98, 100, 10).len(), 1);
        assert_eq!(book.len(), 1);
    }
}
