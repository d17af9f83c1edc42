//! Resting-orders benchmark: ORDERS open limit orders (default 100,000) across BTC/USD and
//! ETH/USD held by USERS users (1,000), loaded by the matcher at start; then one BTC tick
//! crosses CROSSED of them (10,000). Measures the time from the tick until every crossed order
//! is filled in the database, then checks that none filled twice, that the rest are still open
//! and that the ledger verifies. See benches/README.md.
//!
//!   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/etx_bench_resting \
//!     cargo bench -p etx-server --bench resting
//!
//! The database must exist and be empty. The orders and their holds are written with SQL (one
//! balanced hold entry per user and asset, funded from equity), so the set-up takes seconds.

use std::time::{Duration, Instant};

use etx_core::config::Config;
use etx_core::market::{PriceFeed, Tick};
use etx_server::startup::Application;

const PRICE_ONE: i64 = 100_000_000;

mod support;

// The fills allocate in bursts on several threads; the shipped allocator and its settings are
// part of what is measured.
#[path = "../src/allocator.rs"]
mod allocator;

use support::{env_or, load_average};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/etx_bench_resting".to_string());
    let orders = env_or::<i64>("ORDERS", 100_000);
    let crossed = env_or::<i64>("CROSSED", 10_000);
    let users = env_or::<i64>("USERS", 1_000);
    assert!(
        crossed <= orders / 2,
        "CROSSED must be at most half of ORDERS"
    );

    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse()?;
    config.data_dir =
        std::env::temp_dir().join(format!("etx-bench-resting-{}", std::process::id()));
    config.database_url = Some(url.clone());
    config.secret_key = Some("bench-secret-key-that-is-long-enough-0123456789".into());
    config.database.max_connections = 8;
    // No feed moves prices but the bench: a provider that is never reached, a feed never stale.
    config.market.provider = PriceFeed::Coinbase;
    config.market.coinbase_url = "ws://127.0.0.1:9/".into();
    config.market.stale_after_secs = 86_400;
    if let Ok(v) = std::env::var("MATCH_BATCH") {
        config.trading.match_batch = v.parse()?;
    }
    if let Ok(v) = std::env::var("MATCH_GROUPS") {
        config.trading.match_groups = v.parse()?;
    }
    println!(
        "[trading] match_batch = {}, match_groups = {}",
        config.trading.match_batch, config.trading.match_groups
    );
    let app = Application::build(config).await?;
    let state = app.state.clone();
    let db = state.db.clone();
    state.market.apply(&[Tick {
        symbol: "BTC".into(),
        price: 60_000 * PRICE_ONE,
        at: etx_db::now_micros(),
    }]);

    // Half the orders are BTC/USD limit buys of 0.001 BTC from 59,000.00 down in steps of
    // 0.18 (below the ask of 60,150); half ETH/USD limit sells of 0.01 ETH from 3,300 up.
    let started = Instant::now();
    let half = orders / 2;
    let now = etx_db::now_micros();
    db.execute(
        &format!(
            "INSERT INTO users (id, username, username_lower, email, email_lower, password_hash, \
             created_at, updated_at) SELECT 'bench-' || i, 'rb' || i, 'rb' || i, \
             'rb' || i || '@example.com', 'rb' || i || '@example.com', 'x', {now}, {now} \
             FROM generate_series(1, {users}) AS i"
        ),
        [],
    )
    .await?;
    db.execute(
        &format!(
            "INSERT INTO orders (id, user_id, base_asset, quote_asset, side, type, status, amount, \
             price, value, fee, total, created_at, updated_at, trigger_price, held, held_asset) \
             SELECT gen_random_uuid()::text, 'bench-' || (1 + k % {users}), 'BTC', 'USD', 'buy', \
             'limit', 'open', 100000, p, v, GREATEST((v * 10 + 9999) / 10000, 1), \
             v + GREATEST((v * 10 + 9999) / 10000, 1), {now}, {now}, p, \
             v + GREATEST((v * 10 + 9999) / 10000, 1), 'USD' \
             FROM (SELECT k, 5900000000000 - k * 18000000 AS p, \
                   (5900000000000 - k * 18000000 + 999999999) / 1000000000 AS v \
                   FROM generate_series(CAST(0 AS BIGINT), {half} - 1) AS k) AS o"
        ),
        [],
    )
    .await?;
    db.execute(
        &format!(
            "INSERT INTO orders (id, user_id, base_asset, quote_asset, side, type, status, amount, \
             price, value, fee, total, created_at, updated_at, trigger_price, held, held_asset) \
             SELECT gen_random_uuid()::text, 'bench-' || (1 + k % {users}), 'ETH', 'USD', 'sell', \
             'limit', 'open', 1000000, p, v, GREATEST((v * 10 + 9999) / 10000, 1), \
             v - GREATEST((v * 10 + 9999) / 10000, 1), {now}, {now}, p, 1000000, 'ETH' \
             FROM (SELECT k, 330000000000 + k * 1000000 AS p, \
                   (330000000000 + k * 1000000) / 10000000000 AS v \
                   FROM generate_series(CAST(0 AS BIGINT), {} - 1) AS k) AS o",
            orders - half
        ),
        [],
    )
    .await?;
    // The holds: per user and asset, one entry from equity into the orders hold.
    for asset in ["USD", "ETH"] {
        db.execute(
            &format!(
                "INSERT INTO ledger_accounts (id, owner_id, kind, asset, balance, allow_negative, \
                 created_at, updated_at) SELECT 'orders_hold:' || user_id || ':{asset}', user_id, \
                 'orders_hold', '{asset}', SUM(held), FALSE, {now}, {now} FROM orders \
                 WHERE held_asset = '{asset}' GROUP BY user_id"
            ),
            [],
        )
        .await?;
        db.execute(
            &format!(
                "INSERT INTO ledger_accounts (id, owner_id, kind, asset, balance, allow_negative, \
                 created_at, updated_at) SELECT 'equity::{asset}', '', 'equity', '{asset}', \
                 -SUM(held), TRUE, {now}, {now} FROM orders WHERE held_asset = '{asset}'"
            ),
            [],
        )
        .await?;
        db.execute(
            &format!(
                "INSERT INTO journal_entries (id, kind, memo, created_by, created_at) \
                 SELECT 'bench-hold-{asset}-' || owner_id, 'order_hold', 'bench holds', NULL, {now} \
                 FROM ledger_accounts WHERE kind = 'orders_hold' AND asset = '{asset}'"
            ),
            [],
        )
        .await?;
        db.execute(
            &format!(
                "INSERT INTO postings (id, entry_id, account_id, asset, amount, created_at) \
                 SELECT gen_random_uuid()::text, 'bench-hold-{asset}-' || owner_id, id, '{asset}', \
                 balance, {now} FROM ledger_accounts WHERE kind = 'orders_hold' AND asset = '{asset}' \
                 UNION ALL SELECT gen_random_uuid()::text, 'bench-hold-{asset}-' || owner_id, \
                 'equity::{asset}', '{asset}', -balance, {now} FROM ledger_accounts \
                 WHERE kind = 'orders_hold' AND asset = '{asset}'"
            ),
            [],
        )
        .await?;
    }
    db.execute("ANALYZE", []).await?;
    println!(
        "set-up: {orders} open orders of {users} users written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The matcher loads the book at start.
    let started = Instant::now();
    tokio::spawn(app.run_until(std::future::pending()));
    while state.book.lock().len() < usize::try_from(orders)? {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the book did not load"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "book loaded: {orders} orders in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The tick: an ask of 59,000 − (CROSSED − 1) × 0.18 crosses exactly CROSSED buys.
    let ask = 5_900_000_000_000 - (crossed - 1) * 18_000_000;
    let spread = i64::from(state.config.trading.spread_bps);
    let mut mid = ask * 10_000 / (10_000 + spread);
    let (_, a) = etx_core::trading::bid_ask(&state.config.trading, i128::from(mid), 100_000_000);
    if a > i128::from(ask) {
        mid -= 1;
    }
    let (_, a) = etx_core::trading::bid_ask(&state.config.trading, i128::from(mid), 100_000_000);
    let expected = db
        .scalar_i64(
            "SELECT COUNT(*) FROM orders WHERE base_asset = 'BTC' AND status = 'open' \
             AND trigger_price >= $1",
            vec![i64::try_from(a)?.into()],
        )
        .await?;
    println!(
        "load average before the tick: {}; the tick crosses {expected} orders",
        load_average()
    );
    let started = Instant::now();
    let tick_at = etx_db::now_micros();
    state.market.apply(&[Tick {
        symbol: "BTC".into(),
        price: mid,
        at: tick_at,
    }]);
    // Committed fills, counted by their history rows (two each, and the only history here),
    // every 10 ms: a count over the orders table would scan it and slow down what is measured.
    loop {
        let filled = db
            .scalar_i64(
                "SELECT COUNT(*) / 2 FROM transactions WHERE created_at >= $1",
                vec![tick_at.into()],
            )
            .await?;
        if filled >= expected {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {filled} of {expected} filled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let filled = db
        .scalar_i64(
            "SELECT COUNT(*) FROM orders WHERE status = 'filled'",
            vec![],
        )
        .await?;
    let entries = db
        .scalar_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE kind = 'trade'",
            vec![],
        )
        .await?;
    // Each user's BTC is exactly 0.001 per filled order of theirs: nothing filled twice.
    let wrong = db
        .scalar_i64(
            "SELECT COUNT(*) FROM (SELECT o.user_id, COUNT(*) * 100000 AS want, \
             COALESCE(MAX(a.balance), 0) AS got FROM orders o LEFT JOIN ledger_accounts a \
             ON a.id = 'wallet:' || o.user_id || ':BTC' WHERE o.status = 'filled' \
             GROUP BY o.user_id) x WHERE want <> got",
            vec![],
        )
        .await?;
    let open = db
        .scalar_i64("SELECT COUNT(*) FROM orders WHERE status = 'open'", vec![])
        .await?;
    let problems = db.verify_ledger().await?;
    println!(
        "filled {filled} orders (in {entries} journal entries) in {:.3} s = {:.0} orders/s; \
         {open} still open; load average {}",
        took.as_secs_f64(),
        filled as f64 / took.as_secs_f64(),
        load_average()
    );
    anyhow::ensure!(filled == expected, "filled {filled}, expected {expected}");
    anyhow::ensure!(wrong == 0, "{wrong} users' BTC differs from their fills");
    anyhow::ensure!(open == orders - expected, "{open} open");
    anyhow::ensure!(problems.is_empty(), "ledger: {problems:?}");
    println!("ledger verified: no order filled twice, every entry balanced");
    let _ = std::fs::remove_dir_all(&state.config.data_dir);
    std::process::exit(0);
}
