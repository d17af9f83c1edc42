//! Trading against the platform: the price of a pair from the live feed, the spread, the fee,
//! and quotes a user can execute within a few seconds at exactly the quoted price.
//!
//! The platform is the counterparty of every order. A pair `BASE/QUOTE` is priced from the
//! feed's USD prices of both assets (USD itself is 1), so any two assets form a pair, routed
//! through USD. A buy pays the price plus the spread, a sell receives the price minus it; the
//! fee is `fee_bps` of the order's value in the quote asset, at least `fee_min_cents` worth.
//! Every rounding favours the platform by less than one minor unit: what a user pays is
//! rounded up, what they receive is rounded down. Nothing here uses floating point.
//!
//! A quote's id is its terms sealed with the server key and bound to the user (the same
//! `SecretBox` that seals 2FA secrets), so any instance can check it without storing it, and
//! neither its terms nor its expiry can be changed by the client.

pub mod book;
pub mod group;
mod matcher;
mod resting;
pub mod settings;

pub use matcher::spawn_matcher;
pub use resting::cancel_order;

use crate::ledger::{
    AmountText, Asset, Failure, Movement, Outcome, amount_field, movement_event, scale_of,
};
use crate::market::price_text;
use crate::time::rfc3339;
use crate::{Core, CoreError};
use etx_db::ledger::{NewTransaction, account_id};
use etx_db::orders::OrderRow;
use etx_db::users::UserRow;
use etx_db::{Batch, Db, now_micros};
use etx_domain::money::{AmountError, format_amount, parse_positive_amount};
use etx_domain::{AccountKind, AuditAction, Side, TxKind};
use serde::{Deserialize, Serialize};

/// `[trading]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradingConfig {
    /// Added to the market price when a user buys, taken off when they sell (basis points).
    pub spread_bps: u32,
    /// The fee in basis points of an order's value, and its minimum in US cents.
    pub fee_bps: u32,
    pub fee_min_cents: i64,
    /// The smallest and largest order, by value in US cents.
    pub min_order_cents: i64,
    pub max_order_cents: i64,
    /// How long a quote can be executed.
    pub quote_ttl_secs: u64,
    /// The platform's largest position in one asset, either way, by value in US cents.
    pub max_exposure_cents: i64,
    /// What a buy stop holds beyond its cost at the stop price (basis points).
    pub stop_margin_bps: u32,
    /// Resting orders settled per transaction by the matcher, and transactions settled side
    /// by side (PostgreSQL; each takes its own group of accounts, see `user_shard`).
    pub match_batch: usize,
    pub match_groups: usize,
    /// How often the matcher picks up orders placed on other instances.
    pub sync_ms: u64,
    /// Open limit and stop orders per user.
    pub max_open_orders: i64,
    /// Committers of market orders on PostgreSQL (SQLite has one): each commits every order
    /// waiting, up to `[transfers] max_group`, in one transaction, on its own shard of the
    /// platform's trading accounts.
    #[serde(default = "default_commit_lanes")]
    pub commit_lanes: usize,
}

fn default_commit_lanes() -> usize {
    2
}

impl TradingConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.spread_bps >= 10_000 || self.fee_bps >= 10_000 {
            anyhow::bail!("invalid setting trading.spread_bps/fee_bps: must be below 10000");
        }
        if self.fee_min_cents < 0
            || self.min_order_cents <= 0
            || self.min_order_cents > self.max_order_cents
        {
            anyhow::bail!(
                "invalid setting trading.*_cents: fee_min >= 0 and 0 < min_order <= max_order"
            );
        }
        if self.max_exposure_cents <= 0 {
            anyhow::bail!("invalid setting trading.max_exposure_cents: must be positive");
        }
        if self.stop_margin_bps > 10_000
            || !(1..=10_000).contains(&self.match_batch)
            || !(1..=16).contains(&self.match_groups)
            || !(1..=16).contains(&self.commit_lanes)
            || !(10..=60_000).contains(&self.sync_ms)
            || self.max_open_orders < 1
        {
            anyhow::bail!(
                "invalid setting trading.stop_margin_bps (<= 10000), match_batch (1..=10000), \
                 match_groups (1..=16), commit_lanes (1..=16), \
                 sync_ms (10..=60000) or max_open_orders (>= 1)"
            );
        }
        if !(1..=300).contains(&self.quote_ttl_secs) {
            anyhow::bail!("invalid setting trading.quote_ttl_secs: must be 1..=300");
        }
        Ok(())
    }
}

pub(crate) use crate::ledger::{PRICE_ONE, cents_of};

