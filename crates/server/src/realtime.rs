//! The Socket.IO server handle (`/socket.io/`) and the events it sends: private events go to a
//! room per user (and per session), public ones to a room per channel. With `REDIS_URL` set,
//! rooms span every instance through the Redis adapter, so an event raised on one instance
//! reaches the user's sockets on all of them. While Redis is unreachable, events reach the
//! sockets on the instance that raised them only. What a connecting socket may do (sign in,
//! subscribe) is in `socketio`, which needs the application state this handle is part of.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide::layer::SocketIoLayer;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs the same code on whichever server handle is in use (the two differ only in type).
macro_rules! with_io {
    ($rt:expr, $io:ident => $body:expr) => {
        match $rt {
            Realtime::Local($io, _) => $body,
            Realtime::Redis($io, ..) => $body,
        }
    };
}

/// The Socket.IO server handle, local or spanning instances through Redis.
#[derive(Clone)]
pub enum Realtime {
    Local(SocketIo, SocketIoLayer),
    Redis(
        SocketIo<FredAdapter<Emitter>>,
        SocketIoLayer<FredAdapter<Emitter>>,
        AdapterLink,
    ),
}

/// The adapter's Redis connection. fred reconnects it, but a new connection starts with no
/// subscriptions: until the adapter's channels are subscribed again this instance would hear
/// nothing from the others, so readiness waits for that too.
#[derive(Clone)]
pub struct AdapterLink {
    client: fred::clients::SubscriberClient,
    subscribed: Arc<AtomicBool>,
}

impl AdapterLink {
    /// Connected, with every channel the adapter listens to subscribed.
    pub fn is_ready(&self) -> bool {
        use fred::interfaces::ClientLike;
        self.client.is_connected() && self.subscribed.load(Ordering::Acquire)
    }

    /// After each reconnection, subscribes the adapter's channels again, retrying until it
    /// works (a reconnection may fail again halfway).
    fn spawn_resubscriber(&self) {
        use fred::interfaces::{ClientLike, EventInterface};
        let link = self.clone();
        let mut reconnects = self.client.reconnect_rx();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    r = reconnects.recv() => match r {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            link.subscribed.store(false, Ordering::Release);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {}
                }
                if !link.client.is_connected() {
                    link.subscribed.store(false, Ordering::Release);
                    continue;
                }
                if link.subscribed.load(Ordering::Acquire) {
                    continue;
                }
                match link.resubscribe().await {
                    Ok(n) => {
                        link.subscribed.store(true, Ordering::Release);
                        tracing::info!(
                            channels = n,
                            "Socket.IO adapter subscribed again after reconnecting to Redis"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Socket.IO adapter could not subscribe again yet")
                    }
                }
            }
        });
    }

    async fn resubscribe(&self) -> Result<usize, fred::error::Error> {
        use fred::interfaces::PubsubInterface;
        // One at a time: the adapter uses sharded channels, which a cluster only accepts
        // together when they share a slot.
        let channels = self.client.tracked_shard_channels();
        for c in &channels {
            self.client.ssubscribe(c.to_string()).await?;
        }
        Ok(channels.len())
    }
}

pub(crate) fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

pub(crate) fn session_room(session_id: &str) -> String {
    format!("session:{session_id}")
}

pub(crate) fn channel_room(c: &str) -> String {
    format!("channel:{c}")
}

impl Realtime {
    pub async fn new(redis_url: Option<&str>) -> anyhow::Result<Realtime> {
        // A small read buffer per WebSocket (the default is 128 KiB, zeroed before each read):
        // client messages here are a few hundred bytes.
        let builder = SocketIo::builder()
            .ping_interval(Duration::from_secs(20))
            .ws_read_buffer_size(4096);
        match redis_url {
            None => {
                let (layer, io) = builder.build_layer();
                Ok(Realtime::Local(io, layer))
            }
            Some(url) => {
                let mut cfg = fred::prelude::Config::from_url(url)?;
                // The adapter's fred driver speaks RESP3 (sharded pub/sub); with RESP2 nothing
                // arrives and nothing fails.
                cfg.version = fred::types::RespVersion::RESP3;
                let client = etx_core::ratelimit::redis_builder(cfg).build_subscriber_client()?;
                let link = AdapterLink {
                    client: client.clone(),
                    subscribed: Arc::new(AtomicBool::new(true)),
                };
                let adapter = RedisAdapterCtr::new_with_fred(client).await?;
                link.spawn_resubscriber();
                let (layer, io) = builder
                    .with_adapter::<FredAdapter<_>>(adapter)
                    .build_layer();
                Ok(Realtime::Redis(io, layer, link))
            }
        }
    }

    pub fn apply_layer(&self, router: axum::Router) -> axum::Router {
        match self {
            Realtime::Local(_, l) => router.layer(l.clone()),
            Realtime::Redis(_, l, _) => router.layer(l.clone()),
        }
    }

    /// Closes every Socket.IO connection of this instance at the transport, which clients
    /// take as a lost connection and reconnect; at most a few seconds.
    pub async fn close(&self) {
        let closed = async { with_io!(self, io => io.close().await) };
        if tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .is_err()
        {
            tracing::warn!("Socket.IO connections did not all close within 5 s");
        }
    }

