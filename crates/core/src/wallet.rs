//! The wallet: P2P transfers (with group commit), admin balance adjustments and balances.

pub mod group;

use crate::Core;
use crate::error::CoreError;
use crate::ledger::{
    AmountText, Asset, Failure, Movement, MovementEvent, Notice, Outcome, Taken, amount_field,
    asset_of, balance_of, conflict, leg, movement_event, post, queue_history, usd_value,
};
use crate::rules::queue_flag;
use crate::time::rfc3339;
use etx_db::ledger::{Leg, NewEntry, NewTransaction, PLATFORM, account_id};
use etx_db::payments::HeldTransferRow;
use etx_db::users::UserRow;
use etx_db::{Batch, DatabaseTransaction, Db, DbErr, now_micros};
use etx_domain::AccountKind;
use etx_domain::{AmountError, format_amount, parse_amount, parse_positive_amount};
use etx_domain::{AuditAction, EntryKind, TxKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct TransferLimits {
    pub min_cents: i64,
    pub max_cents: i64,
    pub daily_cap_cents: i64,
}

impl TransferLimits {
    pub fn from_config(c: &TransferConfig) -> anyhow::Result<Self> {
        let p = |v: &str, name: &str| {
            parse_positive_amount(v, 2)
                .map_err(|_| anyhow::anyhow!("invalid setting transfers.{name}"))
        };
        let l = TransferLimits {
            min_cents: p(&c.min_usd, "min_usd")?,
            max_cents: p(&c.max_usd, "max_usd")?,
            daily_cap_cents: p(&c.daily_cap_usd, "daily_cap_usd")?,
        };
        if l.min_cents > l.max_cents {
            anyhow::bail!("invalid setting transfers.min_usd: above max_usd");
        }
        Ok(l)
    }
}

/// A P2P transfer as its sender is answered; amounts are decimal strings in the asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferView {
    /// The sender's history row of the transfer.
    pub id: String,
    /// The journal entry; absent while the transfer is held for review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    pub sender: TransferParty,
    pub recipient: TransferParty,
    pub amount: String,
    pub currency: String,
    pub note: Option<String>,
    /// `completed`, or `held` for a compliance review.
    pub status: String,
    /// Why the transfer waits; only when it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    pub created_at: String,
}

/// One side of a P2P transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferParty {
    pub id: String,
    pub username: String,
}

impl TransferParty {
    fn of(u: &UserRow) -> Self {
        TransferParty {
            id: u.id.clone(),
            username: u.username.clone(),
        }
    }
}

/// The answer to a P2P transfer: the transfer and the sender's balance after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferCreated {
    pub transfer: TransferView,
    /// The sender's balance in the transfer's currency, after it.
    pub balance: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct P2pRequest {
    pub recipient: String,
    pub amount: AmountText,
    pub currency: String,
    pub note: Option<String>,
}

pub async fn transfer_p2p(
    state: &Core,
    sender: &UserRow,
    key: &str,
    body: &serde_json::value::RawValue,
) -> Result<Outcome, CoreError> {
    let (m, req) = Movement::start(&sender.id, key, "p2p", body)?;
    m.run(state, || p2p_attempt(state, sender, &m, &req)).await
}

/// What a transfer would do, shown for confirmation before it is sent.
#[derive(Debug, Clone, Serialize)]
pub struct TransferPreview {
    pub recipient: TransferParty,
    pub amount: String,
    pub currency: String,
    pub note: Option<String>,
    /// The sender's balance of the asset now and after the transfer.
    pub balance: String,
    pub balance_after: String,
    /// The transfer's value in US cents, as counted against the limits.
    pub usd_cents: i64,
}

/// Checks a transfer as sending it would (recipient, amount, limits, note, funds) without
/// moving anything, and says what it would do.
pub async fn preview_p2p(
    state: &Core,
    sender: &UserRow,
    body: &serde_json::value::RawValue,
) -> Result<TransferPreview, CoreError> {
    let (_, req) = crate::ledger::parse_request::<P2pRequest>(body)?;
    let t = match Transfer::check(state, sender, &req).await {
        Ok(t) => t,
        Err(Failure::Api(e)) => return Err(e),
        Err(Failure::Db(e)) => return Err(e.into()),
        Err(_) => {
            return Err(CoreError::Internal(anyhow::anyhow!(
                "transfer check conflicted"
            )));
        }
    };
    let have = state
        .db
        .wallet_balance_in(state.db.conn(), &sender.id, &t.asset.code)
        .await?;
    let after = have.checked_sub(t.amount).filter(|a| *a >= 0);
    let Some(after) = after else {
        return Err(CoreError::InsufficientFunds);
    };
    Ok(TransferPreview {
        recipient: TransferParty::of(&t.recipient),
        amount: t.shown(t.amount),
        currency: t.asset.code.clone(),
        note: t.note.map(str::to_string),
        balance: t.shown(have),
        balance_after: t.shown(after),
        usd_cents: t.usd,
    })
}

