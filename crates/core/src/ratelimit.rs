//! Fixed-window rate limits. In-process by default; with `REDIS_URL` the counters live in Redis
//! so every instance enforces the same budget. While Redis cannot be reached, each instance
//! counts on its own (the in-process limiter) instead of failing or waiting for Redis.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset_after_secs: u64,
}

pub enum RateLimiter {
    Local(LocalLimiter),
    Redis(RedisLimiter),
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(LocalLimiter::default())
    }

    /// Counts one hit against `key`, allowing `limit` per `window`.
    pub async fn hit(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<Decision> {
        let w = window.as_secs().max(1);
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let index = now / w;
        let reset_after_secs = (index + 1) * w - now;
        let count = match self {
            RateLimiter::Local(l) => l.incr(key, w, index),
            RateLimiter::Redis(r) => r.incr(key, w, index).await,
        };
        Ok(Decision {
            allowed: count <= u64::from(limit),
            limit,
            remaining: limit.saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)),
            reset_after_secs,
        })
    }

    /// Forgets the counter of `key` in the current window (used after a successful login).
    pub async fn clear(&self, key: &str, window: Duration) -> anyhow::Result<()> {
        let w = window.as_secs().max(1);
        let index = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / w;
        match self {
            RateLimiter::Local(l) => l.clear(key, w),
            RateLimiter::Redis(r) => r.clear(key, w, index).await,
        }
        Ok(())
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            RateLimiter::Local(_) => Ok(()),
            RateLimiter::Redis(r) => r.ping().await,
        }
    }
}

/// Live keys kept per window length, counted over both generations. A few window lengths are
/// in use (a minute, an hour), so this bounds the limiter to a few hundred thousand keys
/// (tens of MB) whatever arrives.
pub const MAX_KEYS_PER_WINDOW: usize = 100_000;
const SHARDS: usize = 16;
/// One generation of one shard may hold this many keys before it is retired.
const GENERATION_CAP: usize = MAX_KEYS_PER_WINDOW / SHARDS / 2;

/// In-process counters. Each window length has its own maps, so windows of different lengths
/// never evict each other. Keys are spread over shards, each behind its own lock.
///
/// Within a window, a shard keeps two generations: new keys go into the current one, and a key
/// found in the previous one moves back into the current one with its count. When the current
/// generation is full it becomes the previous one and the old previous one is dropped: only
/// keys that went unused for a whole generation are forgotten, each key is moved or dropped at
/// most once per generation (amortised O(1) per hit), and a flood of new keys never makes a
/// key refuse or wait. Forgetting beats refusing here: refusing unknown keys when full would let
/// a flood of made-up addresses lock everyone else out; forgetting only resets counters of keys
/// that stayed silent while the whole generation filled, so a client that keeps trying keeps
/// its count unless it also sends tens of thousands of requests under other keys in between.
pub struct LocalLimiter {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<u64, Window>>>,
}

#[derive(Default)]
struct Window {
    index: u64,
    current: HashMap<Box<str>, u64>,
    previous: HashMap<Box<str>, u64>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl LocalLimiter {
    fn shard(&self, key: &str) -> &Mutex<HashMap<u64, Window>> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    /// Counts a hit on `key` in window number `index` of windows `window_secs` long.
    fn incr(&self, key: &str, window_secs: u64, index: u64) -> u64 {
        // Retired maps are freed after the lock is released.
        let mut retired = Vec::new();
        let count = {
            let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
            let w = shard.entry(window_secs).or_default();
            // A caller that read the clock just before the window turned counts in the new one.
            if index > w.index {
                w.index = index;
                retired.push(std::mem::take(&mut w.current));
                retired.push(std::mem::take(&mut w.previous));
            }
            if let Some(c) = w.current.get_mut(key) {
                *c += 1;
                *c
            } else {
                let c = w.previous.remove(key).unwrap_or(0) + 1;
                if w.current.len() >= GENERATION_CAP {
                    let full = std::mem::take(&mut w.current);
                    retired.push(std::mem::replace(&mut w.previous, full));
                }
                w.current.insert(key.into(), c);
                c
            }
        };
        drop(retired);
        count
    }

    fn clear(&self, key: &str, window_secs: u64) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = shard.get_mut(&window_secs) {
            w.current.remove(key);
            w.previous.remove(key);
        }
    }

    /// Keys held for windows `window_secs` long.
    pub fn len(&self, window_secs: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.get(&window_secs)
                    .map_or(0, |w| w.current.len() + w.previous.len())
            })
            .sum()
    }

    pub fn is_empty(&self, window_secs: u64) -> bool {
        self.len(window_secs) == 0
    }
}

/// How long a request waits for Redis before it is served without it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// A fred builder with the connection behaviour every Redis client of the server shares:
/// reconnect forever with backoff (100 ms doubling to 2 s, so an instance is back within
/// about two seconds of Redis), give up on a connection that stops answering, and bound every
/// command, so nothing waits on a Redis that is gone.
pub fn redis_builder(config: fred::types::config::Config) -> fred::types::Builder {
    use fred::types::config::{ReconnectPolicy, UnresponsiveConfig};
    let mut b = fred::types::Builder::from_config(config);
    b.with_connection_config(|c| {
        c.connection_timeout = Duration::from_secs(2);
        c.internal_command_timeout = Duration::from_secs(2);
        c.unresponsive = UnresponsiveConfig {
            max_timeout: Some(Duration::from_secs(3)),
            interval: Duration::from_secs(1),
        };
    })
    .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
    .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    b
}

pub struct RedisLimiter {
    client: fred::clients::Client,
    /// Counts while Redis is unreachable.
    fallback: LocalLimiter,
    /// Whether the last command failed (logged once per outage, not once per request).
    degraded: AtomicBool,
}

