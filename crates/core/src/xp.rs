//! Experience points for real events only. Each money path hands its committed history rows
//! to [`Xp::note_movement`] (and the security flows call [`Xp::award`] directly); a background
//! awarder turns them into `xp_events` rows and `users.exp`, a batch per transaction, with
//! the users' rows locked so a daily cap holds across instances. A level-up leaves a stored
//! `level_up` notification and a real-time `notification` for the user.
//!
//! What pays (points; a cap is per UTC day and kind):
//!
//! | event | points | cap |
//! |---|---|---|
//! | email verified | 20 | once |
//! | two-factor authentication switched on | 30 | once |
//! | first deposit credited | 50 | once |
//! | first order filled | 50 | once |
//! | a P2P transfer sent | 5 | 25 a day |
//! | an order filled: under 100 USD / under 1,000 USD / more | 2 / 5 / 10 | 50 a day |
//!
//! The queue lives in memory: a server stopping gracefully gives it a few seconds to be written,
//! and awards still in it after that (or at a crash) are not paid. XP is not money, so the hot
//! paths never wait for it.

use crate::Core;
use crate::ledger::{PRICE_ONE, cents_of};
use crate::ledger::{notice, with_retries};
use etx_db::xp::NewXp;
use etx_db::{Batch, now_micros};
use etx_domain::money::parse_positive_amount;
use etx_domain::{Level, XpKind};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Awards waiting beyond this are dropped (and counted): a stalled database must not grow the
/// queue without bound.
const QUEUE: usize = 100_000;
/// Awards written per transaction.
const BATCH: usize = 500;

/// One award before the caps: who, what, the history row or order that earned it ('' for a
/// one-off), and the points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Award {
    pub user_id: String,
    pub kind: XpKind,
    pub r#ref: String,
    pub points: i64,
}

/// Points per event, and the daily cap of a repeating kind.
pub fn points(kind: XpKind) -> (i64, Option<i64>) {
    match kind {
        XpKind::EmailVerified => (20, None),
        XpKind::TwoFactorEnabled => (30, None),
        XpKind::FirstDeposit => (50, None),
        XpKind::FirstTrade => (50, None),
        XpKind::Transfer => (5, Some(25)),
        XpKind::TradeVolume => (0, Some(50)),
    }
}

/// Points of a filled order by its value in US cents.
pub fn trade_points(usd_cents: i128) -> i64 {
    match usd_cents {
        c if c < 10_000 => 2,
        c if c < 100_000 => 5,
        _ => 10,
    }
}

/// A user-facing name for an achievement or award.
pub fn title(kind: XpKind) -> &'static str {
    match kind {
        XpKind::EmailVerified => "Verified email",
        XpKind::TwoFactorEnabled => "Two-factor on",
        XpKind::FirstDeposit => "First deposit",
        XpKind::FirstTrade => "First trade",
        XpKind::Transfer => "Transfer sent",
        XpKind::TradeVolume => "Order filled",
    }
}

pub struct Xp {
    tx: mpsc::Sender<Award>,
    rx: Mutex<Option<mpsc::Receiver<Award>>>,
    /// Awards queued and not yet written (or given up on).
    pending: std::sync::atomic::AtomicUsize,
    /// Award batches this instance committed: a weekly ranking read before the last one is
    /// read again.
    written: std::sync::atomic::AtomicU64,
    /// This week's rankings by length, with when they were read and `written` before the read.
    weekly: Mutex<HashMap<i64, Weekly>>,
}

type Weekly = (Instant, u64, Vec<(etx_db::users::UserRow, i64)>);

/// How long a weekly ranking serves every page that shows it (the home page's leaders
/// included) when this instance awarded nothing since: the points other instances award show
/// after at most this long.
const WEEKLY_FRESH: Duration = Duration::from_secs(5);

impl Default for Xp {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Xp {
            tx,
            rx: Mutex::new(Some(rx)),
            pending: Default::default(),
            written: Default::default(),
            weekly: Default::default(),
        }
    }
}

impl Xp {
    /// A one-off award (its kind's points, `ref` = '').
    pub fn award(&self, user_id: &str, kind: XpKind) {
        self.push(Award {
            user_id: user_id.to_string(),
            kind,
            r#ref: String::new(),
            points: points(kind).0,
        });
    }

    fn push(&self, a: Award) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.tx.try_send(a).is_err() {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            metrics::counter!("etx_xp_dropped_total").increment(1);
        }
    }

    /// Waits until every award queued so far is written, at most `limit`: a stopping server
    /// gives the awarder that long.
    pub async fn drained(&self, limit: std::time::Duration) {
        let start = std::time::Instant::now();
        while self.pending.load(std::sync::atomic::Ordering::SeqCst) > 0 && start.elapsed() < limit
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The awards a committed history row earns, if any (see the table above). `view` is the
    /// row as `GET /api/transactions` shows it.
    pub fn note_movement(&self, state: &Core, user_id: &str, view: &Value) {
        for a in movement_awards(state, user_id, view) {
            self.push(a);
        }
    }
}

