//! The AML review queue: staff release or reject what a rule held. Money an AML rule flagged
//! waits in the owner's `held` account, or for a withdrawal in the withdrawals hold.

use crate::Core;
use crate::deposits::*;
use crate::error::CoreError;
use crate::ledger::{
    Failure, MovementEvent, balance_of, conflict, leg, movement_event, notice, post, reason_text,
    scale_of, txn_view, with_retries,
};
use crate::rules::FlagView;
use crate::session::Auth;
use crate::withdrawals::*;
use etx_db::ledger::{NewTransaction, PLATFORM, Usage, account_id};
use etx_db::payments::{FlagRow, HeldTransferRow};
use etx_db::{Batch, DatabaseTransaction, Db};
use etx_domain::AccountKind;
use etx_domain::format_amount;
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
        state.events.movements(events);
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
                            leg(&d.user_id, AccountKind::Held, -d.held),
                            leg(&d.user_id, AccountKind::Wallet, d.held),
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
                            &account_id(&d.user_id, AccountKind::Wallet, &d.pay_currency),
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
                            leg(&d.user_id, AccountKind::Held, -d.held),
                            leg(PLATFORM, AccountKind::DepositsClearing, d.held),
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

pub(crate) async fn settle_transfer(
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
            leg(&t.sender_id, AccountKind::Held, -t.amount),
            leg(to_owner, AccountKind::Wallet, t.amount),
        ],
    )
    .await?;
    let balance = balance_of(
        &balances,
        &account_id(to_owner, AccountKind::Wallet, &t.asset),
    )?;
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
