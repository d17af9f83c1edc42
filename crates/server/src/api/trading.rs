//! `/api/orders`: trading against the platform at the live price.

use crate::api::wallet::Answer;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use etx_core::market::price_text;
use etx_core::trading::{self, OrderPlaced, OrderQuote, OrderView, QuoteRequest};
use etx_domain::format_amount;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quote))
        .routes(routes!(export_orders))
        .routes(routes!(list, place))
        .routes(routes!(get_order, cancel))
        .routes(routes!(portfolio))
        .routes(routes!(admin_trading))
        .routes(routes!(save_pair))
}

#[derive(Serialize, ToSchema)]
pub struct TradingAdminView {
    pub pairs: Vec<etx_core::trading::settings::PairSettingView>,
    pub inventory: Vec<etx_core::trading::settings::InventoryView>,
}

/// Staff: every pair's halt, fee and spread, and the platform's position and fees per asset.
#[utoipa::path(get, path = "/api/admin/trading", tag = "admin",
    responses(
        (status = 200, description = "Pair settings and inventory", body = TradingAdminView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not staff", body = ErrorBody),
    ))]
async fn admin_trading(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<TradingAdminView>> {
    auth.require_staff()?;
    Ok(Json(TradingAdminView {
        pairs: etx_core::trading::settings::list(&state).await?,
        inventory: etx_core::trading::settings::inventory(&state).await?,
    }))
}

/// Body of a pair's settings: all fields are set as given.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PairSettingBody {
    /// No new orders and no fills of resting ones while halted (cancels still work).
    halted: bool,
    /// Overrides `[trading] fee_bps`; null for the default.
    fee_bps: Option<i64>,
    /// Overrides `[trading] spread_bps`; null for the default.
    spread_bps: Option<i64>,
}

/// Admins: halt or resume a pair (`BTC-USD`), or set its fee and spread. Applies on this
/// instance at once and on the others within `[trading] sync_ms`.
#[utoipa::path(put, path = "/api/admin/trading/pairs/{pair}", tag = "admin",
    params(("pair" = String, Path, description = "The pair, BTC-USD")),
    request_body = PairSettingBody,
    responses(
        (status = 200, description = "The pair's settings", body = etx_core::trading::settings::PairSettingView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Unknown pair or a bad value", body = ErrorBody),
    ))]
async fn save_pair(
    State(state): State<AppState>,
    auth: Auth,
    Path(pair): Path<String>,
    AppJson(body): AppJson<etx_core::trading::settings::PairSettingRequest>,
) -> ApiResult<Json<etx_core::trading::settings::PairSettingView>> {
    Ok(Json(
        etx_core::trading::settings::save(&state, &auth, &pair, &body).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PortfolioQuery {
    /// Days of value history before today, 1–365 (default 30).
    pub days: Option<i64>,
}

/// Your holdings valued at live prices, with average-cost basis, P&L, allocation and value
/// over time. Money is in USD (2 decimals); `null` where the feed has no price.
#[utoipa::path(get, path = "/api/portfolio", tag = "trading", params(PortfolioQuery),
    responses(
        (status = 200, description = "The portfolio", body = PortfolioView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad days", body = ErrorBody),
    ))]
async fn portfolio(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<PortfolioQuery>,
) -> ApiResult<Json<PortfolioView>> {
    let days = q.days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(crate::error::ApiError::field(
            "days",
            "must be between 1 and 365",
        ));
    }
    let p = etx_core::portfolio::portfolio(&state.core, &auth.user.id, days).await?;
    Ok(Json(PortfolioView::from(&p)))
}

#[derive(Serialize, ToSchema)]
pub struct PortfolioView {
    pub currency: &'static str,
    pub value: String,
    pub cost_basis: String,
    pub unrealised_pnl: String,
    pub realised_pnl: String,
    pub holdings: Vec<HoldingView>,
    pub history: Vec<ValuePoint>,
    /// The feed is stale: values use the last prices it gave.
    pub stale: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HoldingView {
    pub asset: String,
    /// In the wallet, spendable.
    pub available: String,
    /// Reserved by open orders, pending review.
    pub held: String,
    pub total: String,
    pub price: Option<String>,
    pub value: Option<String>,
    /// Average cost per unit.
    pub avg_cost: Option<String>,
    pub cost_basis: Option<String>,
    pub unrealised_pnl: Option<String>,
    pub realised_pnl: String,
    /// Percent of the portfolio's value.
    pub allocation_pct: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ValuePoint {
    /// UTC day, `YYYY-MM-DD`; the last point is today at live prices.
    pub date: String,
    pub value: String,
}

impl From<&etx_core::portfolio::Portfolio> for PortfolioView {
    fn from(p: &etx_core::portfolio::Portfolio) -> Self {
        let usd = |c: i64| format_amount(c, 2);
        PortfolioView {
            currency: "USD",
            value: usd(p.value),
            cost_basis: usd(p.cost_basis),
            unrealised_pnl: usd(p.unrealised),
            realised_pnl: usd(p.realised),
            holdings: p
                .holdings
                .iter()
                .map(|h| HoldingView {
                    asset: h.asset.clone(),
                    available: format_amount(h.available, h.scale),
                    held: format_amount(h.held, h.scale),
                    total: format_amount(h.total(), h.scale),
                    price: h.price.map(price_text),
                    value: h.value.map(usd),
                    avg_cost: h.avg_cost().map(price_text),
                    cost_basis: h.cost_basis.map(usd),
                    unrealised_pnl: h.unrealised.map(usd),
                    realised_pnl: usd(h.realised),
                    allocation_pct: h.allocation_bps.map(usd),
                })
                .collect(),
            history: p
                .history
                .iter()
                .map(|(day, v)| ValuePoint {
                    date: etx_core::time::rfc3339(*day)[..10].to_string(),
                    value: usd(*v),
                })
                .collect(),
            stale: p.stale,
        }
    }
}

/// Body of a quote: what a market order would be.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct QuoteBody {
    /// Base and quote asset, e.g. `BTC/USD` or `ETH/BTC` (any two supported assets).
    #[schema(example = "BTC/USD")]
    pair: String,
    /// `buy` or `sell` (of the base asset).
    #[schema(example = "buy")]
    side: String,
    /// Of the base asset, as a decimal string or number.
    #[schema(value_type = String, example = "0.01")]
    amount: String,
}

/// The price, fee and total of a market order at the live price, with a quote id that fills
/// at exactly these terms until it expires (`[trading] quote_ttl_secs`, 10 s by default). The
/// price is the feed's plus the spread for a buy, minus it for a sell; sending a `price` is
/// refused. Moves nothing.
#[utoipa::path(post, path = "/api/orders/quote", tag = "trading", request_body = QuoteBody,
    responses(
        (status = 200, description = "The quote", body = OrderQuote),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid pair, side or amount, a client-sent price, or LIMIT_EXCEEDED (order size)", body = ErrorBody),
        (status = 503, description = "The price feed is stale or has no price for the pair", body = ErrorBody),
    ))]
