//! Price alerts: a user asks to be told when an asset's price is at or above a level, at or
//! below one, or has moved by a percentage within a window. Each instance keeps the active
//! alerts in an index per asset (levels in ordered sets, so a tick visits only the alerts it
//! triggers, and the moves in a list with the recent prices they are measured against) and
//! evaluates it on every price update. Firing is a conditional update of the alert (active,
//! out of its cool-down) committed with the notification, so an alert fires once however
//! many instances evaluate it; the owner's clients get a `notification` on any instance.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::ledger::{notice, with_retries};
use crate::market::{PRICE_SCALE, price_text};
use crate::time::rfc3339;
use crate::{Core, CoreError};
use etx_db::alerts::AlertRow;
use etx_db::users::UserRow;
use etx_db::{Batch, now_micros};
use etx_domain::AuditAction;
use etx_domain::money::parse_positive_amount;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Alerts one user may have.
pub const MAX_ALERTS_PER_USER: i64 = 100;
/// The longest window of a move alert, and so the price history kept per asset.
const MAX_WINDOW_SECS: i64 = 86_400;

/// `POST /api/alerts`.
#[derive(Debug, Deserialize)]
pub struct NewAlert {
    pub asset: String,
    /// `above`, `below` or `move`.
    pub kind: String,
    /// The level of an above or below alert, in US dollars.
    #[serde(default)]
    pub price: Option<serde_json::Value>,
    /// A move alert's size in percent (0.1 to 100) and window in minutes (1 to 1440).
    #[serde(default)]
    pub move_percent: Option<serde_json::Value>,
    #[serde(default)]
    pub window_minutes: Option<i64>,
    /// Fire again after `cooldown_minutes` (default 60) rather than once.
    #[serde(default)]
    pub repeat: bool,
    /// Also send an email when it fires.
    #[serde(default)]
    pub email: bool,
    #[serde(default)]
    pub cooldown_minutes: Option<i64>,
}

/// An alert as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertView {
    pub id: String,
    pub asset: String,
    /// `above`, `below` or `move`.
    pub kind: String,
    /// US dollars, for above and below.
    pub price: Option<String>,
    pub move_percent: Option<String>,
    pub window_minutes: Option<i64>,
    pub repeat: bool,
    pub email: bool,
    pub cooldown_minutes: i64,
    pub active: bool,
    pub fired_at: Option<String>,
    pub fired_count: i64,
    pub created_at: String,
}

impl AlertView {
    pub fn new(a: &AlertRow) -> Self {
        AlertView {
            id: a.id.clone(),
            asset: a.asset.clone(),
            kind: a.kind.clone(),
            price: a.price.map(price_text),
            move_percent: a.move_bps.map(|b| etx_domain::money::format_amount(b, 2)),
            window_minutes: a.window_secs.map(|s| s / 60),
            repeat: a.repeats,
            email: a.email,
            cooldown_minutes: a.cooldown_secs / 60,
            active: a.active,
            fired_at: a.fired_at.map(rfc3339),
            fired_count: a.fired_count,
            created_at: rfc3339(a.created_at),
        }
    }
}

fn decimal(field: &str, v: &serde_json::Value, scale: u8) -> Result<i64, CoreError> {
    let text = match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(CoreError::field(field, "must be a decimal number")),
    };
    parse_positive_amount(&text, scale).map_err(|e| CoreError::field(field, &e.to_string()))
}

/// Checks a new alert and turns it into its row.
fn plan(state: &Core, user_id: &str, req: &NewAlert) -> Result<AlertRow, CoreError> {
    let asset = req.asset.trim();
    if !state.market.symbols.iter().any(|s| s == asset) {
        return Err(CoreError::field(
            "asset",
            "must be an asset with a live price (not USD)",
        ));
    }
    let (mut price, mut move_bps, mut window_secs) = (None, None, None);
    match req.kind.trim() {
        kind @ ("above" | "below") => {
            let p = req
                .price
                .as_ref()
                .ok_or_else(|| CoreError::field("price", &format!("is required for {kind}")))?;
            price = Some(decimal("price", p, PRICE_SCALE)?);
            if req.move_percent.is_some() || req.window_minutes.is_some() {
                return Err(CoreError::field("move_percent", "is only for move alerts"));
            }
        }
        "move" => {
            let m = req
                .move_percent
                .as_ref()
                .ok_or_else(|| CoreError::field("move_percent", "is required for move"))?;
            let bps = decimal("move_percent", m, 2)?;
            if !(10..=10_000).contains(&bps) {
                return Err(CoreError::field(
                    "move_percent",
                    "must be between 0.1 and 100",
                ));
            }
            let w = req
                .window_minutes
                .ok_or_else(|| CoreError::field("window_minutes", "is required for move"))?;
            if !(1..=MAX_WINDOW_SECS / 60).contains(&w) {
                return Err(CoreError::field(
                    "window_minutes",
                    "must be between 1 and 1440",
                ));
            }
            if req.price.is_some() {
                return Err(CoreError::field("price", "is only for above and below"));
            }
            move_bps = Some(bps);
            window_secs = Some(w * 60);
        }
        _ => return Err(CoreError::field("kind", "must be above, below or move")),
    }
    let cooldown = req.cooldown_minutes.unwrap_or(60);
    if !(1..=7 * 24 * 60).contains(&cooldown) {
        return Err(CoreError::field(
            "cooldown_minutes",
            "must be between 1 and 10080 (a week)",
        ));
    }
    let now = now_micros();
    Ok(AlertRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_string(),
        asset: asset.to_string(),
        kind: req.kind.trim().to_string(),
        price,
        move_bps,
        window_secs,
        repeats: req.repeat,
        email: req.email,
        cooldown_secs: cooldown * 60,
        active: true,
        fired_at: None,
        fired_count: 0,
        created_at: now,
        updated_at: now,
    })
}

