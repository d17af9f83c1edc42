//! Socket.IO with a stock client (python-socketio from PyPI): authentication, channels, private
//! events only to their owner, revocation mid-connection, and two instances sharing events
//! through Redis.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// A python-socketio client printing every event it receives as a JSON line.
pub(crate) struct Recorder {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Recorder {
    pub(crate) async fn start(base: &str, token: Option<&str>) -> Recorder {
        Self::start_with(base, token, None).await
    }

    async fn start_with(base: &str, token: Option<&str>, cookie: Option<&str>) -> Recorder {
        Self::start_from(base, token, cookie, None).await
    }

    /// `origin`: the page the browser says the connection comes from.
    async fn start_from(
        base: &str,
        token: Option<&str>,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Recorder {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sio_recorder.py");
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script).arg(base);
        if let Some(c) = cookie {
            cmd.env("ETX_COOKIE", c);
        }
        if let Some(o) = origin {
            cmd.env("ETX_ORIGIN", o);
        }
        if let Some(t) = token {
            cmd.arg(t);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with python-socketio[client] (pip)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut rec = Recorder {
            child,
            lines,
            seen: Vec::new(),
        };
        rec.wait_for("ready", |_| true, Duration::from_secs(20))
            .await
            .expect("the client connects and subscribes");
        rec
    }

    /// The first event named `event` matching `pred`, waiting up to `within`.
    pub(crate) async fn wait_for(
        &mut self,
        event: &str,
        pred: impl Fn(&Value) -> bool,
        within: Duration,
    ) -> Option<Value> {
        let hit = |v: &Value| v["event"] == event && pred(&v["data"]);
        if let Some(v) = self.seen.iter().find(|v| hit(v)) {
            return Some(v["data"].clone());
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()??;
            self.seen.push(v.clone());
            if hit(&v) {
                return Some(v["data"].clone());
            }
        }
    }

    /// Everything that arrives within `d`.
    async fn settle(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(v);
        }
    }

