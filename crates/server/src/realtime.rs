//! Socket.IO at `/socket.io/`: a client authenticates (access token, or the session cookie it
//! connected with), subscribes to public channels, and receives its own private events in a
//! room per user. With `REDIS_URL` set, rooms span every instance through the Redis adapter, so
//! an event raised on one instance reaches the user's sockets on all of them. While Redis is
//! unreachable, events reach the sockets on the instance that raised them only.

use crate::state::AppState;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::layer::SocketIoLayer;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Public channels a socket may subscribe to.
pub const CHANNELS: &[&str] = &["prices"];
/// How often an authenticated socket's session is checked again, as a backstop to the
/// immediate sign-out on logout and revocation.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

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

#[derive(Clone)]
struct SocketUser {
    user_id: String,
    session_id: String,
}

#[derive(Deserialize)]
struct AuthMsg {
    token: String,
}

#[derive(Deserialize)]
struct ChannelsMsg {
    #[serde(default)]
    channels: Vec<String>,
}

fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

fn session_room(session_id: &str) -> String {
    format!("session:{session_id}")
}

fn channel_room(c: &str) -> String {
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

    /// Installs the connection handlers. They need the state, which holds this handle, so
    /// they keep only a weak reference to it.
    pub async fn register(&self, state: &AppState) -> anyhow::Result<()> {
        let state = state.downgrade();
        match self {
            Realtime::Local(io, _) => {
                io.ns("/", move |s: SocketRef| {
                    let state = state.upgrade();
                    async move {
                        if let Some(state) = state {
                            on_connect(state, s).await
                        }
                    }
                });
            }
            Realtime::Redis(io, ..) => {
                io.ns("/", move |s: SocketRef<FredAdapter<Emitter>>| {
                    let state = state.upgrade();
                    async move {
                        if let Some(state) = state {
                            on_connect(state, s).await
                        }
                    }
                })
                .await
                .map_err(|e| anyhow::anyhow!("Socket.IO namespace: {e}"))?;
            }
        }
        Ok(())
    }

    pub fn apply_layer(&self, router: axum::Router) -> axum::Router {
        match self {
            Realtime::Local(_, l) => router.layer(l.clone()),
            Realtime::Redis(_, l, _) => router.layer(l.clone()),
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
    async fn to_local_channel<T: Serialize + ?Sized>(
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

async fn on_connect<A: Adapter>(state: AppState, s: SocketRef<A>) {
    metrics::gauge!("etx_socketio_clients").increment(1.0);
    s.on_disconnect(async || {
        metrics::gauge!("etx_socketio_clients").decrement(1.0);
    });
    // Handlers live inside the socket, which lives inside the state: hold it weakly.
    s.on("authenticate", {
        let state = state.downgrade();
        move |s: SocketRef<A>, TryData::<AuthMsg>(m), ack: AckSender<A>| {
            let state = state.upgrade();
            async move {
                let Some(state) = state else { return };
                let ok = match m {
                    Ok(m) => authenticate(&state, &s, &m.token).await,
                    Err(_) => {
                        let _ = s.emit("auth_error", &json!({"message": "send {token}"}));
                        false
                    }
                };
                let _ = ack.send(&json!({"ok": ok}));
            }
        }
    });
    s.on(
        "subscribe",
        async |s: SocketRef<A>, TryData::<ChannelsMsg>(m), ack: AckSender<A>| {
            let channels = m.map(|m| m.channels).unwrap_or_default();
            let (known, unknown): (Vec<_>, Vec<_>) = channels
                .into_iter()
                .partition(|c| CHANNELS.contains(&c.as_str()));
            s.join(known.iter().map(|c| channel_room(c)).collect::<Vec<_>>());
            let _ = ack.send(&json!({"subscribed": known, "unknown": unknown}));
        },
    );
    s.on(
        "unsubscribe",
        async |s: SocketRef<A>, TryData::<ChannelsMsg>(m), ack: AckSender<A>| {
            let channels = m.map(|m| m.channels).unwrap_or_default();
            s.leave(
                channels
                    .iter()
                    .filter(|c| CHANNELS.contains(&c.as_str()))
                    .map(|c| channel_room(c))
                    .collect::<Vec<_>>(),
            );
            let _ = ack.send(&json!({"unsubscribed": channels}));
        },
    );
    s.on("ping", async |s: SocketRef<A>, ack: AckSender<A>| {
        let now = crate::views::rfc3339(etx_db::now_micros());
        let _ = s.emit("pong", &json!({"timestamp": now}));
        let _ = ack.send(&json!({"pong": true, "timestamp": now}));
    });
    // A browser that connects with its session cookie is signed in from the start. This comes
    // after the handlers: events that arrive while it awaits must find them in place.
    let cookie_token =
        crate::cookies::get(&s.req_parts().headers, crate::cookies::ACCESS).map(str::to_string);
    if let Some(token) = cookie_token {
        // Browsers attach cookies to a WebSocket opened by any site's page; only our own pages
        // (or configured origins) may ride on them.
        if crate::session::refuse_cross_site(&state, &s.req_parts().headers).is_ok() {
            authenticate(&state, &s, &token).await;
        } else {
            let _ = s.emit(
                "auth_error",
                &json!({"message": "cross-site connection: the session cookie is not used"}),
            );
        }
    }
}

async fn authenticate<A: Adapter>(state: &AppState, s: &SocketRef<A>, token: &str) -> bool {
    match crate::session::authenticate(state, token, false).await {
        Ok(auth) => {
            if let Some(prev) = s.extensions.get::<SocketUser>() {
                s.leave(vec![
                    user_room(&prev.user_id),
                    session_room(&prev.session_id),
                ]);
            }
            let user = SocketUser {
                user_id: auth.user.id.clone(),
                session_id: auth.session_id.clone(),
            };
            s.extensions.insert(user.clone());
            s.join(vec![
                user_room(&user.user_id),
                session_room(&user.session_id),
            ]);
            let _ = s.emit(
                "authenticated",
                &json!({"user_id": auth.user.id, "username": auth.user.username}),
            );
            tokio::spawn(recheck(state.clone(), s.clone(), user));
            true
        }
        Err(e) => {
            let _ = s.emit("auth_error", &json!({"message": e.to_string()}));
            false
        }
    }
}

/// Re-checks the socket's session now and then; once it has ended, the socket leaves the
/// user's room. Stops when the socket goes or authenticates as someone else.
async fn recheck<A: Adapter>(state: AppState, s: SocketRef<A>, user: SocketUser) {
    loop {
        tokio::time::sleep(RECHECK_EVERY).await;
        let current = s.extensions.get::<SocketUser>();
        if !s.connected() || current.as_ref().map(|u| &u.session_id) != Some(&user.session_id) {
            return;
        }
        let live = match state.db.active_session(&user.session_id).await {
            Ok(Some(a)) => a.user.is_active,
            Ok(None) => false,
            // A database hiccup is not a sign-out; try again next round.
            Err(_) => continue,
        };
        if !live {
            s.leave(vec![
                user_room(&user.user_id),
                session_room(&user.session_id),
            ]);
            s.extensions.remove::<SocketUser>();
            let _ = s.emit(
                "auth_error",
                &json!({"message": "your session has ended; authenticate again"}),
            );
            return;
        }
    }
}

/// Forwards every price update to this instance's `prices` subscribers.
pub fn spawn_price_forwarder(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut updates = state.market.subscribe();
        while updates.changed().await.is_ok() {
            let text = updates.borrow_and_update().text.clone();
            let Ok(v) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            state
                .realtime
                .to_local_channel("prices", "price_update", &v)
                .await;
        }
    })
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
}
