//! The session cache on several instances sharing Redis: each instance keeps sessions in
//! memory, and a logout (or any change to a user or session) on one instance clears the
//! cache of every other before its answer leaves; while Redis is away the cache is off, so a
//! revocation still holds everywhere at once.

use crate::redis_outage::PrivateRedis;
use crate::support::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

async fn wait_live(app: &TestApp, want: bool) {
    let sync = app.state.cache_sync.as_ref().expect("REDIS_URL is set");
    let start = Instant::now();
    while sync.is_live() != want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cache still {} after 10 s",
            if want { "off" } else { "on" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/auth/me", Some(token)).await.status()
}

/// Revokes sessions straight in the database, behind every instance's back (`only`: that
/// one; else all of the user's): only a cache shows them as still live.
async fn revoke_behind_the_back(app: &TestApp, user: &TestUser, only: Option<&str>) {
    let raw = etx_db::Db::connect(&app.state.config.database_url(), 1)
        .await
        .unwrap();
    raw.execute(
        "UPDATE sessions SET revoked_at = 1, revoked_reason = 'test' \
         WHERE user_id = $1 AND revoked_at IS NULL AND ($2 = '' OR id = $2)",
        [user.id.clone().into(), only.unwrap_or_default().into()],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_logout_on_one_instance_holds_on_the_others_at_once_with_redis_up_or_down() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let a = TestApp::spawn_with(|c| c.redis_url = Some(url.clone())).await;
    let b = TestApp::start({
        let mut c = a.state.config.clone();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c
    })
    .await;
    wait_live(&a, true).await;
    wait_live(&b, true).await;

    let alice = a.register("alice").await;
    let first = a.state.db.list_sessions(&alice.id).await.unwrap();
    assert_eq!(first.len(), 1);
    let r = a.login("alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: serde_json::Value = r.json().await.unwrap();
    let second = second["access_token"].as_str().unwrap().to_string();
    // Both sessions used on B: cached there.
    assert_eq!(me(&b, &alice.token).await, StatusCode::OK);
    assert_eq!(me(&b, &second).await, StatusCode::OK);
    // The first session revoked behind every instance's back: B still serves it from memory,
    // which shows the cache is on with Redis configured.
    revoke_behind_the_back(&a, &alice, Some(&first[0].id)).await;
    assert_eq!(me(&b, &alice.token).await, StatusCode::OK);

    // A logout through A: B refuses the next request, and has dropped the rest of its cache.
    let r = a
        .post("/api/auth/logout", serde_json::json!({}), Some(&second))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(me(&b, &second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&b, &alice.token).await, StatusCode::UNAUTHORIZED);

    // Redis away: the cache goes off, so a revocation holds everywhere without a message.
    redis.stop();
    wait_live(&b, false).await;
    let r = a.login("alice", PASSWORD).await;
    let third: serde_json::Value = r.json().await.unwrap();
    let third = third["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&b, &third).await, StatusCode::OK);
    revoke_behind_the_back(&a, &alice, None).await;
    assert_eq!(me(&b, &third).await, StatusCode::UNAUTHORIZED);

    // Back: on again, and clears travel again.
    redis.restart().await;
    wait_live(&a, true).await;
    wait_live(&b, true).await;
    let r = a.login("alice", PASSWORD).await;
    let fourth: serde_json::Value = r.json().await.unwrap();
    let fourth = fourth["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&b, &fourth).await, StatusCode::OK);
    let r = a
        .post("/api/auth/logout", serde_json::json!({}), Some(&fourth))
        .await;
    assert!(r.status().is_success());
    assert_eq!(me(&b, &fourth).await, StatusCode::UNAUTHORIZED);
}