pub async fn create(state: &Core, user: &UserRow, req: &NewAlert) -> Result<AlertView, CoreError> {
    let row = plan(state, &user.id, req)?;
    let tx = state.db.begin_write().await?;
    state.db.lock_user(&tx, &user.id).await?;
    if state.db.count_alerts(&tx, &user.id).await? >= MAX_ALERTS_PER_USER {
        return Err(CoreError::LimitExceeded(format!(
            "you have {MAX_ALERTS_PER_USER} alerts, the most allowed: delete one first"
        )));
    }
    let mut batch = Batch::default();
    etx_db::Db::queue_alert(&mut batch, &row);
    crate::audit::Event::new(Some(&user.id), AuditAction::AlertCreate)
        .target("alert", &row.id)
        .details(json!({"asset": row.asset, "kind": row.kind}))
        .queue(&mut batch);
    state.db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    state.alerts.insert(&row);
    Ok(AlertView::new(&row))
}

pub async fn list(state: &Core, user: &UserRow) -> Result<Vec<AlertView>, CoreError> {
    Ok(state
        .db
        .alerts_of(&user.id)
        .await?
        .iter()
        .map(AlertView::new)
        .collect())
}

/// Turns an alert on or off; another user's is a 404.
pub async fn set_active(
    state: &Core,
    user: &UserRow,
    id: &str,
    active: bool,
) -> Result<AlertView, CoreError> {
    let tx = state.db.begin_write().await?;
    let Some(row) = state.db.set_alert_active(&tx, &user.id, id, active).await? else {
        return Err(CoreError::NotFound);
    };
    crate::audit::Event::new(Some(&user.id), AuditAction::AlertUpdate)
        .target("alert", id)
        .details(json!({"active": active}))
        .write(&state.db, &tx)
        .await?;
    tx.commit().await?;
    if active {
        state.alerts.insert(&row);
    } else {
        state.alerts.remove(id);
    }
    Ok(AlertView::new(&row))
}

pub async fn delete(state: &Core, user: &UserRow, id: &str) -> Result<(), CoreError> {
    let tx = state.db.begin_write().await?;
    if !state.db.delete_alert(&tx, &user.id, id).await? {
        return Err(CoreError::NotFound);
    }
    crate::audit::Event::new(Some(&user.id), AuditAction::AlertDelete)
        .target("alert", id)
        .write(&state.db, &tx)
        .await?;
    tx.commit().await?;
    state.alerts.remove(id);
    Ok(())
}

/// One active alert as the evaluator needs it.
#[derive(Debug, Clone)]
struct Watch {
    asset: String,
    kind: Kind,
    /// Not before (micros): the end of the cool-down.
    next: i64,
    /// A move is measured from no earlier than this: the alert's creation or last firing.
    since: i64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Above(i64),
    Below(i64),
    Move { bps: i64, window: i64 },
}

struct MoveWatch {
    id: String,
    bps: i64,
    /// Micros.
    window: i64,
    next: i64,
    since: i64,
}

#[derive(Default)]
struct AssetIndex {
    above: BTreeSet<(i64, String)>,
    below: BTreeSet<(i64, String)>,
    /// Kept inline, so a tick's pass over them touches no map.
    moves: Vec<MoveWatch>,
    /// (micros, price) of recent ticks, oldest first, for the move alerts.
    history: VecDeque<(i64, i64)>,
}

#[derive(Default)]
struct Index {
    assets: HashMap<String, AssetIndex>,
    watches: HashMap<String, Watch>,
}