async fn quote(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<OrderQuote>> {
    let (_, req): (_, QuoteRequest) = etx_core::ledger::parse_request(&body)?;
    Ok(Json(trading::quote(&state, &auth.user.id, &req)?))
}

/// Body of an order: a market order priced now (`pair`, `side`, `amount`), or the one a quote
/// describes (`quote_id`; `pair`, `side` and `amount` may be repeated and must then match).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct OrderBody {
    #[schema(example = "BTC/USD")]
    pair: Option<String>,
    #[schema(example = "buy")]
    side: Option<String>,
    /// `market` (the default), `limit` or `stop`.
    #[serde(rename = "type")]
    #[schema(example = "market")]
    kind: Option<String>,
    /// Of the base asset.
    #[schema(value_type = Option<String>, example = "0.01")]
    amount: Option<String>,
    /// From `POST /api/orders/quote`: fills at exactly its terms, 409 once expired or used.
    /// Market orders only.
    quote_id: Option<String>,
    /// A limit order's price (quote asset per base unit): a buy fills at it once the platform's
    /// buy price is at or below it, a sell once its sell price is at or above it.
    #[schema(value_type = Option<String>, example = "58000")]
    limit_price: Option<String>,
    /// A stop order's trigger: a buy becomes a market buy once the buy price is at or above
    /// it, a sell a market sell once the sell price is at or below it.
    #[schema(value_type = Option<String>, example = "55000")]
    stop_price: Option<String>,
    /// When a limit or stop order ends if it has not filled (RFC 3339, at most 366 days
    /// away); without it, it rests until cancelled.
    #[schema(example = "2026-12-31T00:00:00Z")]
    expires_at: Option<String>,
}

/// Place an order. A market order fills at once against the platform at the live price (plus
/// the spread for a buy, minus it for a sell) or at a quote's price, with the fee, in one
/// journal entry over both assets; your balances of both are in the answer. A limit or stop
/// order moves what it needs (a buy: value and fee at its price, a stop buy with
/// `[trading] stop_margin_bps` more; a sell: the amount) into your orders hold and stays
/// `open` until the feed crosses its price, you cancel it, or it expires; the answer shows
/// the wallet balance of the held asset. A price that the live feed already crosses is a
/// 422. Requires an `Idempotency-Key` header.
#[utoipa::path(post, path = "/api/orders", tag = "trading", request_body = OrderBody,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended order")),
    responses(
        (status = 201, description = "The filled (market) or open (limit, stop) order and your balances", body = OrderPlaced),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "Key reused with a different body, or the quote expired or was used", body = ErrorBody),
        (status = 422, description = "Invalid fields, a client-sent price on a market order, a trigger price crossed already, INSUFFICIENT_FUNDS or LIMIT_EXCEEDED (order size, platform exposure, open orders)", body = ErrorBody),
        (status = 503, description = "The price feed is stale or has no price for the pair", body = ErrorBody),
    ))]
