//! Price-alert evaluation: 100,000 active alerts (ALERTS) over the five priced assets, 40 %
//! above a level, 40 % below one, 20 % moves within a window; then TICKS price updates of all
//! five assets (a random walk near the start prices, so a few alerts trigger now and then).
//! Prints the evaluation time per tick (median, p99, max) and the memory the index takes.
//! Only the index is measured: firing (one conditional update each) is the database's part.
//!
//!   cargo bench -p etx-core --bench alerts

use std::time::Instant;

use etx_core::alerts::Alerts;
use etx_db::alerts::AlertRow;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() {
    let n = env_or("ALERTS", 100_000);
    let ticks = env_or("TICKS", 2_000);
    const ONE: i64 = 100_000_000;
    let assets = [
        ("BTC", 65_000 * ONE),
        ("ETH", 3_200 * ONE),
        ("SOL", 150 * ONE),
        ("USDT", ONE),
        ("USDC", ONE),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let before = rss_kib();
    let alerts = Alerts::default();
    let now = etx_db::now_micros();
    for i in 0..n {
        let (asset, price) = assets[i % assets.len()];
        // Levels 5-30 % away from the start price, so a random walk crosses only a few.
        let away = price / 100 * (5 + rng.below(26) as i64);
        let (kind, level, bps, window) = match i % 10 {
            0..=3 => ("above", Some(price + away), None, None),
            4..=7 => ("below", Some(price - away), None, None),
            _ => (
                "move",
                None,
                Some(500 + rng.below(2_000) as i64),
                Some(60 * (1 + rng.below(1_440) as i64)),
            ),
        };
        alerts.insert(&AlertRow {
            id: format!("{i:032x}"),
            user_id: format!("user-{}", i % 10_000),
            asset: asset.to_string(),
            kind: kind.to_string(),
            price: level,
            move_bps: bps,
            window_secs: window,
            repeats: i % 2 == 0,
            email: false,
            cooldown_secs: 3_600,
            active: true,
            fired_at: None,
            fired_count: 0,
            created_at: now,
            updated_at: now,
        });
    }
    let after = rss_kib();
    let mut prices: Vec<(String, i64, i64)> = assets
        .iter()
        .map(|(a, p)| (a.to_string(), *p, now))
        .collect();
    let mut times = Vec::with_capacity(ticks);
    let mut triggered = 0usize;
    for t in 0..ticks {
        let at = now + (t as i64) * 1_000_000;
        for (_, p, when) in prices.iter_mut() {
            // ±0.2 % per tick.
            let step = *p / 500;
            *p += if rng.below(2) == 0 { step } else { -step };
            *when = at;
        }
        let start = Instant::now();
        let fired = alerts.evaluate(&prices, at);
        times.push(start.elapsed());
        triggered += fired.len();
        // As firing would: one-offs leave the index (repeating ones are snoozed by `fire`).
        for id in fired {
            alerts.remove(&id);
        }
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "{n} alerts: index {:.1} MiB (RSS {:.1} → {:.1} MiB); {ticks} ticks of 5 prices: \
         median {:.3} ms, p99 {:.3} ms, max {:.3} ms per tick; {triggered} triggered",
        (after.saturating_sub(before)) as f64 / 1024.0,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        ms(times[ticks / 2]),
        ms(times[ticks * 99 / 100]),
        ms(times[ticks - 1]),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
