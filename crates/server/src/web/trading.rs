//! Trading pages: `/trade` (a market order is quoted first and confirmed at exactly the
//! quoted terms; limit and stop orders; open orders with cancel; order history),
//! `/portfolio` (holdings, P&L, allocation and value over time, drawn on the server as SVG)
//! and `/alerts` (create, switch on and off, delete). Each order form carries a fresh
//! idempotency key, so a double-submitted form places one order.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, PageResult, WebUser, check_form_csrf, filters, form_expired};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::CoreError;
use etx_core::alerts::{AlertView, NewAlert};
use etx_core::trading::{OrderQuote, OrderView, QuoteRequest};
use etx_domain::format_amount;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Deserialize, Default, Clone)]
pub struct OrderForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    base: String,
    #[serde(default)]
    quote: String,
    #[serde(default)]
    side: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    expires_at: String,
    #[serde(default)]
    quote_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "trade.html")]
pub struct TradePage {
    layout: Layout,
    prices: Vec<(String, String)>,
    assets: Vec<String>,
    balances: Vec<(String, String)>,
    stale: bool,
    form: OrderForm,
    quote: Option<OrderQuote>,
    open: Vec<OrderView>,
    history: Vec<OrderView>,
    market_key: String,
    resting_key: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

async fn trade_page(
    state: &AppState,
    u: &WebUser,
    form: OrderForm,
    quote: Option<OrderQuote>,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    let user = &u.auth.user;
    let loaded = async {
        let (balances, _) = etx_core::wallet::balance_list(state, &user.id)
            .await
            .map_err(CoreError::from)?;
        let (_, open) =
            etx_core::trading::list_orders(state, user, Some("open"), None, 0, 50).await?;
        let (_, recent) = etx_core::trading::list_orders(state, user, None, None, 0, 30).await?;
        Ok::<_, CoreError>((balances, open, recent))
    };
    let (balances, open, recent) = match loaded.await {
        Ok(v) => v,
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let (status, message, field_errors) = super::form_outcome(error);
    let mut form = form;
    if form.base.is_empty() {
        form.base = "BTC".into();
    }
    if form.quote.is_empty() {
        form.quote = "USD".into();
    }
    if form.side.is_empty() {
        form.side = "buy".into();
    }
    if form.kind.is_empty() {
        form.kind = "limit".into();
    }
    let prices = state
        .market
        .symbols
        .iter()
        .map(|s| {
            let p = state
                .market
                .quote(s)
                .map_or_else(|| "–".into(), |q| etx_core::market::price_text(q.price));
            (s.clone(), p)
        })
        .collect();
    let mut layout = Layout::new(Some(UserView::from(user)), u.csrf.clone(), "trade");
    layout.notice = notice_text;
    let page = TradePage {
        layout,
        prices,
        assets: state.assets.iter().map(|a| a.code.clone()).collect(),
        balances,
        stale: state.market.is_stale(),
        form,
        quote,
        history: recent.into_iter().filter(|o| o.status != "open").collect(),
        open,
        market_key: uuid::Uuid::now_v7().to_string(),
        resting_key: uuid::Uuid::now_v7().to_string(),
        error: message,
        field_errors,
    };
    (status, page).into_response()
}

pub async fn view_trade_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    trade_page(&state, &u, OrderForm::default(), None, None, notice(&q)).await
}

fn pair(f: &OrderForm) -> String {
    format!("{}/{}", f.base.trim(), f.quote.trim())
}

/// Step one of a market order: the quote, shown with a button that fills it.
pub async fn view_quote_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<OrderForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return trade_page(&state, &u, f, None, Some(e), None).await;
    }
    let req: Result<QuoteRequest, _> = serde_json::from_value(serde_json::json!({
        "pair": pair(&f), "side": f.side, "amount": f.amount,
    }));
    let req = match req {
        Ok(r) => r,
        Err(_) => {
            let e = ApiError::field("amount", "must be a decimal number");
            return trade_page(&state, &u, f, None, Some(e), None).await;
        }
    };
    match etx_core::trading::quote(&state, &u.auth.user.id, &req) {
        Ok(q) => trade_page(&state, &u, f, Some(q), None, None).await,
        Err(e) => trade_page(&state, &u, f, None, Some(e.into()), None).await,
    }
}

async fn place(state: &AppState, u: &WebUser, f: OrderForm, body: serde_json::Value) -> Response {
    let key = match super::form_key(&f.idempotency_key) {
        Ok(k) => k,
        Err(e) => return trade_page(state, u, f, None, Some(e.into()), None).await,
    };
    let raw = serde_json::value::to_raw_value(&body).expect("a JSON value always serializes");
    match etx_core::trading::place_order(state, &u.auth.user, &key, &raw).await {
        Ok(out) => {
            let open = serde_json::from_str::<serde_json::Value>(&out.body)
                .ok()
                .is_some_and(|v| v["order"]["status"] == "open");
            Redirect::to(if open {
                "/trade?msg=order-placed"
            } else {
                "/trade?msg=order-filled"
            })
            .into_response()
        }
        Err(e) => trade_page(state, u, f, None, Some(e.into()), None).await,
    }
}

