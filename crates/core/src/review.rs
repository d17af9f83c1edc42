//! The AML review queue: staff release or reject what a rule held. Money an AML rule flagged
//! waits in the owner's `held` account, or for a withdrawal in the withdrawals hold.

use crate::Core;
use crate::deposits::*;
use crate::error::CoreError;
use crate::ledger::{
    Failure, MovementEvent, balance_of, conflict, incoming, leg, movement_event, notice, post,
    queue_history, reason_text, scale_of, txn_view, with_retries,
};
use crate::rules::FlagView;
use crate::session::Auth;
use crate::withdrawals::*;
use etx_db::ledger::{NewTransaction, PLATFORM, Usage, account_id};
use etx_db::payments::{DepositRow, FlagRow, HeldTransferRow};
use etx_db::{Batch, DatabaseTransaction, Db};
use etx_domain::AccountKind;
use etx_domain::format_amount;
use etx_domain::{AuditAction, CreditState, DepositStatus, EntryKind, TxKind, WithdrawalStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `{flag}`: one AML review.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagResponse {
    pub flag: FlagView,
}

/// A page of AML reviews.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagList {
    pub flags: Vec<FlagView>,
    pub total: i64,
    pub skip: i64,
    pub limit: i64,
}

/// Staff release (the operation goes on) or reject (the money goes back) a flagged operation.
pub async fn decide_flag(
    state: &Core,
    staff: &Auth,
    id: &str,
    release: bool,
    reason: &str,
) -> Result<FlagView, CoreError> {
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
        crate::ledger::publish(state, events);
    }
    let f = state.db.flag(id).await?.ok_or(CoreError::NotFound)?;
    Ok(FlagView::new(&f))
}

pub(crate) async fn flag_attempt(
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
    let d = Decision {
        state,
        tx: &tx,
        actor,
        release,
        reason,
    };
    let subject = &flag.subject_id;
    let (events, before, after) = match flag.subject_type.as_str() {
        "withdrawal" => d.withdrawal(&mut batch, subject).await?,
        "deposit" => d.deposit(&mut batch, subject).await?,
        "transfer" => d.transfer(&mut batch, subject).await?,
        other => {
            return Err(
                CoreError::Internal(anyhow::anyhow!("flag on unknown subject {other}")).into(),
            );
        }
    };
    let details = json!({
        "reason": reason,
        "rule": flag.rule,
        "subject_type": flag.subject_type,
        "subject_id": flag.subject_id,
        "before": before,
        "after": after,
    });
    crate::audit::Event::new(
        Some(actor),
        if release {
            AuditAction::AmlRelease
        } else {
            AuditAction::AmlReject
        },
    )
    .target("aml_flag", &flag.id)
    .details(details)
    .queue(&mut batch);
    db.run_batch(&tx, batch).await?;
    tx.commit().await?;
    tracing::info!(flag = %flag.id, actor, decision, "AML review decided");
    Ok(events)
}

/// A staff decision on one flagged operation, inside the transaction that records it.
struct Decision<'a> {
    state: &'a Core,
    tx: &'a DatabaseTransaction,
    actor: &'a str,
    release: bool,
    reason: &'a str,
}

