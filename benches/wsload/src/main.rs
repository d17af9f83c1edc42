//! Load client for the server's `GET /ws/prices` stream (see benches/ws.sh and benches/README.md).
//!
//! Opens `--clients` WebSocket connections at `--ramp-per-sec`, retrying failed connects, waits
//! until every client is connected or has given up, then for `--measure-secs` records for every
//! `price_update` whose `timestamp` falls in the window the delivery latency: local receive time
//! minus the server's publish timestamp (same machine, same clock). After a grace period for late
//! deliveries it prints one JSON line and exits, without waiting for anything else; a watchdog
//! ends the process if the run overstays its bounded length.
//!
//! Latencies go into a log-linear histogram of atomic counters (1 µs resolution below 256 µs,
//! then 128 sub-buckets per power of two: < 0.4 % error at the bucket midpoint), 35 KiB whatever
//! the sample count.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::exit;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

const USAGE: &str = "usage: wsload --url ws://127.0.0.1:PORT/ws/prices --clients N --ramp-per-sec R \
--measure-secs S [--threads 2] [--retries 5] [--connect-timeout-secs 10] [--settle-secs 2] \
[--grace-secs 3] [--source-ips 1]";

#[derive(Clone)]
struct Args {
    url: String,
    clients: usize,
    ramp_per_sec: f64,
    measure_secs: u64,
    threads: usize,
    retries: u32,
    connect_timeout: Duration,
    settle: Duration,
    grace: Duration,
    /// Spread the clients' source addresses over 127.0.0.1..=127.0.0.N (more than ~28k
    /// connections to one port need more than one source address).
    source_ips: u8,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        clients: 0,
        ramp_per_sec: 0.0,
        measure_secs: 0,
        threads: 2,
        retries: 5,
        connect_timeout: Duration::from_secs(10),
        settle: Duration::from_secs(2),
        grace: Duration::from_secs(3),
        source_ips: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--clients" => a.clients = value.parse().map_err(|_| bad())?,
            "--ramp-per-sec" => a.ramp_per_sec = value.parse().map_err(|_| bad())?,
            "--measure-secs" => a.measure_secs = value.parse().map_err(|_| bad())?,
            "--threads" => a.threads = value.parse().map_err(|_| bad())?,
            "--retries" => a.retries = value.parse().map_err(|_| bad())?,
            "--connect-timeout-secs" => a.connect_timeout = secs(value.parse().map_err(|_| bad())?),
            "--settle-secs" => a.settle = secs(value.parse().map_err(|_| bad())?),
            "--grace-secs" => a.grace = secs(value.parse().map_err(|_| bad())?),
            "--source-ips" => a.source_ips = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.url.is_empty() || a.clients == 0 || a.ramp_per_sec <= 0.0 || a.measure_secs == 0 {
        return Err("--url, --clients, --ramp-per-sec and --measure-secs are required".into());
    }
    if a.threads == 0 || a.source_ips == 0 || a.source_ips > 254 {
        return Err("--threads must be >= 1 and --source-ips 1..=254".into());
    }
    Ok(a)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// `ws://host:port/path` -> `host:port` (plain WebSocket only: this client has no TLS).
fn authority(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

// --- latency histogram ------------------------------------------------------------------------

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS; // sub-buckets per power of two
const LINEAR: u64 = 2 * SUB; // values below this have their own bucket
const MAX_EXP: u32 = 40; // 2^40 µs = 12.7 days: anything above is clamped
const BUCKETS: usize = (LINEAR + (MAX_EXP - SUB_BITS - 1) as u64 * SUB) as usize;

struct Histogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
    min: AtomicU64,
}

fn bucket_of(v: u64) -> usize {
    let v = v.min((1 << MAX_EXP) - 1);
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = e - SUB_BITS;
    (LINEAR + (e - SUB_BITS - 1) as u64 * SUB + ((v >> shift) - SUB)) as usize
}

/// The midpoint of a bucket's range.
fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = (i - LINEAR) / SUB;
    let m = (i - LINEAR) % SUB;
    let shift = k as u32 + 1;
    ((SUB + m) << shift) + (1 << shift) / 2
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
        }
    }

    fn record(&self, us: u64) {
        self.counts[bucket_of(us)].fetch_add(1, Relaxed);
        self.total.fetch_add(1, Relaxed);
        self.sum.fetch_add(us, Relaxed);
        self.max.fetch_max(us, Relaxed);
        self.min.fetch_min(us, Relaxed);
    }

    /// The value at quantile `q` (0..=1), in µs; the exact maximum for q = 1.
    fn quantile(&self, q: f64) -> u64 {
        let total = self.total.load(Relaxed);
        if total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max.load(Relaxed);
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return bucket_value(i).min(self.max.load(Relaxed));
            }
        }
        self.max.load(Relaxed)
    }
}