/// A pair such as `BTC/USD`: the base asset is bought or sold, the quote asset pays.
#[derive(Clone, Copy)]
pub struct Pair<'a> {
    pub base: &'a Asset,
    pub quote: &'a Asset,
}

impl<'a> Pair<'a> {
    pub fn parse(state: &'a Core, text: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::field("pair", "must be two supported assets such as BTC/USD");
        let (base, quote) = text.trim().split_once('/').ok_or_else(bad)?;
        let base = state.assets.get(base).ok_or_else(bad)?;
        let quote = state.assets.get(quote).ok_or_else(bad)?;
        if base.code == quote.code {
            return Err(CoreError::field("pair", "must be two different assets"));
        }
        Ok(Pair { base, quote })
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.base.code, self.quote.code)
    }
}

fn stale() -> CoreError {
    CoreError::Unavailable(
        "prices are stale: trading is paused until the price feed is back".into(),
    )
}

/// The live USD price of an asset (× 10^8); trading stops when the feed is stale or has no
/// price for it.
fn usd_price(state: &Core, asset: &Asset) -> Result<i128, CoreError> {
    if asset.code == "USD" {
        return Ok(PRICE_ONE);
    }
    if state.market.is_stale() {
        return Err(stale());
    }
    match state.market.quote(&asset.code) {
        Some(q) if q.price > 0 => Ok(i128::from(q.price)),
        _ => Err(CoreError::Unavailable(format!(
            "there is no live price for {}: trading it is paused",
            asset.code
        ))),
    }
}

/// What an order costs or brings, all in minor units of the pair's assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Of the base asset.
    pub amount: i64,
    /// Quote asset per base unit, × 10^8, spread included.
    pub price: i64,
    /// `amount × price` in the quote asset.
    pub value: i64,
    /// In the quote asset.
    pub fee: i64,
    /// What the user pays (buy: value + fee) or receives (sell: value − fee), quote asset.
    pub total: i64,
    /// The order's value in US cents, for the order size limits.
    pub usd_cents: i64,
}

fn ceil_div(n: i128, d: i128) -> i128 {
    n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0)
}

fn overflow() -> CoreError {
    amount_field(AmountError::Overflow)
}

fn to_i64(v: i128) -> Result<i64, CoreError> {
    i64::try_from(v).map_err(|_| overflow())
}

/// Prices an order of `amount` (base minor units) from the two assets' USD prices (× 10^8).
pub fn price_order(
    cfg: &TradingConfig,
    pair: Pair<'_>,
    base_usd: i128,
    quote_usd: i128,
    side: Side,
    amount: i64,
) -> Result<Terms, CoreError> {
    let (bid, ask) = bid_ask(cfg, base_usd, quote_usd);
    let price = match side {
        Side::Buy => ask,
        Side::Sell => bid,
    };
    if price <= 0 {
        return Err(CoreError::Unavailable(format!(
            "{} has no usable price",
            pair.name()
        )));
    }
    terms_at(cfg, pair, quote_usd, side, amount, price)
}

/// What the platform pays (bid) and asks (ask) for one base unit, quote asset × 10^8: the
/// mid price through USD, minus and plus the spread.
pub fn bid_ask(cfg: &TradingConfig, base_usd: i128, quote_usd: i128) -> (i128, i128) {
    let mid = base_usd * PRICE_ONE / quote_usd;
    let spread = i128::from(cfg.spread_bps);
    (
        mid * (10_000 - spread) / 10_000,
        ceil_div(mid * (10_000 + spread), 10_000),
    )
}

/// The terms of an order of `amount` at `price` (quote asset per base unit × 10^8).
pub fn terms_at(
    cfg: &TradingConfig,
    pair: Pair<'_>,
    quote_usd: i128,
    side: Side,
    amount: i64,
    price: i128,
) -> Result<Terms, CoreError> {
    let (bs, qs) = (u32::from(pair.base.scale), u32::from(pair.quote.scale));
    let scaled = i128::from(amount)
        .checked_mul(price)
        .and_then(|v| v.checked_mul(10i128.pow(qs)))
        .ok_or_else(overflow)?;
    let unit = PRICE_ONE * 10i128.pow(bs);
    let value = match side {
        Side::Buy => ceil_div(scaled, unit),
        Side::Sell => scaled / unit,
    };
    let fee_min = ceil_div(
        i128::from(cfg.fee_min_cents) * 1_000_000 * 10i128.pow(qs),
        quote_usd,
    );
    let fee = ceil_div(value * i128::from(cfg.fee_bps), 10_000).max(fee_min);
    let usd_cents = cents_of(value, quote_usd, pair.quote.scale);
    if usd_cents < i128::from(cfg.min_order_cents) || usd_cents > i128::from(cfg.max_order_cents) {
        return Err(CoreError::LimitExceeded(format!(
            "an order must be worth between ${} and ${} (this one: ${})",
            format_amount(cfg.min_order_cents, 2),
            format_amount(cfg.max_order_cents, 2),
            format_amount(to_i64(usd_cents)?, 2),
        )));
    }
    let total = match side {
        Side::Buy => value + fee,
        Side::Sell => value - fee,
    };
    if total <= 0 {
        return Err(CoreError::field("amount", "is too small to cover the fee"));
    }
    Ok(Terms {
        amount,
        price: to_i64(price)?,
        value: to_i64(value)?,
        fee: to_i64(fee)?,
        total: to_i64(total)?,
        usd_cents: to_i64(usd_cents)?,
    })
}

