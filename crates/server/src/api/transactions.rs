//! `/api/transactions*`: a user's history with filters, offset or keyset paging, detail, a
//! summary per type and streamed CSV/JSON export. 100 requests per minute per user.

use super::export::{RowFormat, is_csv, push_csv_cell};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use crate::views::wallet::TransactionView;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use etx_db::ledger::{TransactionRow, TxCursor, TxFilter};
use etx_domain::format_amount;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(summary))
        .routes(routes!(export_get, export_post))
        .routes(routes!(detail))
}

/// Counts the request against the user's per-minute budget; the headers go on every answer.
pub(crate) async fn budget(state: &AppState, auth: &Auth) -> Result<HeaderMap, ApiError> {
    let limit = state.config.rate_limit.transactions_per_user_per_minute;
    let d = state
        .limiter
        .hit(
            &format!("tx:user:{}", auth.user.id),
            limit,
            Duration::from_secs(60),
        )
        .await?;
    if !d.allowed {
        return Err(ApiError::RateLimited {
            retry_after_secs: d.reset_after_secs,
            limit,
        });
    }
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_after_secs));
    Ok(h)
}

#[derive(Deserialize, IntoParams, ToSchema, Default)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// `p2p`, `adjustment`, `deposit`, `withdrawal`, `trade`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub currency: Option<String>,
    /// `completed`, `pending`, `failed`, …
    pub status: Option<String>,
    /// Inclusive start: RFC 3339 time or `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Exclusive end: RFC 3339 time, or `YYYY-MM-DD` meaning the end of that day.
    pub to: Option<String>,
}

pub(crate) fn parse_time(field: &str, v: &str, end_of_day: bool) -> Result<i64, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let d = if end_of_day {
            d.succ_opt().unwrap_or(d)
        } else {
            d
        };
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(ApiError::field(
        field,
        "must be an RFC 3339 time or a YYYY-MM-DD date",
    ))
}

fn short_text(field: &str, v: Option<&str>) -> Result<Option<String>, ApiError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Err(ApiError::field(field, "must be a short identifier"))
        }
        other => Ok(other.map(str::to_string)),
    }
}

impl FilterQuery {
    fn to_filter(&self, state: &AppState) -> Result<TxFilter, ApiError> {
        let asset = match self
            .currency
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(c) => Some(
                state
                    .assets
                    .get(c)
                    .ok_or_else(|| ApiError::field("currency", "is not a supported asset"))?
                    .code
                    .clone(),
            ),
            None => None,
        };
        let from = self
            .from
            .as_deref()
            .map(|v| parse_time("from", v, false))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|v| parse_time("to", v, true))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(ApiError::field("to", "must be after from"));
        }
        Ok(TxFilter {
            kind: short_text("type", self.kind.as_deref())?.map(|s| s.to_ascii_lowercase()),
            asset,
            status: short_text("status", self.status.as_deref())?.map(|s| s.to_ascii_lowercase()),
            from,
            to,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(flatten)]
    #[param(inline)]
    pub filter: FilterQuery,
    // Numbers arrive as text: flattened query structs cannot parse them directly.
    #[param(value_type = Option<i64>)]
    pub skip: Option<String>,
    /// At most 100 (default 20).
    #[param(value_type = Option<i64>)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page; when given, `skip` is ignored.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionList {
    pub transactions: Vec<TransactionView>,
    /// Matching transactions in all pages. With filters, counting stops at 10,000: then
    /// `total` is 10000 and `total_exact` false ("10,000 or more").
    pub total: i64,
    pub total_exact: bool,
    pub skip: i64,
    pub limit: i64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(t: &TransactionRow) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", t.created_at, t.id))
}

