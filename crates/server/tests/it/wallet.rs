//! Balances, P2P transfers, idempotency, limits and ledger invariants — including many
//! concurrent transfers on hot accounts — on whichever database the suite runs against.

use crate::support::*;
use etx_domain::AccountKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

impl TestApp {
    pub async fn money_post(
        &self,
        path: &str,
        key: Option<&str>,
        body: Value,
        token: &str,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        r.send().await.unwrap()
    }

    /// Credits `user` through the admin adjustment endpoint.
    pub async fn fund(&self, admin: &TestUser, user: &TestUser, currency: &str, amount: &str) {
        let key = uuid::Uuid::now_v7().to_string();
        let r = self
            .money_post(
                "/api/admin/wallets/adjust",
                Some(&key),
                json!({"user_id": user.id, "currency": currency, "amount": amount, "reason": "test funding"}),
                &admin.token,
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }

    pub async fn balances(&self, user: &TestUser) -> BTreeMap<String, String> {
        let b: Value = self
            .get("/api/wallet/balance", Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        serde_json::from_value(b["wallet"]["balances"].clone()).unwrap()
    }

    pub async fn ledger_ok(&self) {
        let problems = self.state.db.verify_ledger().await.unwrap();
        assert!(
            problems.is_empty(),
            "ledger invariants violated: {problems:?}"
        );
    }
}

async fn verified(app: &TestApp, name: &str) -> TestUser {
    let u = app.register(name).await;
    app.verify(&u).await;
    u
}

fn transfer(to: &str, amount: Value, currency: &str) -> Value {
    json!({"recipient": to, "amount": amount, "currency": currency})
}

#[tokio::test]
async fn transfer_moves_money_once_and_both_sides_see_it() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = verified(&app, "alice").await;
    let bob = verified(&app, "bob").await;
    let start = app.balances(&alice).await;
    assert_eq!(start["USD"], "0.00");
    assert_eq!(start["BTC"], "0.00000000");
    assert_eq!(start.len(), 8, "every configured asset is listed");
    app.fund(&admin, &alice, "USD", "100.00").await;
    let body = json!({"recipient": "BOB@example.com", "amount": "25.50", "currency": "usd", "note": "lunch"});
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("k-1"),
            body.clone(),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["transfer"]["amount"], "25.50");
    assert_eq!(first["transfer"]["recipient"]["username"], "bob");
    assert_eq!(first["balance"], "74.50");
    assert_eq!(app.balances(&alice).await["USD"], "74.50");
    assert_eq!(app.balances(&bob).await["USD"], "25.50");
    // The same key and body: the first answer again, nothing moves.
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("k-1"),
            body.clone(),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(app.balances(&alice).await["USD"], "74.50");
    // The same key with a different body is a conflict.
    let other = json!({"recipient": "bob", "amount": "1.00", "currency": "USD"});
    let (s, c, _) = error_code(
        app.money_post("/api/transfers/p2p", Some("k-1"), other, &alice.token)
            .await,
    )
    .await;
    assert_eq!((s, c.as_str()), (StatusCode::CONFLICT, "CONFLICT"));
    // Keys are per user: bob may use "k-1" for his own transfer.
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("k-1"),
            transfer("alice", json!(5), "USD"),
            &bob.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Both histories show it, with the other side named.
    let h: Value = app
        .get("/api/transfers/p2p/history", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["total"], 2);
    let received = h["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["direction"] == "in")
        .unwrap();
    assert_eq!(
        (received["amount"].as_str(), received["note"].as_str()),
        (Some("25.50"), Some("lunch"))
    );
    assert_eq!(received["counterparty"]["username"], "alice");
    let h: Value = app
        .get("/api/transfers/p2p/history?limit=1", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            h["total"].as_i64(),
            h["transfers"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    // Alice spends everything; replaying her first transfer still answers as it did then.
    let balance = app.balances(&alice).await["USD"].clone();
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some("k-2"),
            transfer("bob", json!(balance), "USD"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .money_post("/api/transfers/p2p", Some("k-1"), body, &alice.token)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    // Keys are kept for the configured retention (48 h), then forgotten.
    let fresh = etx_core::upkeep::purge_idempotency_keys(&app.state).await;
    assert_eq!(fresh, 0, "nothing is younger than the retention");
    let two_days_ago = etx_db::now_micros() - 49 * 3_600_000_000;
    app.state
        .db
        .execute(
            "UPDATE idempotency_keys SET created_at = $1 WHERE idem_key = 'k-1'",
            vec![two_days_ago.into()],
        )
        .await
        .unwrap();
    assert_eq!(
        etx_core::upkeep::purge_idempotency_keys(&app.state).await,
        2,
        "alice's and bob's k-1"
    );
    let other = json!({"recipient": "bob", "amount": "1.00", "currency": "USD"});
    let (s, c, _) = error_code(
        app.money_post("/api/transfers/p2p", Some("k-1"), other, &alice.token)
            .await,
    )
    .await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_FUNDS"),
        "a forgotten key is a new request"
    );
    app.ledger_ok().await;
}

#[tokio::test]
async fn bad_transfers_are_refused_and_move_nothing() {
    let app = TestApp::spawn_with(|c| c.transfers.daily_cap_usd = "60".into()).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = verified(&app, "alice").await;
    let _bob = verified(&app, "bob").await;
    let _carl = app.register("carl").await; // not verified
    app.fund(&admin, &alice, "USD", "100.00").await;
    app.fund(&admin, &alice, "BTC", "0.5").await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            transfer("bob", json!("abc"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("-5"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("0"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("1.001"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("1e3"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("99999999999999999999999"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!(true), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("5"), "DOGE"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            json!({"recipient": "bob", "currency": "USD"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            json!(["not", "an", "object"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("carl", json!("5"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("nobody", json!("5"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("alice", json!("5"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            transfer("bob", json!("0.99"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "LIMIT_EXCEEDED",
        ),
        (
            transfer("bob", json!("0.00001"), "BTC"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "LIMIT_EXCEEDED",
        ),
        (
            transfer("bob", json!("0.1"), "BTC"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "LIMIT_EXCEEDED",
        ),
        (
            transfer("bob", json!("100.01"), "USD"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INSUFFICIENT_FUNDS",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let key = format!("bad-{i}");
        let r = app
            .money_post("/api/transfers/p2p", Some(&key), body.clone(), &alice.token)
            .await;
        let (s, c, b) = error_code(r).await;
        assert_eq!((s, c.as_str()), (status, code), "{body} -> {b}");
    }
    // No key, malformed JSON: 400.
    let (s, c, _) = error_code(
        app.money_post(
            "/api/transfers/p2p",
            None,
            transfer("bob", json!("5"), "USD"),
            &alice.token,
        )
        .await,
    )
    .await;
    assert_eq!((s, c.as_str()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    let r = app
        .client
        .post(app.url("/api/transfers/p2p"))
        .bearer_auth(&alice.token)
        .header("idempotency-key", "x")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.balances(&alice).await["USD"], "100.00");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'p2p'")
            .await,
        0
    );
    // The daily cap ($60 here) counts across transfers.
    assert_eq!(
        app.money_post(
            "/api/transfers/p2p",
            Some("d1"),
            transfer("bob", json!("40"), "USD"),
            &alice.token
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let (s, c, _) = error_code(
        app.money_post(
            "/api/transfers/p2p",
            Some("d2"),
            transfer("bob", json!("30"), "USD"),
            &alice.token,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED")
    );
    assert_eq!(app.balances(&alice).await["USD"], "60.00");
    // Unauthenticated, and a non-admin adjusting.
    assert_eq!(
        app.client
            .post(app.url("/api/transfers/p2p"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .money_post(
            "/api/admin/wallets/adjust",
            Some("a"),
            json!({"user_id": alice.id, "currency": "USD", "amount": "5", "reason": "free money"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.ledger_ok().await;
}

#[tokio::test]
async fn admin_debit_cannot_overdraw_and_funded_users_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let u = verified(&app, "holder").await;
    app.fund(&admin, &u, "ETH", "1.25").await;
    let r = app
        .money_post(
            "/api/admin/wallets/adjust",
            Some("over"),
            json!({"user_id": u.id, "currency": "ETH", "amount": "-2", "reason": "too much"}),
            &admin.token,
        )
        .await;
    assert_eq!(error_code(r).await.1, "INSUFFICIENT_FUNDS");
    assert_eq!(
        app.delete(&format!("/api/users/{}", u.id), Some(&admin.token))
            .await
            .status(),
        StatusCode::CONFLICT
    );
    let r = app
        .money_post(
            "/api/admin/wallets/adjust",
            Some("zero"),
            json!({"user_id": u.id, "currency": "ETH", "amount": "-1.25", "reason": "closing"}),
            &admin.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        app.delete(&format!("/api/users/{}", u.id), Some(&admin.token))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.ledger_ok().await;
}

/// Tiny deterministic generator so a failing run can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_on_hot_accounts_keep_every_invariant() {
    let tasks: u64 = 32;
    let per_task: u64 = std::env::var("ETX_STRESS_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let app = TestApp::spawn_with(|c| {
        c.transfers.daily_cap_usd = "100000000".into();
        c.database.max_connections = 16;
        // Thousands of transfers an hour per user: the velocity review rule would hold them.
        c.aml.max_operations_in_window = 0;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let mut users = Vec::new();
    for name in ["hot_a", "hot_b", "hot_c", "hot_d"] {
        let u = verified(&app, name).await;
        app.fund(&admin, &u, "USD", "500.00").await;
        app.fund(&admin, &u, "BTC", "0.01000000").await;
        users.push(u);
    }
    let users = std::sync::Arc::new(users);
    let app = std::sync::Arc::new(app);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (app, users) = (app.clone(), users.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Lcg(t + 1);
            let mut moved = Vec::new();
            let mut refused = 0u32;
            for i in 0..per_task {
                let from = (rng.next() % 4) as usize;
                let to = (from + 1 + (rng.next() % 3) as usize) % 4;
                // Amounts from $1 to $120: hot accounts often run dry, so refusals happen too.
                // Every third transfer moves BTC ($1.30 to $117), so movements of two assets
                // between the same users cross each other.
                let cents = 100 + rng.next() % 11_900;
                let (amount, currency) = if i % 3 == 1 {
                    (format!("0.{:08}", 2_000 + rng.next() % 178_000), "BTC")
                } else {
                    (format!("{}.{:02}", cents / 100, cents % 100), "USD")
                };
                // Every 10th transfer reuses a key shared by all tasks, replayed concurrently.
                let key = if i % 10 == 0 { format!("shared-{from}-{}", i / 10 % 5) } else { format!("t{t}-{i}") };
                let body = json!({"recipient": users[to].username, "amount": amount, "currency": currency});
                let r = app.money_post("/api/transfers/p2p", Some(&key), body, &users[from].token).await;
                let status = r.status();
                let replayed = r.headers().contains_key("idempotent-replayed");
                let b: Value = r.json().await.unwrap();
                match status {
                    StatusCode::CREATED => {
                        if !replayed {
                            moved.push((key, b["transfer"]["entry_id"].as_str().unwrap().to_string()));
                        }
                    }
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        assert_eq!(b["error"]["code"], "INSUFFICIENT_FUNDS", "{b}");
                        refused += 1;
                    }
                    // A shared key already used with another body by a different task.
                    StatusCode::CONFLICT => assert!(key.starts_with("shared-"), "{b}"),
                    other => panic!("unexpected {other}: {b}"),
                }
            }
            (moved, refused)
        }));
    }
    let mut entries = HashSet::new();
    let mut keys = Vec::new();
    let mut refused = 0;
    for h in handles {
        let (moved, r) = h.await.unwrap();
        refused += r;
        for (k, e) in moved {
            assert!(entries.insert(e), "an entry was reported twice");
            keys.push(k);
        }
    }
    let per_user_keys: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        per_user_keys.len(),
        keys.len(),
        "every key moved money at most once"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'p2p'")
            .await,
        entries.len() as i64
    );
    let (mut usd, mut btc) = (0i64, 0i64);
    for u in users.iter() {
        let b = app.balances(u).await;
        usd += etx_domain::parse_amount(&b["USD"], 2).unwrap();
        btc += etx_domain::parse_amount(&b["BTC"], 8).unwrap();
    }
    assert_eq!(usd, 4 * 50_000, "USD is neither created nor destroyed");
    assert_eq!(btc, 4 * 1_000_000, "BTC is neither created nor destroyed");
    assert!(refused > 0, "the load exercised insufficient funds");
    app.ledger_ok().await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM users u WHERE \
             COALESCE((SELECT n FROM transaction_counts c WHERE c.user_id = u.id), 0) \
             + COALESCE((SELECT SUM(d.n) FROM transaction_count_deltas d WHERE d.user_id = u.id), 0) \
             <> (SELECT COUNT(*) FROM transactions t WHERE t.user_id = u.id)"
        )
        .await,
        0,
        "history totals match the history"
    );
    eprintln!(
        "{} transfers moved, {refused} refused for insufficient funds",
        entries.len()
    );
}

/// Transfers that arrive while the database is busy wait together and are committed in one
/// transaction; each is still decided on its own: funds and the daily cap refuse some without
/// touching the others, a recipient's first credit opens their account, and a key sent twice
/// moves money once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_waiting_together_are_each_decided_on_their_own() {
    let app = TestApp::spawn_with(|c| {
        c.transfers.daily_cap_usd = "75".into();
        c.aml.max_operations_in_window = 0;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let capped = verified(&app, "capped").await;
    let poor = verified(&app, "poor").await;
    let repeater = verified(&app, "repeater").await;
    app.fund(&admin, &capped, "USD", "100").await;
    app.fund(&admin, &poor, "USD", "40").await;
    app.fund(&admin, &repeater, "USD", "50").await;
    let mut fresh = Vec::new();
    for name in ["new_one", "new_two", "new_three"] {
        fresh.push(verified(&app, name).await);
    }

    // Hold the senders' accounts (on SQLite: the write lock) so every transfer queues up.
    let db = app.state.db.clone();
    let tx = db.begin_write().await.unwrap();
    let held: Vec<String> = [&capped, &poor, &repeater]
        .iter()
        .map(|u| etx_db::ledger::account_id(&u.id, AccountKind::Wallet, "USD"))
        .collect();
    let mut ids: Vec<&str> = held.iter().map(String::as_str).collect();
    ids.sort_unstable();
    db.lock_accounts(&tx, &ids).await.unwrap();

    let app = std::sync::Arc::new(app);
    let send = |from: &TestUser, to: &TestUser, amount: &str, key: String| {
        let (app, token) = (app.clone(), from.token.clone());
        let body = json!({"recipient": to.username, "amount": amount, "currency": "USD"});
        tokio::spawn(async move {
            let r = app
                .money_post("/api/transfers/p2p", Some(&key), body, &token)
                .await;
            let replayed = r.headers().contains_key("idempotent-replayed");
            let status = r.status();
            let b: Value = r.json().await.unwrap();
            (status, replayed, b)
        })
    };
    let mut capped_sends = Vec::new();
    for i in 0..10 {
        capped_sends.push(send(&capped, &fresh[i % 3], "15", format!("c{i}")));
    }
    let mut poor_sends = Vec::new();
    for i in 0..5 {
        poor_sends.push(send(&poor, &fresh[i % 3], "15", format!("p{i}")));
    }
    let twice = [
        send(&repeater, &fresh[0], "20", "same".into()),
        send(&repeater, &fresh[0], "20", "same".into()),
    ];
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tx.commit().await.unwrap();

    let codes = |rs: Vec<(StatusCode, bool, Value)>| {
        let mut codes: Vec<String> = rs
            .into_iter()
            .map(|(s, _, b)| match s {
                StatusCode::CREATED => "ok".to_string(),
                _ => b["error"]["code"].as_str().unwrap_or("?").to_string(),
            })
            .collect();
        codes.sort();
        codes
    };
    let mut got = Vec::new();
    for h in capped_sends {
        got.push(h.await.unwrap());
    }
    let mut want = vec!["LIMIT_EXCEEDED"; 5];
    want.extend(["ok"; 5]);
    assert_eq!(
        codes(got),
        want,
        "five $15 transfers fill the $75 daily cap"
    );
    let mut got = Vec::new();
    for h in poor_sends {
        got.push(h.await.unwrap());
    }
    let mut want = vec!["INSUFFICIENT_FUNDS"; 3];
    want.extend(["ok"; 2]);
    assert_eq!(codes(got), want, "$40 pays for two $15 transfers");
    let mut answers = Vec::new();
    for h in twice {
        answers.push(h.await.unwrap());
    }
    assert!(answers.iter().all(|(s, _, _)| *s == StatusCode::CREATED));
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| *replayed).count(),
        1,
        "the second request with the key is a replay"
    );
    assert_eq!(answers[0].2["transfer"], answers[1].2["transfer"]);

    assert_eq!(app.balances(&capped).await["USD"], "25.00");
    assert_eq!(app.balances(&poor).await["USD"], "10.00");
    assert_eq!(app.balances(&repeater).await["USD"], "30.00");
    let mut received = 0;
    for u in &fresh {
        received += etx_domain::parse_amount(&app.balances(u).await["USD"], 2).unwrap();
    }
    assert_eq!(
        received,
        75_00 + 30_00 + 20_00,
        "recipients' new accounts got every credit"
    );
    let entries = app
        .count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'p2p'")
        .await;
    assert_eq!(entries, 8);
    // Entries committed in one transaction share its timestamp.
    assert!(
        app.count("SELECT COUNT(DISTINCT created_at) FROM journal_entries WHERE kind = 'p2p'")
            .await
            < entries,
        "the waiting transfers were committed together"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notifications WHERE kind = 'transfer_received'")
            .await,
        8
    );
    app.ledger_ok().await;
}

/// The first movements of an asset all open the platform's account for it at once, and each
/// first credit opens its user's account: none of them may fail for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_credits_of_new_accounts_at_once_all_succeed() {
    let app = TestApp::spawn_with(|c| c.rate_limit.register_per_ip_per_minute = 100).await;
    let admin = app.user_with_role("opener", "admin").await;
    let mut users = Vec::new();
    for i in 0..16 {
        users.push(verified(&app, &format!("first{i}")).await);
    }
    let app = std::sync::Arc::new(app);
    let mut sends = Vec::new();
    for u in &users {
        for round in 0..2 {
            let (app, token, id) = (app.clone(), admin.token.clone(), u.id.clone());
            sends.push(tokio::spawn(async move {
                let r = app
                    .money_post(
                        "/api/admin/wallets/adjust",
                        Some(&format!("open-{id}-{round}")),
                        json!({"user_id": id, "currency": "SOL", "amount": "1.5", "reason": "opening"}),
                        &token,
                    )
                    .await;
                (r.status(), r.text().await.unwrap())
            }));
        }
    }
    for s in sends {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for u in &users {
        assert_eq!(app.balances(u).await["SOL"], "3.00000000");
    }
    app.ledger_ok().await;
}

/// Moves `cents` of USD from `from` to `to` inside `tx`, as a posted entry (the ledger stays
/// balanced), without committing.
async fn move_in(
    db: &etx_db::Db,
    tx: &etx_db::DatabaseTransaction,
    from: &str,
    to: &str,
    cents: i64,
) {
    let (a, b) = (
        etx_db::ledger::account_id(from, AccountKind::Wallet, "USD"),
        etx_db::ledger::account_id(to, AccountKind::Wallet, "USD"),
    );
    let mut legs = [(a.as_str(), -cents), (b.as_str(), cents)];
    legs.sort_unstable();
    let id = uuid::Uuid::now_v7().to_string();
    let now = etx_db::now_micros();
    let mut batch = etx_db::Batch::default();
    etx_db::Db::queue_entry(
        &mut batch,
        &etx_db::ledger::NewEntry {
            id: &id,
            kind: etx_domain::EntryKind::Adjustment,
            asset: "USD",
            memo: Some("moved under a waiting transfer"),
            created_by: None,
            legs: Vec::new(),
        },
        &legs,
        now,
    );
    etx_db::Db::queue_balance_changes(&mut batch, &legs, now);
    db.run_batch(tx, batch).await.unwrap();
}

/// A transfer is decided on the balance it finds under the lock, even when the balance
/// changed after the transfer first looked: its answer shows the balance that is really left,
/// and when the money is no longer there it is refused and nothing of it stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_are_decided_on_the_balance_under_the_lock() {
    let app = TestApp::spawn_with(|c| c.aml.max_operations_in_window = 0).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let payer = verified(&app, "payer").await;
    let elsewhere = verified(&app, "elsewhere").await;
    let payee = verified(&app, "payee").await;
    app.fund(&admin, &payer, "USD", "40").await;
    app.fund(&admin, &elsewhere, "USD", "1").await;
    let db = app.state.db.clone();
    let account = etx_db::ledger::account_id(&payer.id, AccountKind::Wallet, "USD");
    let app = std::sync::Arc::new(app);
    let send = |amount: &str, key: &str| {
        let (app, token, key) = (app.clone(), payer.token.clone(), key.to_string());
        let body = json!({"recipient": "payee", "amount": amount, "currency": "USD"});
        tokio::spawn(async move {
            let r = app
                .money_post("/api/transfers/p2p", Some(&key), body, &token)
                .await;
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };

    // $5 leaves while a $10 transfer waits for the account: the transfer still goes, and its
    // answer counts the $5.
    let tx = db.begin_write().await.unwrap();
    db.lock_accounts(&tx, &[account.as_str()]).await.unwrap();
    move_in(&db, &tx, &payer.id, &elsewhere.id, 5_00).await;
    let waiting = send("10", "after-five");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    tx.commit().await.unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["balance"], "25.00");
    assert_eq!(app.balances(&payer).await["USD"], "25.00");

    // $20 leaves while a $10 transfer waits: only $5 is left, so the transfer is refused, and
    // neither its entry, its history rows nor the payee's notification remain.
    let tx = db.begin_write().await.unwrap();
    db.lock_accounts(&tx, &[account.as_str()]).await.unwrap();
    move_in(&db, &tx, &payer.id, &elsewhere.id, 20_00).await;
    let waiting = send("10", "after-twenty");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    tx.commit().await.unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "INSUFFICIENT_FUNDS");
    assert_eq!(app.balances(&payer).await["USD"], "5.00");
    assert_eq!(app.balances(&payee).await["USD"], "10.00");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_entries WHERE kind = 'p2p'")
            .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM transactions WHERE user_id = '{}' AND type = 'p2p'",
            payee.id
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notifications WHERE kind = 'transfer_received'")
            .await,
        1
    );
    app.ledger_ok().await;
    // The refused request's key stored nothing: the same request may go again.
    app.fund(&admin, &payer, "USD", "10").await;
    let (status, _) = send("10", "after-twenty").await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
}

/// Recipients are remembered between transfers, but a suspension, a username change or a
/// lost verification is seen by the very next transfer.
#[tokio::test]
async fn a_changed_recipient_is_seen_by_the_next_transfer() {
    let app = TestApp::spawn_with(|c| c.aml.max_operations_in_window = 0).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let payer = verified(&app, "payer").await;
    let payee = verified(&app, "payee").await;
    app.fund(&admin, &payer, "USD", "100").await;
    let mut n = 0;
    let mut pay = |to: &str| {
        n += 1;
        let key = format!("pay-{n}");
        let body = transfer(to, json!("1.00"), "USD");
        let (app, token) = (&app, payer.token.clone());
        async move {
            let r = app
                .money_post("/api/transfers/p2p", Some(&key), body, &token)
                .await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(pay("payee").await.0, StatusCode::CREATED);
    assert_eq!(pay("PAYEE@example.com").await.0, StatusCode::CREATED);

    // A new username: the old one names nobody, the new one is paid.
    let r = app
        .put(
            "/api/auth/me",
            json!({"username": "payee_two"}),
            Some(&payee.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pay("payee").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = pay("payee_two").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["transfer"]["recipient"]["username"], "payee_two");

    // A new email must be verified again before it receives money.
    let r = app
        .put(
            "/api/auth/me",
            json!({"email": "payee2@example.com", "current_password": PASSWORD}),
            Some(&payee.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(pay("payee_two").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.balances(&payee).await["USD"], "3.00");

    // A suspended user receives nothing until reinstated.
    let other = verified(&app, "other").await;
    assert_eq!(pay("other").await.0, StatusCode::CREATED);
    let path = format!("/api/users/{}", other.id);
    let suspend = |active: bool| app.put(&path, json!({"is_active": active}), Some(&admin.token));
    assert_eq!(suspend(false).await.status(), StatusCode::OK);
    let (status, body) = pay("other").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"].get("recipient").is_some(), "{body}");
    assert_eq!(
        pay("other@example.com").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(suspend(true).await.status(), StatusCode::OK);
    assert_eq!(pay("other").await.0, StatusCode::CREATED);
    let account = etx_db::ledger::account_id(&other.id, AccountKind::Wallet, "USD");
    assert_eq!(
        app.count(&format!(
            "SELECT balance FROM ledger_accounts WHERE id = '{account}'"
        ))
        .await,
        2_00,
        "the suspended user received nothing"
    );
}

/// A JSON number is read from the request's text: one a float cannot hold (2^53 + 1 cents)
/// keeps every digit, and an exponent is refused instead of rounded.
#[tokio::test]
async fn amounts_sent_as_json_numbers_keep_every_digit() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = verified(&app, "alice").await;
    let send = |amount: &str| {
        let body = format!(
            r#"{{"user_id": "{}", "currency": "USD", "amount": {amount}, "reason": "exact"}}"#,
            alice.id
        );
        app.client
            .post(app.url("/api/admin/wallets/adjust"))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .body(body)
            .send()
    };
    // Worth more than the approval threshold: it waits for a second admin, as sent.
    let r = send("90071992547409.93").await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["adjustment"]["amount"], "90071992547409.93");
    // Small enough to apply at once: the balance is exactly what was sent.
    let r = send("12.30").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.balances(&alice).await["USD"], "12.30");
    for bad in ["1e3", "1.5E1", "-0.0"] {
        let (s, c, _) = error_code(send(bad).await.unwrap()).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    assert_eq!(app.balances(&alice).await["USD"], "12.30");
    app.ledger_ok().await;
}