/// A P2P transfer that passed its checks: known asset, positive amount within the limits, a
/// printable note, an active recipient other than the sender.
pub(crate) struct Transfer<'a> {
    sender: &'a UserRow,
    recipient: UserRow,
    asset: &'a Asset,
    amount: i64,
    note: Option<&'a str>,
    /// The USD value, in cents, counted against the limits and the daily cap.
    usd: i64,
}

impl<'a> Transfer<'a> {
    async fn check(
        state: &'a Core,
        sender: &'a UserRow,
        req: &'a P2pRequest,
    ) -> Result<Self, Failure> {
        let asset = asset_of(state, &req.currency)?;
        let amount =
            parse_positive_amount(req.amount.0.trim(), asset.scale).map_err(amount_field)?;
        let note = req.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > 280 || n.chars().any(char::is_control)) {
            return Err(
                CoreError::field("note", "must be at most 280 printable characters").into(),
            );
        }
        let recipient = state
            .db
            .recipient_by_login(&req.recipient)
            .await?
            .ok_or_else(|| {
                CoreError::field(
                    "recipient",
                    "no active, verified user has that username or email",
                )
            })?;
        if recipient.id == sender.id {
            return Err(CoreError::field("recipient", "you cannot send money to yourself").into());
        }
        let limits = state.transfer_limits;
        let usd =
            usd_value(state, asset, amount).ok_or_else(|| amount_field(AmountError::Overflow))?;
        if usd < limits.min_cents || usd > limits.max_cents {
            return Err(CoreError::LimitExceeded(format!(
                "a transfer must be worth between ${} and ${}",
                format_amount(limits.min_cents, 2),
                format_amount(limits.max_cents, 2)
            ))
            .into());
        }
        Ok(Transfer {
            sender,
            recipient,
            asset,
            amount,
            note,
            usd,
        })
    }

    fn shown(&self, amount: i64) -> String {
        format_amount(amount, self.asset.scale)
    }

    /// The view of one side's history row, as the real-time event shows it.
    fn side_view(&self, id: &str, direction: &str, status: &str, other: &UserRow) -> Value {
        json!({
            "id": id,
            "type": "p2p",
            "direction": direction,
            "currency": self.asset.code,
            "amount": self.shown(self.amount),
            "fee": self.shown(0),
            "status": status,
            "counterparty": {"id": other.id, "username": other.username},
            "note": self.note,
            "created_at": rfc3339(etx_db::now_micros()),
        })
    }

    /// The answer to the sender.
    fn view(&self, id: String, entry_id: Option<String>, status: &str) -> TransferView {
        TransferView {
            id,
            entry_id,
            sender: TransferParty::of(self.sender),
            recipient: TransferParty::of(&self.recipient),
            amount: self.shown(self.amount),
            currency: self.asset.code.clone(),
            note: self.note.map(str::to_string),
            status: status.into(),
            review: None,
            created_at: rfc3339(etx_db::now_micros()),
        }
    }
}

