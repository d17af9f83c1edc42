//! The local cluster of `scripts/cluster.sh` driven from Rust: started with a Redis of its own,
//! its instances signalled and started again, its ledger verified. Shared by the scale-out tests
//! and the cluster benchmark (`benches/cluster.rs`).

#![allow(dead_code)]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../common/ports.rs"]
mod ports;
pub use ports::free_ports;

pub const ADMIN_PASSWORD: &str = "cluster-Admin-passphrase-7";
pub const PASSWORD: &str = "Str0ng-Passphrase";

pub struct Cluster {
    script: Child,
    /// A Redis of this cluster's own: rate-limit counts and pub/sub of one test do not leak
    /// into the next.
    redis: Child,
    pub dir: PathBuf,
    pub url: String,
    first_port: u16,
    pub client: Client,
}

impl Cluster {
    pub async fn start(settings: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(3, settings).await
    }

    /// `instances` instances; `settings` are environment variables for the script and the
    /// instances (they win over the cheap password hashing set here for tests).
    pub async fn start_with(instances: u16, settings: &[(&str, &str)]) -> Cluster {
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
        let port = free_ports(instances);
        let dir = std::env::temp_dir().join(format!("etx-cluster-{}", uuid::Uuid::now_v7()));
        let db = format!(
            "etx_cluster_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/cluster.sh"))
            .env("PORT", port.to_string())
            .env("INSTANCES", instances.to_string())
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

    pub fn instance(&self, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.first_port + n - 1)
    }

    pub fn pid(&self, n: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("etx-{n}.pid")))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn signal(&self, n: u16, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid(n)])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} instance {n}");
    }

    pub async fn wait_exit(&self, n: u16) {
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
    pub async fn restart(&self, n: u16) {
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
    pub fn ledger_verify(&self) {
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

    pub async fn post(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut r = self.client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, base: &str, path: &str, token: &str) -> u16 {
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
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
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

    pub async fn login(&self, base: &str, login: &str, password: &str) -> String {
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
    pub async fn user(&self, admin: &str, name: &str, usd: &str) -> (String, String) {
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