/// A quote's request: what a market order would be. The server sets the price.
#[derive(Debug, Deserialize)]
pub struct QuoteRequest {
    pub pair: String,
    pub side: String,
    pub amount: AmountText,
    /// Refused when present: market prices come from the server's feed.
    #[serde(default)]
    pub price: Option<serde_json::Value>,
    #[serde(default)]
    pub limit_price: Option<serde_json::Value>,
    #[serde(default)]
    pub stop_price: Option<serde_json::Value>,
}

/// A pair, side and amount checked, priced at the live feed.
pub struct Priced<'a> {
    pub pair: Pair<'a>,
    pub side: Side,
    pub terms: Terms,
}

fn refuse_client_price(
    price: &Option<serde_json::Value>,
    limit_price: &Option<serde_json::Value>,
    stop_price: &Option<serde_json::Value>,
) -> Result<(), CoreError> {
    for (field, v) in [
        ("price", price),
        ("limit_price", limit_price),
        ("stop_price", stop_price),
    ] {
        if v.is_some() {
            return Err(CoreError::field(
                field,
                "is set by the server: a market order fills at the live price",
            ));
        }
    }
    Ok(())
}

fn parse_side(text: &str) -> Result<Side, CoreError> {
    Side::parse(text.trim()).ok_or_else(|| CoreError::field("side", "must be buy or sell"))
}

/// Prices a market order of `amount` (decimal text of the base asset) at the live feed.
fn price_market<'a>(
    state: &'a Core,
    pair: &str,
    side: &str,
    amount: &str,
) -> Result<Priced<'a>, CoreError> {
    let pair = Pair::parse(state, pair)?;
    let side = parse_side(side)?;
    let amount = parse_positive_amount(amount.trim(), pair.base.scale).map_err(amount_field)?;
    let cfg = settings::config_for(state, &pair)?;
    let (base_usd, quote_usd) = (usd_price(state, pair.base)?, usd_price(state, pair.quote)?);
    let terms = price_order(&cfg, pair, base_usd, quote_usd, side, amount)?;
    Ok(Priced { pair, side, terms })
}

/// Prices a quote's request at the live feed.
pub fn price_now<'a>(state: &'a Core, req: &QuoteRequest) -> Result<Priced<'a>, CoreError> {
    refuse_client_price(&req.price, &req.limit_price, &req.stop_price)?;
    price_market(state, &req.pair, &req.side, &req.amount.0)
}

/// A quote as the API shows it. Amounts are decimal strings of the asset named beside them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderQuote {
    /// Pass it to `POST /api/orders` to fill at exactly these terms before `expires_at`.
    pub quote_id: String,
    pub pair: String,
    pub side: String,
    /// Of the base asset.
    pub amount: String,
    /// Quote asset per base unit, spread included.
    pub price: String,
    /// `amount × price`, quote asset.
    pub value: String,
    /// Quote asset.
    pub fee: String,
    /// What you pay (buy) or receive (sell), quote asset.
    pub total: String,
    /// The asset `value`, `fee` and `total` are in.
    pub quote_currency: String,
    pub expires_at: String,
}

/// The sealed content of a quote id.
#[derive(Serialize, Deserialize)]
struct Sealed {
    pair: String,
    side: String,
    terms: Terms,
    expires: i64,
}

fn quote_aad(user_id: &str) -> Vec<u8> {
    format!("trading quote {user_id}").into_bytes()
}

