//! Market data: live prices, 24-hour statistics, candle history and the `/ws/prices` stream.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::market::{CryptoView, crypto_view};
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
