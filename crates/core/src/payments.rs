//! Deposits through a payment provider, withdrawals with staff approval, and AML review.
//!
//! Money enters from the `deposits_clearing` platform account and leaves through
//! `withdrawals_hold` (at request time) and `withdrawals_clearing` plus `fees` (on completion).
//! Money an AML rule flagged waits in the owner's `held` account, or for a withdrawal in the
//! withdrawals hold, until staff release or reject it. Every step is one database transaction
//! whose state change is a conditional UPDATE naming the state it leaves, so a duplicate
//! notification, a double click or two staff members at once change things exactly once.

pub mod address;
pub mod nowpayments;

use crate::Core;
use crate::config::Config;
use crate::error::CoreError;
use crate::session::Auth;
use crate::time::rfc3339;
use crate::wallet::{
    AmountText, Asset, Failure, Movement, MovementEvent, Notice, Outcome, amount_field, asset_of,
    balance_of, is_transient, usd_value,
};
use address::Network;
use etx_db::ledger::{Leg, NewEntry, NewTransaction, PLATFORM, Usage, account_id};
use etx_db::payments::{DepositRow, FlagRow, HeldTransferRow, NewDeposit, WithdrawalRow};
use etx_db::users::UserRow;
use etx_db::{Batch, DatabaseTransaction, Db, DbErr, now_micros};
use etx_domain::{AmountError, format_amount, parse_amount, parse_positive_amount};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

/// Thresholds from the `[deposits]`, `[withdrawals]` and `[aml]` settings, in cents.
#[derive(Debug, Clone)]
pub struct Rules {
    pub deposit_min_cents: i64,
    pub deposit_max_cents: i64,
    pub deposit_ttl_micros: i64,
    pub pay_currencies: Vec<String>,
    pub withdraw_min_cents: i64,
    pub withdraw_max_cents: i64,
    pub withdraw_daily_cap_cents: i64,
    /// Hundredths of a percent.
    pub fee_basis_points: i64,
    pub two_approvals_cents: i64,
    /// Per withdrawable asset: its address family and smallest fee in minor units.
    pub networks: HashMap<String, (Network, i64)>,
    pub aml_large_cents: i64,
    pub aml_max_operations: i64,
    pub aml_window_micros: i64,
    pub aml_young_micros: i64,
    pub aml_young_cents: i64,
    /// Admin adjustments worth this much or more need a second admin.
    pub adjust_approval_cents: i64,
}

fn usd_setting(v: &str, name: &str) -> anyhow::Result<i64> {
    parse_positive_amount(v, 2).map_err(|_| anyhow::anyhow!("invalid setting {name}: {v:?}"))
}

impl Rules {
    pub fn from_config(c: &Config) -> anyhow::Result<Rules> {
        let assets = crate::wallet::Assets::from_config(&c.assets)?;
        let d = &c.deposits;
        if !matches!(d.provider.as_str(), "sandbox" | "nowpayments") {
            anyhow::bail!("invalid setting deposits.provider: must be sandbox or nowpayments");
        }
        if d.provider == "nowpayments"
            && (d.nowpayments_api_key.as_deref().is_none_or(str::is_empty)
                || d.ipn_secret.as_deref().is_none_or(str::is_empty))
        {
            anyhow::bail!(
                "invalid setting deposits: nowpayments needs nowpayments_api_key and ipn_secret"
            );
        }
        if !(1..=1440).contains(&d.ttl_minutes) {
            anyhow::bail!("invalid setting deposits.ttl_minutes: 1..=1440");
        }
        let mut networks = HashMap::new();
        for a in &c.assets {
            let Some(n) = &a.network else { continue };
            let code = a.code.trim().to_ascii_uppercase();
            let network = Network::parse(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid setting assets.network for {code}: bitcoin, litecoin, evm or solana"
                )
            })?;
            let scale = assets.get(&code).map_or(0, |x| x.scale);
            let fee = match &a.withdrawal_min_fee {
                Some(f) => parse_amount(f, scale)
                    .ok()
                    .filter(|f| *f >= 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("invalid setting assets.withdrawal_min_fee for {code}")
                    })?,
                None => 0,
            };
            networks.insert(code, (network, fee));
        }
        let mut pay_currencies = Vec::new();
        for p in &d.pay_currencies {
            let code = p.trim().to_ascii_uppercase();
            if assets.get(&code).is_none() || code == "USD" {
                anyhow::bail!(
                    "invalid setting deposits.pay_currencies: {code} is not a configured crypto asset"
                );
            }
            if !networks.contains_key(&code) {
                anyhow::bail!("invalid setting deposits.pay_currencies: {code} has no network");
            }
            pay_currencies.push(code);
        }
        let w = &c.withdrawals;
        let a = &c.aml;
        let rules = Rules {
            deposit_min_cents: usd_setting(&d.min_usd, "deposits.min_usd")?,
            deposit_max_cents: usd_setting(&d.max_usd, "deposits.max_usd")?,
            deposit_ttl_micros: i64::from(d.ttl_minutes) * MICROS_PER_MINUTE,
            pay_currencies,
            withdraw_min_cents: usd_setting(&w.min_usd, "withdrawals.min_usd")?,
            withdraw_max_cents: usd_setting(&w.max_usd, "withdrawals.max_usd")?,
            withdraw_daily_cap_cents: usd_setting(&w.daily_cap_usd, "withdrawals.daily_cap_usd")?,
            fee_basis_points: parse_amount(&w.fee_percent, 2)
                .ok()
                .filter(|p| (0..=10_000).contains(p))
                .ok_or_else(|| anyhow::anyhow!("invalid setting withdrawals.fee_percent"))?,
            two_approvals_cents: usd_setting(
                &w.two_approvals_from_usd,
                "withdrawals.two_approvals_from_usd",
            )?,
            networks,
            aml_large_cents: usd_setting(&a.large_amount_usd, "aml.large_amount_usd")?,
            aml_max_operations: i64::from(a.max_operations_in_window),
            aml_window_micros: i64::from(a.window_minutes.max(1)) * MICROS_PER_MINUTE,
            aml_young_micros: i64::from(a.young_account_days) * 86_400_000_000,
            aml_young_cents: usd_setting(&a.young_account_usd, "aml.young_account_usd")?,
            adjust_approval_cents: usd_setting(
                &c.admin.adjust_approval_from_usd,
                "admin.adjust_approval_from_usd",
            )?,
        };
        if rules.deposit_min_cents > rules.deposit_max_cents
            || rules.withdraw_min_cents > rules.withdraw_max_cents
        {
            anyhow::bail!("invalid setting deposits/withdrawals: min_usd above max_usd");
        }
        Ok(rules)
    }
}

/// The payment provider seam: who makes deposit addresses and signs payment notifications.
pub enum Provider {
    /// Deterministic test addresses; payments are completed by `simulate` in dev mode.
    Sandbox,
    NowPayments {
        url: String,
        api_key: String,
        client: reqwest::Client,
    },
}

