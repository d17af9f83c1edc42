//! Deposits, the provider webhook, withdrawals, and the staff queues for withdrawals and AML
//! review.

use crate::api::wallet::Answer;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use etx_core::deposits::{
    self, DepositList, DepositNotification, DepositResponse, DepositView, SuspenseList,
    SuspenseResponse, SuspenseView, WebhookResult,
};
use etx_core::ledger::AmountText;
use etx_core::providers;
use etx_core::review::{self, FlagList, FlagResponse};
use etx_core::rules::FlagView;
use etx_core::withdrawals::{
    self, QuoteView, StaffAction, WithdrawalCreated, WithdrawalList, WithdrawalResponse,
    WithdrawalView,
};
use etx_db::payments::WithdrawalFilter;
use etx_domain::AuditAction;
use etx_domain::WithdrawalStatus;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deposit))
        .routes(routes!(get_deposit))
        .routes(routes!(list_deposits))
        .routes(routes!(simulate_deposit))
        .routes(routes!(webhook))
        .routes(routes!(withdraw_quote))
        .routes(routes!(withdraw))
        .routes(routes!(list_withdrawals))
        .routes(routes!(get_withdrawal))
        .routes(routes!(cancel_withdrawal))
        .routes(routes!(admin_withdrawals))
        .routes(routes!(approve_withdrawal))
        .routes(routes!(reject_withdrawal))
        .routes(routes!(complete_withdrawal))
        .routes(routes!(aml_queue))
        .routes(routes!(aml_release))
        .routes(routes!(aml_reject))
        .routes(routes!(suspense_list))
        .routes(routes!(suspense_refund))
        .routes(routes!(suspense_credit))
}

/// A JSON object body in its typed form, read from its text (amounts never pass through a
/// float).
fn typed<T: serde::de::DeserializeOwned>(body: &RawValue) -> Result<T, ApiError> {
    Ok(etx_core::ledger::parse_request(body)?.1)
}

/// Body of a deposit order.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct DepositBody {
    /// USD value to deposit, as a decimal string or number.
    #[schema(value_type = String, example = "100.00")]
    amount: String,
    /// One of the configured pay currencies (BTC, ETH, USDT, USDC, LTC, BNB, SOL).
    #[schema(example = "BTC")]
    pay_currency: String,
}

/// Create a deposit order: an address, the amount to pay in the chosen currency at the current
/// price, a QR code and an expiry. The balance is credited when the provider reports the
/// payment finished.
#[utoipa::path(post, path = "/api/wallet/deposit/create", tag = "wallet", request_body = DepositBody,
    responses(
        (status = 201, description = "The order, with `qr_svg`", body = DepositResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid amount or currency, or LIMIT_EXCEEDED", body = ErrorBody),
        (status = 503, description = "No price or the provider is unavailable", body = ErrorBody),
    ))]
async fn create_deposit(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<(StatusCode, Json<DepositResponse>)> {
    let req: deposits::DepositRequest = typed(&body)?;
    let deposit = deposits::create_deposit(&state, &auth.user, req).await?;
    Ok((StatusCode::CREATED, Json(DepositResponse { deposit })))
}

/// One of your deposit orders, with its QR code and every status the provider reported.
#[utoipa::path(get, path = "/api/wallet/deposit/{order_id}", tag = "wallet",
    params(("order_id" = String, Path, description = "DEP-…")),
    responses(
        (status = 200, description = "The order, with `qr_svg` and `notifications`", body = DepositResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such order of yours", body = ErrorBody),
    ))]
