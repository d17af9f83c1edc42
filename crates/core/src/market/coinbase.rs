//! Coinbase Exchange's public WebSocket feed, `ticker` channel
//! (<https://docs.cdp.coinbase.com/exchange/websocket-feed/channels>): subscribe with
//! `{"type":"subscribe","product_ids":["BTC-USD",…],"channels":["ticker","heartbeat"]}`, then
//! each trade arrives as `{"type":"ticker","product_id":"BTC-USD","price":"65012.34",
//! "time":"…",…}` with prices as decimal strings. Heartbeats keep a quiet connection provably
//! alive; a connection that says nothing for `IDLE` is dropped and made again.

use super::{Market, PRICE_SCALE, Tick};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeats come every second per product; this much silence means the link is dead.
const IDLE: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FeedMessage {
    Ticker {
        product_id: String,
        price: String,
        #[serde(default)]
        time: Option<String>,
    },
    Heartbeat {},
    Subscriptions {},
    Error {
        message: String,
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// A decimal price with at most `PRICE_SCALE` decimals kept (extra digits are cut, not
/// rounded: they are below a hundred-millionth of a dollar).
fn parse_price(text: &str) -> Option<i64> {
    let t = text.trim();
    let cut = match t.find('.') {
        Some(dot) if t.len() > dot + 1 + usize::from(PRICE_SCALE) => {
            &t[..dot + 1 + usize::from(PRICE_SCALE)]
        }
        _ => t,
    };
    etx_domain::money::parse_positive_amount(cut, PRICE_SCALE).ok()
}

/// Applies one message from the feed. `Err` for anything that is not what the channel
/// documents; those are counted and skipped.
pub(super) fn handle(market: &Market, text: &str) -> Result<bool, ()> {
    match serde_json::from_str::<FeedMessage>(text).map_err(|_| ())? {
        FeedMessage::Ticker {
            product_id,
            price,
            time,
        } => {
            let symbol = product_id.strip_suffix("-USD").ok_or(())?;
            let price = parse_price(&price).ok_or(())?;
            let at = time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros())
                .unwrap_or_else(etx_db::now_micros);
            let taken = market.apply(&[Tick {
                symbol: symbol.to_string(),
                price,
                at,
            }]);
            Ok(taken > 0)
        }
        // Heartbeats are not prices: a feed that only beats still goes stale.
        FeedMessage::Heartbeat {} | FeedMessage::Subscriptions {} | FeedMessage::Other => Ok(false),
        FeedMessage::Error { message, reason } => {
            tracing::warn!(message, reason, "price feed reported an error");
            Ok(false)
        }
    }
}

fn subscribe_message(market: &Market) -> String {
    let products: Vec<String> = market.symbols.iter().map(|s| format!("{s}-USD")).collect();
    serde_json::json!({
        "type": "subscribe",
        "product_ids": products,
        "channels": ["ticker", "heartbeat"],
    })
    .to_string()
}

/// One connection, until it closes or falls silent. `Ok(true)` if it delivered prices.
async fn session(market: &Market, url: &str) -> anyhow::Result<bool> {
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    ws.send(Message::Text(subscribe_message(market).into()))
        .await?;
    tracing::info!(url, "price feed connected");
    let mut delivered = false;
    loop {
        let next = tokio::time::timeout(IDLE, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no message for {} s", IDLE.as_secs()))?;
        match next {
            None | Some(Ok(Message::Close(_))) => return Ok(delivered),
            Some(Err(e)) => {
                if delivered {
                    tracing::warn!(error = %e, "price feed connection lost");
                    return Ok(true);
                }
                return Err(e.into());
            }
            Some(Ok(Message::Text(t))) => match handle(market, &t) {
                Ok(took) => delivered |= took,
                Err(()) => market.malformed(),
            },
            Some(Ok(_)) => {}
        }
    }
}

/// Keeps a connection to the feed, reconnecting with exponential backoff (reset after a
/// connection that delivered prices), until the task is aborted.
pub async fn run(market: Arc<Market>, url: String) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match session(&market, &url).await {
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => tracing::warn!("price feed closed before sending prices"),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "price feed unavailable")
            }
        }
        metrics::counter!("etx_market_reconnects_total").increment(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_price;

    #[test]
    fn prices_keep_eight_decimals() {
        assert_eq!(parse_price("65012.34"), Some(6_501_234_000_000));
        assert_eq!(parse_price("0.000012345678"), Some(1_234));
        assert_eq!(parse_price("1"), Some(100_000_000));
        assert_eq!(parse_price("-1"), None);
        assert_eq!(parse_price("abc"), None);
        assert_eq!(parse_price("0"), None);
    }
}