pub struct Payments {
    pub provider: Provider,
    ipn_secret: Vec<u8>,
    address_key: [u8; 32],
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

impl Payments {
    pub fn new(c: &crate::config::DepositConfig, server_secret: &[u8]) -> anyhow::Result<Self> {
        let ipn_secret = match c.ipn_secret.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => s.as_bytes().to_vec(),
            None => derive(server_secret, b"etx sandbox ipn v1").to_vec(),
        };
        let provider = match c.provider.as_str() {
            "nowpayments" => Provider::NowPayments {
                url: c.nowpayments_url.clone(),
                api_key: c.nowpayments_api_key.clone().unwrap_or_default(),
                client: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(20))
                    .build()?,
            },
            _ => Provider::Sandbox,
        };
        Ok(Payments {
            provider,
            ipn_secret,
            address_key: derive(server_secret, b"etx sandbox address v1"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self.provider {
            Provider::Sandbox => "sandbox",
            Provider::NowPayments { .. } => "nowpayments",
        }
    }

    /// Signs a notification as the provider would; the sandbox's simulated payments use it.
    pub fn sign(&self, body: &Value) -> String {
        nowpayments::sign(&self.ipn_secret, body)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

fn leg<'a>(owner: &'a str, kind: &'static str, amount: i64) -> Leg<'a> {
    Leg {
        owner,
        kind,
        // Clearing accounts face the outside world and run negative by design.
        allow_negative: matches!(kind, "deposits_clearing" | "withdrawals_clearing"),
        amount,
    }
}

/// Posts one entry and returns the new balances by account id.
#[allow(clippy::too_many_arguments)]
async fn post(
    db: &Db,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    kind: &str,
    asset: &str,
    memo: Option<&str>,
    actor: Option<&str>,
    legs: Vec<Leg<'_>>,
) -> Result<Vec<(String, i64)>, Failure> {
    let id = uuid::Uuid::now_v7().to_string();
    Ok(db
        .post_entry(
            tx,
            batch,
            NewEntry {
                id: &id,
                kind,
                asset,
                memo,
                created_by: actor,
                legs,
            },
        )
        .await?)
}

/// Runs a step that has no idempotency key of its own (its conditional UPDATEs make it
/// happen once), retrying transient database conflicts.
pub(crate) async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, CoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Db(e)) if is_transient(&e) && tries < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(Failure::Conflict(_)) if tries < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(Failure::Db(e)) => return Err(e.into()),
            Err(Failure::Conflict(why)) => return Err(crate::wallet::conflict_exhausted(why)),
            Err(Failure::Api(e)) => return Err(e),
            Err(Failure::KeyTaken) => {
                return Err(CoreError::Internal(anyhow::anyhow!(
                    "unexpected idempotency conflict"
                )));
            }
        }
    }
}

fn conflict(message: &str) -> CoreError {
    CoreError::Conflict {
        message: message.into(),
        fields: Default::default(),
    }
}

fn scale_of(state: &Core, code: &str) -> u8 {
    state.assets.get(code).map_or(0, |a| a.scale)
}

/// A history row as `GET /api/transactions` shows it, for the real-time event.
#[allow(clippy::too_many_arguments)]
fn txn_view(
    state: &Core,
    id: &str,
    kind: &str,
    direction: &str,
    asset: &str,
    amount: i64,
    fee: i64,
    status: &str,
    note: Option<&str>,
) -> Value {
    let scale = scale_of(state, asset);
    json!({
        "id": id,
        "type": kind,
        "direction": direction,
        "currency": asset,
        "amount": format_amount(amount, scale),
        "fee": format_amount(fee, scale),
        "status": status,
        "counterparty": null,
        "note": note,
        "created_at": rfc3339(now_micros()),
    })
}

fn movement_event(
    state: &Core,
    user_id: &str,
    asset: &str,
    balance: i64,
    transaction: Value,
    notice: Option<Notice>,
) -> MovementEvent {
    MovementEvent {
        notice,
        user_id: user_id.to_string(),
        transaction,
        currency: asset.to_string(),
        balance: format_amount(balance, scale_of(state, asset)),
    }
}

fn notice(kind: &'static str, title: String, body: String, data: Value) -> Notice {
    Notice {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        title,
        body,
        data,
    }
}

/// The AML rule an operation worth `usd_cents` by `user` trips, if any, with its details.
/// The velocity rule counts committed operations, so the caller must hold a lock that
/// serialises this user's operations (the wallet and daily-total rows it is changing).
pub(crate) async fn aml_rule(
    state: &Core,
    tx: &impl etx_db::ConnectionTrait,
    user: &UserRow,
    usd_cents: i64,
) -> Result<Option<(&'static str, Value)>, DbErr> {
    if let Some(rule) = amount_rule(state, user, usd_cents) {
        return Ok(Some(rule));
    }
    let r = &state.rules;
    if r.aml_max_operations == 0 {
        return Ok(None);
    }
    let recent = state
        .db
        .operations_since(
            tx,
            &[&user.id],
            now_micros() - r.aml_window_micros,
            r.aml_max_operations,
        )
        .await?
        .first()
        .map_or(0, |(_, n)| *n);
    Ok(velocity_rule(r, recent))
}

/// The rules that look at the operation alone (its value, the account's age): decided before
/// any lock is taken.
pub(crate) fn amount_rule(
    state: &Core,
    user: &UserRow,
    usd_cents: i64,
) -> Option<(&'static str, Value)> {
    let r = &state.rules;
    let usd = |c: i64| format_amount(c, 2);
    if usd_cents >= r.aml_large_cents {
        return Some((
            "large_amount",
            json!({"usd_value": usd(usd_cents), "threshold_usd": usd(r.aml_large_cents)}),
        ));
    }
    let age = now_micros() - user.created_at;
    if age < r.aml_young_micros && usd_cents >= r.aml_young_cents {
        return Some((
            "young_account",
            json!({
                "usd_value": usd(usd_cents),
                "threshold_usd": usd(r.aml_young_cents),
                "account_age_hours": age / 3_600_000_000,
            }),
        ));
    }
    None
}

/// The velocity rule, given how many operations the user already made in the window (counted
/// up to the limit, so `operations_in_window` is at least the number shown).
pub(crate) fn velocity_rule(r: &Rules, recent: i64) -> Option<(&'static str, Value)> {
    if r.aml_max_operations == 0 || recent < r.aml_max_operations {
        return None;
    }
    Some((
        "velocity",
        json!({
            "operations_in_window": recent + 1,
            "max_operations": r.aml_max_operations,
            "window_minutes": r.aml_window_micros / MICROS_PER_MINUTE,
        }),
    ))
}

fn queue_flag(
    batch: &mut Batch,
    user_id: &str,
    subject_type: &str,
    subject_id: &str,
    rule: &str,
    details: &Value,
) {
    Db::queue_flag(
        batch,
        &uuid::Uuid::now_v7().to_string(),
        user_id,
        subject_type,
        subject_id,
        rule,
        &details.to_string(),
    );
}

// ---------------------------------------------------------------------------------------------
// Deposits

/// Provider statuses in the order a payment goes through them. A notification never moves a
/// deposit back; `finished` outranks everything, so a late payment after expiry still counts.
pub fn status_rank(status: &str) -> Option<i32> {
    Some(match status {
        "waiting" => 0,
        "expired" => 1,
        "confirming" => 2,
        "confirmed" => 3,
        "sending" => 4,
        "partially_paid" => 5,
        "failed" | "refunded" => 6,
        "finished" => 7,
        _ => return None,
    })
}

const FINISHED: i32 = 7;

/// The status shown: a payment still waiting after its expiry is `expired`.
fn shown_status(d: &DepositRow) -> &str {
    if d.status == "waiting" && now_micros() > d.expires_at {
        "expired"
    } else {
        &d.status
    }
}

fn payment_uri(network: Option<Network>, address: &str, amount: &str) -> String {
    match network {
        Some(Network::Bitcoin) => format!("bitcoin:{address}?amount={amount}"),
        Some(Network::Litecoin) => format!("litecoin:{address}?amount={amount}"),
        Some(Network::Solana) => format!("solana:{address}?amount={amount}"),
        Some(Network::Evm) => format!("ethereum:{address}"),
        None => address.to_string(),
    }
}

