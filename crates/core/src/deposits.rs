//! Deposits through a payment provider: orders, signed notifications, crediting, and the
//! suspense account for money whose owner is gone.
//!
//! Money enters from the `deposits_clearing` platform account. Every step is one database
//! transaction whose state change is a conditional UPDATE naming the state it leaves, so a
//! duplicate notification or two staff members at once change things exactly once.

use crate::Core;
use crate::address::Network;
use crate::error::CoreError;
use crate::ledger::{
    AmountText, Asset, Failure, MovementEvent, amount_field, asset_of, balance_of, conflict,
    incoming, leg, movement_event, notice, post, queue_history, reason_text, scale_of,
    with_retries,
};
use crate::providers::Provider;
use crate::rules::{MINUTE, aml_rule, queue_flag};
use crate::time::rfc3339;
use etx_db::ledger::{NewTransaction, PLATFORM, account_id};
use etx_db::payments::{DepositRow, NewDeposit};
use etx_db::users::UserRow;
use etx_db::{Batch, DatabaseTransaction, Db, now_micros};
use etx_domain::AccountKind;
use etx_domain::DepositStatus;
use etx_domain::{AmountError, format_amount, parse_amount, parse_positive_amount};
use etx_domain::{AuditAction, CreditState, EntryKind, TxKind};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

/// The status shown: a payment still waiting after its expiry is `expired`.
pub(crate) fn shown_status(d: &DepositRow) -> &str {
    if d.status == DepositStatus::Waiting.as_str() && now_micros() > d.expires_at {
        "expired"
    } else {
        &d.status
    }
}

pub(crate) fn payment_uri(network: Option<Network>, address: &str, amount: &str) -> String {
    match network {
        Some(Network::Bitcoin) => format!("bitcoin:{address}?amount={amount}"),
        Some(Network::Litecoin) => format!("litecoin:{address}?amount={amount}"),
        Some(Network::Solana) => format!("solana:{address}?amount={amount}"),
        Some(Network::Evm) => format!("ethereum:{address}"),
        None => address.to_string(),
    }
}

/// A deposit order as the API shows it. Amounts are decimal strings: `price_amount` in USD,
/// the others in the pay currency.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositView {
    #[cfg_attr(feature = "openapi", schema(example = "DEP-0193A1B2C3D4E5F6"))]
    pub order_id: String,
    /// The payment provider: `sandbox` or `nowpayments`.
    pub provider: String,
    /// The provider's status; `expired` once a waiting order is past `expires_at`.
    pub status: String,
    pub price_amount: String,
    /// Always `USD`.
    pub price_currency: String,
    pub pay_currency: String,
    pub pay_amount: String,
    pub pay_address: String,
    /// A wallet URI for the payment (BIP-21 style where the network has one).
    pub payment_uri: String,
    pub actually_paid: String,
    pub credited: String,
    /// `none`, `credited`, `held` (for review), `rejected` or `suspense`.
    pub credit_state: String,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// The payment URI as a QR code (SVG); only where one order is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
    /// Every signed notification the provider sent for the order; only where one order is
    /// shown to its owner or staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<DepositNotification>>,
}

/// A signed provider notification of a deposit and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositNotification {
    pub status: Option<String>,
    pub outcome: String,
    pub at: String,
}

/// `{deposit}`: one deposit order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositResponse {
    pub deposit: DepositView,
}

/// A page of deposit orders, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositList {
    pub deposits: Vec<DepositView>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

/// What a payment notification came to: `result` says whether it was applied or ignored, and
/// `deposit` is the order after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookResult {
    pub result: String,
    pub deposit: Option<DepositView>,
}

