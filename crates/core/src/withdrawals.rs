//! Withdrawals: quotes, requests, cancellation and staff approval.
//!
//! Money leaves through `withdrawals_hold` (at request time) and `withdrawals_clearing` plus
//! `fees` (on completion). Each step is a conditional UPDATE naming the state it leaves.

use crate::Core;
use crate::address::Network;
use crate::error::CoreError;
use crate::ledger::{
    AmountText, Asset, Failure, Movement, MovementEvent, Outcome, amount_field, asset_of,
    balance_of, conflict, incoming, leg, movement_event, notice, post, queue_history, reason_text,
    scale_of, txn_view, usd_value, with_retries,
};
use crate::rules::{aml_rule, queue_flag};
use crate::session::Auth;
use crate::time::rfc3339;
use etx_db::ledger::{NewTransaction, PLATFORM, Usage, account_id};
use etx_db::payments::WithdrawalRow;
use etx_db::users::UserRow;
use etx_db::{Batch, DatabaseTransaction, Db, now_micros};
use etx_domain::AccountKind;
use etx_domain::{AmountError, format_amount, parse_positive_amount};
use etx_domain::{AuditAction, EntryKind, TxKind, WithdrawalStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
/// The fee on `amount`: `basis_points` hundredths of a percent, rounded up to the next minor
/// unit so the platform never loses a fraction, and never less than the asset's `min_fee`.
pub fn withdrawal_fee(amount: i64, basis_points: i64, min_fee: i64) -> Option<i64> {
    let pct = i128::from(amount) * i128::from(basis_points);
    let pct = i64::try_from((pct + 9_999) / 10_000).ok()?;
    Some(pct.max(min_fee))
}

/// The largest amount whose withdrawal (amount plus its fee) fits in `balance`; 0 when not
/// even the fee fits. Amount plus fee only grows with the amount, so a binary search finds it.
pub fn max_amount(balance: i64, basis_points: i64, min_fee: i64) -> i64 {
    let fits = |a: i64| {
        withdrawal_fee(a, basis_points, min_fee)
            .and_then(|f| a.checked_add(f))
            .is_some_and(|t| t <= balance)
    };
    if balance <= 0 || !fits(0) {
        return 0;
    }
    let (mut lo, mut hi) = (0i64, balance);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// `max_amount` for one of the user's assets, as a decimal; `None` for an asset that cannot be
/// withdrawn or a balance that does not parse.
pub fn max_for(state: &Core, currency: &str, balance: &str) -> Option<String> {
    let asset = state.assets.get(currency)?;
    let (_, min_fee) = state.rules.networks.get(&asset.code).copied()?;
    let minor = etx_domain::money::parse_amount(balance, asset.scale).ok()?;
    let max = max_amount(minor, state.rules.fee_basis_points, min_fee);
    Some(format_amount(max, asset.scale))
}

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
    let fee = withdrawal_fee(amount, rules.fee_basis_points, min_fee)
        .ok_or_else(|| amount_field(AmountError::Overflow))?;
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

/// A withdrawal's price before it is asked for; amounts are decimal strings in the asset,
/// `usd_value` in USD.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteView {
    pub currency: String,
    /// What arrives at the address.
    pub amount: String,
    pub fee: String,
    /// Amount plus fee: what leaves the wallet.
    pub total: String,
    pub usd_value: String,
    /// Staff approvals the withdrawal needs: 1, or 2 at or over the two-approval threshold.
    pub approvals_required: i32,
}

impl QuoteView {
    pub fn new(q: &WithdrawalQuote<'_>) -> Self {
        let s = q.asset.scale;
        QuoteView {
            currency: q.asset.code.clone(),
            amount: format_amount(q.amount, s),
            fee: format_amount(q.fee, s),
            total: format_amount(q.total, s),
            usd_value: format_amount(q.usd_cents, 2),
            approvals_required: q.approvals_required,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    pub amount: AmountText,
    pub currency: String,
    pub address: String,
}

/// A withdrawal as the API shows it; amounts are decimal strings in the asset, `usd_value` in
/// USD.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalView {
    pub id: String,
    pub user_id: String,
    pub currency: String,
    pub amount: String,
    pub fee: String,
    pub total: String,
    pub usd_value: String,
    pub address: String,
    /// `held`, `pending`, `pending_approval`, `processing`, `completed`, `rejected` or
    /// `cancelled`.
    pub status: String,
    pub approvals_required: i32,
    pub approvals: Vec<WithdrawalApproval>,
    pub tx_hash: Option<String>,
    pub reason: Option<String>,
    /// The withdrawal's row in the owner's history.
    pub transaction_id: String,
    pub created_at: String,
    pub updated_at: String,
    /// The AML review of the withdrawal, if a rule flagged it; shown to staff only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aml_flag: Option<crate::rules::FlagView>,
}

/// A staff approval of a withdrawal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalApproval {
    pub staff_id: String,
    pub username: Option<String>,
    pub note: Option<String>,
    pub at: String,
}

/// `{withdrawal}`: one withdrawal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalResponse {
    pub withdrawal: WithdrawalView,
}

