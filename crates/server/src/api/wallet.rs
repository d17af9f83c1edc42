//! `/api/wallet/*`, `/api/transfers/*` and `/api/admin/wallets/adjust`: balances, P2P transfers
//! and their history, and admin adjustments.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use crate::views::rfc3339;
use crate::views::wallet::TransactionView;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etx_core::ledger::{Outcome, Taken};
use etx_core::wallet::{
    self, AdjustmentApplied, AdjustmentList, AdjustmentRequested, AdjustmentResponse,
    AdjustmentView, TransferCreated,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(p2p))
        .routes(routes!(p2p_history))
        .routes(routes!(admin_adjust))
        .routes(routes!(admin_adjustments))
        .routes(routes!(approve_adjustment))
        .routes(routes!(reject_adjustment))
}

/// A money POST's answer as HTTP: 201 when carried out, 202 when held for review. The body is
/// the answer's JSON as stored for replays, the serialized view its operation documents.
pub struct Answer(pub Outcome);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let Answer(o) = self;
        let status = match o.status {
            Taken::Completed => StatusCode::CREATED,
            Taken::Held => StatusCode::ACCEPTED,
        };
        let mut r = (status, o.body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if o.replayed {
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        r
    }
}

#[derive(Serialize, ToSchema)]
pub struct Wallet {
    /// Every supported asset, as a decimal string with the asset's scale.
    #[schema(example = json!({"USD": "12.50", "BTC": "0.00000000"}))]
    pub balances: BTreeMap<String, String>,
    pub updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BalanceResponse {
    pub wallet: Wallet,
}

/// Your balance in every supported asset.
#[utoipa::path(get, path = "/api/wallet/balance", tag = "wallet",
    responses(
        (status = 200, description = "Balances", body = BalanceResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn balance(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<BalanceResponse>> {
    let (list, updated) = wallet::balance_list(&state, &auth.user.id).await?;
    let balances = list.into_iter().collect();
    Ok(Json(BalanceResponse {
        wallet: Wallet {
            balances,
            updated_at: updated.map(rfc3339),
        },
    }))
}

/// Body of a P2P transfer.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct P2pBody {
    /// Username or email of an active, verified user.
    recipient: String,
    /// Decimal string (or number) with at most the asset's decimals.
    #[schema(value_type = String, example = "25.00")]
    amount: String,
    #[schema(example = "USD")]
    currency: String,
    note: Option<String>,
}

/// Send money to another user. Requires an `Idempotency-Key` header: repeating the same request
/// with the same key returns the first answer and moves nothing again.
#[utoipa::path(post, path = "/api/transfers/p2p", tag = "wallet", request_body = P2pBody,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended transfer")),
    responses(
        (status = 201, description = "Transferred, or held for a compliance review (`status: held`); the transfer and your new balance", body = TransferCreated),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "CSRF token missing or invalid", body = ErrorBody),
        (status = 409, description = "Key reused with a different body", body = ErrorBody),
        (status = 422, description = "Invalid amount/currency/recipient, INSUFFICIENT_FUNDS or LIMIT_EXCEEDED", body = ErrorBody),
    ))]
async fn p2p(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    AppJson(body): AppJson<Box<serde_json::value::RawValue>>,
) -> ApiResult<Answer> {
    let key = crate::extract::idempotency_key(&headers)?;
    Ok(Answer(
        wallet::transfer_p2p(&state, &auth.user, &key, &body).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub skip: Option<i64>,
    /// At most 100 (default 20).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TransferHistory {
    pub transfers: Vec<TransactionView>,
    /// Counting stops at 10,000: then `total_exact` is false.
    pub total: i64,
    pub total_exact: bool,
    pub skip: i64,
    pub limit: i64,
}

/// Your P2P transfers, sent and received, newest first.
#[utoipa::path(get, path = "/api/transfers/p2p/history", tag = "wallet", params(PageQuery),
    responses(
        (status = 200, description = "A page of transfers", body = TransferHistory),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Bad paging parameters", body = ErrorBody),
    ))]
async fn p2p_history(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Json<TransferHistory>> {
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let filter = etx_db::ledger::TxFilter {
        kind: Some("p2p".into()),
        ..Default::default()
    };
    let (total, total_exact) = state
        .db
        .count_transactions(&auth.user.id, &filter, etx_db::ledger::COUNT_CAP)
        .await?;
    let rows = state
        .db
        .list_transactions(&auth.user.id, &filter, None, skip, limit)
        .await?;
    let transfers = rows
        .iter()
        .map(|t| TransactionView::new(&state, t))
        .collect();
    Ok(Json(TransferHistory {
        transfers,
        total,
        total_exact,
        skip,
        limit,
    }))
}

/// Body of an admin adjustment.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct AdjustBody {
    user_id: String,
    currency: String,
    /// Signed decimal: positive credits, negative debits.
    #[schema(value_type = String, example = "-5.00")]
    amount: String,
    /// Why; kept on the journal entry.
    reason: String,
}

