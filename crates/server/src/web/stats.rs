//! The staff's statistics page: sign-ups and active people per day, deposits and withdrawals,
//! volume per asset, what waits in the review queues and the ledger's totals, with the daily
//! series drawn as bar charts on the server.

use super::{Layout, PageResult, WebUser, filters, not_found_for};
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::IntoResponse;
use etx_db::stats::{DayPoint, Queues};
use etx_domain::money::format_amount;
use std::fmt::Write;

const DAY: i64 = 86_400_000_000;
/// Days each chart covers, today included.
pub const DAYS: i64 = etx_core::stats::DAYS;

pub struct Chart {
    pub title: &'static str,
    pub id: &'static str,
    /// The period's total, as the chart's summary.
    pub total: String,
    pub svg: String,
}

pub struct VolumeLine {
    pub asset: String,
    pub count: i64,
    pub amount: String,
    pub usd: i64,
}

pub struct TotalLine {
    pub asset: String,
    pub users: String,
    pub platform: String,
    pub equity: String,
    pub balanced: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_stats.html")]
pub struct StatsPage {
    layout: Layout,
    days: i64,
    queues: Queues,
    /// When the charts, volume and totals were read (RFC 3339).
    as_of: String,
    charts: Vec<Chart>,
    volume: Vec<VolumeLine>,
    totals: Vec<TotalLine>,
}

/// Platform statistics (staff; others get the not-found page).
pub async fn view_stats_get(State(state): State<AppState>, u: WebUser) -> PageResult {
    if !u.auth.role.is_staff() {
        return Ok(not_found_for(&u));
    }
    let a = etx_core::stats::aggregates(&state).await?;
    let today = a.today;
    let count = |p: &DayPoint| p.count;
    let cents = |p: &DayPoint| p.cents;
    let dollars = |v: i64| format!("${}", super::group_digits(&format_amount(v, 2)));
    let people = |v: i64| super::group_digits(&v.to_string());
    let chart = |title,
                 id,
                 points: &[DayPoint],
                 value: &dyn Fn(&DayPoint) -> i64,
                 fmt: &dyn Fn(i64) -> String,
                 total: bool| {
        let series = daily(points, today, value);
        let sum: i64 = series.iter().sum();
        Chart {
            title,
            id,
            total: if total {
                format!("{} in {DAYS} days", fmt(sum))
            } else {
                format!(
                    "{} at most in a day",
                    fmt(series.iter().copied().max().unwrap_or(0))
                )
            },
            svg: bar_svg(&series, today, title, fmt),
        }
    };
    let charts = vec![
        chart(
            "Sign-ups per day",
            "signups",
            &a.signups,
            &count,
            &people,
            true,
        ),
        chart(
            "Active people per day",
            "active",
            &a.active,
            &count,
            &people,
            false,
        ),
        chart(
            "Deposits credited per day (USD)",
            "deposits",
            &a.deposits,
            &cents,
            &dollars,
            true,
        ),
        chart(
            "Withdrawals sent per day (USD)",
            "withdrawals",
            &a.withdrawals,
            &cents,
            &dollars,
            true,
        ),
    ];
    let scale = |asset: &str| state.assets.get(asset).map_or(2, |a| a.scale);
    let volume = a
        .volume
        .iter()
        .map(|v| VolumeLine {
            amount: format_amount(v.amount, scale(&v.asset)),
            count: v.count,
            usd: v.usd_cents,
            asset: v.asset.clone(),
        })
        .collect();
    let totals = a
        .totals
        .iter()
        .map(|t| {
            let s = scale(&t.asset);
            TotalLine {
                users: format_amount(t.users, s),
                platform: format_amount(t.platform, s),
                equity: format_amount(t.equity, s),
                balanced: i128::from(t.users) + i128::from(t.platform) + i128::from(t.equity) == 0,
                asset: t.asset.clone(),
            }
        })
        .collect();
    Ok(StatsPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "stats"),
        days: DAYS,
        queues: state.db.queues().await?,
        as_of: crate::views::rfc3339(a.read_at),
        charts,
        volume,
        totals,
    }
    .into_response())
}

/// The last `DAYS` days' values, oldest first, zero where nothing happened.
fn daily(points: &[DayPoint], today: i64, value: impl Fn(&DayPoint) -> i64) -> Vec<i64> {
    let mut out = vec![0; DAYS as usize];
    for p in points {
        let i = p.day - (today - DAYS + 1);
        if (0..DAYS).contains(&i) {
            out[i as usize] += value(p);
        }
    }
    out
}

/// Daily bars with a grid line at the top value and dates under the first, middle and last
/// bar; each bar carries its figure as a tooltip.
fn bar_svg(values: &[i64], today: i64, title: &str, fmt: &dyn Fn(i64) -> String) -> String {
    const W: f64 = 360.0;
    const H: f64 = 150.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 126.0;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1);
    let slot = W / n as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" class=\"chart bars\" role=\"img\" aria-label=\"{title}: {} days, at most {}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><line class=\"grid\" x1=\"0\" x2=\"{W}\" y1=\"{TOP}\" y2=\"{TOP}\"/>\
         <line class=\"grid\" x1=\"0\" x2=\"{W}\" y1=\"{BOTTOM}\" y2=\"{BOTTOM}\"/>\
         <text class=\"axis\" x=\"{W}\" y=\"12\" text-anchor=\"end\">{}</text>",
        values.len(),
        fmt(max),
        fmt(max),
    );
    let first = today - n as i64 + 1;
    for (i, v) in values.iter().enumerate() {
        let h = *v as f64 / max as f64 * (BOTTOM - TOP);
        let day = crate::views::rfc3339((first + i as i64) * DAY);
        let date = day.get(..10).unwrap_or_default();
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{date}: {}</title></rect>",
            i as f64 * slot + slot * 0.15,
            BOTTOM - h.max(if *v > 0 { 1.0 } else { 0.0 }),
            slot * 0.7,
            h.max(if *v > 0 { 1.0 } else { 0.0 }),
            fmt(*v),
        );
    }
    for (i, anchor) in [(0, "start"), (n / 2, "middle"), (n - 1, "end")] {
        let day = crate::views::rfc3339((first + i as i64) * DAY);
        let x = match anchor {
            "start" => 0.0,
            "end" => W,
            _ => i as f64 * slot + slot / 2.0,
        };
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"{anchor}\" data-at=\"{day}\" data-fmt=\"date\">{}</text>",
            BOTTOM + 18.0,
            day.get(5..10).unwrap_or_default(),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_without_activity_are_zero_and_old_ones_drop_out() {
        let today = 20_000;
        let p = |day, count| DayPoint {
            day,
            count,
            cents: 0,
        };
        let v = daily(
            &[p(today, 3), p(today - 29, 2), p(today - 30, 9)],
            today,
            |p| p.count,
        );
        assert_eq!(v.len(), 30);
        assert_eq!((v[0], v[29], v.iter().sum::<i64>()), (2, 3, 5));
        let svg = bar_svg(&v, today, "Sign-ups", &|v| v.to_string());
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 30);
        assert!(svg.contains(">3</text>"), "the top value labels the grid");
        assert!(svg.contains("<title>2024-10-04: 3</title>"), "{svg}");
    }
}