/// A requested withdrawal and the wallet balance after its amount and fee were taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalCreated {
    pub withdrawal: WithdrawalView,
    pub balance: String,
}

/// A page of withdrawals, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WithdrawalList {
    pub withdrawals: Vec<WithdrawalView>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

impl WithdrawalView {
    pub fn new(
        state: &Core,
        w: &WithdrawalRow,
        approvals: &[etx_db::payments::ApprovalRow],
    ) -> Self {
        let s = scale_of(state, &w.asset);
        WithdrawalView {
            id: w.id.clone(),
            user_id: w.user_id.clone(),
            currency: w.asset.clone(),
            amount: format_amount(w.amount, s),
            fee: format_amount(w.fee, s),
            total: format_amount(w.amount + w.fee, s),
            usd_value: format_amount(w.usd_cents, 2),
            address: w.address.clone(),
            status: w.status.clone(),
            approvals_required: w.approvals_required,
            approvals: approvals
                .iter()
                .map(|a| WithdrawalApproval {
                    staff_id: a.staff_id.clone(),
                    username: a.username.clone(),
                    note: a.note.clone(),
                    at: rfc3339(a.created_at),
                })
                .collect(),
            tx_hash: w.tx_hash.clone(),
            reason: w.reason.clone(),
            transaction_id: w.transaction_id.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
            aml_flag: None,
        }
    }
}

pub async fn withdraw(
    state: &Core,
    user: &UserRow,
    key: &str,
    body: &serde_json::value::RawValue,
) -> Result<Outcome, CoreError> {
    let (m, req) = Movement::start::<WithdrawRequest>(&user.id, key, "withdraw", body)?;
    m.run(state, || withdraw_attempt(state, user, &m, &req))
        .await
}

pub(crate) async fn withdraw_attempt(
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
    let tx = state.db.begin_write().await?;
    let code = &q.asset.code;
    let mut batch = Batch::default();
    let day = chrono::Utc::now().timestamp().div_euclid(86_400);
    let balance = hold(state, &tx, &mut batch, user, &q, address, day).await?;
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
    queue_request(&mut batch, &w, &q, rule.as_ref());
    let body = crate::ledger::stored_answer(&WithdrawalCreated {
        withdrawal: WithdrawalView::new(state, &w, &[]),
        balance: format_amount(balance, q.asset.scale),
    })?;
    let out = m
        .commit(state, tx, batch, crate::ledger::Taken::Completed, body)
        .await?;
    tracing::info!(withdrawal = %w.id, user = %user.id, asset = %code, status, "withdrawal requested");
    let view = txn_view(state, &history_row(&w));
    crate::ledger::publish(
        state,
        vec![movement_event(state, &user.id, code, balance, view, None)],
    );
    Ok(out)
}

/// Moves the amount and fee from the wallet into the withdrawals hold and counts the amount
/// against the daily cap; answers the wallet balance after it.
async fn hold(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    user: &UserRow,
    q: &WithdrawalQuote<'_>,
    address: &str,
    day: i64,
) -> Result<i64, Failure> {
    let db = &state.db;
    let code = &q.asset.code;
    let balances = post(
        db,
        tx,
        batch,
        EntryKind::WithdrawalHold,
        code,
        Some(address),
        Some(&user.id),
        vec![
            leg(&user.id, AccountKind::Wallet, -q.total),
            leg(PLATFORM, AccountKind::WithdrawalsHold, q.total),
        ],
    )
    .await?;
    let cap = state.rules.withdraw_daily_cap_cents;
    if !db
        .add_withdrawal_usage(tx, &user.id, day, q.usd_cents, cap)
        .await?
    {
        return Err(CoreError::LimitExceeded(format!(
            "this withdrawal would pass your daily limit of ${}",
            format_amount(cap, 2)
        ))
        .into());
    }
    balance_of(&balances, &account_id(&user.id, AccountKind::Wallet, code))
}

