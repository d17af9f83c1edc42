//! The states of a deposit as the payment provider reports them, in the order they may
//! follow each other: a notification never moves a deposit to a lower rank (a late
//! `confirming` after `finished` is ignored), and at one rank only a larger partial payment
//! counts.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepositStatus {
    Waiting,
    Expired,
    Confirming,
    Confirmed,
    Sending,
    PartiallyPaid,
    Failed,
    Refunded,
    Finished,
}

impl DepositStatus {
    pub const ALL: [DepositStatus; 9] = [
        DepositStatus::Waiting,
        DepositStatus::Expired,
        DepositStatus::Confirming,
        DepositStatus::Confirmed,
        DepositStatus::Sending,
        DepositStatus::PartiallyPaid,
        DepositStatus::Failed,
        DepositStatus::Refunded,
        DepositStatus::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DepositStatus::Waiting => "waiting",
            DepositStatus::Expired => "expired",
            DepositStatus::Confirming => "confirming",
            DepositStatus::Confirmed => "confirmed",
            DepositStatus::Sending => "sending",
            DepositStatus::PartiallyPaid => "partially_paid",
            DepositStatus::Failed => "failed",
            DepositStatus::Refunded => "refunded",
            DepositStatus::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<DepositStatus> {
        DepositStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

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
    use super::DepositStatus;

    #[test]
    fn statuses_read_back_and_ranks_never_go_down_the_list() {
        let mut last = -1;
        for s in DepositStatus::ALL {
            assert_eq!(DepositStatus::parse(s.as_str()), Some(s));
            assert!(s.rank() >= last, "{s:?}");
            last = s.rank();
        }
        assert_eq!(DepositStatus::parse("FINISHED"), None);
        assert_eq!(DepositStatus::Failed.rank(), DepositStatus::Refunded.rank());
        assert!(DepositStatus::Finished.rank() > DepositStatus::PartiallyPaid.rank());
    }
}
