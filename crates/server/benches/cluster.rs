//! Three instances behind nginx against one instance without it, in the same run: first
//! `/api/auth/me` alone (one instance on its own, the reference, then one of the three with
//! `REDIS_URL` set, each asked directly), then a mixed load (0.5 % sign-ins, 39.5 % `/me`, 25 %
//! the balance, 15 % P2P transfers, 20 % the history; one Socket.IO client per 10 users
//! listening), through nginx for the three. Prints requests per second and p50/p95/p99 per endpoint. See benches/README.md.
//!
//!   cargo bench -p etx-server --bench cluster
//!   USERS=200 CLIENTS=64 DURATION=20 cargo bench -p etx-server --bench cluster
//!
//! Needs what `scripts/cluster.sh` needs (PostgreSQL, nginx; each cluster gets a Redis of its
//! own), plus python-socketio for the listeners. Password hashing uses the production settings.

#[path = "../tests/cluster/harness.rs"]
mod harness;

use harness::{ADMIN_PASSWORD, Cluster, PASSWORD};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod support;

use support::{env_or, load_average};

const SETTINGS: [(&str, &str); 5] = [
    ("ETX__AUTH__ARGON2_MEMORY_KIB", "19456"),
    ("ETX__AUTH__ARGON2_ITERATIONS", "2"),
    ("ETX__RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE", "1000000"),
    ("ETX__RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE", "1000000"),
    ("ETX__LOG__LEVEL", "warn"),
];

struct User {
    name: String,
    token: String,
}

async fn users(c: &Cluster, n: u64) -> Vec<User> {
    let admin = c.login(&c.url, "ops", ADMIN_PASSWORD).await;
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("user{i}");
        let (_, token) = c.user(&admin, &name, "1000000.00").await;
        out.push(User { name, token });
    }
    out
}

/// Latencies in microseconds per endpoint, and the non-2xx answers.
#[derive(Default)]
struct Tally {
    by: BTreeMap<&'static str, Vec<u64>>,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (k, mut v) in o.by {
            self.by.entry(k).or_default().append(&mut v);
        }
        self.errors += o.errors;
    }

    fn total(&self) -> usize {
        self.by.values().map(Vec::len).sum()
    }
}

/// `clients` tasks asking `base` for `secs` seconds; `mixed` picks each request from the mix,
/// otherwise every request is `/me`.
async fn load(base: &str, users: &[User], clients: u64, secs: u64, mixed: bool) -> (Tally, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients as usize)
        .build()
        .unwrap();
    let tokens: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.name.clone(), u.token.clone()))
        .collect();
    let tokens = std::sync::Arc::new(tokens);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|t| {
            let (client, tokens, base) = (client.clone(), tokens.clone(), base.to_string());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                // A fixed sequence per task: the same mix in every run.
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let u = (next() % tokens.len() as u64) as usize;
                    let (name, token) = &tokens[u];
                    let pick = if mixed { next() % 1000 } else { 100 };
                    let t0 = Instant::now();
                    let (what, r) = match pick {
                        0..=4 => (
                            "login",
                            client
                                .post(format!("{base}/api/auth/login"))
                                .json(&json!({"login": name, "password": PASSWORD}))
                                .send()
                                .await,
                        ),
                        5..=399 => (
                            "me",
                            client
                                .get(format!("{base}/api/auth/me"))
                                .bearer_auth(token)
                                .send()
                                .await,
                        ),
                        400..=649 => (
                            "balance",
                            client
                                .get(format!("{base}/api/wallet/balance"))
                                .bearer_auth(token)
                                .send()
                                .await,
                        ),
                        650..=799 => {
                            let to = &tokens[(u + 1) % tokens.len()].0;
                            (
                                "transfer",
                                client
                                    .post(format!("{base}/api/transfers/p2p"))
                                    .bearer_auth(token)
                                    .header("idempotency-key", format!("b-{t}-{n}-{}", start.elapsed().as_nanos()))
                                    .json(&json!({"recipient": to, "amount": "1.00", "currency": "USD"}))
                                    .send()
                                    .await,
                            )
                        }
                        _ => (
                            "history",
                            client
                                .get(format!("{base}/api/transactions?limit=20"))
                                .bearer_auth(token)
                                .send()
                                .await,
                        ),
                    };
                    let ok = match r {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            let _ = r.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    };
                    tally
                        .by
                        .entry(what)
                        .or_default()
                        .push(t0.elapsed().as_micros() as u64);
                    if !ok {
                        tally.errors += 1;
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    (all, elapsed)
}

fn pct(v: &mut [u64], q: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn report(label: &str, mut t: Tally, secs: f64) -> f64 {
    let rate = t.total() as f64 / secs;
    println!(
        "{label}: {:.0} req/s over {secs:.1} s, {} errors",
        rate, t.errors
    );
    for (k, v) in t.by.iter_mut() {
        let n = v.len();
        println!(
            "  {k:<9} {:>7} requests  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
            n,
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 0.99)
        );
    }
    rate
}

/// One python-socketio client per 10 users, connected to `base` and listening.
fn listeners(base: &str, users: &[User]) -> Vec<std::process::Child> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sio_recorder.py");
    users
        .iter()
        .step_by(10)
        .map(|u| {
            std::process::Command::new("python3")
                .arg(script)
                .arg(base)
                .arg(&u.token)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("python3 with python-socketio[client]")
        })
        .collect()
}

async fn run(
    label: &str,
    c: &Cluster,
    me_base: &str,
    mixed_base: &str,
    n: u64,
    clients: u64,
    secs: u64,
) -> (f64, f64) {
    let users = users(c, n).await;
    let mut socket_clients = listeners(mixed_base, &users);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("{label}: load average {}", load_average());
    let (me, s) = load(me_base, &users, clients, secs, false).await;
    let me_rate = report(&format!("{label}, /api/auth/me only ({me_base})"), me, s);
    let (mixed, s) = load(mixed_base, &users, clients, secs, true).await;
    let mixed_rate = report(&format!("{label}, mixed ({mixed_base})"), mixed, s);
    for ch in &mut socket_clients {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    (me_rate, mixed_rate)
}

#[tokio::main]
async fn main() {
    let n: u64 = env_or("USERS", 100);
    let clients: u64 = env_or("CLIENTS", 32);
    let secs: u64 = env_or("DURATION", 15);
    println!(
        "{n} users, {clients} clients, {secs} s per load; load average {}",
        load_average()
    );

    let mut settings = SETTINGS.to_vec();
    settings.push(("NO_REDIS", "1"));
    let single = Cluster::start_with(1, &settings).await;
    let one = single.instance(1);
    let (me_one, mixed_one) = run(
        "one instance, no nginx, no Redis",
        &single,
        &one,
        &one,
        n,
        clients,
        secs,
    )
    .await;
    drop(single);

    let three = Cluster::start_with(3, &SETTINGS).await;
    let first = three.instance(1);
    let url = three.url.clone();
    let (me_each, mixed_three) = run(
        "three instances behind nginx, Redis",
        &three,
        &first,
        &url,
        n,
        clients,
        secs,
    )
    .await;
    three.ledger_verify();
    drop(three);

    println!(
        "/api/auth/me on one instance of three (REDIS_URL set) against one instance alone: {:.0} / {:.0} req/s = {:.2} x (target >= 0.7 x)",
        me_each,
        me_one,
        me_each / me_one
    );
    println!(
        "mixed load: three behind nginx {:.0} req/s, one alone {:.0} req/s = {:.2} x",
        mixed_three,
        mixed_one,
        mixed_three / mixed_one
    );
}