/// A quote for `user_id`, executable until it expires.
pub fn quote(state: &Core, user_id: &str, req: &QuoteRequest) -> Result<OrderQuote, CoreError> {
    let p = price_now(state, req)?;
    let ttl = i64::try_from(state.config.trading.quote_ttl_secs).unwrap_or(10);
    let expires = now_micros() + ttl * 1_000_000;
    let sealed = Sealed {
        pair: p.pair.name(),
        side: p.side.to_string(),
        terms: p.terms,
        expires,
    };
    let text = serde_json::to_vec(&sealed).map_err(|e| CoreError::Internal(e.into()))?;
    let (bs, qs) = (p.pair.base.scale, p.pair.quote.scale);
    Ok(OrderQuote {
        quote_id: state.secret_box.seal(&text, &quote_aad(user_id)),
        pair: sealed.pair,
        side: p.side.to_string(),
        amount: format_amount(p.terms.amount, bs),
        price: price_text(p.terms.price),
        value: format_amount(p.terms.value, qs),
        fee: format_amount(p.terms.fee, qs),
        total: format_amount(p.terms.total, qs),
        quote_currency: p.pair.quote.code.clone(),
        expires_at: rfc3339(expires),
    })
}

/// The terms of a quote `user_id` was given: 422 for an id that is not one, 409 once expired.
pub fn open_quote<'a>(
    state: &'a Core,
    user_id: &str,
    quote_id: &str,
) -> Result<Priced<'a>, CoreError> {
    let invalid = || CoreError::field("quote_id", "is not a quote of yours");
    let text = state
        .secret_box
        .open(quote_id.trim(), &quote_aad(user_id))
        .map_err(|_| invalid())?;
    let sealed: Sealed = serde_json::from_slice(&text).map_err(|_| invalid())?;
    if now_micros() > sealed.expires {
        return Err(CoreError::Conflict {
            message: "the quote expired: ask for a new one".into(),
            fields: Default::default(),
        });
    }
    Ok(Priced {
        pair: Pair::parse(state, &sealed.pair)?,
        side: Side::parse(&sealed.side).ok_or_else(invalid)?,
        terms: sealed.terms,
    })
}

/// `POST /api/orders`: a market order, priced now or by a quote the user was given.
#[derive(Debug, Deserialize)]
pub struct OrderRequest {
    #[serde(default)]
    pub pair: Option<String>,
    #[serde(default)]
    pub side: Option<String>,
    /// `market` (the default), `limit` or `stop`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub amount: Option<AmountText>,
    /// Fills at exactly the quote's terms, or 409 once it expired.
    #[serde(default)]
    pub quote_id: Option<String>,
    /// Refused: a market order's price is the server's.
    #[serde(default)]
    pub price: Option<serde_json::Value>,
    /// A limit order's price; refused on a market order.
    #[serde(default)]
    pub limit_price: Option<serde_json::Value>,
    /// A stop order's trigger; refused on a market order.
    #[serde(default)]
    pub stop_price: Option<serde_json::Value>,
    /// A limit or stop order's end (RFC 3339); without it the order rests until cancelled.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// An order as the API shows it. Amounts are decimal strings: `amount` of the base asset,
/// `value`, `fee` and `total` of the quote asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    pub id: String,
    pub pair: String,
    pub side: String,
    /// `market`, `limit` or `stop`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `filled`; a limit or stop order is `open` until it is `filled`, `cancelled`, `expired`
    /// or `rejected` (a stop whose market price no longer fitted what it held).
    pub status: String,
    pub amount: String,
    pub price: String,
    pub value: String,
    pub fee: String,
    /// Paid (buy) or received (sell).
    pub total: String,
    pub quote_currency: String,
    /// Filled from a quote.
    pub from_quote: bool,
    /// A limit order's limit price or a stop order's stop price.
    pub trigger_price: Option<String>,
    /// What an open order holds of `held_currency` (zero once it ended).
    pub held: String,
    pub held_currency: Option<String>,
    pub expires_at: Option<String>,
    /// Why it ended without filling.
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl OrderView {
    pub fn new(state: &Core, o: &OrderRow) -> Self {
        let (bs, qs) = (
            scale_of(state, &o.base_asset),
            scale_of(state, &o.quote_asset),
        );
        OrderView {
            id: o.id.clone(),
            pair: format!("{}/{}", o.base_asset, o.quote_asset),
            side: o.side.clone(),
            kind: o.kind.clone(),
            status: o.status.clone(),
            amount: format_amount(o.amount, bs),
            price: price_text(o.price),
            value: format_amount(o.value, qs),
            fee: format_amount(o.fee, qs),
            total: format_amount(o.total, qs),
            quote_currency: o.quote_asset.clone(),
            from_quote: o.quote_id.is_some(),
            trigger_price: o.trigger_price.map(price_text),
            held: format_amount(
                if o.status == "open" { o.held } else { 0 },
                o.held_asset.as_deref().map_or(0, |a| scale_of(state, a)),
            ),
            held_currency: o.held_asset.clone(),
            expires_at: o.expires_at.map(rfc3339),
            reason: o.reason.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
        }
    }
}

/// The answer to an order: the order and the user's balances of the pair's two assets after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderPlaced {
    pub order: OrderView,
    pub balances: std::collections::BTreeMap<String, String>,
}

