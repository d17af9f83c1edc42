//! Rate limits: the in-process limiter as the core sees it, and the shared one on Redis.

use etx_core::ratelimit::{LocalLimiter, RateLimiter, RedisLimiter};
use std::time::Duration;

#[tokio::test]
async fn a_decision_says_what_is_left_and_when_the_window_ends() {
    let l = RateLimiter::local();
    l.ping().await.unwrap();
    let w = Duration::from_secs(60);
    let first = l.hit("login:ip:192.0.2.1", 2, w).await.unwrap();
    assert!(first.allowed);
    assert_eq!((first.limit, first.remaining), (2, 1));
    assert!((1..=60).contains(&first.reset_after_secs));
    assert!(l.hit("login:ip:192.0.2.1", 2, w).await.unwrap().allowed);
    let third = l.hit("login:ip:192.0.2.1", 2, w).await.unwrap();
    assert!(!third.allowed);
    assert_eq!(third.remaining, 0, "never below zero");
    // A zero-length window counts as one second rather than dividing by zero.
    assert!(l.hit("z", 1, Duration::ZERO).await.unwrap().allowed);
    // A limit of zero refuses from the first hit.
    assert!(!l.hit("closed", 0, w).await.unwrap().allowed);
}

#[test]
fn a_new_local_limiter_holds_nothing() {
    let l = LocalLimiter::default();
    assert!(l.is_empty(60));
    assert_eq!(l.len(3600), 0);
}

/// Two limiters on the same Redis share one budget (two instances of the server); skipped
/// without `TEST_REDIS_URL`, as scripts/test.sh and scripts/coverage.sh set it.
#[tokio::test]
async fn instances_share_the_budget_through_redis() {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        return;
    };
    let a = RateLimiter::Redis(RedisLimiter::connect(&url).await.unwrap());
    let b = RateLimiter::Redis(RedisLimiter::connect(&url).await.unwrap());
    a.ping().await.unwrap();
    b.ping().await.unwrap();
    let key = format!("core-test:{}", uuid::Uuid::now_v7());
    let w = Duration::from_secs(3600);
    assert!(a.hit(&key, 2, w).await.unwrap().allowed);
    let second = b.hit(&key, 2, w).await.unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0);
    assert!(
        !a.hit(&key, 2, w).await.unwrap().allowed,
        "counted across instances"
    );
    b.clear(&key, w).await.unwrap();
    let after = a.hit(&key, 2, w).await.unwrap();
    assert!(after.allowed);
    assert_eq!(after.remaining, 1, "cleared for every instance");
    a.clear(&key, w).await.unwrap();
}

#[tokio::test]
async fn a_bad_redis_url_is_refused() {
    assert!(RedisLimiter::connect("not a url").await.is_err());
}