/// What a decision moved, and the subject's state before and after it (for the audit record).
type Decided = (Vec<MovementEvent>, String, &'static str);

impl Decision<'_> {
    /// A held withdrawal goes on to the queue, or its money goes back.
    async fn withdrawal(&self, batch: &mut Batch, id: &str) -> Result<Decided, Failure> {
        let (to, why) = if self.release {
            (WithdrawalStatus::Pending, None)
        } else {
            (WithdrawalStatus::Rejected, Some(self.reason))
        };
        let db = &self.state.db;
        let Some(w) = db
            .transition_withdrawal(self.tx, id, &[WithdrawalStatus::Held], to, why, None)
            .await?
        else {
            return Err(conflict("the withdrawal is no longer held").into());
        };
        let mut events = Vec::new();
        if self.release {
            Db::queue_transaction_status(batch, &w.transaction_id, "pending");
        } else {
            let note = format!("Withdrawal rejected in review: {}", self.reason);
            events.push(refund(self.state, self.tx, batch, &w, self.actor, &note).await?);
        }
        Ok((events, "held".into(), to.as_str()))
    }

    /// A flagged deposit: what it holds is released to the wallet or returned; one that
    /// credited nothing yet is credited or closed.
    async fn deposit(&self, batch: &mut Batch, order_id: &str) -> Result<Decided, Failure> {
        let d = self
            .state
            .db
            .deposit_by_order_in(self.tx, order_id)
            .await?
            .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("flag on a missing deposit")))?;
        let mut events = Vec::new();
        match (credit_state(&d)?, self.release) {
            (CreditState::Held, true) => events.extend(self.release_deposit(batch, &d).await?),
            (CreditState::None, true) if d.actually_paid > 0 => {
                // The provider gave the partial payment back (or never settled it):
                // crediting it would hand out money the platform does not hold.
                let status = DepositStatus::parse(&d.status);
                if matches!(
                    status,
                    Some(DepositStatus::Refunded | DepositStatus::Failed)
                ) {
                    return Err(conflict(&format!(
                        "the provider reported this payment {}; reject the review instead",
                        d.status
                    ))
                    .into());
                }
                let (ev, _) =
                    credit(self.state, self.tx, batch, &d, d.actually_paid, false).await?;
                events.extend(ev);
            }
            (CreditState::Held, false) => self.return_deposit(batch, &d).await?,
            (CreditState::None, false) => {
                let changed = self
                    .state
                    .db
                    .set_deposit_credit(
                        self.tx,
                        &d.id,
                        CreditState::None,
                        CreditState::Rejected,
                        0,
                        0,
                        None,
                    )
                    .await?;
                if changed.is_none() {
                    return Err(conflict("the deposit changed meanwhile").into());
                }
            }
            _ => {}
        }
        let after = if self.release { "credited" } else { "rejected" };
        Ok((events, d.credit_state, after))
    }

    /// Moves a held deposit into the owner's wallet.
    async fn release_deposit(
        &self,
        batch: &mut Batch,
        d: &DepositRow,
    ) -> Result<Option<MovementEvent>, Failure> {
        let (state, db, tx) = (self.state, &self.state.db, self.tx);
        if db
            .set_deposit_credit(
                tx,
                &d.id,
                CreditState::Held,
                CreditState::Credited,
                0,
                -d.held,
                None,
            )
            .await?
            .is_none()
        {
            return Err(conflict("the deposit changed meanwhile").into());
        }
        let balances = post(
            db,
            tx,
            batch,
            EntryKind::DepositRelease,
            &d.pay_currency,
            Some(&d.order_id),
            Some(self.actor),
            vec![
                leg(&d.user_id, AccountKind::Held, -d.held),
                leg(&d.user_id, AccountKind::Wallet, d.held),
            ],
        )
        .await?;
        let Some(t) = &d.transaction_id else {
            return Ok(None);
        };
        Db::queue_transaction_status(batch, t, "completed");
        let row = incoming(
            t,
            &d.user_id,
            TxKind::Deposit,
            &d.pay_currency,
            d.held,
            Some(&d.order_id),
        );
        let view = txn_view(state, &row);
        let wallet = account_id(&d.user_id, AccountKind::Wallet, &d.pay_currency);
        let b = balance_of(&balances, &wallet)?;
        Ok(Some(movement_event(
            state,
            &d.user_id,
            &d.pay_currency,
            b,
            view,
            None,
        )))
    }

    /// Gives a held deposit back to the deposits clearing account.
    async fn return_deposit(&self, batch: &mut Batch, d: &DepositRow) -> Result<(), Failure> {
        let (db, tx) = (&self.state.db, self.tx);
        if db
            .set_deposit_credit(
                tx,
                &d.id,
                CreditState::Held,
                CreditState::Rejected,
                -d.held,
                -d.held,
                None,
            )
            .await?
            .is_none()
        {
            return Err(conflict("the deposit changed meanwhile").into());
        }
        post(
            db,
            tx,
            batch,
            EntryKind::DepositReturn,
            &d.pay_currency,
            Some(self.reason),
            Some(self.actor),
            vec![
                leg(&d.user_id, AccountKind::Held, -d.held),
                leg(PLATFORM, AccountKind::DepositsClearing, d.held),
            ],
        )
        .await?;
        if let Some(t) = &d.transaction_id {
            Db::queue_transaction_status(batch, t, "rejected");
        }
        Ok(())
    }

    /// A held transfer reaches its recipient or goes back to its sender.
    async fn transfer(&self, batch: &mut Batch, id: &str) -> Result<Decided, Failure> {
        let to = if self.release { "released" } else { "rejected" };
        let Some(t) = self.state.db.settle_held_transfer(self.tx, id, to).await? else {
            return Err(conflict("the transfer is no longer held").into());
        };
        if self.release && t.recipient_id == self.actor {
            return Err(
                CoreError::Forbidden("you cannot release a transfer to yourself".into()).into(),
            );
        }
        let events = settle_transfer(
            self.state,
            self.tx,
            batch,
            &t,
            self.actor,
            self.release,
            self.reason,
        )
        .await?;
        Ok((events, "held".into(), to))
    }
}

