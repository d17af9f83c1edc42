//! Money safeguards under concurrency and misuse: the AML velocity rule decided where a
//! user's operations are serialised, unsigned payment notifications kept out of the database,
//! adjustments that need a second admin, and payments for owners that are gone.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

const EVM_ADDRESS: &str = "0x742d35Cc6634C0532925a3b844Bc454e4438f44e";

async fn verified(app: &TestApp, name: &str) -> TestUser {
    let u = app.register(name).await;
    app.verify(&u).await;
    u
}

/// Sends `n` money POSTs at once and returns each answer's status and body.
async fn parallel(
    app: &Arc<TestApp>,
    path: &'static str,
    token: &str,
    bodies: Vec<Value>,
) -> Vec<(StatusCode, Value)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (app, token) = (app.clone(), token.to_string());
            tokio::spawn(async move {
                let key = uuid::Uuid::now_v7().to_string();
                let r = app.money_post(path, Some(&key), body, &token).await;
                let status = r.status();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn velocity_flags(app: &TestApp, user_id: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM aml_flags WHERE user_id = '{user_id}' AND rule = 'velocity'"
    ))
    .await
}

#[tokio::test]
async fn parallel_transfers_past_the_velocity_limit_are_held() {
    let app = TestApp::spawn_with(|c| c.aml.max_operations_in_window = 3).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = verified(&app, "alice").await;
    let bob = verified(&app, "bob").await;
    app.fund(&admin, &alice, "USD", "500").await;
    let app = Arc::new(app);
    let body = json!({"recipient": "bob", "amount": "10", "currency": "USD"});
    let answers = parallel(&app, "/api/transfers/p2p", &alice.token, vec![body; 10]).await;
    let mut completed = 0;
    let mut held = 0;
    for (status, b) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{b}");
        match b["transfer"]["status"].as_str() {
            Some("completed") => completed += 1,
            Some("held") => held += 1,
            other => panic!("unexpected status {other:?}: {b}"),
        }
    }
    assert_eq!((completed, held), (3, 7));
    assert_eq!(velocity_flags(&app, &alice.id).await, 7);
    assert_eq!(app.balances(&bob).await["USD"], "30.00");
    assert_eq!(app.balances(&alice).await["USD"], "400.00");
    app.ledger_ok().await;
}

#[tokio::test]
async fn parallel_withdrawals_past_the_velocity_limit_are_held() {
    let app = TestApp::spawn_with(|c| c.aml.max_operations_in_window = 3).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "1000").await;
    let app = Arc::new(app);
    let body = json!({"amount": "20", "currency": "USDT", "address": EVM_ADDRESS});
    let answers = parallel(&app, "/api/wallet/withdraw", &alice.token, vec![body; 10]).await;
    let mut statuses: Vec<&str> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, StatusCode::CREATED, "{b}");
            b["withdrawal"]["status"].as_str().unwrap()
        })
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == "held").count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(velocity_flags(&app, &alice.id).await, 7);
    app.ledger_ok().await;
}

/// The sum of `etx_webhooks_rejected_total` over its labels, as `/metrics` would show it.
fn rejected_webhooks() -> f64 {
    etx_server::telemetry::metrics_handle()
        .render()
        .lines()
        .filter(|l| l.starts_with("etx_webhooks_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn unsigned_webhooks_are_counted_and_throttled_not_stored() {
    let app = Arc::new(
        TestApp::spawn_with(|c| c.deposits.ipn_secret = Some("test-ipn-secret".into())).await,
    );
    let alice = verified(&app, "alice").await;
    let before = rejected_webhooks();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (app, sent) = (app.clone(), sent.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2000 {
                    let mut r = app
                        .client
                        .post(app.url("/api/wallet/webhook/sandbox"))
                        .header("content-type", "application/json")
                        .body(format!(
                            r#"{{"order_id":"DEP-{w:016}","payment_status":"finished"}}"#
                        ));
                    if w % 2 == 0 {
                        r = r.header("x-nowpayments-sig", "00ff");
                    }
                    let r = r.send().await.unwrap();
                    let retry = r.headers().get("retry-after").cloned();
                    seen.push((r.status(), retry));
                }
                seen
            })
        })
        .collect();
    let mut answers = Vec::new();
    for w in workers {
        answers.extend(w.await.unwrap());
    }
    assert_eq!(answers.len(), 2000);
    let throttled = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    for (status, retry) in &answers {
        assert!(
            matches!(
                *status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{status}"
        );
        if *status == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry.is_some(), "429 without Retry-After");
        }
    }
    assert!(throttled >= 2000 - 2 * 20, "only {throttled} throttled");
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_webhooks").await, 0);
    assert!(rejected_webhooks() - before >= 2000.0);

    // A signed notification from the same address is still taken, applied and kept.
    let d: Value = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "100", "pay_currency": "USDT"}),
            Some(&alice.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let d = &d["deposit"];
    let body = json!({
        "payment_id": 1,
        "payment_status": "finished",
        "pay_address": d["pay_address"],
        "price_amount": d["price_amount"],
        "price_currency": "usd",
        "pay_amount": d["pay_amount"],
        "actually_paid": d["pay_amount"],
        "pay_currency": "usdt",
        "order_id": d["order_id"],
    });
    let raw = serde_json::to_string(&body).unwrap();
    let sig = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"test-ipn-secret").unwrap();
        m.update(raw.as_bytes());
        hex::encode(m.finalize().into_bytes())
    };
    let r = app
        .client
        .post(app.url("/api/wallet/webhook/sandbox"))
        .header("content-type", "application/json")
        .header("x-nowpayments-sig", sig)
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.balances(&alice).await["USDT"],
        d["pay_amount"].as_str().unwrap()
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_webhooks WHERE signature_ok = TRUE")
            .await,
        1
    );
    app.ledger_ok().await;
}