pub(crate) async fn p2p_attempt(
    state: &Core,
    sender: &UserRow,
    m: &Movement<'_>,
    req: &P2pRequest,
) -> Result<Outcome, Failure> {
    let t = Transfer::check(state, sender, req).await?;
    // The velocity rule is decided by the committer, where a sender's transfers are serialised.
    if let Some(rule) = crate::rules::amount_rule(state, sender, t.usd) {
        return held_p2p(state, &t, m, rule).await;
    }
    let (plan, notice) = plan(&t, m);
    let (entry_id, out_id, in_id) = (
        plan.entry_id.clone(),
        plan.out_id.clone(),
        plan.in_id.clone(),
    );
    let posted = match state.transfers.submit(plan).await? {
        group::Decided::Posted(p) => p,
        group::Decided::Velocity(recent) => {
            let rule = crate::rules::velocity_rule(&state.rules, recent).ok_or_else(|| {
                CoreError::Internal(anyhow::anyhow!("velocity hold without rule"))
            })?;
            return held_p2p(state, &t, m, rule).await;
        }
    };
    tracing::info!(entry_id, sender = %sender.id, recipient = %t.recipient.id, asset = %t.asset.code, "p2p transfer");
    let event =
        |id: &str, direction, user: &UserRow, other: &UserRow, balance, notice| MovementEvent {
            notice,
            user_id: user.id.clone(),
            transaction: t.side_view(id, direction, "completed", other),
            currency: t.asset.code.clone(),
            balance: t.shown(balance),
        };
    let recipient = &t.recipient;
    crate::ledger::publish(
        state,
        vec![
            event(
                &out_id,
                "out",
                sender,
                recipient,
                posted.sender_balance,
                None,
            ),
            event(
                &in_id,
                "in",
                recipient,
                sender,
                posted.recipient_balance,
                Some(notice),
            ),
        ],
    );
    Ok(posted.outcome)
}

/// The transfer as the group committer takes it, with the recipient's notification and the
/// audit record it writes; the notification is also returned for the real-time event.
fn plan(t: &Transfer<'_>, m: &Movement<'_>) -> (group::Planned, Notice) {
    let entry_id = uuid::Uuid::now_v7().to_string();
    let out_id = uuid::Uuid::now_v7().to_string();
    let in_id = uuid::Uuid::now_v7().to_string();
    let (sender, recipient, asset) = (t.sender, &t.recipient, t.asset);
    let notice = Notice {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "transfer_received",
        title: format!("You received {} {}", t.shown(t.amount), asset.code),
        body: match t.note {
            Some(n) => format!("From {}: “{n}”", sender.username),
            None => format!("From {}", sender.username),
        },
        data: json!({"transaction_id": in_id, "from": sender.username}),
    };
    let mut extra = Batch::default();
    notice.queue(&mut extra, &recipient.id);
    crate::audit::Event::new(Some(&sender.id), AuditAction::Transfer)
        .target("user", &recipient.id)
        .details(json!({
            "entry_id": entry_id,
            "currency": asset.code,
            "amount": t.shown(t.amount),
        }))
        .queue(&mut extra);
    let plan = group::Planned {
        sender_id: sender.id.clone(),
        recipient_id: recipient.id.clone(),
        asset: asset.code.clone(),
        amount: t.amount,
        usd_cents: t.usd,
        answer: t.view(out_id.clone(), Some(entry_id.clone()), "completed"),
        entry_id,
        out_id,
        in_id,
        note: t.note.map(str::to_string),
        key: m.key.to_string(),
        scope: m.scope,
        request_hash: m.hash.clone(),
        scale: asset.scale,
        extra,
    };
    (plan, notice)
}

/// A transfer an AML rule flagged: the sender's money is held until staff decide, and only
/// the sender hears of it for now.
pub(crate) async fn held_p2p(
    state: &Core,
    t: &Transfer<'_>,
    m: &Movement<'_>,
    rule: (&'static str, Value),
) -> Result<Outcome, Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let day = chrono::Utc::now().timestamp().div_euclid(86_400);
    let cap = state.transfer_limits.daily_cap_cents;
    let mut batch = Batch::default();
    let rule_name = rule.0;
    let sender = t.sender;
    // The wallet before the daily total, the order group commits lock them in, so the two
    // paths cannot deadlock on one sender. A refusal drops (rolls back) the transaction.
    let (txn_id, balance) = hold_transfer(state, &tx, &mut batch, t, rule, day).await?;
    if !db
        .add_transfer_usage(&tx, &sender.id, day, t.usd, cap)
        .await?
    {
        tx.rollback().await?;
        return Err(CoreError::LimitExceeded(format!(
            "this transfer would pass your daily limit of ${}",
            format_amount(cap, 2)
        ))
        .into());
    }
    crate::audit::Event::new(Some(&sender.id), AuditAction::Transfer)
        .target("user", &t.recipient.id)
        .details(json!({
            "currency": t.asset.code,
            "amount": t.shown(t.amount),
            "held_for_review": rule_name,
        }))
        .queue(&mut batch);
    let view = t.side_view(&txn_id, "out", "held", &t.recipient);
    let body = crate::ledger::stored_answer(&TransferCreated {
        transfer: TransferView {
            review: Some(
                "This transfer is held for a compliance review; the recipient receives it once it is released."
                    .into(),
            ),
            ..t.view(txn_id, None, "held")
        },
        balance: t.shown(balance),
    })?;
    let out = m.commit(state, tx, batch, Taken::Completed, body).await?;
    tracing::info!(sender = %sender.id, recipient = %t.recipient.id, rule = rule_name, "p2p transfer held for review");
    crate::ledger::publish(
        state,
        vec![MovementEvent {
            notice: None,
            user_id: sender.id.clone(),
            transaction: view,
            currency: t.asset.code.clone(),
            balance: t.shown(balance),
        }],
    );
    Ok(out)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    pub user_id: String,
    pub currency: String,
    /// Signed: positive credits the user, negative debits.
    pub amount: AmountText,
    pub reason: String,
}