impl DepositView {
    pub fn new(state: &Core, d: &DepositRow, with_qr: bool) -> Self {
        let scale = scale_of(state, &d.pay_currency);
        let pay_amount = format_amount(d.pay_amount, scale);
        let network = state.rules.networks.get(&d.pay_currency).map(|n| n.0);
        let uri = payment_uri(network, &d.pay_address, &pay_amount);
        let qr_svg = if with_qr {
            crate::security::qr_svg(&uri).ok()
        } else {
            None
        };
        DepositView {
            order_id: d.order_id.clone(),
            provider: d.provider.clone(),
            status: shown_status(d).to_string(),
            price_amount: format_amount(d.price_amount, 2),
            price_currency: "USD".into(),
            pay_currency: d.pay_currency.clone(),
            pay_amount,
            pay_address: d.pay_address.clone(),
            payment_uri: uri,
            actually_paid: format_amount(d.actually_paid, scale),
            credited: format_amount(d.credited, scale),
            credit_state: d.credit_state.clone(),
            expires_at: rfc3339(d.expires_at),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            qr_svg,
            notifications: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub amount: AmountText,
    pub pay_currency: String,
}

/// Creates a deposit order: the provider gives an address and the amount to pay in the chosen
/// currency at the current price.
pub async fn create_deposit(
    state: &Core,
    user: &UserRow,
    req: DepositRequest,
) -> Result<DepositView, CoreError> {
    let rules = &state.rules;
    let limit = state.config.deposits.orders_per_user_per_hour;
    let hour = std::time::Duration::from_secs(3600);
    let key = format!("deposit:user:{}", user.id);
    let budget = state.limiter.hit(&key, limit, hour).await?;
    if !budget.allowed {
        return Err(CoreError::RateLimited {
            retry_after_secs: budget.reset_after_secs,
            limit,
        });
    }
    let cents = parse_positive_amount(req.amount.0.trim(), 2).map_err(amount_field)?;
    if cents < rules.deposit_min_cents || cents > rules.deposit_max_cents {
        return Err(CoreError::LimitExceeded(format!(
            "a deposit must be worth between ${} and ${}",
            format_amount(rules.deposit_min_cents, 2),
            format_amount(rules.deposit_max_cents, 2)
        )));
    }
    let code = req.pay_currency.trim().to_ascii_uppercase();
    if !rules.pay_currencies.contains(&code) {
        return Err(CoreError::field(
            "pay_currency",
            &format!("must be one of {}", rules.pay_currencies.join(", ")),
        ));
    }
    let asset = asset_of(state, &code).map_err(|_| CoreError::field("pay_currency", "unknown"))?;
    let order_id = {
        let u = uuid::Uuid::now_v7().simple().to_string().to_uppercase();
        format!("DEP-{}", &u[u.len() - 16..])
    };
    let (payment_id, address, pay_amount) = open_payment(state, asset, cents, &order_id).await?;
    let now = now_micros();
    let id = uuid::Uuid::now_v7().to_string();
    state
        .db
        .insert_deposit(NewDeposit {
            id: &id,
            order_id: &order_id,
            user_id: &user.id,
            provider: state.payments.name(),
            provider_payment_id: payment_id.as_deref(),
            price_amount: cents,
            pay_currency: &code,
            pay_amount,
            pay_address: &address,
            status: "waiting",
            status_rank: 0,
            expires_at: now + rules.deposit_ttl_micros,
        })
        .await?;
    crate::audit::Event::new(Some(&user.id), AuditAction::DepositCreate)
        .target("deposit", &order_id)
        .details(json!({"usd": format_amount(cents, 2), "pay_currency": code}))
        .record(state)
        .await;
    let d = state
        .db
        .deposit_by_order(&order_id)
        .await?
        .ok_or(CoreError::NotFound)?;
    Ok(DepositView::new(state, &d, true))
}

/// Asks the provider for a payment of `cents` USD in `asset`: its id at the provider (none in
/// the sandbox), the address to pay to and the amount to pay, in the asset's minor units.
async fn open_payment(
    state: &Core,
    asset: &Asset,
    cents: i64,
    order_id: &str,
) -> Result<(Option<String>, String, i64), CoreError> {
    let code = &asset.code;
    match &state.payments.provider {
        Provider::Sandbox => {
            let network = state.rules.networks[code].0;
            let mut m = Hmac::<Sha256>::new_from_slice(&state.payments.address_key)
                .expect("HMAC takes any key length");
            m.update(order_id.as_bytes());
            let seed: [u8; 32] = m.finalize().into_bytes().into();
            let quote = state
                .market
                .quote(code)
                .ok_or_else(|| CoreError::Unavailable("no price for that currency".into()))?;
            // Cents × 10^(scale + 6) / (USD × 10^8), rounded up: the payer never pays short.
            let num = i128::from(cents) * 10i128.pow(u32::from(asset.scale) + 6);
            let den = i128::from(quote.price);
            let pay = i64::try_from((num + den - 1) / den)
                .map_err(|_| amount_field(AmountError::Overflow))?;
            Ok((None, network.sandbox_address(&seed), pay))
        }
        Provider::NowPayments {
            url,
            api_key,
            client,
        } => {
            let base = state.config.public_url.as_deref().unwrap_or("");
            let callback = format!(
                "{}/api/wallet/webhook/nowpayments",
                base.trim_end_matches('/')
            );
            let body = json!({
                "price_amount": format_amount(cents, 2).parse::<f64>().unwrap_or_default(),
                "price_currency": "usd",
                "pay_currency": code.to_ascii_lowercase(),
                "order_id": order_id,
                "order_description": format!("Deposit {order_id}"),
                "ipn_callback_url": callback,
            });
            let nowpayments = crate::providers::nowpayments::create_payment;
            let p = nowpayments(client, url, api_key, &body, asset.scale)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "payment provider refused a payment");
                    CoreError::Unavailable(
                        "the payment provider is unavailable; try again shortly".into(),
                    )
                })?;
            Ok((Some(p.payment_id), p.pay_address, p.pay_amount))
        }
    }
}