/// Moves a held transfer's money out of the sender's hold: to the recipient on release, back
/// to the sender on reject, with the history rows and notification that go with it.
pub(crate) async fn settle_transfer(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    t: &HeldTransferRow,
    actor: &str,
    release: bool,
    reason: &str,
) -> Result<Vec<MovementEvent>, Failure> {
    let to_owner = if release {
        &t.recipient_id
    } else {
        &t.sender_id
    };
    let balances = post(
        &state.db,
        tx,
        batch,
        if release {
            EntryKind::P2p
        } else {
            EntryKind::P2pReturn
        },
        &t.asset,
        t.note.as_deref(),
        Some(actor),
        vec![
            leg(&t.sender_id, AccountKind::Held, -t.amount),
            leg(to_owner, AccountKind::Wallet, t.amount),
        ],
    )
    .await?;
    let balance = balance_of(
        &balances,
        &account_id(to_owner, AccountKind::Wallet, &t.asset),
    )?;
    let event = if release {
        released(state, tx, batch, t, balance).await?
    } else {
        returned(state, batch, t, balance, reason)
    };
    Ok(vec![event])
}

/// The history row and notification of a released transfer, on the recipient's side.
async fn released(
    state: &Core,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    t: &HeldTransferRow,
    balance: i64,
) -> Result<MovementEvent, Failure> {
    Db::queue_transaction_status(batch, &t.transaction_id, "completed");
    let in_id = uuid::Uuid::now_v7().to_string();
    let mut view = queue_history(
        state,
        batch,
        NewTransaction {
            counterparty_id: Some(&t.sender_id),
            ..incoming(
                &in_id,
                &t.recipient_id,
                TxKind::P2p,
                &t.asset,
                t.amount,
                t.note.as_deref(),
            )
        },
    );
    let sender = state.db.user_by_id_in(tx, &t.sender_id).await?;
    let from = sender.map(|u| u.username).unwrap_or_default();
    let scale = scale_of(state, &t.asset);
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
    view["counterparty"] = json!({"id": t.sender_id, "username": from});
    Ok(movement_event(
        state,
        &t.recipient_id,
        &t.asset,
        balance,
        view,
        Some(n),
    ))
}

/// The refund row of a rejected transfer; the sender's daily total gets the amount back.
fn returned(
    state: &Core,
    batch: &mut Batch,
    t: &HeldTransferRow,
    balance: i64,
    reason: &str,
) -> MovementEvent {
    Db::queue_transaction_status(batch, &t.transaction_id, "rejected");
    Db::queue_release_usage(batch, Usage::Transfers, &t.sender_id, t.day, t.usd_cents);
    let refund_id = uuid::Uuid::now_v7().to_string();
    let note = format!("Transfer rejected in review: {reason}");
    let row = incoming(
        &refund_id,
        &t.sender_id,
        TxKind::Refund,
        &t.asset,
        t.amount,
        Some(&note),
    );
    let view = queue_history(state, batch, row);
    movement_event(state, &t.sender_id, &t.asset, balance, view, None)
}
