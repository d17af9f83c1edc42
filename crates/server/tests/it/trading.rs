//! Trading against the platform: quotes at the live price with the spread and the fee.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const DOLLAR: i64 = 100_000_000;

fn set_price(app: &TestApp, symbol: &str, usd: i64) {
    app.state.market.apply(&[etx_core::market::Tick {
        symbol: symbol.into(),
        price: usd * DOLLAR,
        at: etx_db::now_micros(),
    }]);
}

async fn quote(app: &TestApp, u: &TestUser, body: Value) -> (StatusCode, Value) {
    let r = app.post("/api/orders/quote", body, Some(&u.token)).await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_quote_is_the_live_price_with_the_spread_and_the_fee() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let alice = app.register("alice").await;
    set_price(&app, "BTC", 60_000);
    set_price(&app, "ETH", 3_000);

    // 0.01 BTC at 60,000 + 0.25 % spread = 601.50, fee 0.1 % rounded up = 0.61.
    let (s, q) = quote(
        &app,
        &alice,
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["pair"], "BTC/USD");
    assert_eq!(q["side"], "buy");
    assert_eq!(q["amount"], "0.01000000");
    assert_eq!(q["price"], "60150.00");
    assert_eq!(q["value"], "601.50");
    assert_eq!(q["fee"], "0.61");
    assert_eq!(q["total"], "602.11");
    assert_eq!(q["quote_currency"], "USD");
    assert!(q["quote_id"].as_str().unwrap().len() > 20);
    assert!(q["expires_at"].as_str().unwrap().ends_with('Z'), "{q}");

    // A sell receives the price minus the spread, the fee taken off; a number amount works too.
    let (s, q) = quote(
        &app,
        &alice,
        json!({"pair": "btc/usd", "side": "sell", "amount": 0.01}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(
        (&q["price"], &q["value"], &q["fee"], &q["total"]),
        (
            &json!("59850.00"),
            &json!("598.50"),
            &json!("0.60"),
            &json!("597.90")
        )
    );

    // Any two assets form a pair through USD: 1 ETH in BTC = 3,000 / 60,000 = 0.05, + 0.25 %.
    let (s, q) = quote(
        &app,
        &alice,
        json!({"pair": "ETH/BTC", "side": "buy", "amount": "1"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["price"], "0.050125");
    assert_eq!(q["value"], "0.05012500");
    assert_eq!(q["fee"], "0.00005013");
    assert_eq!(q["quote_currency"], "BTC");

    // A new price, a new quote.
    set_price(&app, "BTC", 70_000);
    let (_, q) = quote(
        &app,
        &alice,
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
    )
    .await;
    assert_eq!(q["price"], "70175.00");
}

#[tokio::test]
async fn bad_quotes_are_refused_naming_the_field() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let alice = app.register("alice").await;
    set_price(&app, "BTC", 60_000);
    let base = json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("price", json!("1.00")), "price"),
        (with("limit_price", json!("1.00")), "limit_price"),
        (with("pair", json!("BTC/BTC")), "pair"),
        (with("pair", json!("XYZ/USD")), "pair"),
        (with("pair", json!("BTCUSD")), "pair"),
        (with("side", json!("hold")), "side"),
        (with("amount", json!("0.000000001")), "amount"),
        (with("amount", json!("0")), "amount"),
        (with("amount", json!("-1")), "amount"),
        (with("amount", json!("1e3")), "amount"),
        (with("amount", json!("lots")), "amount"),
    ] {
        let (s, e) = quote(&app, &alice, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {e}");
        assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{body} → {e}");
        assert!(e["error"]["fields"].get(field).is_some(), "{body} → {e}");
    }
    // Under $1 or over $100,000.
    for amount in ["0.00001", "2"] {
        let (s, e) = quote(&app, &alice, with("amount", json!(amount))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"]["code"], "LIMIT_EXCEEDED", "{e}");
    }
    // Not signed in; not JSON.
    let r = app.post("/api/orders/quote", base.clone(), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = quote(&app, &alice, json!(["BTC/USD"])).await;
    assert!(s.is_client_error(), "{s}");
}

#[tokio::test]
async fn no_quote_on_a_stale_feed() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.market.stale_after_secs = 1;
    })
    .await;
    let alice = app.register("alice").await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let body = json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"});
    let (s, e) = quote(&app, &alice, body.clone()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("stale"),
        "{e}"
    );
    set_price(&app, "BTC", 60_000);
    let (s, e) = quote(&app, &alice, body).await;
    assert_eq!(s, StatusCode::OK, "{e}");
}