/// A signed payment notification, as the provider sends it.
pub(crate) struct Notification {
    order_id: String,
    status: DepositStatus,
    payment_id: Option<String>,
    actually_paid: Option<Value>,
}

/// Unsigned or badly signed notifications one address may send per minute before it is
/// answered 429 instead of 401.
pub const UNSIGNED_WEBHOOKS_PER_MINUTE: u32 = 20;

/// Takes a provider's notification: checks its signature over the body, then moves the
/// deposit forward and credits it once. Every signed notification is stored with what came of
/// it; an unsigned or badly signed one is only counted (`etx_webhooks_rejected_total`) and
/// logged, since anyone can send those and storing them would let anyone fill the database
/// and take SQLite's write lock from money movements. `client` is the sender's address, for
/// the throttle; `None` for notifications made inside the server.
pub async fn receive_webhook(
    state: &Core,
    provider: &str,
    signature: Option<&str>,
    raw: &[u8],
    client: Option<std::net::IpAddr>,
) -> Result<WebhookResult, CoreError> {
    if provider != state.payments.name() {
        return Err(CoreError::NotFound);
    }
    let parsed: Option<Value> = serde_json::from_slice(raw).ok().filter(Value::is_object);
    let signed = match (&parsed, signature) {
        (Some(v), Some(sig)) => {
            crate::providers::nowpayments::verify(&state.payments.ipn_secret, v, sig)
        }
        _ => false,
    };
    let Some(v) = parsed.filter(|_| signed) else {
        return Err(refuse_unsigned(state, provider, signature.is_some(), raw.len(), client).await);
    };
    let field = |name: &str| v[name].as_str().map(str::to_string);
    let (order_id, status) = (field("order_id"), field("payment_status"));
    let body_text = String::from_utf8_lossy(raw);
    let store = |outcome: String| {
        let (body, order_id, status) = (&body_text, &order_id, &status);
        async move {
            let id = uuid::Uuid::now_v7().to_string();
            let (order_id, status) = (order_id.as_deref(), status.as_deref());
            let db = &state.db;
            if let Err(e) = db
                .record_webhook(&id, provider, true, order_id, status, body, &outcome)
                .await
            {
                tracing::error!(error = %e, "payment notification could not be stored");
            }
        }
    };
    let (Some(order_id_s), Some(status_s)) = (order_id.clone(), status.clone()) else {
        store("rejected: order_id or payment_status missing".into()).await;
        return Err(CoreError::Validation {
            message: "order_id and payment_status are required".into(),
            fields: Default::default(),
        });
    };
    let Some(status) = DepositStatus::parse(&status_s) else {
        store(format!("rejected: unknown status {status_s:?}")).await;
        return Err(CoreError::field("payment_status", "is not a known status"));
    };
    let n = Notification {
        order_id: order_id_s,
        status,
        payment_id: match &v["payment_id"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        },
        actually_paid: v.get("actually_paid").cloned(),
    };
    let Some(deposit) = state.db.deposit_by_order(&n.order_id).await? else {
        store("rejected: unknown order".into()).await;
        return Err(CoreError::NotFound);
    };
    if let (Some(ours), Some(theirs)) = (&deposit.provider_payment_id, &n.payment_id)
        && ours != theirs
    {
        store("rejected: payment_id does not match the order".into()).await;
        return Err(CoreError::field("payment_id", "does not match the order"));
    }
    match with_retries(|| apply_notification(state, &deposit, &n)).await {
        Ok((outcome, events)) => {
            store(outcome.clone()).await;
            if !events.is_empty() {
                crate::ledger::publish(state, events);
            }
            let now = state.db.deposit_by_order(&n.order_id).await?;
            Ok(WebhookResult {
                result: outcome,
                deposit: now.map(|d| DepositView::new(state, &d, false)),
            })
        }
        Err(e) => {
            store(format!("failed: {e}")).await;
            Err(e)
        }
    }
}

