//! Limit and stop orders: the hold, fills when the simulated feed crosses, cancels, expiry,
//! races, two instances, and random sequences against a model.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn order(app: &TestApp, u: &TestUser, key: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .money_post("/api/orders", Some(key), body, &u.token)
        .await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn get_order(app: &TestApp, u: &TestUser, id: &str) -> Value {
    app.get(&format!("/api/orders/{id}"), Some(&u.token))
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until the order leaves `open` (the matcher runs in the background).
async fn ended(app: &TestApp, u: &TestUser, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let o = get_order(app, u, id).await;
        if o["status"] != "open" {
            return o;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still open: {o}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cancel(app: &TestApp, u: &TestUser, id: &str) -> (StatusCode, Value) {
    let r = app
        .delete(&format!("/api/orders/{id}"), Some(&u.token))
        .await;
    let s = r.status();
    (s, r.json().await.unwrap())
}

fn limit(side: &str, amount: &str, price: &str) -> Value {
    json!({"pair": "BTC/USD", "side": side, "type": "limit", "amount": amount, "limit_price": price})
}

#[tokio::test]
async fn a_limit_order_holds_its_cost_and_fills_at_its_price_once_the_feed_crosses() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);

    // 0.01 BTC at 58,000: 580.00 + 0.58 fee held.
    let (s, o) = order(&app, &alice, "l-1", limit("buy", "0.01", "58000")).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["order"]["id"].as_str().unwrap().to_string();
    assert_eq!(o["order"]["status"], "open");
    assert_eq!(o["order"]["type"], "limit");
    assert_eq!(o["order"]["trigger_price"], "58000.00");
    assert_eq!(o["order"]["held"], "580.58");
    assert_eq!(o["order"]["held_currency"], "USD");
    assert_eq!(o["balances"]["USD"], "419.42");
    assert_eq!(app.balances(&alice).await["USD"], "419.42");

    // Above the limit with the spread (58,100 × 1.0025 = 58,245.25): nothing happens.
    set_price_cents(&app, "BTC", 5_810_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_order(&app, &alice, &id).await["status"], "open");

    // 57,800 × 1.0025 = 57,944.50 ≤ 58,000: fills at 58,000, the hold spent exactly.
    set_price_cents(&app, "BTC", 5_780_000);
    let f = ended(&app, &alice, &id).await;
    assert_eq!(f["status"], "filled", "{f}");
    assert_eq!(f["price"], "58000.00");
    assert_eq!(f["total"], "580.58");
    assert_eq!(f["held"], "0.00");
    let b = app.balances(&alice).await;
    assert_eq!(
        (b["USD"].as_str(), b["BTC"].as_str()),
        ("419.42", "0.01000000")
    );

    // A limit sell at 59,000 holds the BTC and fills once the bid reaches it:
    // 59,200 × 0.9975 = 59,052 ≥ 59,000 → 590.00 − 0.59 = 589.41.
    let (s, o) = order(&app, &alice, "l-2", limit("sell", "0.01", "59000")).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["order"]["held"], "0.01000000");
    assert_eq!(o["balances"]["BTC"], "0.00000000");
    let id = o["order"]["id"].as_str().unwrap().to_string();
    set_price_cents(&app, "BTC", 5_920_000);
    let f = ended(&app, &alice, &id).await;
    assert_eq!(
        (f["status"].as_str(), f["total"].as_str()),
        (Some("filled"), Some("589.41"))
    );
    let b = app.balances(&alice).await;
    assert_eq!(
        (b["USD"].as_str(), b["BTC"].as_str()),
        ("1008.83", "0.00000000")
    );
    // Both fills are in the history and notified.
    let h: Value = app
        .get("/api/transactions?type=trade", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["total"], 4, "{h}");
    let n: Value = app
        .get("/api/notifications", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["title"].as_str())
        .filter(|t| t.contains("limit order"))
        .collect();
    assert_eq!(titles.len(), 2, "{n}");
    app.ledger_ok().await;
}

