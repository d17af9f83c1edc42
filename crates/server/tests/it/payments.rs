//! Deposits through the payment provider's signed notifications, withdrawals with staff
//! approval, and AML review holds, end to end over HTTP on whichever database the suite runs
//! against. Every money scenario ends with the ledger's invariants and the hold accounts
//! matching the operations still waiting in them.

use crate::support::*;
use etx_core::config::Config;
use etx_domain::{format_amount, parse_amount};
use hmac::{Hmac, Mac};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::Sha512;

const IPN_SECRET: &str = "test-ipn-secret";
const EVM_ADDRESS: &str = "0x742d35Cc6634C0532925a3b844Bc454e4438f44e";
const BTC_ADDRESS: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
const SOL_ADDRESS: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
/// Decimal places of USDT and USDC.
const STABLE_SCALE: u8 = 6;
const ASSETS: [&str; 8] = ["USD", "BTC", "ETH", "USDT", "USDC", "SOL", "LTC", "BNB"];

/// A known IPN secret, and AML thresholds no test user reaches unless a test lowers them.
fn quiet(c: &mut Config) {
    c.deposits.ipn_secret = Some(IPN_SECRET.into());
    c.aml.large_amount_usd = "1000000".into();
    c.aml.young_account_usd = "1000000".into();
}

fn minor(text: &str, scale: u8) -> i64 {
    parse_amount(text, scale).unwrap_or_else(|e| panic!("{text:?} is not an amount: {e:?}"))
}