/// The rows a new withdrawal writes: its history row, itself, its AML flag when a rule held
/// it, and the audit record.
fn queue_request(
    batch: &mut Batch,
    w: &WithdrawalRow,
    q: &WithdrawalQuote<'_>,
    rule: Option<&(&'static str, Value)>,
) {
    Db::insert_transactions(batch, &mut [history_row(w)]);
    Db::queue_withdrawal(batch, w);
    if let Some((rule, details)) = rule {
        queue_flag(batch, &w.user_id, "withdrawal", &w.id, rule, details);
    }
    crate::audit::Event::new(Some(&w.user_id), AuditAction::WithdrawalRequest)
        .target("withdrawal", &w.id)
        .details(json!({
            "currency": w.asset,
            "amount": format_amount(w.amount, q.asset.scale),
            "fee": format_amount(w.fee, q.asset.scale),
            "address": w.address,
            "status": w.status,
            "aml_rule": rule.map(|r| r.0),
        }))
        .queue(batch);
}

/// A withdrawal's row in its owner's history.
fn history_row(w: &WithdrawalRow) -> NewTransaction<'_> {
    NewTransaction {
        id: &w.transaction_id,
        user_id: &w.user_id,
        kind: TxKind::Withdrawal,
        direction: "out",
        asset: &w.asset,
        amount: w.amount,
        fee: w.fee,
        status: &w.status,
        counterparty_id: None,
        note: Some(&w.address),
        entry_id: None,
        usd_value: Some(w.usd_cents),
    }
}

/// Returns a withdrawal's held money to the owner's wallet (a reversing entry) after a
/// rejection or cancellation, and gives back its share of the daily cap.
pub(crate) async fn refund(
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
        EntryKind::WithdrawalRefund,
        &w.asset,
        Some(why),
        Some(actor),
        vec![
            leg(PLATFORM, AccountKind::WithdrawalsHold, -total),
            leg(&w.user_id, AccountKind::Wallet, total),
        ],
    )
    .await?;
    let balance = balance_of(
        &balances,
        &account_id(&w.user_id, AccountKind::Wallet, &w.asset),
    )?;
    let refund_id = uuid::Uuid::now_v7().to_string();
    let row = incoming(
        &refund_id,
        &w.user_id,
        TxKind::Refund,
        &w.asset,
        total,
        Some(why),
    );
    let view = queue_history(state, batch, row);
    Db::queue_transaction_status(batch, &w.transaction_id, &w.status);
    Db::queue_release_usage(batch, Usage::Withdrawals, &w.user_id, w.day, w.usd_cents);
    Ok(movement_event(
        state, &w.user_id, &w.asset, balance, view, None,
    ))
}