async fn get_deposit(
    State(state): State<AppState>,
    auth: Auth,
    Path(order_id): Path<String>,
) -> ApiResult<Json<DepositResponse>> {
    let d = state
        .db
        .deposit_by_order(&order_id)
        .await?
        .filter(|d| d.user_id == auth.user.id || auth.role.is_staff())
        .ok_or(ApiError::NotFound)?;
    let mut deposit = DepositView::new(&state, &d, true);
    deposit.notifications = Some(
        state
            .db
            .webhooks_of_order(&d.order_id)
            .await?
            .into_iter()
            .filter(|w| w.signature_ok)
            .map(|w| DepositNotification {
                status: w.payment_status,
                outcome: w.outcome,
                at: crate::views::rfc3339(w.received_at),
            })
            .collect(),
    );
    Ok(Json(DepositResponse { deposit }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub skip: Option<i64>,
    /// At most 100 (default 20).
    pub limit: Option<i64>,
}

/// Your deposit orders, newest first.
#[utoipa::path(get, path = "/api/wallet/deposits", tag = "wallet", params(PageQuery),
    responses(
        (status = 200, description = "A page of orders", body = DepositList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn list_deposits(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Json<DepositList>> {
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let (total, rows) = state
        .db
        .deposits_of_user(&auth.user.id, skip, limit)
        .await?;
    let deposits = rows
        .iter()
        .map(|d| DepositView::new(&state, d, false))
        .collect();
    Ok(Json(DepositList {
        deposits,
        total,
        skip,
        limit,
    }))
}

/// Body of a simulated payment notification.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SimulateBody {
    /// waiting, confirming, confirmed, sending, partially_paid, finished, failed, refunded, expired
    status: String,
    /// Paid so far in the pay currency; default: all of it when finished, half when partial.
    #[schema(value_type = Option<String>)]
    actually_paid: Option<String>,
}

/// Dev mode with the sandbox provider: send your order's payment notification, signed, through
/// the same webhook path a real provider uses.
#[utoipa::path(post, path = "/api/wallet/deposit/{order_id}/simulate", tag = "wallet",
    params(("order_id" = String, Path, description = "DEP-…")), request_body = SimulateBody,
    responses(
        (status = 200, description = "What the webhook made of it", body = WebhookResult),
        (status = 403, description = "Not dev mode or not the sandbox provider", body = ErrorBody),
        (status = 404, description = "No such order of yours", body = ErrorBody),
    ))]
async fn simulate_deposit(
    State(state): State<AppState>,
    auth: Auth,
    Path(order_id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<WebhookResult>> {
    let req: deposits::SimulateRequest = typed(&body)?;
    state
        .db
        .deposit_by_order(&order_id)
        .await?
        .filter(|d| d.user_id == auth.user.id || auth.role.is_staff())
        .ok_or(ApiError::NotFound)?;
    let out = deposits::simulate(&state, &order_id, req).await?;
    etx_core::audit::Event::new(Some(&auth.user.id), AuditAction::DepositSimulate)
        .target("deposit", &order_id)
        .details(json!({"result": out.result}))
        .record(&state)
        .await;
    Ok(Json(out))
}

/// A provider's payment notification (NOWPayments IPN format; other fields are kept as sent).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WebhookBody {
    #[schema(example = "DEP-0193A1B2C3D4E5F6")]
    order_id: String,
    #[schema(example = "finished")]
    payment_status: String,
    #[schema(value_type = Option<String>)]
    payment_id: Option<String>,
    #[schema(value_type = Option<String>, example = "0.00153846")]
    actually_paid: Option<String>,
}

/// Payment notifications from the provider (`sandbox` or `nowpayments`), signed with
/// HMAC-SHA512 of the key-sorted JSON body in `x-nowpayments-sig`. Statuses only move forward
/// and a deposit is credited once, whatever the order or number of notifications.
#[utoipa::path(post, path = "/api/wallet/webhook/{provider}", tag = "wallet", security(()),
    request_body = WebhookBody,
    params(("provider" = String, Path, description = "The configured provider"),
        ("x-nowpayments-sig" = String, Header, description = "Hex HMAC-SHA512 signature")),
    responses(
        (status = 200, description = "Applied or ignored (not newer); `result` says which", body = WebhookResult),
        (status = 401, description = "Missing or bad signature; nothing changed or stored", body = ErrorBody),
        (status = 429, description = "Too many unsigned or badly signed notifications from this address; see `Retry-After`", body = ErrorBody),
        (status = 404, description = "Unknown provider or order", body = ErrorBody),
        (status = 422, description = "Unknown status or mismatched payment", body = ErrorBody),
    ))]
async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    client: crate::session::ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookResult>> {
    let sig = headers
        .get(providers::nowpayments::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let out = deposits::receive_webhook(&state, &provider, sig, &body, Some(client.ip)).await?;
    Ok(Json(out))
}

/// Body of a withdrawal quote.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteBody {
    #[schema(value_type = String, example = "0.01")]
    amount: AmountText,
    #[schema(example = "BTC")]
    currency: String,
}

/// The fee, total and USD value of a withdrawal before you ask for it. Moves nothing.
#[utoipa::path(post, path = "/api/wallet/withdraw/quote", tag = "wallet", request_body = QuoteBody,
    responses(
        (status = 200, description = "The price of the withdrawal", body = QuoteView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Invalid amount or currency, or LIMIT_EXCEEDED", body = ErrorBody),
    ))]