pub fn deposit_json(state: &Core, d: &DepositRow, with_qr: bool) -> Value {
    let scale = scale_of(state, &d.pay_currency);
    let pay_amount = format_amount(d.pay_amount, scale);
    let network = state.rules.networks.get(&d.pay_currency).map(|n| n.0);
    let uri = payment_uri(network, &d.pay_address, &pay_amount);
    let mut v = json!({
        "order_id": d.order_id,
        "provider": d.provider,
        "status": shown_status(d),
        "price_amount": format_amount(d.price_amount, 2),
        "price_currency": "USD",
        "pay_currency": d.pay_currency,
        "pay_amount": pay_amount,
        "pay_address": d.pay_address,
        "payment_uri": uri,
        "actually_paid": format_amount(d.actually_paid, scale),
        "credited": format_amount(d.credited, scale),
        "credit_state": d.credit_state,
        "expires_at": rfc3339(d.expires_at),
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
    });
    if with_qr && let Ok(svg) = crate::security::qr_svg(&uri) {
        v["qr_svg"] = svg.into();
    }
    v
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
) -> Result<Value, CoreError> {
    let rules = &state.rules;
    let limit = state.config.deposits.orders_per_user_per_hour;
    let budget = state
        .limiter
        .hit(
            &format!("deposit:user:{}", user.id),
            limit,
            std::time::Duration::from_secs(3600),
        )
        .await?;
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
    let (payment_id, address, pay_amount) = match &state.payments.provider {
        Provider::Sandbox => {
            let network = rules.networks[&code].0;
            let seed = {
                let mut m = Hmac::<Sha256>::new_from_slice(&state.payments.address_key)
                    .expect("HMAC takes any key length");
                m.update(order_id.as_bytes());
                let b: [u8; 32] = m.finalize().into_bytes().into();
                b
            };
            let quote = state
                .market
                .quote(&code)
                .ok_or_else(|| CoreError::Unavailable("no price for that currency".into()))?;
            // Cents × 10^(scale + 6) / (USD × 10^8), rounded up: the payer never pays short.
            let num = i128::from(cents) * 10i128.pow(u32::from(asset.scale) + 6);
            let den = i128::from(quote.price);
            let pay = i64::try_from((num + den - 1) / den)
                .map_err(|_| amount_field(AmountError::Overflow))?;
            (None, network.sandbox_address(&seed), pay)
        }
        Provider::NowPayments {
            url,
            api_key,
            client,
        } => {
            let callback = format!(
                "{}/api/wallet/webhook/nowpayments",
                state
                    .config
                    .public_url
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('/')
            );
            let body = json!({
                "price_amount": format_amount(cents, 2).parse::<f64>().unwrap_or_default(),
                "price_currency": "usd",
                "pay_currency": code.to_ascii_lowercase(),
                "order_id": order_id,
                "order_description": format!("Deposit {order_id}"),
                "ipn_callback_url": callback,
            });
            let p = nowpayments::create_payment(client, url, api_key, &body, asset.scale)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "payment provider refused a payment");
                    CoreError::Unavailable(
                        "the payment provider is unavailable; try again shortly".into(),
                    )
                })?;
            (Some(p.payment_id), p.pay_address, p.pay_amount)
        }
    };
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
    crate::audit::Event::new(Some(&user.id), "deposit.create")
        .target("deposit", &order_id)
        .details(json!({"usd": format_amount(cents, 2), "pay_currency": code}))
        .record(state)
        .await;
    let d = state
        .db
        .deposit_by_order(&order_id)
        .await?
        .ok_or(CoreError::NotFound)?;
    Ok(deposit_json(state, &d, true))
}

/// A signed payment notification, as the provider sends it.
struct Notification {
    order_id: String,
    status: String,
    rank: i32,
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
) -> Result<Value, CoreError> {
    if provider != state.payments.name() {
        return Err(CoreError::NotFound);
    }
    let parsed: Option<Value> = serde_json::from_slice(raw).ok().filter(Value::is_object);
    let signed = match (&parsed, signature) {
        (Some(v), Some(sig)) => nowpayments::verify(&state.payments.ipn_secret, v, sig),
        _ => false,
    };
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v[name].as_str())
            .map(str::to_string)
    };
    if !signed {
        let reason = if signature.is_none() {
            "unsigned"
        } else {
            "bad_signature"
        };
        metrics::counter!(
            "etx_webhooks_rejected_total",
            "provider" => provider.to_string(),
            "reason" => reason
        )
        .increment(1);
        if let Some(ip) = client {
            let d = state
                .limiter
                .hit(
                    &format!("webhook:{ip}"),
                    UNSIGNED_WEBHOOKS_PER_MINUTE,
                    MINUTE,
                )
                .await?;
            if !d.allowed {
                tracing::debug!(provider, reason, client = %ip, "payment notification refused: throttled");
                return Err(CoreError::RateLimited {
                    retry_after_secs: d.reset_after_secs,
                    limit: UNSIGNED_WEBHOOKS_PER_MINUTE,
                });
            }
        }
        // Neither the body nor the signature: they are the sender's, not ours to keep.
        tracing::warn!(
            provider,
            reason,
            client = client.map(|c| c.to_string()),
            bytes = raw.len(),
            "payment notification refused: missing or bad signature"
        );
        return Err(CoreError::Unauthorized(
            "missing or invalid notification signature".into(),
        ));
    }
    let (order_id, status) = (field("order_id"), field("payment_status"));
    let body_text = String::from_utf8_lossy(raw);
    let store = |outcome: String| {
        let (body, order_id, status) = (&body_text, &order_id, &status);
        async move {
            let id = uuid::Uuid::now_v7().to_string();
            if let Err(e) = state
                .db
                .record_webhook(
                    &id,
                    provider,
                    true,
                    order_id.as_deref(),
                    status.as_deref(),
                    body,
                    &outcome,
                )
                .await
            {
                tracing::error!(error = %e, "payment notification could not be stored");
            }
        }
    };
    let v = parsed.unwrap_or_default();
    let (Some(order_id_s), Some(status_s)) = (order_id.clone(), status.clone()) else {
        store("rejected: order_id or payment_status missing".into()).await;
        return Err(CoreError::Validation {
            message: "order_id and payment_status are required".into(),
            fields: Default::default(),
        });
    };
    let Some(rank) = status_rank(&status_s) else {
        store(format!("rejected: unknown status {status_s:?}")).await;
        return Err(CoreError::field("payment_status", "is not a known status"));
    };
    let n = Notification {
        order_id: order_id_s,
        status: status_s,
        rank,
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
    let result = with_retries(|| apply_notification(state, &deposit, &n)).await;
    match result {
        Ok((outcome, events)) => {
            store(outcome.clone()).await;
            if !events.is_empty() {
                state.events.movements(events);
            }
            let now = state.db.deposit_by_order(&n.order_id).await?;
            Ok(json!({
                "result": outcome,
                "deposit": now.map(|d| deposit_json(state, &d, false)),
            }))
        }
        Err(e) => {
            store(format!("failed: {e}")).await;
            Err(e)
        }
    }
}