// --- timestamps -------------------------------------------------------------------------------

/// Microseconds since the Unix epoch of an RFC 3339 time such as `2026-11-23T15:04:05.123456Z`
/// (any number of fraction digits, `Z` or a `±HH:MM` offset).
fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let d = b.get(from..to)?;
        d.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |i: usize, c: u8| b.get(i).is_some_and(|&x| x == c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        for k in 0..6 {
            let digit = if start + k < i {
                i64::from(b[start + k] - b'0')
            } else {
                0
            };
            frac_us = frac_us * 10 + digit;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b':') => {
            let o = num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60;
            if c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

// --- the clients ------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Update<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: Option<&'a str>,
}

struct Shared {
    held: AtomicUsize,
    connect_errors: AtomicU64,
    failed: AtomicUsize,
    disconnects: AtomicUsize,
    settled: AtomicUsize,
    /// The measuring window, µs since the epoch, as publish timestamps: [start, end).
    window_start: AtomicU64,
    window_end: AtomicU64,
    messages: AtomicU64,
    negative: AtomicU64,
    bad: AtomicU64,
    per_client: Box<[AtomicU32]>,
    latency: Histogram,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn note_error(&self, e: String) {
        self.connect_errors.fetch_add(1, Relaxed);
        // A tally by message (they carry no per-connection details), kept short.
        let key: String = e.chars().take(120).collect();
        *self.errors.lock().unwrap().entry(key).or_default() += 1;
    }

    fn on_text(&self, id: usize, text: &str) {
        let Ok(u) = serde_json::from_str::<Update>(text) else {
            self.bad.fetch_add(1, Relaxed);
            return;
        };
        if u.kind != "price_update" {
            return;
        }
        let received = now_us();
        let Some(ts) = u.timestamp.and_then(parse_rfc3339_us) else {
            self.bad.fetch_add(1, Relaxed);
            return;
        };
        let (start, end) = (
            self.window_start.load(Relaxed),
            self.window_end.load(Relaxed),
        );
        if ts < 0 || (ts as u64) < start || (ts as u64) >= end {
            return;
        }
        let lat = received - ts;
        if lat < 0 {
            self.negative.fetch_add(1, Relaxed);
        }
        self.latency.record(lat.max(0) as u64);
        self.messages.fetch_add(1, Relaxed);
        self.per_client[id].fetch_add(1, Relaxed);
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: tungstenite's default 128 KiB read buffer is zero-filled on every read and
    // would make this client, not the server, the bottleneck at 10k connections.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

async fn connect(
    args: &Args,
    addr: SocketAddr,
    id: usize,
) -> Result<WebSocketStream<TcpStream>, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if args.source_ips > 1 {
        let ip = Ipv4Addr::new(127, 0, 0, 1 + (id % args.source_ips as usize) as u8);
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .map_err(|e| format!("bind: {e}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (ws, _) = client_async_with_config(args.url.as_str(), stream, Some(ws_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

async fn client(args: Arc<Args>, addr: SocketAddr, id: usize, shared: Arc<Shared>) {
    let mut attempt = 0u32;
    let mut ws = loop {
        let err = match tokio::time::timeout(args.connect_timeout, connect(&args, addr, id)).await {
            Ok(Ok(ws)) => break ws,
            Ok(Err(e)) => e,
            Err(_) => "connect: timed out".to_string(),
        };
        shared.note_error(err);
        attempt += 1;
        if attempt > args.retries {
            shared.failed.fetch_add(1, Relaxed);
            shared.settled.fetch_add(1, Relaxed);
            return;
        }
        // Exponential backoff with a per-client spread, 100 ms .. 3.2 s.
        let base = 100u64 << (attempt - 1).min(5);
        let jitter = (id as u64 * 7919) % base;
        tokio::time::sleep(Duration::from_millis(base + jitter)).await;
    };
    shared.held.fetch_add(1, Relaxed);
    shared.settled.fetch_add(1, Relaxed);
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => shared.on_text(id, t.as_str()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    shared.held.fetch_sub(1, Relaxed);
    shared.disconnects.fetch_add(1, Relaxed);
}

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

async fn run(args: Args) -> String {
    let hostport = authority(&args.url).unwrap_or_else(|e| fail(&e));
    let addr = tokio::net::lookup_host(hostport)
        .await
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4))
        .unwrap_or_else(|| fail(&format!("cannot resolve {hostport} to an IPv4 address")));
    let n = args.clients;
    let shared = Arc::new(Shared {
        held: AtomicUsize::new(0),
        connect_errors: AtomicU64::new(0),
        failed: AtomicUsize::new(0),
        disconnects: AtomicUsize::new(0),
        settled: AtomicUsize::new(0),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        messages: AtomicU64::new(0),
        negative: AtomicU64::new(0),
        bad: AtomicU64::new(0),
        per_client: (0..n).map(|_| AtomicU32::new(0)).collect(),
        latency: Histogram::new(),
        errors: Mutex::new(BTreeMap::new()),
    });
    let args = Arc::new(args);
    let progress = |what: &str| {
        eprintln!(
            "[wsload] {what}: held {}/{n}, failed {}, connect errors {}, disconnects {}",
            shared.held.load(Relaxed),
            shared.failed.load(Relaxed),
            shared.connect_errors.load(Relaxed),
            shared.disconnects.load(Relaxed)
        );
    };

    // Ramp: every 10 ms, start the clients due by then.
    let t0 = Instant::now();
    let mut spawned = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last_report = 0;
    while spawned < n {
        tick.tick().await;
        let elapsed = t0.elapsed().as_secs_f64();
        let due = ((elapsed * args.ramp_per_sec) as usize + 1).min(n);
        for id in spawned..due {
            tokio::spawn(client(args.clone(), addr, id, shared.clone()));
        }
        spawned = due;
        if elapsed as u64 > last_report {
            last_report = elapsed as u64;
            progress(&format!("ramp {spawned} started"));
        }
    }
    // Every client connected or given up (bounded by the retries and timeouts).
    let worst = (args.connect_timeout + Duration::from_millis(3300)) * (args.retries + 1);
    let deadline = Instant::now() + worst;
    while shared.settled.load(Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_secs = t0.elapsed().as_secs_f64();
    progress(&format!("connected after {ramp_secs:.1}s"));
    tokio::time::sleep(args.settle).await;

    let held_at_start = shared.held.load(Relaxed);
    let start = now_us() as u64;
    let end = start + args.measure_secs * 1_000_000;
    shared.window_end.store(end, Relaxed);
    shared.window_start.store(start, Relaxed);
    eprintln!("[wsload] window open: {held_at_start} clients held");
    for s in 1..=args.measure_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if s % 10 == 0 || s == args.measure_secs {
            progress(&format!(
                "measuring {s}/{}s, {} updates",
                args.measure_secs,
                shared.messages.load(Relaxed)
            ));
        }
    }
    // Late deliveries of updates published inside the window still count.
    tokio::time::sleep(args.grace).await;
    eprintln!("[wsload] window closed");

    let held = shared.held.load(Relaxed);
    let counts: Vec<u32> = shared.per_client.iter().map(|c| c.load(Relaxed)).collect();
    let ticks = counts.iter().copied().max().unwrap_or(0);
    let receiving = counts.iter().filter(|&&c| c > 0).count();
    let min_per_client = counts.iter().copied().filter(|&c| c > 0).min().unwrap_or(0);
    let messages = shared.messages.load(Relaxed);
    let h = &shared.latency;
    let total = h.total.load(Relaxed);
    let errors = shared.errors.lock().unwrap().clone();
    let missed = (held_at_start as u64 * u64::from(ticks)).saturating_sub(messages);
    let min_us = if total > 0 { h.min.load(Relaxed) } else { 0 };
    let mean_us = h.sum.load(Relaxed).checked_div(total).unwrap_or(0);
    // In this order: the headline figures first (serde_json's map would sort the keys).
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("clients_target", n.into()),
        ("clients_held", held.into()),
        ("connect_errors", shared.connect_errors.load(Relaxed).into()),
        ("messages", messages.into()),
        ("p50_ms", ms(h.quantile(0.50)).into()),
        ("p99_ms", ms(h.quantile(0.99)).into()),
        ("max_ms", ms(h.quantile(1.0)).into()),
        ("clients_held_at_start", held_at_start.into()),
        ("clients_failed", shared.failed.load(Relaxed).into()),
        ("clients_receiving", receiving.into()),
        ("disconnects", shared.disconnects.load(Relaxed).into()),
        ("ramp_secs", ((ramp_secs * 10.0).round() / 10.0).into()),
        ("measure_secs", args.measure_secs.into()),
        ("ticks", ticks.into()),
        ("messages_missed", missed.into()),
        ("min_per_client", min_per_client.into()),
        ("p90_ms", ms(h.quantile(0.90)).into()),
        ("p999_ms", ms(h.quantile(0.999)).into()),
        ("min_ms", ms(min_us).into()),
        ("mean_ms", ms(mean_us).into()),
        ("negative_latencies", shared.negative.load(Relaxed).into()),
        ("bad_messages", shared.bad.load(Relaxed).into()),
        ("errors", serde_json::to_value(errors).unwrap_or_default()),
    ];
    let body: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn fail(msg: &str) -> ! {
    eprintln!("wsload: {msg}\n{USAGE}");
    exit(2)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(&e));
    authority(&args.url).unwrap_or_else(|e| fail(&e));
    // Watchdog: whatever happens, the process ends a bounded time after the planned run.
    let planned = args.clients as f64 / args.ramp_per_sec
        + ((args.connect_timeout + Duration::from_millis(3300)) * (args.retries + 1)
            + args.settle
            + args.grace)
            .as_secs_f64()
        + args.measure_secs as f64
        + 30.0;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(planned));
        eprintln!("wsload: watchdog: still running after {planned:.0}s, giving up");
        exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let line = rt.block_on(run(args));
    println!("{line}");
    // Leave the open connections to the kernel: exiting closes them all at once.
    exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        // date -u -d 2026-11-23T15:04:05Z +%s = 1795446245
        assert_eq!(
            parse_rfc3339_us("2026-11-23T15:04:05.123456Z"),
            Some(1_795_446_245_123_456)
        );
        assert_eq!(
            parse_rfc3339_us("2026-11-23T16:04:05.123456789+01:00"),
            Some(1_795_446_245_123_456)
        );
        assert_eq!(
            parse_rfc3339_us("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(parse_rfc3339_us("2026-11-23T15:04:05"), None);
        assert_eq!(parse_rfc3339_us("2026-11-23T15:04:05.Z"), None);
        assert_eq!(parse_rfc3339_us("2026-13-23T15:04:05Z"), None);
    }

    #[test]
    fn histogram_buckets_round_trip() {
        let mut prev = 0;
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            511,
            512,
            1000,
            12_345,
            99_999,
            1 << 30,
        ] {
            let b = bucket_of(v);
            assert!(b >= prev && b < BUCKETS);
            prev = b;
            let mid = bucket_value(b);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.004 || v < LINEAR, "{v} -> {mid}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 100);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.005, "{p50}");
        assert_eq!(h.quantile(1.0), 100_000);
    }
}
