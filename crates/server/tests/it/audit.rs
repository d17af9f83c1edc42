//! The audit trail: who did what is recorded with its context, staff can read it, and any edit,
//! deletion or reordering of a record is caught by `etx audit verify`.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn logs(app: &TestApp, query: &str, token: &str) -> Value {
    app.state.db.chain_all_audit().await.unwrap();
    let r = app
        .get(&format!("/api/admin/audit-logs{query}"), Some(token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn money_and_account_actions_are_recorded_with_their_context() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let moderator = app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    app.verify(&alice).await;
    let bob = app.register("bob").await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "40.00").await;
    let r = app
        .money_post(
            "/api/admin/wallets/adjust",
            Some("adj-2"),
            json!({"user_id": alice.id, "currency": "USD", "amount": "-15.00", "reason": "chargeback 118"}),
            &admin.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("p-1"),
            json!({"recipient": "bob", "amount": "5.00", "currency": "USD"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .client
        .put(app.url("/api/auth/me"))
        .bearer_auth(&alice.token)
        .header("user-agent", "etx-test/1.0 (audit)")
        .json(&json!({"name": "Alice Liddell"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let adj = logs(&app, "?action=wallet.adjust&limit=1", &moderator.token).await;
    assert_eq!(adj["total"], 2, "both adjustments: {adj}");
    let last = &adj["logs"][0];
    assert_eq!(last["actor"]["username"], "treasurer");
    assert_eq!(last["target_type"], "user");
    assert_eq!(last["target_id"], alice.id.as_str());
    assert_eq!(
        last["details"],
        json!({
            "entry_id": last["details"]["entry_id"],
            "reason": "chargeback 118",
            "currency": "USD",
            "amount": "-15.00",
            "before": "40.00",
            "after": "25.00",
        })
    );
    assert_eq!(last["ip"], "127.0.0.1");
    assert!(last["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    let mine = logs(&app, &format!("?actor={}", "alice"), &admin.token).await;
    let actions: Vec<&str> = mine["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user.profile_update", "transfer.p2p", "auth.register"],
        "newest first"
    );
    let profile = &mine["logs"][0]["details"];
    assert_eq!(profile["before"]["name"], Value::Null);
    assert_eq!(profile["after"]["name"], "Alice Liddell");
    assert_eq!(mine["logs"][0]["user_agent"], "etx-test/1.0 (audit)");
    // Filters by target and time; an empty window is empty, a bad time is a 422.
    let about_bob = logs(
        &app,
        &format!("?target={}&action=transfer.p2p", bob.id),
        &admin.token,
    )
    .await;
    assert_eq!(about_bob["total"], 1);
    let future = logs(&app, "?from=2999-01-01", &admin.token).await;
    assert_eq!(future["total"], 0);
    let (s, code, _) = error_code(
        app.get("/api/admin/audit-logs?from=yesterday", Some(&admin.token))
            .await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    // Users cannot read it.
    let r = app.get("/api/admin/audit-logs", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (problems, checked) = app.state.db.verify_audit().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        checked, 8,
        "4 registrations, 2 adjustments, 1 transfer, 1 profile edit"
    );
}

/// Runs `etx audit verify` against the app's database: (success, stdout).
fn verify_cli(app: &TestApp) -> (bool, String) {
    let mut c = crate::cli::etx(&app.data_dir);
    if let Some(url) = &app.state.config.database_url {
        c.env("DATABASE_URL", url);
    }
    // The chain is keyed from the server secret: verifying needs the same one.
    if let Some(k) = &app.state.config.secret_key {
        c.env("ETX_SECRET_KEY", k);
    }
    let out = c.args(["audit", "verify"]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A fresh app with a chain of at least six records.
async fn chained_app() -> TestApp {
    let app = TestApp::spawn().await;
    for name in ["ann", "ben", "cid"] {
        let u = app.register(name).await;
        assert_eq!(
            app.login(&u.username, PASSWORD).await.status(),
            StatusCode::OK
        );
    }
    app.state.db.chain_all_audit().await.unwrap();
    let (ok, out) = verify_cli(&app);
    assert!(ok, "{out}");
    assert!(out.contains("audit log OK"), "{out}");
    app
}

async fn tamper(app: &TestApp, sql: &str) {
    app.state.db.execute(sql, []).await.unwrap();
}

#[tokio::test]
async fn an_edited_record_is_detected() {
    let app = chained_app().await;
    tamper(
        &app,
        "UPDATE audit_log SET details = '{\"username\":\"mallory\"}' WHERE seq = 3",
    )
    .await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok);
    assert!(out.contains("seq 3") && out.contains("edited"), "{out}");
}

#[tokio::test]
async fn a_deleted_record_is_detected() {
    let app = chained_app().await;
    tamper(&app, "DELETE FROM audit_log WHERE seq = 2").await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok);
    assert!(out.contains("missing or reordered"), "{out}");
}

#[tokio::test]
async fn reordered_records_are_detected() {
    let app = chained_app().await;
    // Swap the positions of records 2 and 3.
    tamper(&app, "UPDATE audit_log SET seq = -1 WHERE seq = 2").await;
    tamper(&app, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    tamper(&app, "UPDATE audit_log SET seq = 3 WHERE seq = -1").await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok);
    assert!(out.contains("does not link"), "{out}");
}

#[tokio::test]
async fn records_cut_from_the_end_are_detected() {
    let app = chained_app().await;
    tamper(
        &app,
        "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
    )
    .await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok);
    assert!(out.contains("cut from the end"), "{out}");
}

#[tokio::test]
async fn concurrent_writers_keep_one_linear_chain() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let admin = app.user_with_role("treasurer", "admin").await;
    let users: Vec<TestUser> = {
        let mut v = Vec::new();
        for n in 0..4 {
            v.push(app.register(&format!("payee{n}")).await);
        }
        v
    };
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        for k in 0..10 {
            let (app, token, id) = (app.clone(), admin.token.clone(), u.id.clone());
            tasks.push(tokio::spawn(async move {
                let r = app
                    .money_post(
                        "/api/admin/wallets/adjust",
                        Some(&format!("c-{i}-{k}")),
                        json!({"user_id": id, "currency": "USD", "amount": "1.00", "reason": "concurrent"}),
                        &token,
                    )
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }));
        }
    }
    // Chainers from several "instances" race the writers.
    let chainers: Vec<_> = (0..3)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    app.state.db.chain_all_audit().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // So does `etx audit verify` on a running server: the chain grows under the walk, which is
    // no break.
    let verifier = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let (problems, _) = app.state.db.verify_audit().await.unwrap();
                assert!(problems.is_empty(), "{problems:?}");
            }
        })
    };
    for t in tasks.into_iter().chain(chainers).chain([verifier]) {
        t.await.unwrap();
    }
    app.state.db.chain_all_audit().await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_outbox").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'wallet.adjust'")
            .await,
        40
    );
    let (problems, checked) = app.state.db.verify_audit().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(checked, app.count("SELECT MAX(seq) FROM audit_log").await);
}

