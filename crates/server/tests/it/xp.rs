//! Experience points: awarded by the server for real events only, once, within daily caps;
//! a level-up notifies; the leaderboards.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn xp(app: &TestApp, u: &TestUser) -> Value {
    let r = app.get("/api/xp", Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Waits until the awarder (a background task) has brought the user to `exp`, then checks it
/// stays there a little while: nothing else is on its way.
async fn settles_at(app: &TestApp, u: &TestUser, exp: i64) -> Value {
    let start = Instant::now();
    loop {
        let x = xp(app, u).await;
        if x["exp"] == exp {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = xp(app, u).await;
            assert_eq!(again["exp"], exp, "{again}");
            return again;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "expected {exp} XP: {x}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn p2p(app: &TestApp, from: &TestUser, to: &str, key: &str) -> StatusCode {
    app.money_post(
        "/api/transfers/p2p",
        Some(key),
        json!({"recipient": to, "amount": "1.00", "currency": "USD"}),
        &from.token,
    )
    .await
    .status()
}

#[tokio::test]
async fn real_events_earn_experience_once_within_daily_caps_and_a_level_up_notifies() {
    let app = spawn_quiet_market().await;
    set_price(&app, "BTC", 60_000);
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.verify(&bob).await;
    let start = xp(&app, &alice).await;
    assert_eq!(
        (start["exp"].as_i64(), start["level"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(start["events"].as_array().unwrap().len(), 0);
    let weekly_points = |who: &'static str| {
        let (app, token) = (&app, bob.token.clone());
        async move {
            let lb: Value = app
                .get("/api/leaderboard?period=week", Some(&token))
                .await
                .json()
                .await
                .unwrap();
            lb["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["username"] == who)
                .map(|u| u["points"].as_i64().unwrap())
        }
    };
    assert_eq!(weekly_points("alice").await, None);

    // Verifying the address by the mailed link: 20.
    let mail = app.mail_to(&alice.email, 1).await;
    let token = link_param(&plain_text_part(&mail[0]), "/verify-email?", "token");
    let r = app
        .post("/api/auth/verify-email", json!({"token": token}), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    settles_at(&app, &alice, 20).await;
    // The week's ranking read a moment ago is not served again once points were awarded.
    assert_eq!(weekly_points("alice").await, Some(20));

    // Two-factor on: 30; switching it off and on again pays nothing more.
    let (secret, _) = two_factor_on(&app, &alice).await;
    settles_at(&app, &alice, 50).await;
    let r = app
        .post(
            "/api/auth/2fa/disable",
            json!({"password": PASSWORD, "code": totp(&secret, 1)}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    two_factor_on(&app, &alice).await;
    // Money an admin adds is no event of the user's: nothing.
    app.fund(&admin, &alice, "USD", "500.00").await;
    settles_at(&app, &alice, 50).await;

    // Seven transfers at 5 each, capped at 25 a day; the recipient earns nothing.
    for i in 0..7 {
        assert_eq!(
            p2p(&app, &alice, "bob", &format!("t-{i}")).await,
            StatusCode::CREATED
        );
    }
    settles_at(&app, &alice, 75).await;
    assert_eq!(xp(&app, &bob).await["exp"], 0);

    // The first fill: 50 for the first trade and 2 for a small order → level 2.
    let r = app
        .money_post(
            "/api/orders",
            Some("o-1"),
            json!({"pair": "BTC/USD", "side": "buy", "amount": "0.001"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let x = settles_at(&app, &alice, 127).await;
    assert_eq!(x["level"], 2);
    assert_eq!(x["exp_into_level"], 27);
    let kinds: Vec<&str> = x["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "transfer").count(), 5, "{x}");
    for k in [
        "email_verified",
        "two_factor_enabled",
        "first_trade",
        "trade_volume",
    ] {
        assert_eq!(kinds.iter().filter(|x| *x == &k).count(), 1, "{k}: {x}");
    }
    let earned: Vec<(&str, bool)> = x["achievements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["earned_at"].is_string()))
        .collect();
    assert_eq!(
        earned,
        [
            ("email_verified", true),
            ("two_factor_enabled", true),
            ("first_deposit", false),
            ("first_trade", true)
        ]
    );
    let n: Value = app
        .get("/api/notifications", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let ups: Vec<&Value> = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "level_up")
        .collect();
    assert_eq!(ups.len(), 1, "{n}");
    assert_eq!(ups[0]["title"], "You reached level 2");

    // Paging the awards.
    let p1: Value = app
        .get("/api/xp?limit=3", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p1["events"].as_array().unwrap().len(), 3);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app
        .get(
            &format!("/api/xp?limit=100&cursor={cursor}"),
            Some(&alice.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p2["events"].as_array().unwrap().len(), kinds.len() - 3);
    assert!(p2["next_cursor"].is_null());
    for bad in [
        "/api/xp?limit=0",
        "/api/xp?cursor=nope",
        "/api/leaderboard?period=year",
    ] {
        assert_eq!(
            app.get(bad, Some(&alice.token)).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }

    // Both leaderboards put her first; the week counts what was earned this week.
    for period in ["week", "all"] {
        let lb: Value = app
            .get(
                &format!("/api/leaderboard?period={period}"),
                Some(&bob.token),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(lb["period"], period);
        assert_eq!(lb["users"][0]["username"], "alice", "{lb}");
        assert_eq!(lb["users"][0]["points"], 127);
        assert_eq!(lb["users"][0]["rank"], 1);
        assert_eq!(lb["users"][0]["level"], 2);
    }
    // A client cannot give itself experience.
    let r = app
        .put("/api/auth/me", json!({"exp": 10_000}), Some(&alice.token))
        .await;
    assert!(r.status().is_client_error());
    settles_at(&app, &alice, 127).await;
}

#[tokio::test]
async fn concurrent_transfers_on_two_instances_stay_within_the_daily_cap() {
    let a = spawn_quiet_market().await;
    let b = TestApp::start({
        let mut c = a.state.config.clone();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    capped_by_concurrent_transfers(&a, &b).await;
}

async fn capped_by_concurrent_transfers(a: &TestApp, b: &TestApp) {
    let admin = a.user_with_role("treasurer", "admin").await;
    let alice = a.register("alice").await;
    a.verify(&alice).await;
    let bob = a.register("bob").await;
    a.verify(&bob).await;
    a.fund(&admin, &alice, "USD", "100.00").await;
    let sends = (0..20).map(|i| {
        let app = if i % 2 == 0 { a } else { b };
        let alice = &alice;
        async move { p2p(app, alice, "bob", &format!("c-{i}")).await }
    });
    for s in futures_util::future::join_all(sends).await {
        assert_eq!(s, StatusCode::CREATED);
    }
    let x = settles_at(a, &alice, 25).await;
    assert_eq!(
        x["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["points"].as_i64().unwrap())
            .sum::<i64>(),
        25
    );
}
