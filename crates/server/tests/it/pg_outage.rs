//! PostgreSQL restarting, then away for a while, under a load of transfers: a request that
//! cannot reach the database is answered 503 with `Retry-After`, never 500; readiness says so
//! while it lasts and recovers by itself; a client retrying with the same `Idempotency-Key` ends
//! with every transfer moved exactly once. The test runs its own PostgreSQL cluster in a
//! temporary directory, so stopping it disturbs nobody else.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of this test's own, on a free loopback port.
struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when running as root (PostgreSQL refuses root).
    as_postgres: bool,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|b| b.join("pg_ctl").exists())
                    .max()
            })
            .unwrap_or_default();
        let uid = Command::new("id").arg("-u").output().expect("id");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let port = crate::ports::free_ports(0);
        let dir = std::env::temp_dir().join(format!("etx-pg-{}", uuid::Uuid::now_v7()));
        let pg = PrivatePostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        let d = pg.dir.display().to_string();
        pg.run(
            "initdb",
            &["-D", &d, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.ctl(&["start"]);
        pg
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let tool = if path.exists() {
            path.display().to_string()
        } else {
            tool.to_string()
        };
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &tool]);
            c
        } else {
            Command::new(tool)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl <action>` on this cluster, waiting for it to finish; `start` and `restart`
    /// listen on the loopback port only, with the socket in the data directory.
    fn ctl(&self, action: &[&str]) {
        let d = self.dir.display().to_string();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={d} -c fsync=off",
            self.port
        );
        let mut args = vec!["-D", d.as_str(), "-w", "-o", opts.as_str()];
        args.extend_from_slice(action);
        if !action.contains(&"stop") {
            args.extend_from_slice(&["-l", "/dev/null"]);
        }
        self.run("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let d = self.dir.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &d, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every answer the load saw, by status, and each transfer's key with its id once acknowledged.
#[derive(Default)]
struct Seen {
    statuses: BTreeMap<u16, usize>,
    /// 503s without a usable `Retry-After`.
    without_retry_after: usize,
    acknowledged: Vec<(String, String)>,
}

/// Clients sending $1.00 from `from` to `to` in a loop until `stop`, each transfer retried
/// with its key after a 503 until it is acknowledged, and reading the history in between.
fn spawn_load(
    app: &TestApp,
    from: &TestUser,
    to: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|i| {
            let (base, token, to) = (app.base.clone(), from.token.clone(), to.to_string());
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("outage-{i}-{n}");
                    loop {
                        let r = client
                            .post(format!("{base}/api/transfers/p2p"))
                            .bearer_auth(&token)
                            .header("idempotency-key", &key)
                            .json(&json!({"recipient": to, "amount": "1.00", "currency": "USD"}))
                            .send()
                            .await
                            .expect("the server answers");
                        let status = r.status();
                        let retry = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        let again = {
                            let mut s = seen.lock().unwrap();
                            *s.statuses.entry(status.as_u16()).or_default() += 1;
                            if status == StatusCode::CREATED {
                                let id = body["transfer"]["id"].as_str().unwrap_or_default();
                                s.acknowledged.push((key.clone(), id.to_string()));
                            }
                            if status == StatusCode::SERVICE_UNAVAILABLE
                                && retry.is_none_or(|s| s < 1)
                            {
                                s.without_retry_after += 1;
                            }
                            // Anything but a 503 ends the attempt; the assertions report it.
                            status == StatusCode::SERVICE_UNAVAILABLE
                        };
                        if !again {
                            break;
                        }
                        // A real client waits Retry-After; a tenth of it keeps the test short.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    let r = client
                        .get(format!("{base}/api/transactions?limit=5"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("the server answers");
                    let status = r.status();
                    let retry = r.headers().contains_key("retry-after");
                    {
                        let mut s = seen.lock().unwrap();
                        *s.statuses.entry(status.as_u16()).or_default() += 1;
                        if status == StatusCode::SERVICE_UNAVAILABLE && !retry {
                            s.without_retry_after += 1;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let r = app.get("/health/ready", None).await;
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn wait_readiness(app: &TestApp, want: StatusCode, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (s, body) = readiness(app).await;
        if s == want {
            return body;
        }
        assert!(
            start.elapsed() < within,
            "readiness still {s} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_restarts_and_outages_answer_503_and_lose_nothing() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let app = TestApp::spawn_with(|c| {
        c.database_url = Some(url);
        c.database.acquire_timeout_ms = 1000;
        c.rate_limit.transactions_per_user_per_minute = 1_000_000;
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.verify(&alice).await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "50000.00").await;
    wait_readiness(&app, StatusCode::OK, Duration::from_secs(10)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let load = spawn_load(&app, &alice, "bob", 4, stop.clone(), seen.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A restart: every connection is cut (admin shutdown), the server is back at once.
    let p = Arc::new(pg);
    let ctl = p.clone();
    tokio::task::spawn_blocking(move || ctl.ctl(&["-m", "fast", "restart"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = seen.lock().unwrap().acknowledged.len();

    // An outage: the database is gone until it is started again.
    let ctl = p.clone();
    tokio::task::spawn_blocking(move || ctl.ctl(&["-m", "immediate", "stop"]))
        .await
        .unwrap();
    let body = wait_readiness(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let db = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "database")
        .unwrap();
    assert_eq!(db["ok"], false, "{body}");
    // Requests meanwhile are told to come back, not failed.
    let r = app.get("/api/transactions", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "2");
    let (_, code, _) = error_code(r).await;
    assert_eq!(code, "SERVICE_UNAVAILABLE");
    let ctl = p.clone();
    tokio::task::spawn_blocking(move || ctl.ctl(&["start"]))
        .await
        .unwrap();
    wait_readiness(&app, StatusCode::OK, Duration::from_secs(15)).await;
    // The load goes on after the outage.
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().acknowledged.len() < before_outage + 20 {
        if Instant::now() > deadline {
            let s = seen.lock().unwrap();
            panic!(
                "transfers did not resume: {} acknowledged, answers {:?}",
                s.acknowledged.len(),
                s.statuses
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.await.unwrap();
    }

    let s = std::mem::take(&mut *seen.lock().unwrap());
    let unexpected: Vec<_> = s
        .statuses
        .iter()
        .filter(|(c, _)| ![200, 201, 503].contains(*c))
        .collect();
    assert!(unexpected.is_empty(), "answers: {:?}", s.statuses);
    assert!(
        s.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the outage was seen: {:?}",
        s.statuses
    );
    assert_eq!(s.without_retry_after, 0, "every 503 says when to retry");
    // Every acknowledged transfer is there once, and nothing else moved.
    let acked = s.acknowledged.len() as i64;
    assert!(acked > 20, "{acked} transfers acknowledged");
    let mut ids: Vec<&str> = s.acknowledged.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as i64, acked, "one transfer per key");
    // Each acknowledged transfer left alice once (some wait for review, which is why bob's
    // side is not counted).
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM transactions WHERE user_id = '{}' AND direction = 'out'",
            alice.id
        ))
        .await,
        acked,
        "alice's history holds each acknowledged transfer once"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM idempotency_keys WHERE user_id = '{}' \
             AND idem_key LIKE 'outage-%'",
            alice.id
        ))
        .await,
        acked,
        "one stored answer per key"
    );
    assert_eq!(
        app.balances(&alice).await["USD"],
        format!("{}.00", 50_000 - acked),
        "alice paid exactly the acknowledged transfers"
    );
    app.ledger_ok().await;
}
