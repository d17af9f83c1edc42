//! Trading against the platform: quotes at the live price with the spread and the fee.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

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

async fn order(app: &TestApp, u: &TestUser, key: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .money_post("/api/orders", Some(key), body, &u.token)
        .await;
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_market_buy_and_sell_fill_at_the_server_price_through_the_ledger() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price(&app, "BTC", 60_000);

    // 0.01 BTC: 601.50 + 0.61 fee = 602.11 USD.
    let buy = json!({"pair": "BTC/USD", "side": "buy", "type": "market", "amount": "0.01"});
    let (s, o) = order(&app, &alice, "buy-1", buy.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["order"]["status"], "filled");
    assert_eq!(o["order"]["type"], "market");
    assert_eq!(o["order"]["price"], "60150.00");
    assert_eq!(o["order"]["total"], "602.11");
    assert_eq!(o["order"]["from_quote"], false);
    assert_eq!(o["balances"]["USD"], "397.89");
    assert_eq!(o["balances"]["BTC"], "0.01000000");
    let b = app.balances(&alice).await;
    assert_eq!(
        (b["USD"].as_str(), b["BTC"].as_str()),
        ("397.89", "0.01000000")
    );

    // The same key and body: the first answer again, nothing moved twice.
    let (s, again) = order(&app, &alice, "buy-1", buy.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(again, o);
    assert_eq!(app.balances(&alice).await["USD"], "397.89");
    // The same key with another body: 409.
    let (s, _) = order(
        &app,
        &alice,
        "buy-1",
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.02"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Sell it back at a higher price: 0.01 × 70,000 × 0.9975 = 698.25, fee 0.70 → 697.55.
    set_price(&app, "BTC", 70_000);
    let (s, o2) = order(
        &app,
        &alice,
        "sell-1",
        json!({"pair": "BTC/USD", "side": "sell", "amount": "0.01"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o2}");
    assert_eq!(o2["order"]["total"], "697.55");
    assert_eq!(o2["balances"]["USD"], "1095.44");
    assert_eq!(o2["balances"]["BTC"], "0.00000000");

    // History shows both sides of each order; the orders list and one order.
    let h: Value = app
        .get("/api/transactions?type=trade", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["total"], 4, "{h}");
    let list: Value = app
        .get("/api/orders", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 2);
    assert_eq!(list["orders"][0]["side"], "sell");
    let id = o["order"]["id"].as_str().unwrap();
    let one = app
        .get(&format!("/api/orders/{id}"), Some(&alice.token))
        .await;
    assert_eq!(one.status(), StatusCode::OK);
    // Another user's order is a 404.
    let bob = app.register("bob").await;
    let r = app
        .get(&format!("/api/orders/{id}"), Some(&bob.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The platform's side: fees and inventory, every invariant holds.
    // The platform's side is spread over shards (`platform-N` owners): sum them.
    let balance = |kind: etx_domain::AccountKind, asset: &str| {
        let (kind, asset) = (kind.as_str().to_string(), asset.to_string());
        let db = &app.state.db;
        async move {
            db.scalar_i64(
                "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts \
                 WHERE kind = $1 AND asset = $2 AND owner_id LIKE 'platform-%'",
                vec![kind.into(), asset.into()],
            )
            .await
            .unwrap()
        }
    };
    use etx_domain::AccountKind::{Fees, TradingInventory};
    assert_eq!(balance(Fees, "USD").await, 61 + 70);
    // The platform sold 0.01 BTC and bought it back: flat in BTC, 601.50 − 698.25 in USD.
    assert_eq!(balance(TradingInventory, "BTC").await, 0);
    assert_eq!(balance(TradingInventory, "USD").await, 60_150 - 69_825);
    app.ledger_ok().await;
}

#[tokio::test]
async fn orders_refused_move_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.max_exposure_cents = 5_000_000;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "100.00").await;
    set_price(&app, "BTC", 60_000);
    let base = json!({"pair": "BTC/USD", "side": "buy", "amount": "0.001"});
    // No key.
    let r = app
        .money_post("/api/orders", None, base.clone(), &alice.token)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A client-sent price, a limit order, a missing field, not enough money, too large.
    let mut with_price = base.clone();
    with_price["price"] = json!("1.00");
    let mut limit = base.clone();
    limit["type"] = json!("limit");
    for (i, (body, code)) in [
        (with_price, "VALIDATION_ERROR"),
        (limit, "VALIDATION_ERROR"),
        (
            json!({"pair": "BTC/USD", "side": "buy"}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
            "INSUFFICIENT_FUNDS",
        ),
        (
            json!({"pair": "BTC/USD", "side": "sell", "amount": "0.01"}),
            "INSUFFICIENT_FUNDS",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, e) = order(&app, &alice, &format!("bad-{i}"), body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {e}");
        assert_eq!(e["error"]["code"], code, "{body} → {e}");
    }
    // Beyond the platform's exposure ($50,000 of BTC): a rich user buying 1 BTC is refused.
    app.fund(&admin, &alice, "USD", "90000.00").await;
    let (s, e) = order(
        &app,
        &alice,
        "big",
        json!({"pair": "BTC/USD", "side": "buy", "amount": "1"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "LIMIT_EXCEEDED", "{e}");
    let b = app.balances(&alice).await;
    assert_eq!(b["USD"], "90100.00");
    assert_eq!(
        b.get("BTC").map(String::as_str).unwrap_or("0.00000000"),
        "0.00000000"
    );
    let list: Value = app
        .get("/api/orders", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);
    app.ledger_ok().await;
}

#[tokio::test]
async fn a_quote_fills_at_its_price_once_and_not_after_it_expired() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.quote_ttl_secs = 1;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    set_price(&app, "BTC", 60_000);
    let (_, q) = quote(
        &app,
        &alice,
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
    )
    .await;
    let id = q["quote_id"].as_str().unwrap().to_string();
    // The price moves; the quote still fills at its own.
    set_price(&app, "BTC", 65_000);
    // Another user cannot use it; a tampered id is not a quote.
    let (s, e) = order(&app, &bob, "q-bob", json!({"quote_id": id})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let mut tampered = id.clone();
    tampered.pop();
    tampered.push(if id.ends_with('A') { 'B' } else { 'A' });
    let (s, _) = order(&app, &alice, "q-tamper", json!({"quote_id": tampered})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Terms that differ from the quote's.
    let (s, _) = order(
        &app,
        &alice,
        "q-other",
        json!({"quote_id": id, "amount": "0.02"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, o) = order(
        &app,
        &alice,
        "q-1",
        json!({"quote_id": id, "pair": "BTC/USD"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["order"]["price"], "60150.00");
    assert_eq!(o["order"]["total"], "602.11");
    assert_eq!(o["order"]["from_quote"], true);
    // Used once: a second order with it (another key) is a 409; a replay of the first is not.
    let (s, _) = order(&app, &alice, "q-2", json!({"quote_id": id})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Written differently, it is still the same quote.
    for (i, padded) in [format!(" {id}"), format!("{id}\n"), format!("\t{id} ")]
        .iter()
        .enumerate()
    {
        let (s, e) = order(
            &app,
            &alice,
            &format!("q-pad-{i}"),
            json!({"quote_id": padded}),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (s, again) = order(
        &app,
        &alice,
        "q-1",
        json!({"quote_id": id, "pair": "BTC/USD"}),
    )
    .await;
    assert_eq!((s, &again), (StatusCode::CREATED, &o));

    // Expired.
    let (_, q) = quote(
        &app,
        &alice,
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.001"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (s, e) = order(&app, &alice, "q-3", json!({"quote_id": q["quote_id"]})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    assert_eq!(app.balances(&alice).await["USD"], "397.89");
    app.ledger_ok().await;
}

#[tokio::test]
async fn concurrent_orders_with_one_quote_fill_once() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "10000.00").await;
    set_price(&app, "BTC", 60_000);
    let (_, q) = quote(
        &app,
        &alice,
        json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
    )
    .await;
    let tries = (0..8).map(|i| {
        // Half of them pad the id: the same quote however it is written.
        let id = q["quote_id"].as_str().unwrap();
        let id = if i % 2 == 1 {
            format!(" {id}\n")
        } else {
            id.to_string()
        };
        let (app, alice) = (&app, &alice);
        async move {
            order(app, alice, &format!("race-{i}"), json!({"quote_id": id}))
                .await
                .0
        }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let filled = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((filled, refused), (1, 7), "{statuses:?}");
    assert_eq!(app.balances(&alice).await["USD"], "9397.89");
    app.ledger_ok().await;
}

#[tokio::test]
async fn concurrent_market_orders_never_overdraw_and_a_replay_in_the_same_group_answers_once() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 60_000).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    app.fund(&admin, &bob, "USD", "1000.00").await;
    set_price(&app, "BTC", 60_000);
    // Each buy costs 602.11: one of Alice's ten fits, one of Bob's; Bob sends his first
    // order's key three times at once.
    let buy = json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"});
    let tries = (0..10)
        .map(|i| (&alice, format!("a-{i}")))
        .chain((0..3).map(|_| (&bob, "b-0".to_string())))
        .chain((1..4).map(|i| (&bob, format!("b-{i}"))))
        .map(|(u, key)| {
            let (app, buy) = (&app, buy.clone());
            async move {
                let (s, body) = order(app, u, &key, buy).await;
                (u.username.clone(), key, s, body)
            }
        });
    let answers = futures_util::future::join_all(tries).await;
    for who in ["alice", "bob"] {
        let mine: Vec<_> = answers.iter().filter(|a| a.0 == who).collect();
        let filled: std::collections::BTreeSet<&str> = mine
            .iter()
            .filter(|a| a.2 == StatusCode::CREATED)
            .map(|a| a.1.as_str())
            .collect();
        assert_eq!(filled.len(), 1, "{who}: {mine:?}");
        for a in &mine {
            if a.2 != StatusCode::CREATED {
                assert_eq!(a.2, StatusCode::UNPROCESSABLE_ENTITY, "{a:?}");
                assert_eq!(a.3["error"]["code"], "INSUFFICIENT_FUNDS", "{a:?}");
            }
        }
        let u = if who == "alice" { &alice } else { &bob };
        let b = app.balances(u).await;
        assert_eq!(
            (b["USD"].as_str(), b["BTC"].as_str()),
            ("397.89", "0.01000000")
        );
    }
    // Bob's repeated key answers as one request: all three alike.
    let repeats: Vec<_> = answers.iter().filter(|a| a.1 == "b-0").collect();
    assert!(
        repeats
            .iter()
            .all(|a| a.2 == repeats[0].2 && a.3["order"]["id"] == repeats[0].3["order"]["id"]),
        "{repeats:?}"
    );
    let list: Value = app
        .get("/api/orders", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    app.ledger_ok().await;
}

#[tokio::test]
async fn the_exposure_limit_holds_across_orders_committed_together() {
    // One committer: orders committed together are decided one after the other against the
    // platform's position.
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.commit_lanes = 1;
        c.trading.max_exposure_cents = 600_000;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        let u = app.register(name).await;
        app.fund(&admin, &u, "USD", "10000.00").await;
        users.push(u);
    }
    set_price(&app, "BTC", 60_000);
    // $6,000 of BTC is 0.1: ten buys of 0.01 fit, the eleventh would pass the limit.
    let buy = json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"});
    let tries = (0..16).map(|i| {
        let (app, u, buy) = (&app, &users[i % 4], buy.clone());
        async move { order(app, u, &format!("x-{i}"), buy).await }
    });
    let answers = futures_util::future::join_all(tries).await;
    let filled = answers
        .iter()
        .filter(|a| a.0 == StatusCode::CREATED)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.0 != StatusCode::CREATED)
        .collect();
    assert_eq!(filled, 10, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|a| a.0 == StatusCode::UNPROCESSABLE_ENTITY
                && a.1["error"]["code"] == "LIMIT_EXCEEDED"),
        "{refused:?}"
    );
    // Orders committed together share one journal entry: each user's two legs, and the
    // platform's inventory and fee legs netted per account (at most three an entry here).
    let entries = app
        .count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'trade'")
        .await;
    // Sixteen requests at once against one committer: some commit together.
    assert!(
        (1..10).contains(&entries),
        "{entries} entries for 10 orders"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
             WHERE e.kind = 'trade' AND p.account_id NOT LIKE '%platform-%'"
        )
        .await,
        20,
        "two legs an order"
    );
    assert!(
        app.count(
            "SELECT COUNT(*) FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
             WHERE e.kind = 'trade' AND p.account_id LIKE '%platform-%'"
        )
        .await
            <= 3 * entries
    );
    // Every filled order and its history rows point at the entry that moved its money.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM orders o JOIN journal_entries e ON e.id = o.entry_id \
             WHERE o.status = 'filled' AND EXISTS (SELECT 1 FROM postings p \
             WHERE p.entry_id = e.id AND p.account_id LIKE '%' || o.user_id || '%')"
        )
        .await,
        10
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(DISTINCT t.id) FROM transactions t JOIN orders o ON o.entry_id = t.entry_id \
             AND o.user_id = t.user_id WHERE t.type = 'trade'"
        )
        .await,
        20,
        "two history rows an order"
    );
    // The price rises: the position (0.1 BTC, now $7,000) is past the limit. A buy, which
    // would grow it, is refused; a sell, which shrinks it, is still taken.
    set_price(&app, "BTC", 70_000);
    let (s, e) = order(&app, &users[0], "more", buy.clone()).await;
    assert_eq!(e["error"]["code"], "LIMIT_EXCEEDED", "{s} {e}");
    let seller = users
        .iter()
        .find(|u| {
            answers
                .iter()
                .enumerate()
                .any(|(i, a)| a.0 == StatusCode::CREATED && users[i % 4].id == u.id)
        })
        .unwrap();
    let (s, e) = order(
        &app,
        seller,
        "sell",
        json!({"pair": "BTC/USD", "side": "sell", "amount": "0.01"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    app.ledger_ok().await;
}