    fn count(&self, event: &str) -> usize {
        self.seen.iter().filter(|v| v["event"] == event).count()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub(crate) async fn transfer(app: &TestApp, from: &TestUser, to: &str, amount: &str, key: &str) {
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some(key),
            json!({"recipient": to, "amount": amount, "currency": "USD"}),
            &from.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

pub(crate) const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_stock_client_gets_prices_and_only_its_own_events() {
    let app = TestApp::spawn_with(|c| c.market.tick_ms = 100).await;
    let admin = app.user_with_role("root", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    for u in [&alice, &bob, &carol] {
        app.verify(u).await;
    }
    app.fund(&admin, &alice, "USD", "100.00").await;

    let (mut a, mut b, mut c) = tokio::join!(
        Recorder::start(&app.base, Some(&alice.token)),
        Recorder::start(&app.base, Some(&bob.token)),
        Recorder::start(&app.base, Some(&carol.token)),
    );
    assert!(
        a.wait_for("authenticated", |d| d["username"] == "alice", WAIT)
            .await
            .is_some()
    );
    let p = a.wait_for("price_update", |_| true, WAIT).await.unwrap();
    assert_eq!(p["source"], "simulated");
    assert!(p["prices"]["BTC"].is_string());

    transfer(&app, &alice, "bob", "12.50", "rt-1").await;
    let out = a
        .wait_for("transaction_update", |d| d["direction"] == "out", WAIT)
        .await
        .expect("the sender is told");
    assert_eq!(out["amount"], "12.50");
    assert_eq!(out["counterparty"]["username"], "bob");
    let w = a.wait_for("wallet_update", |_| true, WAIT).await.unwrap();
    assert_eq!(
        (w["currency"].as_str(), w["balance"].as_str()),
        (Some("USD"), Some("87.50"))
    );
    let incoming = b
        .wait_for("transaction_update", |d| d["direction"] == "in", WAIT)
        .await
        .expect("the recipient's open page hears of it at once");
    assert_eq!(incoming["counterparty"]["username"], "alice");
    let w = b.wait_for("wallet_update", |_| true, WAIT).await.unwrap();
    assert_eq!(w["balance"], "12.50");
    let n = b.wait_for("notification", |_| true, WAIT).await.unwrap();
    assert_eq!(n["kind"], "transfer_received");
    assert_eq!(n["title"], "You received 12.50 USD");
    assert!(
        a.seen.iter().all(|v| v["event"] != "notification"),
        "the sender gets none"
    );
    // The same notification is stored, unread, and can be marked read by its owner only.
    let list: Value = app
        .get("/api/notifications", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["unread"], 1);
    assert_eq!(list["items"][0]["id"], n["id"]);
    assert_eq!(list["items"][0]["data"]["from"], "alice");
    let id = n["id"].as_str().unwrap();
    let r: Value = app
        .post(
            "/api/notifications/read",
            json!({"ids": [id]}),
            Some(&carol.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["updated"], 0, "not carol's to mark");
    let r: Value = app
        .post(
            "/api/notifications/read",
            json!({"ids": [id]}),
            Some(&bob.token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["updated"].as_u64(), r["unread"].as_i64()),
        (Some(1), Some(0))
    );
    // An admin's announcement reaches everyone; a user cannot send one.
    let r = app
        .post(
            "/api/admin/announcements",
            json!({"message": "Maintenance at 22:00", "level": "warning"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for rec in [&mut a, &mut b, &mut c] {
        let got = rec.wait_for("announcement", |_| true, WAIT).await.unwrap();
        assert_eq!(got["message"], "Maintenance at 22:00");
        assert_eq!(got["from"], "root");
    }
    let r = app
        .post(
            "/api/admin/announcements",
            json!({"message": "hi"}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    c.settle(Duration::from_millis(500)).await;
    assert_eq!(
        c.count("transaction_update") + c.count("wallet_update"),
        0,
        "nothing for carol"
    );
    assert!(
        c.count("price_update") > 0,
        "carol still gets public prices"
    );

    // Bob signs out; his open socket stops hearing private events.
    let r = app
        .post("/api/auth/logout", json!({}), Some(&bob.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(b.wait_for("auth_error", |_| true, WAIT).await.is_some());
    let before = b.count("transaction_update");
    transfer(&app, &alice, "bob", "1.00", "rt-2").await;
    assert!(
        a.wait_for("transaction_update", |d| d["amount"] == "1.00", WAIT)
            .await
            .is_some()
    );
    b.settle(Duration::from_millis(700)).await;
    assert_eq!(
        b.count("transaction_update"),
        before,
        "no events after sign-out"
    );
}

#[tokio::test]
async fn a_browser_session_cookie_signs_the_socket_in() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let cookie = format!("access_token={}", alice.token);
    let mut rec = Recorder::start_with(&app.base, None, Some(&cookie)).await;
    let who = rec.wait_for("authenticated", |_| true, WAIT).await.unwrap();
    assert_eq!(who["username"], "alice");
}

#[tokio::test]
async fn another_sites_page_cannot_ride_on_the_session_cookie() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let cookie = format!("access_token={}", alice.token);
    let mut rec =
        Recorder::start_from(&app.base, None, Some(&cookie), Some("https://evil.example")).await;
    let refused = rec.wait_for("auth_error", |_| true, WAIT).await;
    assert!(
        refused.is_some(),
        "the cross-site socket is told: {:?}",
        rec.seen
    );
    rec.settle(Duration::from_millis(300)).await;
    assert_eq!(rec.count("authenticated"), 0, "{:?}", rec.seen);
    // Our own page's origin still signs in with the cookie.
    let mut own = Recorder::start_from(&app.base, None, Some(&cookie), Some(&app.base)).await;
    let who = own.wait_for("authenticated", |_| true, WAIT).await.unwrap();
    assert_eq!(who["username"], "alice");
}

#[tokio::test]
async fn bad_tokens_are_refused_and_unknown_channels_ignored() {
    let app = TestApp::spawn().await;
    let mut anon = Recorder::start(&app.base, Some("not-a-token")).await;
    assert!(anon.wait_for("auth_error", |_| true, WAIT).await.is_some());
    assert!(anon.seen.iter().any(|v| v["event"] == "auth_failed"));
    let sub = anon.wait_for("subscribed", |_| true, WAIT).await.unwrap();
    assert_eq!(sub["subscribed"], json!(["prices"]));
    // A ping is answered with the server's time.
    let pong = anon.wait_for("ready", |_| true, WAIT).await.unwrap();
    assert_eq!(pong["pong"], true);
}

#[tokio::test]
async fn events_cross_instances_through_redis() {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let a = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.clone());
        c.market.tick_ms = 200;
    })
    .await;
    let shared_db = a.state.config.database_url();
    let shared_dir = a.data_dir.clone();
    let b = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.clone());
        c.database_url = Some(shared_db.clone());
        c.data_dir = shared_dir.clone();
        c.market.tick_ms = 200;
    })
    .await;
    assert_ne!(a.base, b.base);
    let admin = a.user_with_role("root", "admin").await;
    let alice = a.register("alice").await;
    let bob = a.register("bob").await;
    a.verify(&alice).await;
    a.verify(&bob).await;
    a.fund(&admin, &alice, "USD", "20.00").await;
    // Bob listens on instance B; the transfer is made through instance A.
    let mut on_b = Recorder::start(&b.base, Some(&bob.token)).await;
    assert!(
        on_b.wait_for("authenticated", |_| true, WAIT)
            .await
            .is_some()
    );
    transfer(&a, &alice, "bob", "3.00", "x-1").await;
    let e = on_b
        .wait_for("transaction_update", |d| d["direction"] == "in", WAIT)
        .await
        .expect("the event raised on A reaches B");
    assert_eq!(e["amount"], "3.00");
    // Both instances quote the same prices for the same moment.
    let mut agreed = false;
    for _ in 0..20 {
        let (pa, pb): (Value, Value) = tokio::join!(
            async { a.get("/api/prices", None).await.json().await.unwrap() },
            async { b.get("/api/prices", None).await.json().await.unwrap() },
        );
        if pa["updated_at"] == pb["updated_at"] && pa["updated_at"] != Value::Null {
            assert_eq!(pa["prices"], pb["prices"]);
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(agreed, "the two instances never quoted the same moment");
    // Signing out on A detaches the socket on B.
    let r = a
        .post("/api/auth/logout", json!({}), Some(&bob.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(on_b.wait_for("auth_error", |_| true, WAIT).await.is_some());
}

/// Nothing may keep a stopped application's state alive (a cycle through the Socket.IO
/// handlers once did): its database pool would stay open, one per test, until PostgreSQL ran
/// out of connections.
#[test]
fn a_stopped_app_releases_its_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let weak = rt.block_on(async {
        let app = TestApp::spawn().await;
        let alice = app.register("alice").await;
        let mut rec = Recorder::start(&app.base, Some(&alice.token)).await;
        assert!(
            rec.wait_for("authenticated", |_| true, WAIT)
                .await
                .is_some()
        );
        app.state.downgrade()
    });
    drop(rt);
    assert!(
        weak.upgrade().is_none(),
        "the application state outlived its runtime"
    );
}