/// The answer to an unsigned or badly signed notification: 401, or 429 once its sender
/// passed the throttle. Only counted and logged, never stored.
async fn refuse_unsigned(
    state: &Core,
    provider: &str,
    had_signature: bool,
    bytes: usize,
    client: Option<std::net::IpAddr>,
) -> CoreError {
    let reason = if had_signature {
        "bad_signature"
    } else {
        "unsigned"
    };
    metrics::counter!(
        "etx_webhooks_rejected_total",
        "provider" => provider.to_string(),
        "reason" => reason
    )
    .increment(1);
    if let Some(ip) = client {
        let key = format!("webhook:{ip}");
        let limit = UNSIGNED_WEBHOOKS_PER_MINUTE;
        match state.limiter.hit(&key, limit, MINUTE).await {
            Err(e) => return e.into(),
            Ok(d) if !d.allowed => {
                tracing::debug!(provider, reason, client = %ip, "payment notification refused: throttled");
                return CoreError::RateLimited {
                    retry_after_secs: d.reset_after_secs,
                    limit,
                };
            }
            Ok(_) => {}
        }
    }
    // Neither the body nor the signature: they are the sender's, not ours to keep.
    tracing::warn!(
        provider,
        reason,
        client = client.map(|c| c.to_string()),
        bytes,
        "payment notification refused: missing or bad signature"
    );
    CoreError::Unauthorized("missing or invalid notification signature".into())
}

pub(crate) async fn apply_notification(
    state: &Core,
    deposit: &DepositRow,
    n: &Notification,
) -> Result<(String, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let scale = scale_of(state, &deposit.pay_currency);
    let paid = n
        .actually_paid
        .as_ref()
        .and_then(|v| crate::providers::nowpayments::amount_minor(v, scale))
        .unwrap_or(0);
    let tx = db.begin_write().await?;
    let Some(d) = db
        .advance_deposit(&tx, &n.order_id, n.status.as_str(), n.status.rank(), paid)
        .await?
    else {
        tx.rollback().await?;
        return Ok((
            "ignored: not newer than the deposit's status".to_string(),
            vec![],
        ));
    };
    let mut batch = Batch::default();
    let mut events = Vec::new();
    let outcome = if n.status == DepositStatus::Finished {
        let (outcome, ev) = credit_finished(state, &tx, &mut batch, &d).await?;
        events = ev;
        outcome
    } else if matches!(n.status, DepositStatus::Refunded | DepositStatus::Failed) && d.credited > 0
    {
        // Money already credited was given back by the provider: staff must know.
        let details = json!({
            "status": n.status.as_str(),
            "credited": format_amount(d.credited, scale),
            "currency": d.pay_currency,
        });
        let rule = "reversed_after_credit";
        reopen_flag(&mut batch, &d, rule, &details);
        format!(
            "status {}; credited money reported back, review opened",
            n.status
        )
    } else if n.status == DepositStatus::PartiallyPaid && credit_state(&d)? == CreditState::None {
        let details = json!({
            "pay_amount": format_amount(d.pay_amount, scale),
            "actually_paid": format_amount(d.actually_paid, scale),
            "currency": d.pay_currency,
        });
        queue_flag(
            &mut batch,
            &d.user_id,
            "deposit",
            &d.order_id,
            "partial_payment",
            &details,
        );
        "partial payment held for review".into()
    } else {
        format!("status {}", n.status)
    };
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(order_id = %d.order_id, status = %n.status, outcome, "payment notification applied");
    Ok((outcome, events))
}