/// Admin balance adjustment, posted against the platform equity account. Never of the
/// admin's own balance; worth `[admin] adjust_approval_from_usd` or more, it waits (202) for a
/// second admin's approval instead of moving money.
/// The largest adjustment, in minor units of its asset.
const MAX_ADJUST_MINOR: u64 = 10_000_000_000_000_000;

pub async fn adjust(
    state: &Core,
    admin: &UserRow,
    key: &str,
    body: &serde_json::value::RawValue,
) -> Result<Outcome, CoreError> {
    let (m, req) = Movement::start(&admin.id, key, "admin_adjust", body)?;
    m.run(state, || adjust_attempt(state, admin, &m, &req))
        .await
}

pub(crate) fn own_balance() -> CoreError {
    CoreError::Forbidden("you cannot adjust your own balance; another admin must do it".into())
}

pub(crate) async fn adjust_attempt(
    state: &Core,
    admin: &UserRow,
    m: &Movement<'_>,
    req: &AdjustRequest,
) -> Result<Outcome, Failure> {
    let db = &state.db;
    let asset = asset_of(state, &req.currency)?;
    let amount = parse_amount(req.amount.0.trim(), asset.scale).map_err(amount_field)?;
    if amount == 0 {
        return Err(amount_field(AmountError::NotPositive).into());
    }
    // Far beyond any real correction, and far enough from the balances' 64-bit range that
    // no run of adjustments can overflow one.
    if amount.unsigned_abs() > MAX_ADJUST_MINOR {
        return Err(CoreError::field(
            "amount",
            &format!(
                "an adjustment moves at most {} {}",
                etx_domain::format_amount(MAX_ADJUST_MINOR as i64, asset.scale),
                asset.code
            ),
        )
        .into());
    }
    let reason = req.reason.trim();
    if reason.chars().count() < 3 || reason.chars().count() > 500 {
        return Err(CoreError::field("reason", "must be 3 to 500 characters").into());
    }
    let usd = amount
        .checked_abs()
        .and_then(|a| usd_value(state, asset, a))
        .ok_or_else(|| amount_field(AmountError::Overflow))?;
    let tx = db.begin_write().await?;
    let user = match uuid::Uuid::parse_str(&req.user_id) {
        Ok(id) => db.user_by_id_in(&tx, &id.to_string()).await?,
        Err(_) => None,
    }
    .ok_or_else(|| CoreError::field("user_id", "no such user"))?;
    if user.id == admin.id {
        return Err(own_balance().into());
    }
    let mut batch = Batch::default();
    let shown = |a: i64| format_amount(a, asset.scale);
    if usd >= state.rules.adjust_approval_cents {
        let (id, body) =
            request_approval(state, &mut batch, admin, &user, asset, amount, reason, usd)?;
        let out = m.commit(state, tx, batch, Taken::Held, body).await?;
        tracing::info!(adjustment = %id, actor = %admin.id, target = %user.id, asset = %asset.code, "balance adjustment waits for approval");
        return Ok(out);
    }
    let entry_id = uuid::Uuid::now_v7().to_string();
    let applied = apply_adjustment(
        state, &tx, &mut batch, &admin.id, &user, asset, amount, reason, &entry_id,
    )
    .await?;
    crate::audit::Event::new(Some(&admin.id), AuditAction::Adjust)
        .target("user", &user.id)
        .details(json!({
            "entry_id": entry_id,
            "reason": reason,
            "currency": asset.code,
            "amount": shown(amount),
            "before": shown(applied.balance - amount),
            "after": shown(applied.balance),
        }))
        .queue(&mut batch);
    let body = crate::ledger::stored_answer(&AdjustmentApplied {
        adjustment: AppliedAdjustmentView {
            id: applied.txn_id.clone(),
            entry_id: entry_id.clone(),
            user_id: user.id.clone(),
            currency: asset.code.clone(),
            amount: shown(amount),
            reason: reason.to_string(),
            balance: shown(applied.balance),
        },
    })?;
    let out = m.commit(state, tx, batch, Taken::Completed, body).await?;
    tracing::info!(entry_id, actor = %admin.id, target = %user.id, asset = %asset.code, "balance adjusted by admin");
    announce_adjustment(state, &user.id, asset, applied);
    Ok(out)
}