async fn withdraw_quote(
    State(state): State<AppState>,
    _auth: Auth,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<QuoteView>> {
    let b: QuoteBody = typed(&body)?;
    let q = withdrawals::quote(&state, &b.currency, &b.amount.0)?;
    Ok(Json(QuoteView::new(&q)))
}

/// Body of a withdrawal.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WithdrawBody {
    /// What arrives at the address; the fee is added on top.
    #[schema(value_type = String, example = "0.01")]
    amount: String,
    #[schema(example = "BTC")]
    currency: String,
    /// Checked against the asset's network (checksums included).
    address: String,
}

/// Withdraw to an address. The amount plus fee moves to the withdrawals hold at once; staff
/// approve it (two of them at or over the two-approval threshold) and an admin completes it.
/// Requires an `Idempotency-Key` header.
#[utoipa::path(post, path = "/api/wallet/withdraw", tag = "wallet", request_body = WithdrawBody,
    params(("Idempotency-Key" = String, Header, description = "Unique per intended withdrawal")),
    responses(
        (status = 201, description = "The withdrawal, status `pending` or `held` for review, and your balance", body = WithdrawalCreated),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 409, description = "Key reused with a different body", body = ErrorBody),
        (status = 422, description = "Invalid fields, INSUFFICIENT_FUNDS or LIMIT_EXCEEDED", body = ErrorBody),
    ))]
async fn withdraw(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Answer> {
    let key = crate::extract::idempotency_key(&headers)?;
    Ok(Answer(
        withdrawals::withdraw(&state, &auth.user, &key, &body).await?,
    ))
}

/// Your withdrawals, newest first.
#[utoipa::path(get, path = "/api/wallet/withdrawals", tag = "wallet", params(PageQuery),
    responses(
        (status = 200, description = "A page of withdrawals", body = WithdrawalList),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn list_withdrawals(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Json<WithdrawalList>> {
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let filter = WithdrawalFilter {
        user_id: Some(auth.user.id.clone()),
        ..Default::default()
    };
    page_of_withdrawals(&state, &filter, skip, limit).await
}

async fn page_of_withdrawals(
    state: &AppState,
    filter: &WithdrawalFilter,
    skip: i64,
    limit: i64,
) -> ApiResult<Json<WithdrawalList>> {
    let (total, rows) = state.db.list_withdrawals(filter, skip, limit).await?;
    let mut list = Vec::with_capacity(rows.len());
    for w in &rows {
        let approvals = state.db.approvals_of(&w.id).await?;
        list.push(WithdrawalView::new(state, w, &approvals));
    }
    Ok(Json(WithdrawalList {
        withdrawals: list,
        total,
        skip,
        limit,
    }))
}

/// One of your withdrawals.
#[utoipa::path(get, path = "/api/wallet/withdraw/{id}", tag = "wallet",
    params(("id" = String, Path, description = "Withdrawal id")),
    responses(
        (status = 200, description = "The withdrawal; with `aml_flag` for staff when a rule flagged it", body = WithdrawalResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such withdrawal of yours", body = ErrorBody),
    ))]
async fn get_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WithdrawalResponse>> {
    let w = state
        .db
        .withdrawal(&id)
        .await?
        .filter(|w| w.user_id == auth.user.id || auth.role.is_staff())
        .ok_or(ApiError::NotFound)?;
    let approvals = state.db.approvals_of(&w.id).await?;
    let mut withdrawal = WithdrawalView::new(&state, &w, &approvals);
    if let Some(f) = state.db.flag_of("withdrawal", &w.id).await?
        && auth.role.is_staff()
    {
        withdrawal.aml_flag = Some(FlagView::new(&f));
    }
    Ok(Json(WithdrawalResponse { withdrawal }))
}

/// Cancel your withdrawal while it is pending (before any approval); the amount and fee come
/// back by a reversing entry.
#[utoipa::path(post, path = "/api/wallet/withdraw/{id}/cancel", tag = "wallet",
    params(("id" = String, Path, description = "Withdrawal id")),
    responses(
        (status = 200, description = "The withdrawal, now cancelled", body = WithdrawalResponse),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such withdrawal of yours", body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
    ))]