/// Opens the deposit's review again (or for the first time) under `rule`.
fn reopen_flag(batch: &mut Batch, d: &DepositRow, rule: &str, details: &Value) {
    let details = details.to_string();
    Db::queue_reopen_flag(batch, &d.user_id, "deposit", &d.order_id, rule, &details);
}

/// A deposit paid in full: the amount received, or at least what was asked, is credited once
/// (what a released partial payment already credited is subtracted), to review hold when an
/// AML rule says so, or to suspense when the owner is gone.
async fn credit_finished(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    d: &DepositRow,
) -> Result<(String, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let amount = d.actually_paid.max(d.pay_amount);
    let first = match credit_state(d)? {
        CreditState::None => true,
        // Part was credited when staff released a partial payment; the rest now, under the
        // same rules as any money coming in.
        CreditState::Credited if amount > d.credited => false,
        _ => {
            let outcome = format!("status finished; credit already {}", d.credit_state);
            return Ok((outcome, vec![]));
        }
    };
    let flagged = if first {
        db.flag_of_in(tx, "deposit", &d.order_id).await?
    } else {
        None
    };
    let amount = if first { amount } else { amount - d.credited };
    let Some(user) = db.user_by_id_in(tx, &d.user_id).await? else {
        // Paid after its owner was deleted: the money is real, so it waits in suspense for
        // staff instead of being lost with a failed credit.
        let (from, held) = if first {
            (CreditState::None, CreditState::Suspense)
        } else {
            (CreditState::Credited, CreditState::Credited)
        };
        if db
            .set_deposit_credit(tx, &d.id, from, held, amount, 0, None)
            .await?
            .is_none()
        {
            return Err(conflict("the deposit changed meanwhile").into());
        }
        to_suspense(state, tx, batch, d, amount).await?;
        let outcome = if first {
            "credited to suspense: the owner no longer exists"
        } else {
            "remainder credited to suspense: the owner no longer exists"
        };
        return Ok((outcome.into(), vec![]));
    };
    let rule = match &flagged {
        Some(f) if f.status == "open" => Some((f.rule.clone(), None)),
        // Staff already reviewed this deposit.
        Some(_) => None,
        None => aml_rule(state, tx, &user, deposit_usd(d, amount))
            .await?
            .map(|(r, v)| (r.to_string(), Some(v))),
    };
    let (events, held) = credit(state, tx, batch, d, amount, rule.is_some()).await?;
    if let Some((rule, Some(details))) = &rule {
        if first {
            queue_flag(batch, &d.user_id, "deposit", &d.order_id, rule, details);
        } else {
            reopen_flag(batch, d, rule, details);
        }
    }
    let outcome = match (first, held) {
        (true, true) => "credited to review hold",
        (true, false) => "credited",
        (false, true) => "remainder credited to review hold",
        (false, false) => "credited the remainder",
    };
    Ok((outcome.into(), events))
}

/// Moves `amount` of a deposit whose owner is gone from clearing to `suspense::<asset>` and
/// opens a suspense item for staff to resolve.
pub(crate) async fn to_suspense(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    d: &DepositRow,
    amount: i64,
) -> Result<(), Failure> {
    post(
        &state.db,
        tx,
        batch,
        EntryKind::DepositSuspense,
        &d.pay_currency,
        Some(&d.order_id),
        None,
        vec![
            leg(PLATFORM, AccountKind::DepositsClearing, -amount),
            leg(PLATFORM, AccountKind::Suspense, amount),
        ],
    )
    .await?;
    let id = uuid::Uuid::now_v7().to_string();
    Db::queue_suspense_item(
        batch,
        &id,
        &d.pay_currency,
        amount,
        ("deposit", &d.order_id),
        Some(&d.user_id),
    );
    crate::audit::Event::new(None, AuditAction::DepositSuspense)
        .target("suspense", &id)
        .details(json!({
            "order_id": d.order_id,
            "owner_id": d.user_id,
            "currency": d.pay_currency,
            "amount": format_amount(amount, scale_of(state, &d.pay_currency)),
        }))
        .queue(batch);
    tracing::warn!(order_id = %d.order_id, owner = %d.user_id, suspense = %id, "deposit paid for an owner who no longer exists; held in suspense");
    Ok(())
}