/// Which terms an order fills at: a quote's, or the live price's now.
fn order_terms<'a>(
    state: &'a Core,
    user_id: &str,
    req: &OrderRequest,
) -> Result<Priced<'a>, CoreError> {
    refuse_client_price(&req.price, &req.limit_price, &req.stop_price)?;
    if let Some(id) = &req.quote_id {
        let p = open_quote(state, user_id, id)?;
        // A quote keeps its price and fee, not the right to trade a pair halted since.
        settings::config_for(state, &p.pair)?;
        let differs = req
            .pair
            .as_deref()
            .is_some_and(|t| Pair::parse(state, t).map_or(true, |x| x.name() != p.pair.name()))
            || req
                .side
                .as_deref()
                .is_some_and(|t| parse_side(t).map_or(true, |s| s != p.side))
            || req.amount.as_ref().is_some_and(|a| {
                parse_positive_amount(a.0.trim(), p.pair.base.scale) != Ok(p.terms.amount)
            });
        if differs {
            return Err(CoreError::field(
                "quote_id",
                "was given for another pair, side or amount",
            ));
        }
        return Ok(p);
    }
    let missing = |f: &str| CoreError::field(f, "is required (or give a quote_id)");
    let pair = req.pair.as_deref().ok_or_else(|| missing("pair"))?;
    let side = req.side.as_deref().ok_or_else(|| missing("side"))?;
    let amount = req.amount.as_ref().ok_or_else(|| missing("amount"))?;
    price_market(state, pair, side, &amount.0)
}

/// Places a market order: it fills at once against the platform, in one journal entry over
/// both assets with the orders committed with it, or not at all. Requires an idempotency key.
pub async fn place_order(
    state: &Core,
    user: &UserRow,
    key: &str,
    body: &serde_json::value::RawValue,
) -> Result<Outcome, CoreError> {
    let (m, req) = Movement::start::<OrderRequest>(&user.id, key, "order", body)?;
    let stop = match req.kind.as_deref().map(str::trim) {
        None | Some("market") => None,
        Some("limit") => Some(false),
        Some("stop") => Some(true),
        Some(_) => return Err(CoreError::field("type", "must be market, limit or stop")),
    };
    if let Some(stop) = stop {
        return resting::place(state, user, &m, &req, stop).await;
    }
    // A replay answers as the first request did, even after its quote expired.
    let priced = match order_terms(state, &user.id, &req) {
        Ok(p) => p,
        Err(e) => {
            return match m.earlier(state).await? {
                Some(o) => Ok(o),
                None => Err(e),
            };
        }
    };
    m.run(state, || {
        // The id as issued: a padded copy opens the same quote and must count as it.
        fill(
            state,
            user,
            &m,
            &priced,
            req.quote_id.as_deref().map(str::trim),
        )
    })
    .await
}

