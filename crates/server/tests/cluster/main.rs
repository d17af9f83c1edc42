//! Scale-out through nginx: `scripts/cluster.sh` runs three instances of the `etx` binary on
//! PostgreSQL and Redis behind Debian's nginx, and these tests use it as an operator would.
//! `scripts/test.sh` runs them once, after the two database passes
//! (`cargo test -p etx-server --test cluster`); the script starts PostgreSQL and Redis when they
//! are down and installs nginx when it is missing. The tests take turns: each has a cluster of
//! its own, and two at once would only measure each other.

mod harness;

use harness::{ADMIN_PASSWORD, Cluster, PASSWORD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// One cluster at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One answer of the load: what, its status, and the transfer's id when acknowledged.
type Answer = (&'static str, u16, Option<String>);

/// Clients through nginx until `stop`: transfers of $1.00 from `from` to `to` (each key retried
/// after a 503 until answered otherwise), `/me`, the balance and the history.
fn spawn_load(
    c: &Cluster,
    from: &str,
    to: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Answer>>> {
    (0..clients)
        .map(|i| {
            let (url, token, to, stop) = (
                c.url.clone(),
                from.to_string(),
                to.to_string(),
                stop.clone(),
            );
            let client = c.client.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("load-{i}-{n}-{}", uuid::Uuid::now_v7());
                    loop {
                        let r = client
                            .post(format!("{url}/api/transfers/p2p"))
                            .bearer_auth(&token)
                            .header("idempotency-key", &key)
                            .json(&json!({"recipient": to, "amount": "1.00", "currency": "USD"}))
                            .send()
                            .await;
                        let (s, v) = match r {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                (s, r.json::<Value>().await.unwrap_or(Value::Null))
                            }
                            Err(_) => (0, Value::Null),
                        };
                        if s == 503 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        let id = v["transfer"]["id"].as_str().map(str::to_string);
                        seen.push(("transfer", s, id));
                        break;
                    }
                    for (what, path) in [
                        ("me", "/api/auth/me"),
                        ("balance", "/api/wallet/balance"),
                        ("history", "/api/transactions?limit=5"),
                    ] {
                        let s = match client
                            .get(format!("{url}{path}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                        {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        seen.push((what, s, None));
                    }
                }
                seen
            })
        })
        .collect()
}

async fn collect(load: Vec<tokio::task::JoinHandle<Vec<Answer>>>) -> Vec<Answer> {
    let mut all = Vec::new();
    for h in load {
        all.extend(h.await.unwrap());
    }
    all
}

fn failures(answers: &[Answer]) -> Vec<&Answer> {
    answers
        .iter()
        .filter(|(_, s, _)| !(200..300).contains(s))
        .collect()
}

async fn alice_and_bob(c: &Cluster) -> (String, (String, String), (String, String)) {
    let admin = c.login(&c.url, "ops", ADMIN_PASSWORD).await;
    let alice = c.user(&admin, "alice", "100000.00").await;
    let bob = c.user(&admin, "bob", "10.00").await;
    (admin, alice, bob)
}

#[tokio::test]
async fn a_session_from_one_instance_works_on_all_and_a_logout_ends_it_on_all() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(&[]).await;
    let admin = c.login(&c.url, "ops", ADMIN_PASSWORD).await;
    let _ = c.user(&admin, "carol", "1.00").await;
    let token = c.login(&c.instance(1), "carol", PASSWORD).await;
    for n in 1..=3 {
        // Twice each: the second answer may come from the instance's session cache.
        for _ in 0..2 {
            assert_eq!(c.get(&c.instance(n), "/api/auth/me", &token).await, 200);
        }
    }
    assert_eq!(c.get(&c.url, "/api/auth/me", &token).await, 200);
    let (s, _) = c
        .post(&c.instance(2), "/api/auth/logout", Some(&token), json!({}))
        .await;
    assert!((200..300).contains(&s), "{s}");
    for n in [1, 3, 2] {
        assert_eq!(
            c.get(&c.instance(n), "/api/auth/me", &token).await,
            401,
            "instance {n} still accepts the session"
        );
    }
    assert_eq!(c.get(&c.url, "/api/auth/me", &token).await, 401);
}

/// A stock Socket.IO client (python-socketio) printing each event with its arrival time.
struct Listener {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Listener {
    async fn start(base: &str, token: &str) -> Listener {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sio_recorder.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(base)
            .arg(token)
            .env("ETX_RECONNECT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with python-socketio[client]");
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
        let mut l = Listener { child, lines };
        assert!(l.next("ready", Duration::from_secs(20)).await.is_some());
        l
    }

