//! Market data: simulated prices, the `/ws/prices` stream, stored candles, 24-hour statistics,
//! stale-feed detection and retention.

use crate::support::*;
use etx_db::market::CandleRow;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn json_of(app: &TestApp, path: &str) -> Value {
    let r = app.get(path, None).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn simulated_prices_are_listed_labelled_and_move() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 50).await;
    let first = json_of(&app, "/api/prices").await;
    assert_eq!(first["source"], "simulated");
    assert_eq!(first["stale"], false);
    let symbols: Vec<_> = first["prices"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(symbols, ["BNB", "BTC", "ETH", "LTC", "SOL", "USDC", "USDT"]);
    let mut moved = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = json_of(&app, "/api/prices").await;
        if now["prices"]["BTC"] != first["prices"]["BTC"] {
            moved = true;
            break;
        }
    }
    assert!(moved, "BTC never moved");
    let btc = json_of(&app, "/api/prices/btc").await;
    assert_eq!(btc["symbol"], "BTC");
    let p: f64 = btc["price"].as_str().unwrap().parse().unwrap();
    assert!(p > 6_500.0 && p < 650_000.0, "{p}");
    let usdt: f64 = json_of(&app, "/api/prices/USDT").await["price"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (usdt - 1.0).abs() <= 0.0005,
        "a stablecoin stays near 1: {usdt}"
    );
    for missing in ["/api/prices/DOGE", "/api/prices/USD", "/api/crypto/nope"] {
        assert_eq!(app.get(missing, None).await.status(), StatusCode::NOT_FOUND);
    }
    let list = json_of(&app, "/api/crypto").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn the_price_stream_greets_updates_and_answers_ping() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 50).await;
    let url = app.url("/ws/prices").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let next = |m: Option<Result<Message, _>>| -> Value {
        match m.unwrap().unwrap() {
            Message::Text(t) => serde_json::from_str(&t).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    let hello = next(ws.next().await);
    assert_eq!(hello["type"], "connection");
    assert_eq!(hello["source"], "simulated");
    let now = next(ws.next().await);
    assert_eq!(now["type"], "price_update");
    assert!(now["prices"]["BTC"].is_string());
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    let (mut pong, mut updates, mut stamps) = (false, 0, Vec::new());
    while !pong || updates < 3 {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("stream keeps talking");
        let v = next(m);
        match v["type"].as_str().unwrap() {
            "pong" => pong = true,
            "price_update" => {
                updates += 1;
                stamps.push(v["timestamp"].as_str().unwrap().to_string());
            }
            t => panic!("unexpected message type {t}"),
        }
    }
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "updates arrive in order");
    ws.close(None).await.unwrap();
}

/// Each update reaches every client of a crowd, not only the first ones a fan-out pass writes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_client_of_a_crowd_gets_each_update() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 100).await;
    let url = app.url("/ws/prices").replace("http://", "ws://");
    let mut crowd = Vec::new();
    for _ in 0..300 {
        crowd.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap()
                .0,
        );
    }
    let received = futures_util::future::join_all(crowd.into_iter().map(|mut ws| async move {
        // The greeting's prices, then three updates published after it.
        let mut updates = 0;
        while updates < 4 {
            let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
            else {
                break;
            };
            if m.to_text().unwrap_or_default().contains("\"price_update\"") {
                updates += 1;
            }
        }
        updates
    }))
    .await;
    let short = received.iter().filter(|&&n| n < 4).count();
    assert_eq!(short, 0, "{short} of 300 clients missed updates");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Two workers share each pass: every client gets every update once and in order while
