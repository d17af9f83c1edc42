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
use etx_core::market::span_len;
use etx_db::market::CandleRow;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Template, WebTemplate)]
#[template(path = "markets.html")]
pub struct MarketsPage {
    layout: Layout,
    items: Vec<(CryptoView, Option<String>)>,
    source: &'static str,
    stale: bool,
}

pub async fn view_markets_get(State(state): State<AppState>, u: WebUser) -> PageResult {
    let mut items = Vec::new();
    for s in state.market.symbols.clone() {
        let (view, day) = crate::views::market::crypto_view_and_day(&state, s).await?;
        // Half-hourly closes of the last day, and the live price last.
        let mut closes: Vec<i64> = day.iter().step_by(6).map(|c| c.close).collect();
        if let Some(q) = state.market.quote(&view.symbol) {
            closes.push(q.price);
        }
        items.push((view, sparkline(&closes)));
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
    range: Option<String>,
    /// The older way to ask: a candle span, shown over the range it suits.
    interval: Option<String>,
}

/// A chart range: how far back, drawn with candles of which span.
pub struct Range {
    pub key: &'static str,
    pub label: &'static str,
    pub span: &'static str,
    pub candles: i64,
}

pub const RANGES: [Range; 5] = [
    Range {
        key: "1h",
        label: "1 hour",
        span: "1m",
        candles: 60,
    },
    Range {
        key: "1d",
        label: "1 day",
        span: "5m",
        candles: 288,
    },
    Range {
        key: "1w",
        label: "1 week",
        span: "1h",
        candles: 168,
    },
    Range {
        key: "1mo",
        label: "1 month",
        span: "1d",
        candles: 30,
    },
    Range {
        key: "3mo",
        label: "3 months",
        span: "1d",
        candles: 90,
    },
];

#[derive(Template, WebTemplate)]
#[template(path = "market.html")]
pub struct AssetPage {
    layout: Layout,
    asset: CryptoView,
    range: &'static Range,
    ranges: &'static [Range],
    chart: String,
    candles: usize,
}

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
    // An unknown range falls back to a day rather than failing.
    let by_interval = |i: &str| match i {
        "1m" => Some("1h"),
        "5m" => Some("1d"),
        "1h" => Some("1w"),
        "1d" => Some("3mo"),
        _ => None,
    };
    let key = q
        .range
        .as_deref()
        .or_else(|| q.interval.as_deref().and_then(by_interval))
        .unwrap_or("1d");
    let range = RANGES.iter().find(|r| r.key == key).unwrap_or(&RANGES[1]);
    let len = span_len(range.span).unwrap_or(60_000_000);
    let now = etx_db::now_micros();
    let last = now - now.rem_euclid(len);
    let from = last - (range.candles - 1) * len;
    let asset = crypto_view(&state, symbol.clone()).await?;
    let rows = state
        .db
        .candles(&symbol, range.span, from, now + 1, range.candles as u64)
        .await?;
    Ok(AssetPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "markets"),
        chart: candle_svg(&rows, from, len, range.candles),
        candles: rows.len(),
        asset,
        range,
        ranges: &RANGES,
    }
    .into_response())
}

/// A "nice" step for about `parts` divisions of `span`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(span: i64, parts: i64) -> i64 {
    let parts = parts.max(1);
    let raw = ((span + parts - 1) / parts).max(1);
    let mut pow = 1i64;
    while pow.saturating_mul(10) <= raw {
        pow *= 10;
    }
    for m in [1, 2, 5, 10] {
        // 2.5 between 2 and 5 keeps price grids on round quarters.
        if m == 5 && pow * 25 / 10 >= raw {
            return pow * 25 / 10;
        }
        if pow * m >= raw {
            return pow * m;
        }
    }
    pow * 10
}

const MINUTE: i64 = 60_000_000;

/// Time-axis spacing: the shortest of these that gives at most six labels.
const TIME_STEPS: [i64; 12] = [
    5 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    60 * MINUTE,
    2 * 60 * MINUTE,
    4 * 60 * MINUTE,
    6 * 60 * MINUTE,
    12 * 60 * MINUTE,
    24 * 60 * MINUTE,
    2 * 24 * 60 * MINUTE,
    7 * 24 * 60 * MINUTE,
    14 * 24 * 60 * MINUTE,
];

