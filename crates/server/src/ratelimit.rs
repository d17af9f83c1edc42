//! Fixed-window rate limits. In-process by default; with `REDIS_URL` the counters live in Redis
//! so every instance enforces the same budget.

use std::collections::HashMap;
use std::sync::Mutex;
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
            RateLimiter::Local(l) => l.incr(key, index),
            RateLimiter::Redis(r) => r.incr(key, index, w).await?,
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
            RateLimiter::Local(l) => l.clear(key),
            RateLimiter::Redis(r) => r.clear(key, index).await?,
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

#[derive(Default)]
pub struct LocalLimiter {
    windows: Mutex<HashMap<String, (u64, u64)>>,
}

impl LocalLimiter {
    fn incr(&self, key: &str, index: u64) -> u64 {
        let mut m = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded memory: once many keys accumulate, drop those from past windows.
        if m.len() > 50_000 {
            m.retain(|_, (i, _)| *i == index);
        }
        let e = m.entry(key.to_string()).or_insert((index, 0));
        if e.0 != index {
            *e = (index, 0);
        }
        e.1 += 1;
        e.1
    }

    fn clear(&self, key: &str) {
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

pub struct RedisLimiter {
    client: fred::clients::Client,
}

impl RedisLimiter {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use fred::interfaces::ClientLike;
        let config = fred::types::config::Config::from_url(url)?;
        let client = fred::types::Builder::from_config(config).build()?;
        client.init().await?;
        Ok(RedisLimiter { client })
    }

    fn key(key: &str, index: u64) -> String {
        format!("etx:rl:{key}:{index}")
    }

    async fn incr(&self, key: &str, index: u64, window_secs: u64) -> anyhow::Result<u64> {
        use fred::interfaces::KeysInterface;
        let k = Self::key(key, index);
        let pipe = self.client.pipeline();
        let _: () = pipe.incr(&k).await?;
        let _: () = pipe
            .expire(&k, i64::try_from(window_secs + 1)?, None)
            .await?;
        let (count, _): (u64, i64) = pipe.all().await?;
        Ok(count)
    }

    async fn clear(&self, key: &str, index: u64) -> anyhow::Result<()> {
        use fred::interfaces::KeysInterface;
        let _: i64 = self.client.del(Self::key(key, index)).await?;
        Ok(())
    }

    async fn ping(&self) -> anyhow::Result<()> {
        use fred::interfaces::ClientLike;
        let _: String = self.client.ping(None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
