//! Deposit and withdrawal pages, and the staff queues for withdrawals and AML review. Every
//! form posts to the same code the JSON API runs; a withdrawal is shown with its fee and total
//! for confirmation first, and the confirming form carries its own idempotency key.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, Stamp, WebUser, check_form_csrf, error_page, filters, form_error};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::deposits;
use etx_core::ledger::AmountText;
use etx_core::review;
use etx_core::withdrawals;
use etx_core::withdrawals::StaffAction;
use etx_db::payments::WithdrawalFilter;
use etx_domain::WithdrawalStatus;
use serde::Deserialize;
use std::collections::BTreeMap;

fn layout(u: &WebUser, active: &'static str, q: Option<&NoticeQuery>) -> Layout {
    let mut l = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), active);
    l.notice = q.and_then(notice);
    l
}

fn page_error(e: ApiError) -> (StatusCode, Option<String>, BTreeMap<String, String>) {
    let status = e.status();
    let (m, f) = form_error(e);
    (status, m, f)
}

// ---------------------------------------------------------------------------------------------
// Deposits

pub struct DepositLine {
    order_id: String,
    status: String,
    pay: String,
    usd: String,
    credit_state: String,
    created: Stamp,
}

#[derive(Template, WebTemplate)]
#[template(path = "deposit.html")]
pub struct DepositPage {
    layout: Layout,
    pay_currencies: Vec<String>,
    amount: String,
    currency: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
    deposits: Vec<DepositLine>,
}

#[derive(Deserialize, Default)]
pub struct DepositForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    pay_currency: String,
}

async fn deposit_page(
    state: &AppState,
    u: &WebUser,
    form: DepositForm,
    error: Option<ApiError>,
    q: Option<&NoticeQuery>,
) -> Response {
    let rows = match state.db.deposits_of_user(&u.auth.user.id, 0, 20).await {
        Ok((_, rows)) => rows,
        Err(e) => return PageError::from(e).into_response(),
    };
    let deposits = rows
        .iter()
        .map(|d| {
            let v = deposits::DepositView::new(state, d, false);
            DepositLine {
                created: Stamp::of(&v.created_at),
                order_id: v.order_id,
                status: v.status,
                pay: format!("{} {}", v.pay_amount, v.pay_currency),
                usd: v.price_amount,
                credit_state: v.credit_state,
            }
        })
        .collect();
    let (status, error, field_errors) = match error {
        Some(e) => page_error(e),
        None => (StatusCode::OK, None, BTreeMap::new()),
    };
    let page = DepositPage {
        layout: layout(u, "deposit", q),
        pay_currencies: state.rules.pay_currencies.clone(),
        amount: form.amount,
        currency: if form.pay_currency.is_empty() {
            "BTC".into()
        } else {
            form.pay_currency
        },
        error,
        field_errors,
        deposits,
    };
    (status, page).into_response()
}

pub async fn view_deposit_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    deposit_page(&state, &u, DepositForm::default(), None, Some(&q)).await
}

pub async fn view_deposit_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<DepositForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return deposit_page(&state, &u, f, Some(e), None).await;
    }
    let req = deposits::DepositRequest {
        amount: AmountText(f.amount.clone()),
        pay_currency: f.pay_currency.clone(),
    };
    match deposits::create_deposit(&state, &u.auth.user, req).await {
        Ok(d) => Redirect::to(&format!("/deposit/{}", d.order_id)).into_response(),
        Err(e) => deposit_page(&state, &u, f, Some(e.into()), None).await,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "deposit_order.html")]
pub struct DepositOrderPage {
    layout: Layout,
    order_id: String,
    status: String,
    pay_amount: String,
    pay_currency: String,
    address: String,
    uri: String,
    qr_svg: String,
    usd: String,
    expires: Stamp,
    credit_state: String,
    credited: String,
    /// Dev mode with the sandbox provider: the simulate buttons show.
    can_simulate: bool,
    /// Nothing more will happen: no need to refresh.
    settled: bool,
    history: Vec<(Stamp, String, String)>,
}

