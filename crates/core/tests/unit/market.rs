//! The price book: which ticks it takes, what it publishes, when it is stale.

use etx_core::Config;
use etx_core::market::{
    BACKFILL, Market, PRICE_SCALE, SPANS, Tick, price_text, simulated_history, simulated_price,
    span_len,
};

fn market() -> Market {
    let c = Config::defaults();
    Market::new(&c.market, &c.assets).unwrap()
}

fn tick(symbol: &str, price: i64) -> Tick {
    Tick {
        symbol: symbol.into(),
        price,
        at: 1_700_000_000_000_000,
    }
}

#[test]
fn the_book_starts_at_the_reference_prices_without_usd() {
    let m = market();
    assert_eq!(m.source, "simulated");
    assert!(!m.symbols.iter().any(|s| s == "USD"));
    assert!(m.symbols.iter().any(|s| s == "BTC"));
    assert_eq!(
        m.quote("BTC").unwrap().price,
        65_000 * 10i64.pow(u32::from(PRICE_SCALE))
    );
    assert!(m.quote("USD").is_none());
    assert_eq!(m.quotes().len(), m.symbols.len());
    assert!(!m.is_stale(), "a new book is fresh");
}

#[test]
fn unknown_symbols_and_non_positive_prices_are_dropped() {
    let m = market();
    let before = m.subscribe().borrow().seq;
    assert_eq!(
        m.apply(&[tick("DOGE", 5), tick("BTC", 0), tick("ETH", -1)]),
        0
    );
    assert_eq!(m.subscribe().borrow().seq, before, "nothing published");
    assert_eq!(m.quote("ETH").unwrap().price, 3_200 * 100_000_000);

    assert_eq!(
        m.apply(&[tick("BTC", 7_000_012_345_678), tick("DOGE", 5)]),
        1
    );
    let q = m.quote("BTC").unwrap();
    assert_eq!((q.price, q.at), (7_000_012_345_678, 1_700_000_000_000_000));
    let update = m.subscribe().borrow().clone();
    assert_eq!(update.seq, before + 1);
    let msg: serde_json::Value = serde_json::from_slice(&update.text).unwrap();
    assert_eq!(msg["type"], "price_update");
    assert_eq!(msg["source"], "simulated");
    assert_eq!(msg["prices"]["BTC"], "70000.12345678");
    assert_eq!(msg["prices"]["USDT"], "1.00");
    assert!(msg["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn subscribers_wake_on_each_update() {
    let m = market();
    let mut rx = m.subscribe();
    rx.borrow_and_update();
    m.apply(&[tick("SOL", 151 * 100_000_000)]);
    rx.changed().await.unwrap();
    let text = rx.borrow_and_update().text.clone();
    assert!(
        std::str::from_utf8(&text)
            .unwrap()
            .contains("\"SOL\":\"151.00\"")
    );
}

#[test]
fn malformed_feed_messages_are_counted() {
    let m = market();
    assert_eq!(m.malformed_count(), 0);
    m.malformed();
    m.malformed();
    assert_eq!(m.malformed_count(), 2);
}

#[test]
fn staleness_follows_the_setting() {
    let mut c = Config::defaults();
    c.market.stale_after_secs = 0;
    let m = Market::new(&c.market, &c.assets).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(m.is_stale(), "no tick for longer than 0 s");
    let last = m.last_tick();
    m.apply(&[tick("BTC", 1)]);
    assert!(m.last_tick() >= last);
}

#[test]
fn bad_market_settings_are_refused() {
    let mut c = Config::defaults();
    c.market.provider = etx_core::market::PriceFeed::Coinbase;
    assert_eq!(
        Market::new(&c.market, &c.assets).unwrap().source,
        "coinbase"
    );
    let mut c = Config::defaults();
    c.assets[1].usd_price = "1.123456789".into();
    let e = Market::new(&c.market, &c.assets).err().unwrap().to_string();
    assert!(e.contains("BTC usd_price"), "{e}");
}

#[test]
fn spans_and_price_text() {
    assert_eq!(span_len("1m"), Some(60_000_000));
    assert_eq!(span_len("1d"), Some(86_400_000_000));
    assert_eq!(span_len("2m"), None);
    assert_eq!(SPANS.len(), 4);
    assert_eq!(price_text(0), "0.00");
    assert_eq!(price_text(10), "0.0000001");
    assert_eq!(price_text(123_400_000_000), "1234.00");
}

#[test]
fn simulated_prices_never_reach_zero() {
    // The smallest anchor still yields a positive price at any moment.
    for t in (0..10_000).map(|s| 1_700_000_000_000 + s * 7_919) {
        assert!(simulated_price("BTC", 1, t) >= 1);
    }
    // Before the epoch too (negative times use the same lattice).
    let p = simulated_price("ETH", 3_200 * 100_000_000, -1_000);
    assert!(p > 3_200 * 88_000_000 && p < 3_200 * 112_000_000, "{p}");
}

#[test]
fn the_simulated_past_is_computed_candle_by_candle_up_to_the_current_one() {
    let m = market();
    let now = 1_700_000_123_456_789;
    let rows = simulated_history(&m, now, |_| None);
    let symbols = m.symbols.len();
    for (span, count) in BACKFILL {
        let len = span_len(span).unwrap();
        let current = now - now.rem_euclid(len);
        let of_span: Vec<_> = rows.iter().filter(|c| c.span == span).collect();
        assert_eq!(of_span.len(), count as usize * symbols, "{span}");
        // Every candle is whole and before the one the live feed is filling.
        assert!(
            of_span
                .iter()
                .all(|c| c.start < current && c.start % len == 0)
        );
        assert!(of_span.iter().any(|c| c.start == current - len));
        for c in &of_span {
            assert!(
                c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close),
                "{c:?}"
            );
            let anchor = m.quote(&c.symbol).unwrap().price;
            assert_eq!(c.open, simulated_price(&c.symbol, anchor, c.start / 1000));
        }
    }
    // The same moment gives the same history on every instance.
    assert_eq!(rows, simulated_history(&m, now, |_| None));
    // Nothing older than a span's retention is written.
    let day = 86_400_000_000;
    let kept = simulated_history(&m, now, |s| (s == "1h").then_some(2 * day));
    let hours = kept.iter().filter(|c| c.span == "1h").count();
    assert_eq!(hours, 47 * symbols, "whole hours within the last two days");
}
