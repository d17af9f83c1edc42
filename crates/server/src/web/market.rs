//! Market pages: live prices for every asset, and one asset's candle chart drawn on the server
//! as SVG from stored candles (no chart library, no script needed to see it).

use super::{Layout, PageResult, WebUser, error_page, filters};
use crate::state::AppState;
use crate::views::UserView;
use crate::views::market::{CryptoView, crypto_view};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use etx_core::market::{SPANS, span_len};
use etx_db::market::CandleRow;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Template, WebTemplate)]
#[template(path = "markets.html")]
pub struct MarketsPage {
    layout: Layout,
    items: Vec<CryptoView>,
    source: &'static str,
    stale: bool,
}

pub async fn view_markets_get(State(state): State<AppState>, u: WebUser) -> PageResult {
    let mut items = Vec::new();
    for s in state.market.symbols.clone() {
        items.push(crypto_view(&state, s).await?);
    }
    Ok(MarketsPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "markets"),
        items,
        source: state.market.source,
        stale: state.market.is_stale(),
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct ChartQuery {
    interval: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "market.html")]
pub struct AssetPage {
    layout: Layout,
    asset: CryptoView,
    interval: String,
    spans: Vec<&'static str>,
    chart: String,
    candles: usize,
}

const CHART_CANDLES: u64 = 120;

pub async fn view_market_get(
    State(state): State<AppState>,
    u: WebUser,
    Path(symbol): Path<String>,
    Query(q): Query<ChartQuery>,
) -> PageResult {
    let symbol = symbol.to_ascii_uppercase();
    if !state.market.symbols.contains(&symbol) {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such asset.",
        ));
    }
    let interval = q
        .interval
        .filter(|i| span_len(i).is_some())
        .unwrap_or_else(|| "1m".into());
    let len = span_len(&interval).unwrap_or(60_000_000);
    let now = etx_db::now_micros();
    let from = now - len * CHART_CANDLES as i64;
    let asset = crypto_view(&state, symbol.clone()).await?;
    let rows = state
        .db
        .candles(&symbol, &interval, from, now + 1, CHART_CANDLES)
        .await?;
    Ok(AssetPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "markets"),
        chart: candle_svg(&rows),
        candles: rows.len(),
        asset,
        interval,
        spans: SPANS.iter().map(|(s, _)| *s).collect(),
    }
    .into_response())
}

/// Candlesticks as an SVG: a wick from low to high and a body from open to close, rising
/// candles hollow in the "up" colour, falling ones filled in the "down" colour.
fn candle_svg(rows: &[CandleRow]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 300.0;
    const PAD: f64 = 8.0;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" class=\"chart\" role=\"img\" aria-label=\"Price chart\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let (Some(lo), Some(hi)) = (
        rows.iter().map(|c| c.low).min(),
        rows.iter().map(|c| c.high).max(),
    ) else {
        svg.push_str("<text x=\"20\" y=\"40\" class=\"muted\">No history yet.</text></svg>");
        return svg;
    };
    let range = (hi - lo).max(1) as f64;
    let y = |p: i64| PAD + (hi - p) as f64 / range * (H - 2.0 * PAD);
    let step = W / CHART_CANDLES as f64;
    let body = (step * 0.6).max(1.0);
    let offset = (CHART_CANDLES as usize).saturating_sub(rows.len()) as f64 * step;
    for (i, c) in rows.iter().enumerate() {
        let x = offset + i as f64 * step + step / 2.0;
        let up = c.close >= c.open;
        let class = if up { "up" } else { "down" };
        let (top, bottom) = if up {
            (y(c.close), y(c.open))
        } else {
            (y(c.open), y(c.close))
        };
        let _ = write!(
            svg,
            "<line class=\"{class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <rect class=\"{class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{body:.1}\" height=\"{:.1}\"/>",
            y(c.high),
            y(c.low),
            x - body / 2.0,
            (bottom - top).max(1.0),
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.0}\" y=\"16\" class=\"axis\" text-anchor=\"end\">{}</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" class=\"axis\" text-anchor=\"end\">{}</text></svg>",
        W - 4.0,
        etx_core::market::price_text(hi),
        W - 4.0,
        H - 4.0,
        etx_core::market::price_text(lo),
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_wick_and_body_per_candle() {
        let c = |open, close| CandleRow {
            symbol: "BTC".into(),
            span: "1m".into(),
            start: 0,
            open,
            high: open.max(close) + 5,
            low: open.min(close) - 5,
            close,
            ticks: 1,
        };
        let svg = candle_svg(&[c(100, 110), c(110, 90)]);
        assert_eq!(svg.matches("<line").count(), 2);
        assert_eq!(svg.matches("<rect class=\"up\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"down\"").count(), 1);
        assert!(candle_svg(&[]).contains("No history yet"));
    }
}
