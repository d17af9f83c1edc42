//! The kinds of ledger account. A user owns a wallet and a held account per asset; the
//! platform owns the rest. Which of them may run below zero is a rule of the ledger, stated
//! once here.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A user's spendable balance.
    Wallet,
    /// A user's money waiting for an AML decision.
    Held,
    /// The platform's own funds; admin adjustments move money from and to it.
    Equity,
    /// Where deposits enter from the outside world.
    DepositsClearing,
    /// Requested withdrawals until staff complete, reject or the user cancels them.
    WithdrawalsHold,
    /// Where completed withdrawals leave to the outside world.
    WithdrawalsClearing,
    /// Withdrawal fees earned.
    Fees,
    /// Paid deposits whose owner no longer exists, until an admin resolves them.
    Suspense,
}

impl AccountKind {
    pub const ALL: [AccountKind; 8] = [
        AccountKind::Wallet,
        AccountKind::Held,
        AccountKind::Equity,
        AccountKind::DepositsClearing,
        AccountKind::WithdrawalsHold,
        AccountKind::WithdrawalsClearing,
        AccountKind::Fees,
        AccountKind::Suspense,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Held => "held",
            AccountKind::Equity => "equity",
            AccountKind::DepositsClearing => "deposits_clearing",
            AccountKind::WithdrawalsHold => "withdrawals_hold",
            AccountKind::WithdrawalsClearing => "withdrawals_clearing",
            AccountKind::Fees => "fees",
            AccountKind::Suspense => "suspense",
        }
    }

    pub fn parse(s: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Accounts that face the outside world (the clearing accounts) or carry the platform's
    /// own position (equity) run negative by design; every other balance, a user's above all,
    /// never goes below zero.
    pub fn may_go_negative(self) -> bool {
        matches!(
            self,
            AccountKind::Equity | AccountKind::DepositsClearing | AccountKind::WithdrawalsClearing
        )
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AccountKind;

    #[test]
    fn names_read_back_and_only_platform_positions_go_negative() {
        for k in AccountKind::ALL {
            assert_eq!(AccountKind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(AccountKind::parse("savings"), None);
        let negative: Vec<_> = AccountKind::ALL
            .into_iter()
            .filter(|k| k.may_go_negative())
            .map(AccountKind::as_str)
            .collect();
        assert_eq!(
            negative,
            ["equity", "deposits_clearing", "withdrawals_clearing"]
        );
    }
}

crate::names! {
    /// A row of a user's transaction history, as `GET /api/transactions` names its `type`.
    pub enum TxKind {
        P2p = "p2p",
        Deposit = "deposit",
        Withdrawal = "withdrawal",
        Refund = "refund",
        Adjustment = "adjustment",
    }
}

crate::names! {
    /// What a journal entry records; `etx ledger verify` and the audit of an entry read it.
    pub enum EntryKind {
        P2p = "p2p",
        /// A flagged transfer's money moved into the sender's held account.
        P2pHold = "p2p_hold",
        /// A held transfer rejected in review, back to the sender.
        P2pReturn = "p2p_return",
        Deposit = "deposit",
        DepositRelease = "deposit_release",
        DepositReturn = "deposit_return",
        DepositSuspense = "deposit_suspense",
        SuspenseRefund = "suspense_refund",
        SuspenseCredit = "suspense_credit",
        WithdrawalHold = "withdrawal_hold",
        WithdrawalRefund = "withdrawal_refund",
        Withdrawal = "withdrawal",
        Adjustment = "adjustment",
    }
}