async fn cancel_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WithdrawalResponse>> {
    let withdrawal = withdrawals::cancel_withdrawal(&state, &auth.user, &id).await?;
    Ok(Json(WithdrawalResponse { withdrawal }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Comma-separated; default `pending,pending_approval,processing`. `all` for every status.
    pub status: Option<String>,
    pub currency: Option<String>,
    pub user_id: Option<String>,
    pub skip: Option<i64>,
    pub limit: Option<i64>,
}

/// The withdrawal queue (staff): pending, awaiting a second approval, and processing by default.
#[utoipa::path(get, path = "/api/admin/withdrawals", tag = "admin", params(QueueQuery),
    responses(
        (status = 200, description = "A page of withdrawals", body = WithdrawalList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not staff", body = ErrorBody),
        (status = 422, description = "Unknown status", body = ErrorBody),
    ))]
async fn admin_withdrawals(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<QueueQuery>,
) -> ApiResult<Json<WithdrawalList>> {
    auth.require_staff()?;
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let statuses: Vec<String> = match q.status.as_deref().map(str::trim) {
        None | Some("") => WithdrawalStatus::AWAITING_STAFF
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        Some("all") => vec![],
        Some(s) => {
            let list: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
            if let Some(bad) = list.iter().find(|x| WithdrawalStatus::parse(x).is_none()) {
                let known: Vec<&str> = WithdrawalStatus::ALL.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::field(
                    "status",
                    &format!("unknown status {bad:?}; one of {}", known.join(", ")),
                ));
            }
            list
        }
    };
    let filter = WithdrawalFilter {
        statuses,
        asset: q
            .currency
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty()),
        user_id: q.user_id.filter(|u| !u.is_empty()),
    };
    page_of_withdrawals(&state, &filter, skip, limit).await
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    note: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// 3 to 500 characters; shown to the user and kept in the audit log.
    reason: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The payout's transaction hash.
    tx_hash: String,
}

/// Approve a withdrawal (staff, never your own). At or over the two-approval threshold it needs
/// two different staff members; then it is `processing`.
#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/approve", tag = "admin",
    params(("id" = String, Path, description = "Withdrawal id")), request_body = ApproveBody,
    responses(
        (status = 200, description = "The withdrawal", body = WithdrawalResponse),
        (status = 403, description = "Not staff, or your own withdrawal", body = ErrorBody),
        (status = 404, description = "No such withdrawal", body = ErrorBody),
        (status = 409, description = "Already approved by you, or not awaiting approval", body = ErrorBody),
    ))]
