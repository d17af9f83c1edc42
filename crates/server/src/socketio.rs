//! Socket.IO connections at `/socket.io/`: a client authenticates (access token, or the session
//! cookie it connected with), subscribes to public channels, and receives its own private events
//! in a room per user (see `realtime` for the handle and the rooms). Signed-in sockets have their
//! session checked again now and then; price updates are forwarded to the `prices` channel.

use crate::realtime::{Realtime, channel_room, session_room, user_room};
use crate::state::AppState;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide_redis::FredAdapter;
use std::time::Duration;

/// Public channels a socket may subscribe to.
pub const CHANNELS: &[&str] = &["prices"];
/// How often an authenticated socket's session is checked again, as a backstop to the
/// immediate sign-out on logout and revocation.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

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

/// Installs the connection handlers on the state's Socket.IO handle. They need the state,
/// which holds the handle, so they keep only a weak reference to it.
pub async fn register(state: &AppState) -> anyhow::Result<()> {
    let rt = &state.realtime;
    let state = state.downgrade();
    match rt {
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