fn decode_cursor(s: &str) -> Result<TxCursor, ApiError> {
    let bad = || ApiError::field("cursor", "is not a cursor this server issued");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(TxCursor {
        created_at: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

/// Your transactions, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/transactions", tag = "transactions", params(ListQuery),
    responses(
        (status = 200, description = "A page of transactions", body = TransactionList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad filter, paging or cursor", body = ErrorBody),
        (status = 429, description = "More than 100 requests in a minute", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> ApiResult<Response> {
    let headers = budget(&state, &auth).await?;
    let filter = q.filter.to_filter(&state)?;
    let number = |field: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
        v.map(|s| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::field(field, "must be a whole number"))
        })
        .transpose()
    };
    let (skip, limit) = super::users::paging(
        number("skip", q.skip.as_deref())?,
        number("limit", q.limit.as_deref())?,
    )?;
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    // Independent reads on two pooled connections: the page costs the slower one, not both.
    let ((total, total_exact), rows) = tokio::try_join!(
        state
            .db
            .count_transactions(&auth.user.id, &filter, etx_db::ledger::COUNT_CAP),
        state
            .db
            .list_transactions(&auth.user.id, &filter, cursor.as_ref(), skip, limit),
    )?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(encode_cursor))
        .flatten();
    let body = TransactionList {
        transactions: rows
            .iter()
            .map(|t| TransactionView::new(&state, t))
            .collect(),
        total,
        total_exact,
        skip: if cursor.is_some() { 0 } else { skip },
        limit,
        next_cursor,
    };
    Ok((headers, Json(body)).into_response())
}

/// One of your transactions; another user's is a 404.
#[utoipa::path(get, path = "/api/transactions/{id}", tag = "transactions", params(("id" = String, Path, description = "Transaction id")),
    responses(
        (status = 200, description = "The transaction", body = TransactionView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such transaction of yours", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn detail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let headers = budget(&state, &auth).await?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::NotFound)?
        .to_string();
    let row = state
        .db
        .transaction_of_user(&auth.user.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((headers, Json(TransactionView::new(&state, &row))).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct SummaryLine {
    #[serde(rename = "type")]
    pub kind: String,
    pub currency: String,
    pub count: i64,
    pub total_in: String,
    pub total_out: String,
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub summary: Vec<SummaryLine>,
}

/// Counts and totals per type and currency, for the same filters as the list.
#[utoipa::path(get, path = "/api/transactions/summary", tag = "transactions", params(FilterQuery),
    responses(
        (status = 200, description = "Totals", body = Summary),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn summary(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<FilterQuery>,
) -> ApiResult<Response> {
    let headers = budget(&state, &auth).await?;
    let filter = q.to_filter(&state)?;
    let rows = state.db.transaction_summary(&auth.user.id, &filter).await?;
    let mut lines: Vec<SummaryLine> = Vec::new();
    for r in rows {
        let scale = state.assets.get(&r.asset).map_or(0, |a| a.scale);
        let (inn, out) = if r.direction == "in" {
            (r.total, 0)
        } else {
            (0, r.total)
        };
        match lines
            .iter_mut()
            .find(|l| l.kind == r.kind && l.currency == r.asset)
        {
            Some(l) => {
                l.count += r.n;
                if inn != 0 {
                    l.total_in = format_amount(inn, scale);
                }
                if out != 0 {
                    l.total_out = format_amount(out, scale);
                }
            }
            None => lines.push(SummaryLine {
                kind: r.kind,
                currency: r.asset,
                count: r.n,
                total_in: format_amount(inn, scale),
                total_out: format_amount(out, scale),
            }),
        }
    }
    Ok((headers, Json(Summary { summary: lines })).into_response())
}

#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportRequest {
    /// `csv` or `json`.
    pub format: String,
    #[serde(flatten)]
    #[param(inline)]
    pub filter: FilterQuery,
}

/// Export every matching transaction (streamed; any size).
#[utoipa::path(get, path = "/api/transactions/export", tag = "transactions", params(ExportRequest),
    responses(
        (status = 200, description = "A CSV or JSON attachment", content_type = "text/csv"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad format or filter", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn export_get(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ExportRequest>,
) -> ApiResult<Response> {
    export(state, auth, q).await
}

/// Export every matching transaction (streamed; any size).
#[utoipa::path(post, path = "/api/transactions/export", tag = "transactions", request_body = ExportRequest,
    responses(
        (status = 200, description = "A CSV or JSON attachment", content_type = "text/csv"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 422, description = "Bad format or filter", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
async fn export_post(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(q): AppJson<ExportRequest>,
) -> ApiResult<Response> {
    export(state, auth, q).await
}

/// One CSV line straight from the row: the same cells as `TransactionView`, without building it.
fn push_csv_row(out: &mut String, scratch: &mut String, state: &AppState, t: &TransactionRow) {
    let scale = state.assets.get(&t.asset).map_or(0, |a| a.scale);
    push_csv_cell(out, &t.id);
    out.push(',');
    scratch.clear();
    crate::views::write_rfc3339(scratch, t.created_at);
    push_csv_cell(out, scratch);
    for cell in [&t.kind, &t.direction, &t.asset] {
        out.push(',');
        push_csv_cell(out, cell);
    }
    for minor in [t.amount, t.fee] {
        out.push(',');
        scratch.clear();
        etx_domain::write_amount(scratch, minor, scale);
        push_csv_cell(out, scratch);
    }
    out.push(',');
    push_csv_cell(out, &t.status);
    out.push(',');
    push_csv_cell(out, t.counterparty_username.as_deref().unwrap_or(""));
    out.push(',');
    push_csv_cell(out, t.note.as_deref().unwrap_or(""));
    out.push_str("\r\n");
}

const EXPORT_PAGE: i64 = 5000;

async fn export(state: AppState, auth: Auth, q: ExportRequest) -> ApiResult<Response> {
    let headers = budget(&state, &auth).await?;
    let csv = is_csv(&q.format)?;
    let filter = q.filter.to_filter(&state)?;
    let user_id = auth.user.id.clone();
    let reader = state.clone();
    let rx = super::export::spawn_reader(
        EXPORT_PAGE,
        std::collections::HashMap::new(),
        move |cursor: Option<TxCursor>, mut names| {
            let (reader, filter, user_id) = (reader.clone(), filter.clone(), user_id.clone());
            async move {
                let rows = reader
                    .db
                    .export_page(&user_id, &filter, cursor.as_ref(), EXPORT_PAGE, &mut names)
                    .await?;
                Ok((rows, names))
            }
        },
        |r: &TransactionRow| TxCursor {
            created_at: r.created_at,
            id: r.id.clone(),
        },
    );
    let (csv_state, json_state) = (state.clone(), state);
    super::export::attachment(
        headers,
        csv,
        "transactions",
        EXPORT_PAGE,
        rx,
        RowFormat {
            csv_header: "id,created_at,type,direction,currency,amount,fee,status,counterparty,note\r\n",
            csv: Box::new(move |out, scratch, r| push_csv_row(out, scratch, &csv_state, r)),
            json: Box::new(move |r| {
                serde_json::to_string(&TransactionView::new(&json_state, r)).unwrap_or_default()
            }),
        },
    )
}

#[cfg(test)]
mod tests {
    fn csv_cell(v: &str) -> String {
        let mut out = String::new();
        super::push_csv_cell(&mut out, v);
        out
    }

    #[test]
    fn csv_cells_are_neutralised_and_quoted() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
    }
}
