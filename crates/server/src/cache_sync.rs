//! The session cache on several instances. Each instance keeps recently authenticated sessions
//! in memory (`etx_db::SessionCache`), which a write of its own clears at once; with
//! `REDIS_URL` set, every such clear is published on a Redis channel and every other instance
//! clears its cache when it hears it, so a logout, suspension or password change on one
//! instance takes effect on all of them.
//!
//! What keeps that true when Redis is not there: the cache is used only while this instance is
//! subscribed to the channel. A lost connection switches it off (every request reads the
//! database, as a single instance without a cache would) and it comes back, empty, once the
//! subscription is in place again. A request that caused a clear is answered only after the
//! clear has been published (or after at most `PUBLISH_WAIT`), so the next request the client
//! sends, to whichever instance, finds every cache already cleared.

use etx_db::Db;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

const CHANNEL: &str = "etx:sessions:clear";

/// How long a request waits for its clear to be published; Redis answering slower than this
/// is down for practical purposes, and the other instances' caches are off then.
const PUBLISH_WAIT: Duration = Duration::from_millis(500);

/// How often the subscription's health is checked besides the reconnection events.
const CHECK_EVERY: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct CacheSync {
    db: Db,
    /// The number of this instance's clears published so far.
    published: watch::Receiver<u64>,
    /// Subscribed, so the cache is in use.
    live: Arc<AtomicBool>,
}

impl CacheSync {
    /// Connects to Redis, subscribes, and turns the cache on with `ttl` once subscribed.
    pub async fn start(db: &Db, url: &str, ttl: Duration) -> anyhow::Result<CacheSync> {
        let config = fred::types::config::Config::from_url(url)?;
        let publisher = etx_core::ratelimit::redis_builder(config.clone()).build()?;
        publisher.init().await?;
        let subscriber = etx_core::ratelimit::redis_builder(config).build_subscriber_client()?;
        subscriber.init().await?;
        // Off until subscribed: a clear published meanwhile would be missed.
        db.set_session_cache_ttl(Duration::ZERO);
        let me = uuid::Uuid::now_v7().to_string();
        let live = Arc::new(AtomicBool::new(false));

        let (published_tx, published) = watch::channel(db.session_clears());
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        db.on_session_clear(move || w.notify_one());
        tokio::spawn(publish_clears(
            db.clone(),
            publisher,
            me.clone(),
            wake,
            published_tx,
        ));

        let mut messages = subscriber.message_rx();
        let (d, from) = (db.clone(), me.clone());
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(m) => {
                        if m.value.as_str().as_deref() != Some(from.as_str()) {
                            d.clear_sessions_from_elsewhere();
                        }
                    }
                    // Some were missed: clearing is always safe.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        d.clear_sessions_from_elsewhere()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let sync = CacheSync {
            db: db.clone(),
            published,
            live: live.clone(),
        };
        tokio::spawn(keep_subscribed(db.clone(), subscriber, live, ttl));
        Ok(sync)
    }

    /// Whether the cache is in use (subscribed to the other instances' clears).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The number of clears this instance has caused so far; see `published_up_to`.
    pub fn clears(&self) -> u64 {
        self.db.session_clears()
    }

    /// Waits until the clears up to `n` are published, at most `PUBLISH_WAIT`.
    pub async fn published_up_to(&self, n: u64) {
        let mut rx = self.published.clone();
        let _ = tokio::time::timeout(PUBLISH_WAIT, rx.wait_for(|p| *p >= n)).await;
    }
}

/// Publishes a message whenever this instance cleared its cache; several clears in a row go
/// as one message.
async fn publish_clears(
    db: Db,
    publisher: fred::clients::Client,
    me: String,
    wake: Arc<Notify>,
    published: watch::Sender<u64>,
) {
    loop {
        wake.notified().await;
        let n = db.session_clears();
        let sent = tokio::time::timeout(
            PUBLISH_WAIT,
            publisher.publish::<i64, _, _>(CHANNEL, me.as_str()),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            // The subscribers cannot hear it either: their connections to the same Redis are
            // down, which switches their caches off.
            tracing::warn!("could not publish a session cache clear to Redis");
        }
        let _ = published.send(n);
    }
}

/// Keeps the subscription in place: the cache is off from the moment the connection is lost
/// until the channel is subscribed again, and starts empty then.
async fn keep_subscribed(
    db: Db,
    subscriber: fred::clients::SubscriberClient,
    live: Arc<AtomicBool>,
    ttl: Duration,
) {
    let mut reconnects = subscriber.reconnect_rx();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let off = |live: &AtomicBool| {
        if live.swap(false, Ordering::AcqRel) {
            db.set_session_cache_ttl(Duration::ZERO);
            tracing::warn!("session cache off: not subscribed to other instances' changes");
        }
    };
    loop {
        tokio::select! {
            r = reconnects.recv() => match r {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => off(&live),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        if !subscriber.is_connected() {
            off(&live);
            continue;
        }
        if live.load(Ordering::Acquire) {
            continue;
        }
        match subscriber.subscribe(CHANNEL).await {
            Ok(()) => {
                db.set_session_cache_ttl(ttl);
                live.store(true, Ordering::Release);
                tracing::info!("session cache on: subscribed to other instances' changes");
            }
            Err(e) => tracing::warn!(error = %e, "could not subscribe to session changes yet"),
        }
    }
}