/// Queues an adjustment request for a second admin, with its audit record; answers its id and
/// the body stored under the idempotency key.
#[allow(clippy::too_many_arguments)]
fn request_approval(
    state: &Core,
    batch: &mut Batch,
    admin: &UserRow,
    user: &UserRow,
    asset: &Asset,
    amount: i64,
    reason: &str,
    usd: i64,
) -> Result<(String, String), Failure> {
    let id = uuid::Uuid::now_v7().to_string();
    Db::queue_adjustment_request(
        batch,
        &etx_db::adjustments::NewAdjustment {
            id: &id,
            user_id: &user.id,
            asset: &asset.code,
            amount,
            usd_cents: usd,
            reason,
            requested_by: &admin.id,
        },
    );
    let shown = format_amount(amount, asset.scale);
    crate::audit::Event::new(Some(&admin.id), AuditAction::AdjustRequest)
        .target("user", &user.id)
        .details(json!({
            "adjustment_id": id,
            "reason": reason,
            "currency": asset.code,
            "amount": shown,
            "usd_value": format_amount(usd, 2),
        }))
        .queue(batch);
    let body = crate::ledger::stored_answer(&AdjustmentRequested {
        adjustment: PendingAdjustmentView {
            id: id.clone(),
            status: "pending".into(),
            user_id: user.id.clone(),
            currency: asset.code.clone(),
            amount: shown,
            usd_value: format_amount(usd, 2),
            reason: reason.to_string(),
            requested_by: admin.id.clone(),
            review: format!(
                "Adjustments worth ${} or more wait for another admin's approval.",
                format_amount(state.rules.adjust_approval_cents, 2)
            ),
        },
    })?;
    Ok((id, body))
}

/// What applying an adjustment produced: its history row, the new balance and the notice to
/// push after commit.
pub(crate) struct Applied {
    txn_id: String,
    balance: i64,
    notice: Notice,
    /// The history row as the real-time event shows it.
    view: Value,
}

/// Posts an adjustment's ledger entry and queues its history row and notice in `tx`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_adjustment(
    state: &Core,
    tx: &etx_db::DatabaseTransaction,
    batch: &mut Batch,
    actor: &str,
    user: &UserRow,
    asset: &Asset,
    amount: i64,
    reason: &str,
    entry_id: &str,
) -> Result<Applied, Failure> {
    let balances = state
        .db
        .post_entry(
            tx,
            batch,
            NewEntry {
                id: entry_id,
                kind: EntryKind::Adjustment,
                asset: &asset.code,
                memo: Some(reason),
                created_by: Some(actor),
                legs: vec![
                    Leg {
                        owner: &user.id,
                        kind: AccountKind::Wallet,
                        amount,
                    },
                    Leg {
                        owner: PLATFORM,
                        kind: AccountKind::Equity,
                        amount: -amount,
                    },
                ],
            },
        )
        .await?;
    let balance = balance_of(
        &balances,
        &account_id(&user.id, AccountKind::Wallet, &asset.code),
    )?;
    let txn_id = uuid::Uuid::now_v7().to_string();
    let view = queue_history(
        state,
        batch,
        NewTransaction {
            id: &txn_id,
            user_id: &user.id,
            kind: TxKind::Adjustment,
            direction: if amount > 0 { "in" } else { "out" },
            asset: &asset.code,
            amount: amount.abs(),
            fee: 0,
            status: "completed",
            counterparty_id: None,
            note: Some(reason),
            entry_id: Some(entry_id),
            usd_value: None,
        },
    );
    let notice = Notice {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "balance_adjusted",
        title: format!(
            "Your {} balance was adjusted by {}{}",
            asset.code,
            if amount > 0 { "+" } else { "" },
            format_amount(amount, asset.scale)
        ),
        body: reason.to_string(),
        data: json!({"transaction_id": txn_id}),
    };
    notice.queue(batch, &user.id);
    Ok(Applied {
        txn_id,
        balance,
        notice,
        view,
    })
}