async fn approve_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<WithdrawalResponse>> {
    // The body is optional: an approval may carry a note.
    let b: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        typed(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?,
        )?
    };
    let withdrawal =
        withdrawals::staff_withdrawal(&state, &auth, &id, StaffAction::Approve { note: b.note })
            .await?;
    Ok(Json(WithdrawalResponse { withdrawal }))
}

/// Reject a withdrawal (staff) with a reason; the amount and fee go back to the user.
#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/reject", tag = "admin",
    params(("id" = String, Path, description = "Withdrawal id")), request_body = ReasonBody,
    responses(
        (status = 200, description = "The withdrawal, rejected and refunded", body = WithdrawalResponse),
        (status = 403, description = "Not staff", body = ErrorBody),
        (status = 404, description = "No such withdrawal", body = ErrorBody),
        (status = 409, description = "Already completed, rejected or cancelled", body = ErrorBody),
        (status = 422, description = "Missing reason", body = ErrorBody),
    ))]
async fn reject_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<WithdrawalResponse>> {
    auth.require_staff()?;
    let b: ReasonBody = typed(&body)?;
    let withdrawal =
        withdrawals::staff_withdrawal(&state, &auth, &id, StaffAction::Reject { reason: b.reason })
            .await?;
    Ok(Json(WithdrawalResponse { withdrawal }))
}

/// Mark an approved withdrawal as sent (admins), with the payout's transaction hash.
#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/complete", tag = "admin",
    params(("id" = String, Path, description = "Withdrawal id")), request_body = CompleteBody,
    responses(
        (status = 200, description = "The withdrawal, completed", body = WithdrawalResponse),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such withdrawal", body = ErrorBody),
        (status = 409, description = "Not processing", body = ErrorBody),
    ))]
async fn complete_withdrawal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<WithdrawalResponse>> {
    auth.require_admin()?;
    let b: CompleteBody = typed(&body)?;
    let withdrawal = withdrawals::staff_withdrawal(
        &state,
        &auth,
        &id,
        StaffAction::Complete { tx_hash: b.tx_hash },
    )
    .await?;
    Ok(Json(WithdrawalResponse { withdrawal }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AmlQuery {
    /// open (default), released, rejected or all.
    pub status: Option<String>,
    pub skip: Option<i64>,
    pub limit: Option<i64>,
}

/// Operations AML rules flagged (staff), with the rule that fired; open ones hold money.
#[utoipa::path(get, path = "/api/admin/aml", tag = "admin", params(AmlQuery),
    responses(
        (status = 200, description = "A page of reviews", body = FlagList),
        (status = 403, description = "Not staff", body = ErrorBody),
    ))]
async fn aml_queue(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<AmlQuery>,
) -> ApiResult<Json<FlagList>> {
    auth.require_staff()?;
    let (skip, limit) = super::users::paging(q.skip, q.limit)?;
    let status = match q.status.as_deref().unwrap_or("open") {
        "all" => None,
        s @ ("open" | "released" | "rejected") => Some(s),
        _ => {
            return Err(ApiError::field(
                "status",
                "one of open, released, rejected, all",
            ));
        }
    };
    let (total, rows) = state.db.list_flags(status, skip, limit).await?;
    let flags = rows.iter().map(FlagView::new).collect();
    Ok(Json(FlagList {
        flags,
        total,
        skip,
        limit,
    }))
}

async fn aml_decision(
    state: &AppState,
    auth: &Auth,
    id: &str,
    body: &RawValue,
    release: bool,
) -> ApiResult<Json<FlagResponse>> {
    auth.require_staff()?;
    let b: ReasonBody = typed(body)?;
    let flag = review::decide_flag(state, auth, id, release, &b.reason).await?;
    Ok(Json(FlagResponse { flag }))
}

/// Release a flagged operation (staff): a held deposit or transfer is credited, a held
/// withdrawal goes on to approval.
#[utoipa::path(post, path = "/api/admin/aml/{id}/release", tag = "admin",
    params(("id" = String, Path, description = "Flag id")), request_body = ReasonBody,
    responses(
        (status = 200, description = "The review, decided", body = FlagResponse),
        (status = 403, description = "Not staff, or your own operation", body = ErrorBody),
        (status = 404, description = "No such flag", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    ))]