/// A suspense item (money paid for an owner who no longer exists) as the staff API and page
/// show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuspenseView {
    pub id: String,
    /// `open`, `refunded` or `credited`.
    pub status: String,
    pub currency: String,
    pub amount: String,
    pub source_type: String,
    pub source_id: String,
    pub owner_id: Option<String>,
    pub resolved_by: Option<String>,
    pub credited_to: Option<String>,
    pub note: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

/// `{items}`: suspense items, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuspenseList {
    pub items: Vec<SuspenseView>,
}

/// `{item}`: one suspense item.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuspenseResponse {
    pub item: SuspenseView,
}

impl SuspenseView {
    pub fn new(state: &Core, s: &etx_db::suspense::SuspenseRow) -> Self {
        SuspenseView {
            id: s.id.clone(),
            status: s.status.clone(),
            currency: s.asset.clone(),
            amount: format_amount(s.amount, scale_of(state, &s.asset)),
            source_type: s.source_type.clone(),
            source_id: s.source_id.clone(),
            owner_id: s.owner_id.clone(),
            resolved_by: s.resolved_by.clone(),
            credited_to: s.credited_to.clone(),
            note: s.note.clone(),
            created_at: rfc3339(s.created_at),
            resolved_at: s.resolved_at.map(rfc3339),
        }
    }
}

/// How staff resolve a suspense item.
pub enum SuspenseAction {
    /// The money was sent back to the payer outside the platform: it leaves through
    /// withdrawals clearing like a payout.
    Refund,
    /// Credited to this user's wallet.
    Credit { user_id: String },
}

/// Resolves an open suspense item (admins), once: the state change is conditional on
/// `open` and runs in the transaction of the entry that moves the money out of suspense.
pub async fn resolve_suspense(
    state: &Core,
    staff: &UserRow,
    id: &str,
    action: SuspenseAction,
    reason: &str,
) -> Result<SuspenseView, CoreError> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| CoreError::NotFound)?
        .to_string();
    let reason = reason_text(reason, "reason")?;
    let (row, events) =
        with_retries(|| resolve_suspense_attempt(state, staff, &id, &action, &reason)).await?;
    if !events.is_empty() {
        crate::ledger::publish(state, events);
    }
    Ok(SuspenseView::new(state, &row))
}

