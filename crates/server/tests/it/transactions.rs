//! Transaction history: filters, offset and keyset paging, detail, summary, export, rate limit.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

async fn history_fixture(app: &TestApp) -> (TestUser, TestUser) {
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.verify(&alice).await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "1000").await;
    app.fund(&admin, &alice, "BTC", "1").await;
    for i in 0..12 {
        let note = if i == 0 {
            "=HYPERLINK(\"http://evil\")".to_string()
        } else {
            format!("n{i}")
        };
        let body = json!({"recipient": "bob", "amount": format!("{}.00", i + 1), "currency": "USD", "note": note});
        let r = app
            .money_post(
                "/api/transfers/p2p",
                Some(&format!("h{i}")),
                body,
                &alice.token,
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("btc"),
            json!({"recipient": "bob", "amount": "0.001", "currency": "BTC"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (alice, bob)
}

#[tokio::test]
async fn list_filters_pages_and_cursors() {
    let app = TestApp::spawn().await;
    let (alice, bob) = history_fixture(&app).await;
    let get = |q: &str| {
        let path = format!("/api/transactions{q}");
        let (app, token) = (&app, alice.token.clone());
        async move { app.get(&path, Some(&token)).await }
    };
    let all: Value = get("").await.json().await.unwrap();
    assert_eq!(all["total"], 15, "2 adjustments + 13 transfers");
    assert_eq!(all["total_exact"], true);
    // A filtered count stops at its cap and says so.
    let p2p_only = etx_db::ledger::TxFilter {
        kind: Some("p2p".into()),
        ..Default::default()
    };
    let count = |cap| app.state.db.count_transactions(&alice.id, &p2p_only, cap);
    assert_eq!(count(5).await.unwrap(), (5, false));
    assert_eq!(count(13).await.unwrap(), (13, true));
    let p2p: Value = get("?type=p2p&currency=usd&limit=5")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            p2p["total"].as_i64(),
            p2p["transactions"].as_array().unwrap().len()
        ),
        (Some(12), 5)
    );
    assert_eq!(p2p["transactions"][0]["amount"], "12.00", "newest first");
    let btc: Value = get("?currency=BTC&type=p2p").await.json().await.unwrap();
    assert_eq!(btc["transactions"][0]["amount"], "0.00100000");
    let skipped: Value = get("?type=p2p&skip=10&limit=5").await.json().await.unwrap();
    assert_eq!(skipped["transactions"].as_array().unwrap().len(), 3);
    // Keyset paging visits every row exactly once.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=4&cursor={c}"),
            None => "?limit=4".into(),
        };
        let page: Value = get(&q).await.json().await.unwrap();
        for t in page["transactions"].as_array().unwrap() {
            assert!(
                seen.insert(t["id"].as_str().unwrap().to_string()),
                "duplicate across pages"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 15);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated: Value = get(&format!("?from={today}&to={today}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dated["total"], 15);
    let future: Value = get("?from=2999-01-01").await.json().await.unwrap();
    assert_eq!(future["total"], 0);
    for bad in [
        "?limit=0",
        "?limit=x",
        "?cursor=nope",
        "?from=yesterday",
        "?currency=DOGE",
        "?type=p2p';--",
        "?from=2026-02-02&to=2026-02-01",
    ] {
        let (s, c, b) = error_code(get(bad).await).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            "{bad}: {b}"
        );
    }
    // Detail: your own, never someone else's.
    let id = all["transactions"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/transactions/{id}"), Some(&alice.token))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/transactions/{id}"), Some(&bob.token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/transactions/not-a-uuid", Some(&bob.token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let s: Value = app
        .get("/api/transactions/summary", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    let usd = s["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["type"] == "p2p" && l["currency"] == "USD")
        .unwrap();
    assert_eq!(
        (
            usd["count"].as_i64(),
            usd["total_in"].as_str(),
            usd["total_out"].as_str()
        ),
        (Some(12), Some("78.00"), Some("0.00"))
    );
}

#[tokio::test]
async fn export_streams_csv_and_json_safely() {
    let app = TestApp::spawn().await;
    let (alice, bob) = history_fixture(&app).await;
    let r = app
        .get(
            "/api/transactions/export?format=csv&type=p2p",
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment; filename=\"transactions-") && cd.ends_with(".csv\""),
        "{cd}"
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(
        lines[0],
        "id,created_at,type,direction,currency,amount,fee,status,counterparty,note"
    );
    assert_eq!(lines.len(), 14, "header + 13 transfers");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split(',').nth(8) == Some(bob.username.as_str())),
        "every transfer names its counterparty: {csv}"
    );
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
        "formula neutralised: {csv}"
    );
    assert!(!csv.contains(",=HYPERLINK"));
    let r = app
        .client
        .post(app.url("/api/transactions/export"))
        .bearer_auth(&alice.token)
        .json(&json!({"format": "json", "currency": "BTC"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".json\"")
    );
    let items: Vec<Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 2, "the BTC funding and the BTC transfer");
    let (s, _, _) = error_code(
        app.get("/api/transactions/export?format=xlsx", Some(&alice.token))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Large enough to span several internal pages.
    let admin = app.user_with_role("bulk_admin", "admin").await;
    for i in 0..30 {
        app.fund(&admin, &alice, "USD", &format!("{}", i + 1)).await;
    }
    let csv = app
        .get("/api/transactions/export?format=csv", Some(&alice.token))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.trim_end().split("\r\n").count(), 1 + 15 + 30);
}

#[tokio::test]
async fn transactions_are_rate_limited_per_user() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| c.rate_limit.transactions_per_user_per_minute = 3).await;
    let a = app.register("limited").await;
    let b = app.register("other").await;
    for left in [2, 1, 0] {
        let r = app.get("/api/transactions", Some(&a.token)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            left.to_string().as_str()
        );
    }
    let r = app.get("/api/transactions/summary", Some(&a.token)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        app.get("/api/transactions", Some(&b.token)).await.status(),
        StatusCode::OK,
        "budgets are per user"
    );
}