/// The owner cancels a withdrawal no one has approved yet; the money comes back.
pub async fn cancel_withdrawal(
    state: &Core,
    user: &UserRow,
    id: &str,
) -> Result<WithdrawalView, CoreError> {
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
                &[WithdrawalStatus::Pending],
                WithdrawalStatus::Cancelled,
                Some("cancelled by the owner"),
                None,
            )
            .await?
        else {
            return Err(conflict("only a pending withdrawal can be cancelled").into());
        };
        let mut batch = Batch::default();
        let event = refund(state, &tx, &mut batch, &w, &user.id, "Withdrawal cancelled").await?;
        crate::audit::Event::new(Some(&user.id), AuditAction::WithdrawalCancel)
            .target("withdrawal", &w.id)
            .details(json!({"before": "pending", "after": "cancelled"}))
            .queue(&mut batch);
        state.db.run_batch(&tx, batch).await?;
        tx.commit().await?;
        Ok((w, event))
    })
    .await?;
    crate::ledger::publish(state, vec![event]);
    Ok(WithdrawalView::new(
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

/// A staff decision on a withdrawal: approve (two distinct staff, never the requester, at or
/// over the two-approval threshold), reject with a reason (refund), or, for admins, complete
/// with the transaction hash of the payout.
pub async fn staff_withdrawal(
    state: &Core,
    staff: &Auth,
    id: &str,
    action: StaffAction,
) -> Result<WithdrawalView, CoreError> {
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
        crate::ledger::publish(state, events);
    }
    Ok(WithdrawalView::new(
        state,
        &w,
        &state.db.approvals_of(&w.id).await?,
    ))
}

pub(crate) async fn staff_attempt(
    state: &Core,
    actor: &str,
    admin: bool,
    before: &WithdrawalRow,
    action: &StaffAction,
) -> Result<(WithdrawalRow, Vec<MovementEvent>), Failure> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    let mut batch = Batch::default();
    let s = Staff {
        state,
        tx: &tx,
        actor,
        before,
    };
    let (w, verb, mut details, event) = match action {
        StaffAction::Approve { note } => s.approve(note.as_deref()).await?,
        StaffAction::Reject { reason } => s.reject(&mut batch, admin, reason).await?,
        StaffAction::Complete { tx_hash } => s.complete(&mut batch, tx_hash).await?,
    };
    // A refund already queued the rejected status; one statement per row in a batch.
    if !matches!(action, StaffAction::Reject { .. }) {
        Db::queue_transaction_status(&mut batch, &w.transaction_id, &w.status);
    }
    details["before"] = json!({"status": before.status, "approvals": before.approvals});
    details["after"] = json!({"status": w.status, "approvals": w.approvals});
    crate::audit::Event::new(Some(actor), verb)
        .target("withdrawal", &w.id)
        .details(details)
        .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(withdrawal = %w.id, actor, action = %verb, status = %w.status, "withdrawal decided");
    Ok((w, event.into_iter().collect()))
}

/// One staff member's decision on a withdrawal, inside the transaction that records it.
struct Staff<'a> {
    state: &'a Core,
    tx: &'a DatabaseTransaction,
    actor: &'a str,
    before: &'a WithdrawalRow,
}

/// The withdrawal after a decision, the audit action and details, and the movement to push.
type StaffDecided = (WithdrawalRow, AuditAction, Value, Option<MovementEvent>);