#[tokio::test]
async fn bad_limit_and_stop_orders_are_refused_and_move_nothing() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);
    let past = "2020-01-01T00:00:00Z";
    let cases = [
        (limit("buy", "0.01", "61000"), "limit_price"),
        (limit("sell", "0.01", "59000"), "limit_price"),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "stop", "amount": "0.01", "stop_price": "59000"}),
            "stop_price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01"}),
            "limit_price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "-5"}),
            "limit_price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "abc"}),
            "limit_price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "58000", "stop_price": "1"}),
            "stop_price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "58000", "price": "1"}),
            "price",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "58000", "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "58000", "expires_at": "soon"}),
            "expires_at",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "limit", "amount": "0.01", "limit_price": "58000", "quote_id": "x"}),
            "quote_id",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "iceberg", "amount": "0.01"}),
            "type",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "type": "market", "amount": "0.01", "stop_price": "1"}),
            "stop_price",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let (s, e) = order(&app, &alice, &format!("bad-{i}"), body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert!(e["error"]["fields"][field].is_string(), "{body}: {e}");
    }
    // Worth more than any number the ledger holds: refused, not a crash.
    let (s, e) = order(
        &app,
        &alice,
        "huge",
        json!({"type": "limit", "pair": "USD/BTC", "side": "sell", "amount": "10000000000000000", "limit_price": "1000"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Too much to hold, and too small an order.
    let (s, e) = order(&app, &alice, "big", limit("buy", "1", "50000")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "INSUFFICIENT_FUNDS");
    let (s, e) = order(&app, &alice, "tiny", limit("buy", "0.00001", "50000")).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("LIMIT_EXCEEDED"))
    );
    assert_eq!(app.balances(&alice).await["USD"], "1000.00");
    let list: Value = app
        .get("/api/orders", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn cancel_and_expiry_release_exactly_what_is_held() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);

    let (_, o) = order(&app, &alice, "c-1", limit("buy", "0.01", "50000")).await;
    let id = o["order"]["id"].as_str().unwrap().to_string();
    assert_eq!(app.balances(&alice).await["USD"], "499.50");
    // Another user's order is a 404 and stays open.
    let (s, _) = cancel(&app, &bob, &id).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, c) = cancel(&app, &alice, &id).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["held"], "0.00");
    assert_eq!(app.balances(&alice).await["USD"], "1000.00");
    let (s, e) = cancel(&app, &alice, &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // The list filters by status and pair; a status that is not one is a 422.
    let listed = |q: &'static str| {
        let (app, alice) = (&app, &alice);
        async move {
            let r = app
                .get(&format!("/api/orders?{q}"), Some(&alice.token))
                .await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, l) = listed("status=cancelled&pair=BTC/USD").await;
    assert_eq!(
        (l["total"].as_i64(), l["orders"][0]["id"].as_str()),
        (Some(1), Some(id.as_str()))
    );
    let (_, l) = listed("status=open").await;
    assert_eq!(l["total"], 0);
    let (_, l) = listed("pair=ETH/USD").await;
    assert_eq!(l["total"], 0);
    for bad in ["status=gone", "pair=BTC"] {
        let (s, e) = listed(bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
    }
    // A cancelled order does not fill when the price crosses later.
    set_price_cents(&app, "BTC", 4_900_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_order(&app, &alice, &id).await["status"], "cancelled");
    assert_eq!(app.balances(&alice).await["USD"], "1000.00");

    // Good until a time: it expires and gives back what it held.
    let soon = etx_core::time::rfc3339(etx_db::now_micros() + 700_000);
    let mut body = limit("buy", "0.01", "40000");
    body["expires_at"] = soon.into();
    let (s, o) = order(&app, &alice, "c-2", body).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(app.balances(&alice).await["USD"], "599.60");
    let e = ended(&app, &alice, o["order"]["id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "expired", "{e}");
    assert_eq!(app.balances(&alice).await["USD"], "1000.00");
    app.ledger_ok().await;
}

#[tokio::test]
async fn a_stop_becomes_a_market_order_and_returns_what_it_did_not_spend() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "2000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);

    // A buy stop at 62,000 holds 620.62 + 5 % = 651.66.
    let stop = |amount: &str, price: &str, side: &str| json!({"pair": "BTC/USD", "side": side, "type": "stop", "amount": amount, "stop_price": price});
    let (s, o) = order(&app, &alice, "s-1", stop("0.01", "62000", "buy")).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["order"]["held"], "651.66");
    let id = o["order"]["id"].as_str().unwrap().to_string();
    // The ask reaches 62,155 (62,000 × 1.0025): a market buy there, 621.55 + 0.63.
    set_price_cents(&app, "BTC", 6_200_000);
    let f = ended(&app, &alice, &id).await;
    assert_eq!(f["status"], "filled", "{f}");
    assert_eq!(f["price"], "62155.00");
    assert_eq!(f["total"], "622.18");
    let b = app.balances(&alice).await;
    assert_eq!(
        (b["USD"].as_str(), b["BTC"].as_str()),
        ("1377.82", "0.01000000")
    );

    // A gap past the margin: rejected, everything back.
    let (_, o) = order(&app, &alice, "s-2", stop("0.01", "63000", "buy")).await;
    let id = o["order"]["id"].as_str().unwrap().to_string();
    set_price_cents(&app, "BTC", 7_000_000);
    let f = ended(&app, &alice, &id).await;
    assert_eq!(f["status"], "rejected", "{f}");
    assert!(f["reason"].as_str().unwrap().contains("price moved"), "{f}");
    assert_eq!(app.balances(&alice).await["USD"], "1377.82");

    // A sell stop at 65,000 sells the BTC at the bid once it falls there.
    let (s, o) = order(&app, &alice, "s-3", stop("0.01", "65000", "sell")).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["order"]["id"].as_str().unwrap().to_string();
    set_price_cents(&app, "BTC", 6_500_000);
    let f = ended(&app, &alice, &id).await;
    // 65,000 × 0.9975 = 64,837.50 → 648.37 − 0.65 fee.
    assert_eq!(
        (f["status"].as_str(), f["total"].as_str()),
        (Some("filled"), Some("647.72"))
    );
    let b = app.balances(&alice).await;
    assert_eq!(
        (b["USD"].as_str(), b["BTC"].as_str()),
        ("2025.54", "0.00000000")
    );
    app.ledger_ok().await;
}

/// Open orders of one user, by status, straight from the API.
async fn statuses(app: &TestApp, u: &TestUser) -> BTreeMap<String, String> {
    let list: Value = app
        .get("/api/orders?limit=100", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_cancel_racing_the_fill_wins_or_loses_whole() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "10000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);
    let mut ids = Vec::new();
    for i in 0..24 {
        let (s, o) = order(
            &app,
            &alice,
            &format!("r-{i}"),
            limit("buy", "0.001", "59000"),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
        ids.push(o["order"]["id"].as_str().unwrap().to_string());
    }
    // Each order holds 59.00 + 0.06.
    assert_eq!(app.balances(&alice).await["USD"], "8582.56");
    let cancels = ids.iter().map(|id| {
        let (app, alice) = (&app, &alice);
        async move { cancel(app, alice, id).await.0 }
    });
    let crossing = async {
        set_price_cents(&app, "BTC", 5_800_000);
    };
    let (codes, ()) = tokio::join!(futures_util::future::join_all(cancels), crossing);
    // Every order ends exactly one way; the cancel's answer agrees with the order.
    let mut filled = 0;
    for (id, code) in ids.iter().zip(&codes) {
        let o = ended(&app, &alice, id).await;
        match o["status"].as_str().unwrap() {
            "cancelled" => assert_eq!(*code, StatusCode::OK, "{o}"),
            "filled" => {
                assert_eq!(*code, StatusCode::CONFLICT, "{o}");
                filled += 1;
            }
            other => panic!("{other}: {o}"),
        }
    }
    // Each fill spent one hold of 59.06; each cancel returned one.
    let usd = 1_000_000 - filled * 5_906;
    let b = app.balances(&alice).await;
    assert_eq!(b["USD"], format!("{}.{:02}", usd / 100, usd % 100));
    assert_eq!(b["BTC"], format!("0.{:08}", filled * 100_000));
    app.ledger_ok().await;
}

#[tokio::test]
async fn two_instances_sharing_the_database_fill_each_order_once() {
    let a = spawn_quiet_market().await;
    let b = TestApp::start({
        let mut c = a.state.config.clone();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    let admin = a.user_with_role("treasurer", "admin").await;
    let alice = a.register("alice").await;
    a.fund(&admin, &alice, "USD", "10000.00").await;
    for app in [&a, &b] {
        set_price_cents(app, "BTC", 6_000_000);
    }
    // Half the orders placed through each instance; each instance learns the other's.
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (s, o) = order(
            app,
            &alice,
            &format!("t-{i}"),
            limit("buy", "0.001", "59000"),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
    }
    let start = Instant::now();
    while a.state.book.lock().len() < 30 || b.state.book.lock().len() < 30 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "books never learnt every order"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both feeds cross at the same moment: both matchers go for all 30.
    for app in [&a, &b] {
        set_price_cents(app, "BTC", 5_800_000);
    }
    let start = Instant::now();
    loop {
        let s = statuses(&a, &alice).await;
        if s.values().all(|v| v == "filled") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Two history rows per fill, and 0.001 BTC each: every order filled exactly once.
    let rows = a
        .state
        .db
        .scalar_i64(
            "SELECT COUNT(*) FROM transactions WHERE type = 'trade'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows, 60);
    let bal = a.balances(&alice).await;
    assert_eq!(
        (bal["USD"].as_str(), bal["BTC"].as_str()),
        ("8228.20", "0.03000000")
    );
    a.ledger_ok().await;
}

/// `n / d` rounded up, for positive numbers.
fn up(n: i64, d: i64) -> i64 {
    (n + d - 1) / d
}

/// A small deterministic generator, so a failing sequence can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[derive(Debug, Clone)]
struct ModelOrder {
    buy: bool,
    /// Whole dollars; every order is 0.001 BTC.
    limit: i64,
    /// Cents at the limit price: a buy's value rounds up, a sell's down; the fee (0.1 %,
    /// at least a cent) rounds up.
    value: i64,
    fee: i64,
    open: bool,
}

/// Random place / cancel / tick sequences against a model of the book and both balances;
/// after every step the server agrees with the model, and the ledger's invariants hold.
#[tokio::test]
async fn random_sequences_match_a_model_of_the_book() {
    for seed in [7u64, 2026] {
        let app = spawn_quiet_market().await;
        let admin = app.user_with_role("treasurer", "admin").await;
        let u = app.register("trader").await;
        app.fund(&admin, &u, "USD", "5000.00").await;
        // Enough BTC to sell: bought at market first.
        set_price_cents(&app, "BTC", 6_000_000);
        let (s, _) = order(
            &app,
            &u,
            "seed",
            json!({"pair": "BTC/USD", "side": "buy", "amount": "0.05"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let start = app.balances(&u).await;
        let cents = |t: &str| -> i64 { t.replace('.', "").parse().unwrap() };
        let (mut usd, mut sat) = (cents(&start["USD"]), cents(&start["BTC"]));
        let mut model: BTreeMap<String, ModelOrder> = BTreeMap::new();
        let mut rng = Lcg(seed);
        let mut price = 60_000i64;
        for step in 0..40 {
            match rng.next(4) {
                0 | 1 => {
                    let buy = rng.next(2) == 0;
                    // Away from the spread so it rests: a buy below the ask, a sell above the bid.
                    let off = 200 + rng.next(2_000) as i64;
                    let limit_price = if buy { price - off } else { price + off };
                    let (s, o) = order(
                        &app,
                        &u,
                        &format!("m-{seed}-{step}"),
                        limit(
                            if buy { "buy" } else { "sell" },
                            "0.001",
                            &limit_price.to_string(),
                        ),
                    )
                    .await;
                    let value = if buy {
                        up(limit_price, 10)
                    } else {
                        limit_price / 10
                    };
                    let fee = up(value * 10, 10_000).max(1);
                    let affordable = if buy {
                        usd >= value + fee
                    } else {
                        sat >= 100_000
                    };
                    if affordable {
                        assert_eq!(s, StatusCode::CREATED, "{o}");
                        if buy {
                            usd -= value + fee
                        } else {
                            sat -= 100_000
                        }
                        model.insert(
                            o["order"]["id"].as_str().unwrap().to_string(),
                            ModelOrder {
                                buy,
                                limit: limit_price,
                                value,
                                fee,
                                open: true,
                            },
                        );
                    } else {
                        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{o}");
                    }
                }
                2 => {
                    let open: Vec<String> = model
                        .iter()
                        .filter(|(_, o)| o.open)
                        .map(|(id, _)| id.clone())
                        .collect();
                    if open.is_empty() {
                        continue;
                    }
                    let id = &open[rng.next(open.len() as u64) as usize];
                    let (s, c) = cancel(&app, &u, id).await;
                    assert_eq!(s, StatusCode::OK, "{c}");
                    let o = model.get_mut(id).unwrap();
                    o.open = false;
                    if o.buy {
                        usd += o.value + o.fee
                    } else {
                        sat += 100_000
                    }
                }
                _ => {
                    price = 57_000 + rng.next(6_000) as i64;
                    set_price_cents(&app, "BTC", price * 100);
                    // The platform's prices: ask = price × 1.0025 (up), bid = price × 0.9975 (down), in cents.
                    let (ask, bid) = (
                        up(price * 100 * 10_025, 10_000),
                        price * 100 * 9_975 / 10_000,
                    );
                    for o in model.values_mut().filter(|o| o.open) {
                        let limit_cents = o.limit * 100;
                        if o.buy && limit_cents >= ask {
                            o.open = false;
                            sat += 100_000;
                        } else if !o.buy && limit_cents <= bid {
                            o.open = false;
                            usd += o.value - o.fee;
                        }
                    }
                    // The matcher runs in the background: wait until the server agrees.
                    let t0 = Instant::now();
                    loop {
                        let s = statuses(&app, &u).await;
                        let open_now = s.values().filter(|v| *v == "open").count();
                        let open_model = model.values().filter(|o| o.open).count();
                        if open_now == open_model {
                            for (id, o) in &model {
                                assert_eq!(
                                    s[id] == "open",
                                    o.open,
                                    "seed {seed} step {step}: {id}"
                                );
                            }
                            break;
                        }
                        assert!(
                            t0.elapsed() < Duration::from_secs(10),
                            "seed {seed} step {step}: {s:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            let b = app.balances(&u).await;
            assert_eq!(
                (cents(&b["USD"]), cents(&b["BTC"])),
                (usd, sat),
                "seed {seed} step {step}"
            );
        }
        app.ledger_ok().await;
    }
}

#[tokio::test]
async fn staff_halt_a_pair_set_its_fee_and_spread_and_see_the_inventory() {
    let app = spawn_quiet_market().await;
    set_price_cents(&app, "BTC", 6_000_000);
    set_price_cents(&app, "ETH", 300_000);
    let admin = app.user_with_role("treasurer", "admin").await;
    let moderator = app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "10000.00").await;
    let (s, o) = order(&app, &alice, "h-1", limit("buy", "0.01", "59000")).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["order"]["id"].as_str().unwrap().to_string();
    let (_, o2) = order(&app, &alice, "h-0", limit("buy", "0.01", "50000")).await;
    let low = o2["order"]["id"].as_str().unwrap().to_string();
    let put = |token: String, pair: &'static str, body: Value| {
        let app = &app;
        async move {
            app.put(
                &format!("/api/admin/trading/pairs/{pair}"),
                body,
                Some(&token),
            )
            .await
        }
    };
    let quote = |pair: &'static str| {
        let (app, token) = (&app, alice.token.clone());
        async move {
            let r = app
                .post(
                    "/api/orders/quote",
                    json!({"pair": pair, "side": "buy", "amount": "0.01"}),
                    Some(&token),
                )
                .await;
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };

    let (s, before) = quote("BTC/USD").await;
    assert_eq!(s, StatusCode::OK);
    // Only admins change settings.
    for who in [&moderator, &alice] {
        let r = put(who.token.clone(), "BTC-USD", json!({"halted": true})).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let r = put(admin.token.clone(), "BTC-USD", json!({"halted": true})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["pair"].as_str(), v["halted"].as_bool()),
        (Some("BTC/USD"), Some(true))
    );

    // Halted: no quotes, no orders, no fills; other pairs trade on.
    let (s, b) = quote("BTC/USD").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("halted"),
        "{b}"
    );
    let (s, _) = order(&app, &alice, "h-2", limit("buy", "0.01", "50000")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    set_price_cents(&app, "BTC", 5_800_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_order(&app, &alice, &id).await["status"], "open");
    assert_eq!(quote("ETH/USD").await.0, StatusCode::OK);
    // The pair the other way round, a conversion through it and a quote given before the
    // halt are halted too.
    for pair in ["USD/BTC", "ETH/BTC", "BTC/ETH"] {
        let (s, b) = quote(pair).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{pair}: {b}");
    }
    let (s, b) = order(&app, &alice, "h-q", json!({"quote_id": before["quote_id"]})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    // Cancels still work while halted.
    let (s, c) = cancel(&app, &alice, &low).await;
    assert_eq!(
        (s, c["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{c}"
    );

    // Resumed with a 0.5 % fee and no spread: the resting order fills at its own terms, a new
    // quote is the feed's price with the new fee.
    let r = put(
        admin.token.clone(),
        "BTC-USD",
        json!({"halted": false, "fee_bps": 50, "spread_bps": 0}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["effective_fee_bps"], 50);
    set_price_cents(&app, "BTC", 5_800_000);
    let f = ended(&app, &alice, &id).await;
    assert_eq!(
        (f["status"].as_str(), f["total"].as_str()),
        (Some("filled"), Some("590.59"))
    );
    let (s, q) = quote("BTC/USD").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (q["price"].as_str(), q["fee"].as_str(), q["total"].as_str()),
        (Some("58000.00"), Some("2.90"), Some("582.90"))
    );
    // A conversion through BTC pays the higher fee of its two legs: BTC's 0.5 %.
    let (s, q) = quote("ETH/BTC").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let minor = |v: &Value| {
        v.as_str()
            .unwrap()
            .replace('.', "")
            .parse::<i128>()
            .unwrap()
    };
    let (fee, total) = (minor(&q["fee"]), minor(&q["total"]));
    assert!(
        ((total - fee) * 50 / 10_000 - fee).abs() <= 1,
        "0.5 % of {} is not {}: {q}",
        total - fee,
        fee
    );

    // Bad settings change nothing.
    for (pair, body) in [
        ("BTC-USD", json!({"halted": false, "fee_bps": 10000})),
        ("BTC-USD", json!({"halted": false, "spread_bps": -1})),
        ("BTC-XYZ", json!({"halted": true})),
        ("BTC-USD", json!({"halted": "yes"})),
    ] {
        let r = put(admin.token.clone(), pair, body.clone()).await;
        assert!(
            r.status().is_client_error(),
            "{pair} {body}: {}",
            r.status()
        );
    }
    assert_eq!(quote("BTC/USD").await.1["fee"], "2.90");

    // Staff see every pair and the platform's side: short the 0.01 BTC alice bought, the fee
    // earned in USD.
    let r = app.get("/api/admin/trading", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let t: Value = app
        .get("/api/admin/trading", Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    let btc = t["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pair"] == "BTC/USD")
        .unwrap();
    assert_eq!(
        (btc["fee_bps"].as_i64(), btc["spread_bps"].as_i64()),
        (Some(50), Some(0))
    );
    let inv = |asset: &str| {
        t["inventory"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["asset"] == asset)
            .unwrap()
            .clone()
    };
    assert_eq!(inv("BTC")["position"], "-0.01000000");
    assert_eq!(inv("USD")["fees"], "0.59");
    assert_eq!(
        app.count(
            "SELECT (SELECT COUNT(*) FROM audit_log WHERE action = 'trading.settings') \
             + (SELECT COUNT(*) FROM audit_outbox WHERE action = 'trading.settings')"
        )
        .await,
        2
    );
    app.ledger_ok().await;
}

#[tokio::test]
async fn orders_export_as_csv_or_json_with_the_list_filters() {
    let app = spawn_quiet_market().await;
    set_price_cents(&app, "BTC", 6_000_000);
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "5000.00").await;
    let (s, _) = order(
        &app,
        &alice,
        "x-1",
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, open) = order(&app, &alice, "x-2", limit("buy", "0.01", "50000")).await;
    let (_, c) = order(&app, &alice, "x-4", limit("buy", "0.001", "40000")).await;
    cancel(&app, &alice, c["order"]["id"].as_str().unwrap()).await;

    let get = |path: String, token: String| {
        let app = &app;
        async move {
            let r = app.get(&path, Some(&token)).await;
            let s = r.status();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (s, ctype, r.text().await.unwrap())
        }
    };
    let (s, ctype, body) = get("/api/orders/export?format=csv".into(), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ctype.as_deref(), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 4, "{body}");
    assert!(lines[0].starts_with("id,created_at,updated_at,pair,side,type,status"));
    // Newest first: the cancelled one, the open one, the market fill.
    assert!(lines[1].contains(",limit,cancelled,"), "{body}");
    assert!(lines[2].starts_with(open["order"]["id"].as_str().unwrap()));
    assert!(lines[2].contains(",limit,open,0.01000000,"), "{body}");
    assert!(
        lines[3].contains("BTC/USD,buy,market,filled,0.01000000,60150.00,,601.50,0.61,602.11,USD,")
    );

    let (_, _, body) = get(
        "/api/orders/export?format=json&status=open&pair=BTC/USD".into(),
        alice.token.clone(),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], open["order"]["id"]);
    for bad in [
        "format=xml",
        "format=csv&status=lost",
        "format=csv&pair=BTC/XYZ",
    ] {
        let (s, _, _) = get(format!("/api/orders/export?{bad}"), alice.token.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let (_, _, body) = get("/api/orders/export?format=json".into(), bob.token.clone()).await;
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn a_fill_past_the_exposure_limit_is_rejected_and_its_hold_released() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.sync_ms = 50;
        c.trading.max_exposure_cents = 600_000;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let (alice, bob, carol) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    for u in [&alice, &bob, &carol] {
        app.fund(&admin, u, "USD", "10000.00").await;
    }
    set_price_cents(&app, "BTC", 6_000_000);
    // The platform sells Alice 0.09 BTC: its position is −0.09 ($5,400 of a $6,000 limit).
    let (s, o) = order(
        &app,
        &alice,
        "m",
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.09"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let (_, b) = order(&app, &bob, "b", limit("buy", "0.02", "58000")).await;
    let (_, c) = order(&app, &carol, "c", limit("buy", "0.01", "58000")).await;
    // Both cross in one tick: at 57,800 the platform can sell 0.01 more (0.10 = $5,780), not
    // 0.03 (0.12 = $6,936), nor Bob's 0.02 alone (0.11 = $6,358).
    set_price_cents(&app, "BTC", 5_780_000);
    let bob_order = ended(&app, &bob, b["order"]["id"].as_str().unwrap()).await;
    let carol_order = ended(&app, &carol, c["order"]["id"].as_str().unwrap()).await;
    assert_eq!(carol_order["status"], "filled", "{carol_order}");
    assert_eq!(bob_order["status"], "rejected", "{bob_order}");
    assert!(
        bob_order["reason"].as_str().unwrap().contains("limit"),
        "{bob_order}"
    );
    assert_eq!(bob_order["held"], "0.00");
    let b = app.balances(&bob).await;
    assert_eq!(b["USD"], "10000.00");
    assert_eq!(
        b.get("BTC").map(String::as_str).unwrap_or("0.00000000"),
        "0.00000000"
    );
    assert_eq!(app.balances(&carol).await["BTC"], "0.01000000");
    app.ledger_ok().await;
}

#[tokio::test]
async fn orders_filled_by_one_tick_are_one_notification_to_their_owner() {
    let app = spawn_quiet_market().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "10000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);
    let mut ids = Vec::new();
    for (i, price) in ["58000", "57900", "57800"].iter().enumerate() {
        let (s, o) = order(&app, &alice, &format!("n-{i}"), limit("buy", "0.01", price)).await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
        ids.push(o["order"]["id"].as_str().unwrap().to_string());
    }
    // One tick crosses all three.
    set_price_cents(&app, "BTC", 5_700_000);
    for id in &ids {
        assert_eq!(ended(&app, &alice, id).await["status"], "filled");
    }
    let n: Value = app
        .get("/api/notifications", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let orders: Vec<&Value> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "order")
        .collect();
    assert_eq!(orders.len(), 1, "{n}");
    let only = orders[0];
    assert_eq!(only["title"], "3 of your orders filled");
    for price in ["58,000.00", "57,900.00", "57,800.00"] {
        let plain = price.replace(',', "");
        let body = only["body"].as_str().unwrap();
        assert!(body.contains(price) || body.contains(&plain), "{body}");
    }
    let listed: Vec<&str> = only["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut got = listed.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    app.ledger_ok().await;
}

#[tokio::test]
async fn concurrent_placements_stay_within_the_open_order_limit() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.max_open_orders = 3;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price_cents(&app, "BTC", 6_000_000);
    let tries = (0..10).map(|i| {
        let (app, alice) = (&app, &alice);
        async move {
            let (s, e) = order(
                app,
                alice,
                &format!("cap-{i}"),
                limit("buy", "0.001", "50000"),
            )
            .await;
            (s, e["error"]["code"].as_str().map(str::to_string))
        }
    });
    let answers = futures_util::future::join_all(tries).await;
    let placed = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|(_, c)| c.as_deref() == Some("LIMIT_EXCEEDED"))
        .count();
    assert_eq!((placed, refused), (3, 7), "{answers:?}");
    let open: Value = app
        .get("/api/orders?status=open", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(open["total"], 3);
    // 3 × (50.00 + 0.05 fee) held, nothing for the refused ones.
    assert_eq!(app.balances(&alice).await["USD"], "849.85");
    app.ledger_ok().await;
}
