//! Redis going away and coming back while the server runs: requests keep answering quickly
//! (rate limits counted per instance meanwhile), and readiness, shared limits and cross-instance
//! Socket.IO events are back within seconds. Each test runs its own `redis-server` on a free
//! port, so stopping it disturbs nobody else.

use crate::realtime::{Recorder, WAIT, transfer};
use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// No answer may take longer than this, Redis or not.
const FAST: Duration = Duration::from_secs(2);
/// How soon after Redis returns the instance must be ready again.
const RECOVERY: Duration = Duration::from_secs(6);

/// A `redis-server` of this test's own.
pub(crate) struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub(crate) async fn start() -> PrivateRedis {
        let port = crate::ports::free_ports(0);
        let mut r = PrivateRedis { port, child: None };
        r.restart().await;
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it on its port (again) and waits until it answers `PING`.
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none());
        self.child = Some(
            std::process::Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server on the PATH"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong().await {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn pong(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// Kills it (no shutdown courtesy: connections just drop).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The rate-limit keys it holds.
    fn rate_limit_keys(&self) -> usize {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--scan",
                "--pattern",
                "etx:rl:*",
            ])
            .output()
            .expect("redis-cli on the PATH");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let r = app.get("/health/ready", None).await;
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Polls readiness until it is `want`; how long that took.
async fn wait_ready(app: &TestApp, want: StatusCode, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (s, body) = readiness(app).await;
        if s == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "readiness still {s} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One answer seen by the load: what was asked, its status, and how long it took.
type Seen = (&'static str, StatusCode, Duration);

/// Clients signing in and reading their history in a loop until `stop`.
fn spawn_load(
    app: &TestApp,
    user: &TestUser,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Seen>>> {
    (0..clients)
        .map(|i| {
            let base = app.base.clone();
            let login = user.username.clone();
            let token = user.token.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(40))
                    .build()
                    .unwrap();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (what, r) = if i % 2 == 0 {
                        let r = client
                            .post(format!("{base}/api/auth/login"))
                            .json(&json!({"login": login, "password": PASSWORD}))
                            .send()
                            .await;
                        ("login", r)
                    } else {
                        let r = client
                            .get(format!("{base}/api/transactions"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        ("transactions", r)
                    };
                    seen.push((what, r.unwrap().status(), t.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect()
}

/// Every answer was quick and successful: while Redis was away the instance counted on its own.
async fn check_load(load: Vec<tokio::task::JoinHandle<Vec<Seen>>>) -> usize {
    let mut total = 0;
    for h in load {
        for (what, status, took) in h.await.unwrap() {
            total += 1;
            assert!(took < FAST, "{what} took {took:?} (answered {status})");
            assert_eq!(status, StatusCode::OK, "{what} after {took:?}");
        }
    }
    total
}

#[tokio::test]
async fn requests_stay_fast_and_the_instance_recovers_when_redis_restarts() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(url.clone());
        c.rate_limit.login_per_ip_per_minute = 1_000_000;
        c.rate_limit.transactions_per_user_per_minute = 1_000_000;
    })
    .await;
    let alice = app.register("alice").await;
    wait_ready(&app, StatusCode::OK, RECOVERY).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&app, &alice, 6, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Twice: an instance that recovered once must recover again.
    for round in 0..2 {
        redis.stop();
        let t = wait_ready(&app, StatusCode::SERVICE_UNAVAILABLE, FAST).await;
        let (_, body) = readiness(&app).await;
        let failing: Vec<&str> = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(failing.contains(&"redis"), "round {round}: {body}");
        assert!(
            failing.contains(&"socketio_adapter"),
            "round {round}: {body}"
        );
        // The load keeps running against the instance without Redis for a while.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t0 = Instant::now();
        let r = app.login("alice", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "round {round}");
        assert!(t0.elapsed() < FAST, "round {round}: login without Redis");

        redis.restart().await;
        let back = wait_ready(&app, StatusCode::OK, RECOVERY).await;
        eprintln!("round {round}: not ready after {t:?}, ready again {back:?} after Redis");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Limits are counted in Redis again.
        assert!(redis.rate_limit_keys() > 0, "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    let answers = check_load(load).await;
    assert!(answers > 100, "only {answers} answers under load");
}

/// Without Redis each instance still enforces the limits on its own: a throttled login is
/// refused with `Retry-After`, quickly.
#[tokio::test]
async fn limits_still_hold_while_redis_is_down() {
    away_from_a_minute_edge().await;
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(url.clone());
        c.rate_limit.login_per_ip_per_minute = 3;
    })
    .await;
    redis.stop();
    wait_ready(&app, StatusCode::SERVICE_UNAVAILABLE, FAST).await;
    for i in 0..3 {
        let t = Instant::now();
        let r = app.login("nobody", "Wrong-Pass-1").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(t.elapsed() < FAST);
    }
    let t = Instant::now();
    let r = app.login("nobody", "Wrong-Pass-1").await;
    assert!(t.elapsed() < FAST);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    redis.restart().await;
    wait_ready(&app, StatusCode::OK, RECOVERY).await;
}

/// Two instances share events through Redis; after Redis restarts, the adapters subscribe
/// again, so an event raised on one instance reaches a socket on the other once more. While
/// Redis is away, money still moves at once.
#[tokio::test]
async fn socketio_events_cross_instances_again_after_redis_restarts() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let a = TestApp::spawn_with(|c| c.redis_url = Some(url.clone())).await;
    let shared_db = a.state.config.database_url();
    let shared_dir = a.data_dir.clone();
    let b = TestApp::spawn_with(|c| {
        c.redis_url = Some(url.clone());
        c.database_url = Some(shared_db.clone());
        c.data_dir = shared_dir.clone();
    })
    .await;
    let admin = a.user_with_role("root", "admin").await;
    let alice = a.register("alice").await;
    let bob = a.register("bob").await;
    a.verify(&alice).await;
    a.verify(&bob).await;
    a.fund(&admin, &alice, "USD", "20.00").await;
    let mut on_b = Recorder::start(&b.base, Some(&bob.token)).await;
    assert!(
        on_b.wait_for("authenticated", |_| true, WAIT)
            .await
            .is_some()
    );
    transfer(&a, &alice, "bob", "1.00", "before").await;
    assert!(
        on_b.wait_for("transaction_update", |d| d["amount"] == "1.00", WAIT)
            .await
            .is_some(),
        "the event crosses before the restart"
    );
    for round in 0..2 {
        redis.stop();
        wait_ready(&a, StatusCode::SERVICE_UNAVAILABLE, FAST).await;
        let t = Instant::now();
        transfer(&a, &alice, "bob", "2.00", &format!("down-{round}")).await;
        assert!(t.elapsed() < FAST, "a transfer while Redis is down");
        redis.restart().await;
        wait_ready(&a, StatusCode::OK, RECOVERY).await;
        wait_ready(&b, StatusCode::OK, RECOVERY).await;
        let amount = format!("3.0{round}");
        transfer(&a, &alice, "bob", &amount, &format!("after-{round}")).await;
        assert!(
            on_b.wait_for("transaction_update", |d| d["amount"] == amount, WAIT)
                .await
                .is_some(),
            "round {round}: the event raised on A reaches B after Redis restarts"
        );
    }
    // Room changes cross again too: signing out on A detaches the socket on B.
    let r = a
        .post("/api/auth/logout", json!({}), Some(&bob.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(on_b.wait_for("auth_error", |_| true, WAIT).await.is_some());
}