    async fn next(&mut self, event: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()??;
            if v["event"] == event {
                return Some(v);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn a_transfer_through_one_instance_reaches_a_socket_on_another_quickly() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(&[]).await;
    let (_, (_, alice), (_, bob)) = alice_and_bob(&c).await;
    let mut listener = Listener::start(&c.instance(2), &bob).await;
    let mut delays = Vec::new();
    for i in 0..1000 {
        let sent = unix_now();
        let r = c
            .client
            .post(format!("{}/api/transfers/p2p", c.instance(1)))
            .bearer_auth(&alice)
            .header("idempotency-key", format!("sio-{i}"))
            .json(&json!({"recipient": "bob", "amount": "1.00", "currency": "USD", "note": format!("sio-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let note = format!("sio-{i}");
        loop {
            let e = listener
                .next("transaction_update", Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("transfer {i} never reached bob's socket"));
            if e["data"]["note"] == note.as_str() {
                delays.push(e["at"].as_f64().unwrap() - sent);
                break;
            }
        }
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)] * 1000.0;
    eprintln!(
        "Socket.IO delivery across instances, 1,000 transfers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(p(0.99) <= 100.0, "p99 {:.1} ms", p(0.99));
}

#[tokio::test]
async fn killing_an_instance_under_load_loses_no_acknowledged_transfer() {
    let _turn = TURN.lock().await;
    let c = Cluster::start(&[("ETX__RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE", "40")]).await;
    let (_, (alice_id, alice), (_, bob)) = alice_and_bob(&c).await;
    // Rate limits are counted in Redis, whichever instance answers.
    let mut listener = Listener::start(&c.instance(3), &bob).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&c, &alice, "bob", 6, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.signal(3, "KILL");
    c.wait_exit(3).await;
    // Bob's client finds a live instance by itself.
    c.restart(3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = collect(load).await;
    let acked: Vec<&String> = answers
        .iter()
        .filter(|(w, s, _)| *w == "transfer" && *s == 201)
        .filter_map(|(_, _, id)| id.as_ref())
        .collect();
    assert!(acked.len() > 50, "{} transfers acknowledged", acked.len());
    // Every acknowledged transfer is in alice's history, and her balance is what her history
    // says moved.
    for id in &acked {
        let (s, _) = c.get_json(&format!("/api/transactions/{id}"), &alice).await;
        assert_eq!(s, 200, "acknowledged transfer {id} is missing");
    }
    let (_, history) = c.get_json("/api/transactions?limit=1", &alice).await;
    let total = history["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{history}"));
    let (_, balance) = c.get_json("/api/wallet/balance", &alice).await;
    let usd = balance["wallet"]["balances"]["USD"].as_str().unwrap();
    let moved = (total - 1) as usize;
    assert_eq!(usd, format!("{}.00", 100_000 - moved), "alice {alice_id}");
    assert!(
        moved >= acked.len(),
        "{moved} moved, {} acknowledged",
        acked.len()
    );
    c.ledger_verify();
    // The client of the killed instance reconnected.
    assert!(
        listener
            .next("reconnected", Duration::from_secs(15))
            .await
            .is_some(),
        "bob's socket did not reconnect"
    );
    // Shared rate limits: 40 sign-ins a minute from this address over every instance.
    let mut refused = 0;
    for i in 0..45u16 {
        let base = c.instance(1 + i % 3);
        let (s, _) = c
            .post(
                &base,
                "/api/auth/login",
                None,
                json!({"login": "nobody", "password": "wrong-password"}),
            )
            .await;
        if s == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 5, "{refused} refused of 45 over three instances");
}

#[tokio::test]
async fn a_rolling_restart_under_load_fails_no_request() {
    let _turn = TURN.lock().await;
    // The cluster's own drain delay (2.5 s) outlasts nginx's idle upstream connections (2 s).
    let c = Cluster::start(&[]).await;
    let (_, (_, alice), _) = alice_and_bob(&c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(&c, &alice, "bob", 6, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in 1..=3 {
        c.signal(n, "TERM");
        c.wait_exit(n).await;
        c.restart(n).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let answers = collect(load).await;
    let failed = failures(&answers);
    eprintln!(
        "rolling restart: {} requests, {} failed",
        answers.len(),
        failed.len()
    );
    assert!(answers.len() > 100, "{} requests", answers.len());
    assert!(
        failed.is_empty(),
        "failed: {:?}",
        &failed[..failed.len().min(10)]
    );
    c.ledger_verify();
}