async fn place(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Answer> {
    let key = crate::extract::idempotency_key(&headers)?;
    Ok(Answer(
        trading::place_order(&state, &auth.user, &key, &body).await?,
    ))
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    pub skip: Option<i64>,
    /// At most 100 (default 20).
    pub limit: Option<i64>,
    /// `open`, `filled`, `cancelled`, `expired` or `rejected`.
    pub status: Option<String>,
    /// e.g. `BTC/USD`.
    pub pair: Option<String>,
}

/// Your orders, newest first; `status=open` lists the limit and stop orders still resting.
#[utoipa::path(get, path = "/api/orders", tag = "trading", params(OrderQuery),
    responses(
        (status = 200, description = "A page of your orders", body = OrderList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid paging, status or pair", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<OrderQuery>,
) -> ApiResult<Json<OrderList>> {
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let (total, orders) = trading::list_orders(
        &state,
        &auth.user,
        q.status.as_deref(),
        q.pair.as_deref(),
        skip,
        limit,
    )
    .await?;
    Ok(Json(OrderList {
        orders,
        total,
        skip,
        limit,
    }))
}

/// One of your orders; another user's is a 404.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "trading",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such order of yours", body = ErrorBody),
    ))]
async fn get_order(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(trading::get_order(&state, &auth.user, &id).await?))
}

/// Cancel one of your open limit or stop orders: what it still holds goes back to your wallet.
/// Exactly one of a cancel and a fill racing each other wins.
#[utoipa::path(delete, path = "/api/orders/{id}", tag = "trading",
    params(("id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such order of yours", body = ErrorBody),
        (status = 409, description = "The order is no longer open (filled, cancelled or expired)", body = ErrorBody),
    ))]
async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(trading::cancel_order(&state, &auth.user, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderExportQuery {
    /// `csv` or `json`.
    pub format: String,
    /// `open`, `filled`, `cancelled`, `expired` or `rejected`.
    pub status: Option<String>,
    /// e.g. `BTC/USD`.
    pub pair: Option<String>,
}

const EXPORT_PAGE: i64 = 5000;

/// Export every matching order of yours, newest first (streamed; any size).
#[utoipa::path(get, path = "/api/orders/export", tag = "trading", params(OrderExportQuery),
    responses(
        (status = 200, description = "A CSV or JSON attachment", content_type = "text/csv"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad format, status or pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn export_orders(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<OrderExportQuery>,
) -> ApiResult<axum::response::Response> {
    let headers = super::transactions::budget(&state, &auth).await?;
    let csv = super::export::is_csv(&q.format)?;
    let filter = trading::OrderFilter::parse(&state, q.status.as_deref(), q.pair.as_deref())?;
    let user_id = auth.user.id.clone();
    let reader = state.clone();
    let rx = super::export::spawn_reader(
        EXPORT_PAGE,
        (),
        move |before: Option<(i64, String)>, ()| {
            let (reader, filter, user_id) = (reader.clone(), filter.clone(), user_id.clone());
            async move {
                let rows = reader
                    .db
                    .orders_before(
                        &user_id,
                        filter.status,
                        filter.pair(),
                        before.as_ref().map(|(at, id)| (*at, id.as_str())),
                        EXPORT_PAGE,
                    )
                    .await?;
                Ok((rows, ()))
            }
        },
        |o: &etx_db::orders::OrderRow| (o.created_at, o.id.clone()),
    );
    let (csv_state, json_state) = (state.clone(), state);
    super::export::attachment(
        headers,
        csv,
        "orders",
        EXPORT_PAGE,
        rx,
        super::export::RowFormat {
            csv_header: "id,created_at,updated_at,pair,side,type,status,amount,price,trigger_price,value,fee,total,quote_currency,reason\r\n",
            csv: Box::new(move |out, _scratch, o| {
                let v = OrderView::new(&csv_state, o);
                let cells = [
                    v.id.as_str(),
                    &v.created_at,
                    &v.updated_at,
                    &v.pair,
                    &v.side,
                    &v.kind,
                    &v.status,
                    &v.amount,
                    &v.price,
                    v.trigger_price.as_deref().unwrap_or(""),
                    &v.value,
                    &v.fee,
                    &v.total,
                    &v.quote_currency,
                    v.reason.as_deref().unwrap_or(""),
                ];
                for (i, c) in cells.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    super::export::push_csv_cell(out, c);
                }
                out.push_str("\r\n");
            }),
            json: Box::new(move |o| {
                serde_json::to_string(&OrderView::new(&json_state, o)).unwrap_or_default()
            }),
        },
    )
}
