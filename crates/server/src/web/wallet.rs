//! Wallet and transaction pages: balances, the send-money form (each render carries a fresh
//! idempotency key, so a double-submitted form sends once) and the filtered history.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, WebUser, check_form_csrf, day, filters};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use crate::views::wallet::TransactionView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use etx_db::ledger::TxFilter;
use serde::Deserialize;
use std::collections::BTreeMap;

pub async fn recent(
    state: &AppState,
    user_id: &str,
    filter: Option<&TxFilter>,
    n: i64,
) -> Result<Vec<TransactionView>, etx_db::DbErr> {
    let f = filter.cloned().unwrap_or_default();
    let rows = state.db.list_transactions(user_id, &f, None, 0, n).await?;
    Ok(rows
        .iter()
        .map(|t| TransactionView::new(state, t))
        .collect())
}

#[derive(Deserialize, Default)]
pub struct TransferForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    note: String,
    /// Set by the review page's Send button: the transfer was seen and confirmed.
    #[serde(default)]
    confirm: String,
    /// Set by the review page's Change button: back to the form with the values.
    #[serde(default)]
    edit: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "wallet_review.html")]
pub struct ReviewPage {
    layout: Layout,
    form: TransferForm,
    preview: etx_core::wallet::TransferPreview,
}

#[derive(Template, WebTemplate)]
#[template(path = "wallet.html")]
pub struct WalletPage {
    layout: Layout,
    balances: Vec<(String, String)>,
    recent: Vec<TransactionView>,
    idempotency_key: String,
    form: TransferForm,
    error: Option<String>,
    field_errors: BTreeMap<String, String>,
}

async fn wallet_page(
    state: &AppState,
    u: &WebUser,
    form: TransferForm,
    error: Option<ApiError>,
    notice_text: Option<&'static str>,
) -> Response {
    let p2p = TxFilter {
        kind: Some("p2p".into()),
        ..Default::default()
    };
    let loaded = async {
        let (balances, _) = etx_core::wallet::balance_list(state, &u.auth.user.id).await?;
        Ok::<_, etx_db::DbErr>((
            balances,
            recent(state, &u.auth.user.id, Some(&p2p), 10).await?,
        ))
    };
    let (balances, recent) = match loaded.await {
        Ok(v) => v,
        Err(e) => return PageError::from(e).into_response(),
    };
    let (status, message, field_errors) = super::form_outcome(error);
    let mut form = form;
    if form.currency.is_empty() {
        form.currency = "USD".into();
    }
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "wallet");
    layout.notice = notice_text;
    let page = WalletPage {
        layout,
        balances,
        recent,
        idempotency_key: uuid::Uuid::now_v7().to_string(),
        form,
        error: message,
        field_errors,
    };
    (status, page).into_response()
}

pub async fn view_wallet_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> Response {
    wallet_page(&state, &u, TransferForm::default(), None, notice(&q)).await
}

pub async fn view_transfer_post(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    u: WebUser,
    Form(f): Form<TransferForm>,
) -> Response {
    if let Err(e) = check_form_csrf(&headers, &f.csrf_token) {
        return wallet_page(&state, &u, f, Some(e), None).await;
    }
    if !f.edit.is_empty() {
        return wallet_page(&state, &u, f, None, None).await;
    }
    let key = match super::form_key(&f.idempotency_key) {
        Ok(k) => k,
        Err(e) => return wallet_page(&state, &u, f, Some(e.into()), None).await,
    };
    let mut body =
        serde_json::json!({"recipient": f.recipient, "amount": f.amount, "currency": f.currency});
    if !f.note.trim().is_empty() {
        body["note"] = serde_json::Value::String(f.note.clone());
    }
    let body = serde_json::value::to_raw_value(&body).expect("a JSON value always serializes");
    // Money moves only from the review page, once the sender saw whom and how much.
    if f.confirm != "yes" {
        return match etx_core::wallet::preview_p2p(&state, &u.auth.user, &body).await {
            Ok(preview) => {
                let layout =
                    Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "wallet");
                let mut form = f;
                form.idempotency_key = key;
                ReviewPage {
                    layout,
                    form,
                    preview,
                }
                .into_response()
            }
            Err(e) => wallet_page(&state, &u, f, Some(e.into()), None).await,
        };
    }
    match etx_core::wallet::transfer_p2p(&state, &u.auth.user, &key, &body).await {
        Ok(_) => Redirect::to("/wallet?msg=sent").into_response(),
        Err(e) => wallet_page(&state, &u, f, Some(e.into()), None).await,
    }
}