    /// Whether Redis is configured and the adapter is connected and subscribed to it.
    pub fn adapter_ready(&self) -> Option<bool> {
        match self {
            Realtime::Local(..) => None,
            Realtime::Redis(_, _, link) => Some(link.is_ready()),
        }
    }

    /// Redis is configured but out of reach: room operations stay on this instance rather
    /// than wait for a command that cannot be sent (and then reach no socket at all).
    fn cut_off(&self) -> bool {
        self.adapter_ready() == Some(false)
    }

    /// Sends `event` to every socket of `user_id`, on every instance.
    pub async fn to_user<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        event: &'static str,
        data: &T,
    ) {
        self.emit_to(Some(user_room(user_id)), event, data).await;
    }

    /// Sends `event` to every connected socket, signed in or not, on every instance.
    pub async fn to_everyone<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) {
        self.emit_to(None, event, data).await;
    }

    /// Emits to `room` (everyone when `None`) on every instance, or on this one alone when
    /// Redis cannot carry it: the adapter reaches no socket at all when its publish fails.
    async fn emit_to<T: Serialize + ?Sized>(
        &self,
        room: Option<String>,
        event: &'static str,
        data: &T,
    ) {
        let rooms = room.into_iter().collect::<Vec<_>>();
        if !self.cut_off() {
            let r = with_io!(self, io => io.to(rooms.clone()).emit(event, data).await);
            match r {
                Ok(()) => return,
                Err(socketioxide::BroadcastError::Adapter(e)) => {
                    tracing::warn!(error = %e, event, "real-time event sent to this instance's sockets only");
                }
                Err(e) => {
                    tracing::warn!(error = %e, event, "real-time event not delivered");
                    return;
                }
            }
        }
        let r = with_io!(self, io => io.local().to(rooms).emit(event, data).await);
        if let Err(e) = r {
            tracing::warn!(error = %e, event, "real-time event not delivered");
        }
    }

    /// Sends `event` to this instance's subscribers only (prices: every instance sends its own).
    pub(crate) async fn to_local_channel<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        event: &'static str,
        data: &T,
    ) {
        let _ = with_io!(self, io => io.local().to(channel_room(channel)).emit(event, data).await);
    }

    /// The sockets in `room` are told why in an `auth_error`, then leave `private` (on every
    /// instance), so the user's private events no longer reach them.
    async fn detach(&self, room: String, private: String, message: &str) {
        let msg = json!({ "message": message });
        self.emit_to(Some(room.clone()), "auth_error", &msg).await;
        if !self.cut_off() {
            let r = with_io!(self, io => io.to(room.clone()).leave(private.clone()).await.map_err(|e| e.to_string()));
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "sockets on other instances keep private events until their session re-check")
                }
            }
        }
        let r = with_io!(self, io => io.local().to(room).leave(private).await.map_err(|e| e.to_string()));
        if let Err(e) = r {
            tracing::warn!(error = %e, "sockets could not be detached from private events");
        }
    }

    /// A session has ended: its sockets stop receiving the user's private events at once.
    pub async fn session_ended(&self, user_id: &str, session_id: &str) {
        self.detach(
            session_room(session_id),
            user_room(user_id),
            "your session has ended; authenticate again",
        )
        .await;
    }

    /// Every socket of the user loses its private events (suspension).
    pub async fn user_cut_off(&self, user_id: &str) {
        self.detach(
            user_room(user_id),
            user_room(user_id),
            "this account can no longer receive events",
        )
        .await;
    }
}

/// Tells each party of a committed movement: `transaction_update` with the history row and
/// `wallet_update` with the new balance. Sent after the response, never holding it up.
impl etx_core::Events for Realtime {
    fn movements(&self, events: Vec<etx_core::ledger::MovementEvent>) {
        let rt = self.clone();
        tokio::spawn(async move {
            for e in events {
                rt.to_user(&e.user_id, "transaction_update", &e.transaction)
                    .await;
                rt.to_user(
                    &e.user_id,
                    "wallet_update",
                    &json!({"currency": e.currency, "balance": e.balance}),
                )
                .await;
                if let Some(n) = &e.notice {
                    rt.to_user(&e.user_id, "notification", &n.view()).await;
                }
            }
        });
    }

    fn session_ended<'a>(&'a self, user_id: &'a str, session_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(Realtime::session_ended(self, user_id, session_id))
    }

    fn user_cut_off<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(Realtime::user_cut_off(self, user_id))
    }

    fn job_update(&self, user_id: &str, job: &etx_core::jobs::JobView) {
        let rt = self.clone();
        let (user_id, job) = (user_id.to_string(), job.clone());
        tokio::spawn(async move { rt.to_user(&user_id, "job_update", &job).await });
    }

    fn to_user(&self, user_id: &str, event: &'static str, payload: serde_json::Value) {
        let rt = self.clone();
        let user_id = user_id.to_string();
        tokio::spawn(async move { rt.to_user(&user_id, event, &payload).await });
    }
}