/// An export longer than several pages arrives whole, in order, each row once, in CSV and JSON.
#[tokio::test]
async fn export_of_a_long_history_spans_pages_in_order() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let n = 4_501i64;
    app.state
        .db
        .execute(
            "INSERT INTO transactions (id, user_id, type, direction, asset, amount, fee, status, created_at) \
             WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g WHERE k < $2) \
             SELECT '00000000-0000-7000-8000-' || CAST(100000000000 + k AS TEXT), $1, 'p2p', 'in', \
             'USD', k, 0, 'completed', 1700000000000000 + k FROM g",
            [alice.id.clone().into(), n.into()],
        )
        .await
        .unwrap();
    let csv = app
        .get("/api/transactions/export?format=csv", Some(&alice.token))
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").skip(1).collect();
    assert_eq!(lines.len() as i64, n);
    let amounts: Vec<i64> = lines
        .iter()
        .map(|l| etx_domain::parse_amount(l.split(',').nth(5).unwrap(), 2).unwrap())
        .collect();
    let expected: Vec<i64> = (1..=n).rev().collect();
    assert_eq!(amounts, expected, "newest first, every row once");
    let json: Value = app
        .get("/api/transactions/export?format=json", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json.as_array().unwrap().len() as i64, n);
    let listed: Value = app
        .get("/api/transactions?limit=1", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["total"], n,
        "the per-user count followed the inserts"
    );
}

/// A history's total counts every row whether or not upkeep has folded the pending counts
/// into the per-user counter yet, and folding changes no total.
#[tokio::test]
async fn totals_hold_before_and_after_pending_counts_are_folded() {
    let app = TestApp::spawn().await;
    let (alice, bob) = history_fixture(&app).await;
    let total = |u: &TestUser| {
        let (app, token) = (&app, u.token.clone());
        async move {
            let v: Value = app
                .get("/api/transactions?limit=1", Some(&token))
                .await
                .json()
                .await
                .unwrap();
            v["total"].as_i64().unwrap()
        }
    };
    assert_eq!((total(&alice).await, total(&bob).await), (15, 13));
    app.state.db.fold_history_counts().await.unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM transaction_count_deltas")
            .await,
        0,
        "everything pending was folded"
    );
    assert_eq!((total(&alice).await, total(&bob).await), (15, 13));
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("after-fold"),
            json!({"recipient": "bob", "amount": "1.00", "currency": "USD"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!((total(&alice).await, total(&bob).await), (16, 14));
    app.state.db.fold_history_counts().await.unwrap();
    assert_eq!((total(&alice).await, total(&bob).await), (16, 14));
}
