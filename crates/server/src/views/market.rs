//! One asset's live price with its 24-hour statistics, in the API and on the pages.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views::rfc3339;
use etx_core::market::price_text;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct CryptoView {
    pub symbol: String,
    pub price: String,
    /// Percent change against the price 24 hours ago, e.g. `-1.25`; null without history.
    pub change_24h: Option<String>,
    /// The price 24 hours ago, that `change_24h` compares with; null without history.
    pub open_24h: Option<String>,
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
    Ok(crypto_view_and_day(state, symbol).await?.0)
}

/// The view and the last 24 hours of 5-minute candles it was computed from.
pub async fn crypto_view_and_day(
    state: &AppState,
    symbol: String,
) -> ApiResult<(CryptoView, std::sync::Arc<Vec<etx_db::market::CandleRow>>)> {
    let q = state.market.quote(&symbol).ok_or(ApiError::NotFound)?;
    let day = etx_core::market::day_candles(state, &symbol).await?;
    let first = day.first().map(|c| c.open);
    let high = day.iter().map(|c| c.high).chain([q.price]).max();
    let low = day.iter().map(|c| c.low).chain([q.price]).min();
    let has = first.is_some();
    let view = CryptoView {
        change_24h: first.and_then(|o| percent_change(o, q.price)),
        open_24h: first.map(price_text),
        high_24h: high.filter(|_| has).map(price_text),
        low_24h: low.filter(|_| has).map(price_text),
        price: price_text(q.price),
        symbol,
        source: state.market.source,
        updated_at: rfc3339(q.at),
        stale: state.market.is_stale(),
    };
    Ok((view, day))
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