/// Step two: fills the quote at exactly its terms (409 once it expired).
pub async fn view_execute_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<OrderForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return trade_page(&state, &u, f, None, Some(e), None).await;
    }
    let body = serde_json::json!({"quote_id": f.quote_id});
    place(&state, &u, f, body).await
}

/// A limit or stop order.
pub async fn view_order_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<OrderForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return trade_page(&state, &u, f, None, Some(e), None).await;
    }
    let price_field = if f.kind == "stop" {
        "stop_price"
    } else {
        "limit_price"
    };
    let mut body = serde_json::json!({
        "pair": pair(&f), "side": f.side, "type": f.kind, "amount": f.amount,
    });
    body[price_field] = serde_json::Value::String(f.price.clone());
    if !f.expires_at.trim().is_empty() {
        body["expires_at"] = serde_json::Value::String(f.expires_at.trim().to_string());
    }
    place(&state, &u, f, body).await
}

pub async fn view_cancel_order_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<super::CsrfForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    match etx_core::trading::cancel_order(&state, &u.auth.user, &id).await {
        Ok(_) => Ok(Redirect::to("/trade?msg=order-cancelled").into_response()),
        Err(CoreError::NotFound) => Err(PageError::from(ApiError::NotFound)),
        Err(_) => Ok(Redirect::to("/trade?msg=order-ended").into_response()),
    }
}

pub struct HoldingRow {
    asset: String,
    total: String,
    held: String,
    price: String,
    value: String,
    avg_cost: String,
    cost_basis: String,
    unrealised: String,
    unrealised_class: &'static str,
    realised: String,
    realised_class: &'static str,
    allocation: String,
    /// Whole percent, for the bar's width.
    bar: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "portfolio.html")]
pub struct PortfolioPage {
    layout: Layout,
    value: String,
    cost_basis: String,
    unrealised: String,
    unrealised_class: &'static str,
    realised: String,
    realised_class: &'static str,
    holdings: Vec<HoldingRow>,
    chart: String,
    points: Vec<(String, String)>,
    stale: bool,
}

fn sign_class(cents: i64) -> &'static str {
    match cents.signum() {
        1 => "up",
        -1 => "down",
        _ => "",
    }
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

pub async fn view_portfolio_get(State(state): State<AppState>, u: WebUser) -> PageResult {
    let p = etx_core::portfolio::portfolio(&state, &u.auth.user.id, 30)
        .await
        .map_err(ApiError::from)?;
    let usd = |c: i64| format_amount(c, 2);
    let holdings = p
        .holdings
        .iter()
        .map(|h| HoldingRow {
            asset: h.asset.clone(),
            total: format_amount(h.total(), h.scale),
            held: format_amount(h.held, h.scale),
            price: dash(h.price.map(etx_core::market::price_text)),
            value: dash(h.value.map(usd)),
            avg_cost: dash(h.avg_cost().map(etx_core::market::price_text)),
            cost_basis: dash(h.cost_basis.map(usd)),
            unrealised: dash(h.unrealised.map(usd)),
            unrealised_class: sign_class(h.unrealised.unwrap_or(0)),
            realised: usd(h.realised),
            realised_class: sign_class(h.realised),
            allocation: dash(h.allocation_bps.map(usd)),
            bar: h.allocation_bps.unwrap_or(0) / 100,
        })
        .collect();
    let points: Vec<(String, String)> = p
        .history
        .iter()
        .map(|(d, v)| (etx_core::time::rfc3339(*d)[..10].to_string(), usd(*v)))
        .collect();
    Ok(PortfolioPage {
        layout: Layout::new(Some(UserView::from(&u.auth.user)), u.csrf, "portfolio"),
        value: usd(p.value),
        cost_basis: usd(p.cost_basis),
        unrealised: usd(p.unrealised),
        unrealised_class: sign_class(p.unrealised),
        realised: usd(p.realised),
        realised_class: sign_class(p.realised),
        holdings,
        chart: value_chart(&p.history),
        points,
        stale: p.stale,
    }
    .into_response())
}

/// The value over time as an SVG line; the page also lists the points in a table.
fn value_chart(history: &[(i64, i64)]) -> String {
    let (w, h, pad) = (640.0_f64, 200.0_f64, 8.0_f64);
    let max = history.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let n = history.len().max(2) - 1;
    let mut path = String::new();
    for (i, (_, v)) in history.iter().enumerate() {
        // Pixel positions only: the amounts themselves are never computed in floating point.
        let x = pad + (w - 2.0 * pad) * i as f64 / n as f64;
        let y = h - pad - (h - 2.0 * pad) * (*v as f64) / max;
        let _ = write!(
            path,
            "{}{x:.1},{y:.1}",
            if path.is_empty() { "M" } else { " L" }
        );
    }
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"value-chart-title\" \
         preserveAspectRatio=\"none\"><title id=\"value-chart-title\">Portfolio value, last {} days</title>\
         <path d=\"{path}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\"/></svg>",
        history.len().saturating_sub(1)
    )
}