impl RedisLimiter {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use fred::interfaces::ClientLike;
        let config = fred::types::config::Config::from_url(url)?;
        let client = redis_builder(config).build()?;
        client.init().await?;
        Ok(RedisLimiter {
            client,
            fallback: LocalLimiter::default(),
            degraded: AtomicBool::new(false),
        })
    }

    fn key(key: &str, index: u64) -> String {
        format!("etx:rl:{key}:{index}")
    }

    /// Per request: answer at once while disconnected (no queue of commands waiting for the
    /// reconnection), wait at most `COMMAND_TIMEOUT` otherwise, and never send twice.
    fn options() -> fred::types::config::Options {
        fred::types::config::Options {
            timeout: Some(COMMAND_TIMEOUT),
            fail_fast: true,
            max_attempts: Some(1),
            ..Default::default()
        }
    }

    async fn incr(&self, key: &str, window_secs: u64, index: u64) -> u64 {
        match self.remote_incr(key, window_secs, index).await {
            Ok(count) => {
                self.reachable();
                count
            }
            Err(e) => {
                self.unreachable(&e);
                self.fallback.incr(key, window_secs, index)
            }
        }
    }

    async fn remote_incr(&self, key: &str, window_secs: u64, index: u64) -> anyhow::Result<u64> {
        use fred::interfaces::{ClientLike, KeysInterface};
        let k = Self::key(key, index);
        let pipe = self.client.pipeline().with_options(&Self::options());
        let _: () = pipe.incr(&k).await?;
        let _: () = pipe
            .expire(&k, i64::try_from(window_secs + 1)?, None)
            .await?;
        let (count, _): (u64, i64) = pipe.all().await?;
        Ok(count)
    }

    async fn clear(&self, key: &str, window_secs: u64, index: u64) {
        use fred::interfaces::{ClientLike, KeysInterface};
        self.fallback.clear(key, window_secs);
        let r: Result<i64, _> = self
            .client
            .with_options(&Self::options())
            .del(Self::key(key, index))
            .await;
        if let Err(e) = r {
            self.unreachable(&e.into());
        }
    }

    async fn ping(&self) -> anyhow::Result<()> {
        use fred::interfaces::ClientLike;
        let _: String = self
            .client
            .with_options(&Self::options())
            .ping(None)
            .await?;
        Ok(())
    }

    fn unreachable(&self, e: &anyhow::Error) {
        metrics::counter!("etx_ratelimit_redis_fallbacks_total").increment(1);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "Redis unreachable: rate limits are counted per instance until it answers again");
        }
    }

    fn reachable(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: rate limits are shared again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    #[tokio::test]
    async fn local_limits_within_window() {
        let l = RateLimiter::local();
        let w = Duration::from_secs(3600);
        for i in 0..3 {
            let d = l.hit("k", 3, w).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = l.hit("k", 3, w).await.unwrap();
        assert!(!d.allowed);
        assert!(d.reset_after_secs >= 1);
        assert!(l.hit("other", 3, w).await.unwrap().allowed);
        l.clear("k", w).await.unwrap();
        assert!(l.hit("k", 3, w).await.unwrap().allowed);
    }

    #[test]
    fn an_hourly_counter_survives_a_flood_of_per_minute_keys() {
        let l = LocalLimiter::default();
        let (hour, minute) = (1_000, 60_000);
        for _ in 0..5 {
            l.incr("deposit:user:u1", HOUR, hour);
        }
        for i in 0..60_000 {
            l.incr(&format!("login:ip:{i}"), MIN, minute);
        }
        assert_eq!(l.incr("deposit:user:u1", HOUR, hour), 6);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded_and_a_busy_key_keeps_its_count() {
        let l = LocalLimiter::default();
        let mut busy = 0;
        for i in 0..1_000_000u32 {
            l.incr(&format!("login:ip:{i}"), MIN, 7);
            if i % 1_000 == 0 {
                busy = l.incr("login:ip:attacker", MIN, 7);
            }
            if i % 50_000 == 0 {
                assert!(l.len(MIN) <= MAX_KEYS_PER_WINDOW, "{} keys", l.len(MIN));
            }
        }
        assert!(l.len(MIN) <= MAX_KEYS_PER_WINDOW, "{} keys", l.len(MIN));
        assert_eq!(busy, 1_000, "a key in use is never forgotten");
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let l = LocalLimiter::default();
        assert_eq!(l.incr("k", MIN, 10), 1);
        assert_eq!(l.incr("k", MIN, 10), 2);
        assert_eq!(l.incr("k", MIN, 11), 1);
        assert_eq!(l.len(MIN), 1, "the last window's keys are dropped");
        // A caller that read the clock just before the turn counts in the new window.
        assert_eq!(l.incr("k", MIN, 10), 2);
    }

    #[test]
    fn clear_forgets_one_key_of_one_window_length() {
        let l = LocalLimiter::default();
        l.incr("k", MIN, 1);
        l.incr("k", MIN, 1);
        l.incr("k", HOUR, 1);
        l.incr("other", MIN, 1);
        l.clear("k", MIN);
        assert_eq!(l.incr("k", MIN, 1), 1);
        assert_eq!(l.incr("k", HOUR, 1), 2);
        assert_eq!(l.incr("other", MIN, 1), 2);
        // A key waiting in the previous generation keeps its count, and is cleared too.
        let retire = |l: &LocalLimiter| {
            let mut s = l.shard("k").lock().unwrap();
            let w = s.get_mut(&HOUR).unwrap();
            w.previous = std::mem::take(&mut w.current);
        };
        retire(&l);
        assert_eq!(l.incr("k", HOUR, 1), 3);
        retire(&l);
        l.clear("k", HOUR);
        assert_eq!(l.incr("k", HOUR, 1), 1);
    }
}
