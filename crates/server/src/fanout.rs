//! Delivery of `price_update` messages to `/ws/prices` clients.
//!
//! A tick goes to every client at once, so its cost is paid thousands of times in one burst.
//! Waking one task per client per tick (each cloning the message, arming a send timer and
//! re-polling its reader) made the burst long enough to be most of the delivery latency.
//! Instead one worker task per tokio worker thread writes the tick in one pass over a shared
//! list of clients, taking it in chunks: a fixed share per worker finished as late as the
//! worker that got the least of its core (the load client and the kernel's loopback work run
//! on the same cores), while chunks let the faster worker take over the rest. A write never
//! waits: a socket that cannot take the message now is flushed again on the next tick and
//! skips the ticks in between, so a slow client sees the newest prices rather than a queue,
//! and is dropped after stalling for [`SEND_TIMEOUT`]. Each client keeps one task that only
//! reads (pings and the close).

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use etx_core::market;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// A client whose socket has taken nothing for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One published `price_update`, as a WebSocket text frame; `seq` grows by one per update.
#[derive(Clone)]
pub struct Update {
    pub seq: u64,
    pub text: Utf8Bytes,
}

impl Update {
    fn from_book(u: &market::Update) -> Update {
        Update {
            seq: u.seq,
            // The book publishes JSON from `serde_json`, always UTF-8.
            text: Utf8Bytes::try_from(u.text.clone()).unwrap_or(Utf8Bytes::from_static("")),
        }
    }
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
    /// Tells the reader task that the fan-out gave up on this client.
    hangup: Notify,
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a close frame with 1012 (service restart) if the socket takes it now, and ends
    /// the client either way.
    fn restart(&self) {
        use axum::extract::ws::CloseFrame;
        let mut c = self.lock();
        if !c.gone {
            let close = Message::Close(Some(CloseFrame {
                code: 1012,
                reason: Utf8Bytes::from_static("server restarting; reconnect"),
            }));
            let _ = c.ws.send(close).now_or_never();
            c.gone = true;
        }
        drop(c);
        self.hangup.notify_one();
    }
}

/// The clients and the pass over them for the newest update.
#[derive(Default)]
struct Roster {
    /// Clients attached since the list was last rebuilt.
    incoming: Vec<Arc<Client>>,
    /// Every client served, shared by the workers of a pass; rebuilt only when someone
    /// joined or left, so a quiet tick costs no copy.
    list: Arc<Vec<Arc<Client>>>,
    pass: Option<Arc<Pass>>,
}

/// One update's delivery: workers take chunks of `list` through `next` until none is left,
/// so a worker that gets less of its core (or starts late) leaves more of the pass to the
/// other, and both finish at about the same moment.
struct Pass {
    update: Update,
    list: Arc<Vec<Arc<Client>>>,
    next: AtomicUsize,
}

/// Clients per chunk: large enough that the shared counter is touched rarely, small enough
/// that the workers' shares even out within a pass.
const CHUNK: usize = 64;

/// The delivery workers (one per tokio worker thread, started with the first client).
pub struct Fanout {
    updates: watch::Receiver<market::Update>,
    roster: Arc<Mutex<Roster>>,
    /// A client was dropped since the list was last rebuilt.
    departed: Arc<AtomicBool>,
    started: OnceLock<()>,
    /// The server is shutting down: every client is asked to reconnect elsewhere.
    closing: AtomicBool,
}

impl Fanout {
    pub fn new(updates: watch::Receiver<market::Update>) -> Fanout {
        Fanout {
            updates,
            roster: Arc::default(),
            departed: Arc::default(),
            started: OnceLock::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Closes every client's socket with 1012 (service restart), so that it reconnects, through
    /// the balancer, to an instance that is staying; clients arriving later are closed as
    /// soon as they are greeted.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let r = lock(&self.roster);
        let clients: Vec<Arc<Client>> = r.list.iter().chain(&r.incoming).cloned().collect();
        drop(r);
        for c in &clients {
            c.restart();
        }
    }

    fn start_workers(&self) {
        self.started.get_or_init(|| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            for _ in 0..workers.max(1) {
                tokio::spawn(run_worker(
                    self.roster.clone(),
                    self.departed.clone(),
                    self.updates.clone(),
                ));
            }
        });
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
        let current = Update::from_book(&self.updates.borrow());
        let greeted = {
            let mut c = client.lock();
            let now = Instant::now();
            c.offer(&hello, now) && c.deliver(&current, now)
        };
        if greeted {
            self.start_workers();
            lock(&self.roster).incoming.push(client.clone());
            if self.closing.load(Ordering::SeqCst) {
                client.restart();
            }
            // An update published after the one above but before the next pass took this
            // client in would otherwise be missed; `deliver` sends each update at most once.
            let latest = Update::from_book(&self.updates.borrow());
            if client.lock().deliver(&latest, Instant::now()) {
                read_until_closed(&client).await;
            }
        }
        client.lock().gone = true;
        self.departed.store(true, Ordering::Release);
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pass for `update`, or for a newer one: joined if another worker started it, else
/// started, with the client list brought up to date first.
fn join_pass(roster: &Mutex<Roster>, departed: &AtomicBool, update: Update) -> Arc<Pass> {
    let mut r = lock(roster);
    if let Some(p) = &r.pass
        && p.update.seq >= update.seq
    {
        return p.clone();
    }
    let left = departed.swap(false, Ordering::AcqRel);
    if left || !r.incoming.is_empty() {
        let mut list: Vec<Arc<Client>> =
            r.list.iter().filter(|c| !c.lock().gone).cloned().collect();
        list.append(&mut r.incoming);
        r.list = Arc::new(list);
    }
    let pass = Arc::new(Pass {
        update,
        list: r.list.clone(),
        next: AtomicUsize::new(0),
    });
    r.pass = Some(pass.clone());
    pass
}

async fn run_worker(
    roster: Arc<Mutex<Roster>>,
    departed: Arc<AtomicBool>,
    mut updates: watch::Receiver<market::Update>,
) {
    while updates.changed().await.is_ok() {
        let newest = Update::from_book(&updates.borrow_and_update());
        let pass = join_pass(&roster, &departed, newest);
        // Each worker writes its own copy, so the clone per socket does not bounce one
        // reference count between the cores.
        let update = Update {
            seq: pass.update.seq,
            text: Utf8Bytes::from(pass.update.text.as_str().to_owned()),
        };
        // Out of tokio's cooperative budget, which would make every write after the first 128
        // of a pass return `Pending` as if the socket were full.
        tokio::task::unconstrained(async {
            let now = Instant::now();
            loop {
                let from = pass.next.fetch_add(CHUNK, Ordering::Relaxed);
                let Some(chunk) = pass.list.get(from..(from + CHUNK).min(pass.list.len())) else {
                    break;
                };
                if chunk.is_empty() {
                    break;
                }
                for c in chunk {
                    if !c.lock().deliver(&update, now) {
                        c.hangup.notify_one();
                        departed.store(true, Ordering::Release);
                    }
                }
            }
        })
        .await;
    }
}