pub async fn view_deposit_order_get(
    State(state): State<AppState>,
    u: WebUser,
    Path(order_id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let loaded = async {
        let d = state.db.deposit_by_order(&order_id).await?;
        let hooks = state.db.webhooks_of_order(&order_id).await?;
        Ok::<_, etx_db::DbErr>((d, hooks))
    };
    let (d, hooks) = match loaded.await {
        Ok(v) => v,
        Err(e) => return PageError::from(e).into_response(),
    };
    let Some(d) = d.filter(|d| d.user_id == u.auth.user.id) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such deposit.",
        );
    };
    let v = deposits::DepositView::new(&state, &d, true);
    let status = v.status;
    let page = DepositOrderPage {
        layout: layout(&u, "deposit", Some(&q)),
        order_id: d.order_id.clone(),
        settled: matches!(d.credit_state.as_str(), "credited" | "rejected")
            || matches!(status.as_str(), "failed" | "refunded"),
        status,
        pay_amount: v.pay_amount,
        pay_currency: d.pay_currency.clone(),
        address: d.pay_address.clone(),
        uri: v.payment_uri,
        qr_svg: v.qr_svg.unwrap_or_default(),
        usd: v.price_amount,
        expires: Stamp::of(&v.expires_at),
        credit_state: d.credit_state.clone(),
        credited: v.credited,
        can_simulate: state.config.is_dev() && state.payments.name() == "sandbox",
        history: hooks
            .iter()
            .filter(|h| h.signature_ok)
            .map(|h| {
                (
                    Stamp::micros(h.received_at),
                    h.payment_status.clone().unwrap_or_default(),
                    h.outcome.clone(),
                )
            })
            .collect(),
    };
    page.into_response()
}

#[derive(Deserialize, Default)]
pub struct SimulateForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    status: String,
}

pub async fn view_deposit_simulate_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(order_id): Path<String>,
    Form(f): Form<SimulateForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return super::form_expired();
    }
    let owned = matches!(
        state.db.deposit_by_order(&order_id).await,
        Ok(Some(d)) if d.user_id == u.auth.user.id
    );
    if !owned {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such deposit.",
        );
    }
    let req = deposits::SimulateRequest {
        status: f.status,
        actually_paid: None,
    };
    match deposits::simulate(&state, &order_id, req)
        .await
        .map_err(ApiError::from)
    {
        Ok(_) => Redirect::to(&format!("/deposit/{order_id}?msg=paid")).into_response(),
        Err(e) => error_page(e.status(), "Payment not simulated", &e.public_message()),
    }
}

// ---------------------------------------------------------------------------------------------
// Withdrawals

pub struct WithdrawalLine {
    id: String,
    user_id: String,
    /// The owner's username where staff see it (their id until it is looked up).
    username: String,
    currency: String,
    amount: String,
    fee: String,
    total: String,
    usd: String,
    address: String,
    status: String,
    approvals: String,
    approvers: String,
    tx_hash: String,
    reason: String,
    created: Stamp,
}

impl WithdrawalLine {
    fn from(v: withdrawals::WithdrawalView) -> Self {
        WithdrawalLine {
            approvals: format!("{}/{}", v.approvals.len(), v.approvals_required),
            approvers: v
                .approvals
                .iter()
                .map(|a| a.username.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            created: Stamp::of(&v.created_at),
            id: v.id,
            username: v.user_id.clone(),
            user_id: v.user_id,
            currency: v.currency,
            amount: v.amount,
            fee: v.fee,
            total: v.total,
            usd: v.usd_value,
            address: v.address,
            status: v.status,
            tx_hash: v.tx_hash.unwrap_or_default(),
            reason: v.reason.unwrap_or_default(),
        }
    }
}

pub struct QuoteLine {
    amount: String,
    fee: String,
    total: String,
    usd: String,
    approvals_required: String,
}

#[derive(Deserialize, Default)]
pub struct WithdrawForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    address: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "withdraw.html")]
pub struct WithdrawPage {
    layout: Layout,
    assets: Vec<String>,
    /// What the user has of each asset, shown next to it.
    available: BTreeMap<String, String>,
    /// The most that can be withdrawn of each asset held, its fee included.
    max: BTreeMap<String, String>,
    form: WithdrawForm,
    quote: Option<QuoteLine>,
    idempotency_key: String,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
    withdrawals: Vec<WithdrawalLine>,
}