/// Candlesticks as an SVG with a price axis and grid on the right, a time axis below, rising
/// candles hollow in the "up" colour and falling ones filled in the "down" colour. The
/// candles' figures ride along in `data-candles` (start ms, open, high, low, close) for the
/// page's script to show on hover or with the arrow keys; the chart reads without it.
/// `from` is the first slot's start and `len` a candle's span, so gaps stay gaps.
fn candle_svg(rows: &[CandleRow], from: i64, len: i64, slots: i64) -> String {
    const W: f64 = 760.0;
    const H: f64 = 320.0;
    const PLOT_W: f64 = 676.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 290.0;
    let (Some(lo), Some(hi)) = (
        rows.iter().map(|c| c.low).min(),
        rows.iter().map(|c| c.high).max(),
    ) else {
        return format!(
            "<svg viewBox=\"0 0 {W} {H}\" class=\"chart\" role=\"img\" aria-label=\"Price chart: no history yet\" \
             xmlns=\"http://www.w3.org/2000/svg\"><text x=\"20\" y=\"40\" class=\"axis\">No history yet.</text></svg>"
        );
    };
    // Round the price range out to the grid so the extremes sit inside it.
    let step = nice_step((hi - lo).max(1), 4);
    let (g_lo, g_hi) = (
        lo - lo.rem_euclid(step),
        hi + (step - hi.rem_euclid(step)) % step,
    );
    let g_hi = if g_hi == g_lo { g_lo + step } else { g_hi };
    let y = |p: i64| TOP + (g_hi - p) as f64 / (g_hi - g_lo) as f64 * (BOTTOM - TOP);
    let slot = PLOT_W / slots.max(1) as f64;
    let x_of = |t: i64| (t - from) as f64 / len as f64 * slot + slot / 2.0;
    let body = (slot * 0.65).clamp(1.0, 12.0);

    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" class=\"chart candles\" role=\"img\" tabindex=\"0\" \
         aria-label=\"Price chart: {} candles from {} to {} US dollars; arrow keys read each candle\" \
         xmlns=\"http://www.w3.org/2000/svg\" data-from=\"{}\" data-len=\"{}\" data-slots=\"{slots}\" \
         data-plot=\"{PLOT_W}\" data-candles=\"",
        rows.len(),
        super::price_display(&etx_core::market::price_text(lo)),
        super::price_display(&etx_core::market::price_text(hi)),
        from / 1000,
        len / 1000,
    );
    for (i, c) in rows.iter().enumerate() {
        if i > 0 {
            svg.push('|');
        }
        let _ = write!(
            svg,
            "{};{};{};{};{}",
            c.start / 1000,
            etx_core::market::price_text(c.open),
            etx_core::market::price_text(c.high),
            etx_core::market::price_text(c.low),
            etx_core::market::price_text(c.close),
        );
    }
    svg.push_str("\">");

    // Price grid and labels.
    let mut p = g_lo;
    while p <= g_hi {
        let yy = y(p);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"0\" x2=\"{PLOT_W}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"axis\" x=\"{:.0}\" y=\"{:.1}\">{}</text>",
            PLOT_W + 6.0,
            yy + 4.0,
            super::price_display(&etx_core::market::price_text(p)),
        );
        p += step;
    }
    // Time grid and labels, on round UTC times; the script shows them in the reader's zone.
    let total = len * slots;
    let t_step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| total / s <= 6)
        .unwrap_or(30 * 24 * 60 * MINUTE);
    let day = 24 * 60 * MINUTE;
    let mut t = from + (t_step - from.rem_euclid(t_step)) % t_step;
    while t < from + total {
        let xx = x_of(t) - slot / 2.0;
        let iso = crate::views::rfc3339(t);
        let text = if t_step >= day {
            iso.get(5..10).unwrap_or_default().to_string()
        } else {
            iso.get(11..16).unwrap_or_default().to_string()
        };
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{BOTTOM}\"/>\
             <text class=\"axis\" x=\"{xx:.1}\" y=\"{:.0}\" text-anchor=\"middle\" data-at=\"{iso}\" data-fmt=\"{}\">{text}</text>",
            BOTTOM + 20.0,
            if t_step >= day { "date" } else { "time" },
        );
        t += t_step;
    }

    // Candles: one path per colour for the wicks and one for the bodies keeps the page small.
    for up in [true, false] {
        let class = if up { "up" } else { "down" };
        let (mut wicks, mut bodies) = (String::new(), String::new());
        for c in rows.iter().filter(|c| (c.close >= c.open) == up) {
            let x = x_of(c.start);
            let (top, bottom) = if up {
                (y(c.close), y(c.open))
            } else {
                (y(c.open), y(c.close))
            };
            let _ = write!(wicks, "M{x:.1} {:.1}V{:.1}", y(c.high), y(c.low));
            let _ = write!(
                bodies,
                "M{:.1} {top:.1}h{body:.1}v{:.1}h-{body:.1}z",
                x - body / 2.0,
                (bottom - top).max(1.0),
            );
        }
        if !wicks.is_empty() {
            let _ = write!(
                svg,
                "<path class=\"wick {class}\" d=\"{wicks}\"/><path class=\"body {class}\" d=\"{bodies}\"/>"
            );
        }
    }
    svg.push_str(
        "<line class=\"crosshair\" x1=\"0\" x2=\"0\" y1=\"10\" y2=\"290\" visibility=\"hidden\"/></svg>",
    );
    svg
}

