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
    away_from_a_minute_edge().await;
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

async fn adjust(app: &TestApp, admin: &TestUser, user_id: &str, amount: &str) -> reqwest::Response {
    let key = uuid::Uuid::now_v7().to_string();
    app.money_post(
        "/api/admin/wallets/adjust",
        Some(&key),
        json!({"user_id": user_id, "currency": "USD", "amount": amount, "reason": "correction"}),
        &admin.token,
    )
    .await
}

async fn decide_adjustment(
    app: &TestApp,
    admin: &TestUser,
    id: &str,
    action: &str,
) -> reqwest::Response {
    app.post(
        &format!("/api/admin/wallets/adjustments/{id}/{action}"),
        if action == "approve" {
            json!({"note": "checked with finance"})
        } else {
            json!({"reason": "checked with finance"})
        },
        Some(&admin.token),
    )
    .await
}

async fn audited(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT (SELECT COUNT(*) FROM audit_log WHERE action = '{action}') \
         + (SELECT COUNT(*) FROM audit_outbox WHERE action = '{action}')"
    ))
    .await
}

#[tokio::test]
async fn adjustments_need_a_second_admin_for_large_amounts_and_never_touch_your_own() {
    let app = TestApp::spawn_with(|c| c.admin.adjust_approval_from_usd = "1000".into()).await;
    let first = app.user_with_role("first", "admin").await;
    let second = app.user_with_role("second", "admin").await;
    let alice = verified(&app, "alice").await;

    // Your own balance: refused, whatever the amount.
    for amount in ["10", "5000"] {
        let (status, code, body) = error_code(adjust(&app, &first, &first.id, amount).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "FORBIDDEN"),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("your own balance"),
            "{body}"
        );
    }
    assert_eq!(app.balances(&first).await["USD"], "0.00");

    // Beyond what any balance could hold: refused before anything waits for approval.
    for amount in ["92233720368547758.07", "-100000000000000.01"] {
        let (status, _, body) = error_code(adjust(&app, &first, &alice.id, amount).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["fields"]["amount"].is_string(), "{body}");
    }
    // Below the threshold: applied at once.
    let r = adjust(&app, &first, &alice.id, "999.99").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.balances(&alice).await["USD"], "999.99");

    // At or above it: requested, nothing moves yet.
    let r = adjust(&app, &first, &alice.id, "5000").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let pending: Value = r.json().await.unwrap();
    assert_eq!(pending["adjustment"]["status"], "pending", "{pending}");
    let id = pending["adjustment"]["id"].as_str().unwrap().to_string();
    assert_eq!(app.balances(&alice).await["USD"], "999.99");
    let list: Value = app
        .get("/api/admin/wallets/adjustments", Some(&second.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["adjustments"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["adjustments"][0]["amount"], "5000.00");
    let r = app
        .get("/api/admin/wallets/adjustments", Some(&alice.token))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The requesting admin cannot approve (or reject) it.
    for action in ["approve", "reject"] {
        let r = decide_adjustment(&app, &first, &id, action).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(app.balances(&alice).await["USD"], "999.99");

    // Another admin approves; two approvals at once apply it once.
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (app, second_token, id) = (app.clone(), second.token.clone(), id.clone());
            tokio::spawn(async move {
                app.post(
                    &format!("/api/admin/wallets/adjustments/{id}/approve"),
                    json!({"note": "matches the ticket"}),
                    Some(&second_token),
                )
                .await
                .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    assert_eq!(app.balances(&alice).await["USD"], "5999.99");
    let r = decide_adjustment(&app, &second, &id, "approve").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(app.balances(&alice).await["USD"], "5999.99");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'adjustment'")
            .await,
        2
    );
    assert_eq!(audited(&app, "wallet.adjust.request").await, 1);
    assert_eq!(audited(&app, "wallet.adjust.approve").await, 1);
    let applied: Value = app
        .get(
            "/api/admin/wallets/adjustments?status=applied",
            Some(&first.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(applied["adjustments"][0]["decided_by"], second.id.as_str());

    // A large adjustment of an admin's balance: that admin cannot approve it either; a
    // rejection moves nothing.
    let r = adjust(&app, &first, &second.id, "2000").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let b: Value = r.json().await.unwrap();
    let id2 = b["adjustment"]["id"].as_str().unwrap().to_string();
    let r = decide_adjustment(&app, &second, &id2, "approve").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = decide_adjustment(&app, &second, &id2, "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.balances(&second).await["USD"], "0.00");
    let r = decide_adjustment(&app, &second, "not-an-id", "approve").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.ledger_ok().await;

    // The new endpoints are in the OpenAPI document.
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    for (p, m) in [
        ("/api/admin/wallets/adjustments", "get"),
        ("/api/admin/wallets/adjustments/{id}/approve", "post"),
        ("/api/admin/wallets/adjustments/{id}/reject", "post"),
    ] {
        assert!(doc["paths"][p][m].is_object(), "{m} {p} missing");
    }
    assert!(doc["paths"]["/api/admin/wallets/adjust"]["post"]["responses"]["202"].is_object());
}

const IPN_SECRET: &str = "test-ipn-secret";

/// Sends `body` to the sandbox webhook signed as the provider would; returns the answer.
async fn signed_notification(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    use hmac::Mac;
    let raw = serde_json::to_string(body).unwrap();
    let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(IPN_SECRET.as_bytes()).unwrap();
    m.update(raw.as_bytes());
    let r = app
        .client
        .post(app.url("/api/wallet/webhook/sandbox"))
        .header("content-type", "application/json")
        .header("x-nowpayments-sig", hex::encode(m.finalize().into_bytes()))
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A deposit order of `owner`, expired (so deleting the owner is allowed), and the provider's
/// "finished" notification for it.
async fn expired_order(app: &TestApp, owner: &TestUser) -> (String, String, Value) {
    let d: Value = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "100", "pay_currency": "USDT"}),
            Some(&owner.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let d = d["deposit"].clone();
    let order = d["order_id"].as_str().unwrap().to_string();
    app.exec(&format!(
        "UPDATE deposits SET expires_at = 1 WHERE order_id = '{order}'"
    ))
    .await;
    let pay = d["pay_amount"].as_str().unwrap().to_string();
    let body = json!({
        "payment_id": 77,
        "payment_status": "finished",
        "pay_address": d["pay_address"],
        "price_amount": d["price_amount"],
        "price_currency": "usd",
        "pay_amount": d["pay_amount"],
        "actually_paid": d["pay_amount"],
        "pay_currency": "usdt",
        "order_id": order,
    });
    (order, pay, body)
}

async fn suspense_balance(app: &TestApp) -> i64 {
    app.count(
        "SELECT COALESCE((SELECT balance FROM ledger_accounts WHERE id = 'suspense::USDT'), 0)",
    )
    .await
}

#[tokio::test]
async fn a_payment_for_a_deleted_owner_waits_in_suspense_until_staff_resolve_it() {
    let app = TestApp::spawn_with(|c| {
        c.deposits.ipn_secret = Some(IPN_SECRET.into());
        c.aml.large_amount_usd = "1000000".into();
        c.aml.young_account_usd = "1000000".into();
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let bob = verified(&app, "bob").await;
    let ghost = verified(&app, "ghost").await;

    // An order that may still be paid keeps its owner.
    let d: Value = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "50", "pay_currency": "USDT"}),
            Some(&ghost.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let open_order = d["deposit"]["order_id"].as_str().unwrap().to_string();
    let r = app
        .delete(&format!("/api/users/{}", ghost.id), Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    app.exec(&format!(
        "UPDATE deposits SET expires_at = 1 WHERE order_id = '{open_order}'"
    ))
    .await;

    // Expired, the owner deleted, then paid late: the money waits in suspense.
    let (order, pay, late) = expired_order(&app, &ghost).await;
    let r = app
        .delete(&format!("/api/users/{}", ghost.id), Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, v) = signed_notification(&app, &late).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["result"].as_str().unwrap().contains("suspense"), "{v}");
    let (status, v) = signed_notification(&app, &late).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["result"].as_str().unwrap().starts_with("ignored"), "{v}");
    let minor = etx_domain::parse_amount(&pay, 6).unwrap();
    assert_eq!(suspense_balance(&app).await, minor);
    app.ledger_ok().await;

    // Staff see it.
    let list: Value = app
        .get("/api/admin/suspense", Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["source_id"], order.as_str());
    assert_eq!(items[0]["owner_id"], ghost.id.as_str());
    assert_eq!(items[0]["amount"], pay.as_str());
    assert_eq!(items[0]["status"], "open");
    let id = items[0]["id"].as_str().unwrap().to_string();
    let r = app.get("/api/admin/suspense", Some(&bob.token)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = app
        .client
        .get(app.url("/admin/aml"))
        .header("cookie", format!("access_token={}", moderator.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Money in suspense") && page.contains(&order) && page.contains(&id),
        "the staff review page lists the item"
    );

    // Only admins resolve it, once.
    let credit = json!({"user_id": bob.id, "reason": "the payer is bob, ticket 42"});
    let r = app
        .post(
            &format!("/api/admin/suspense/{id}/credit"),
            credit.clone(),
            Some(&moderator.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/api/admin/suspense/{id}/credit"),
            json!({"user_id": uuid::Uuid::now_v7().to_string(), "reason": "nobody"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            &format!("/api/admin/suspense/{id}/credit"),
            json!({"user_id": admin.id, "reason": "mine now"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "not into one's own wallet"
    );
    let r = app
        .post(
            &format!("/api/admin/suspense/{id}/credit"),
            credit.clone(),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.balances(&bob).await["USDT"], pay);
    assert_eq!(suspense_balance(&app).await, 0);
    for (action, body) in [
        ("credit", credit),
        ("refund", json!({"reason": "sent back"})),
    ] {
        let r = app
            .post(
                &format!("/api/admin/suspense/{id}/{action}"),
                body,
                Some(&admin.token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{action}");
    }
    assert_eq!(app.balances(&bob).await["USDT"], pay);
    assert_eq!(audited(&app, "deposit.suspense").await, 1);
    assert_eq!(audited(&app, "suspense.credit").await, 1);

    // Another late payment, refunded to the payer: it leaves through withdrawals clearing.
    let ghost2 = verified(&app, "ghost2").await;
    let (_, _, late2) = expired_order(&app, &ghost2).await;
    let r = app
        .delete(&format!("/api/users/{}", ghost2.id), Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = signed_notification(&app, &late2).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = app
        .get("/api/admin/suspense", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    let id2 = list["items"][0]["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/admin/suspense/{id2}/refund"),
            json!({"reason": "returned to the sending address"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(suspense_balance(&app).await, 0);
    let all: Value = app
        .get("/api/admin/suspense?status=all", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["refunded", "credited"]);
    app.ledger_ok().await;
}