pub(crate) fn announce_adjustment(state: &Core, user_id: &str, asset: &Asset, applied: Applied) {
    let Applied {
        balance,
        notice,
        view,
        ..
    } = applied;
    let event = movement_event(state, user_id, &asset.code, balance, view, Some(notice));
    crate::ledger::publish(state, vec![event]);
}

/// An adjustment applied at once: its history row, journal entry and the user's balance after
/// it (decimal strings in the asset).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppliedAdjustmentView {
    /// The user's history row of the adjustment.
    pub id: String,
    pub entry_id: String,
    pub user_id: String,
    pub currency: String,
    /// Signed: positive credited, negative debited.
    pub amount: String,
    pub reason: String,
    pub balance: String,
}

/// `{adjustment}`: an adjustment applied at once (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentApplied {
    pub adjustment: AppliedAdjustmentView,
}

/// An adjustment that waits for another admin's approval; nothing moved yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingAdjustmentView {
    /// The adjustment request, to approve or reject.
    pub id: String,
    /// `pending`.
    pub status: String,
    pub user_id: String,
    pub currency: String,
    pub amount: String,
    pub usd_value: String,
    pub reason: String,
    pub requested_by: String,
    /// Why it waits.
    pub review: String,
}

/// `{adjustment}`: an adjustment waiting for approval (202).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentRequested {
    pub adjustment: PendingAdjustmentView,
}

/// An adjustment request as the staff API and page show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentView {
    pub id: String,
    /// `pending`, `applied` or `rejected`.
    pub status: String,
    pub user_id: String,
    pub currency: String,
    /// Signed decimal in the asset.
    pub amount: String,
    pub usd_value: String,
    pub reason: String,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    /// The journal entry, once applied.
    pub entry_id: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

/// `{adjustment}`: one adjustment request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentResponse {
    pub adjustment: AdjustmentView,
}

/// `{adjustments}`: adjustment requests, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentList {
    pub adjustments: Vec<AdjustmentView>,
}

impl AdjustmentView {
    pub fn new(state: &Core, a: &etx_db::adjustments::AdjustmentRow) -> Self {
        let scale = state.assets.get(&a.asset).map_or(0, |x| x.scale);
        AdjustmentView {
            id: a.id.clone(),
            status: a.status.clone(),
            user_id: a.user_id.clone(),
            currency: a.asset.clone(),
            amount: format_amount(a.amount, scale),
            usd_value: format_amount(a.usd_cents, 2),
            reason: a.reason.clone(),
            requested_by: a.requested_by.clone(),
            decided_by: a.decided_by.clone(),
            decision_note: a.decision_note.clone(),
            entry_id: a.entry_id.clone(),
            created_at: rfc3339(a.created_at),
            decided_at: a.decided_at.map(rfc3339),
        }
    }
}

/// Approves (applies) or rejects a pending adjustment: an admin other than the one who asked,
/// and never one whose own balance it adjusts. The state change is conditional on `pending`
/// and runs in the transaction of the ledger entry, so a double approval applies once.
pub async fn decide_adjustment(
    state: &Core,
    staff: &UserRow,
    id: &str,
    approve: bool,
    note: Option<&str>,
) -> Result<AdjustmentView, CoreError> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| CoreError::NotFound)?
        .to_string();
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 500) {
        return Err(CoreError::field("reason", "must be at most 500 characters"));
    }
    if !approve && note.is_none_or(|n| n.chars().count() < 3) {
        return Err(CoreError::field("reason", "must be 3 to 500 characters"));
    }
    let (row, applied) =
        crate::ledger::with_retries(|| decide_adjustment_attempt(state, staff, &id, approve, note))
            .await?;
    if let Some((asset, applied)) = applied {
        announce_adjustment(state, &row.user_id, &asset, applied);
    }
    Ok(AdjustmentView::new(state, &row))
}

