//! The states of a deposit as the payment provider reports them, in the order they may
//! follow each other: a notification never moves a deposit to a lower rank (a late
//! `confirming` after `finished` is ignored), and at one rank only a larger partial payment
//! counts.

crate::names! {
    pub enum DepositStatus {
        Waiting = "waiting",
        Expired = "expired",
        Confirming = "confirming",
        Confirmed = "confirmed",
        Sending = "sending",
        PartiallyPaid = "partially_paid",
        Failed = "failed",
        Refunded = "refunded",
        Finished = "finished",
    }
}

impl DepositStatus {
    /// The stored order (`deposits.status_rank`). Failed and refunded share a rank: both end
    /// a payment that did not go through, and neither may replace the other.
    pub fn rank(self) -> i32 {
        match self {
            DepositStatus::Waiting => 0,
            DepositStatus::Expired => 1,
            DepositStatus::Confirming => 2,
            DepositStatus::Confirmed => 3,
            DepositStatus::Sending => 4,
            DepositStatus::PartiallyPaid => 5,
            DepositStatus::Failed | DepositStatus::Refunded => 6,
            DepositStatus::Finished => 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CreditState, DepositStatus, WithdrawalStatus};

    #[test]
    fn statuses_read_back_and_ranks_never_go_down_the_list() {
        let mut last = -1;
        for &s in DepositStatus::ALL {
            assert_eq!(DepositStatus::parse(s.as_str()), Some(s));
            assert!(s.rank() >= last, "{s:?}");
            last = s.rank();
        }
        assert_eq!(DepositStatus::parse("FINISHED"), None);
        assert_eq!(DepositStatus::Failed.rank(), DepositStatus::Refunded.rank());
        assert!(DepositStatus::Finished.rank() > DepositStatus::PartiallyPaid.rank());
    }

    #[test]
    fn withdrawal_and_credit_states_read_back_and_only_the_ends_are_final() {
        for s in WithdrawalStatus::ALL {
            assert_eq!(WithdrawalStatus::parse(s.as_str()), Some(*s));
        }
        let finals: Vec<_> = WithdrawalStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                &WithdrawalStatus::Completed,
                &WithdrawalStatus::Rejected,
                &WithdrawalStatus::Cancelled
            ]
        );
        for s in CreditState::ALL {
            assert_eq!(CreditState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(CreditState::parse("Credited"), None);
    }
}

crate::names! {
    /// Where a withdrawal is. `Held` waits for an AML review; `Pending` and `PendingApproval`
    /// wait for staff approvals; `Processing` is approved and being paid out; the last three
    /// are final.
    pub enum WithdrawalStatus {
        Held = "held",
        Pending = "pending",
        PendingApproval = "pending_approval",
        Processing = "processing",
        Completed = "completed",
        Rejected = "rejected",
        Cancelled = "cancelled",
    }
}

impl WithdrawalStatus {
    /// Waiting for staff: the withdrawal queue's default view.
    pub const AWAITING_STAFF: [WithdrawalStatus; 3] = [
        WithdrawalStatus::Pending,
        WithdrawalStatus::PendingApproval,
        WithdrawalStatus::Processing,
    ];

    /// No later state follows.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            WithdrawalStatus::Completed | WithdrawalStatus::Rejected | WithdrawalStatus::Cancelled
        )
    }
}

crate::names! {
    /// What a deposit did with the money it received. `None` has credited nothing yet; `Held`
    /// waits in the owner's held account for an AML review; `Suspense` was paid after its owner
    /// was deleted and waits for staff.
    pub enum CreditState {
        None = "none",
        Held = "held",
        Credited = "credited",
        Rejected = "rejected",
        Suspense = "suspense",
    }
}
