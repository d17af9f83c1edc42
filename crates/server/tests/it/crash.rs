//! Crash safety: the real binary is killed with SIGKILL in the middle of a transfer load; after
//! a restart the ledger verifies and every transfer the clients saw acknowledged is there.

use crate::support::fresh_database_url;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "Crash-Admin-Passw0rd";

fn start(data_dir: &std::path::Path, db_url: Option<&str>, port: u16) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etx"));
    c.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("ETX_DATA_DIR", data_dir)
        .env("ETX__AUTH__ARGON2_MEMORY_KIB", "64")
        .env("ETX__AUTH__ARGON2_ITERATIONS", "1")
        .env("ETX__RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE", "1000")
        .env("ETX__RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE", "1000")
        .env("ETX_BOOTSTRAP_ADMIN_EMAIL", "crash-admin@example.com")
        .env("ETX_BOOTSTRAP_ADMIN_USERNAME", "crash_admin")
        .env("ETX_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        // A transfer load: the velocity review rule would hold most of it.
        .env("ETX__AML__MAX_OPERATIONS_IN_WINDOW", "0")
        // One admin funds the users.
        .env("ETX__ADMIN__ADJUST_APPROVAL_FROM_USD", "1000000000")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match db_url {
        Some(u) => c.env("DATABASE_URL", u),
        None => c.env_remove("DATABASE_URL"),
    };
    c.spawn().unwrap()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became ready");
}

async fn token(client: &reqwest::Client, base: &str, login: &str, password: &str) -> String {
    let r: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_no_acknowledged_transfer() {
    let dir = std::env::temp_dir().join(format!("etx-crash-{}", uuid::Uuid::now_v7()));
    let db_url = fresh_database_url().await;
    let port = crate::ports::free_ports(0);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = start(&dir, db_url.as_deref(), port);
    wait_ready(&client, &base).await;
    let admin = token(&client, &base, "crash_admin", ADMIN_PASSWORD).await;
    let mut users = Vec::new();
    for name in ["crash_a", "crash_b", "crash_c"] {
        let r: Value = client
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": "Str0ng-Passphrase"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["user"]["id"].as_str().unwrap().to_string();
        let r = client
            .put(format!("{base}/api/users/{id}"))
            .bearer_auth(&admin)
            .json(&json!({"is_verified": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = client
            .post(format!("{base}/api/admin/wallets/adjust"))
            .bearer_auth(&admin)
            .header("idempotency-key", format!("fund-{name}"))
            .json(&json!({"user_id": id, "currency": "USD", "amount": "1000", "reason": "crash test funds"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        users.push((
            name.to_string(),
            token(&client, &base, name, "Str0ng-Passphrase").await,
        ));
    }
    let users = Arc::new(users);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let (client, base, users, stop) =
            (client.clone(), base.clone(), users.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let from = (t + i) % 3;
                let to = (from + 1) % 3;
                i += 1;
                let r = client
                    .post(format!("{base}/api/transfers/p2p"))
                    .bearer_auth(&users[from].1)
                    .header("idempotency-key", format!("c{t}-{i}"))
                    .json(&json!({"recipient": users[to].0, "amount": "1.00", "currency": "USD"}))
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status() == StatusCode::CREATED
                    && let Ok(b) = r.json::<Value>().await
                {
                    acked.push(b["transfer"]["entry_id"].as_str().unwrap().to_string());
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 10,
        "the load was running when the server died ({} acknowledged)",
        acked.len()
    );
    // The operator's check after the crash.
    let mut verify = Command::new(env!("CARGO_BIN_EXE_etx"));
    verify.args(["ledger", "verify"]).env("ETX_DATA_DIR", &dir);
    match &db_url {
        Some(u) => verify.env("DATABASE_URL", u),
        None => verify.env_remove("DATABASE_URL"),
    };
    let out = verify.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Restart and look for every acknowledged entry.
    let mut child = start(&dir, db_url.as_deref(), port);
    wait_ready(&client, &base).await;
    let db = etx_db::Db::connect(
        &db_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("etx.db").display())),
        2,
    )
    .await
    .unwrap();
    for e in &acked {
        let n = db
            .scalar_i64(
                "SELECT COUNT(*) FROM journal_entries WHERE id = $1",
                vec![e.clone().into()],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "acknowledged entry {e} is missing after the crash");
    }
    let total = db
        .scalar_i64("SELECT CAST(SUM(balance) AS BIGINT) FROM ledger_accounts WHERE kind = 'wallet' AND asset = 'USD'", vec![])
        .await
        .unwrap();
    assert_eq!(total, 3 * 100_000);
    child.kill().unwrap();
    child.wait().unwrap();
}