async fn withdraw_page(
    state: &AppState,
    u: &WebUser,
    mut form: WithdrawForm,
    quote: Option<QuoteLine>,
    error: Option<ApiError>,
    q: Option<&NoticeQuery>,
) -> Response {
    let filter = WithdrawalFilter {
        user_id: Some(u.auth.user.id.clone()),
        ..Default::default()
    };
    let rows = match state.db.list_withdrawals(&filter, 0, 20).await {
        Ok((_, rows)) => rows,
        Err(e) => return PageError::from(e).into_response(),
    };
    let withdrawals = rows
        .iter()
        .map(|w| WithdrawalLine::from(withdrawals::WithdrawalView::new(state, w, &[])))
        .collect();
    let mut assets: Vec<String> = state.rules.networks.keys().cloned().collect();
    assets.sort();
    let available: BTreeMap<String, String> =
        match etx_core::wallet::balance_list(state, &u.auth.user.id).await {
            Ok((b, _)) => b.into_iter().collect(),
            Err(e) => return PageError::from(e).into_response(),
        };
    let holds = |a: &String| {
        available
            .get(a)
            .is_some_and(|b| b.chars().any(|c| c.is_ascii_digit() && c != '0'))
    };
    if form.currency.is_empty() {
        // The first asset the user holds, rather than the alphabet's first.
        form.currency = assets
            .iter()
            .find(|a| holds(a))
            .or(assets.first())
            .cloned()
            .unwrap_or_default();
    }
    let (status, error, field_errors) = match error {
        Some(e) => page_error(e),
        None => (StatusCode::OK, None, BTreeMap::new()),
    };
    let max = available
        .iter()
        .filter_map(|(a, b)| Some((a.clone(), withdrawals::max_for(state, a, b)?)))
        .collect();
    let page = WithdrawPage {
        layout: layout(u, "withdraw", q),
        assets,
        available,
        max,
        form,
        quote,
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        error,
        field_errors,
        withdrawals,
    };
    (status, page).into_response()
}

pub async fn view_withdraw_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    withdraw_page(&state, &u, WithdrawForm::default(), None, None, Some(&q)).await
}

/// First step: the fee and total to confirm. Nothing moves yet.
pub async fn view_withdraw_review_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<WithdrawForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return withdraw_page(&state, &u, f, None, Some(e), None).await;
    }
    let quoted = withdrawals::quote(&state, &f.currency, &f.amount).and_then(|q| {
        if q.network.valid(f.address.trim(), state.config.is_dev()) {
            Ok(QuoteLine {
                amount: format!(
                    "{} {}",
                    etx_domain::format_amount(q.amount, q.asset.scale),
                    q.asset.code
                ),
                fee: format!(
                    "{} {}",
                    etx_domain::format_amount(q.fee, q.asset.scale),
                    q.asset.code
                ),
                total: format!(
                    "{} {}",
                    etx_domain::format_amount(q.total, q.asset.scale),
                    q.asset.code
                ),
                usd: etx_domain::format_amount(q.usd_cents, 2),
                approvals_required: q.approvals_required.to_string(),
            })
        } else {
            Err(etx_core::CoreError::field(
                "address",
                &format!("is not {}", q.network.describe()),
            ))
        }
    });
    match quoted {
        Ok(q) => withdraw_page(&state, &u, f, Some(q), None, None).await,
        Err(e) => withdraw_page(&state, &u, f, None, Some(e.into()), None).await,
    }
}

