//! Live prices: the price book every feature reads, the feeds that move it, and the recorder
//! that turns ticks into stored candles. Prices are integer USD with 8 decimal places.

use crate::ledger::AssetConfig;
use bytes::Bytes;
use etx_db::market::{CandleRow, TickRow};
use etx_db::now_micros;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

pub mod coinbase;

pub const PRICE_SCALE: u8 = 8;
const MINUTE: i64 = 60_000_000;

/// Candle spans and their length in microseconds.
pub const SPANS: [(&str, i64); 4] = [
    ("1m", MINUTE),
    ("5m", 5 * MINUTE),
    ("1h", 60 * MINUTE),
    ("1d", 24 * 60 * MINUTE),
];

pub fn span_len(span: &str) -> Option<i64> {
    SPANS.iter().find(|(s, _)| *s == span).map(|(_, l)| *l)
}

#[derive(Debug, Clone)]
pub struct Tick {
    pub symbol: String,
    pub price: i64,
    pub at: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Quote {
    pub price: i64,
    pub at: i64,
}

/// A price as decimal text: at least two decimals, no trailing zeros beyond them.
pub fn price_text(price: i64) -> String {
    let mut s = etx_domain::money::format_amount(price, PRICE_SCALE);
    if let Some(dot) = s.find('.') {
        let keep = (dot + 3).max(s.trim_end_matches('0').len());
        s.truncate(keep.min(s.len()));
    }
    s
}

#[derive(Default)]
struct Book {
    quotes: BTreeMap<String, Quote>,
    /// The open candle per (symbol, span index), holding only what changed since the last
    /// flush: the stored row keeps its first open, so a flushed candle restarts from its close.
    partials: HashMap<(String, usize), CandleRow>,
    finished: Vec<CandleRow>,
    ticks: Vec<(String, i64, i64)>,
    last_tick_second: HashMap<String, i64>,
}

impl Book {
    fn add(&mut self, t: &Tick) {
        self.quotes.insert(
            t.symbol.clone(),
            Quote {
                price: t.price,
                at: t.at,
            },
        );
        let second = t.at.div_euclid(1_000_000);
        if self.last_tick_second.get(&t.symbol) != Some(&second) {
            self.last_tick_second.insert(t.symbol.clone(), second);
            self.ticks.push((t.symbol.clone(), t.at, t.price));
        }
        for (i, (span, len)) in SPANS.iter().enumerate() {
            let start = t.at - t.at.rem_euclid(*len);
            let fresh = CandleRow {
                symbol: t.symbol.clone(),
                span: (*span).to_string(),
                start,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                ticks: 1,
            };
            match self.partials.get_mut(&(t.symbol.clone(), i)) {
                Some(c) if c.start == start => {
                    c.high = c.high.max(t.price);
                    c.low = c.low.min(t.price);
                    c.close = t.price;
                    c.ticks += 1;
                }
                Some(c) if c.start < start => {
                    let done = std::mem::replace(c, fresh);
                    if done.ticks > 0 {
                        self.finished.push(done);
                    }
                }
                // A tick older than the open candle (a feed replaying) is not charted.
                Some(_) => {}
                None => {
                    self.partials.insert((t.symbol.clone(), i), fresh);
                }
            }
        }
    }

