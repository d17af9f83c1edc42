//! `TestApp::spawn()` starts the real application on a free port with a fresh database: a
//! temporary SQLite file, or a new schema in the PostgreSQL database named by
//! `TEST_DATABASE_URL`.

#![allow(dead_code)]

use etx_core::config::Config;
use etx_server::startup::Application;
use etx_server::state::AppState;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;

pub const PASSWORD: &str = "Str0ng-Passphrase";

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub client: Client,
    pub data_dir: PathBuf,
}

pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub token: String,
    pub refresh: String,
    pub csrf: String,
}

/// A connection URL giving this test its own empty database: a fresh schema in the PostgreSQL
/// database named by `TEST_DATABASE_URL`, or `None` for a SQLite file in the data dir.
pub async fn fresh_database_url() -> Option<String> {
    let base = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(
        etx_db::Db::isolated_schema_url(&base)
            .await
            .expect("TEST_DATABASE_URL must be reachable"),
    )
}

pub fn test_config(data_dir: PathBuf) -> Config {
    let mut c = Config::defaults();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.data_dir = data_dir;
    c.secret_key = Some("test-secret-key-that-is-long-enough-0123456789".into());
    // Cheap hashing keeps the suite fast; the production parameters are tested in etx-auth.
    c.auth.argon2_memory_kib = 64;
    c.auth.argon2_iterations = 1;
    c.database.max_connections = 8;
    // Tests fund users through one admin's adjustments; the second-admin approval has its own.
    c.admin.adjust_approval_from_usd = "1000000000000".into();
    // Market tests count the candles they record; the computed past has its own test.
    c.market.backfill = false;
    // Tests write and read back at once; the day cache and the statistics cache have their
    // own tests.
    c.market.day_cache_ms = 0;
    c.admin.stats_cache_ms = 0;
    c
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = std::env::temp_dir().join(format!("etx-test-{}", uuid::Uuid::now_v7()));
        let mut config = test_config(data_dir.clone());
        config.database_url = fresh_database_url().await;
        adjust(&mut config);
        Self::start(config).await
    }

    pub async fn start(config: Config) -> TestApp {
        let data_dir = config.data_dir.clone();
        let app = Application::build(config)
            .await
            .expect("application starts");
        let addr = app.local_addr();
        let state = app.state.clone();
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            base: format!("http://{addr}"),
            state,
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Response {
        self.send(reqwest::Method::POST, path, body, token).await
    }

    pub async fn put(&self, path: &str, body: Value, token: Option<&str>) -> Response {
        self.send(reqwest::Method::PUT, path, body, token).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut r = self.client.delete(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn send(
        &self,
        m: reqwest::Method,
        path: &str,
        body: Value,
        token: Option<&str>,
    ) -> Response {
        let mut r = self.client.request(m, self.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    pub async fn register(&self, username: &str) -> TestUser {
        let email = format!("{username}@example.com");
        let r = self
            .post(
                "/api/auth/register",
                json!({"username": username, "email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {username}");
        let b: Value = r.json().await.unwrap();
        TestUser {
            id: b["user"]["id"].as_str().unwrap().into(),
            username: username.into(),
            email,
            token: b["access_token"].as_str().unwrap().into(),
            refresh: b["refresh_token"].as_str().unwrap().into(),
            csrf: b["csrf_token"].as_str().unwrap().into(),
        }
    }

    pub async fn login(&self, login: &str, password: &str) -> Response {
        self.post(
            "/api/auth/login",
            json!({"login": login, "password": password}),
            None,
        )
        .await
    }

    /// A registered user given `role` directly in the database (as an operator would).
    pub async fn user_with_role(&self, username: &str, role: &str) -> TestUser {
        let u = self.register(username).await;
        self.state
            .db
            .execute(
                "UPDATE users SET role = $1, is_verified = TRUE WHERE id = $2",
                [role.into(), u.id.clone().into()],
            )
            .await
            .unwrap();
        u
    }

    pub async fn verify(&self, user: &TestUser) {
        self.state
            .db
            .execute(
                "UPDATE users SET is_verified = TRUE WHERE id = $1",
                [user.id.clone().into()],
            )
            .await
            .unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.state.db.scalar_i64(sql, vec![]).await.unwrap()
    }
}

pub async fn error_code(r: Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body,
    )
}

/// A small valid PNG of the given size.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::DynamicImage::new_rgb8(w, h);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A TOTP code computed by `oathtool` (an implementation not ours), `offset` steps of 30 s from
/// now.
pub fn totp(secret_b32: &str, offset: i64) -> String {
    let at = chrono::Utc::now().timestamp() + offset * 30;
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", secret_b32, "-N", &format!("@{at}")])
        .output()
        .expect("oathtool is installed (Debian package oathtool)");
    assert!(out.status.success(), "oathtool failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub use etx_core::mail::plain_text_part;

/// The value of `name=` in the first link to `path` in a mail body.
pub fn link_param(body: &str, path: &str, name: &str) -> String {
    let at = body
        .find(path)
        .unwrap_or_else(|| panic!("no {path} link in:\n{body}"));
    let query = body[at..].split_whitespace().next().unwrap();
    let key = format!("{name}=");
    let v = query.split(&key).nth(1).unwrap();
    v.split('&').next().unwrap().to_string()
}

/// The first run of exactly six digits on a line of its own words.
pub fn six_digit_code(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a 6-digit code in the mail")
        .to_string()
}

/// Raw messages in a directory of `.eml` files (the file transport) or a maildir's `new/`,
/// whose `To` is `to`, oldest first. Waits up to 10 s for at least `n`.
pub async fn wait_mail(dir: &std::path::Path, to: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let mut found = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut paths: Vec<_> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect();
            paths.sort_by_key(|p| {
                (
                    std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                    p.clone(),
                )
            });
            for p in paths {
                let raw = std::fs::read_to_string(&p).unwrap_or_default();
                let to_line = raw
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("to:"))
                    .unwrap_or("");
                if to_line.contains(to) {
                    found.push(raw);
                }
            }
        }
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "fewer than {n} mail(s) to {to} arrived in {}",
        dir.display()
    );
}

impl TestApp {
    /// Mail this app wrote with the default file transport.
    pub async fn mail_to(&self, to: &str, n: usize) -> Vec<String> {
        wait_mail(&self.data_dir.join("mail"), to, n).await
    }

    pub async fn exec(&self, sql: &str) {
        self.state.db.execute(sql, []).await.unwrap();
    }
}

/// Turns 2FA on for `u` with a code for the current time step; returns the base32 secret and
/// the backup codes.
pub async fn two_factor_on(app: &TestApp, u: &TestUser) -> (String, Vec<String>) {
    let s: Value = app
        .post("/api/auth/2fa/setup", json!({}), Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    let secret = s["secret"].as_str().unwrap().to_string();
    let r: Value = app
        .post(
            "/api/auth/2fa/verify",
            json!({"code": totp(&secret, 0)}),
            Some(&u.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let codes = r["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

/// Sends this app's mail through plain SMTP on `127.0.0.1:port`.
pub fn smtp_on(c: &mut Config, port: u16) {
    c.email.transport = etx_core::mail::MailTransport::Smtp;
    c.email.smtp_host = "127.0.0.1".into();
    c.email.smtp_port = port;
    c.email.smtp_tls = etx_core::mail::SmtpTls::None;
}

/// A local port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One feed price of `symbol`, in whole US dollars, ticked now.
pub fn set_price(app: &TestApp, symbol: &str, usd: i64) {
    set_price_cents(app, symbol, usd * 100);
}

pub fn set_price_cents(app: &TestApp, symbol: &str, cents: i64) {
    app.state.market.apply(&[etx_core::market::Tick {
        symbol: symbol.into(),
        price: cents * 1_000_000,
        at: etx_db::now_micros(),
    }]);
}

/// A server whose simulated feed stays put (prices move only by `set_price`), with order and
/// alert books that pick up other instances' additions every 50 ms.
pub async fn spawn_quiet_market() -> TestApp {
    TestApp::spawn_with(|c| {
        c.market.tick_ms = 60_000;
        c.trading.sync_ms = 50;
    })
    .await
}

/// Waits, when the clock is in the last 10 seconds of a minute, for the next minute: rate
/// limits count per calendar minute, so a test that fills one must not straddle two.
pub async fn away_from_a_minute_edge() {
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
}
