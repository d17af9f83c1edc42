//! Delivery of `price_update` messages to `/ws/prices` clients.
//!
//! A tick goes to every client at once, so its cost is paid thousands of times in one burst.
//! Waking one task per client per tick (each cloning the message, arming a send timer and
//! re-polling its reader) made the burst long enough to be most of the delivery latency.
//! Instead one shard task per worker thread owns a share of the clients and writes the tick
//! to them in one pass (two per worker ran back to back on one thread and doubled the tail). A write never waits: a socket that cannot take the
//! message now is flushed again on the next tick and skips the ticks in between, so a slow
//! client sees the newest prices rather than a queue, and is dropped after stalling for
//! [`SEND_TIMEOUT`]. Each client keeps one task that only reads (pings and the close).

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// A client whose socket has taken nothing for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One published `price_update`; `seq` grows by one per update.
#[derive(Clone)]
pub struct Update {
    pub seq: u64,
    pub text: Utf8Bytes,
}

/// The socket and what it has been sent. The lock is only ever held for writes that do not
/// wait, never across an `.await`.
struct Conn {
    ws: WebSocket,
    /// `seq` of the newest update written.
    sent: u64,
    /// A write is still in the socket's buffer, waiting for room in the kernel.
    unflushed: bool,
    stalled_since: Option<Instant>,
    gone: bool,
}

impl Conn {
    /// Writes `text` if the socket takes it now; `false` when the client should be dropped.
    fn offer(&mut self, text: &Utf8Bytes, now: Instant) -> bool {
        if self.unflushed {
            match self.ws.flush().now_or_never() {
                None => return self.stall(now),
                Some(Err(_)) => return false,
                Some(Ok(())) => self.unflushed = false,
            }
        }
        match self.ws.send(Message::Text(text.clone())).now_or_never() {
            Some(Ok(())) => {
                self.stalled_since = None;
                true
            }
            Some(Err(_)) => false,
            // Already in the socket's buffer; it goes out with the next flush.
            None => {
                self.unflushed = true;
                self.stall(now)
            }
        }
    }

    fn stall(&mut self, now: Instant) -> bool {
        metrics::counter!("etx_ws_price_skipped_total").increment(1);
        let since = *self.stalled_since.get_or_insert(now);
        now.duration_since(since) < SEND_TIMEOUT
    }

    /// Sends `u` unless this client already has it or something newer.
    fn deliver(&mut self, u: &Update, now: Instant) -> bool {
        if self.gone {
            return false;
        }
        if self.sent >= u.seq {
            return true;
        }
        self.sent = u.seq;
        self.gone = !self.offer(&u.text, now);
        !self.gone
    }
}

struct Client {
    conn: Mutex<Conn>,
    /// Tells the reader task that the shard gave up on this client.
    hangup: Notify,
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Shard {
    /// Clients attached since the shard's last pass.
    incoming: Mutex<Vec<Arc<Client>>>,
}

/// The shards, started with the first client.
pub struct Fanout {
    updates: watch::Receiver<Update>,
    shards: OnceLock<Box<[Arc<Shard>]>>,
    next: AtomicUsize,
}

impl Fanout {
    pub fn new(updates: watch::Receiver<Update>) -> Fanout {
        Fanout {
            updates,
            shards: OnceLock::new(),
            next: AtomicUsize::new(0),
        }
    }

    fn shards(&self) -> &[Arc<Shard>] {
        self.shards.get_or_init(|| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            (0..workers.max(1))
                .map(|_| {
                    let shard = Arc::new(Shard::default());
                    tokio::spawn(run_shard(shard.clone(), self.updates.clone()));
                    shard
                })
                .collect()
        })
    }

    /// Serves one client until it closes, errs or stalls: `hello`, the current prices, then
    /// every update; `{"type":"ping"}` is answered with `{"type":"pong"}`.
    pub async fn serve(&self, ws: WebSocket, hello: Utf8Bytes) {
        let client = Arc::new(Client {
            conn: Mutex::new(Conn {
                ws,
                sent: 0,
                unflushed: false,
                stalled_since: None,
                gone: false,
            }),
            hangup: Notify::new(),
        });
        metrics::gauge!("etx_ws_price_clients").increment(1.0);
        let current = self.updates.borrow().clone();
        let greeted = {
            let mut c = client.lock();
            let now = Instant::now();
            c.offer(&hello, now) && c.deliver(&current, now)
        };
        if greeted {
            let shards = self.shards();
            let shard = &shards[self.next.fetch_add(1, Ordering::Relaxed) % shards.len()];
            shard
                .incoming
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(client.clone());
            // An update published after the one above but before the shard's next pass took this
            // client in would otherwise be missed; `deliver` sends each update at most once.
            let latest = self.updates.borrow().clone();
            if client.lock().deliver(&latest, Instant::now()) {
                read_until_closed(&client).await;
            }
        }
        client.lock().gone = true;
        metrics::gauge!("etx_ws_price_clients").decrement(1.0);
    }
}

async fn read_until_closed(client: &Client) {
    const PONG: Utf8Bytes = Utf8Bytes::from_static(r#"{"type":"pong"}"#);
    loop {
        let incoming = tokio::select! {
            m = std::future::poll_fn(|cx| client.lock().ws.poll_next_unpin(cx)) => m,
            () = client.hangup.notified() => return,
        };
        match incoming {
            Some(Ok(Message::Text(t))) => {
                let is_ping = serde_json::from_str::<serde_json::Value>(&t)
                    .is_ok_and(|v| v["type"] == "ping");
                if is_ping && !client.lock().offer(&PONG, Instant::now()) {
                    return;
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => {}
        }
    }
}

async fn run_shard(shard: Arc<Shard>, mut updates: watch::Receiver<Update>) {
    let mut clients: Vec<Arc<Client>> = Vec::new();
    while updates.changed().await.is_ok() {
        let update = updates.borrow_and_update().clone();
        clients.append(&mut shard.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        // Out of tokio's cooperative budget, which would make every write after the first 128
        // of a pass return `Pending` as if the socket were full.
        tokio::task::unconstrained(async {
            let now = Instant::now();
            clients.retain(|c| {
                let alive = c.lock().deliver(&update, now);
                if !alive {
                    c.hangup.notify_one();
                }
                alive
            });
        })
        .await;
    }
}