async fn aml_release(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<FlagResponse>> {
    aml_decision(&state, &auth, &id, &body, true).await
}

/// Reject a flagged operation (staff): held money goes back (to the sender, or out to the payer).
#[utoipa::path(post, path = "/api/admin/aml/{id}/reject", tag = "admin",
    params(("id" = String, Path, description = "Flag id")), request_body = ReasonBody,
    responses(
        (status = 200, description = "The review, decided", body = FlagResponse),
        (status = 403, description = "Not staff, or your own operation", body = ErrorBody),
        (status = 404, description = "No such flag", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    ))]
async fn aml_reject(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<FlagResponse>> {
    aml_decision(&state, &auth, &id, &body, false).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuspenseQuery {
    /// `open` (default), `refunded`, `credited` or `all`.
    status: Option<String>,
}

/// Money in suspense (staff): payments that arrived for an owner who no longer exists, newest
/// first, open ones by default. It stays in `suspense::<asset>` until an admin resolves it.
#[utoipa::path(get, path = "/api/admin/suspense", tag = "admin", params(SuspenseQuery),
    responses(
        (status = 200, description = "Suspense items", body = SuspenseList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not staff", body = ErrorBody),
        (status = 422, description = "Unknown status", body = ErrorBody),
    ))]
async fn suspense_list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<SuspenseQuery>,
) -> ApiResult<Json<SuspenseList>> {
    auth.require_staff()?;
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => Some("open"),
        Some("all") => None,
        Some(s @ ("open" | "refunded" | "credited")) => Some(s),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "one of open, refunded, credited, all",
            ));
        }
    };
    let items = state
        .db
        .suspense_items(status, 200)
        .await?
        .iter()
        .map(|s| SuspenseView::new(&state, s))
        .collect();
    Ok(Json(SuspenseList { items }))
}

/// Body of a suspense credit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspenseCreditBody {
    /// The user whose wallet receives the money.
    user_id: String,
    /// 3 to 500 characters; shown to the user and kept in the audit log.
    reason: String,
}

/// Mark a suspense item refunded (admins): the money was sent back to the payer, and leaves
/// suspense through withdrawals clearing. Once.
#[utoipa::path(post, path = "/api/admin/suspense/{id}/refund", tag = "admin",
    params(("id" = String, Path, description = "Suspense item id")), request_body = ReasonBody,
    responses(
        (status = 200, description = "The item, refunded", body = SuspenseResponse),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody),
        (status = 422, description = "Missing or bad reason", body = ErrorBody),
    ))]
async fn suspense_refund(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<SuspenseResponse>> {
    auth.require_admin()?;
    let b: ReasonBody = typed(&body)?;
    let item = deposits::resolve_suspense(
        &state,
        &auth.user,
        &id,
        deposits::SuspenseAction::Refund,
        &b.reason,
    )
    .await?;
    Ok(Json(SuspenseResponse { item }))
}

/// Credit a suspense item to a user's wallet (admins), once.
#[utoipa::path(post, path = "/api/admin/suspense/{id}/credit", tag = "admin",
    params(("id" = String, Path, description = "Suspense item id")), request_body = SuspenseCreditBody,
    responses(
        (status = 200, description = "The item, credited", body = SuspenseResponse),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody),
        (status = 422, description = "No such user, or a bad reason", body = ErrorBody),
    ))]
async fn suspense_credit(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(body): AppJson<Box<RawValue>>,
) -> ApiResult<Json<SuspenseResponse>> {
    auth.require_admin()?;
    let b: SuspenseCreditBody = typed(&body)?;
    let item = deposits::resolve_suspense(
        &state,
        &auth.user,
        &id,
        deposits::SuspenseAction::Credit { user_id: b.user_id },
        &b.reason,
    )
    .await?;
    Ok(Json(SuspenseResponse { item }))
}