#[derive(Deserialize, Default)]
pub struct TxPageQuery {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    skip: Option<String>,
}

pub struct FilterEcho {
    kind: String,
    currency: String,
    from: String,
    to: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "transactions.html")]
pub struct TransactionsPage {
    layout: Layout,
    kinds: Vec<String>,
    assets: Vec<String>,
    filter: FilterEcho,
    query: String,
    recent: Vec<TransactionView>,
    /// "10000+" when a filtered count stopped at its cap.
    total: String,
    prev_skip: Option<i64>,
    next_skip: Option<i64>,
    error: Option<String>,
}

const PAGE: i64 = 25;

pub async fn view_transactions_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<TxPageQuery>,
) -> Response {
    let kinds: Vec<String> = etx_domain::TxKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let kind = kinds.iter().find(|k| **k == q.kind).cloned();
    let asset = state.assets.get(&q.currency).map(|a| a.code.clone());
    let (from, to) = (day(&q.from, false), day(&q.to, true));
    let filter = TxFilter {
        kind: kind.clone(),
        asset: asset.clone(),
        status: None,
        from,
        to,
    };
    let skip = super::skip_param(q.skip.as_deref());
    let echo = FilterEcho {
        kind: kind.unwrap_or_default(),
        currency: asset.unwrap_or_default(),
        from: if from.is_some() {
            q.from.clone()
        } else {
            String::new()
        },
        to: if to.is_some() {
            q.to.clone()
        } else {
            String::new()
        },
    };
    // Only validated values go back into links.
    let query = [
        ("type", &echo.kind),
        ("currency", &echo.currency),
        ("from", &echo.from),
        ("to", &echo.to),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join("&");
    let loaded = async {
        let total = state
            .db
            .count_transactions(&u.auth.user.id, &filter, etx_db::ledger::COUNT_CAP)
            .await?;
        let rows = state
            .db
            .list_transactions(&u.auth.user.id, &filter, None, skip, PAGE)
            .await?;
        Ok::<_, etx_db::DbErr>((total, rows))
    };
    let ((total, total_exact), rows) = match loaded.await {
        Ok(v) => v,
        Err(e) => return PageError::from(e).into_response(),
    };
    let page = TransactionsPage {
        layout: Layout::new(
            Some(UserView::from(&u.auth.user)),
            u.csrf.clone(),
            "transactions",
        ),
        kinds,
        assets: state.assets.iter().map(|a| a.code.clone()).collect(),
        filter: echo,
        query,
        recent: rows
            .iter()
            .map(|t| TransactionView::new(&state, t))
            .collect(),
        total: if total_exact {
            total.to_string()
        } else {
            format!("{total}+")
        },
        prev_skip: (skip > 0).then(|| (skip - PAGE).max(0)),
        next_skip: (skip + PAGE < total || (!total_exact && rows.len() as i64 == PAGE))
            .then_some(skip + PAGE),
        error: None,
    };
    page.into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "transaction.html")]
pub struct TransactionPage {
    layout: Layout,
    tx: TransactionView,
    kind_label: &'static str,
    /// Amount plus fee, for what left the account.
    total: String,
}

/// One of your transactions; anyone else's (or a malformed id) is the not-found page.
pub async fn view_transaction_get(
    State(state): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
) -> Response {
    let not_found = || super::not_found_for(&u);
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return not_found();
    };
    let row = match state
        .db
        .transaction_of_user(&u.auth.user.id, &id.to_string())
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(e) => return PageError::from(e).into_response(),
    };
    let scale = state.assets.get(&row.asset).map_or(0, |a| a.scale);
    let total = etx_domain::money::format_amount(row.amount.saturating_add(row.fee), scale);
    let kind_label = match row.kind.as_str() {
        "p2p" => "Transfer",
        "deposit" => "Deposit",
        "withdrawal" => "Withdrawal",
        "trade" => "Trade",
        "adjustment" => "Adjustment",
        "refund" => "Refund",
        _ => "Transaction",
    };
    TransactionPage {
        layout: Layout::new(
            Some(UserView::from(&u.auth.user)),
            u.csrf.clone(),
            "transactions",
        ),
        tx: TransactionView::new(&state, &row),
        kind_label,
        total,
    }
    .into_response()
}