#[derive(Deserialize, Default, Clone)]
pub struct AlertForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    asset: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    move_percent: String,
    #[serde(default)]
    window_minutes: String,
    #[serde(default)]
    repeat: Option<String>,
    #[serde(default)]
    cooldown_minutes: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    layout: Layout,
    alerts: Vec<AlertView>,
    symbols: Vec<String>,
    form: AlertForm,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

async fn alerts_page(
    state: &AppState,
    u: &WebUser,
    form: AlertForm,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    let alerts = match etx_core::alerts::list(state, &u.auth.user).await {
        Ok(a) => a,
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let (status, message, field_errors) = super::form_outcome(error);
    let mut form = form;
    if form.kind.is_empty() {
        form.kind = "above".into();
    }
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "alerts");
    layout.notice = notice_text;
    (
        status,
        AlertsPage {
            layout,
            alerts,
            symbols: state.market.symbols.clone(),
            form,
            error: message,
            field_errors,
        },
    )
        .into_response()
}

pub async fn view_alerts_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    alerts_page(&state, &u, AlertForm::default(), None, notice(&q)).await
}

pub async fn view_alert_create_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<AlertForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return alerts_page(&state, &u, f, Some(e), None).await;
    }
    let text = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| serde_json::Value::String(s.to_string()))
    };
    let number = |field: &str, s: &str| -> Result<Option<i64>, ApiError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| ApiError::field(field, "must be a whole number"))
    };
    let is_move = f.kind == "move";
    let parsed = (|| {
        Ok::<_, ApiError>(NewAlert {
            asset: f.asset.clone(),
            kind: f.kind.clone(),
            price: if is_move { None } else { text(&f.price) },
            move_percent: if is_move { text(&f.move_percent) } else { None },
            window_minutes: if is_move {
                number("window_minutes", &f.window_minutes)?
            } else {
                None
            },
            repeat: f.repeat.is_some(),
            email: f.email.is_some(),
            cooldown_minutes: number("cooldown_minutes", &f.cooldown_minutes)?,
        })
    })();
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return alerts_page(&state, &u, f, Some(e), None).await,
    };
    match etx_core::alerts::create(&state, &u.auth.user, &req).await {
        Ok(_) => Redirect::to("/alerts?msg=alert-created").into_response(),
        Err(e) => alerts_page(&state, &u, f, Some(e.into()), None).await,
    }
}

#[derive(Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    active: String,
}

pub async fn view_alert_toggle_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ToggleForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    etx_core::alerts::set_active(&state, &u.auth.user, &id, f.active == "true")
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/alerts?msg=alert-updated").into_response())
}

pub async fn view_alert_delete_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<super::CsrfForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    etx_core::alerts::delete(&state, &u.auth.user, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/alerts?msg=deleted").into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_trading.html")]
pub struct AdminTradingPage {
    layout: Layout,
    pairs: Vec<etx_core::trading::settings::PairSettingView>,
    inventory: Vec<etx_core::trading::settings::InventoryView>,
    is_admin: bool,
    error: Option<String>,
}

async fn admin_trading_page(
    state: &AppState,
    u: &WebUser,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    if !u.auth.role.is_staff() {
        return super::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    }
    let loaded = async {
        Ok::<_, CoreError>((
            etx_core::trading::settings::list(state).await?,
            etx_core::trading::settings::inventory(state).await?,
        ))
    };
    let (pairs, inventory) = match loaded.await {
        Ok(v) => v,
        Err(e) => return PageError::from(ApiError::from(e)).into_response(),
    };
    let (status, message, _) = super::form_outcome(error);
    let mut layout = Layout::new(
        Some(UserView::from(&u.auth.user)),
        u.csrf.clone(),
        "trading-admin",
    );
    layout.notice = notice_text;
    (
        status,
        AdminTradingPage {
            layout,
            pairs,
            inventory,
            is_admin: u.auth.role.is_admin(),
            error: message,
        },
    )
        .into_response()
}

pub async fn view_admin_trading_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    admin_trading_page(&state, &u, None, notice(&q)).await
}

#[derive(Deserialize)]
pub struct PairForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    halted: Option<String>,
    #[serde(default)]
    fee_bps: String,
    #[serde(default)]
    spread_bps: String,
}

pub async fn view_admin_pair_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(pair): Path<String>,
    Form(f): Form<PairForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return admin_trading_page(&state, &u, Some(e), None).await;
    }
    let bps = |field: &str, s: &str| -> Result<Option<i64>, ApiError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| ApiError::field(field, "must be a whole number of basis points"))
    };
    let req = (|| {
        Ok::<_, ApiError>(etx_core::trading::settings::PairSettingRequest {
            halted: f.halted.is_some(),
            fee_bps: bps("fee_bps", &f.fee_bps)?,
            spread_bps: bps("spread_bps", &f.spread_bps)?,
        })
    })();
    let saved = match req {
        Ok(r) => etx_core::trading::settings::save(&state, &u.auth, &pair, &r)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Redirect::to("/admin/trading?msg=saved-pair").into_response(),
        Err(ApiError::Forbidden(_)) => {
            super::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
        }
        Err(e) => admin_trading_page(&state, &u, Some(e), None).await,
    }
}