async fn apply_notification(
    state: &Core,
    deposit: &DepositRow,
    n: &Notification,
) -> Result<(String, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let scale = scale_of(state, &deposit.pay_currency);
    let paid = n
        .actually_paid
        .as_ref()
        .and_then(|v| nowpayments::amount_minor(v, scale))
        .unwrap_or(0);
    let tx = db.begin_write().await?;
    let Some(d) = db
        .advance_deposit(&tx, &n.order_id, &n.status, n.rank, paid)
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
    let mut outcome = format!("status {}", n.status);
    if n.rank == FINISHED {
        // Paid in full: the amount received, or at least what was asked.
        let amount = d.actually_paid.max(d.pay_amount);
        let flagged = db.flag_of_in(&tx, "deposit", &d.order_id).await?;
        match d.credit_state.as_str() {
            "none" => {
                let Some(user) = db.user_by_id_in(&tx, &d.user_id).await? else {
                    // Paid after its owner was deleted: the money is real, so it waits in
                    // suspense for staff instead of being lost with a failed credit.
                    if db
                        .set_deposit_credit(&tx, &d.id, "none", "suspense", amount, 0, None)
                        .await?
                        .is_none()
                    {
                        return Err(conflict("the deposit changed meanwhile").into());
                    }
                    to_suspense(state, &tx, &mut batch, &d, amount).await?;
                    db.run_batch(&tx, batch).await?;
                    tx.commit().await?;
                    return Ok((
                        "credited to suspense: the owner no longer exists".into(),
                        events,
                    ));
                };
                let usd = deposit_usd(&d, amount);
                let rule = match &flagged {
                    Some(f) if f.status == "open" => Some((f.rule.clone(), None)),
                    // Staff already reviewed this deposit.
                    Some(_) => None,
                    None => aml_rule(state, &tx, &user, usd)
                        .await?
                        .map(|(r, v)| (r.to_string(), Some(v))),
                };
                let (ev, held) = credit(state, &tx, &mut batch, &d, amount, rule.is_some()).await?;
                if let Some((rule, Some(details))) = &rule {
                    queue_flag(
                        &mut batch,
                        &d.user_id,
                        "deposit",
                        &d.order_id,
                        rule,
                        details,
                    );
                }
                events.extend(ev);
                outcome = if held {
                    "credited to review hold".into()
                } else {
                    "credited".into()
                };
            }
            "credited" if amount > d.credited => {
                // Part was credited when staff released a partial payment; the rest now, under
                // the same rules as any money coming in.
                let rest = amount - d.credited;
                let Some(user) = db.user_by_id_in(&tx, &d.user_id).await? else {
                    if db
                        .set_deposit_credit(&tx, &d.id, "credited", "credited", rest, 0, None)
                        .await?
                        .is_none()
                    {
                        return Err(conflict("the deposit changed meanwhile").into());
                    }
                    to_suspense(state, &tx, &mut batch, &d, rest).await?;
                    db.run_batch(&tx, batch).await?;
                    tx.commit().await?;
                    return Ok((
                        "remainder credited to suspense: the owner no longer exists".into(),
                        events,
                    ));
                };
                let rule = aml_rule(state, &tx, &user, deposit_usd(&d, rest)).await?;
                let (ev, held) = credit(state, &tx, &mut batch, &d, rest, rule.is_some()).await?;
                if let Some((rule, details)) = &rule {
                    Db::queue_reopen_flag(
                        &mut batch,
                        &d.user_id,
                        "deposit",
                        &d.order_id,
                        rule,
                        &details.to_string(),
                    );
                }
                events.extend(ev);
                outcome = if held {
                    "remainder credited to review hold".into()
                } else {
                    "credited the remainder".into()
                };
            }
            _ => outcome = format!("status finished; credit already {}", d.credit_state),
        }
    } else if matches!(n.status.as_str(), "refunded" | "failed") && d.credited > 0 {
        // Money already credited was given back by the provider: staff must know.
        Db::queue_reopen_flag(
            &mut batch,
            &d.user_id,
            "deposit",
            &d.order_id,
            "reversed_after_credit",
            &json!({
                "status": n.status,
                "credited": format_amount(d.credited, scale),
                "currency": d.pay_currency,
            })
            .to_string(),
        );
        outcome = format!(
            "status {}; credited money reported back, review opened",
            n.status
        );
    } else if n.status == "partially_paid" && d.credit_state == "none" {
        queue_flag(
            &mut batch,
            &d.user_id,
            "deposit",
            &d.order_id,
            "partial_payment",
            &json!({
                "pay_amount": format_amount(d.pay_amount, scale),
                "actually_paid": format_amount(d.actually_paid, scale),
                "currency": d.pay_currency,
            }),
        );
        outcome = "partial payment held for review".into();
    }
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(order_id = %d.order_id, status = %n.status, outcome, "payment notification applied");
    Ok((outcome, events))
}

/// Moves `amount` of a deposit whose owner is gone from clearing to `suspense::<asset>` and
/// opens a suspense item for staff to resolve.
async fn to_suspense(
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
        "deposit_suspense",
        &d.pay_currency,
        Some(&d.order_id),
        None,
        vec![
            leg(PLATFORM, "deposits_clearing", -amount),
            leg(PLATFORM, "suspense", amount),
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
    crate::audit::Event::new(None, "deposit.suspense")
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

/// A suspense item as the staff API and page show it.
pub fn suspense_json(state: &Core, s: &etx_db::suspense::SuspenseRow) -> Value {
    json!({
        "id": s.id,
        "status": s.status,
        "currency": s.asset,
        "amount": format_amount(s.amount, scale_of(state, &s.asset)),
        "source_type": s.source_type,
        "source_id": s.source_id,
        "owner_id": s.owner_id,
        "resolved_by": s.resolved_by,
        "credited_to": s.credited_to,
        "note": s.note,
        "created_at": rfc3339(s.created_at),
        "resolved_at": s.resolved_at.map(rfc3339),
    })
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
) -> Result<Value, CoreError> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| CoreError::NotFound)?
        .to_string();
    let reason = reason_text(reason, "reason")?;
    let (row, events) =
        with_retries(|| resolve_suspense_attempt(state, staff, &id, &action, &reason)).await?;
    if !events.is_empty() {
        state.events.movements(events);
    }
    Ok(suspense_json(state, &row))
}

async fn resolve_suspense_attempt(
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
            Some(user)
        }
    };
    let to = if target.is_some() {
        "credited"
    } else {
        "refunded"
    };
    let Some(row) = db
        .resolve_suspense(
            &tx,
            id,
            to,
            &staff.id,
            target.as_ref().map(|u| u.id.as_str()),
            reason,
        )
        .await?
    else {
        return Err(conflict("this item was resolved meanwhile").into());
    };
    let mut batch = Batch::default();
    let scale = scale_of(state, &row.asset);
    let mut events = Vec::new();
    match &target {
        None => {
            post(
                db,
                &tx,
                &mut batch,
                "suspense_refund",
                &row.asset,
                Some(reason),
                Some(&staff.id),
                vec![
                    leg(PLATFORM, "suspense", -row.amount),
                    leg(PLATFORM, "withdrawals_clearing", row.amount),
                ],
            )
            .await?;
        }
        Some(user) => {
            let balances = post(
                db,
                &tx,
                &mut batch,
                "suspense_credit",
                &row.asset,
                Some(reason),
                Some(&staff.id),
                vec![
                    leg(PLATFORM, "suspense", -row.amount),
                    leg(&user.id, "wallet", row.amount),
                ],
            )
            .await?;
            let balance = balance_of(&balances, &account_id(&user.id, "wallet", &row.asset))?;
            let txn_id = uuid::Uuid::now_v7().to_string();
            Db::insert_transactions(
                &mut batch,
                &mut [NewTransaction {
                    id: &txn_id,
                    user_id: &user.id,
                    kind: "deposit",
                    direction: "in",
                    asset: &row.asset,
                    amount: row.amount,
                    fee: 0,
                    status: "completed",
                    counterparty_id: None,
                    note: Some(&row.source_id),
                    entry_id: None,
                }],
            );
            let n = notice(
                "deposit_credited",
                format!(
                    "{} {} was credited to your wallet",
                    format_amount(row.amount, scale),
                    row.asset
                ),
                reason.to_string(),
                json!({"transaction_id": txn_id}),
            );
            n.queue(&mut batch, &user.id);
            let view = txn_view(
                state,
                &txn_id,
                "deposit",
                "in",
                &row.asset,
                row.amount,
                0,
                "completed",
                Some(&row.source_id),
            );
            events.push(movement_event(
                state,
                &user.id,
                &row.asset,
                balance,
                view,
                Some(n),
            ));
        }
    }
    let audit_action = if target.is_some() {
        "suspense.credit"
    } else {
        "suspense.refund"
    };
    crate::audit::Event::new(Some(&staff.id), audit_action)
        .target("suspense", &row.id)
        .details(json!({
            "source_type": row.source_type,
            "source_id": row.source_id,
            "owner_id": row.owner_id,
            "credited_to": row.credited_to,
            "currency": row.asset,
            "amount": format_amount(row.amount, scale),
            "reason": reason,
        }))
        .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(suspense = %row.id, actor = %staff.id, to, "suspense item resolved");
    Ok((row, events))
}

/// The USD value of `amount` of a deposit, in proportion to what was asked for it.
fn deposit_usd(d: &DepositRow, amount: i64) -> i64 {
    if d.pay_amount <= 0 {
        return d.price_amount;
    }
    i64::try_from(i128::from(d.price_amount) * i128::from(amount) / i128::from(d.pay_amount))
        .unwrap_or(i64::MAX)
}