impl Index {
    fn insert(&mut self, a: &AlertRow) {
        if !a.active || self.watches.contains_key(&a.id) {
            return;
        }
        let kind = match (a.kind.as_str(), a.price, a.move_bps, a.window_secs) {
            ("above", Some(p), _, _) => Kind::Above(p),
            ("below", Some(p), _, _) => Kind::Below(p),
            ("move", _, Some(bps), Some(w)) => Kind::Move {
                bps,
                window: w * 1_000_000,
            },
            _ => return,
        };
        let idx = self.assets.entry(a.asset.clone()).or_default();
        match kind {
            Kind::Above(p) => {
                idx.above.insert((p, a.id.clone()));
            }
            Kind::Below(p) => {
                idx.below.insert((p, a.id.clone()));
            }
            Kind::Move { bps, window } => idx.moves.push(MoveWatch {
                id: a.id.clone(),
                bps,
                window,
                next: a.fired_at.map_or(0, |f| f + a.cooldown_secs * 1_000_000),
                since: a.fired_at.unwrap_or(a.created_at),
            }),
        }
        let next = a.fired_at.map_or(0, |f| f + a.cooldown_secs * 1_000_000);
        self.watches.insert(
            a.id.clone(),
            Watch {
                asset: a.asset.clone(),
                kind,
                next,
                since: a.fired_at.unwrap_or(a.created_at),
            },
        );
    }

    fn remove(&mut self, id: &str) {
        let Some(w) = self.watches.remove(id) else {
            return;
        };
        if let Some(idx) = self.assets.get_mut(&w.asset) {
            match w.kind {
                Kind::Above(p) => {
                    idx.above.remove(&(p, id.to_string()));
                }
                Kind::Below(p) => {
                    idx.below.remove(&(p, id.to_string()));
                }
                Kind::Move { .. } => idx.moves.retain(|m| m.id != id),
            }
        }
    }

    /// The alerts a price of `asset` (ticked at `at`) triggers at `now` (out of their
    /// cool-down); records the price for move alerts.
    fn triggered(&mut self, asset: &str, price: i64, at: i64, now: i64) -> Vec<String> {
        let Index { assets, watches } = self;
        let idx = assets.entry(asset.to_string()).or_default();
        if idx
            .history
            .back()
            .is_none_or(|(t, p)| *p != price && *t <= at)
        {
            idx.history.push_back((at, price));
        }
        while idx
            .history
            .front()
            .is_some_and(|(at, _)| *at < now - MAX_WINDOW_SECS * 1_000_000)
        {
            idx.history.pop_front();
        }
        let due = |id: &String| watches.get(id).is_some_and(|w| w.next <= now);
        let mut out: Vec<String> = idx
            .above
            .range(..(price.saturating_add(1), String::new()))
            .map(|k| &k.1)
            .filter(|id| due(id))
            .cloned()
            .collect();
        out.extend(
            idx.below
                .range((price, String::new())..)
                .map(|k| &k.1)
                .filter(|id| due(id))
                .cloned(),
        );
        for m in &idx.moves {
            if m.next > now {
                continue;
            }
            // The price when the window started, or when the alert was set or last fired if
            // that is later: the last tick at or before then, else the oldest kept.
            let start = (now - m.window).max(m.since);
            let k = idx.history.partition_point(|(at, _)| *at <= start);
            let Some(&(_, then)) = idx.history.get(k.saturating_sub(1)) else {
                continue;
            };
            if then > 0
                && i128::from((price - then).abs()) * 10_000 >= i128::from(m.bps) * i128::from(then)
            {
                out.push(m.id.clone());
            }
        }
        out
    }

    fn snooze(&mut self, id: &str, fired: i64, until: i64) {
        let Some(w) = self.watches.get_mut(id) else {
            return;
        };
        w.next = until;
        w.since = fired;
        if let (Kind::Move { .. }, Some(idx)) = (w.kind, self.assets.get_mut(&w.asset))
            && let Some(m) = idx.moves.iter_mut().find(|m| m.id == id)
        {
            m.next = until;
            m.since = fired;
        }
    }
}

/// Every instance's index of the active alerts.
#[derive(Default)]
pub struct Alerts(Mutex<Index>);

impl Alerts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, a: &AlertRow) {
        self.lock().insert(a);
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The alert fired at `fired` and is not evaluated again before `until` (its cool-down).
    pub fn snooze(&self, id: &str, fired: i64, until: i64) {
        self.lock().snooze(id, fired, until);
    }