/// Credit or debit a user's balance (admin), posted against the platform equity account.
/// Never your own balance. Worth `[admin] adjust_approval_from_usd` or more (at the current
/// price), it is only requested (202, `status: "pending"`) and applied when another admin
/// approves it. Requires an `Idempotency-Key` header.
#[utoipa::path(post, path = "/api/admin/wallets/adjust", tag = "admin", request_body = AdjustBody,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended adjustment")),
    responses(
        (status = 201, description = "Adjusted; the adjustment with the new balance", body = AdjustmentApplied),
        (status = 202, description = "The adjustment, waiting for a second admin's approval; nothing moved yet", body = AdjustmentRequested),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin, CSRF failure, or your own balance", body = ErrorBody),
        (status = 409, description = "Key reused with a different body", body = ErrorBody),
        (status = 422, description = "Invalid fields or INSUFFICIENT_FUNDS for a debit", body = ErrorBody),
    ))]
async fn admin_adjust(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    AppJson(body): AppJson<Box<serde_json::value::RawValue>>,
) -> ApiResult<Answer> {
    auth.require_admin()?;
    let key = crate::extract::idempotency_key(&headers)?;
    Ok(Answer(
        wallet::adjust(&state, &auth.user, &key, &body).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdjustmentsQuery {
    /// `pending` (default), `applied`, `rejected` or `all`.
    status: Option<String>,
}

/// Adjustment requests (admins), newest first: by default those waiting for a second admin.
#[utoipa::path(get, path = "/api/admin/wallets/adjustments", tag = "admin", params(AdjustmentsQuery),
    responses(
        (status = 200, description = "Adjustment requests", body = AdjustmentList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Unknown status", body = ErrorBody),
    ))]
async fn admin_adjustments(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<AdjustmentsQuery>,
) -> ApiResult<Json<AdjustmentList>> {
    auth.require_admin()?;
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => Some("pending"),
        Some("all") => None,
        Some(s @ ("pending" | "applied" | "rejected")) => Some(s),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "one of pending, applied, rejected, all",
            ));
        }
    };
    let rows = state.db.adjustment_requests(status, 200).await?;
    let adjustments = rows
        .iter()
        .map(|a| AdjustmentView::new(&state, a))
        .collect();
    Ok(Json(AdjustmentList { adjustments }))
}

/// Optional body of an approval.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentNote {
    /// Up to 500 characters, kept in the audit trail.
    note: Option<String>,
}

/// Body of a rejection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentReason {
    /// 3 to 500 characters, kept in the audit trail.
    reason: String,
}

/// Approve a pending adjustment (an admin other than the one who asked for it, and not the
/// adjusted user): the money moves now, once, whatever the number of approvals sent.
#[utoipa::path(post, path = "/api/admin/wallets/adjustments/{id}/approve", tag = "admin",
    params(("id" = String, Path, description = "Adjustment id")), request_body = AdjustmentNote,
    responses(
        (status = 200, description = "The adjustment, applied", body = AdjustmentResponse),
        (status = 403, description = "Not an admin, the requesting admin, or your own balance", body = ErrorBody),
        (status = 404, description = "No such adjustment", body = ErrorBody),
        (status = 409, description = "Already applied or rejected", body = ErrorBody),
        (status = 422, description = "INSUFFICIENT_FUNDS for a debit, or a bad note", body = ErrorBody),
    ))]
async fn approve_adjustment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AdjustmentResponse>> {
    auth.require_admin()?;
    // The body is optional: an approval may carry a note.
    let b: AdjustmentNote = if body.iter().all(u8::is_ascii_whitespace) {
        AdjustmentNote::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation {
            message: e.to_string(),
            fields: Default::default(),
        })?
    };
    let adjustment =
        wallet::decide_adjustment(&state, &auth.user, &id, true, b.note.as_deref()).await?;
    Ok(Json(AdjustmentResponse { adjustment }))
}

/// Reject a pending adjustment (an admin other than the one who asked for it); nothing moves.
#[utoipa::path(post, path = "/api/admin/wallets/adjustments/{id}/reject", tag = "admin",
    params(("id" = String, Path, description = "Adjustment id")), request_body = AdjustmentReason,
    responses(
        (status = 200, description = "The adjustment, rejected", body = AdjustmentResponse),
        (status = 403, description = "Not an admin, or the requesting admin", body = ErrorBody),
        (status = 404, description = "No such adjustment", body = ErrorBody),
        (status = 409, description = "Already applied or rejected", body = ErrorBody),
        (status = 422, description = "Missing or bad reason", body = ErrorBody),
    ))]
async fn reject_adjustment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(b): AppJson<AdjustmentReason>,
) -> ApiResult<Json<AdjustmentResponse>> {
    auth.require_admin()?;
    let adjustment =
        wallet::decide_adjustment(&state, &auth.user, &id, false, Some(&b.reason)).await?;
    Ok(Json(AdjustmentResponse { adjustment }))
}