/// Moves `amount` of a deposit from clearing to the owner's wallet, or to their held account
/// when `hold`. Returns the events to announce and whether it was held.
async fn credit(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    d: &DepositRow,
    amount: i64,
    hold: bool,
) -> Result<(Vec<MovementEvent>, bool), Failure> {
    let db = &state.db;
    let to_kind = if hold { "held" } else { "wallet" };
    let txn_id = uuid::Uuid::now_v7().to_string();
    let to_state = if hold { "held" } else { "credited" };
    if db
        .set_deposit_credit(
            tx,
            &d.id,
            &d.credit_state,
            to_state,
            amount,
            if hold { amount } else { 0 },
            Some(&txn_id),
        )
        .await?
        .is_none()
    {
        return Err(CoreError::Conflict {
            message: "the deposit changed meanwhile".into(),
            fields: Default::default(),
        }
        .into());
    }
    let balances = post(
        db,
        tx,
        batch,
        "deposit",
        &d.pay_currency,
        Some(&d.order_id),
        None,
        vec![
            leg(PLATFORM, "deposits_clearing", -amount),
            leg(&d.user_id, to_kind, amount),
        ],
    )
    .await?;
    let status = if hold { "held" } else { "completed" };
    Db::insert_transactions(
        batch,
        &mut [NewTransaction {
            id: &txn_id,
            user_id: &d.user_id,
            kind: "deposit",
            direction: "in",
            asset: &d.pay_currency,
            amount,
            fee: 0,
            status,
            counterparty_id: None,
            note: Some(&d.order_id),
            entry_id: None,
        }],
    );
    let scale = scale_of(state, &d.pay_currency);
    crate::audit::Event::new(None, "deposit.credit")
        .target("deposit", &d.order_id)
        .details(json!({
            "user_id": d.user_id,
            "currency": d.pay_currency,
            "amount": format_amount(amount, scale),
            "held_for_review": hold,
        }))
        .queue(batch);
    let wallet = account_id(&d.user_id, "wallet", &d.pay_currency);
    let balance = balances
        .iter()
        .find(|(id, _)| *id == wallet)
        .map(|(_, b)| *b);
    let n = notice(
        "deposit_credited",
        if hold {
            format!(
                "Your deposit of {} {} arrived and is under review",
                format_amount(amount, scale),
                d.pay_currency
            )
        } else {
            format!(
                "Your deposit of {} {} arrived",
                format_amount(amount, scale),
                d.pay_currency
            )
        },
        format!("Order {}", d.order_id),
        json!({"order_id": d.order_id, "transaction_id": txn_id}),
    );
    n.queue(batch, &d.user_id);
    let view = txn_view(
        state,
        &txn_id,
        "deposit",
        "in",
        &d.pay_currency,
        amount,
        0,
        status,
        Some(&d.order_id),
    );
    let balance = match balance {
        Some(b) => b,
        None => {
            state
                .db
                .wallet_balance_in(tx, &d.user_id, &d.pay_currency)
                .await?
        }
    };
    Ok((
        vec![movement_event(
            state,
            &d.user_id,
            &d.pay_currency,
            balance,
            view,
            Some(n),
        )],
        hold,
    ))
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
) -> Result<Value, CoreError> {
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
    if status_rank(&req.status).is_none() {
        return Err(CoreError::field("status", "is not a known payment status"));
    }
    let scale = scale_of(state, &d.pay_currency);
    let paid = match &req.actually_paid {
        Some(a) => parse_amount(a.0.trim(), scale)
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| CoreError::field("actually_paid", "must be a decimal amount"))?,
        None if req.status == "finished" => d.pay_amount,
        None if req.status == "partially_paid" => d.pay_amount / 2,
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

// ---------------------------------------------------------------------------------------------
// Withdrawals

pub struct WithdrawalQuote<'a> {
    pub asset: &'a Asset,
    pub network: Network,
    pub amount: i64,
    pub fee: i64,
    pub total: i64,
    pub usd_cents: i64,
    pub approvals_required: i32,
}

/// Prices a withdrawal: fee, total and USD value at the current price, within the limits.
pub fn quote<'a>(
    state: &'a Core,
    currency: &str,
    amount: &str,
) -> Result<WithdrawalQuote<'a>, CoreError> {
    let rules = &state.rules;
    let asset = asset_of(state, currency)?;
    let Some((network, min_fee)) = rules.networks.get(&asset.code).copied() else {
        return Err(CoreError::field(
            "currency",
            &format!("{} cannot be withdrawn to an address", asset.code),
        ));
    };
    let amount = parse_positive_amount(amount.trim(), asset.scale).map_err(amount_field)?;
    let pct = i128::from(amount) * i128::from(rules.fee_basis_points);
    let pct =
        i64::try_from((pct + 9_999) / 10_000).map_err(|_| amount_field(AmountError::Overflow))?;
    let fee = pct.max(min_fee);
    let total = amount
        .checked_add(fee)
        .ok_or_else(|| amount_field(AmountError::Overflow))?;
    let usd = usd_value(state, asset, amount).ok_or_else(|| amount_field(AmountError::Overflow))?;
    if usd < rules.withdraw_min_cents || usd > rules.withdraw_max_cents {
        return Err(CoreError::LimitExceeded(format!(
            "a withdrawal must be worth between ${} and ${} (this one: ${})",
            format_amount(rules.withdraw_min_cents, 2),
            format_amount(rules.withdraw_max_cents, 2),
            format_amount(usd, 2),
        )));
    }
    Ok(WithdrawalQuote {
        asset,
        network,
        amount,
        fee,
        total,
        usd_cents: usd,
        approvals_required: if usd >= rules.two_approvals_cents {
            2
        } else {
            1
        },
    })
}