pub async fn view_withdraw_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<WithdrawForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return withdraw_page(&state, &u, f, None, Some(e), None).await;
    }
    let key = match super::form_key(&f.idempotency_key) {
        Ok(k) => k,
        Err(e) => return withdraw_page(&state, &u, f, None, Some(e.into()), None).await,
    };
    let body =
        serde_json::json!({"amount": f.amount, "currency": f.currency, "address": f.address});
    let body = serde_json::value::to_raw_value(&body).expect("a JSON value always serializes");
    match withdrawals::withdraw(&state, &u.auth.user, &key, &body).await {
        Ok(o) => {
            let held = serde_json::from_str::<withdrawals::WithdrawalCreated>(&o.body)
                .is_ok_and(|v| v.withdrawal.status == "held");
            let msg = if held {
                "withdrawal-held"
            } else {
                "withdrawal-requested"
            };
            Redirect::to(&format!("/withdraw?msg={msg}")).into_response()
        }
        Err(e) => withdraw_page(&state, &u, f, None, Some(e.into()), None).await,
    }
}

pub async fn view_withdraw_cancel_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return super::form_expired();
    }
    match withdrawals::cancel_withdrawal(&state, &u.auth.user, &id).await {
        Ok(_) => Redirect::to("/withdraw?msg=withdrawal-cancelled").into_response(),
        Err(e) => {
            withdraw_page(
                &state,
                &u,
                WithdrawForm::default(),
                None,
                Some(e.into()),
                None,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Staff queues

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    status: String,
    msg: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_withdrawals.html")]
pub struct AdminWithdrawalsPage {
    layout: Layout,
    status: String,
    statuses: Vec<&'static str>,
    lines: Vec<WithdrawalLine>,
    is_admin: bool,
    error: Option<String>,
}

async fn admin_withdrawals_page(
    state: &AppState,
    u: &WebUser,
    status: &str,
    error: Option<ApiError>,
    msg: Option<String>,
) -> Response {
    if !u.auth.role.is_staff() {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    }
    let mut statuses = vec!["open"];
    statuses.extend(WithdrawalStatus::ALL.iter().map(|s| s.as_str()));
    statuses.push("all");
    let status = if statuses.contains(&status) {
        status
    } else {
        "open"
    };
    let filter = WithdrawalFilter {
        statuses: match status {
            "open" => WithdrawalStatus::AWAITING_STAFF
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            "all" => vec![],
            s => vec![s.to_string()],
        },
        ..Default::default()
    };
    let rows = match state.db.list_withdrawals(&filter, 0, 100).await {
        Ok((_, rows)) => rows,
        Err(e) => return PageError::from(e).into_response(),
    };
    let mut lines = Vec::with_capacity(rows.len());
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for w in &rows {
        let approvals = match state.db.approvals_of(&w.id).await {
            Ok(a) => a,
            Err(e) => return PageError::from(e).into_response(),
        };
        let mut line = WithdrawalLine::from(withdrawals::WithdrawalView::new(state, w, &approvals));
        if !names.contains_key(&w.user_id) {
            let name = match state.db.user_by_id(&w.user_id).await {
                Ok(u) => u.map(|u| u.username),
                Err(e) => return PageError::from(e).into_response(),
            };
            names.insert(w.user_id.clone(), name.unwrap_or_else(|| w.user_id.clone()));
        }
        line.username = names[&w.user_id].clone();
        lines.push(line);
    }
    let code = error.as_ref().map_or(StatusCode::OK, ApiError::status);
    let q = NoticeQuery { msg };
    let page = AdminWithdrawalsPage {
        layout: layout(u, "withdrawals", Some(&q)),
        status: status.to_string(),
        statuses,
        lines,
        is_admin: u.auth.role.is_admin(),
        error: error.map(|e| form_error(e).0.unwrap_or_default()),
    };
    (code, page).into_response()
}

pub async fn view_admin_withdrawals_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<QueueQuery>,
) -> Response {
    admin_withdrawals_page(&state, &u, &q.status, None, q.msg).await
}

#[derive(Deserialize, Default)]
pub struct DecisionForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    tx_hash: String,
}

/// A staff form from someone who is not staff (the page does not exist for them) or with an
/// expired CSRF token.
fn refuse_staff_form(u: &WebUser, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    if !u.auth.role.is_staff() {
        return Some(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page.",
        ));
    }
    check_form_csrf(headers, csrf)
        .is_err()
        .then(super::form_expired)
}