/// HMAC-SHA512 of exactly these bytes, hex, as the provider computes it.
fn hmac_hex(secret: &str, raw: &str) -> String {
    let mut m = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(raw.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The body as the provider sends it (keys sorted, compact: serde_json's map is ordered by
/// key) and its signature.
fn signed(body: &Value) -> (String, String) {
    let raw = serde_json::to_string(body).unwrap();
    let sig = hmac_hex(IPN_SECRET, &raw);
    (raw, sig)
}

/// A NOWPayments-style notification for a deposit as the create call returned it.
fn ipn(deposit: &Value, status: &str, actually_paid: &str) -> Value {
    json!({
        "payment_id": 5_077_125_051_u64,
        "payment_status": status,
        "pay_address": deposit["pay_address"],
        "price_amount": deposit["price_amount"],
        "price_currency": "usd",
        "pay_amount": deposit["pay_amount"],
        "actually_paid": actually_paid,
        "pay_currency": deposit["pay_currency"].as_str().unwrap().to_ascii_lowercase(),
        "order_id": deposit["order_id"],
        "updated_at": 1_700_000_000_000_u64,
    })
}

async fn webhook_raw(app: &TestApp, raw: &str, sig: Option<&str>) -> Response {
    let mut r = app
        .client
        .post(app.url("/api/wallet/webhook/sandbox"))
        .header("content-type", "application/json")
        .body(raw.to_string());
    if let Some(s) = sig {
        r = r.header("x-nowpayments-sig", s);
    }
    r.send().await.unwrap()
}

/// Sends a correctly signed notification; asserts 200 and returns `result`.
async fn notify(app: &TestApp, body: &Value) -> String {
    let (raw, sig) = signed(body);
    let r = webhook_raw(app, &raw, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::OK, "{raw}");
    let v: Value = r.json().await.unwrap();
    v["result"].as_str().unwrap().to_string()
}

async fn create_deposit(app: &TestApp, u: &TestUser, usd: &str, currency: &str) -> Value {
    let r = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": usd, "pay_currency": currency}),
            Some(&u.token),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    r.json::<Value>().await.unwrap()["deposit"].clone()
}

async fn deposit(app: &TestApp, u: &TestUser, order_id: &str) -> Value {
    let r = app
        .get(&format!("/api/wallet/deposit/{order_id}"), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["deposit"].clone()
}

async fn balance_of(app: &TestApp, u: &TestUser, asset: &str) -> String {
    app.balances(u).await[asset].clone()
}

async fn withdraw(
    app: &TestApp,
    u: &TestUser,
    key: &str,
    amount: &str,
    currency: &str,
) -> Response {
    let address = match currency {
        "BTC" => BTC_ADDRESS,
        "SOL" => SOL_ADDRESS,
        _ => EVM_ADDRESS,
    };
    app.money_post(
        "/api/wallet/withdraw",
        Some(key),
        json!({"amount": amount, "currency": currency, "address": address}),
        &u.token,
    )
    .await
}

/// A withdrawal that must be accepted; returns the whole answer.
async fn withdrawn(app: &TestApp, u: &TestUser, amount: &str, currency: &str) -> Value {
    let key = uuid::Uuid::now_v7().to_string();
    let r = withdraw(app, u, &key, amount, currency).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

async fn staff(app: &TestApp, who: &TestUser, id: &str, action: &str, body: Value) -> Response {
    app.post(
        &format!("/api/admin/withdrawals/{id}/{action}"),
        body,
        Some(&who.token),
    )
    .await
}

async fn withdrawal(app: &TestApp, u: &TestUser, id: &str) -> Value {
    let r = app
        .get(&format!("/api/wallet/withdraw/{id}"), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["withdrawal"].clone()
}

async fn flags(app: &TestApp, staff: &TestUser, status: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/admin/aml?status={status}"),
            Some(&staff.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["flags"]
        .as_array()
        .unwrap()
        .clone()
}

/// The one flag on this subject, in any status.
async fn flag_on(app: &TestApp, staff: &TestUser, subject_id: &str) -> Value {
    let all = flags(app, staff, "all").await;
    let mine: Vec<&Value> = all
        .iter()
        .filter(|f| f["subject_id"] == subject_id)
        .collect();
    assert_eq!(mine.len(), 1, "one flag on {subject_id}: {all:?}");
    mine[0].clone()
}

async fn decide(app: &TestApp, staff: &TestUser, flag_id: &str, decision: &str) -> Response {
    app.post(
        &format!("/api/admin/aml/{flag_id}/{decision}"),
        json!({"reason": "checked the source of funds"}),
        Some(&staff.token),
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

async fn account(app: &TestApp, owner: &str, kind: &str, asset: &str) -> i64 {
    app.count(&format!(
        "SELECT balance FROM ledger_accounts WHERE id = '{kind}:{owner}:{asset}'"
    ))
    .await
}

/// The ledger's own invariants, and every hold account holding exactly what the operations
/// still waiting in it add up to.
async fn books_balance(app: &TestApp) {
    app.ledger_ok().await;
    for asset in ASSETS {
        let hold = account(app, "", "withdrawals_hold", asset).await;
        let open = app
            .count(&format!(
                "SELECT CAST(COALESCE(SUM(amount + fee), 0) AS BIGINT) FROM withdrawals \
                 WHERE asset = '{asset}' \
                 AND status IN ('held', 'pending', 'pending_approval', 'processing')"
            ))
            .await;
        assert_eq!(hold, open, "{asset} withdrawals hold");
        let held = app
            .count(&format!(
                "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts \
                 WHERE kind = 'held' AND asset = '{asset}'"
            ))
            .await;
        let waiting = app
            .count(&format!(
                "SELECT CAST(COALESCE((SELECT SUM(amount) FROM held_transfers \
                 WHERE asset = '{asset}' AND status = 'held'), 0) \
                 + COALESCE((SELECT SUM(held) FROM deposits \
                 WHERE pay_currency = '{asset}'), 0) AS BIGINT)"
            ))
            .await;
        assert_eq!(held, waiting, "{asset} held for review");
    }
}

async fn verified(app: &TestApp, name: &str) -> TestUser {
    let u = app.register(name).await;
    app.verify(&u).await;
    u
}

async fn expect_error(r: Response, status: StatusCode, code: &str) -> Value {
    let (s, c, body) = error_code(r).await;
    assert_eq!((s, c.as_str()), (status, code), "{body}");
    body
}

#[tokio::test]
async fn signed_notifications_credit_a_deposit_exactly_once() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let d = create_deposit(&app, &alice, "100", "usdt").await;
    let order = d["order_id"].as_str().unwrap().to_string();
    assert!(order.starts_with("DEP-"), "{order}");
    assert_eq!(d["status"], "waiting");
    assert_eq!(d["pay_currency"], "USDT");
    assert_eq!(d["price_amount"], "100.00");
    assert_eq!(
        (d["credit_state"].as_str(), d["credited"].as_str()),
        (Some("none"), Some("0.000000"))
    );
    assert_eq!(d["actually_paid"], "0.000000");
    assert!(d["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(d["expires_at"].is_string());
    let address = d["pay_address"].as_str().unwrap();
    assert!(
        address.len() == 42 && address.starts_with("0x"),
        "{address}"
    );
    assert_eq!(d["payment_uri"], format!("ethereum:{address}"));
    // About 100 USDT at a price within a fraction of a percent of $1, never less than asked.
    let pay = minor(d["pay_amount"].as_str().unwrap(), STABLE_SCALE);
    assert!((99_900_000..=100_100_000).contains(&pay), "{pay}");
    let pay_text = d["pay_amount"].as_str().unwrap().to_string();
    let finished = ipn(&d, "finished", &pay_text);
    let (raw, sig) = signed(&finished);

    // Unsigned, signed with another secret, or tampered with after signing: refused, and
    // nothing about the deposit or the balance changes.
    let r = webhook_raw(&app, &raw, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = webhook_raw(&app, &raw, Some(&hmac_hex("another-secret", &raw))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = webhook_raw(&app, &raw, Some("not hex at all")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut richer = finished.clone();
    richer["actually_paid"] = json!("5000");
    let tampered = serde_json::to_string(&richer).unwrap();
    let r = webhook_raw(&app, &tampered, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(
        (now["status"].as_str(), now["credit_state"].as_str()),
        (Some("waiting"), Some("none"))
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");

    // Confirming moves the status only.
    let r = notify(&app, &ipn(&d, "confirming", "0")).await;
    assert_eq!(r, "status confirming");
    assert_eq!(deposit(&app, &alice, &order).await["status"], "confirming");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");

    // Finished credits what was asked.
    let r = webhook_raw(&app, &raw, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], "credited");
    assert_eq!(v["deposit"]["status"], "finished");
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay_text);

    // The same notification again, and a late "confirming": ignored, status stays finished.
    let r = webhook_raw(&app, &raw, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["result"].as_str().unwrap().starts_with("ignored"), "{v}");
    let r = notify(&app, &ipn(&d, "confirming", "0")).await;
    assert!(r.starts_with("ignored"), "{r}");
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(now["status"], "finished");
    assert_eq!(now["credit_state"], "credited");
    assert_eq!(now["credited"], pay_text);
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay_text);
    // The owner sees the signed notifications only, in order.
    let seen: Vec<&str> = now["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["confirming", "finished", "finished", "confirming"]);

    // An order nobody made, or another provider's path.
    let mut stranger = finished.clone();
    stranger["order_id"] = json!("DEP-0000000000000000");
    let (raw_x, sig_x) = signed(&stranger);
    let r = webhook_raw(&app, &raw_x, Some(&sig_x)).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .client
        .post(app.url("/api/wallet/webhook/nowpayments"))
        .header("x-nowpayments-sig", &sig)
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An unknown status, signed.
    let (raw_s, sig_s) = signed(&ipn(&d, "teleported", "0"));
    let r = webhook_raw(&app, &raw_s, Some(&sig_s)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Every signed notification for the order is stored, refused ones included; the four
    // unsigned or badly signed ones are only counted, never stored.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM payment_webhooks WHERE order_id = '{order}'"
        ))
        .await,
        5
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_webhooks WHERE signature_ok = FALSE")
            .await,
        0
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_webhooks").await, 6);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'deposit'")
            .await,
        1
    );
    assert_eq!(audited(&app, "deposit.credit").await, 1);
    let h: Value = app
        .get("/api/transactions?type=deposit", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["transactions"][0]["amount"], pay_text, "{h}");
    assert_eq!(h["transactions"][0]["status"], "completed");
    books_balance(&app).await;
}

/// Ten copies of each of four orders' "finished" notification at once: more writers than
/// database connections, so a step that needed a second connection while holding the write
/// lock would stall until the pool gave up.
#[tokio::test]
async fn concurrent_duplicate_notifications_credit_once() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let mut orders = Vec::new();
    let mut expected = 0;
    for usd in ["250.00", "20", "33.33", "12"] {
        let d = create_deposit(&app, &alice, usd, "USDT").await;
        let pay = d["pay_amount"].as_str().unwrap().to_string();
        expected += minor(&pay, STABLE_SCALE);
        orders.push((
            d["order_id"].as_str().unwrap().to_string(),
            pay,
            signed(&ipn(&d, "finished", d["pay_amount"].as_str().unwrap())),
        ));
    }
    let started = std::time::Instant::now();
    let sends = (0..40).map(|i| {
        let (order, _, (raw, sig)) = orders[i % 4].clone();
        let app = &app;
        async move {
            let r = webhook_raw(app, &raw, Some(&sig)).await;
            assert_eq!(r.status(), StatusCode::OK, "{order}");
            let v: Value = r.json().await.unwrap();
            (order, v["result"].as_str().unwrap().to_string())
        }
    });
    let results = futures_util::future::join_all(sends).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for (order, pay, _) in &orders {
        let mine: Vec<&str> = results
            .iter()
            .filter(|(o, _)| o == order)
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(mine.len(), 10);
        assert_eq!(
            mine.iter().filter(|r| **r == "credited").count(),
            1,
            "{mine:?}"
        );
        assert!(
            mine.iter()
                .filter(|r| **r != "credited")
                .all(|r| r.starts_with("ignored")),
            "{mine:?}"
        );
        assert_eq!(deposit(&app, &alice, order).await["credited"], *pay);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM payment_webhooks WHERE order_id = '{order}'"
            ))
            .await,
            10
        );
    }
    assert_eq!(
        balance_of(&app, &alice, "USDT").await,
        format_amount(expected, STABLE_SCALE)
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'deposit'")
            .await,
        4
    );
    books_balance(&app).await;
}

/// Staff clicking at once: every decision happens once, nothing stalls, and the books hold.
#[tokio::test]
async fn concurrent_staff_decisions_happen_once() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let moderator2 = app.user_with_role("mod2", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "5000").await;

    // Ten approved withdrawals, each completed twice at once.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let w = withdrawn(&app, &alice, "100", "USDT").await;
        let id = w["withdrawal"]["id"].as_str().unwrap().to_string();
        let r = staff(&app, &moderator, &id, "approve", json!({})).await;
        assert_eq!(r.status(), StatusCode::OK);
        ids.push(id);
    }
    let started = std::time::Instant::now();
    let completes = ids.iter().cycle().take(20).map(|id| {
        let app = &app;
        let admin = &admin;
        async move {
            staff(app, admin, id, "complete", json!({"tx_hash": "abc"}))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(completes).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, "3990.000000");
    assert_eq!(account(&app, "", "fees", "USDT").await, 10_000_000);
    books_balance(&app).await;

    // Two staff approving a two-approval withdrawal at once while the owner cancels it.
    app.fund(&admin, &alice, "USDT", "6000").await;
    let w = withdrawn(&app, &alice, "5100", "USDT").await;
    let id = w["withdrawal"]["id"].as_str().unwrap().to_string();
    assert_eq!(w["withdrawal"]["status"], "held");
    let flag = flag_on(&app, &admin, &id).await;
    let r = decide(&app, &admin, flag["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    let cancel_path = format!("/api/wallet/withdraw/{id}/cancel");
    let (a, b, c) = tokio::join!(
        staff(&app, &moderator, &id, "approve", json!({})),
        staff(&app, &moderator2, &id, "approve", json!({})),
        app.post(&cancel_path, json!({}), Some(&alice.token)),
    );
    let (a, b, c) = (a.status(), b.status(), c.status());
    let now = withdrawal(&app, &alice, &id).await;
    let approvals = now["approvals"].as_array().unwrap().len();
    match now["status"].as_str().unwrap() {
        "cancelled" => {
            assert_eq!(c, StatusCode::OK);
            assert_eq!(approvals, 0, "{now}");
            assert_eq!((a, b), (StatusCode::CONFLICT, StatusCode::CONFLICT));
            assert_eq!(balance_of(&app, &alice, "USDT").await, "9990.000000");
        }
        "pending_approval" => {
            assert_eq!(c, StatusCode::CONFLICT);
            assert_eq!(approvals, 1, "{now}");
            assert_eq!(balance_of(&app, &alice, "USDT").await, "4839.000000");
        }
        "processing" => {
            assert_eq!(
                (a, b, c),
                (StatusCode::OK, StatusCode::OK, StatusCode::CONFLICT)
            );
            assert_eq!(approvals, 2, "{now}");
            assert_eq!(balance_of(&app, &alice, "USDT").await, "4839.000000");
        }
        other => panic!("unexpected status {other}: {now}"),
    }
    books_balance(&app).await;

    // Large deposits held for review, each released and rejected at once: one decision wins.
    let mut held = Vec::new();
    for _ in 0..4 {
        let d = create_deposit(&app, &alice, "1500", "USDC").await;
        let pay = d["pay_amount"].as_str().unwrap().to_string();
        assert_eq!(
            notify(&app, &ipn(&d, "finished", &pay)).await,
            "credited to review hold"
        );
        let f = flag_on(&app, &moderator, d["order_id"].as_str().unwrap()).await;
        held.push((f["id"].as_str().unwrap().to_string(), pay));
    }
    let decisions = held.iter().flat_map(|(f, _)| {
        [("release", &moderator), ("reject", &moderator2)].map(|(d, who)| {
            let app = &app;
            async move { (f.clone(), d, decide(app, who, f, d).await.status()) }
        })
    });
    let started = std::time::Instant::now();
    let outcomes = futures_util::future::join_all(decisions).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut expected = 0;
    for (f, pay) in &held {
        let won: Vec<&str> = outcomes
            .iter()
            .filter(|(id, _, s)| id == f && *s == StatusCode::OK)
            .map(|(_, d, _)| *d)
            .collect();
        assert_eq!(won.len(), 1, "{outcomes:?}");
        if won[0] == "release" {
            expected += minor(pay, STABLE_SCALE);
        }
    }
    assert_eq!(
        balance_of(&app, &alice, "USDC").await,
        format_amount(expected, STABLE_SCALE)
    );
    assert_eq!(account(&app, &alice.id, "held", "USDC").await, 0);
    books_balance(&app).await;

    // The owner's double clicks: one withdrawal per key, one refund per cancellation.
    let before = minor(&balance_of(&app, &alice, "USDT").await, STABLE_SCALE);
    let same_key = (0..5).map(|_| withdraw(&app, &alice, "double-click", "40", "USDT"));
    let answers = futures_util::future::join_all(same_key).await;
    let mut ids = std::collections::HashSet::new();
    for r in answers {
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["withdrawal"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(
        minor(&balance_of(&app, &alice, "USDT").await, STABLE_SCALE),
        before - 41_000_000
    );
    let path = format!("/api/wallet/withdraw/{id}/cancel");
    let cancels = (0..5).map(|_| app.post(&path, json!({}), Some(&alice.token)));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(cancels)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        minor(&balance_of(&app, &alice, "USDT").await, STABLE_SCALE),
        before
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn a_payment_after_expiry_is_still_credited_and_overpayment_counts() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let d = create_deposit(&app, &alice, "20", "USDT").await;
    let order = d["order_id"].as_str().unwrap().to_string();
    app.exec(&format!(
        "UPDATE deposits SET expires_at = 1 WHERE order_id = '{order}'"
    ))
    .await;
    assert_eq!(deposit(&app, &alice, &order).await["status"], "expired");
    let list: Value = app
        .get("/api/wallet/deposits", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["deposits"][0]["status"], "expired");
    // Listed orders carry neither the QR code nor the notifications of a single order.
    let listed = list["deposits"][0].as_object().unwrap();
    assert!(!listed.contains_key("qr_svg") && !listed.contains_key("notifications"));
    // The payer sent a little more than asked, written as a JSON number.
    let paid = minor(d["pay_amount"].as_str().unwrap(), STABLE_SCALE) + 1_500_000;
    let mut body = ipn(&d, "finished", "0");
    body["actually_paid"] = serde_json::from_str(&format_amount(paid, STABLE_SCALE)).unwrap();
    assert_eq!(notify(&app, &body).await, "credited");
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(now["status"], "finished");
    assert_eq!(now["credited"], format_amount(paid, STABLE_SCALE));
    assert_eq!(now["actually_paid"], format_amount(paid, STABLE_SCALE));
    assert_eq!(
        balance_of(&app, &alice, "USDT").await,
        format_amount(paid, STABLE_SCALE)
    );

    // A provider's own "expired" followed by a late full payment.
    let d2 = create_deposit(&app, &alice, "15", "USDT").await;
    assert_eq!(
        notify(&app, &ipn(&d2, "expired", "0")).await,
        "status expired"
    );
    let late = d2["pay_amount"].as_str().unwrap();
    assert_eq!(notify(&app, &ipn(&d2, "finished", late)).await, "credited");
    assert_eq!(
        balance_of(&app, &alice, "USDT").await,
        format_amount(paid + minor(late, STABLE_SCALE), STABLE_SCALE)
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn a_partial_payment_waits_for_review_and_the_remainder_follows() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let d = create_deposit(&app, &alice, "100", "USDT").await;
    let order = d["order_id"].as_str().unwrap().to_string();
    let pay = minor(d["pay_amount"].as_str().unwrap(), STABLE_SCALE);

    let r = notify(&app, &ipn(&d, "partially_paid", "40")).await;
    assert_eq!(r, "partial payment held for review");
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(now["status"], "partially_paid");
    assert_eq!(now["actually_paid"], "40.000000");
    assert_eq!(now["credit_state"], "none");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");
    let open = flags(&app, &moderator, "open").await;
    assert_eq!(open.len(), 1);
    let flag = &open[0];
    assert_eq!(flag["rule"], "partial_payment");
    assert_eq!(flag["subject_type"], "deposit");
    assert_eq!(flag["subject_id"], order);
    assert_eq!(flag["user"]["username"], "alice");
    assert_eq!(flag["details"]["actually_paid"], "40.000000");
    let flag_id = flag["id"].as_str().unwrap().to_string();

    // Only staff decide, once.
    let r = app.get("/api/admin/aml", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = decide(&app, &alice, &flag_id, "release").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = decide(&app, &moderator, &flag_id, "release").await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = decide(&app, &moderator, &flag_id, "release").await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    let r = decide(&app, &moderator, &flag_id, "reject").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "40.000000");
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(
        (now["credit_state"].as_str(), now["credited"].as_str()),
        (Some("credited"), Some("40.000000"))
    );
    assert!(flags(&app, &moderator, "open").await.is_empty());
    assert_eq!(flags(&app, &moderator, "released").await.len(), 1);

    // The rest arrives: only the remainder is credited, once.
    let full = format_amount(pay, STABLE_SCALE);
    let r = notify(&app, &ipn(&d, "finished", &full)).await;
    assert_eq!(r, "credited the remainder");
    assert_eq!(balance_of(&app, &alice, "USDT").await, full);
    let r = notify(&app, &ipn(&d, "finished", &full)).await;
    assert!(r.starts_with("ignored"), "{r}");
    assert_eq!(balance_of(&app, &alice, "USDT").await, full);
    assert_eq!(deposit(&app, &alice, &order).await["credited"], full);

    // A partial payment staff reject is never credited, even if the rest turns up.
    let d2 = create_deposit(&app, &alice, "50", "USDT").await;
    notify(&app, &ipn(&d2, "partially_paid", "10")).await;
    let f2 = flag_on(&app, &moderator, d2["order_id"].as_str().unwrap()).await;
    let r = decide(&app, &moderator, f2["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["flag"]["status"],
        "rejected"
    );
    let pay2 = d2["pay_amount"].as_str().unwrap();
    let r = notify(&app, &ipn(&d2, "finished", pay2)).await;
    assert!(r.contains("rejected"), "{r}");
    let now2 = deposit(&app, &alice, d2["order_id"].as_str().unwrap()).await;
    assert_eq!(
        (now2["credit_state"].as_str(), now2["credited"].as_str()),
        (Some("rejected"), Some("0.000000"))
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, full);

    // A partial payment still open when the rest arrives: the whole amount waits in review.
    let d3 = create_deposit(&app, &alice, "30", "USDT").await;
    let order3 = d3["order_id"].as_str().unwrap().to_string();
    let pay3 = d3["pay_amount"].as_str().unwrap().to_string();
    notify(&app, &ipn(&d3, "partially_paid", "5")).await;
    let r = notify(&app, &ipn(&d3, "finished", &pay3)).await;
    assert_eq!(r, "credited to review hold");
    assert_eq!(deposit(&app, &alice, &order3).await["credit_state"], "held");
    assert_eq!(balance_of(&app, &alice, "USDT").await, full);
    books_balance(&app).await;
    let f3 = flag_on(&app, &moderator, &order3).await;
    let r = decide(&app, &moderator, f3["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        balance_of(&app, &alice, "USDT").await,
        format_amount(pay + minor(&pay3, STABLE_SCALE), STABLE_SCALE)
    );
    assert_eq!(audited(&app, "aml.release").await, 2);
    assert_eq!(audited(&app, "aml.reject").await, 1);
    books_balance(&app).await;
}

#[tokio::test]
async fn withdrawals_need_distinct_staff_and_move_money_once() {
    let app = TestApp::spawn_with(quiet).await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let moderator2 = app.user_with_role("mod2", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "20000").await;

    // Fee: 1 % rounded up to the asset's precision, at least the asset's minimum.
    let quote = |amount: &'static str, currency: &'static str| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            let r = app
                .post(
                    "/api/wallet/withdraw/quote",
                    json!({"amount": amount, "currency": currency}),
                    Some(&token),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let q = quote("6000", "USDT").await;
    assert_eq!(
        (q["fee"].as_str(), q["total"].as_str()),
        (Some("60.000000"), Some("6060.000000"))
    );
    assert_eq!(q["approvals_required"], 2);
    let usd = minor(q["usd_value"].as_str().unwrap(), 2);
    assert!((599_000..=601_000).contains(&usd), "{q}");
    let q = quote("50", "USDT").await;
    assert_eq!(
        (q["fee"].as_str(), q["approvals_required"].as_i64()),
        (Some("1.000000"), Some(1))
    );
    let q = quote("123.456789", "USDT").await;
    assert_eq!(q["fee"], "1.234568");
    assert_eq!(q["total"], "124.691357");
    let q = quote("0.001", "BTC").await;
    assert_eq!(q["fee"], "0.00010000");
    // Quoting moves nothing.
    assert_eq!(balance_of(&app, &alice, "USDT").await, "20000.000000");

    // A two-approval withdrawal: amount + fee leave the wallet at once.
    let w = withdrawn(&app, &alice, "6000", "USDT").await;
    assert_eq!(w["balance"], "13940.000000");
    let w = w["withdrawal"].clone();
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(w["status"], "pending");
    assert_eq!(
        (w["amount"].as_str(), w["fee"].as_str(), w["total"].as_str()),
        (Some("6000.000000"), Some("60.000000"), Some("6060.000000"))
    );
    assert_eq!(w["approvals_required"], 2);
    assert_eq!(w["approvals"], json!([]));
    assert_eq!(w["address"], EVM_ADDRESS);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");
    books_balance(&app).await;

    // Plain users cannot approve; the queue shows it to staff.
    let r = staff(&app, &alice, &id, "approve", json!({})).await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let q: Value = app
        .get("/api/admin/withdrawals", Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["total"], 1);
    assert_eq!(q["withdrawals"][0]["id"], id);

    let r = staff(
        &app,
        &moderator,
        &id,
        "approve",
        json!({"note": "known customer"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["withdrawal"]["status"], "pending_approval");
    assert_eq!(v["withdrawal"]["approvals"][0]["username"], "mod");
    assert_eq!(v["withdrawal"]["approvals"][0]["note"], "known customer");
    // The same staff member twice does not count twice.
    let r = staff(&app, &moderator, &id, "approve", json!({})).await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(
        withdrawal(&app, &alice, &id).await["status"],
        "pending_approval"
    );
    // Once approved by anyone the owner can no longer cancel.
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{id}/cancel"),
            json!({}),
            Some(&alice.token),
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    // Completing needs an admin, and an approved withdrawal.
    let r = staff(
        &app,
        &moderator2,
        &id,
        "complete",
        json!({"tx_hash": "abc123"}),
    )
    .await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let r = staff(&app, &admin, &id, "complete", json!({"tx_hash": "abc123"})).await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;

    let r = staff(&app, &moderator2, &id, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["withdrawal"]["status"], "processing");
    assert_eq!(v["withdrawal"]["approvals"].as_array().unwrap().len(), 2);
    let r = staff(&app, &admin, &id, "approve", json!({})).await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(
        withdrawal(&app, &alice, &id).await["approvals"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = staff(
        &app,
        &admin,
        &id,
        "complete",
        json!({"tx_hash": "not a hash!"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = staff(
        &app,
        &admin,
        &id,
        "complete",
        json!({"tx_hash": "0xfeedbeef"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["withdrawal"]["status"], "completed");
    assert_eq!(v["withdrawal"]["tx_hash"], "0xfeedbeef");
    let r = staff(
        &app,
        &admin,
        &id,
        "complete",
        json!({"tx_hash": "0xfeedbeef"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = staff(
        &app,
        &admin,
        &id,
        "reject",
        json!({"reason": "too late now"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Completion moves nothing in the wallet; the fee is the platform's, the amount has left.
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");
    assert_eq!(account(&app, "", "fees", "USDT").await, 60_000_000);
    assert_eq!(
        account(&app, "", "withdrawals_clearing", "USDT").await,
        6_000_000_000
    );
    assert_eq!(withdrawal(&app, &alice, &id).await["status"], "completed");
    books_balance(&app).await;

    // A staff member's own withdrawal: never approved by themselves; one approval under $5000.
    app.fund(&admin, &moderator, "USDT", "100").await;
    let own = withdrawn(&app, &moderator, "50", "USDT").await["withdrawal"].clone();
    let own_id = own["id"].as_str().unwrap();
    assert_eq!(own["approvals_required"], 1);
    let r = staff(&app, &moderator, own_id, "approve", json!({})).await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let r = staff(&app, &moderator2, own_id, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["withdrawal"]["status"],
        "processing"
    );

    // Rejected: amount and fee come back.
    let w = withdrawn(&app, &alice, "100", "USDT").await;
    assert_eq!(w["balance"], "13839.000000");
    let rid = w["withdrawal"]["id"].as_str().unwrap().to_string();
    let r = staff(&app, &moderator, &rid, "reject", json!({"reason": "x"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = staff(
        &app,
        &moderator,
        &rid,
        "reject",
        json!({"reason": "address on a sanctions list"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["withdrawal"]["status"], "rejected");
    assert_eq!(v["withdrawal"]["reason"], "address on a sanctions list");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");
    let r = staff(
        &app,
        &moderator,
        &rid,
        "reject",
        json!({"reason": "address on a sanctions list"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = staff(&app, &moderator2, &rid, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");

    // Cancelled by the owner while pending: refunded once.
    let w = withdrawn(&app, &alice, "200", "USDT").await;
    assert_eq!(w["balance"], "13738.000000");
    let cid = w["withdrawal"]["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{cid}/cancel"),
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["withdrawal"]["status"],
        "cancelled"
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{cid}/cancel"),
            json!({}),
            Some(&alice.token),
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    let r = staff(&app, &moderator, &cid, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");

    // Approved (processing) and then rejected: still refunded.
    let pid = withdrawn(&app, &alice, "300", "USDT").await["withdrawal"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = staff(&app, &admin, &pid, "approve", json!({})).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["withdrawal"]["status"],
        "processing"
    );
    // Once approved only an admin can stop it: they may be sending it.
    let r = staff(
        &app,
        &admin,
        &pid,
        "reject",
        json!({"reason": "payout failed on chain"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "13940.000000");

    let mine: Value = app
        .get("/api/wallet/withdrawals", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = mine["withdrawals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["rejected", "cancelled", "rejected", "completed"]);
    let done: Value = app
        .get(
            "/api/admin/withdrawals?status=completed",
            Some(&admin.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["total"], 1);
    let r = app
        .get("/api/admin/withdrawals?status=lost", Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(audited(&app, "withdrawal.request").await, 5);
    assert_eq!(audited(&app, "withdrawal.approve").await, 4);
    assert_eq!(audited(&app, "withdrawal.complete").await, 1);
    assert_eq!(audited(&app, "withdrawal.reject").await, 2);
    assert_eq!(audited(&app, "withdrawal.cancel").await, 1);
    books_balance(&app).await;
}

#[tokio::test]
async fn withdrawal_limits_caps_addresses_and_idempotency() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.withdrawals.daily_cap_usd = "300".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "1000").await;
    app.fund(&admin, &alice, "USD", "500").await;
    let before = app.balances(&alice).await;

    // Below $10, above $10,000 (also when only quoted).
    let r = withdraw(&app, &alice, "k-small", "9", "USDT").await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    let r = withdraw(&app, &alice, "k-big", "10100", "USDT").await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    let r = app
        .post(
            "/api/wallet/withdraw/quote",
            json!({"amount": "10100", "currency": "USDT"}),
            Some(&alice.token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    // USD has no network to send to.
    let r = withdraw(&app, &alice, "k-usd", "50", "USD").await;
    let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert!(body.to_string().contains("currency"), "{body}");
    // Addresses are checked for the asset's network, checksums included.
    let bad = [
        ("USDT", "0x742d35Cc6634C0532925a3b844Bc454e4438f44"),
        ("USDT", BTC_ADDRESS),
        ("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp"),
        ("BTC", EVM_ADDRESS),
        ("SOL", "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWW0"),
    ];
    for (i, (currency, address)) in bad.into_iter().enumerate() {
        let amount = match currency {
            "USDT" => "50",
            "BTC" => "0.001",
            _ => "1",
        };
        let r = app
            .money_post(
                "/api/wallet/withdraw",
                Some(&format!("k-addr-{i}")),
                json!({"amount": amount, "currency": currency, "address": address}),
                &alice.token,
            )
            .await;
        let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
        assert!(
            body.to_string().contains("address"),
            "{currency} {address}: {body}"
        );
    }
    // Valid addresses for the other networks get as far as the balance.
    for currency in ["BTC", "SOL"] {
        let amount = if currency == "BTC" { "0.001" } else { "1" };
        let r = withdraw(&app, &alice, &format!("k-{currency}"), amount, currency).await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_FUNDS").await;
    }
    // Amount plus fee must be there: 999.01 + 9.9901 > 1000.
    let r = withdraw(&app, &alice, "k-broke", "999.01", "USDT").await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_FUNDS").await;
    let r = app
        .money_post(
            "/api/wallet/withdraw",
            None,
            json!({"amount": "50", "currency": "USDT", "address": EVM_ADDRESS}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.balances(&alice).await, before);
    assert_eq!(app.count("SELECT COUNT(*) FROM withdrawals").await, 0);

    // The daily cap ($300): 200 passes, another 150 does not.
    let r = withdraw(&app, &alice, "k-1", "200", "USDT").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["balance"], "798.000000");
    let r = withdraw(&app, &alice, "k-2", "150", "USDT").await;
    let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    assert!(body.to_string().contains("daily"), "{body}");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "798.000000");

    // Replaying the first request answers as it did and moves nothing; another body under
    // the same key is refused.
    let r = withdraw(&app, &alice, "k-1", "200", "USDT").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    let r = withdraw(&app, &alice, "k-1", "20", "USDT").await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM withdrawals").await, 1);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "798.000000");

    // Cancelling gives the day's allowance back.
    let id = first["withdrawal"]["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{id}/cancel"),
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = withdraw(&app, &alice, "k-3", "150", "USDT").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = withdraw(&app, &alice, "k-4", "140", "USDT").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = withdraw(&app, &alice, "k-5", "20", "USDT").await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    assert_eq!(balance_of(&app, &alice, "USDT").await, "707.100000");
    assert_eq!(app.count("SELECT COUNT(*) FROM withdrawals").await, 3);

    // Deposits have their own limits and currencies.
    for amount in ["9.99", "100000.01"] {
        let r = app
            .post(
                "/api/wallet/deposit/create",
                json!({"amount": amount, "pay_currency": "BTC"}),
                Some(&alice.token),
            )
            .await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    }
    for currency in ["USD", "DOGE"] {
        let r = app
            .post(
                "/api/wallet/deposit/create",
                json!({"amount": "50", "pay_currency": currency}),
                Some(&alice.token),
            )
            .await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    }
    let r = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "50", "pay_currency": "BTC"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT COUNT(*) FROM deposits").await, 0);
    let btc = create_deposit(&app, &alice, "100000", "BTC").await;
    assert!(
        btc["payment_uri"]
            .as_str()
            .unwrap()
            .starts_with("bitcoin:tb1"),
        "{btc}"
    );
    let sol = create_deposit(&app, &alice, "10", "SOL").await;
    assert!(
        sol["payment_uri"].as_str().unwrap().starts_with("solana:"),
        "{sol}"
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn aml_holds_a_withdrawal_until_staff_release_or_reject_it() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "5000").await;

    let w = withdrawn(&app, &alice, "1500", "USDT").await;
    assert_eq!(w["balance"], "3485.000000");
    let id = w["withdrawal"]["id"].as_str().unwrap().to_string();
    assert_eq!(w["withdrawal"]["status"], "held");
    let flag = flag_on(&app, &moderator, &id).await;
    assert_eq!(
        (
            flag["rule"].as_str(),
            flag["subject_type"].as_str(),
            flag["status"].as_str()
        ),
        (Some("large_amount"), Some("withdrawal"), Some("open"))
    );
    assert_eq!(flag["user"]["id"], alice.id);
    let flag_id = flag["id"].as_str().unwrap().to_string();
    // Staff see the flag on the withdrawal, the owner does not.
    let staff_view = withdrawal(&app, &moderator, &id).await;
    assert_eq!(staff_view["aml_flag"]["id"], flag_id);
    assert!(
        withdrawal(&app, &alice, &id)
            .await
            .get("aml_flag")
            .is_none()
    );
    // Held: neither cancelled, nor approved, nor in the default queue.
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{id}/cancel"),
            json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = staff(&app, &moderator, &id, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        withdrawal(&app, &alice, &id).await["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let q: Value = app
        .get("/api/admin/withdrawals", Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["total"], 0);
    let q: Value = app
        .get("/api/admin/withdrawals?status=held", Some(&moderator.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["total"], 1);
    books_balance(&app).await;

    let r = decide(&app, &alice, &flag_id, "release").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = decide(&app, &moderator, &flag_id, "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    let f = r.json::<Value>().await.unwrap()["flag"].clone();
    assert_eq!(f["status"], "released");
    assert_eq!(f["decided_by"], moderator.id);
    assert_eq!(f["decision_reason"], "checked the source of funds");
    assert_eq!(withdrawal(&app, &alice, &id).await["status"], "pending");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "3485.000000");
    let r = staff(&app, &moderator, &id, "approve", json!({})).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["withdrawal"]["status"],
        "processing"
    );

    // Another one rejected in review: refunded in full.
    let w = withdrawn(&app, &alice, "1200", "USDT").await;
    assert_eq!(w["balance"], "2273.000000");
    let id2 = w["withdrawal"]["id"].as_str().unwrap().to_string();
    let f2 = flag_on(&app, &moderator, &id2).await;
    let r = decide(&app, &admin, f2["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    let w2 = withdrawal(&app, &alice, &id2).await;
    assert_eq!(w2["status"], "rejected");
    assert_eq!(w2["reason"], "checked the source of funds");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "3485.000000");
    let r = decide(&app, &admin, f2["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "3485.000000");

    // Small withdrawals pass without review.
    let w = withdrawn(&app, &alice, "100", "USDT").await;
    assert_eq!(w["withdrawal"]["status"], "pending");

    assert!(flags(&app, &moderator, "open").await.is_empty());
    assert_eq!(flags(&app, &moderator, "released").await.len(), 1);
    assert_eq!(flags(&app, &moderator, "rejected").await.len(), 1);
    assert_eq!(flags(&app, &moderator, "all").await.len(), 2);
    let r = app
        .get("/api/admin/aml?status=maybe", Some(&moderator.token))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(audited(&app, "aml.release").await, 1);
    assert_eq!(audited(&app, "aml.reject").await, 1);
    books_balance(&app).await;
}

#[tokio::test]
async fn default_rules_hold_a_young_accounts_large_withdrawal() {
    let app = TestApp::spawn_with(|c| c.deposits.ipn_secret = Some(IPN_SECRET.into())).await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "9000").await;
    let w = withdrawn(&app, &alice, "2900", "USDT").await;
    assert_eq!(w["withdrawal"]["status"], "pending");
    let w = withdrawn(&app, &alice, "3100", "USDT").await;
    assert_eq!(w["withdrawal"]["status"], "held");
    let flag = flag_on(&app, &moderator, w["withdrawal"]["id"].as_str().unwrap()).await;
    assert_eq!(flag["rule"], "young_account");
    assert_eq!(flag["details"]["threshold_usd"], "3000.00");
    books_balance(&app).await;
}

#[tokio::test]
async fn aml_holds_transfers_and_deposits_out_of_reach_until_released() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    let bob = verified(&app, "bob").await;
    app.fund(&admin, &alice, "USD", "5000").await;

    let p2p = |key: &'static str, amount: &'static str| {
        let (app, token) = (&app, alice.token.clone());
        async move {
            let r = app
                .money_post(
                    "/api/transfers/p2p",
                    Some(key),
                    json!({"recipient": "bob", "amount": amount, "currency": "USD"}),
                    &token,
                )
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        }
    };
    let t = p2p("t-1", "2000").await;
    assert_eq!(t["transfer"]["status"], "held");
    assert_eq!(t["balance"], "3000.00");
    assert_eq!(balance_of(&app, &bob, "USD").await, "0.00");
    assert_eq!(account(&app, &alice.id, "held", "USD").await, 200_000);
    let open = flags(&app, &moderator, "open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["subject_type"], "transfer");
    assert_eq!(open[0]["rule"], "large_amount");
    books_balance(&app).await;
    let r = decide(&app, &moderator, open[0]["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &bob, "USD").await, "2000.00");
    assert_eq!(balance_of(&app, &alice, "USD").await, "3000.00");
    let h: Value = app
        .get("/api/transfers/p2p/history", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["transfers"][0]["amount"], "2000.00", "{h}");
    assert_eq!(h["transfers"][0]["counterparty"]["username"], "alice");

    let t = p2p("t-2", "1500").await;
    assert_eq!(t["transfer"]["status"], "held");
    assert_eq!(balance_of(&app, &alice, "USD").await, "1500.00");
    let f = flags(&app, &moderator, "open").await;
    let r = decide(&app, &moderator, f[0]["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USD").await, "3000.00");
    assert_eq!(balance_of(&app, &bob, "USD").await, "2000.00");
    books_balance(&app).await;

    // A large deposit is credited into review, not the wallet.
    let d = create_deposit(&app, &alice, "2000", "USDT").await;
    let order = d["order_id"].as_str().unwrap().to_string();
    let pay = d["pay_amount"].as_str().unwrap().to_string();
    assert_eq!(
        notify(&app, &ipn(&d, "finished", &pay)).await,
        "credited to review hold"
    );
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(
        (now["credit_state"].as_str(), now["credited"].as_str()),
        (Some("held"), Some(pay.as_str()))
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");
    assert!(
        notify(&app, &ipn(&d, "finished", &pay))
            .await
            .starts_with("ignored")
    );
    let flag = flag_on(&app, &moderator, &order).await;
    assert_eq!(
        (flag["rule"].as_str(), flag["subject_type"].as_str()),
        (Some("large_amount"), Some("deposit"))
    );
    books_balance(&app).await;
    let r = decide(&app, &moderator, flag["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay);
    assert_eq!(
        deposit(&app, &alice, &order).await["credit_state"],
        "credited"
    );

    // Another, rejected in review: never reaches the wallet.
    let d2 = create_deposit(&app, &alice, "1500", "USDT").await;
    let pay2 = d2["pay_amount"].as_str().unwrap().to_string();
    assert_eq!(
        notify(&app, &ipn(&d2, "finished", &pay2)).await,
        "credited to review hold"
    );
    let f2 = flag_on(&app, &moderator, d2["order_id"].as_str().unwrap()).await;
    let r = decide(&app, &moderator, f2["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    let now2 = deposit(&app, &alice, d2["order_id"].as_str().unwrap()).await;
    assert_eq!(now2["credit_state"], "rejected");
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay);
    assert_eq!(account(&app, &alice.id, "held", "USDT").await, 0);
    assert_eq!(account(&app, &alice.id, "held", "USD").await, 0);
    books_balance(&app).await;
}

#[tokio::test]
async fn deposits_and_withdrawals_belong_to_their_owner_and_staff_routes_to_staff() {
    let app = TestApp::spawn_with(quiet).await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    let bob = verified(&app, "bob").await;
    app.fund(&admin, &alice, "USDT", "500").await;

    let d = create_deposit(&app, &alice, "25", "USDT").await;
    let order = d["order_id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/wallet/deposit/{order}"), Some(&bob.token))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .post(
            &format!("/api/wallet/deposit/{order}/simulate"),
            json!({"status": "finished"}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let bobs: Value = app
        .get("/api/wallet/deposits", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["total"], 0);
    assert_eq!(deposit(&app, &moderator, order).await["order_id"], order);

    let w = withdrawn(&app, &alice, "100", "USDT").await["withdrawal"].clone();
    let id = w["id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/wallet/withdraw/{id}"), Some(&bob.token))
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{id}/cancel"),
            json!({}),
            Some(&bob.token),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .post(
            &format!("/api/wallet/withdraw/{id}/cancel"),
            json!({}),
            Some(&moderator.token),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "staff do not cancel for the owner"
    );
    let bobs: Value = app
        .get("/api/wallet/withdrawals", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["total"], 0);
    assert_eq!(withdrawal(&app, &alice, id).await["status"], "pending");

    // Plain users get 403 from every staff route; unknown ids are 404 for staff.
    let reason = json!({"reason": "because I can"});
    let attempts = [
        ("GET", "/api/admin/withdrawals".to_string(), json!(null)),
        ("GET", "/api/admin/aml".to_string(), json!(null)),
        (
            "POST",
            format!("/api/admin/withdrawals/{id}/approve"),
            json!({}),
        ),
        (
            "POST",
            format!("/api/admin/withdrawals/{id}/reject"),
            reason.clone(),
        ),
        (
            "POST",
            format!("/api/admin/withdrawals/{id}/complete"),
            json!({"tx_hash": "abc"}),
        ),
        (
            "POST",
            "/api/admin/aml/nope/release".to_string(),
            reason.clone(),
        ),
        (
            "POST",
            "/api/admin/aml/nope/reject".to_string(),
            reason.clone(),
        ),
    ];
    for (method, path, body) in &attempts {
        let r = if *method == "GET" {
            app.get(path, Some(&bob.token)).await
        } else {
            app.post(path, body.clone(), Some(&bob.token)).await
        };
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    let r = app
        .post(
            "/api/admin/withdrawals/nope/approve",
            json!({}),
            Some(&moderator.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .post(
            "/api/admin/aml/nope/release",
            reason.clone(),
            Some(&moderator.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A moderator approves, but only an admin completes.
    let r = staff(&app, &moderator, id, "approve", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = staff(&app, &moderator, id, "complete", json!({"tx_hash": "abc"})).await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(withdrawal(&app, &alice, id).await["status"], "processing");
    let r = staff(&app, &admin, id, "complete", json!({"tx_hash": "abc"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Nothing anyone tried moved money they should not have.
    assert_eq!(balance_of(&app, &alice, "USDT").await, "399.000000");
    assert_eq!(balance_of(&app, &bob, "USDT").await, "0.000000");
    books_balance(&app).await;
}

#[tokio::test]
async fn staff_do_not_review_their_own_flagged_operations() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    app.fund(&admin, &moderator, "USDT", "3000").await;
    let w = withdrawn(&app, &moderator, "2000", "USDT").await["withdrawal"].clone();
    assert_eq!(w["status"], "held");
    let flag = flag_on(&app, &admin, w["id"].as_str().unwrap()).await;
    let r = decide(&app, &moderator, flag["id"].as_str().unwrap(), "release").await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(
        flag_on(&app, &admin, w["id"].as_str().unwrap()).await["status"],
        "open"
    );
    let r = decide(&app, &admin, flag["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        withdrawal(&app, &moderator, w["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn simulated_payments_go_through_the_signed_webhook() {
    // No IPN secret configured: the sandbox derives one from the server secret.
    let app = TestApp::spawn_with(|c| {
        c.aml.large_amount_usd = "1000000".into();
        c.aml.young_account_usd = "1000000".into();
    })
    .await;
    let alice = verified(&app, "alice").await;
    let d = create_deposit(&app, &alice, "50", "BTC").await;
    let order = d["order_id"].as_str().unwrap().to_string();
    let pay = d["pay_amount"].as_str().unwrap().to_string();
    let simulate = |status: &'static str| {
        let (app, token, order) = (&app, alice.token.clone(), order.clone());
        async move {
            app.post(
                &format!("/api/wallet/deposit/{order}/simulate"),
                json!({"status": status}),
                Some(&token),
            )
            .await
        }
    };
    let r = simulate("confirming").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["result"],
        "status confirming"
    );
    assert_eq!(balance_of(&app, &alice, "BTC").await, "0.00000000");
    let r = simulate("finished").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], "credited");
    assert_eq!(v["deposit"]["credited"], pay);
    assert_eq!(balance_of(&app, &alice, "BTC").await, pay);
    let r = simulate("finished").await;
    assert!(
        r.json::<Value>().await.unwrap()["result"]
            .as_str()
            .unwrap()
            .starts_with("ignored")
    );
    assert_eq!(balance_of(&app, &alice, "BTC").await, pay);
    let r = simulate("teleported").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let now = deposit(&app, &alice, &order).await;
    assert_eq!(now["notifications"].as_array().unwrap().len(), 3);
    // The derived secret is not something an outsider can sign with.
    let d2 = create_deposit(&app, &alice, "50", "BTC").await;
    let (raw, sig) = signed(&ipn(&d2, "finished", d2["pay_amount"].as_str().unwrap()));
    let r = webhook_raw(&app, &raw, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(balance_of(&app, &alice, "BTC").await, pay);
    assert_eq!(audited(&app, "deposit.simulate").await, 3);
    books_balance(&app).await;
}

/// A notification as the provider writes it: amounts as JSON numbers, a nested object, keys
/// sorted at every depth. The signature covers exactly those bytes.
#[tokio::test]
async fn notifications_with_numbers_and_nested_objects_verify() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let d = create_deposit(&app, &alice, "10", "USDT").await;
    let order = d["order_id"].as_str().unwrap();
    // As a JavaScript number prints: no trailing zeros.
    let pay = d["pay_amount"].as_str().unwrap();
    let number = pay.trim_end_matches('0').trim_end_matches('.');
    let raw = format!(
        r#"{{"actually_paid":{number},"fee":{{"currency":"usdterc20","depositFee":0,"serviceFee":0.05,"withdrawalFee":0}},"order_id":"{order}","outcome_amount":9.95,"pay_amount":{number},"pay_currency":"usdterc20","payment_id":5077125051,"payment_status":"finished","price_amount":10,"price_currency":"usd","purchase_id":"4923811245"}}"#
    );
    let sig = hmac_hex(IPN_SECRET, &raw);
    // A field the signature does not cover is refused.
    let shuffled = raw.replacen(r#"{"actually_paid""#, r#"{"zzz":1,"actually_paid""#, 1);
    let r = webhook_raw(&app, &shuffled, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = webhook_raw(&app, &raw, Some(&sig)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["result"], "credited");
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay);
    books_balance(&app).await;
}

#[tokio::test]
async fn simulated_payments_do_not_exist_in_production() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.env = etx_core::config::RunEnv::Production;
        c.public_url = Some("https://etx.example.com".into());
    })
    .await;
    let alice = verified(&app, "alice").await;
    let d = create_deposit(&app, &alice, "20", "USDT").await;
    let order = d["order_id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/wallet/deposit/{order}/simulate"),
            json!({"status": "finished"}),
            Some(&alice.token),
        )
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(deposit(&app, &alice, order).await["status"], "waiting");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");
    // The provider's signed notification still works.
    let pay = d["pay_amount"].as_str().unwrap();
    assert_eq!(notify(&app, &ipn(&d, "finished", pay)).await, "credited");
    assert_eq!(balance_of(&app, &alice, "USDT").await, pay);
    books_balance(&app).await;
}

#[tokio::test]
async fn many_operations_in_the_window_are_held_and_a_rejection_frees_the_daily_cap() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.max_operations_in_window = 2;
        c.withdrawals.daily_cap_usd = "200".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "1000").await;
    for _ in 0..2 {
        let w = withdrawn(&app, &alice, "20", "USDT").await;
        assert_eq!(w["withdrawal"]["status"], "pending");
    }
    let w = withdrawn(&app, &alice, "150", "USDT").await;
    assert_eq!(w["withdrawal"]["status"], "held");
    let id = w["withdrawal"]["id"].as_str().unwrap();
    let flag = flag_on(&app, &moderator, id).await;
    assert_eq!(flag["rule"], "velocity");
    assert_eq!(flag["details"]["max_operations"], 2);
    // The cap counts the held one; rejecting it gives its share back.
    let r = withdraw(&app, &alice, "over-cap", "20", "USDT").await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED").await;
    let r = decide(&app, &moderator, flag["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(withdrawal(&app, &alice, id).await["status"], "rejected");
    assert_eq!(balance_of(&app, &alice, "USDT").await, "958.000000");
    let w = withdrawn(&app, &alice, "100", "USDT").await;
    assert_eq!(w["withdrawal"]["status"], "held", "still many operations");
    books_balance(&app).await;
}

/// A partial payment the provider then refunded is not there to credit: staff can only
/// reject its review.
#[tokio::test]
async fn a_refunded_partial_payment_cannot_be_released() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    for status in ["refunded", "failed"] {
        let d = create_deposit(&app, &alice, "100", "USDT").await;
        let order = d["order_id"].as_str().unwrap();
        let r = notify(&app, &ipn(&d, "partially_paid", "40")).await;
        assert_eq!(r, "partial payment held for review");
        assert_eq!(
            notify(&app, &ipn(&d, status, "40")).await,
            format!("status {status}")
        );
        let f = flag_on(&app, &moderator, order).await;
        let id = f["id"].as_str().unwrap();
        let r = decide(&app, &moderator, id, "release").await;
        expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
        assert_eq!(flag_on(&app, &moderator, order).await["status"], "open");
        assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");
        let r = decide(&app, &moderator, id, "reject").await;
        assert_eq!(r.status(), StatusCode::OK);
        let now = deposit(&app, &alice, order).await;
        assert_eq!(
            (now["status"].as_str(), now["credit_state"].as_str()),
            (Some(status), Some("rejected"))
        );
    }
    assert_eq!(balance_of(&app, &alice, "USDT").await, "0.000000");
    books_balance(&app).await;
}

#[tokio::test]
async fn a_rejected_held_transfer_gives_its_share_of_the_daily_cap_back() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
        c.transfers.daily_cap_usd = "2500".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    verified(&app, "bob").await;
    app.fund(&admin, &alice, "USD", "5000").await;
    let send = |key: &'static str, amount: &'static str| {
        let (app, token) = (&app, alice.token.clone());
        async move {
            app.money_post(
                "/api/transfers/p2p",
                Some(key),
                json!({"recipient": "bob", "amount": amount, "currency": "USD"}),
                &token,
            )
            .await
        }
    };
    let r = send("cap-1", "2000").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // While it is held it counts: 2000 + 900 would pass the 2500 cap.
    expect_error(
        send("cap-2", "900").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "LIMIT_EXCEEDED",
    )
    .await;
    let f = flags(&app, &moderator, "open").await;
    let r = decide(&app, &moderator, f[0]["id"].as_str().unwrap(), "reject").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The rejected transfer never happened, so the day's room is back.
    let r = send("cap-3", "900").await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(balance_of(&app, &alice, "USD").await, "4100.00");
    books_balance(&app).await;
}

#[tokio::test]
async fn a_partial_payment_reported_again_with_more_is_released_in_full() {
    let app = TestApp::spawn_with(quiet).await;
    let alice = verified(&app, "alice").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let d = create_deposit(&app, &alice, "100", "USDT").await;
    let order = d["order_id"].as_str().unwrap();
    assert_eq!(
        notify(&app, &ipn(&d, "partially_paid", "40")).await,
        "partial payment held for review"
    );
    // More arrived: the same status, a larger amount.
    notify(&app, &ipn(&d, "partially_paid", "60")).await;
    assert_eq!(
        deposit(&app, &alice, order).await["actually_paid"],
        "60.000000"
    );
    // Less than already recorded, or the same again, changes nothing.
    assert!(
        notify(&app, &ipn(&d, "partially_paid", "50"))
            .await
            .starts_with("ignored")
    );
    assert!(
        notify(&app, &ipn(&d, "partially_paid", "60"))
            .await
            .starts_with("ignored")
    );
    assert_eq!(flags(&app, &moderator, "open").await.len(), 1);
    let f = flag_on(&app, &moderator, order).await;
    let r = decide(&app, &moderator, f["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "60.000000");
    books_balance(&app).await;
}

#[tokio::test]
async fn the_rest_of_a_released_partial_payment_is_reviewed_like_any_deposit() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let alice = verified(&app, "alice").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let d = create_deposit(&app, &alice, "5000", "USDT").await;
    let order = d["order_id"].as_str().unwrap();
    notify(&app, &ipn(&d, "partially_paid", "50")).await;
    let f = flag_on(&app, &moderator, order).await;
    let r = decide(&app, &moderator, f["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "50.000000");
    // The remaining ~$4,950 is over the review threshold: held, and the review reopens.
    let paid = d["pay_amount"].as_str().unwrap();
    assert_eq!(
        notify(&app, &ipn(&d, "finished", paid)).await,
        "remainder credited to review hold"
    );
    assert_eq!(balance_of(&app, &alice, "USDT").await, "50.000000");
    let f = flag_on(&app, &moderator, order).await;
    assert_eq!(
        (f["status"].as_str(), f["rule"].as_str()),
        (Some("open"), Some("large_amount"))
    );
    books_balance(&app).await;
    let r = decide(&app, &moderator, f["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, paid);
    assert_eq!(
        deposit(&app, &alice, order).await["credit_state"],
        "credited"
    );
    books_balance(&app).await;

    // A released partial payment the provider then gives back reopens the review.
    let d2 = create_deposit(&app, &alice, "20", "USDT").await;
    let order2 = d2["order_id"].as_str().unwrap();
    notify(&app, &ipn(&d2, "partially_paid", "10")).await;
    let f = flag_on(&app, &moderator, order2).await;
    let r = decide(&app, &moderator, f["id"].as_str().unwrap(), "release").await;
    assert_eq!(r.status(), StatusCode::OK);
    let out = notify(&app, &ipn(&d2, "refunded", "10")).await;
    assert!(out.contains("review opened"), "{out}");
    let f = flag_on(&app, &moderator, order2).await;
    assert_eq!(
        (f["status"].as_str(), f["rule"].as_str()),
        (Some("open"), Some("reversed_after_credit"))
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn staff_limits_on_payouts_and_their_own_money() {
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.aml.large_amount_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("admin", "admin").await;
    let moderator = app.user_with_role("mod", "moderator").await;
    let alice = verified(&app, "alice").await;
    app.fund(&admin, &alice, "USDT", "3000").await;
    app.fund(&admin, &alice, "USD", "3000").await;
    // Approved and being paid out: a moderator can no longer pull it back, an admin can.
    let w = withdrawn(&app, &alice, "100", "USDT").await;
    let id = w["withdrawal"]["id"].as_str().unwrap();
    assert_eq!(
        staff(&app, &moderator, id, "approve", json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let r = staff(
        &app,
        &moderator,
        id,
        "reject",
        json!({"reason": "changed my mind"}),
    )
    .await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    let r = staff(
        &app,
        &admin,
        id,
        "reject",
        json!({"reason": "payout failed"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(balance_of(&app, &alice, "USDT").await, "3000.000000");
    // A held transfer to a staff member is not theirs to release.
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("to-mod"),
            json!({"recipient": "mod", "amount": "2000", "currency": "USD"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let f = flags(&app, &moderator, "open").await;
    let r = decide(&app, &moderator, f[0]["id"].as_str().unwrap(), "release").await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(balance_of(&app, &moderator, "USD").await, "0.00");
    assert_eq!(flags(&app, &moderator, "open").await.len(), 1);
    // Money on its way out keeps an account from being deleted.
    let w = withdrawn(&app, &alice, "50", "USDT").await;
    let r = app
        .delete(&format!("/api/users/{}", alice.id), Some(&admin.token))
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        withdrawal(&app, &alice, w["withdrawal"]["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn deposit_orders_are_limited_per_user() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| {
        quiet(c);
        c.deposits.orders_per_user_per_hour = 2;
    })
    .await;
    let alice = verified(&app, "alice").await;
    let bob = verified(&app, "bob").await;
    create_deposit(&app, &alice, "20", "USDT").await;
    create_deposit(&app, &alice, "20", "USDT").await;
    let r = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "20", "pay_currency": "USDT"}),
            Some(&alice.token),
        )
        .await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Another user's budget is their own.
    create_deposit(&app, &bob, "20", "USDT").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM deposits").await, 3);
}