/// others come and go, and the sockets of clients that left are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_come_and_go_while_both_workers_deliver() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 20).await;
    let url = app.url("/ws/prices").replace("http://", "ws://");
    let connect = || async {
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap()
            .0
    };
    // The server's own sockets and pools exist once a first client has been served.
    let mut first = connect().await;
    first.next().await.unwrap().unwrap();
    let before = open_fds();
    let mut leaving = Vec::new();
    for _ in 0..200 {
        leaving.push(connect().await);
    }
    let mut staying = Vec::new();
    for _ in 0..100 {
        staying.push(connect().await);
    }
    let stamp = |m: Message| -> Option<String> {
        let v: Value = serde_json::from_str(m.to_text().ok()?).ok()?;
        (v["type"] == "price_update").then(|| v["timestamp"].as_str().unwrap().to_string())
    };
    let read = |mut ws: tokio_tungstenite::WebSocketStream<_>, n: usize| async move {
        let mut stamps = Vec::new();
        while stamps.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("updates keep coming")
                .unwrap()
                .unwrap();
            stamps.extend(stamp(m));
        }
        (ws, stamps)
    };
    let gone = futures_util::future::join_all(leaving.into_iter().map(|ws| read(ws, 5))).await;
    for (mut ws, stamps) in gone {
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        ws.close(None).await.unwrap();
    }
    let stayed = futures_util::future::join_all(staying.into_iter().map(|ws| read(ws, 25))).await;
    for (_, stamps) in &stayed {
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "each update once and in order: {stamps:?}"
        );
    }
    // 100 clients stay: their two ends are 200 descriptors; the 200 that left hold none.
    let mut open = open_fds();
    for _ in 0..50 {
        if open <= before + 200 + 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = open_fds();
    }
    assert!(
        open <= before + 200 + 20,
        "{} descriptors more than before, for 100 connected clients",
        open - before
    );
}

/// A client that stops reading neither holds up the others nor gets a backlog: once it reads
/// again it skips to current prices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_skips_to_the_newest_prices() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 5).await;
    let url = app.url("/ws/prices").replace("http://", "ws://");
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    // A tiny receive window, so the server's writes to this client back up within a second.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (mut stuck, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .unwrap();
    let (mut live, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let stamp = |m: Message| -> Option<String> {
        let v: Value = serde_json::from_str(m.to_text().ok()?).ok()?;
        (v["type"] == "price_update").then(|| v["timestamp"].as_str().unwrap().to_string())
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut live_updates = 0;
    while let Ok(m) = tokio::time::timeout_at(until, live.next()).await {
        if stamp(m.unwrap().unwrap()).is_some() {
            live_updates += 1;
        }
    }
    assert!(
        live_updates >= 100,
        "the reading client kept getting updates: {live_updates}"
    );
    // Everything the stuck client has waiting, then the first update after it reads again.
    let resumed = etx_server::views::rfc3339(etx_db::now_micros());
    let mut stale = 0;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), stuck.next())
            .await
            .expect("the stalled client is served again once it reads")
            .unwrap()
            .unwrap();
        match stamp(m) {
            Some(t) if t >= resumed => break,
            Some(_) => stale += 1,
            None => {}
        }
    }
    assert!(
        stale < live_updates / 2,
        "{stale} old updates were queued for the stalled client ({live_updates} published)"
    );
}

#[tokio::test]
async fn ticks_become_candles_served_as_history() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 50).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    etx_core::market::flush(&app.state).await.unwrap();
    let h = json_of(&app, "/api/crypto/BTC/history?interval=1m").await;
    assert_eq!(h["interval"], "1m");
    let candles = h["candles"].as_array().unwrap();
    assert!(!candles.is_empty(), "{h}");
    for c in candles {
        let f = |k: &str| c[k].as_str().unwrap().parse::<f64>().unwrap();
        assert!(f("low") <= f("open") && f("open") <= f("high"), "{c}");
        assert!(f("low") <= f("close") && f("close") <= f("high"), "{c}");
    }
    let ticks = app
        .count("SELECT COUNT(*) FROM price_ticks WHERE symbol = 'BTC'")
        .await;
    assert!(ticks >= 1);
    // Flushing twice does not double a candle's tick count.
    let before = app
        .count(
            "SELECT CAST(SUM(ticks) AS BIGINT) FROM candles WHERE symbol = 'BTC' AND span = '1d'",
        )
        .await;
    etx_core::market::flush(&app.state).await.unwrap();
    let after = app
        .count(
            "SELECT CAST(SUM(ticks) AS BIGINT) FROM candles WHERE symbol = 'BTC' AND span = '1d'",
        )
        .await;
    let minutes = app
        .count(
            "SELECT CAST(SUM(ticks) AS BIGINT) FROM candles WHERE symbol = 'BTC' AND span = '1m'",
        )
        .await;
    assert!(
        after >= before && after == minutes,
        "{before} {after} {minutes}"
    );

    for (q, status) in [
        ("interval=2m", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("from=yesterday", StatusCode::UNPROCESSABLE_ENTITY),
        ("interval=1d&from=0&to=99999999999", StatusCode::OK),
    ] {
        let r = app.get(&format!("/api/crypto/BTC/history?{q}"), None).await;
        assert_eq!(r.status(), status, "{q}");
    }
}