    pub fn len(&self) -> usize {
        self.lock().watches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The alerts the prices (asset, price, tick time) trigger at `now`.
    pub fn evaluate(&self, prices: &[(String, i64, i64)], now: i64) -> Vec<String> {
        let mut index = self.lock();
        prices
            .iter()
            .flat_map(|(asset, price, at)| index.triggered(asset, *price, *at, now))
            .collect()
    }
}

/// How far back each sync looks for alerts created on other instances.
const SYNC_LOOKBACK_MICROS: i64 = 1_000_000;

/// Evaluates the alerts on every price update; loads them at start and picks up other
/// instances' new ones every `[trading] sync_ms`.
pub fn spawn_evaluator(state: Core) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut updates = state.market.subscribe();
        let mut every =
            crate::market::Market::timer(Duration::from_millis(state.config.trading.sync_ms));
        let mut synced = i64::MIN;
        loop {
            let Some(timer) = crate::market::Market::next_wake(&mut updates, &mut every).await
            else {
                return;
            };
            if timer {
                match sync(&state, synced).await {
                    Ok(at) => synced = at,
                    Err(e) => tracing::warn!(error = %e, "alert sync failed"),
                }
            }
            if state.market.is_stale() {
                continue;
            }
            let now = now_micros();
            let prices: Vec<(String, i64, i64)> = state
                .market
                .quotes()
                .into_iter()
                .map(|(s, q)| (s, q.price, q.at))
                .collect();
            for id in state.alerts.evaluate(&prices, now) {
                if let Err(e) = fire(&state, &id, &prices, now).await {
                    tracing::warn!(error = %e, alert = %id, "alert could not fire");
                }
            }
        }
    })
}

async fn sync(state: &Core, since: i64) -> Result<i64, etx_db::DbErr> {
    let started = now_micros();
    let mut after = (
        if since == i64::MIN {
            i64::MIN
        } else {
            since - SYNC_LOOKBACK_MICROS
        },
        String::new(),
    );
    loop {
        let rows = state.db.active_alerts((after.0, &after.1), 5_000).await?;
        let Some(last) = rows.last() else { break };
        after = (last.created_at, last.id.clone());
        let mut index = state.alerts.lock();
        for a in &rows {
            index.insert(a);
        }
    }
    Ok(started)
}

/// Fires one alert: the conditional update and the notification in one transaction, then the
/// `notification` event. Another instance that got there first, a deleted or switched-off
/// alert, or one in its cool-down, does nothing.
async fn fire(
    state: &Core,
    id: &str,
    prices: &[(String, i64, i64)],
    now: i64,
) -> Result<(), CoreError> {
    let fired = with_retries(|| async {
        let tx = state.db.begin_write().await?;
        let Some(a) = state.db.fire_alert(&tx, id, now).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let price = prices
            .iter()
            .find(|(s, _, _)| *s == a.asset)
            .map_or(0, |(_, p, _)| *p);
        let body = match a.kind.as_str() {
            "above" => format!(
                "{} is at {} USD, at or above your {}",
                a.asset,
                price_text(price),
                price_text(a.price.unwrap_or(0))
            ),
            "below" => format!(
                "{} is at {} USD, at or below your {}",
                a.asset,
                price_text(price),
                price_text(a.price.unwrap_or(0))
            ),
            _ => format!(
                "{} moved {} % or more within {} minutes: now {} USD",
                a.asset,
                etx_domain::money::format_amount(a.move_bps.unwrap_or(0), 2),
                a.window_secs.unwrap_or(0) / 60,
                price_text(price)
            ),
        };
        let n = notice(
            "price_alert",
            format!("{} price alert", a.asset),
            body,
            json!({"alert_id": a.id, "asset": a.asset, "kind": a.kind, "price": price_text(price)}),
        );
        let mut batch = Batch::default();
        n.queue(&mut batch, &a.user_id);
        state.db.run_batch(&tx, batch).await?;
        let mut mailed = false;
        if a.email
            && let Some(u) = state.db.user_by_id_in(&tx, &a.user_id).await?
            && u.is_active
        {
            let m = crate::mail::alert_mail(state, &u.username, &u.email, &n.title, &n.body)
                .map_err(CoreError::Internal)?;
            state.db.queue_mail_in(&tx, m).await?;
            mailed = true;
        }
        tx.commit().await?;
        if mailed {
            state.mailer.wake.notify_one();
        }
        Ok(Some((a, n)))
    })
    .await?;
    match fired {
        Some((a, n)) => {
            metrics::counter!("etx_price_alerts_fired_total").increment(1);
            if a.repeats {
                state
                    .alerts
                    .snooze(id, now, now + a.cooldown_secs * 1_000_000);
            } else {
                state.alerts.remove(id);
            }
            state.events.to_user(&a.user_id, "notification", n.view());
        }
        None => match state.db.alert(None, id).await? {
            Some(a) if a.active => state.alerts.snooze(
                id,
                a.fired_at.unwrap_or(now),
                a.fired_at.unwrap_or(now) + a.cooldown_secs * 1_000_000,
            ),
            _ => state.alerts.remove(id),
        },
    }
    Ok(())
}