/// Audit records written so far, chained or not.
async fn records(app: &TestApp) -> i64 {
    app.count("SELECT (SELECT COUNT(*) FROM audit_outbox) + (SELECT COUNT(*) FROM audit_log)")
        .await
}

/// Walks the OpenAPI document: every POST/PUT/PATCH/DELETE route must have a scenario here, and
/// a successful call must leave an audit record. A new state-changing route fails this test
/// until it is audited and listed.
#[tokio::test]
async fn every_state_changing_route_writes_an_audit_record() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit.register_per_ip_per_minute = 1000;
        c.jobs.workers = 0;
    })
    .await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut routes = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                routes.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    // Reads that take POST so their filters (or a password to rate) travel in a body.
    let reads = [
        ("POST", "/api/transactions/export"),
        ("POST", "/api/wallet/withdraw/quote"),
        ("POST", "/api/orders/quote"),
        ("POST", "/api/auth/password-strength"),
    ];
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.verify(&alice).await;
    let bob = app.register("bob").await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "50.00").await;
    let mut walked = 0;
    for (m, path) in &routes {
        if reads.contains(&(m.as_str(), path.as_str())) {
            continue;
        }
        let before;
        let status = match (m.as_str(), path.as_str()) {
            ("POST", "/api/auth/register") | ("POST", "/api/auth/signup") => {
                let name = format!("walker{walked}");
                before = records(&app).await;
                app.post(
                    path,
                    json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
                    None,
                )
                .await
                .status()
            }
            ("POST", "/api/auth/login") => {
                before = records(&app).await;
                app.login("alice", PASSWORD).await.status()
            }
            ("POST", "/api/auth/refresh") => {
                before = records(&app).await;
                app.post(path, json!({"refresh_token": alice.refresh}), None)
                    .await
                    .status()
            }
            ("POST", "/api/auth/logout") => {
                let r: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
                let token = r["access_token"].as_str().unwrap().to_string();
                before = records(&app).await;
                app.post(path, json!({}), Some(&token)).await.status()
            }
            ("DELETE", "/api/auth/sessions/{id}") => {
                let r: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
                let other = r["access_token"].as_str().unwrap().to_string();
                let list: Value = app
                    .get("/api/auth/sessions", Some(&other))
                    .await
                    .json()
                    .await
                    .unwrap();
                let id = list["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["current"] == true)
                    .unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                before = records(&app).await;
                app.delete(&format!("/api/auth/sessions/{id}"), Some(&alice.token))
                    .await
                    .status()
            }
            ("PUT", "/api/auth/me") => {
                before = records(&app).await;
                app.put(path, json!({"name": "Alice"}), Some(&alice.token))
                    .await
                    .status()
            }
            ("POST", "/api/auth/change-password") => {
                let u = app.register("rotator").await;
                before = records(&app).await;
                app.post(
                    path,
                    json!({"current_password": PASSWORD, "new_password": "An0ther-Passphrase!"}),
                    Some(&u.token),
                )
                .await
                .status()
            }
            ("PUT", "/api/users/{id}") => {
                before = records(&app).await;
                app.put(
                    &format!("/api/users/{}", bob.id),
                    json!({"role": "moderator"}),
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("DELETE", "/api/users/{id}") => {
                let u = app.register("leaver").await;
                before = records(&app).await;
                app.delete(&format!("/api/users/{}", u.id), Some(&admin.token))
                    .await
                    .status()
            }
            ("POST", "/api/users/avatar") | ("DELETE", "/api/users/avatar") => {
                let upload = |token: String| {
                    let form = reqwest::multipart::Form::new().part(
                        "file",
                        reqwest::multipart::Part::bytes(png(8, 8))
                            .file_name("a.png")
                            .mime_str("image/png")
                            .unwrap(),
                    );
                    app.client
                        .post(app.url("/api/users/avatar"))
                        .bearer_auth(token)
                        .multipart(form)
                        .send()
                };
                if m == "DELETE" {
                    assert!(
                        upload(bob.token.clone())
                            .await
                            .unwrap()
                            .status()
                            .is_success()
                    );
                    before = records(&app).await;
                    app.delete(path, Some(&bob.token)).await.status()
                } else {
                    before = records(&app).await;
                    upload(bob.token.clone()).await.unwrap().status()
                }
            }
            ("POST", "/api/orders") => {
                app.fund(&admin, &alice, "USD", "100.00").await;
                before = records(&app).await;
                app.money_post(
                    path,
                    Some("walk-order"),
                    json!({"pair": "BTC/USD", "side": "buy", "amount": "0.0001"}),
                    &alice.token,
                )
                .await
                .status()
            }
            ("DELETE", "/api/orders/{id}") => {
                app.fund(&admin, &alice, "USD", "10.00").await;
                // A limit buy far below the market rests until cancelled.
                let r = app
                    .money_post(
                        "/api/orders",
                        Some("walk-limit"),
                        json!({"pair": "BTC/USD", "side": "buy", "type": "limit",
                               "amount": "0.001", "limit_price": "1000"}),
                        &alice.token,
                    )
                    .await;
                assert!(r.status().is_success(), "{}", r.status());
                let o: Value = r.json().await.unwrap();
                let id = o["order"]["id"].as_str().unwrap().to_string();
                before = records(&app).await;
                app.delete(&format!("/api/orders/{id}"), Some(&alice.token))
                    .await
                    .status()
            }
            ("POST", "/api/alerts") => {
                before = records(&app).await;
                app.post(
                    path,
                    json!({"asset": "BTC", "kind": "above", "price": "1000000"}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("PATCH", "/api/alerts/{id}") | ("DELETE", "/api/alerts/{id}") => {
                let r = app
                    .post(
                        "/api/alerts",
                        json!({"asset": "ETH", "kind": "below", "price": "1"}),
                        Some(&alice.token),
                    )
                    .await;
                assert!(r.status().is_success(), "{}", r.status());
                let a: Value = r.json().await.unwrap();
                let at = format!("/api/alerts/{}", a["id"].as_str().unwrap());
                before = records(&app).await;
                if m == "PATCH" {
                    app.send(
                        reqwest::Method::PATCH,
                        &at,
                        json!({"active": false}),
                        Some(&alice.token),
                    )
                    .await
                    .status()
                } else {
                    app.delete(&at, Some(&alice.token)).await.status()
                }
            }
            ("POST", "/api/transfers/p2p") => {
                before = records(&app).await;
                app.money_post(
                    path,
                    Some("walk-1"),
                    json!({"recipient": "bob", "amount": "5.00", "currency": "USD"}),
                    &alice.token,
                )
                .await
                .status()
            }
            ("POST", "/api/admin/wallets/adjust") => {
                before = records(&app).await;
                app.money_post(
                    path,
                    Some("walk-2"),
                    json!({"user_id": bob.id, "currency": "USD", "amount": "1.00", "reason": "walk"}),
                    &admin.token,
                )
                .await
                .status()
            }
            ("POST", "/api/auth/2fa/setup") => {
                let u = app.register(&format!("enroller{walked}")).await;
                before = records(&app).await;
                app.post(path, json!({}), Some(&u.token)).await.status()
            }
            ("POST", "/api/auth/2fa/verify") => {
                let u = app.register(&format!("enroller{walked}")).await;
                let s: Value = app
                    .post("/api/auth/2fa/setup", json!({}), Some(&u.token))
                    .await
                    .json()
                    .await
                    .unwrap();
                before = records(&app).await;
                app.post(
                    path,
                    json!({"code": totp(s["secret"].as_str().unwrap(), 0)}),
                    Some(&u.token),
                )
                .await
                .status()
            }
            ("POST", "/api/auth/2fa/backup-codes")
            | ("POST", "/api/auth/2fa/disable")
            | ("POST", "/api/auth/login/2fa") => {
                let u = app.register(&format!("twofa{walked}")).await;
                let (secret, backup) = two_factor_on(&app, &u).await;
                let body = match path.as_str() {
                    "/api/auth/2fa/backup-codes" => json!({"code": totp(&secret, 1)}),
                    "/api/auth/2fa/disable" => json!({"password": PASSWORD, "code": backup[0]}),
                    _ => {
                        let r: Value = app.login(&u.username, PASSWORD).await.json().await.unwrap();
                        json!({"challenge_token": r["challenge_token"], "code": backup[0]})
                    }
                };
                before = records(&app).await;
                app.post(path, body, Some(&u.token)).await.status()
            }
            ("POST", "/api/auth/verify-email") | ("POST", "/api/auth/verify-email/code") => {
                let u = app.register(&format!("mailer{walked}")).await;
                let text = plain_text_part(&app.mail_to(&u.email, 1).await[0]);
                let body = if path.ends_with("/code") {
                    json!({"code": six_digit_code(&text[text.find("code").unwrap()..])})
                } else {
                    json!({"token": link_param(&text, "/verify-email?", "token")})
                };
                before = records(&app).await;
                app.post(path, body, Some(&u.token)).await.status()
            }
            ("POST", "/api/auth/resend-verification") => {
                let u = app.register(&format!("resender{walked}")).await;
                before = records(&app).await;
                app.post(path, json!({}), Some(&u.token)).await.status()
            }
            ("POST", "/api/auth/forgot-password") => {
                before = records(&app).await;
                let s = app
                    .post(path, json!({"email": "alice@example.com"}), None)
                    .await
                    .status();
                // The mail and its record are made after the answer.
                for _ in 0..50 {
                    if records(&app).await > before {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                s
            }
            ("POST", "/api/auth/reset-password") => {
                let u = app.register(&format!("forgetful{walked}")).await;
                app.post("/api/auth/forgot-password", json!({"email": u.email}), None)
                    .await;
                let mails = app.mail_to(&u.email, 2).await;
                let reset = mails.iter().find(|m| m.contains("reset-password")).unwrap();
                let token = link_param(&plain_text_part(reset), "/reset-password?", "token");
                before = records(&app).await;
                app.post(
                    path,
                    json!({"token": token, "new_password": "An0ther-Passphrase!"}),
                    None,
                )
                .await
                .status()
            }
            ("POST", "/api/notifications/read") => {
                before = records(&app).await;
                app.post(path, json!({}), Some(&bob.token)).await.status()
            }
            ("POST", "/api/admin/announcements") => {
                before = records(&app).await;
                app.post(path, json!({"message": "hello"}), Some(&admin.token))
                    .await
                    .status()
            }
            ("POST", "/api/wallet/deposit/create") => {
                before = records(&app).await;
                app.post(
                    path,
                    json!({"amount": "20.00", "pay_currency": "USDT"}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("POST", "/api/wallet/deposit/{order_id}/simulate") => {
                let order = walk_deposit(&app, &alice).await;
                before = records(&app).await;
                app.post(
                    &format!("/api/wallet/deposit/{order}/simulate"),
                    json!({"status": "confirming"}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("POST", "/api/wallet/webhook/{provider}") => {
                let order = walk_deposit(&app, &alice).await;
                let d = app
                    .state
                    .db
                    .deposit_by_order(&order)
                    .await
                    .unwrap()
                    .unwrap();
                let body =
                    etx_core::deposits::sandbox_notification(&d, "finished", d.pay_amount, 6);
                let sig = app.state.payments.sign(&body);
                before = records(&app).await;
                app.client
                    .post(app.url("/api/wallet/webhook/sandbox"))
                    .header("x-nowpayments-sig", sig)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
            ("POST", "/api/wallet/withdraw") => {
                app.fund(&admin, &alice, "USDT", "40.00").await;
                before = records(&app).await;
                walk_withdraw(&app, &alice, "30", &format!("walk-w{walked}"))
                    .await
                    .status()
            }
            ("POST", "/api/wallet/withdraw/{id}/cancel") => {
                app.fund(&admin, &alice, "USDT", "40.00").await;
                let id = walk_withdrawal_id(&app, &alice, &format!("walk-w{walked}")).await;
                before = records(&app).await;
                app.post(
                    &format!("/api/wallet/withdraw/{id}/cancel"),
                    json!({}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("POST", "/api/admin/withdrawals/{id}/approve")
            | ("POST", "/api/admin/withdrawals/{id}/reject")
            | ("POST", "/api/admin/withdrawals/{id}/complete") => {
                app.fund(&admin, &alice, "USDT", "40.00").await;
                let id = walk_withdrawal_id(&app, &alice, &format!("walk-w{walked}")).await;
                let action = path.rsplit('/').next().unwrap();
                if action == "complete" {
                    let r = app
                        .post(
                            &format!("/api/admin/withdrawals/{id}/approve"),
                            json!({}),
                            Some(&admin.token),
                        )
                        .await;
                    assert!(r.status().is_success());
                }
                let body = match action {
                    "approve" => json!({}),
                    "reject" => json!({"reason": "walk rejection"}),
                    _ => json!({"tx_hash": "abc123"}),
                };
                before = records(&app).await;
                app.post(
                    &format!("/api/admin/withdrawals/{id}/{action}"),
                    body,
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("POST", "/api/admin/wallets/adjustments/{id}/approve")
            | ("POST", "/api/admin/wallets/adjustments/{id}/reject") => {
                // A request another admin made, waiting for a second one.
                let other = app.user_with_role(&format!("admin{walked}"), "admin").await;
                let id = uuid::Uuid::now_v7().to_string();
                app.exec(&format!(
                    "INSERT INTO adjustment_requests (id, user_id, asset, amount, usd_cents, \
                     reason, requested_by, status, created_at) \
                     VALUES ('{id}', '{}', 'USD', 100, 100, 'walk', '{}', 'pending', 1)",
                    bob.id, other.id
                ))
                .await;
                let action = path.rsplit('/').next().unwrap();
                before = records(&app).await;
                app.post(
                    &format!("/api/admin/wallets/adjustments/{id}/{action}"),
                    if action == "reject" {
                        json!({"reason": "walk review"})
                    } else {
                        json!({"note": "walk"})
                    },
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("POST", "/api/admin/suspense/{id}/refund")
            | ("POST", "/api/admin/suspense/{id}/credit") => {
                let id = walk_suspense(&app, &admin, walked).await;
                let action = path.rsplit('/').next().unwrap();
                before = records(&app).await;
                app.post(
                    &format!("/api/admin/suspense/{id}/{action}"),
                    if action == "credit" {
                        json!({"user_id": bob.id, "reason": "walk review"})
                    } else {
                        json!({"reason": "walk review"})
                    },
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("POST", "/api/admin/aml/{id}/release") | ("POST", "/api/admin/aml/{id}/reject") => {
                // A young account moving this much is held for review.
                app.fund(&admin, &alice, "USDT", "3200.00").await;
                let r = walk_withdraw(&app, &alice, "3100", &format!("walk-w{walked}")).await;
                let w: Value = r.json().await.unwrap();
                assert_eq!(w["withdrawal"]["status"], "held", "{w}");
                let flags: Value = app
                    .get("/api/admin/aml", Some(&admin.token))
                    .await
                    .json()
                    .await
                    .unwrap();
                let flag = flags["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["subject_id"] == w["withdrawal"]["id"])
                    .unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let action = path.rsplit('/').next().unwrap();
                before = records(&app).await;
                app.post(
                    &format!("/api/admin/aml/{flag}/{action}"),
                    json!({"reason": "walk review"}),
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("POST", "/api/files") => {
                before = records(&app).await;
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"a,b\n".to_vec())
                        .file_name(format!("walk{walked}/data.csv")),
                );
                app.client
                    .post(app.url(path))
                    .bearer_auth(&alice.token)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
            ("POST", "/api/jobs")
            | ("POST", "/api/jobs/{id}/cancel")
            | ("POST", "/api/jobs/{id}/retry") => {
                // This app runs no workers: a job waits until cancelled.
                let name = format!("walkjob{walked}.csv");
                let r: Value = app
                    .upload(
                        &alice,
                        None,
                        &[(name.as_str(), b"orgFullName,emissionSourceName\n")],
                    )
                    .await
                    .json()
                    .await
                    .unwrap();
                let input = r["files"][0]["id"].as_str().unwrap().to_string();
                let start = json!({"kind": "bar_grouping", "input_id": input});
                let url = match path.as_str() {
                    "/api/jobs" => path.to_string(),
                    _ => {
                        let j: Value = app
                            .post("/api/jobs", start.clone(), Some(&alice.token))
                            .await
                            .json()
                            .await
                            .unwrap();
                        let id = j["id"].as_str().unwrap().to_string();
                        if path.ends_with("retry") {
                            app.post(
                                &format!("/api/jobs/{id}/cancel"),
                                json!({}),
                                Some(&alice.token),
                            )
                            .await;
                        }
                        path.replace("{id}", &id)
                    }
                };
                before = records(&app).await;
                let r = app.post(&url, start, Some(&alice.token)).await;
                let status = r.status();
                let j: Value = r.json().await.unwrap();
                // Cancel what was started so the walk stays within the unfinished-job limit.
                if let Some(id) = j["id"].as_str().filter(|_| j["status"] == "queued") {
                    app.post(
                        &format!("/api/jobs/{id}/cancel"),
                        json!({}),
                        Some(&alice.token),
                    )
                    .await;
                }
                status
            }
            ("POST", "/api/files/folders") => {
                before = records(&app).await;
                app.post(
                    path,
                    json!({"name": format!("walk{walked}")}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("PATCH", "/api/files/{id}") | ("DELETE", "/api/files/{id}") => {
                let r = app
                    .post(
                        "/api/files/folders",
                        json!({"name": format!("walk{walked}")}),
                        Some(&alice.token),
                    )
                    .await;
                let f: Value = r.json().await.unwrap();
                let url = format!("/api/files/{}", f["id"].as_str().unwrap());
                before = records(&app).await;
                let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
                app.send(
                    method,
                    &url,
                    json!({"name": format!("moved{walked}")}),
                    Some(&alice.token),
                )
                .await
                .status()
            }
            ("PUT", "/api/admin/trading/pairs/{pair}") => {
                before = records(&app).await;
                app.put(
                    "/api/admin/trading/pairs/LTC-USD",
                    json!({"halted": true, "fee_bps": 20, "spread_bps": null}),
                    Some(&admin.token),
                )
                .await
                .status()
            }
            ("PUT", "/api/etx/config") => {
                before = records(&app).await;
                app.put(path, walk_etx_config(), Some(&alice.token))
                    .await
                    .status()
            }
            ("DELETE", "/api/etx/config") => {
                let r = app.put(path, walk_etx_config(), Some(&bob.token)).await;
                assert!(r.status().is_success());
                before = records(&app).await;
                app.delete(path, Some(&bob.token)).await.status()
            }
            _ => panic!(
                "{m} {path} has no scenario here: audit the handler (audit::Event) and add one"
            ),
        };
        assert!(status.is_success(), "{m} {path} answered {status}");
        assert!(
            records(&app).await > before,
            "{m} {path} changed state without an audit record"
        );
        walked += 1;
    }
    assert_eq!(walked, 55, "every unsafe route but the reads was walked");
}

fn walk_etx_config() -> Value {
    json!({
        "http_uri": "https://platform.example.com",
        "ws_uri": "wss://platform.example.com/ws",
        "email": "walker@example.com",
        "password": "walk-password",
        "ds_key": "WALK-KEY",
    })
}

/// A deposit paid after its owner was deleted: the money waits in suspense. Returns the item.
async fn walk_suspense(app: &TestApp, admin: &TestUser, walked: usize) -> String {
    let ghost = app.register(&format!("ghost{walked}")).await;
    app.verify(&ghost).await;
    let order = walk_deposit(app, &ghost).await;
    app.exec(&format!(
        "UPDATE deposits SET expires_at = 1 WHERE order_id = '{order}'"
    ))
    .await;
    let r = app
        .delete(&format!("/api/users/{}", ghost.id), Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let req = serde_json::from_value(json!({"status": "finished"})).unwrap();
    etx_core::deposits::simulate(&app.state, &order, req)
        .await
        .unwrap();
    let list: Value = app
        .get("/api/admin/suspense", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    list["items"][0]["id"].as_str().unwrap().to_string()
}

async fn walk_deposit(app: &TestApp, u: &TestUser) -> String {
    let r: Value = app
        .post(
            "/api/wallet/deposit/create",
            json!({"amount": "20.00", "pay_currency": "USDT"}),
            Some(&u.token),
        )
        .await
        .json()
        .await
        .unwrap();
    r["deposit"]["order_id"].as_str().unwrap().to_string()
}

async fn walk_withdraw(app: &TestApp, u: &TestUser, amount: &str, key: &str) -> reqwest::Response {
    app.money_post(
        "/api/wallet/withdraw",
        Some(key),
        json!({"amount": amount, "currency": "USDT", "address": "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"}),
        &u.token,
    )
    .await
}

async fn walk_withdrawal_id(app: &TestApp, u: &TestUser, key: &str) -> String {
    let r = walk_withdraw(app, u, "30", key).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["withdrawal"]["id"].as_str().unwrap().to_string()
}

/// Rewrites the whole chain from `seq` on the way someone with database access but without the
/// server secret would: plain SHA-256 links, head updated to match.
async fn rewrite_chain_without_the_key(app: &TestApp) {
    use sha2::{Digest, Sha256};
    let (mut rows, _) = app
        .state
        .db
        .list_audit(&Default::default(), 0, 1000)
        .await
        .unwrap();
    rows.sort_by_key(|r| r.seq);
    let mut prev = String::new();
    for r in &rows {
        let details = if r.seq == 3 {
            "{\"username\":\"mallory\"}".to_string()
        } else {
            r.details.clone()
        };
        let canonical = json!([
            prev,
            r.seq,
            r.id,
            r.at,
            r.actor_id,
            r.action,
            r.target_type,
            r.target_id,
            r.ip,
            r.user_agent,
            r.request_id,
            details
        ])
        .to_string();
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        app.state
            .db
            .execute(
                "UPDATE audit_log SET details = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                [
                    details.into(),
                    prev.clone().into(),
                    hash.clone().into(),
                    r.seq.into(),
                ],
            )
            .await
            .unwrap();
        prev = hash;
    }
    app.state
        .db
        .execute(
            "UPDATE audit_head SET hash = $1 WHERE id = 1",
            [prev.into()],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_consistent_rewrite_without_the_server_secret_is_detected() {
    let app = chained_app().await;
    rewrite_chain_without_the_key(&app).await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok, "{out}");
    assert!(out.contains("seq 1") && out.contains("edited"), "{out}");
    // Passing the rewritten records off as older, unkeyed ones needs the key as well.
    tamper(&app, "UPDATE audit_head SET keyed_from = 1000000").await;
    let (ok, out) = verify_cli(&app);
    assert!(!ok, "{out}");
    assert!(out.contains("keying mark"), "{out}");
}
