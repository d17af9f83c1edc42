//! `/api/orders`: trading against the platform at the live price.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use etx_core::trading::{self, OrderQuote, QuoteRequest};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(quote))
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