pub fn quote_json(q: &WithdrawalQuote<'_>) -> Value {
    let s = q.asset.scale;
    json!({
        "currency": q.asset.code,
        "amount": format_amount(q.amount, s),
        "fee": format_amount(q.fee, s),
        "total": format_amount(q.total, s),
        "usd_value": format_amount(q.usd_cents, 2),
        "approvals_required": q.approvals_required,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    pub amount: AmountText,
    pub currency: String,
    pub address: String,
}

pub fn withdrawal_json(
    state: &Core,
    w: &WithdrawalRow,
    approvals: &[etx_db::payments::ApprovalRow],
) -> Value {
    let s = scale_of(state, &w.asset);
    json!({
        "id": w.id,
        "user_id": w.user_id,
        "currency": w.asset,
        "amount": format_amount(w.amount, s),
        "fee": format_amount(w.fee, s),
        "total": format_amount(w.amount + w.fee, s),
        "usd_value": format_amount(w.usd_cents, 2),
        "address": w.address,
        "status": w.status,
        "approvals_required": w.approvals_required,
        "approvals": approvals.iter().map(|a| json!({
            "staff_id": a.staff_id,
            "username": a.username,
            "note": a.note,
            "at": rfc3339(a.created_at),
        })).collect::<Vec<_>>(),
        "tx_hash": w.tx_hash,
        "reason": w.reason,
        "transaction_id": w.transaction_id,
        "created_at": rfc3339(w.created_at),
        "updated_at": rfc3339(w.updated_at),
    })
}

pub async fn withdraw(
    state: &Core,
    user: &UserRow,
    key: &str,
    body: Value,
) -> Result<Outcome, CoreError> {
    let (m, req) = Movement::start::<WithdrawRequest>(&user.id, key, "withdraw", body)?;
    m.run(state, || withdraw_attempt(state, user, &m, &req))
        .await
}

async fn withdraw_attempt(
    state: &Core,
    user: &UserRow,
    m: &Movement<'_>,
    req: &WithdrawRequest,
) -> Result<Outcome, Failure> {
    let q = quote(state, &req.currency, &req.amount.0)?;
    let address = req.address.trim();
    if !q.network.valid(address, state.config.is_dev()) {
        return Err(
            CoreError::field("address", &format!("is not {}", q.network.describe())).into(),
        );
    }
    let db = &state.db;
    let tx = db.begin_write().await?;
    let code = &q.asset.code;
    let mut batch = Batch::default();
    let balances = post(
        db,
        &tx,
        &mut batch,
        "withdrawal_hold",
        code,
        Some(address),
        Some(&user.id),
        vec![
            leg(&user.id, "wallet", -q.total),
            leg(PLATFORM, "withdrawals_hold", q.total),
        ],
    )
    .await?;
    let balance = balance_of(&balances, &account_id(&user.id, "wallet", code))?;
    let day = chrono::Utc::now().timestamp().div_euclid(86_400);
    if !db
        .add_withdrawal_usage(
            &tx,
            &user.id,
            day,
            q.usd_cents,
            state.rules.withdraw_daily_cap_cents,
        )
        .await?
    {
        return Err(CoreError::LimitExceeded(format!(
            "this withdrawal would pass your daily limit of ${}",
            format_amount(state.rules.withdraw_daily_cap_cents, 2)
        ))
        .into());
    }
    let rule = aml_rule(state, &tx, user, q.usd_cents).await?;
    let status = if rule.is_some() { "held" } else { "pending" };
    let now = now_micros();
    let w = WithdrawalRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        asset: code.clone(),
        amount: q.amount,
        fee: q.fee,
        usd_cents: q.usd_cents,
        address: address.to_string(),
        status: status.into(),
        approvals_required: q.approvals_required,
        approvals: 0,
        tx_hash: None,
        reason: None,
        transaction_id: uuid::Uuid::now_v7().to_string(),
        day,
        created_at: now,
        updated_at: now,
    };
    Db::insert_transactions(
        &mut batch,
        &mut [NewTransaction {
            id: &w.transaction_id,
            user_id: &user.id,
            kind: "withdrawal",
            direction: "out",
            asset: code,
            amount: q.amount,
            fee: q.fee,
            status,
            counterparty_id: None,
            note: Some(address),
            entry_id: None,
        }],
    );
    Db::queue_withdrawal(&mut batch, &w);
    if let Some((rule, details)) = &rule {
        queue_flag(&mut batch, &user.id, "withdrawal", &w.id, rule, details);
    }
    crate::audit::Event::new(Some(&user.id), "withdrawal.request")
        .target("withdrawal", &w.id)
        .details(json!({
            "currency": code,
            "amount": format_amount(q.amount, q.asset.scale),
            "fee": format_amount(q.fee, q.asset.scale),
            "address": address,
            "status": status,
            "aml_rule": rule.as_ref().map(|r| r.0),
        }))
        .queue(&mut batch);
    let body = json!({
        "withdrawal": withdrawal_json(state, &w, &[]),
        "balance": format_amount(balance, q.asset.scale),
    })
    .to_string();
    let out = m
        .commit(state, tx, batch, crate::wallet::Taken::Completed, body)
        .await?;
    tracing::info!(withdrawal = %w.id, user = %user.id, asset = %code, status, "withdrawal requested");
    let view = txn_view(
        state,
        &w.transaction_id,
        "withdrawal",
        "out",
        code,
        q.amount,
        q.fee,
        status,
        Some(address),
    );
    state.events.movements(vec![movement_event(
        state, &user.id, code, balance, view, None,
    )]);
    Ok(out)
}

/// Returns a withdrawal's held money to the owner's wallet (a reversing entry) after a
/// rejection or cancellation, and gives back its share of the daily cap.
async fn refund(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    w: &WithdrawalRow,
    actor: &str,
    why: &str,
) -> Result<MovementEvent, Failure> {
    let db = &state.db;
    let total = w.amount + w.fee;
    let balances = post(
        db,
        tx,
        batch,
        "withdrawal_refund",
        &w.asset,
        Some(why),
        Some(actor),
        vec![
            leg(PLATFORM, "withdrawals_hold", -total),
            leg(&w.user_id, "wallet", total),
        ],
    )
    .await?;
    let balance = balance_of(&balances, &account_id(&w.user_id, "wallet", &w.asset))?;
    let refund_id = uuid::Uuid::now_v7().to_string();
    Db::insert_transactions(
        batch,
        &mut [NewTransaction {
            id: &refund_id,
            user_id: &w.user_id,
            kind: "refund",
            direction: "in",
            asset: &w.asset,
            amount: total,
            fee: 0,
            status: "completed",
            counterparty_id: None,
            note: Some(why),
            entry_id: None,
        }],
    );
    Db::queue_transaction_status(batch, &w.transaction_id, &w.status);
    Db::queue_release_usage(batch, Usage::Withdrawals, &w.user_id, w.day, w.usd_cents);
    let view = txn_view(
        state,
        &refund_id,
        "refund",
        "in",
        &w.asset,
        total,
        0,
        "completed",
        Some(why),
    );
    Ok(movement_event(
        state, &w.user_id, &w.asset, balance, view, None,
    ))
}

/// The owner cancels a withdrawal no one has approved yet; the money comes back.
pub async fn cancel_withdrawal(state: &Core, user: &UserRow, id: &str) -> Result<Value, CoreError> {
    let w = state
        .db
        .withdrawal(id)
        .await?
        .filter(|w| w.user_id == user.id)
        .ok_or(CoreError::NotFound)?;
    let (w, event) = with_retries(|| async {
        let tx = state.db.begin_write().await?;
        let Some(w) = state
            .db
            .transition_withdrawal(
                &tx,
                &w.id,
                &["pending"],
                "cancelled",
                Some("cancelled by the owner"),
                None,
            )
            .await?
        else {
            return Err(conflict("only a pending withdrawal can be cancelled").into());
        };
        let mut batch = Batch::default();
        let event = refund(state, &tx, &mut batch, &w, &user.id, "Withdrawal cancelled").await?;
        crate::audit::Event::new(Some(&user.id), "withdrawal.cancel")
            .target("withdrawal", &w.id)
            .details(json!({"before": "pending", "after": "cancelled"}))
            .queue(&mut batch);
        state.db.run_batch(&tx, batch).await?;
        tx.commit().await?;
        Ok((w, event))
    })
    .await?;
    state.events.movements(vec![event]);
    Ok(withdrawal_json(
        state,
        &w,
        &state.db.approvals_of(&w.id).await?,
    ))
}

pub enum StaffAction {
    Approve { note: Option<String> },
    Reject { reason: String },
    Complete { tx_hash: String },
}

fn reason_text(r: &str, field: &str) -> Result<String, CoreError> {
    let r = r.trim();
    if r.chars().count() < 3 || r.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(CoreError::field(
            field,
            "must be 3 to 500 printable characters",
        ));
    }
    Ok(r.to_string())
}

/// A staff decision on a withdrawal: approve (two distinct staff, never the requester, at or
/// over the two-approval threshold), reject with a reason (refund), or, for admins, complete
/// with the transaction hash of the payout.
pub async fn staff_withdrawal(
    state: &Core,
    staff: &Auth,
    id: &str,
    action: StaffAction,
) -> Result<Value, CoreError> {
    staff.require_staff()?;
    let before = state.db.withdrawal(id).await?.ok_or(CoreError::NotFound)?;
    let actor = staff.user.id.as_str();
    let action = match action {
        StaffAction::Approve { note } => {
            if before.user_id == actor {
                return Err(CoreError::Forbidden(
                    "you cannot approve your own withdrawal".into(),
                ));
            }
            let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
            if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
                return Err(CoreError::field("note", "at most 500 characters"));
            }
            StaffAction::Approve { note }
        }
        StaffAction::Reject { reason } => StaffAction::Reject {
            reason: reason_text(&reason, "reason")?,
        },
        StaffAction::Complete { tx_hash } => {
            staff.require_admin()?;
            let h = tx_hash.trim();
            if h.is_empty() || h.len() > 128 || !h.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(CoreError::field(
                    "tx_hash",
                    "must be 1 to 128 letters and digits",
                ));
            }
            StaffAction::Complete {
                tx_hash: h.to_string(),
            }
        }
    };
    let admin = staff.role.is_admin();
    let (w, events) = with_retries(|| staff_attempt(state, actor, admin, &before, &action)).await?;
    if !events.is_empty() {
        state.events.movements(events);
    }
    Ok(withdrawal_json(
        state,
        &w,
        &state.db.approvals_of(&w.id).await?,
    ))
}