pub async fn view_admin_withdrawal_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> Response {
    if let Some(refused) = refuse_staff_form(&u, &headers, &f.csrf_token) {
        return refused;
    }
    let action = match action.as_str() {
        "approve" => StaffAction::Approve {
            note: Some(f.note).filter(|n| !n.trim().is_empty()),
        },
        "reject" => StaffAction::Reject { reason: f.reason },
        "complete" => StaffAction::Complete { tx_hash: f.tx_hash },
        _ => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such action.",
            );
        }
    };
    match withdrawals::staff_withdrawal(&state, &u.auth, &id, action).await {
        Ok(_) => Redirect::to("/admin/withdrawals?msg=decided").into_response(),
        Err(e) => admin_withdrawals_page(&state, &u, "open", Some(e.into()), None).await,
    }
}

pub struct FlagLine {
    id: String,
    user: String,
    subject: String,
    rule: String,
    details: Vec<(String, String)>,
    status: String,
    decision: String,
    created: Stamp,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_aml.html")]
pub struct AdminAmlPage {
    layout: Layout,
    status: String,
    lines: Vec<FlagLine>,
    /// Open suspense items: money paid for owners who no longer exist.
    suspense: Vec<SuspenseLine>,
    error: Option<String>,
}

pub struct SuspenseLine {
    id: String,
    amount: String,
    source: String,
    owner: String,
    created: Stamp,
}

async fn admin_aml_page(
    state: &AppState,
    u: &WebUser,
    status: &str,
    error: Option<ApiError>,
    msg: Option<String>,
) -> Response {
    if !u.auth.role.is_staff() {
        return error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    }
    let status = match status {
        s @ ("released" | "rejected" | "all") => s,
        _ => "open",
    };
    let filter = (status != "all").then_some(status);
    let rows = match state.db.list_flags(filter, 0, 100).await {
        Ok((_, rows)) => rows,
        Err(e) => return PageError::from(e).into_response(),
    };
    let lines = rows
        .iter()
        .map(|f| {
            let v = etx_core::rules::FlagView::new(f);
            FlagLine {
                id: f.id.clone(),
                user: f.username.clone().unwrap_or_else(|| f.user_id.clone()),
                subject: format!("{} {}", f.subject_type, f.subject_id),
                rule: f.rule.clone(),
                details: super::detail_list(&v.details),
                status: f.status.clone(),
                decision: f.decision_reason.clone().unwrap_or_default(),
                created: Stamp::of(&v.created_at),
            }
        })
        .collect();
    let suspense = match state.db.suspense_items(Some("open"), 100).await {
        Ok(rows) => rows
            .iter()
            .map(|s| {
                let v = deposits::SuspenseView::new(state, s);
                SuspenseLine {
                    id: s.id.clone(),
                    amount: format!("{} {}", v.amount, s.asset),
                    source: format!("{} {}", s.source_type, s.source_id),
                    owner: s.owner_id.clone().unwrap_or_default(),
                    created: Stamp::of(&v.created_at),
                }
            })
            .collect(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let code = error.as_ref().map_or(StatusCode::OK, ApiError::status);
    let q = NoticeQuery { msg };
    let page = AdminAmlPage {
        layout: layout(u, "aml", Some(&q)),
        status: status.to_string(),
        lines,
        suspense,
        error: error.map(|e| form_error(e).0.unwrap_or_default()),
    };
    (code, page).into_response()
}

pub async fn view_admin_aml_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<QueueQuery>,
) -> Response {
    admin_aml_page(&state, &u, &q.status, None, q.msg).await
}

pub async fn view_admin_aml_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> Response {
    if let Some(refused) = refuse_staff_form(&u, &headers, &f.csrf_token) {
        return refused;
    }
    let release = match action.as_str() {
        "release" => true,
        "reject" => false,
        _ => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such action.",
            );
        }
    };
    match review::decide_flag(&state, &u.auth, &id, release, &f.reason).await {
        Ok(_) => Redirect::to("/admin/aml?msg=decided").into_response(),
        Err(e) => admin_aml_page(&state, &u, "open", Some(e.into()), None).await,
    }
}
