-- Deposits through a payment provider. `status` is the provider's, and only moves forward
-- (`status_rank`); money moves once, when `credit_state` leaves 'none'.
CREATE TABLE deposits (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_payment_id TEXT,
    -- What the user asked to deposit, in USD cents.
    price_amount BIGINT NOT NULL,
    pay_currency TEXT NOT NULL,
    -- In minor units of pay_currency.
    pay_amount BIGINT NOT NULL,
    pay_address TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    actually_paid BIGINT NOT NULL DEFAULT 0,
    -- 'none', 'held' (AML review), 'credited', 'rejected'.
    credit_state TEXT NOT NULL DEFAULT 'none',
    -- Minor units moved out of deposits clearing for this deposit so far (less any returned).
    credited BIGINT NOT NULL DEFAULT 0,
    -- Of those, what waits in the owner's held account for a review.
    held BIGINT NOT NULL DEFAULT 0,
    transaction_id TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deposits_user_created_idx ON deposits (user_id, created_at);
CREATE UNIQUE INDEX deposits_provider_payment_idx ON deposits (provider, provider_payment_id);

-- Every notification a provider sent, signed or not, and what came of it.
CREATE TABLE payment_webhooks (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    signature_ok BOOLEAN NOT NULL,
    order_id TEXT,
    payment_status TEXT,
    body TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX payment_webhooks_order_idx ON payment_webhooks (order_id, received_at);

CREATE TABLE withdrawals (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    -- Minor units sent to the address; the fee is on top, and both sit in the hold account.
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    usd_cents BIGINT NOT NULL,
    address TEXT NOT NULL,
    -- 'held' (AML review), 'pending', 'pending_approval', 'processing', 'completed',
    -- 'rejected', 'cancelled'.
    status TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    approvals INTEGER NOT NULL DEFAULT 0,
    tx_hash TEXT,
    reason TEXT,
    transaction_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX withdrawals_user_created_idx ON withdrawals (user_id, created_at);
CREATE INDEX withdrawals_status_created_idx ON withdrawals (status, created_at);

CREATE TABLE withdrawal_approvals (
    withdrawal_id TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    note TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (withdrawal_id, staff_id)
);

CREATE TABLE withdrawal_usage (
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    used_cents BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- Operations an AML rule flagged. The money stays held until staff release or reject it.
CREATE TABLE aml_flags (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- 'deposit', 'withdrawal' or 'transfer', and its id.
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    details TEXT NOT NULL,
    -- 'open', 'released', 'rejected'.
    status TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX aml_flags_status_created_idx ON aml_flags (status, created_at);
CREATE UNIQUE INDEX aml_flags_subject_idx ON aml_flags (subject_type, subject_id);

-- P2P transfers held for review: the sender's money sits in their 'held' account until then.
CREATE TABLE held_transfers (
    id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    note TEXT,
    transaction_id TEXT NOT NULL,
    status TEXT NOT NULL,
    -- What it counted against the sender's daily cap, given back if it is rejected.
    usd_cents BIGINT NOT NULL,
    day BIGINT NOT NULL,
    created_at BIGINT NOT NULL
)