/// One attempt at filling an order: it is planned here and committed with whatever other
/// orders are waiting (`group`).
async fn fill(
    state: &Core,
    user: &UserRow,
    m: &Movement<'_>,
    p: &Priced<'_>,
    quote_id: Option<&str>,
) -> Result<Outcome, Failure> {
    if state.market.is_stale() {
        return Err(stale().into());
    }
    let (base, quote) = (&p.pair.base.code, &p.pair.quote.code);
    let t = p.terms;
    let u = user.id.as_str();
    let now = now_micros();
    let order = OrderRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: u.to_string(),
        base_asset: base.clone(),
        quote_asset: quote.clone(),
        side: p.side.to_string(),
        kind: "market".into(),
        status: "filled".into(),
        amount: t.amount,
        price: t.price,
        value: t.value,
        fee: t.fee,
        total: t.total,
        quote_id: quote_id.map(str::to_string),
        // The commit group's journal entry, set when the group commits.
        entry_id: None,
        created_at: now,
        updated_at: now,
        trigger_price: None,
        held: 0,
        held_asset: None,
        expires_at: None,
        reason: None,
    };
    let mut inserts = Batch::default();
    let (history, base_view, quote_view) = TradeHistory::new(
        state,
        TradeRows {
            user_id: u,
            base,
            quote,
            side: p.side,
            terms: &t,
            note: &format!("{} {}", p.side, p.pair.name()),
        },
    );
    crate::audit::Event::new(Some(u), AuditAction::OrderPlace)
        .target("order", &order.id)
        .details(serde_json::json!({
            "pair": p.pair.name(),
            "side": order.side,
            "type": order.kind,
            "amount": format_amount(t.amount, p.pair.base.scale),
            "price": price_text(t.price),
            "total": format_amount(t.total, p.pair.quote.scale),
        }))
        .queue(&mut inserts);
    let mut exposure = Vec::new();
    for asset in [p.pair.base, p.pair.quote] {
        if asset.code != "USD" {
            exposure.push((asset.code.clone(), usd_price(state, asset)?, asset.scale));
        }
    }
    let plan = group::Planned {
        user_id: u.to_string(),
        key: m.key.to_string(),
        scope: m.scope,
        request_hash: m.hash.clone(),
        base: base.clone(),
        quote: quote.clone(),
        base_scale: p.pair.base.scale,
        quote_scale: p.pair.quote.scale,
        side: p.side,
        terms: t,
        quote_id: quote_id.map(str::to_string),
        memo: format!(
            "{} {} {}",
            p.side,
            p.pair.name(),
            format_amount(t.amount, p.pair.base.scale)
        ),
        exposure,
        view: OrderView::new(state, &order),
        order,
        history,
        inserts,
    };
    let order_id = plan.order.id.clone();
    let filled = state.orders.submit(state, plan).await?;
    tracing::info!(order = %order_id, user = %u, pair = %p.pair.name(), side = %p.side, "order filled");
    crate::ledger::publish(
        state,
        vec![
            movement_event(state, u, base, filled.base_balance, base_view, None),
            movement_event(state, u, quote, filled.quote_balance, quote_view, None),
        ],
    );
    Ok(filled.outcome)
}

/// What a fill's two history rows say.
pub(crate) struct TradeRows<'a> {
    pub user_id: &'a str,
    pub base: &'a str,
    pub quote: &'a str,
    pub side: Side,
    pub terms: &'a Terms,
    pub note: &'a str,
}

/// A fill's history rows: the base asset bought or sold, and the quote asset paid (the value)
/// or received (the total), with the fee on the quote side. They are made before the journal
/// entry they point to is known: a market order's entry is its commit group's.
pub(crate) struct TradeHistory {
    user_id: String,
    note: String,
    rows: [HistoryRow; 2],
}

struct HistoryRow {
    id: String,
    direction: &'static str,
    asset: String,
    amount: i64,
    fee: i64,
    usd_value: Option<i64>,
}

impl HistoryRow {
    fn row<'a>(&'a self, h: &'a TradeHistory, entry_id: Option<&'a str>) -> NewTransaction<'a> {
        NewTransaction {
            id: &self.id,
            user_id: &h.user_id,
            kind: TxKind::Trade,
            direction: self.direction,
            asset: &self.asset,
            amount: self.amount,
            fee: self.fee,
            status: "completed",
            counterparty_id: None,
            note: Some(&h.note),
            entry_id,
            usd_value: self.usd_value,
        }
    }
}

impl TradeHistory {
    /// The rows of a fill, and their views (base, quote) for the real-time events.
    pub(crate) fn new(
        state: &Core,
        r: TradeRows<'_>,
    ) -> (TradeHistory, serde_json::Value, serde_json::Value) {
        let t = r.terms;
        let (base_dir, quote_dir, quote_amount) = match r.side {
            Side::Buy => ("in", "out", t.value),
            Side::Sell => ("out", "in", t.total),
        };
        // Both rows carry what the fill was worth: what a buy paid, fee included, or what a
        // sell received, fee deducted. That is the bought asset's cost and the sold asset's
        // proceeds.
        let worth = crate::ledger::usd_value_now(state, r.quote, t.total);
        let row = |direction, asset: &str, amount, fee| HistoryRow {
            id: uuid::Uuid::now_v7().to_string(),
            direction,
            asset: asset.to_string(),
            amount,
            fee,
            usd_value: worth.or_else(|| crate::ledger::usd_value_now(state, asset, amount)),
        };
        let h = TradeHistory {
            user_id: r.user_id.to_string(),
            note: r.note.to_string(),
            rows: [
                row(base_dir, r.base, t.amount, 0),
                row(quote_dir, r.quote, quote_amount, t.fee),
            ],
        };
        let [base, quote] = &h.rows;
        let (base_view, quote_view) = (
            crate::ledger::txn_view(state, &base.row(&h, None)),
            crate::ledger::txn_view(state, &quote.row(&h, None)),
        );
        (h, base_view, quote_view)
    }