pub(crate) async fn resolve_suspense_attempt(
    state: &Core,
    staff: &UserRow,
    id: &str,
    action: &SuspenseAction,
    reason: &str,
) -> Result<(etx_db::suspense::SuspenseRow, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let Some(item) = db.suspense_item(&tx, id).await? else {
        return Err(CoreError::NotFound.into());
    };
    if item.status != "open" {
        return Err(conflict(&format!("this item is already {}", item.status)).into());
    }
    let target = match action {
        SuspenseAction::Refund => None,
        SuspenseAction::Credit { user_id } => {
            let user = match uuid::Uuid::parse_str(user_id) {
                Ok(u) => db.user_by_id_in(&tx, &u.to_string()).await?,
                Err(_) => None,
            }
            .ok_or_else(|| CoreError::field("user_id", "no such user"))?;
            // As with adjustments: staff never move money into their own wallet.
            if user.id == staff.id {
                return Err(CoreError::Forbidden(
                    "staff cannot credit suspense money to their own wallet".into(),
                )
                .into());
            }
            Some(user)
        }
    };
    let to = if target.is_some() {
        "credited"
    } else {
        "refunded"
    };
    let target_id = target.as_ref().map(|u| u.id.as_str());
    let Some(row) = db
        .resolve_suspense(&tx, id, to, &staff.id, target_id, reason)
        .await?
    else {
        return Err(conflict("this item was resolved meanwhile").into());
    };
    let mut batch = Batch::default();
    let mut events = Vec::new();
    let (kind, to_leg) = match target_id {
        None => (
            EntryKind::SuspenseRefund,
            leg(PLATFORM, AccountKind::WithdrawalsClearing, row.amount),
        ),
        Some(user) => (
            EntryKind::SuspenseCredit,
            leg(user, AccountKind::Wallet, row.amount),
        ),
    };
    let (asset, who) = (&row.asset, Some(staff.id.as_str()));
    let legs = vec![leg(PLATFORM, AccountKind::Suspense, -row.amount), to_leg];
    let balances = post(db, &tx, &mut batch, kind, asset, Some(reason), who, legs).await?;
    if let Some(user) = target_id {
        let wallet = account_id(user, AccountKind::Wallet, asset);
        let balance = balance_of(&balances, &wallet)?;
        events.push(credit_suspense(
            state, &mut batch, &row, user, balance, reason,
        ));
    }
    let audit_action = if target.is_some() {
        AuditAction::SuspenseCredit
    } else {
        AuditAction::SuspenseRefund
    };
    crate::audit::Event::new(Some(&staff.id), audit_action)
        .target("suspense", &row.id)
        .details(json!({
            "source_type": row.source_type,
            "source_id": row.source_id,
            "owner_id": row.owner_id,
            "credited_to": row.credited_to,
            "currency": row.asset,
            "amount": format_amount(row.amount, scale_of(state, asset)),
            "reason": reason,
        }))
        .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(suspense = %row.id, actor = %staff.id, to, "suspense item resolved");
    Ok((row, events))
}

/// The history row and notification of suspense money credited to `user`.
fn credit_suspense(
    state: &Core,
    batch: &mut Batch,
    row: &etx_db::suspense::SuspenseRow,
    user: &str,
    balance: i64,
    reason: &str,
) -> MovementEvent {
    let txn_id = uuid::Uuid::now_v7().to_string();
    let (asset, amount) = (&row.asset, row.amount);
    let history = incoming(
        &txn_id,
        user,
        TxKind::Deposit,
        asset,
        amount,
        Some(&row.source_id),
    );
    let view = queue_history(state, batch, history);
    let n = notice(
        "deposit_credited",
        format!(
            "{} {asset} was credited to your wallet",
            format_amount(amount, scale_of(state, asset)),
        ),
        reason.to_string(),
        json!({"transaction_id": txn_id}),
    );
    n.queue(batch, user);
    movement_event(state, user, asset, balance, view, Some(n))
}

/// What the deposit did with its money so far, as stored.
pub(crate) fn credit_state(d: &DepositRow) -> Result<CreditState, CoreError> {
    CreditState::parse(&d.credit_state).ok_or_else(|| {
        CoreError::Internal(anyhow::anyhow!(
            "deposit {} has an unknown credit state {:?}",
            d.order_id,
            d.credit_state
        ))
    })
}

/// The USD value of `amount` of a deposit, in proportion to what was asked for it.
pub(crate) fn deposit_usd(d: &DepositRow, amount: i64) -> i64 {
    if d.pay_amount <= 0 {
        return d.price_amount;
    }
    i64::try_from(i128::from(d.price_amount) * i128::from(amount) / i128::from(d.pay_amount))
        .unwrap_or(i64::MAX)
}