type Decided = (etx_db::adjustments::AdjustmentRow, Option<(Asset, Applied)>);

pub(crate) async fn decide_adjustment_attempt(
    state: &Core,
    staff: &UserRow,
    id: &str,
    approve: bool,
    note: Option<&str>,
) -> Result<Decided, Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let Some(row) = db.adjustment_request(&tx, id).await? else {
        return Err(CoreError::NotFound.into());
    };
    if row.requested_by == staff.id {
        return Err(CoreError::Forbidden(
            "the admin who asked for an adjustment cannot decide it; another admin must".into(),
        )
        .into());
    }
    if approve && row.user_id == staff.id {
        return Err(own_balance().into());
    }
    if row.status != "pending" {
        return Err(conflict(&format!("this adjustment is already {}", row.status)).into());
    }
    let entry_id = uuid::Uuid::now_v7().to_string();
    let Some(row) = db
        .decide_adjustment(
            &tx,
            id,
            &staff.id,
            if approve { "applied" } else { "rejected" },
            note,
            approve.then_some(entry_id.as_str()),
        )
        .await?
    else {
        return Err(conflict("this adjustment was decided meanwhile").into());
    };
    let mut batch = Batch::default();
    let asset =
        state.assets.get(&row.asset).cloned().ok_or_else(|| {
            CoreError::Internal(anyhow::anyhow!("adjustment in an unknown asset"))
        })?;
    let applied = if approve {
        let applied =
            approve_adjustment(state, &tx, &mut batch, staff, &row, &asset, note, &entry_id)
                .await?;
        Some((asset, applied))
    } else {
        crate::audit::Event::new(Some(&staff.id), AuditAction::AdjustReject)
            .target("adjustment", &row.id)
            .details(json!({
                "user_id": row.user_id,
                "requested_by": row.requested_by,
                "reason": note,
                "currency": asset.code,
                "amount": format_amount(row.amount, asset.scale),
            }))
            .queue(&mut batch);
        None
    };
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(adjustment = %row.id, actor = %staff.id, approve, "balance adjustment decided");
    Ok((row, applied))
}

/// Applies an approved adjustment request to its user's balance, with the audit record.
#[allow(clippy::too_many_arguments)]
async fn approve_adjustment(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    staff: &UserRow,
    row: &etx_db::adjustments::AdjustmentRow,
    asset: &Asset,
    note: Option<&str>,
    entry_id: &str,
) -> Result<Applied, Failure> {
    let Some(user) = state.db.user_by_id_in(tx, &row.user_id).await? else {
        return Err(conflict("the user no longer exists; reject the adjustment instead").into());
    };
    let (amount, reason) = (row.amount, row.reason.as_str());
    let applied = apply_adjustment(
        state, tx, batch, &staff.id, &user, asset, amount, reason, entry_id,
    )
    .await?;
    let shown = |a: i64| format_amount(a, asset.scale);
    crate::audit::Event::new(Some(&staff.id), AuditAction::AdjustApprove)
        .target("adjustment", &row.id)
        .details(json!({
            "user_id": row.user_id,
            "requested_by": row.requested_by,
            "entry_id": entry_id,
            "reason": reason,
            "note": note,
            "currency": asset.code,
            "amount": shown(amount),
            "before": shown(applied.balance - amount),
            "after": shown(applied.balance),
        }))
        .queue(batch);
    Ok(applied)
}

/// Every configured asset with the user's balance as a decimal string, and when any changed last.
pub async fn balance_list(
    state: &Core,
    user_id: &str,
) -> Result<(Vec<(String, String)>, Option<i64>), DbErr> {
    let rows = state.db.wallet_balances(user_id).await?;
    let mut updated = None::<i64>;
    let list = state
        .assets
        .iter()
        .map(|a| {
            let found = rows.iter().find(|(code, _, _)| *code == a.code);
            if let Some((_, _, u)) = found {
                updated = Some(updated.map_or(*u, |x: i64| x.max(*u)));
            }
            (
                a.code.clone(),
                format_amount(found.map_or(0, |(_, b, _)| *b), a.scale),
            )
        })
        .collect();
    Ok((list, updated))
}