    fn drain(&mut self) -> (Vec<(String, i64, i64)>, Vec<CandleRow>) {
        let mut candles = std::mem::take(&mut self.finished);
        for c in self.partials.values_mut().filter(|c| c.ticks > 0) {
            candles.push(c.clone());
            c.open = c.close;
            c.high = c.close;
            c.low = c.close;
            c.ticks = 0;
        }
        (std::mem::take(&mut self.ticks), candles)
    }
}

/// One published `price_update` message (UTF-8 JSON); `seq` grows by one per update.
#[derive(Clone)]
pub struct Update {
    pub seq: u64,
    pub text: Bytes,
}

/// The price book: latest quote per symbol, a feed of ready-made `price_update` messages for
/// WebSocket clients, and the ticks and candles waiting to be stored.
/// A day of candles and when it was read.
type DayRead = (i64, std::sync::Arc<Vec<CandleRow>>);

pub struct Market {
    pub source: &'static str,
    pub symbols: Vec<String>,
    /// Reference prices from the asset config: the simulated feed's anchors.
    anchors: HashMap<String, i64>,
    book: Mutex<Book>,
    updates: watch::Sender<Update>,
    last_tick: AtomicI64,
    stale_after: i64,
    malformed: std::sync::atomic::AtomicU64,
    /// The last day of 5-minute candles per symbol and when it was read: every market page
    /// and the home page's 24-hour change start from it, and it changes every five minutes.
    day: Mutex<HashMap<String, DayRead>>,
    day_fresh_micros: i64,
}

impl Market {
    pub fn new(cfg: &MarketConfig, assets: &[AssetConfig]) -> anyhow::Result<Market> {
        let source = match cfg.provider {
            PriceFeed::Simulated => "simulated",
            PriceFeed::Coinbase => "coinbase",
        };
        let now = now_micros();
        let mut anchors = HashMap::new();
        let mut book = Book::default();
        let mut symbols = Vec::new();
        for a in assets.iter().filter(|a| a.code != "USD") {
            let price = etx_domain::money::parse_amount(&a.usd_price, PRICE_SCALE)
                .map_err(|e| anyhow::anyhow!("asset {} usd_price: {e}", a.code))?;
            anchors.insert(a.code.clone(), price);
            book.quotes.insert(a.code.clone(), Quote { price, at: now });
            symbols.push(a.code.clone());
        }
        let updates = watch::Sender::new(Update {
            seq: 0,
            text: Bytes::new(),
        });
        let market = Market {
            source,
            symbols,
            anchors,
            book: Mutex::new(book),
            day: Mutex::new(HashMap::new()),
            day_fresh_micros: i64::try_from(cfg.day_cache_ms)
                .unwrap_or(0)
                .saturating_mul(1000),
            updates,
            last_tick: AtomicI64::new(now),
            malformed: std::sync::atomic::AtomicU64::new(0),
            stale_after: i64::try_from(cfg.stale_after_secs).unwrap_or(i64::MAX / 2) * 1_000_000,
        };
        market.publish();
        Ok(market)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes ticks from a feed. Unknown symbols and non-positive prices are dropped.
    pub fn apply(&self, ticks: &[Tick]) -> usize {
        let mut taken = 0;
        {
            let mut book = self.book();
            for t in ticks {
                if t.price > 0 && self.anchors.contains_key(&t.symbol) {
                    book.add(t);
                    taken += 1;
                }
            }
        }
        if taken > 0 {
            self.last_tick.fetch_max(now_micros(), Ordering::Relaxed);
            self.publish();
        }
        taken
    }

    fn publish(&self) {
        let quotes = self.quotes();
        let prices: serde_json::Map<String, serde_json::Value> = quotes
            .iter()
            .map(|(s, q)| (s.clone(), price_text(q.price).into()))
            .collect();
        let msg = serde_json::json!({
            "type": "price_update",
            "prices": prices,
            "source": self.source,
            "timestamp": crate::time::rfc3339(now_micros()),
        });
        let text = Bytes::from(msg.to_string());
        self.updates.send_modify(|u| {
            u.seq += 1;
            u.text = text;
        });
    }

    pub fn quotes(&self) -> BTreeMap<String, Quote> {
        self.book().quotes.clone()
    }

    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        self.book().quotes.get(symbol).copied()
    }

    /// The newest `price_update` message, and a receiver that wakes on each new one. A slow
    /// reader only ever sees the latest: nothing queues up behind it.
    pub fn subscribe(&self) -> watch::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Waits for the next price update (`Some(false)`) or tick of `every` (`Some(true)`);
    /// `None` once the book is gone. For tasks that act on every price and also on a timer.
    pub async fn next_wake(
        updates: &mut watch::Receiver<Update>,
        every: &mut tokio::time::Interval,
    ) -> Option<bool> {
        tokio::select! {
            r = updates.changed() => r.ok().map(|()| false),
            _ = every.tick() => Some(true),
        }
    }

    /// A timer for `next_wake` that does not catch up on ticks it missed.
    pub fn timer(every: Duration) -> tokio::time::Interval {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    }

    pub fn last_tick(&self) -> i64 {
        self.last_tick.load(Ordering::Relaxed)
    }