/// The awards of one history row: a completed deposit in, a completed transfer out, the
/// incoming side of a fill (one per order).
pub fn movement_awards(state: &Core, user_id: &str, view: &Value) -> Vec<Award> {
    let text = |k: &str| view.get(k).and_then(Value::as_str).unwrap_or("");
    if text("status") != "completed" {
        return Vec::new();
    }
    let award = |kind, r#ref: &str, points| Award {
        user_id: user_id.to_string(),
        kind,
        r#ref: r#ref.to_string(),
        points,
    };
    match (text("type"), text("direction")) {
        ("deposit", "in") => vec![award(
            XpKind::FirstDeposit,
            "",
            points(XpKind::FirstDeposit).0,
        )],
        ("p2p", "out") => vec![award(
            XpKind::Transfer,
            text("id"),
            points(XpKind::Transfer).0,
        )],
        ("trade", "in") => {
            let asset = text("currency");
            let Some(a) = state.assets.get(asset) else {
                return Vec::new();
            };
            let Ok(minor) = parse_positive_amount(text("amount"), a.scale) else {
                return Vec::new();
            };
            let usd = if asset == "USD" {
                PRICE_ONE
            } else {
                state.market.quote(asset).map_or(0, |q| i128::from(q.price))
            };
            let cents = cents_of(i128::from(minor), usd, a.scale);
            vec![
                award(XpKind::FirstTrade, "", points(XpKind::FirstTrade).0),
                award(XpKind::TradeVolume, text("id"), trade_points(cents)),
            ]
        }
        _ => Vec::new(),
    }
}

/// The awarder: takes what is queued, up to `BATCH` at a time, and writes it.
pub fn spawn_awarder(state: Core) -> tokio::task::JoinHandle<()> {
    let rx = state.xp.rx.lock().expect("xp queue lock").take();
    tokio::spawn(async move {
        let Some(mut rx) = rx else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            if let Err(e) = write(&state, &batch).await {
                tracing::warn!(error = %e, awards = batch.len(), "experience points not awarded");
            }
            state
                .xp
                .pending
                .fetch_sub(batch.len(), std::sync::atomic::Ordering::SeqCst);
            batch.clear();
        }
    })
}

/// Applies the caps and writes the awards in one transaction; answers each level-up.
pub async fn write(state: &Core, awards: &[Award]) -> Result<(), crate::CoreError> {
    let day = now_micros().div_euclid(86_400_000_000);
    let mut users: Vec<&str> = awards.iter().map(|a| a.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let ups = with_retries(|| async {
        let db = &state.db;
        let tx = db.begin_write().await?;
        let before: HashMap<String, i64> = db.lock_exp(&tx, &users).await?.into_iter().collect();
        let mut standing: HashMap<(String, String), i64> = db
            .xp_standing(&tx, &users, day)
            .await?
            .into_iter()
            .map(|(u, k, p)| ((u, k), p))
            .collect();
        let mut rows = Vec::new();
        for a in awards {
            if !before.contains_key(&a.user_id) {
                continue;
            }
            let key = (a.user_id.clone(), a.kind.as_str().to_string());
            let given = match points(a.kind).1 {
                None if standing.contains_key(&key) => 0,
                None => {
                    standing.insert(key, 0);
                    a.points
                }
                Some(cap) => {
                    let so_far = standing.entry(key).or_insert(0);
                    let n = a.points.min(cap - *so_far).max(0);
                    *so_far += n;
                    n
                }
            };
            if given > 0 {
                rows.push(NewXp {
                    user_id: &a.user_id,
                    kind: a.kind.as_str(),
                    r#ref: &a.r#ref,
                    points: given,
                });
            }
        }
        let mut deltas: HashMap<String, i64> = HashMap::new();
        for (u, p) in db.insert_xp(&tx, &rows, day).await? {
            *deltas.entry(u).or_insert(0) += p;
        }
        let deltas: Vec<(&str, i64)> = deltas.iter().map(|(u, p)| (u.as_str(), *p)).collect();
        let after = db.add_exp(&tx, &deltas).await?;
        let mut batch = Batch::default();
        let mut ups = Vec::new();
        for (user, exp) in after {
            let old = Level::from_exp(before.get(&user).copied().unwrap_or(0)).level;
            let new = Level::from_exp(exp).level;
            if new > old {
                let n = notice(
                    "level_up",
                    format!("You reached level {new}"),
                    format!("{exp} XP so far: keep going"),
                    json!({"level": new, "exp": exp}),
                );
                n.queue(&mut batch, &user);
                ups.push((user, n));
            }
        }
        db.run_batch(&tx, batch).await?;
        tx.commit().await?;
        state.xp.written.fetch_add(1, Ordering::SeqCst);
        Ok(ups)
    })
    .await?;
    for (user, n) in ups {
        metrics::counter!("etx_level_ups_total").increment(1);
        state.events.to_user(&user, "notification", n.view());
    }
    Ok(())
}

/// The top users by total experience, or by points earned since this week's Monday (UTC):
/// (user, points).
pub async fn leaderboard(
    state: &Core,
    week: bool,
    limit: i64,
) -> Result<Vec<(etx_db::users::UserRow, i64)>, crate::CoreError> {
    if !week {
        let rows = state.db.leaderboard(limit).await?;
        return Ok(rows
            .into_iter()
            .map(|u| {
                let exp = u.exp;
                (u, exp)
            })
            .collect());
    }
    let written = state.xp.written.load(Ordering::SeqCst);
    {
        let cached = state.xp.weekly.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, w, rows)) = cached.get(&limit)
            && *w == written
            && at.elapsed() < WEEKLY_FRESH
        {
            return Ok(rows.clone());
        }
    }
    let read_at = Instant::now();
    let today = now_micros().div_euclid(86_400_000_000);
    // 1970-01-01 was a Thursday: day 4 was the first Monday.
    let monday = today - (today - 4).rem_euclid(7);
    let ranked = state.db.xp_since(monday, limit).await?;
    let ids: Vec<&str> = ranked.iter().map(|(id, _)| id.as_str()).collect();
    let mut users: std::collections::HashMap<String, etx_db::users::UserRow> = state
        .db
        .users_by_ids(&ids)
        .await?
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    let rows: Vec<_> = ranked
        .into_iter()
        .filter_map(|(id, points)| Some((users.remove(&id)?, points)))
        .collect();
    state
        .xp
        .weekly
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(limit, (read_at, written, rows.clone()));
    Ok(rows)
}