/// Holds a P2P transfer an AML rule flagged: the sender's money goes to their held account,
/// and only the sender sees it, as `held`, until staff decide. `day` is the day its USD value
/// counts on against the sender's cap.
pub(crate) async fn hold_transfer(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    t: &Transfer<'_>,
    rule: (&str, Value),
    day: i64,
) -> Result<(String, i64), Failure> {
    let (sender, code) = (&t.sender.id, &t.asset.code);
    let legs = vec![
        leg(sender, AccountKind::Wallet, -t.amount),
        leg(sender, AccountKind::Held, t.amount),
    ];
    let who = Some(sender.as_str());
    let balances = post(
        &state.db,
        tx,
        batch,
        EntryKind::P2pHold,
        code,
        t.note,
        who,
        legs,
    )
    .await?;
    let balance = balance_of(&balances, &account_id(sender, AccountKind::Wallet, code))?;
    let held = HeldTransferRow {
        id: uuid::Uuid::now_v7().to_string(),
        sender_id: sender.clone(),
        recipient_id: t.recipient.id.clone(),
        asset: code.clone(),
        amount: t.amount,
        note: t.note.map(str::to_string),
        transaction_id: uuid::Uuid::now_v7().to_string(),
        status: "held".into(),
        usd_cents: t.usd,
        day,
        created_at: now_micros(),
    };
    Db::insert_transactions(
        batch,
        &mut [NewTransaction {
            id: &held.transaction_id,
            user_id: sender,
            kind: TxKind::P2p,
            direction: "out",
            asset: code,
            amount: t.amount,
            fee: 0,
            status: "held",
            counterparty_id: Some(&t.recipient.id),
            note: t.note,
            entry_id: None,
            usd_value: Some(t.usd),
        }],
    );
    Db::queue_held_transfer(batch, &held);
    queue_flag(batch, sender, "transfer", &held.id, rule.0, &rule.1);
    Ok((held.transaction_id, balance))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferConfig {
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub min_usd: String,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub max_usd: String,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub daily_cap_usd: String,
    /// Committers of P2P transfers on PostgreSQL (SQLite has one): each commits every transfer
    /// waiting, up to `max_group`, in one transaction.
    #[serde(default = "default_commit_lanes")]
    pub commit_lanes: usize,
    #[serde(default = "default_max_group")]
    pub max_group: usize,
}

fn default_commit_lanes() -> usize {
    2
}

fn default_max_group() -> usize {
    64
}

#[cfg(test)]
mod view_tests {
    use super::*;

    fn transfer(held: bool) -> TransferCreated {
        let party = |id: &str| TransferParty {
            id: id.into(),
            username: id.into(),
        };
        TransferCreated {
            transfer: TransferView {
                id: "t".into(),
                entry_id: (!held).then(|| "e".into()),
                sender: party("a"),
                recipient: party("b"),
                amount: "1.00".into(),
                currency: "USD".into(),
                note: None,
                status: if held { "held" } else { "completed" }.into(),
                review: held.then(|| "why".into()),
                created_at: "2026-01-01T00:00:00Z".into(),
            },
            balance: "9.00".into(),
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// The stored answers keep the shape clients and replays have always seen: `note` is null
    /// when missing, `entry_id` only once posted, `review` only while held.
    #[test]
    fn transfer_answers_keep_their_fields() {
        let done = serde_json::to_value(transfer(false)).unwrap();
        assert_eq!(keys(&done), ["balance", "transfer"]);
        assert_eq!(
            keys(&done["transfer"]),
            [
                "amount",
                "created_at",
                "currency",
                "entry_id",
                "id",
                "note",
                "recipient",
                "sender",
                "status"
            ]
        );
        assert!(done["transfer"]["note"].is_null());
        assert_eq!(
            done["transfer"]["sender"],
            json!({"id": "a", "username": "a"})
        );
        let held = serde_json::to_value(transfer(true)).unwrap();
        assert_eq!(
            keys(&held["transfer"]),
            [
                "amount",
                "created_at",
                "currency",
                "id",
                "note",
                "recipient",
                "review",
                "sender",
                "status"
            ]
        );
        // A stored answer reads back as its view.
        let text = crate::ledger::stored_answer(&transfer(true)).unwrap();
        let back: TransferCreated = serde_json::from_str(&text).unwrap();
        assert_eq!(back.transfer.review.as_deref(), Some("why"));
        assert_eq!(back.transfer.entry_id, None);
    }
}
