-- An account's id is derived from (owner, kind, asset), so the primary key already keeps the
-- triple unique. A second unique index made two first credits of the same new account race:
-- the upsert's ON CONFLICT (id) covers one index only, and the loser could fail on the other.
-- The triple keeps a plain index for owner lookups; `etx ledger verify` checks every id
-- against its triple.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_owner_kind_asset_key;
CREATE INDEX ledger_accounts_owner_idx ON ledger_accounts (owner_id, kind, asset);
