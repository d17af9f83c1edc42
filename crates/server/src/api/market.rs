//! Market data: live prices, 24-hour statistics, candle history and the `/ws/prices` stream.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::rfc3339;
use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use etx_core::market::{PRICE_SCALE, SPANS, price_text, span_len};
use etx_db::now_micros;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(prices))
        .routes(routes!(price))
        .routes(routes!(crypto_list))
        .routes(routes!(crypto_one))
        .routes(routes!(history))
        .routes(routes!(ws_prices))
}

#[derive(Serialize, ToSchema)]
pub struct PriceList {
    /// USD price per symbol, as decimal text.
    #[schema(example = json!({"BTC": "65012.34"}))]
    pub prices: BTreeMap<String, String>,
    /// `simulated` for the built-in random walk, or the provider's name.
    pub source: &'static str,
    /// Time of the newest price.
    pub updated_at: String,
    /// No tick for longer than `market.stale_after_secs`: the prices may be out of date.
    pub stale: bool,
}

/// Latest USD prices of every listed asset.
#[utoipa::path(get, path = "/api/prices", tag = "market",
    responses((status = 200, description = "Prices", body = PriceList)))]
async fn prices(State(state): State<AppState>) -> Json<PriceList> {
    let m = &state.market;
    let quotes = m.quotes();
    let newest = quotes.values().map(|q| q.at).max().unwrap_or_default();
    Json(PriceList {
        prices: quotes
            .into_iter()
            .map(|(s, q)| (s, price_text(q.price)))
            .collect(),
        source: m.source,
        updated_at: rfc3339(newest),
        stale: m.is_stale(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct PriceView {
    #[schema(example = "BTC")]
    pub symbol: String,
    #[schema(example = "65012.34")]
    pub price: String,
    pub source: &'static str,
    pub updated_at: String,
    pub stale: bool,
}

fn symbol_of(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let s = raw.trim().to_ascii_uppercase();
    if state.market.symbols.contains(&s) {
        Ok(s)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Latest USD price of one asset.
#[utoipa::path(get, path = "/api/prices/{symbol}", tag = "market",
    params(("symbol" = String, Path, description = "Asset code, e.g. BTC")),
    responses(
        (status = 200, description = "Price", body = PriceView),
        (status = 404, description = "Not a listed asset", body = ErrorBody),
    ))]
async fn price(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
) -> ApiResult<Json<PriceView>> {
    let symbol = symbol_of(&state, &symbol)?;
    let q = state.market.quote(&symbol).ok_or(ApiError::NotFound)?;
    Ok(Json(PriceView {
        symbol,
        price: price_text(q.price),
        source: state.market.source,
        updated_at: rfc3339(q.at),
        stale: state.market.is_stale(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct CryptoView {
    pub symbol: String,
    pub price: String,
    /// Percent change against the price 24 hours ago, e.g. `-1.25`; null without history.
    pub change_24h: Option<String>,
    pub high_24h: Option<String>,
    pub low_24h: Option<String>,
    pub source: &'static str,
    pub updated_at: String,
    pub stale: bool,
}

/// Percent with two decimals from an integer ratio, rounded half away from zero.
fn percent_change(open: i64, now: i64) -> Option<String> {
    if open <= 0 {
        return None;
    }
    let delta = i128::from(now) - i128::from(open);
    let scaled = delta * 10_000 * 2 / i128::from(open);
    let hundredths = (scaled + scaled.signum()) / 2;
    let sign = if hundredths < 0 { "-" } else { "" };
    let a = hundredths.unsigned_abs();
    Some(format!("{sign}{}.{:02}", a / 100, a % 100))
}

pub async fn crypto_view(state: &AppState, symbol: String) -> ApiResult<CryptoView> {
    let q = state.market.quote(&symbol).ok_or(ApiError::NotFound)?;
    let now = now_micros();
    let day = state
        .db
        .candles(&symbol, "5m", now - 24 * 3_600_000_000, now + 1, 300)
        .await?;
    let first = day.first().map(|c| c.open);
    let high = day.iter().map(|c| c.high).chain([q.price]).max();
    let low = day.iter().map(|c| c.low).chain([q.price]).min();
    let has = first.is_some();
    Ok(CryptoView {
        change_24h: first.and_then(|o| percent_change(o, q.price)),
        high_24h: high.filter(|_| has).map(price_text),
        low_24h: low.filter(|_| has).map(price_text),
        price: price_text(q.price),
        symbol,
        source: state.market.source,
        updated_at: rfc3339(q.at),
        stale: state.market.is_stale(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct CryptoList {
    pub items: Vec<CryptoView>,
}

/// Every listed asset with its price and 24-hour change, high and low.
#[utoipa::path(get, path = "/api/crypto", tag = "market",
    responses((status = 200, description = "Assets", body = CryptoList)))]
async fn crypto_list(State(state): State<AppState>) -> ApiResult<Json<CryptoList>> {
    let mut items = Vec::new();
    for s in state.market.symbols.clone() {
        items.push(crypto_view(&state, s).await?);
    }
    Ok(Json(CryptoList { items }))
}

/// One asset with its price and 24-hour change, high and low.
#[utoipa::path(get, path = "/api/crypto/{symbol}", tag = "market",
    params(("symbol" = String, Path, description = "Asset code, e.g. BTC")),
    responses(
        (status = 200, description = "Asset", body = CryptoView),
        (status = 404, description = "Not a listed asset", body = ErrorBody),
    ))]
async fn crypto_one(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
) -> ApiResult<Json<CryptoView>> {
    let symbol = symbol_of(&state, &symbol)?;
    Ok(Json(crypto_view(&state, symbol).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// `1m`, `5m`, `1h` or `1d` (default `1h`).
    pub interval: Option<String>,
    /// RFC 3339 time or Unix seconds; default: 100 intervals before `to`.
    pub from: Option<String>,
    /// RFC 3339 time or Unix seconds; default: now.
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Candle {
    /// Start of the interval.
    pub time: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    pub symbol: String,
    pub interval: String,
    pub source: &'static str,
    pub candles: Vec<Candle>,
}

pub const HISTORY_MAX: u64 = 1000;

fn instant(field: &str, s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000)
            .ok_or_else(|| ApiError::field(field, "is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|_| ApiError::field(field, "must be an RFC 3339 time or Unix seconds"))
}

/// OHLC candles from stored ticks, oldest first (at most 1,000; the newest ones when the range
/// holds more).
#[utoipa::path(get, path = "/api/crypto/{symbol}/history", tag = "market",
    params(("symbol" = String, Path, description = "Asset code, e.g. BTC"), HistoryQuery),
    responses(
        (status = 200, description = "Candles", body = History),
        (status = 404, description = "Not a listed asset", body = ErrorBody),
        (status = 422, description = "Bad interval or time", body = ErrorBody),
    ))]
async fn history(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<History>> {
    let symbol = symbol_of(&state, &symbol)?;
    let interval = q.interval.unwrap_or_else(|| "1h".into());
    let Some(len) = span_len(&interval) else {
        let names: Vec<_> = SPANS.iter().map(|(s, _)| *s).collect();
        return Err(ApiError::field(
            "interval",
            &format!("must be one of {}", names.join(", ")),
        ));
    };
    let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => instant("to", t)?,
        None => now_micros() + 1,
    };
    let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
        Some(f) => instant("from", f)?,
        None => to.saturating_sub(len.saturating_mul(100)),
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before to"));
    }
    let rows = state
        .db
        .candles(&symbol, &interval, from, to, HISTORY_MAX)
        .await?;
    Ok(Json(History {
        symbol,
        interval,
        source: state.market.source,
        candles: rows
            .into_iter()
            .map(|c| Candle {
                time: rfc3339(c.start),
                open: price_text(c.open),
                high: price_text(c.high),
                low: price_text(c.low),
                close: price_text(c.close),
            })
            .collect(),
    }))
}

/// Live prices over a WebSocket: `{type:"connection"}`, then the current prices and every
/// update as `{type:"price_update", prices, source, timestamp}`. `{type:"ping"}` is answered
/// with `{type:"pong"}`. A slow client skips to the newest prices rather than queueing, and one
/// that takes nothing for 10 s is dropped.
#[utoipa::path(get, path = "/ws/prices", tag = "market",
    responses((status = 101, description = "Switching to the WebSocket protocol")))]
async fn ws_prices(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    // The default 128 KiB read buffer is zeroed before every read: at 10,000 clients that is
    // 1.3 GB of memory and most of the CPU per tick. Clients only ever send tiny pings.
    ws.read_buffer_size(4096)
        .max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| async move {
            let hello = serde_json::json!({
                "type": "connection",
                "source": state.market.source,
                "symbols": state.market.symbols,
                "price_scale": PRICE_SCALE,
            });
            state.fanout.serve(socket, hello.to_string().into()).await;
        })
}

#[cfg(test)]
mod tests {
    use super::percent_change;

    #[test]
    fn percent_change_rounds_half_away_from_zero() {
        assert_eq!(percent_change(100, 101).as_deref(), Some("1.00"));
        assert_eq!(percent_change(100, 99).as_deref(), Some("-1.00"));
        assert_eq!(percent_change(30_000, 30_001).as_deref(), Some("0.00"));
        assert_eq!(percent_change(20_000, 20_001).as_deref(), Some("0.01"));
        assert_eq!(percent_change(20_000, 19_999).as_deref(), Some("-0.01"));
        assert_eq!(percent_change(0, 5), None);
    }
}
