-- Double-entry ledger. A balance is the sum of an account's postings; `balance` caches it and is
-- only ever changed in the same transaction that inserts the postings.
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY,
    -- The owning user's id, or '' for platform accounts.
    owner_id TEXT NOT NULL,
    -- 'wallet' for users; platform: 'deposits_clearing', 'withdrawals_hold', 'fees',
    -- 'trading_inventory', 'equity'.
    kind TEXT NOT NULL,
    asset TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    allow_negative BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT ledger_accounts_owner_kind_asset_key UNIQUE (owner_id, kind, asset)
);

CREATE TABLE journal_entries (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    memo TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX journal_entries_created_idx ON journal_entries (created_at);

CREATE TABLE postings (
    id TEXT PRIMARY KEY,
    entry_id TEXT NOT NULL REFERENCES journal_entries (id),
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX postings_entry_idx ON postings (entry_id);
CREATE INDEX postings_account_idx ON postings (account_id);

-- What each user sees in their history: one row per side of a movement.
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    direction TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    counterparty_id TEXT,
    note TEXT,
    entry_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX transactions_user_created_idx ON transactions (user_id, created_at, id);

-- Money POSTs by key: the first response is stored in the same transaction as the movement, so
-- a replay either finds it or finds nothing was done.
CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    scope TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- USD-equivalent (in cents) each user has sent per UTC day, for the daily cap.
CREATE TABLE transfer_usage (
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    used_cents BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
)
