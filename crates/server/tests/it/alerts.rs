//! Price alerts: CRUD, firing on simulated ticks once per cool-down, moves within a window,
//! and one firing however many instances evaluate.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn create(app: &TestApp, u: &TestUser, body: Value) -> (StatusCode, Value) {
    let r = app.post("/api/alerts", body, Some(&u.token)).await;
    let s = r.status();
    (s, r.json().await.unwrap())
}

/// The user's price-alert notifications.
async fn alert_notices(app: &TestApp, u: &TestUser) -> Vec<Value> {
    let n: Value = app
        .get("/api/notifications", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "price_alert")
        .cloned()
        .collect()
}

async fn notices_reach(app: &TestApp, u: &TestUser, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let got = alert_notices(app, u).await;
        if got.len() >= n {
            return got;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn alerts_are_created_listed_switched_and_deleted_by_their_owner_only() {
    let app = spawn_quiet_market().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let bad = [
        (
            json!({"asset": "USD", "kind": "above", "price": "1"}),
            "asset",
        ),
        (
            json!({"asset": "BTC", "kind": "sideways", "price": "1"}),
            "kind",
        ),
        (json!({"asset": "BTC", "kind": "above"}), "price"),
        (
            json!({"asset": "BTC", "kind": "above", "price": "-3"}),
            "price",
        ),
        (
            json!({"asset": "BTC", "kind": "move", "move_percent": "0.01", "window_minutes": 5}),
            "move_percent",
        ),
        (
            json!({"asset": "BTC", "kind": "move", "move_percent": "5"}),
            "window_minutes",
        ),
        (
            json!({"asset": "BTC", "kind": "move", "move_percent": "5", "window_minutes": 5000}),
            "window_minutes",
        ),
        (
            json!({"asset": "BTC", "kind": "above", "price": "1", "cooldown_minutes": 0}),
            "cooldown_minutes",
        ),
    ];
    for (body, field) in bad {
        let (s, e) = create(&app, &alice, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert!(e["error"]["fields"][field].is_string(), "{body}: {e}");
    }
    let (s, a) = create(
        &app,
        &alice,
        json!({"asset": "BTC", "kind": "above", "price": "90000"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(
        (a["price"].as_str(), a["active"].as_bool()),
        (Some("90000.00"), Some(true))
    );
    let id = a["id"].as_str().unwrap();
    let list: Value = app
        .get("/api/alerts", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["alerts"].as_array().unwrap().len(), 1);
    let list: Value = app
        .get("/api/alerts", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["alerts"].as_array().unwrap().len(), 0);
    // Another user's alert is a 404 to change or delete.
    let path = format!("/api/alerts/{id}");
    let r = app
        .send(
            reqwest::Method::PATCH,
            &path,
            json!({"active": false}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&path, Some(&bob.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .send(
            reqwest::Method::PATCH,
            &path,
            json!({"active": false}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["active"], false);
    assert_eq!(
        app.delete(&path, Some(&alice.token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&path, Some(&alice.token)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_level_alert_fires_once_and_a_repeating_one_waits_out_its_cool_down() {
    let app = spawn_quiet_market().await;
    let alice = app.register("alice").await;
    set_price(&app, "BTC", 60_000);
    let (_, once) = create(
        &app,
        &alice,
        json!({"asset": "BTC", "kind": "above", "price": "65000"}),
    )
    .await;
    let (_, again) = create(
        &app,
        &alice,
        json!({"asset": "BTC", "kind": "below", "price": "55000", "repeat": true, "cooldown_minutes": 1}),
    )
    .await;
    // Not yet at either level.
    set_price(&app, "BTC", 61_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alert_notices(&app, &alice).await.is_empty());

    set_price(&app, "BTC", 66_000);
    let got = notices_reach(&app, &alice, 1).await;
    assert!(
        got[0]["body"].as_str().unwrap().contains("66000.00"),
        "{got:?}"
    );
    assert_eq!(got[0]["data"]["alert_id"], once["id"]);
    // Still above: a one-off alert does not fire again, and is now inactive.
    no_more_than(&app, &alice, "BTC", 67_000, 1).await;
    assert_eq!(state_of(&app, &alice, &once).await, (Some(false), Some(1)));

    // The repeating one fires, then not again within its minute of cool-down.
    set_price(&app, "BTC", 54_000);
    notices_reach(&app, &alice, 2).await;
    no_more_than(&app, &alice, "BTC", 53_000, 2).await;
    assert_eq!(state_of(&app, &alice, &again).await, (Some(true), Some(1)));
}

/// After a tick at `usd`, the user still has `n` alert notifications.
async fn no_more_than(app: &TestApp, u: &TestUser, asset: &str, usd: i64, n: usize) {
    set_price(app, asset, usd);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alert_notices(app, u).await.len(), n);
}

/// (active, fired_count) of an alert as the list shows it.
async fn state_of(app: &TestApp, u: &TestUser, alert: &Value) -> (Option<bool>, Option<i64>) {
    let list: Value = app
        .get("/api/alerts", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    let a = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == alert["id"])
        .unwrap()
        .clone();
    (a["active"].as_bool(), a["fired_count"].as_i64())
}

#[tokio::test]
async fn a_move_alert_fires_on_a_move_within_its_window() {
    let app = spawn_quiet_market().await;
    let alice = app.register("alice").await;
    set_price(&app, "ETH", 3_000);
    let (s, a) = create(
        &app,
        &alice,
        json!({"asset": "ETH", "kind": "move", "move_percent": "5", "window_minutes": 10}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 4 %: not enough.
    set_price(&app, "ETH", 3_120);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alert_notices(&app, &alice).await.is_empty());
    // 5.5 % down from 3,000 (the window's start).
    set_price(&app, "ETH", 2_835);
    let got = notices_reach(&app, &alice, 1).await;
    assert!(
        got[0]["body"].as_str().unwrap().contains("moved 5.00 %"),
        "{got:?}"
    );
}

#[tokio::test]
async fn two_instances_evaluating_the_same_alert_notify_once() {
    let a = spawn_quiet_market().await;
    let b = TestApp::start({
        let mut c = a.state.config.clone();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    let alice = a.register("alice").await;
    for app in [&a, &b] {
        set_price(app, "BTC", 60_000);
    }
    let mut ids = Vec::new();
    for i in 0..10 {
        let (s, v) = create(
            &a,
            &alice,
            json!({"asset": "BTC", "kind": "above", "price": format!("{}", 61_000 + i)}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let start = Instant::now();
    while b.state.alerts.len() < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the second instance never loaded them"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for app in [&a, &b] {
        set_price(app, "BTC", 62_000);
    }
    notices_reach(&a, &alice, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = alert_notices(&a, &alice).await;
    assert_eq!(got.len(), 10, "{got:?}");
    let mut fired: Vec<String> = got
        .iter()
        .map(|n| n["data"]["alert_id"].as_str().unwrap().to_string())
        .collect();
    fired.sort();
    ids.sort();
    assert_eq!(fired, ids);
}

#[tokio::test]
async fn an_alert_asked_for_by_email_is_mailed_once_when_it_fires() {
    let app = spawn_quiet_market().await;
    let alice = app.register("alice").await;
    set_price(&app, "BTC", 60_000);
    let (s, a) = create(
        &app,
        &alice,
        json!({"asset": "BTC", "kind": "above", "price": "65000", "email": true}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["email"], true);
    // One without mail fires at the same tick and sends none.
    let (_, plain) = create(
        &app,
        &alice,
        json!({"asset": "BTC", "kind": "above", "price": "64000"}),
    )
    .await;
    assert_eq!(plain["email"], false);
    set_price(&app, "BTC", 66_000);
    notices_reach(&app, &alice, 2).await;
    // The registration's verification mail, then the alert's.
    let mail = app.mail_to(&alice.email, 2).await;
    let alert = plain_text_part(&mail[1]);
    assert!(mail[1].contains("Subject: BTC price alert"), "{}", mail[1]);
    assert!(
        alert.contains("BTC is at 66000.00 USD, at or above your 65000.00"),
        "{alert}"
    );
    assert!(alert.contains("/alerts"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.mail_to(&alice.email, 2).await.len(), 2);
}

#[tokio::test]
async fn concurrent_creations_stay_within_the_alert_limit() {
    let app = spawn_quiet_market().await;
    let alice = app.register("alice").await;
    let body =
        |i: usize| json!({"asset": "BTC", "kind": "above", "price": format!("{}", 100_000 + i)});
    for i in 0..95 {
        let (s, a) = create(&app, &alice, body(i)).await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
    }
    let tries = (95..105).map(|i| {
        let (app, alice, b) = (&app, &alice, body(i));
        async move { create(app, alice, b).await.0 }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let made = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(made, 5, "{statuses:?}");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM price_alerts WHERE user_id = '{}'",
            alice.id
        ))
        .await,
        100
    );
}
