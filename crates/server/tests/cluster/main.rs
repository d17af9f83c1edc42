//! Scale-out through nginx: `scripts/cluster.sh` runs three instances of the `etx` binary on
//! PostgreSQL and Redis behind Debian's nginx, and these tests use it as an operator would.
//! `scripts/test.sh` runs them once, after the two database passes
//! (`cargo test -p etx-server --test cluster`); the script starts PostgreSQL and Redis when they
//! are down and installs nginx when it is missing. The tests take turns: each has a cluster of
//! its own, and two at once would only measure each other.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const ADMIN_PASSWORD: &str = "cluster-Admin-passphrase-7";
const PASSWORD: &str = "Str0ng-Passphrase";

/// One cluster at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    script: Child,
    /// A Redis of this cluster's own: rate-limit counts and pub/sub of one test do not leak
    /// into the next.
    redis: Child,
    dir: PathBuf,
    url: String,
    first_port: u16,
    client: Client,
}

/// A base port with it and the next `n` free.
fn free_ports(n: u16) -> u16 {
    loop {
        let seed = uuid::Uuid::new_v4().as_u128();
        let base = 20_000 + (seed % 30_000) as u16;
        let free = (0..=n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
}

impl Cluster {
    async fn start(settings: &[(&str, &str)]) -> Cluster {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let redis_port = free_ports(0);
        let redis = Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = free_ports(3);
        let dir = std::env::temp_dir().join(format!("etx-cluster-{}", uuid::Uuid::now_v7()));
        let db = format!(
            "etx_cluster_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/cluster.sh"))
            .env("PORT", port.to_string())
            .env("CLUSTER_DIR", &dir)
            .env("CLUSTER_DB", &db)
            .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
            .env("ETX_BIN", env!("CARGO_BIN_EXE_etx"))
            .env("ETX_BOOTSTRAP_ADMIN_EMAIL", "ops@example.com")
            .env("ETX_BOOTSTRAP_ADMIN_USERNAME", "ops")
            .env("ETX_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ETX__ADMIN__ADJUST_APPROVAL_FROM_USD", "1000000000")
            .env("ETX__AML__MAX_OPERATIONS_IN_WINDOW", "0")
            .env("ETX__AUTH__ARGON2_MEMORY_KIB", "64")
            .env("ETX__AUTH__ARGON2_ITERATIONS", "1")
            // The load reads its history several times a second.
            .env(
                "ETX__RATE_LIMIT__TRANSACTIONS_PER_USER_PER_MINUTE",
                "1000000",
            )
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in settings {
            cmd.env(k, v);
        }
        let mut script = cmd.spawn().expect("bash");
        let stdout = script.stdout.take().unwrap();
        let up = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.ok()?;
                if line.contains("cluster:") {
                    // Keep draining what the script prints, so it never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return Some(());
                }
            }
            None
        });
        let up = tokio::time::timeout(Duration::from_secs(180), up).await;
        assert!(
            matches!(up, Ok(Ok(Some(())))),
            "scripts/cluster.sh did not come up; see {}",
            dir.display()
        );
        Cluster {
            script,
            redis,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            first_port: port + 1,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn instance(&self, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.first_port + n - 1)
    }

    fn pid(&self, n: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("etx-{n}.pid")))
            .unwrap()
            .trim()
            .to_string()
    }

    fn signal(&self, n: u16, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid(n)])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} instance {n}");
    }

    async fn wait_exit(&self, n: u16) {
        let pid = self.pid(n);
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "instance {n} still running"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts instance `n` again and waits until it is ready.
    async fn restart(&self, n: u16) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
        let dir = self.dir.clone();
        let ok = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .arg(script)
                .arg("start-instance")
                .arg(dir)
                .arg(n.to_string())
                .status()
                .unwrap()
                .success()
        })
        .await
        .unwrap();
        assert!(ok, "instance {n} started again");
    }

    /// `etx ledger verify` on the cluster's database.
    fn ledger_verify(&self) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}/cluster.env' && ETX_DATA_DIR='{}/data-1' '{}' ledger verify",
                self.dir.display(),
                self.dir.display(),
                env!("CARGO_BIN_EXE_etx")
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn post(&self, base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self.client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, base: &str, path: &str, token: &str) -> u16 {
        self.client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// GET through nginx: status and JSON body.
    async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, base: &str, login: &str, password: &str) -> String {
        let (s, v) = self
            .post(
                base,
                "/api/auth/login",
                None,
                json!({"login": login, "password": password}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    /// A verified user funded with `usd` dollars; (id, token).
    async fn user(&self, admin: &str, name: &str, usd: &str) -> (String, String) {
        let (s, v) = self
            .post(
                &self.url,
                "/api/auth/register",
                None,
                json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["user"]["id"].as_str().unwrap().to_string();
        let r = self
            .client
            .put(format!("{}/api/users/{id}", self.url))
            .bearer_auth(admin)
            .json(&json!({"is_verified": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = self
            .client
            .post(format!("{}/api/admin/wallets/adjust", self.url))
            .bearer_auth(admin)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(
                &json!({"user_id": id, "currency": "USD", "amount": usd, "reason": "cluster test"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        // Fresh tokens: verification ended nothing, but be sure the token is the one in use.
        let token = self.login(&self.url, name, PASSWORD).await;
        (id, token)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.script.id().to_string()])
            .status();
        let _ = self.script.wait();
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

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
    let c = Cluster::start(&[("ETX__HTTP__DRAIN_DELAY_MS", "500")]).await;
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
