//! The kinds of ledger account. A user owns a wallet and a held account per asset; the
//! platform owns the rest. Which of them may run below zero is a rule of the ledger, stated
//! once here.

crate::names! {
    pub enum AccountKind {
        /// A user's spendable balance.
        Wallet = "wallet",
        /// A user's money waiting for an AML decision.
        Held = "held",
        /// The platform's own funds; admin adjustments move money from and to it.
        Equity = "equity",
        /// Where deposits enter from the outside world.
        DepositsClearing = "deposits_clearing",
        /// Requested withdrawals until staff complete, reject or the user cancels them.
        WithdrawalsHold = "withdrawals_hold",
        /// Where completed withdrawals leave to the outside world.
        WithdrawalsClearing = "withdrawals_clearing",
        /// Fees earned: of withdrawals and of trades.
        Fees = "fees",
        /// The platform's position in an asset as every order's counterparty: what users
        /// bought from it (negative) and sold to it (positive).
        TradingInventory = "trading_inventory",
        /// A user's funds reserved by their open limit and stop orders.
        OrdersHold = "orders_hold",
        /// Paid deposits whose owner no longer exists, until an admin resolves them.
        Suspense = "suspense",
    }
}

impl AccountKind {
    /// Accounts that face the outside world (the clearing accounts) or carry the platform's
    /// own position (equity) run negative by design; every other balance, a user's above all,
    /// never goes below zero.
    pub fn may_go_negative(self) -> bool {
        matches!(
            self,
            AccountKind::Equity
                | AccountKind::DepositsClearing
                | AccountKind::WithdrawalsClearing
                | AccountKind::TradingInventory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::AccountKind;

    #[test]
    fn names_read_back_and_only_platform_positions_go_negative() {
        for &k in AccountKind::ALL {
            assert_eq!(AccountKind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(AccountKind::parse("savings"), None);
        let negative: Vec<_> = AccountKind::ALL
            .iter()
            .filter(|k| k.may_go_negative())
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            negative,
            [
                "equity",
                "deposits_clearing",
                "withdrawals_clearing",
                "trading_inventory"
            ]
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
        /// One side of a filled order: the asset paid or the asset received.
        Trade = "trade",
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
        /// A filled order: both of the pair's assets in one entry.
        Trade = "trade",
        /// An open order's funds moved from the wallet into the orders hold.
        OrderHold = "order_hold",
        /// What an order still held, back to the wallet when it is cancelled or expires.
        OrderRelease = "order_release",
    }
}