    /// Queues both rows, pointing at the journal entry `entry_id`.
    pub(crate) fn queue(&self, batch: &mut Batch, entry_id: &str) {
        let mut rows = self.rows.each_ref().map(|r| r.row(self, Some(entry_id)));
        Db::insert_transactions(batch, &mut rows);
    }
}

/// The platform's position in an asset after an order changes it by `change`: an order may
/// grow the position only while its value (at `usd` × 10^8 per unit of `scale`) stays within
/// `[trading] max_exposure_cents`; one that shrinks it is always taken. `None` when refused.
fn position_after(was: i64, change: i64, usd: i128, scale: u8, limit: i128) -> Option<i64> {
    let now = was.checked_add(change)?;
    let grows = now.unsigned_abs() > was.unsigned_abs();
    (!grows || cents_of(i128::from(now).abs(), usd, scale) <= limit).then_some(now)
}

/// How a fill changes the platform's inventory of the pair's base and quote assets.
fn inventory_change(side: Side, t: &Terms) -> (i64, i64) {
    match side {
        Side::Buy => (-t.amount, t.value),
        Side::Sell => (t.amount, -t.value),
    }
}

/// The platform's position in each of `assets`, summed over its shards as this transaction
/// sees them. Commits running side by side (market-order lanes, matcher groups) each count
/// their own orders exactly; together they may pass the limit by at most one group's orders.
async fn positions(
    db: &Db,
    tx: &etx_db::DatabaseTransaction,
    assets: &[&str],
) -> Result<std::collections::HashMap<String, i64>, etx_db::DbErr> {
    let ids: Vec<String> = assets
        .iter()
        .flat_map(|asset| {
            (0..TRADING_SHARDS)
                .map(move |k| account_id(&shard_owner(k), AccountKind::TradingInventory, asset))
        })
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(db.sums_by_asset(tx, &ids).await?.into_iter().collect())
}

/// Shards of the platform's trading accounts (inventory and fees per asset). Every order
/// updates the platform's side of the ledger; spread over shards (one per market-order lane,
/// and the owner's for a resting order's fill), concurrent commits do not queue on one row's
/// lock. The shard's owner id (`platform-N`) cannot be a user's (a UUID).
const TRADING_SHARDS: u128 = 16;

fn shard_owner(k: u128) -> String {
    format!("platform-{k}")
}

/// The shard of a resting order's fill, by its owner: the matcher settles batches side by
/// side, one group of shards each (`shard % groups`), so no two batches lock the same
/// account, the owner's or the platform's.
fn user_shard(user_id: &str) -> u128 {
    // FNV-1a: stable across builds and instances.
    let h = user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    u128::from(h) % TRADING_SHARDS
}

/// One of the user's orders; another user's is a 404.
pub async fn get_order(state: &Core, user: &UserRow, id: &str) -> Result<OrderView, CoreError> {
    match state.db.order(&user.id, id).await? {
        Some(o) => Ok(OrderView::new(state, &o)),
        None => Err(CoreError::NotFound),
    }
}

/// The statuses an order can have.
const STATUSES: [&str; 5] = ["open", "filled", "cancelled", "expired", "rejected"];

/// Which of a user's orders a list or an export shows.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<&'static str>,
    /// (base, quote)
    pub pair: Option<(String, String)>,
}

impl OrderFilter {
    /// A status that is not one, or a pair that is not one, is a 422.
    pub fn parse(
        state: &Core,
        status: Option<&str>,
        pair: Option<&str>,
    ) -> Result<Self, CoreError> {
        let status = match status.map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(*STATUSES.iter().find(|x| **x == s).ok_or_else(|| {
                CoreError::field(
                    "status",
                    "must be open, filled, cancelled, expired or rejected",
                )
            })?),
        };
        let pair = match pair.map(str::trim) {
            None | Some("") => None,
            Some(p) => {
                let p = Pair::parse(state, p)?;
                Some((p.base.code.clone(), p.quote.code.clone()))
            }
        };
        Ok(OrderFilter { status, pair })
    }

    pub fn pair(&self) -> Option<(&str, &str)> {
        self.pair.as_ref().map(|(b, q)| (b.as_str(), q.as_str()))
    }
}