#[tokio::test]
async fn the_24_hour_change_comes_from_stored_candles() {
    // A slow feed: the price stays at the reference (65,000) for the whole test. The day of
    // candles is read at most every 400 ms.
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.market.day_cache_ms = 400;
    })
    .await;
    let none = json_of(&app, "/api/crypto/BTC").await;
    assert_eq!(none["change_24h"], Value::Null, "no history yet");
    let read_at = std::time::Instant::now();
    let now = etx_db::now_micros();
    let five = 5 * 60_000_000;
    let start = now - 23 * 3_600_000_000;
    let start = start - start.rem_euclid(five);
    let e8 = 100_000_000_i64;
    app.state
        .db
        .merge_candles(&[
            CandleRow {
                symbol: "BTC".into(),
                span: "5m".into(),
                start,
                open: 60_000 * e8,
                high: 70_000 * e8,
                low: 59_000 * e8,
                close: 61_000 * e8,
                ticks: 10,
            },
            // Older than a day: not part of the window.
            CandleRow {
                symbol: "BTC".into(),
                span: "5m".into(),
                start: start - 2 * 3_600_000_000,
                open: 1_000 * e8,
                high: 90_000 * e8,
                low: 1_000 * e8,
                close: 1_000 * e8,
                ticks: 1,
            },
        ])
        .await
        .unwrap();
    // Within the cache's lifetime the day read before is reused; after it, the new candles
    // count.
    if read_at.elapsed() < Duration::from_millis(300) {
        let cached = json_of(&app, "/api/crypto/BTC").await;
        assert_eq!(
            cached["change_24h"],
            Value::Null,
            "the day read moments ago"
        );
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    let btc = json_of(&app, "/api/crypto/BTC").await;
    assert_eq!(btc["price"], "65000.00");
    assert_eq!(btc["change_24h"], "8.33");
    assert_eq!(btc["high_24h"], "70000.00");
    assert_eq!(btc["low_24h"], "59000.00");
}

#[tokio::test]
async fn a_silent_feed_is_reported_stale_until_it_ticks_again() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.market.stale_after_secs = 1;
    })
    .await;
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let r = app.get("/health/ready", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    let feed = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "price_feed")
        .unwrap()
        .clone();
    assert_eq!(feed["ok"], false);
    assert_eq!(json_of(&app, "/api/prices").await["stale"], true);
    app.state.market.apply(&[etx_core::market::Tick {
        symbol: "BTC".into(),
        price: 64_000 * 100_000_000,
        at: etx_db::now_micros(),
    }]);
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(json_of(&app, "/api/prices/BTC").await["price"], "64000.00");
}

#[tokio::test]
async fn old_ticks_and_candles_are_purged_but_daily_candles_stay() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let old = etx_db::now_micros() - 800 * 86_400_000_000;
    app.state
        .db
        .insert_ticks(&[etx_db::market::TickRow {
            symbol: "BTC",
            at: old,
            price: 1,
        }])
        .await
        .unwrap();
    let candle = |span: &str| CandleRow {
        symbol: "BTC".into(),
        span: span.into(),
        start: old,
        open: 1,
        high: 1,
        low: 1,
        close: 1,
        ticks: 1,
    };
    app.state
        .db
        .merge_candles(&[candle("1m"), candle("5m"), candle("1h"), candle("1d")])
        .await
        .unwrap();
    etx_core::upkeep::purge_market_data(&app.state).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM price_ticks WHERE at = {old}"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM candles WHERE start = {old}"))
            .await,
        1,
        "only the daily candle is kept"
    );
}