    /// No tick for longer than `stale_after_secs`.
    pub fn is_stale(&self) -> bool {
        now_micros() - self.last_tick() > self.stale_after
    }

    /// Counts a message from a feed that was not what its format documents.
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("etx_market_malformed_messages_total").increment(1);
    }

    pub fn malformed_count(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    fn anchor(&self, symbol: &str) -> Option<i64> {
        self.anchors.get(symbol).copied()
    }
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64's finaliser: a cheap, well-spread hash of the lattice coordinates.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn symbol_seed(symbol: &str) -> u64 {
    symbol.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Period (ms) and amplitude (parts per million) of each layer of the simulated movement:
/// quick jitter on top of slower swings, at most about ±11 % around the reference price.
const OCTAVES: [(i64, i64); 5] = [
    (15_000, 1_500),
    (120_000, 5_000),
    (900_000, 12_000),
    (7_200_000, 30_000),
    (86_400_000, 60_000),
];

/// The simulated price of `symbol` at `at_ms`: smooth value noise around the reference price,
/// a pure function of the symbol and the time. Every instance (and every restart) computes
/// the same price for the same moment, so instances agree without talking to each other.
/// Assets whose reference is 1 USD move 200 times less.
pub fn simulated_price(symbol: &str, anchor: i64, at_ms: i64) -> i64 {
    let seed = symbol_seed(symbol);
    let stable = anchor == 10_i64.pow(u32::from(PRICE_SCALE));
    let mut ppm: i128 = 0;
    for (k, (period, amp)) in OCTAVES.iter().enumerate() {
        let i = at_ms.div_euclid(*period);
        let f = i128::from(at_ms.rem_euclid(*period)) * 1_000_000 / i128::from(*period);
        let point = |i: i64| {
            let h = mix(seed ^ mix(((k as u64) << 56) ^ i as u64));
            i128::from((h % 2_000_001) as i64 - 1_000_000)
        };
        let (a, b) = (point(i), point(i + 1));
        // Smoothstep between lattice points: no kinks at the boundaries.
        let s = f * f * (3_000_000 - 2 * f) / 1_000_000_000_000;
        let v = a + (b - a) * s / 1_000_000;
        ppm += v * i128::from(*amp) / 1_000_000;
    }
    if stable {
        ppm /= 200;
    }
    let price = i128::from(anchor) * (1_000_000 + ppm) / 1_000_000;
    i64::try_from(price.max(1)).unwrap_or(anchor)
}

/// How many past candles of each span the simulated feed fills in at start: enough for every
/// range the charts offer (an hour of minutes, a day of 5 minutes, a week of hours, a
/// quarter of days) and for the 24-hour statistics.
pub const BACKFILL: [(&str, i64); 4] = [("1m", 240), ("5m", 300), ("1h", 180), ("1d", 100)];

/// Price samples per back-filled candle: the open, the close and evenly spaced points between
/// for the high and low.
const BACKFILL_SAMPLES: i64 = 60;

/// The simulated feed's candles before `now`: its prices are a function of time, so its past
/// is known and a fresh install's charts have history from the first minute. Only candles
/// that ended before the current one of their span are written, and only where none is
/// stored, so recorded candles and other instances' work are left alone. `retention` gives,
/// per span, how far back stored candles are kept (none beyond it is written).
pub fn simulated_history(
    market: &Market,
    now: i64,
    retention: impl Fn(&str) -> Option<i64>,
) -> Vec<CandleRow> {
    let mut out = Vec::new();
    for (span, count) in BACKFILL {
        let Some(len) = span_len(span) else { continue };
        let current = now - now.rem_euclid(len);
        let oldest = retention(span).map_or(i64::MIN, |keep| now - keep);
        for symbol in &market.symbols {
            let Some(anchor) = market.anchor(symbol) else {
                continue;
            };
            for k in (1..=count).rev() {
                let start = current - k * len;
                if start < oldest {
                    continue;
                }
                let step = (len / BACKFILL_SAMPLES).max(1);
                let at = |t: i64| simulated_price(symbol, anchor, t / 1000);
                let open = at(start);
                let close = at(start + len - step);
                let (mut high, mut low) = (open.max(close), open.min(close));
                for i in 1..BACKFILL_SAMPLES {
                    let p = at(start + i * step);
                    high = high.max(p);
                    low = low.min(p);
                }
                out.push(CandleRow {
                    symbol: symbol.clone(),
                    span: span.into(),
                    start,
                    open,
                    high,
                    low,
                    close,
                    ticks: BACKFILL_SAMPLES,
                });
            }
        }
    }
    out
}

/// Writes the simulated feed's past candles (see `simulated_history`).
pub async fn backfill_simulated(state: &crate::Core) -> Result<usize, etx_db::DbErr> {
    let m = &state.config.market;
    let rows = simulated_history(&state.market, now_micros(), |s| m.candle_retention(s));
    state.db.insert_missing_candles(&rows).await?;
    Ok(rows.len())
}

/// The default feed: every `tick_ms` (on the clock's boundaries, the same on every instance),
/// each symbol's simulated price. Labelled `source: "simulated"` wherever it is shown.
pub async fn run_simulated(market: std::sync::Arc<Market>, every: Duration) {
    let step_ms = i64::try_from(every.as_millis()).unwrap_or(1000).max(1);
    // The book starts at the reference prices; the first step comes one period later.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = i64::MIN;
    loop {
        tick.tick().await;
        let now_ms = now_micros() / 1000;
        let at_ms = now_ms - now_ms.rem_euclid(step_ms);
        if at_ms == last {
            continue;
        }
        last = at_ms;
        let ticks: Vec<Tick> = market
            .symbols
            .iter()
            .filter_map(|s| {
                Some(Tick {
                    symbol: s.clone(),
                    price: simulated_price(s, market.anchor(s)?, at_ms),
                    at: at_ms * 1000,
                })
            })
            .collect();
        market.apply(&ticks);
    }
}

/// Writes buffered ticks and candle changes to the database.
pub async fn flush(state: &crate::Core) -> Result<(), etx_db::DbErr> {
    let (ticks, candles) = state.market.book().drain();
    let rows: Vec<TickRow<'_>> = ticks
        .iter()
        .map(|(symbol, at, price)| TickRow {
            symbol,
            at: *at,
            price: *price,
        })
        .collect();
    state.db.insert_ticks(&rows).await?;
    state.db.merge_candles(&candles).await
}

/// Stores ticks and candles every `every`, until aborted.
pub fn spawn_recorder(state: crate::Core, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = flush(&state).await {
                tracing::warn!(error = %e, "market data not stored; will retry");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, price: i64, at: i64) -> Tick {
        Tick {
            symbol: symbol.into(),
            price,
            at,
        }
    }

    #[test]
    fn prices_read_as_decimals() {
        assert_eq!(price_text(6_500_012_345_000), "65000.12345");
        assert_eq!(price_text(100_000_000), "1.00");
        assert_eq!(price_text(123_456_789), "1.23456789");
        assert_eq!(price_text(5_000_000), "0.05");
    }

    #[test]
    fn candles_restart_from_their_close_after_a_flush() {
        let mut b = Book::default();
        let m = 10 * MINUTE;
        b.add(&tick("BTC", 100, m));
        b.add(&tick("BTC", 120, m + 1_000_000));
        b.add(&tick("BTC", 90, m + 2_000_000));
        let (ticks, candles) = b.drain();
        assert_eq!(ticks.len(), 3);
        let one = candles.iter().find(|c| c.span == "1m").unwrap();
        assert_eq!(
            (one.open, one.high, one.low, one.close, one.ticks),
            (100, 120, 90, 90, 3)
        );
        // After the flush only the change is sent; the stored row keeps its open.
        b.add(&tick("BTC", 95, m + 3_000_000));
        let (_, candles) = b.drain();
        let one = candles.iter().find(|c| c.span == "1m").unwrap();
        assert_eq!(
            (one.open, one.high, one.low, one.close, one.ticks),
            (90, 95, 90, 95, 1)
        );
        // A new minute closes the old candle.
        b.add(&tick("BTC", 97, m + MINUTE));
        let (_, candles) = b.drain();
        let minutes: Vec<_> = candles.iter().filter(|c| c.span == "1m").collect();
        assert_eq!(minutes.len(), 1, "the old minute had nothing new");
        assert_eq!(minutes[0].start, m + MINUTE);
    }

    #[test]
    fn at_most_one_stored_tick_per_symbol_and_second() {
        let mut b = Book::default();
        b.add(&tick("BTC", 1, 5_000_000));
        b.add(&tick("BTC", 2, 5_500_000));
        b.add(&tick("ETH", 3, 5_500_000));
        b.add(&tick("BTC", 4, 6_000_000));
        assert_eq!(b.drain().0.len(), 3);
    }

    #[test]
    fn simulated_prices_are_deterministic_bounded_and_smooth() {
        let btc = 6_500_000_000_000;
        let unit = 100_000_000;
        assert_eq!(
            simulated_price("BTC", btc, 1_700_000_000_123),
            simulated_price("BTC", btc, 1_700_000_000_123),
            "a pure function of symbol and time"
        );
        assert_ne!(
            simulated_price("BTC", btc, 1_700_000_000_000),
            simulated_price("ETH", btc, 1_700_000_000_000),
            "symbols move independently"
        );
        let mut prev = simulated_price("BTC", btc, 1_700_000_000_000);
        let (mut lo, mut hi) = (prev, prev);
        for s in 1..200_000 {
            let t = 1_700_000_000_000 + s * 1000;
            let p = simulated_price("BTC", btc, t);
            // One second moves less than 0.1 %.
            assert!((p - prev).abs() * 1000 < prev, "jump at {t}: {prev} -> {p}");
            lo = lo.min(p);
            hi = hi.max(p);
            prev = p;
            let u = simulated_price("USDT", unit, t);
            assert!((u - unit).abs() * 2000 <= unit, "stablecoin at {u}");
        }
        assert!(lo > btc * 88 / 100 && hi < btc * 112 / 100, "{lo}..{hi}");
        assert!(hi - lo > btc / 100, "it does move: {lo}..{hi}");
    }
}

/// Where prices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceFeed {
    /// A random walk from the configured prices: no network needed.
    Simulated,
    /// Coinbase Exchange's public WebSocket ticker channel.
    Coinbase,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarketConfig {
    pub provider: PriceFeed,
    pub coinbase_url: String,
    pub tick_ms: u64,
    pub stale_after_secs: u64,
    pub tick_retention_hours: i64,
    pub candle_retention_days_1m: i64,
    pub candle_retention_days_5m: i64,
    pub candle_retention_days_1h: i64,
    /// How long a symbol's last day of candles is reused before it is read again (0: never).
    #[serde(default = "day_cache_ms")]
    pub day_cache_ms: u64,
    /// With the simulated feed: compute and store its past candles at start.
    #[serde(default = "yes")]
    pub backfill: bool,
}

impl MarketConfig {
    /// How long stored candles of `span` are kept, in microseconds; `None`: for good (daily).
    pub fn candle_retention(&self, span: &str) -> Option<i64> {
        let days = match span {
            "1m" => self.candle_retention_days_1m,
            "5m" => self.candle_retention_days_5m,
            "1h" => self.candle_retention_days_1h,
            _ => return None,
        };
        Some(days * 86_400_000_000)
    }
}

fn yes() -> bool {
    true
}

fn day_cache_ms() -> u64 {
    5000
}

/// The last 24 hours of 5-minute candles of `symbol`, oldest first: read from the database at
/// most once per `[market] day_cache_ms`, shared by every request in between.
pub async fn day_candles(
    state: &crate::Core,
    symbol: &str,
) -> Result<std::sync::Arc<Vec<CandleRow>>, etx_db::DbErr> {
    const DAY: i64 = 86_400_000_000;
    let m = &state.market;
    let now = now_micros();
    if m.day_fresh_micros > 0 {
        let cached = m.day.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, rows)) = cached.get(symbol)
            && now - at < m.day_fresh_micros
        {
            return Ok(rows.clone());
        }
    }
    let rows = std::sync::Arc::new(
        state
            .db
            .candles(symbol, "5m", now - DAY, now + 1, 300)
            .await?,
    );
    if m.day_fresh_micros > 0 {
        m.day
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(symbol.to_string(), (now, rows.clone()));
    }
    Ok(rows)
}