/// A day of closes as a small line, green when the day rose and red when it fell; `None`
/// without at least two points.
pub fn sparkline(closes: &[i64]) -> Option<String> {
    const W: f64 = 96.0;
    const H: f64 = 28.0;
    if closes.len() < 2 {
        return None;
    }
    let (lo, hi) = (
        *closes.iter().min().unwrap_or(&0),
        *closes.iter().max().unwrap_or(&0),
    );
    let range = (hi - lo).max(1) as f64;
    let dx = W / (closes.len() - 1) as f64;
    let mut points = String::new();
    for (i, c) in closes.iter().enumerate() {
        let _ = write!(
            points,
            "{}{:.1},{:.1}",
            if i > 0 { " " } else { "" },
            i as f64 * dx,
            2.0 + (hi - c) as f64 / range * (H - 4.0)
        );
    }
    let class = if closes.last() >= closes.first() {
        "up"
    } else {
        "down"
    };
    Some(format!(
        "<svg class=\"spark {class}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" aria-hidden=\"true\" \
         focusable=\"false\" xmlns=\"http://www.w3.org/2000/svg\"><polyline points=\"{points}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candle in whole dollars, its wick $5 beyond its body.
    fn c(start: i64, open: i64, close: i64) -> CandleRow {
        let d = 100_000_000;
        CandleRow {
            symbol: "BTC".into(),
            span: "1m".into(),
            start,
            open: open * d,
            high: (open.max(close) + 5) * d,
            low: (open.min(close) - 5) * d,
            close: close * d,
            ticks: 1,
        }
    }

    #[test]
    fn a_chart_has_axes_a_grid_and_its_candles_figures() {
        let m = MINUTE;
        let svg = candle_svg(&[c(0, 100, 110), c(2 * m, 110, 90)], 0, m, 60);
        assert_eq!(svg.matches("class=\"wick up\"").count(), 1);
        assert_eq!(svg.matches("class=\"body down\"").count(), 1);
        assert!(svg.matches("class=\"grid\"").count() >= 4, "{svg}");
        // Times every 15 minutes of the hour, labelled in UTC for the script to localise.
        assert!(svg.contains("data-at=\"1970-01-01T00:15:00") && svg.contains(">00:15<"));
        assert!(
            svg.contains("data-candles=\"0;100.00;115.00;95.00;110.00|120000;110.00;"),
            "{svg}"
        );
        // The grid is on round prices: $90 to $120 in steps of $10 (4 parts of the $30 range).
        for label in [">90.00<", ">100.00<", ">110.00<", ">120.00<"] {
            assert!(svg.contains(label), "{label}: {svg}");
        }
        // The second candle sits two slots in: the missing minute stays a gap.
        let slot = 676.0 / 60.0;
        assert!(svg.contains(&format!("M{:.1} ", 2.0 * slot + slot / 2.0)));
        assert!(candle_svg(&[], 0, m, 60).contains("No history yet"));
    }

    #[test]
    fn grid_steps_are_round() {
        assert_eq!(nice_step(1000, 4), 250);
        assert_eq!(nice_step(90, 4), 25);
        assert_eq!(nice_step(7, 4), 2);
        assert_eq!(nice_step(1, 4), 1);
        assert_eq!(nice_step(4_000_000, 4), 1_000_000);
    }

    #[test]
    fn sparklines_show_the_direction_of_the_day() {
        assert!(sparkline(&[1]).is_none());
        let up = sparkline(&[1, 3, 2, 4]).unwrap();
        assert!(up.contains("spark up") && up.contains("points=\"0.0,26.0 "));
        assert!(sparkline(&[4, 1]).unwrap().contains("spark down"));
    }
}