/// Moves `amount` of a deposit from clearing to the owner's wallet, or to their held account
/// when `hold`. Returns the events to announce and whether it was held.
pub(crate) async fn credit(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    d: &DepositRow,
    amount: i64,
    hold: bool,
) -> Result<(Vec<MovementEvent>, bool), Failure> {
    let db = &state.db;
    let (to_kind, to_state, status) = if hold {
        (AccountKind::Held, CreditState::Held, "held")
    } else {
        (AccountKind::Wallet, CreditState::Credited, "completed")
    };
    let txn_id = uuid::Uuid::now_v7().to_string();
    let held = if hold { amount } else { 0 };
    if db
        .set_deposit_credit(
            tx,
            &d.id,
            credit_state(d)?,
            to_state,
            amount,
            held,
            Some(&txn_id),
        )
        .await?
        .is_none()
    {
        return Err(conflict("the deposit changed meanwhile").into());
    }
    let (asset, order) = (&d.pay_currency, Some(d.order_id.as_str()));
    let legs = vec![
        leg(PLATFORM, AccountKind::DepositsClearing, -amount),
        leg(&d.user_id, to_kind, amount),
    ];
    let balances = post(db, tx, batch, EntryKind::Deposit, asset, order, None, legs).await?;
    let history = NewTransaction {
        status,
        ..incoming(&txn_id, &d.user_id, TxKind::Deposit, asset, amount, order)
    };
    let view = queue_history(state, batch, history);
    let shown = format_amount(amount, scale_of(state, asset));
    crate::audit::Event::new(None, AuditAction::DepositCredit)
        .target("deposit", &d.order_id)
        .details(json!({
            "user_id": d.user_id,
            "currency": asset,
            "amount": shown,
            "held_for_review": hold,
        }))
        .queue(batch);
    let n = notice(
        "deposit_credited",
        if hold {
            format!("Your deposit of {shown} {asset} arrived and is under review")
        } else {
            format!("Your deposit of {shown} {asset} arrived")
        },
        format!("Order {}", d.order_id),
        json!({"order_id": d.order_id, "transaction_id": txn_id}),
    );
    n.queue(batch, &d.user_id);
    // A held credit leaves the wallet as it was: its balance is read, not returned.
    let wallet = account_id(&d.user_id, AccountKind::Wallet, asset);
    let balance = match balances.iter().find(|(id, _)| *id == wallet) {
        Some((_, b)) => *b,
        None => db.wallet_balance_in(tx, &d.user_id, asset).await?,
    };
    let event = movement_event(state, &d.user_id, asset, balance, view, Some(n));
    Ok((vec![event], hold))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    pub status: String,
    /// Defaults to the whole pay amount for `finished`, half of it for `partially_paid`.
    pub actually_paid: Option<AmountText>,
}

/// Dev mode: sends the deposit's provider notification as the sandbox would, signed, through
/// the same path as a real one.
pub async fn simulate(
    state: &Core,
    order_id: &str,
    req: SimulateRequest,
) -> Result<WebhookResult, CoreError> {
    if !matches!(state.payments.provider, Provider::Sandbox) || !state.config.is_dev() {
        return Err(CoreError::Forbidden(
            "simulated payments exist only with the sandbox provider in dev mode".into(),
        ));
    }
    let d = state
        .db
        .deposit_by_order(order_id)
        .await?
        .ok_or(CoreError::NotFound)?;
    let Some(status) = DepositStatus::parse(&req.status) else {
        return Err(CoreError::field("status", "is not a known payment status"));
    };
    let scale = scale_of(state, &d.pay_currency);
    let paid = match &req.actually_paid {
        Some(a) => parse_amount(a.0.trim(), scale)
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| CoreError::field("actually_paid", "must be a decimal amount"))?,
        None if status == DepositStatus::Finished => d.pay_amount,
        None if status == DepositStatus::PartiallyPaid => d.pay_amount / 2,
        None => 0,
    };
    let body = sandbox_notification(&d, &req.status, paid, scale);
    let sig = state.payments.sign(&body);
    let raw = serde_json::to_vec(&body).map_err(|e| CoreError::Internal(e.into()))?;
    receive_webhook(state, "sandbox", Some(&sig), &raw, None).await
}

/// A notification in the provider's format.
pub fn sandbox_notification(d: &DepositRow, status: &str, paid: i64, scale: u8) -> Value {
    json!({
        "payment_id": d.provider_payment_id.clone().unwrap_or_else(|| d.id.clone()),
        "payment_status": status,
        "pay_address": d.pay_address,
        "price_amount": format_amount(d.price_amount, 2),
        "price_currency": "usd",
        "pay_amount": format_amount(d.pay_amount, scale),
        "actually_paid": format_amount(paid, scale),
        "pay_currency": d.pay_currency.to_ascii_lowercase(),
        "order_id": d.order_id,
        "updated_at": now_micros() / 1000,
    })
}
