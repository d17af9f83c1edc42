//! The portfolio: holdings from the ledger at live prices, average-cost basis, realised and
//! unrealised P&L, allocation, and value over time.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn portfolio(app: &TestApp, u: &TestUser) -> Value {
    let r = app.get("/api/portfolio?days=7", Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn holding<'a>(p: &'a Value, asset: &str) -> &'a Value {
    p["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["asset"] == asset)
        .unwrap_or_else(|| panic!("no {asset} in {p}"))
}

async fn market(app: &TestApp, u: &TestUser, key: &str, side: &str, amount: &str) -> Value {
    let r = app
        .money_post(
            "/api/orders",
            Some(key),
            json!({"pair": "BTC/USD", "side": side, "amount": amount}),
            &u.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

#[tokio::test]
async fn holdings_cost_basis_and_pnl_follow_the_fills() {
    let app = spawn_quiet_market().await;
    set_price(&app, "BTC", 60_000);
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;

    // 0.01 BTC for 601.50 + 0.61 fee: it cost 602.11 and is worth 600.00.
    let o = market(&app, &alice, "b-1", "buy", "0.01").await;
    assert_eq!(o["order"]["total"], "602.11");
    let p = portfolio(&app, &alice).await;
    assert_eq!(p["currency"], "USD");
    assert_eq!(p["value"], "997.89");
    let btc = holding(&p, "BTC");
    assert_eq!(btc["total"], "0.01000000");
    assert_eq!(btc["price"], "60000.00");
    assert_eq!(btc["value"], "600.00");
    assert_eq!(btc["cost_basis"], "602.11");
    assert_eq!(btc["avg_cost"], "60211.00");
    assert_eq!(btc["unrealised_pnl"], "-2.11");
    assert_eq!(btc["realised_pnl"], "0.00");
    assert_eq!(btc["allocation_pct"], "60.12");
    let usd = holding(&p, "USD");
    assert_eq!(
        (
            usd["value"].as_str(),
            usd["unrealised_pnl"].as_str(),
            usd["allocation_pct"].as_str()
        ),
        (Some("397.89"), Some("0.00"), Some("39.87"))
    );

    // The price rises: the same cost, a paper gain.
    set_price(&app, "BTC", 70_000);
    let p = portfolio(&app, &alice).await;
    assert_eq!(holding(&p, "BTC")["value"], "700.00");
    assert_eq!(holding(&p, "BTC")["unrealised_pnl"], "97.89");
    assert_eq!(p["unrealised_pnl"], "97.89");

    // Selling half at 69,825 (the bid) receives 349.12 − 0.35 = 348.77 against half the cost
    // (301.05): 47.72 realised; the other half still costs 301.06.
    let o = market(&app, &alice, "s-1", "sell", "0.005").await;
    assert_eq!(o["order"]["total"], "348.77");
    let p = portfolio(&app, &alice).await;
    let btc = holding(&p, "BTC");
    assert_eq!(btc["realised_pnl"], "47.72");
    assert_eq!(btc["cost_basis"], "301.06");
    assert_eq!(btc["value"], "350.00");
    assert_eq!(btc["unrealised_pnl"], "48.94");
    assert_eq!(p["realised_pnl"], "47.72");

    // A resting sell holds the rest: still hers, shown as held, the same cost.
    let r = app
        .money_post(
            "/api/orders",
            Some("l-1"),
            json!({"pair": "BTC/USD", "side": "sell", "type": "limit", "amount": "0.005", "limit_price": "80000"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let p = portfolio(&app, &alice).await;
    let btc = holding(&p, "BTC");
    assert_eq!(
        (
            btc["available"].as_str(),
            btc["held"].as_str(),
            btc["total"].as_str()
        ),
        (Some("0.00000000"), Some("0.00500000"), Some("0.00500000"))
    );
    assert_eq!(btc["cost_basis"], "301.06");

    // Value over time: a point per day, all before today empty, today at live prices.
    let h = p["history"].as_array().unwrap();
    assert_eq!(h.len(), 8);
    assert!(h[..7].iter().all(|d| d["value"] == "0.00"), "{h:?}");
    assert_eq!(h[7]["value"], p["value"]);
    assert_eq!(h[7]["date"].as_str().unwrap().len(), 10);

    // Someone else's portfolio is their own; bad input is a 422.
    let b = portfolio(&app, &bob).await;
    assert_eq!(b["value"], "0.00");
    assert_eq!(b["holdings"].as_array().unwrap().len(), 0);
    for bad in [
        "/api/portfolio?days=0",
        "/api/portfolio?days=366",
        "/api/portfolio?days=x",
    ] {
        assert_eq!(
            app.get(bad, Some(&alice.token)).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/api/portfolio", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.ledger_ok().await;
}