impl Staff<'_> {
    async fn approve(&self, note: Option<&str>) -> Result<StaffDecided, Failure> {
        let (db, id) = (&self.state.db, &self.before.id);
        if !db.add_approval(self.tx, id, self.actor, note).await? {
            return Err(conflict("you have already approved this withdrawal").into());
        }
        let Some(w) = db.count_approval(self.tx, id).await? else {
            return Err(conflict(&format!(
                "this withdrawal is {}, not awaiting approval",
                self.before.status
            ))
            .into());
        };
        Ok((
            w,
            AuditAction::WithdrawalApprove,
            json!({"note": note}),
            None,
        ))
    }

    /// Rejects and refunds; once approved, an admin may be sending the payout, so only
    /// admins can still stop it.
    async fn reject(
        &self,
        batch: &mut Batch,
        admin: bool,
        reason: &str,
    ) -> Result<StaffDecided, Failure> {
        use WithdrawalStatus::{Pending, PendingApproval, Processing};
        let from: &[WithdrawalStatus] = if admin {
            &[Pending, PendingApproval, Processing]
        } else {
            &[Pending, PendingApproval]
        };
        let Some(w) = self
            .state
            .db
            .transition_withdrawal(
                self.tx,
                &self.before.id,
                from,
                WithdrawalStatus::Rejected,
                Some(reason),
                None,
            )
            .await?
        else {
            return Err(conflict(&format!(
                "this withdrawal is {} and can no longer be rejected",
                self.before.status
            ))
            .into());
        };
        let why = format!("Withdrawal rejected: {reason}");
        let mut e = refund(self.state, self.tx, batch, &w, self.actor, &why).await?;
        let n = notice(
            "withdrawal_rejected",
            "Your withdrawal was rejected and refunded".into(),
            reason.to_string(),
            json!({"withdrawal_id": w.id}),
        );
        n.queue(batch, &w.user_id);
        e.notice = Some(n);
        Ok((
            w,
            AuditAction::WithdrawalReject,
            json!({"reason": reason}),
            Some(e),
        ))
    }

    /// Records the payout: the held money leaves through the clearing account, the fee goes
    /// to the fees account.
    async fn complete(&self, batch: &mut Batch, tx_hash: &str) -> Result<StaffDecided, Failure> {
        let (state, db, tx) = (self.state, &self.state.db, self.tx);
        let Some(w) = db
            .transition_withdrawal(
                tx,
                &self.before.id,
                &[WithdrawalStatus::Processing],
                WithdrawalStatus::Completed,
                None,
                Some(tx_hash),
            )
            .await?
        else {
            return Err(conflict(&format!(
                "this withdrawal is {}; only an approved (processing) one can be completed",
                self.before.status
            ))
            .into());
        };
        let mut legs = vec![
            leg(PLATFORM, AccountKind::WithdrawalsHold, -(w.amount + w.fee)),
            leg(PLATFORM, AccountKind::WithdrawalsClearing, w.amount),
        ];
        if w.fee > 0 {
            legs.push(leg(PLATFORM, AccountKind::Fees, w.fee));
        }
        let asset = &w.asset;
        post(
            db,
            tx,
            batch,
            EntryKind::Withdrawal,
            asset,
            Some(tx_hash),
            Some(self.actor),
            legs,
        )
        .await?;
        let n = notice(
            "withdrawal_completed",
            format!(
                "Your withdrawal of {} {asset} was sent",
                format_amount(w.amount, scale_of(state, asset)),
            ),
            format!("Transaction {tx_hash}"),
            json!({"withdrawal_id": w.id, "tx_hash": tx_hash}),
        );
        n.queue(batch, &w.user_id);
        let view = txn_view(state, &history_row(&w));
        let balance = db.wallet_balance_in(tx, &w.user_id, asset).await?;
        let e = movement_event(state, &w.user_id, asset, balance, view, Some(n));
        Ok((
            w,
            AuditAction::WithdrawalComplete,
            json!({"tx_hash": tx_hash}),
            Some(e),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{max_amount, withdrawal_fee};

    #[test]
    fn the_maximum_leaves_exactly_room_for_its_fee() {
        // 1 % fee, no minimum: 101.00 covers 100.00 and its 1.00 fee.
        assert_eq!(max_amount(10_100, 100, 0), 10_000);
        // One cent more would need a fee rounded up past the balance.
        assert_eq!(max_amount(10_099, 100, 0), 9_999);
        // The minimum fee decides small balances; nothing fits under it.
        assert_eq!(max_amount(2_500, 100, 2_000), 500);
        assert_eq!(max_amount(2_000, 100, 2_000), 0);
        assert_eq!(max_amount(0, 100, 0), 0);
        for balance in [1, 7, 999, 123_456_789, i64::MAX / 2] {
            let m = max_amount(balance, 100, 3);
            let total = |a: i64| a + withdrawal_fee(a, 100, 3).unwrap();
            assert!(m == 0 || total(m) <= balance, "{balance}");
            assert!(total(m + 1) > balance, "{balance}: {m} is the largest");
        }
    }

    #[test]
    fn fees_round_up_and_respect_the_minimum() {
        // 0.5 % of 100.00 USD is exactly 0.50.
        assert_eq!(withdrawal_fee(10_000, 50, 0), Some(50));
        // 0.5 % of 0.01 is 0.00005: rounded up to one minor unit.
        assert_eq!(withdrawal_fee(1, 50, 0), Some(1));
        // 1 % of 1.2345 BTC in satoshis rounds up.
        assert_eq!(withdrawal_fee(123_450_000, 100, 0), Some(1_234_500));
        assert_eq!(withdrawal_fee(123_450_001, 100, 0), Some(1_234_501));
        // The asset's minimum wins over a smaller percentage.
        assert_eq!(withdrawal_fee(10_000, 50, 2_000), Some(2_000));
        assert_eq!(withdrawal_fee(10_000, 0, 0), Some(0));
        // No overflow: the percentage is computed in 128 bits.
        assert_eq!(withdrawal_fee(i64::MAX, 10_000, 0), Some(i64::MAX));
    }
}
