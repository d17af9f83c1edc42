//! The NOWPayments provider against a local server speaking its API, and `etx deposit
//! simulate` posting the sandbox's signed notification to a running server.

use crate::support::*;
use axum::Json;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const API_KEY: &str = "np-test-key";
const IPN_SECRET: &str = "np-ipn-secret";
const PAY_ADDRESS: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

/// `POST /v1/payment` as NOWPayments documents it: `x-api-key`, a JSON body, and an answer
/// with the payment id, address and amount to pay. Requests are kept for inspection.
async fn fake_nowpayments() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/payment",
        axum::routing::post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let log = log.clone();
            async move {
                if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
                    return (
                        axum::http::StatusCode::FORBIDDEN,
                        Json(json!({"statusCode": 403, "code": "INVALID_API_KEY", "message": "Invalid api key"})),
                    );
                }
                log.lock().unwrap().push(body.clone());
                (
                    axum::http::StatusCode::CREATED,
                    Json(json!({
                        "payment_id": "5077125051",
                        "payment_status": "waiting",
                        "pay_address": PAY_ADDRESS,
                        "price_amount": body["price_amount"],
                        "price_currency": body["price_currency"],
                        "pay_amount": 0.00153846,
                        "pay_currency": body["pay_currency"],
                        "order_id": body["order_id"],
                        "order_description": body["order_description"],
                        "ipn_callback_url": body["ipn_callback_url"],
                        "created_at": "2026-11-23T10:00:00.000Z",
                        "updated_at": "2026-11-23T10:00:00.000Z",
                        "purchase_id": "6084744717",
                        "network": "btc",
                        "expiration_estimate_date": "2026-11-23T10:20:00.000Z"
                    })),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn nowpayments_app(url: &str, key: &str) -> TestApp {
    let (url, key) = (url.to_string(), key.to_string());
    TestApp::spawn_with(move |c| {
        c.deposits.provider = etx_core::rules::PaymentProvider::Nowpayments;
        c.deposits.nowpayments_url = url;
        c.deposits.nowpayments_api_key = Some(key);
        c.deposits.ipn_secret = Some(IPN_SECRET.into());
        c.public_url = Some("https://etx.example.com".into());
    })
    .await
}

async fn ipn(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    let sig = etx_core::providers::nowpayments::sign(secret.as_bytes(), body);
    app.client
        .post(app.url("/api/wallet/webhook/nowpayments"))
        .header("x-nowpayments-sig", sig)
        // A provider's own key order and spacing: the signature covers the sorted form.
        .header("content-type", "application/json")
        .body(serde_json::to_string_pretty(body).unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn nowpayments_creates_the_payment_and_its_signed_ipn_credits_once() {
    let (url, seen) = fake_nowpayments().await;
    let app = nowpayments_app(&url, API_KEY).await;
    let u = app.register("payer").await;
    let r = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "100.00", "pay_currency": "btc"}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let d: Value = r.json().await.unwrap();
    let order = d["deposit"]["order_id"].as_str().unwrap().to_string();
    assert_eq!(d["deposit"]["provider"], "nowpayments");
    assert_eq!(d["deposit"]["pay_address"], PAY_ADDRESS);
    assert_eq!(d["deposit"]["pay_amount"], "0.00153846");
    assert!(d["deposit"]["qr_svg"].as_str().unwrap().contains("<svg"));
    // What the provider was asked for.
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req["price_amount"], json!(100.0));
    assert_eq!(req["price_currency"], "usd");
    assert_eq!(req["pay_currency"], "btc");
    assert_eq!(req["order_id"], order.as_str());
    assert_eq!(
        req["ipn_callback_url"],
        "https://etx.example.com/api/wallet/webhook/nowpayments"
    );

    let notification = |status: &str, paid: f64, payment_id: Value| {
        json!({
            "payment_id": payment_id,
            "parent_payment_id": null,
            "invoice_id": null,
            "payment_status": status,
            "pay_address": PAY_ADDRESS,
            "payin_extra_id": null,
            "price_amount": 100,
            "price_currency": "usd",
            "pay_amount": 0.00153846,
            "actually_paid": paid,
            "actually_paid_at_fiat": 0,
            "pay_currency": "btc",
            "order_id": order,
            "order_description": format!("Deposit {order}"),
            "purchase_id": "6084744717",
            "outcome_amount": 0.0015,
            "outcome_currency": "btc",
            "payment_extra_ids": null,
            "fee": {"currency": "btc", "depositFee": 0, "withdrawalFee": 0, "serviceFee": 0},
            "updated_at": 1_700_000_000_000i64
        })
    };
    // Signed with another secret: refused, nothing changes.
    let r = ipn(
        &app,
        "not-the-secret",
        &notification("finished", 0.00153846, json!(5077125051u64)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A payment id that is not this order's.
    let r = ipn(
        &app,
        IPN_SECRET,
        &notification("finished", 0.00153846, json!(999)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.balances(&u).await["BTC"], "0.00000000");
    // The IPN carries the payment id as a number; the create call answered a string.
    let r = ipn(
        &app,
        IPN_SECRET,
        &notification("confirming", 0.0, json!(5077125051u64)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = ipn(
        &app,
        IPN_SECRET,
        &notification("finished", 0.00153846, json!(5077125051u64)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], "credited", "{v}");
    let again = ipn(
        &app,
        IPN_SECRET,
        &notification("finished", 0.00153846, json!(5077125051u64)),
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.balances(&u).await["BTC"], "0.00153846");
    // The sandbox's webhook does not exist beside the configured provider.
    let r = app
        .client
        .post(app.url("/api/wallet/webhook/sandbox"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Simulated payments belong to the sandbox.
    let r = app
        .post(
            &format!("/api/wallet/deposit/{order}/simulate"),
            json!({"status": "finished"}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_webhooks WHERE provider = 'nowpayments'")
            .await,
        4,
        "the signed notifications; the one signed with another secret is not stored"
    );
    assert!(app.state.db.verify_ledger().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_provider_that_refuses_or_is_down_is_a_503_and_no_order() {
    let (url, _) = fake_nowpayments().await;
    let app = nowpayments_app(&url, "wrong-key").await;
    let u = app.register("payer").await;
    let r = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "50", "pay_currency": "BTC"}),
            Some(&u.token),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
    );
    let down = nowpayments_app(&format!("http://127.0.0.1:{}", closed_port()), API_KEY).await;
    let v = down.register("payer2").await;
    let r = down
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "50", "pay_currency": "BTC"}),
            Some(&v.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.count("SELECT COUNT(*) FROM deposits").await, 0);
    assert_eq!(down.count("SELECT COUNT(*) FROM deposits").await, 0);
}

#[tokio::test]
async fn etx_deposit_simulate_sends_the_signed_notification_over_http() {
    let app = TestApp::spawn().await;
    let u = app.register("payer").await;
    let d: Value = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "25", "pay_currency": "USDC"}),
            Some(&u.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let order = d["deposit"]["order_id"].as_str().unwrap().to_string();
    let pay = d["deposit"]["pay_amount"].as_str().unwrap().to_string();
    let mut cmd = crate::cli::etx(&app.data_dir);
    cmd.env(
        "ETX_SECRET_KEY",
        app.state.config.secret_key.clone().unwrap(),
    );
    if let Some(url) = &app.state.config.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let run = |status: &'static str, mut cmd: std::process::Command| {
        let base = app.base.clone();
        let order = order.clone();
        tokio::task::spawn_blocking(move || {
            cmd.args([
                "deposit", "simulate", &order, "--status", status, "--url", &base,
            ])
            .output()
            .unwrap()
        })
    };
    let out = run("finished", cmd).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("credited"), "{stdout}");
    assert_eq!(app.balances(&u).await["USDC"], pay);
    // Through the webhook, so it is stored like any provider notification.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_webhooks WHERE signature_ok = TRUE")
            .await,
        1
    );
    // A wrong secret is refused by the server, and the command says so.
    let mut cmd = crate::cli::etx(&app.data_dir);
    cmd.env(
        "ETX_SECRET_KEY",
        "another-secret-key-that-is-long-enough-000",
    );
    if let Some(url) = &app.state.config.database_url {
        cmd.env("DATABASE_URL", url);
    }
    let out = run("finished", cmd).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert_eq!(app.balances(&u).await["USDC"], pay);
}