/// A page of the user's orders, newest first, and how many there are; only those with
/// `status` and of `pair` when given.
pub async fn list_orders(
    state: &Core,
    user: &UserRow,
    status: Option<&str>,
    pair: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<(i64, Vec<OrderView>), CoreError> {
    let f = OrderFilter::parse(state, status, pair)?;
    let (total, rows) = state
        .db
        .list_orders(&user.id, f.status, f.pair(), skip, limit)
        .await?;
    Ok((
        total,
        rows.iter().map(|o| OrderView::new(state, o)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(code: &str, scale: u8) -> Asset {
        Asset {
            code: code.into(),
            scale,
            usd_price_cents: 100,
        }
    }

    fn cfg() -> TradingConfig {
        TradingConfig {
            spread_bps: 25,
            fee_bps: 10,
            fee_min_cents: 1,
            min_order_cents: 100,
            max_order_cents: 10_000_000,
            quote_ttl_secs: 10,
            max_exposure_cents: 100_000_000,
            stop_margin_bps: 500,
            match_batch: 3000,
            match_groups: 4,
            sync_ms: 1000,
            max_open_orders: 200,
            commit_lanes: 2,
        }
    }

    const BTC_USD: i128 = 60_000 * PRICE_ONE;

    #[test]
    fn a_buy_pays_price_plus_spread_and_the_fee_rounded_up() {
        let (btc, usd) = (asset("BTC", 8), asset("USD", 2));
        let pair = Pair {
            base: &btc,
            quote: &usd,
        };
        // 0.01 BTC at 60,000 + 0.25 % = 60,150 → 601.50 USD; fee 0.1 % = 0.6015 → 0.61.
        let t = price_order(&cfg(), pair, BTC_USD, PRICE_ONE, Side::Buy, 1_000_000).unwrap();
        assert_eq!(t.price, 60_150 * 100_000_000);
        assert_eq!(t.value, 60_150);
        assert_eq!(t.fee, 61);
        assert_eq!(t.total, 60_211);
        assert_eq!(t.usd_cents, 60_150);
        // A sell receives price − spread, fee taken off, rounded down.
        let t = price_order(&cfg(), pair, BTC_USD, PRICE_ONE, Side::Sell, 1_000_000).unwrap();
        assert_eq!(t.price, 59_850 * 100_000_000);
        assert_eq!((t.value, t.fee, t.total), (59_850, 60, 59_790));
    }

    #[test]
    fn the_minimum_fee_and_the_order_size_limits_apply() {
        let (btc, usd) = (asset("BTC", 8), asset("USD", 2));
        let pair = Pair {
            base: &btc,
            quote: &usd,
        };
        // 2 USD worth: 0.1 % would be 0.002 → the minimum, 0.01.
        let t = price_order(
            &cfg(),
            pair,
            2 * PRICE_ONE * 100,
            PRICE_ONE,
            Side::Buy,
            1_000_000,
        );
        let t = t.unwrap();
        assert_eq!(t.fee, 1);
        for amount in [1, 100_000_000 * 1_000] {
            let e = price_order(&cfg(), pair, BTC_USD, PRICE_ONE, Side::Buy, amount).unwrap_err();
            assert!(matches!(e, CoreError::LimitExceeded(_)), "{e:?}");
        }
    }

    #[test]
    fn cross_pairs_are_priced_through_usd() {
        let (eth, btc) = (asset("ETH", 8), asset("BTC", 8));
        let pair = Pair {
            base: &eth,
            quote: &btc,
        };
        // 1 ETH at 3,000 USD in BTC at 60,000 USD = 0.05 BTC, no spread, fee in BTC.
        let c = TradingConfig {
            spread_bps: 0,
            ..cfg()
        };
        let t = price_order(&c, pair, 3_000 * PRICE_ONE, BTC_USD, Side::Buy, 100_000_000).unwrap();
        assert_eq!(t.price, 5_000_000);
        assert_eq!(t.value, 5_000_000);
        // 0.1 % = 5,000 sat; the 1-cent minimum (17 sat) is below it.
        assert_eq!(t.fee, 5_000);
        assert_eq!(t.usd_cents, 300_000);
        // A small order's fee is the 1-cent minimum converted: ceil(0.01 / 60,000 BTC) = 17 sat.
        let t = price_order(&c, pair, 3_000 * PRICE_ONE, BTC_USD, Side::Buy, 50_000).unwrap();
        assert_eq!((t.value, t.fee, t.usd_cents), (2_500, 17, 150));
        let e = price_order(&c, pair, 3_000 * PRICE_ONE, BTC_USD, Side::Buy, 20_000).unwrap_err();
        assert!(matches!(e, CoreError::LimitExceeded(_)));
    }
}
