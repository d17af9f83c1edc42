-- Admin balance adjustments worth at least [admin] adjust_approval_from_usd wait here until a
-- second admin approves them. The approval is a conditional UPDATE on status = 'pending' in
-- the same transaction as the ledger entry, so a double approval applies once.
CREATE TABLE adjustment_requests (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    -- Signed minor units: positive credits the user, negative debits.
    amount BIGINT NOT NULL,
    usd_cents BIGINT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    -- 'pending', 'applied', 'rejected'.
    status TEXT NOT NULL,
    decided_by TEXT,
    decision_note TEXT,
    entry_id TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX adjustment_requests_status_idx ON adjustment_requests (status, created_at);

-- Money that arrived for an owner who no longer exists (a deposit paid after its user was
-- deleted). It sits in the platform's suspense account of the asset until staff mark it
-- refunded or credit it to a user they choose, never dropped.
CREATE TABLE suspense_items (
    id TEXT PRIMARY KEY,
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    -- 'deposit' (source_id is the order id).
    source_type TEXT NOT NULL,
    source_id TEXT NOT NULL,
    -- Whom the money was meant for.
    owner_id TEXT,
    -- 'open', 'refunded', 'credited'.
    status TEXT NOT NULL,
    resolved_by TEXT,
    credited_to TEXT,
    note TEXT,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX suspense_items_status_idx ON suspense_items (status, created_at);

-- Unsigned notifications are no longer kept: anyone could send them.
DELETE FROM payment_webhooks WHERE signature_ok = FALSE;