/// A local stand-in for Coinbase Exchange's WebSocket feed, speaking its documented format.
/// Each connection gets `script[n]` (the n-th connection's messages), then is dropped.
async fn fake_coinbase(
    script: Vec<Vec<String>>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
    let (subs_tx, subs_rx) = tokio::sync::mpsc::unbounded_channel();
    let script = std::sync::Arc::new(script);
    let conn = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |ws: WebSocketUpgrade| {
            let (script, conn, subs_tx) = (script.clone(), conn.clone(), subs_tx.clone());
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    let n = conn.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // The client must subscribe first.
                    if let Some(Ok(WsMessage::Text(t))) = socket.recv().await {
                        let _ = subs_tx.send(serde_json::from_str::<Value>(&t).unwrap_or_default());
                    }
                    let msgs = script.get(n).cloned().unwrap_or_default();
                    for m in msgs {
                        if socket.send(WsMessage::Text(m.into())).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if n + 1 >= script.len() {
                        // The last connection stays open and silent.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("ws://{addr}/"), subs_rx)
}

fn ticker(product: &str, price: &str) -> String {
    json!({
        "type": "ticker", "sequence": 37475248783u64, "product_id": product, "price": price,
        "open_24h": "1310.79", "volume_24h": "245532.79269678", "low_24h": "1280.52",
        "high_24h": "1313.8", "best_bid": "1285.04", "best_ask": "1285.27", "side": "buy",
        "time": "2022-10-19T23:28:22.061769Z", "trade_id": 370843401, "last_size": "11.4396987"
    })
    .to_string()
}

#[tokio::test]
async fn the_coinbase_feed_is_parsed_reconnected_and_watched_for_silence() {
    let script = vec![
        // First connection: a subscription answer, prices, junk, then the server drops it.
        vec![
            json!({"type": "subscriptions", "channels": [{"name": "ticker", "product_ids": ["BTC-USD"]}]}).to_string(),
            ticker("BTC-USD", "70123.45"),
            "{not json".to_string(),
            json!({"type": "ticker", "product_id": "BTC-USD"}).to_string(),
            ticker("BTC-USD", "-5"),
            ticker("BTC-EUR", "60000"),
            json!({"type": "heartbeat", "sequence": 90, "last_trade_id": 20, "product_id": "BTC-USD", "time": "2022-10-19T23:28:22.061769Z"}).to_string(),
            ticker("ETH-USD", "3456.789012345"),
        ],
        // Second connection, after the client came back by itself.
        vec![ticker("BTC-USD", "71000")],
    ];
    let (url, mut subs) = fake_coinbase(script).await;
    let app = TestApp::spawn_with(|c| {
        c.market.provider = etx_core::market::PriceFeed::Coinbase;
        c.market.coinbase_url = url.clone();
        c.market.stale_after_secs = 2;
    })
    .await;
    let sub = tokio::time::timeout(Duration::from_secs(5), subs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub["type"], "subscribe");
    assert_eq!(sub["channels"], json!(["ticker", "heartbeat"]));
    assert!(
        sub["product_ids"]
            .as_array()
            .unwrap()
            .contains(&json!("BTC-USD"))
    );

    let mut btc = Value::Null;
    for _ in 0..100 {
        btc = json_of(&app, "/api/prices/BTC").await;
        if btc["price"] == "71000.00" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        btc["price"], "71000.00",
        "prices from the second connection"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), subs.recv())
            .await
            .is_ok(),
        "the client reconnected and subscribed again"
    );
    assert_eq!(
        json_of(&app, "/api/prices/ETH").await["price"],
        "3456.78901234"
    );
    assert_eq!(json_of(&app, "/api/prices").await["source"], "coinbase");
    // Junk, a ticker without a price, a negative price and a non-USD product.
    assert_eq!(app.state.market.malformed_count(), 4);

    // The second connection stays silent: the feed turns stale and readiness says so.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(
        app.get("/health/ready", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(json_of(&app, "/api/prices").await["stale"], true);
}
