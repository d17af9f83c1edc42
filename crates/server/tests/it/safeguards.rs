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