async fn staff_attempt(
    state: &Core,
    actor: &str,
    admin: bool,
    before: &WithdrawalRow,
    action: &StaffAction,
) -> Result<(WithdrawalRow, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let mut batch = Batch::default();
    let mut events = Vec::new();
    let (w, verb, details) = match action {
        StaffAction::Approve { note } => {
            if !db
                .add_approval(&tx, &before.id, actor, note.as_deref())
                .await?
            {
                return Err(conflict("you have already approved this withdrawal").into());
            }
            let Some(w) = db.count_approval(&tx, &before.id).await? else {
                return Err(conflict(&format!(
                    "this withdrawal is {}, not awaiting approval",
                    before.status
                ))
                .into());
            };
            (w, "withdrawal.approve", json!({"note": note}))
        }
        StaffAction::Reject { reason } => {
            let Some(w) = db
                .transition_withdrawal(
                    &tx,
                    &before.id,
                    // Once approved, an admin may be sending the payout: only admins can
                    // still stop it.
                    if admin {
                        &["pending", "pending_approval", "processing"]
                    } else {
                        &["pending", "pending_approval"]
                    },
                    "rejected",
                    Some(reason),
                    None,
                )
                .await?
            else {
                return Err(conflict(&format!(
                    "this withdrawal is {} and can no longer be rejected",
                    before.status
                ))
                .into());
            };
            let mut e = refund(
                state,
                &tx,
                &mut batch,
                &w,
                actor,
                &format!("Withdrawal rejected: {reason}"),
            )
            .await?;
            let n = notice(
                "withdrawal_rejected",
                "Your withdrawal was rejected and refunded".into(),
                reason.clone(),
                json!({"withdrawal_id": w.id}),
            );
            n.queue(&mut batch, &w.user_id);
            e.notice = Some(n);
            events.push(e);
            (w, "withdrawal.reject", json!({"reason": reason}))
        }
        StaffAction::Complete { tx_hash } => {
            let Some(w) = db
                .transition_withdrawal(
                    &tx,
                    &before.id,
                    &["processing"],
                    "completed",
                    None,
                    Some(tx_hash),
                )
                .await?
            else {
                return Err(conflict(&format!(
                    "this withdrawal is {}; only an approved (processing) one can be completed",
                    before.status
                ))
                .into());
            };
            let mut legs = vec![
                leg(PLATFORM, "withdrawals_hold", -(w.amount + w.fee)),
                leg(PLATFORM, "withdrawals_clearing", w.amount),
            ];
            if w.fee > 0 {
                legs.push(leg(PLATFORM, "fees", w.fee));
            }
            post(
                db,
                &tx,
                &mut batch,
                "withdrawal",
                &w.asset,
                Some(tx_hash),
                Some(actor),
                legs,
            )
            .await?;
            let n = notice(
                "withdrawal_completed",
                format!(
                    "Your withdrawal of {} {} was sent",
                    format_amount(w.amount, scale_of(state, &w.asset)),
                    w.asset
                ),
                format!("Transaction {tx_hash}"),
                json!({"withdrawal_id": w.id, "tx_hash": tx_hash}),
            );
            n.queue(&mut batch, &w.user_id);
            let view = txn_view(
                state,
                &w.transaction_id,
                "withdrawal",
                "out",
                &w.asset,
                w.amount,
                w.fee,
                "completed",
                Some(&w.address),
            );
            let balance = state
                .db
                .wallet_balance_in(&tx, &w.user_id, &w.asset)
                .await?;
            events.push(movement_event(
                state,
                &w.user_id,
                &w.asset,
                balance,
                view,
                Some(n),
            ));
            (w, "withdrawal.complete", json!({"tx_hash": tx_hash}))
        }
    };
    // A refund already queued the rejected status; one statement per row in a batch.
    if !matches!(action, StaffAction::Reject { .. }) {
        Db::queue_transaction_status(&mut batch, &w.transaction_id, &w.status);
    }
    let mut details = details;
    details["before"] = json!({"status": before.status, "approvals": before.approvals});
    details["after"] = json!({"status": w.status, "approvals": w.approvals});
    crate::audit::Event::new(Some(actor), verb)
        .target("withdrawal", &w.id)
        .details(details)
        .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(withdrawal = %w.id, actor, action = verb, status = %w.status, "withdrawal decided");
    Ok((w, events))
}

// ---------------------------------------------------------------------------------------------
// AML review

pub fn flag_json(f: &FlagRow) -> Value {
    json!({
        "id": f.id,
        "user": {"id": f.user_id, "username": f.username},
        "subject_type": f.subject_type,
        "subject_id": f.subject_id,
        "rule": f.rule,
        "details": serde_json::from_str::<Value>(&f.details).unwrap_or(Value::Null),
        "status": f.status,
        "decided_by": f.decided_by,
        "decision_reason": f.decision_reason,
        "decided_at": f.decided_at.map(rfc3339),
        "created_at": rfc3339(f.created_at),
    })
}

/// Staff release (the operation goes on) or reject (the money goes back) a flagged operation.
pub async fn decide_flag(
    state: &Core,
    staff: &Auth,
    id: &str,
    release: bool,
    reason: &str,
) -> Result<Value, CoreError> {
    staff.require_staff()?;
    let reason = reason_text(reason, "reason")?;
    let flag = state.db.flag(id).await?.ok_or(CoreError::NotFound)?;
    if flag.user_id == staff.user.id {
        return Err(CoreError::Forbidden(
            "you cannot decide a review of your own operation".into(),
        ));
    }
    let events =
        with_retries(|| flag_attempt(state, &staff.user.id, &flag, release, &reason)).await?;
    if !events.is_empty() {
        state.events.movements(events);
    }
    let f = state.db.flag(id).await?.ok_or(CoreError::NotFound)?;
    Ok(flag_json(&f))
}

async fn flag_attempt(
    state: &Core,
    actor: &str,
    flag: &FlagRow,
    release: bool,
    reason: &str,
) -> Result<Vec<MovementEvent>, Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let decision = if release { "released" } else { "rejected" };
    if flag.subject_type == "deposit" {
        // Before the flag: a notification for this deposit locks the deposit, then reads
        // the flag, so both take the same order.
        db.lock_deposit(&tx, &flag.subject_id).await?;
    }
    if db
        .decide_flag(&tx, &flag.id, decision, actor, reason)
        .await?
        .is_none()
    {
        return Err(conflict(&format!("this review is already {}", flag.status)).into());
    }
    let mut batch = Batch::default();
    let mut events = Vec::new();
    let mut before_after = json!({});
    match flag.subject_type.as_str() {
        "withdrawal" => {
            let (to, why) = if release {
                ("pending", None)
            } else {
                ("rejected", Some(reason))
            };
            let Some(w) = db
                .transition_withdrawal(&tx, &flag.subject_id, &["held"], to, why, None)
                .await?
            else {
                return Err(conflict("the withdrawal is no longer held").into());
            };
            if release {
                Db::queue_transaction_status(&mut batch, &w.transaction_id, "pending");
            } else {
                events.push(
                    refund(
                        state,
                        &tx,
                        &mut batch,
                        &w,
                        actor,
                        &format!("Withdrawal rejected in review: {reason}"),
                    )
                    .await?,
                );
            }
            before_after = json!({"before": "held", "after": to});
        }
        "deposit" => {
            let d = db
                .deposit_by_order_in(&tx, &flag.subject_id)
                .await?
                .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("flag on a missing deposit")))?;
            match (d.credit_state.as_str(), release) {
                ("held", true) => {
                    if db
                        .set_deposit_credit(&tx, &d.id, "held", "credited", 0, -d.held, None)
                        .await?
                        .is_none()
                    {
                        return Err(conflict("the deposit changed meanwhile").into());
                    }
                    let balances = post(
                        db,
                        &tx,
                        &mut batch,
                        "deposit_release",
                        &d.pay_currency,
                        Some(&d.order_id),
                        Some(actor),
                        vec![
                            leg(&d.user_id, "held", -d.held),
                            leg(&d.user_id, "wallet", d.held),
                        ],
                    )
                    .await?;
                    if let Some(t) = &d.transaction_id {
                        Db::queue_transaction_status(&mut batch, t, "completed");
                        let view = txn_view(
                            state,
                            t,
                            "deposit",
                            "in",
                            &d.pay_currency,
                            d.held,
                            0,
                            "completed",
                            Some(&d.order_id),
                        );
                        let b = balance_of(
                            &balances,
                            &account_id(&d.user_id, "wallet", &d.pay_currency),
                        )?;
                        events.push(movement_event(
                            state,
                            &d.user_id,
                            &d.pay_currency,
                            b,
                            view,
                            None,
                        ));
                    }
                }
                ("none", true) if d.actually_paid > 0 => {
                    // The provider gave the partial payment back (or never settled it):
                    // crediting it would hand out money the platform does not hold.
                    if matches!(d.status.as_str(), "refunded" | "failed") {
                        return Err(conflict(&format!(
                            "the provider reported this payment {}; reject the review instead",
                            d.status
                        ))
                        .into());
                    }
                    let (ev, _) =
                        credit(state, &tx, &mut batch, &d, d.actually_paid, false).await?;
                    events.extend(ev);
                }
                ("held", false) => {
                    if db
                        .set_deposit_credit(&tx, &d.id, "held", "rejected", -d.held, -d.held, None)
                        .await?
                        .is_none()
                    {
                        return Err(conflict("the deposit changed meanwhile").into());
                    }
                    post(
                        db,
                        &tx,
                        &mut batch,
                        "deposit_return",
                        &d.pay_currency,
                        Some(reason),
                        Some(actor),
                        vec![
                            leg(&d.user_id, "held", -d.held),
                            leg(PLATFORM, "deposits_clearing", d.held),
                        ],
                    )
                    .await?;
                    if let Some(t) = &d.transaction_id {
                        Db::queue_transaction_status(&mut batch, t, "rejected");
                    }
                }
                ("none", false) => {
                    let changed = db
                        .set_deposit_credit(&tx, &d.id, "none", "rejected", 0, 0, None)
                        .await?;
                    if changed.is_none() {
                        return Err(conflict("the deposit changed meanwhile").into());
                    }
                }
                _ => {}
            }
            before_after = json!({"before": d.credit_state, "after": if release { "credited" } else { "rejected" }});
        }
        "transfer" => {
            let to = if release { "released" } else { "rejected" };
            let Some(t) = db.settle_held_transfer(&tx, &flag.subject_id, to).await? else {
                return Err(conflict("the transfer is no longer held").into());
            };
            if release && t.recipient_id == actor {
                return Err(CoreError::Forbidden(
                    "you cannot release a transfer to yourself".into(),
                )
                .into());
            }
            events
                .extend(settle_transfer(state, &tx, &mut batch, &t, actor, release, reason).await?);
            before_after = json!({"before": "held", "after": to});
        }
        other => {
            return Err(
                CoreError::Internal(anyhow::anyhow!("flag on unknown subject {other}")).into(),
            );
        }
    }
    let mut details = json!({"reason": reason, "rule": flag.rule, "subject_type": flag.subject_type, "subject_id": flag.subject_id});
    details["before"] = before_after["before"].clone();
    details["after"] = before_after["after"].clone();
    crate::audit::Event::new(
        Some(actor),
        if release { "aml.release" } else { "aml.reject" },
    )
    .target("aml_flag", &flag.id)
    .details(details)
    .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(flag = %flag.id, actor, decision, "AML review decided");
    Ok(events)
}

/// Holds a P2P transfer an AML rule flagged: the sender's money goes to their held account,
/// and only the sender sees it, as `held`, until staff decide.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn hold_transfer(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    sender: &UserRow,
    recipient: &UserRow,
    asset: &Asset,
    amount: i64,
    note: Option<&str>,
    rule: (&str, Value),
    // The USD value counted against the sender's cap, and the day it counted on.
    (usd_cents, day): (i64, i64),
) -> Result<(String, i64), Failure> {
    let balances = post(
        &state.db,
        tx,
        batch,
        "p2p_hold",
        &asset.code,
        note,
        Some(&sender.id),
        vec![
            leg(&sender.id, "wallet", -amount),
            leg(&sender.id, "held", amount),
        ],
    )
    .await?;
    let balance = balance_of(&balances, &account_id(&sender.id, "wallet", &asset.code))?;
    let t = HeldTransferRow {
        id: uuid::Uuid::now_v7().to_string(),
        sender_id: sender.id.clone(),
        recipient_id: recipient.id.clone(),
        asset: asset.code.clone(),
        amount,
        note: note.map(str::to_string),
        transaction_id: uuid::Uuid::now_v7().to_string(),
        status: "held".into(),
        usd_cents,
        day,
        created_at: now_micros(),
    };
    Db::insert_transactions(
        batch,
        &mut [NewTransaction {
            id: &t.transaction_id,
            user_id: &sender.id,
            kind: "p2p",
            direction: "out",
            asset: &asset.code,
            amount,
            fee: 0,
            status: "held",
            counterparty_id: Some(&recipient.id),
            note,
            entry_id: None,
        }],
    );
    Db::queue_held_transfer(batch, &t);
    queue_flag(batch, &sender.id, "transfer", &t.id, rule.0, &rule.1);
    Ok((t.transaction_id, balance))
}

async fn settle_transfer(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    t: &HeldTransferRow,
    actor: &str,
    release: bool,
    reason: &str,
) -> Result<Vec<MovementEvent>, Failure> {
    let db = &state.db;
    let to_owner = if release {
        &t.recipient_id
    } else {
        &t.sender_id
    };
    let balances = post(
        db,
        tx,
        batch,
        if release { "p2p" } else { "p2p_return" },
        &t.asset,
        t.note.as_deref(),
        Some(actor),
        vec![
            leg(&t.sender_id, "held", -t.amount),
            leg(to_owner, "wallet", t.amount),
        ],
    )
    .await?;
    let balance = balance_of(&balances, &account_id(to_owner, "wallet", &t.asset))?;
    let scale = scale_of(state, &t.asset);
    let mut events = Vec::new();
    if release {
        Db::queue_transaction_status(batch, &t.transaction_id, "completed");
        let in_id = uuid::Uuid::now_v7().to_string();
        Db::insert_transactions(
            batch,
            &mut [NewTransaction {
                id: &in_id,
                user_id: &t.recipient_id,
                kind: "p2p",
                direction: "in",
                asset: &t.asset,
                amount: t.amount,
                fee: 0,
                status: "completed",
                counterparty_id: Some(&t.sender_id),
                note: t.note.as_deref(),
                entry_id: None,
            }],
        );
        let sender = db.user_by_id_in(tx, &t.sender_id).await?;
        let from = sender.map(|u| u.username).unwrap_or_default();
        let n = notice(
            "transfer_received",
            format!(
                "You received {} {}",
                format_amount(t.amount, scale),
                t.asset
            ),
            format!("From {from}"),
            json!({"transaction_id": in_id, "from": from}),
        );
        n.queue(batch, &t.recipient_id);
        let mut view = txn_view(
            state,
            &in_id,
            "p2p",
            "in",
            &t.asset,
            t.amount,
            0,
            "completed",
            t.note.as_deref(),
        );
        view["counterparty"] = json!({"id": t.sender_id, "username": from});
        events.push(movement_event(
            state,
            &t.recipient_id,
            &t.asset,
            balance,
            view,
            Some(n),
        ));
    } else {
        Db::queue_transaction_status(batch, &t.transaction_id, "rejected");
        Db::queue_release_usage(batch, Usage::Transfers, &t.sender_id, t.day, t.usd_cents);
        let refund_id = uuid::Uuid::now_v7().to_string();
        let note = format!("Transfer rejected in review: {reason}");
        Db::insert_transactions(
            batch,
            &mut [NewTransaction {
                id: &refund_id,
                user_id: &t.sender_id,
                kind: "refund",
                direction: "in",
                asset: &t.asset,
                amount: t.amount,
                fee: 0,
                status: "completed",
                counterparty_id: None,
                note: Some(&note),
                entry_id: None,
            }],
        );
        let view = txn_view(
            state,
            &refund_id,
            "refund",
            "in",
            &t.asset,
            t.amount,
            0,
            "completed",
            Some(&note),
        );
        events.push(movement_event(
            state,
            &t.sender_id,
            &t.asset,
            balance,
            view,
            None,
        ));
    }
    Ok(events)
}
