-- Orders against the platform. A market order is filled in the transaction that creates it;
-- `entry_id` is its journal entry. A quote fills at most one order.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    base_asset TEXT NOT NULL,
    quote_asset TEXT NOT NULL,
    side TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    -- Base asset minor units.
    amount BIGINT NOT NULL,
    -- Quote asset per base unit × 10^8, spread included.
    price BIGINT NOT NULL,
    -- Quote asset minor units: amount × price, the fee, what the user paid or received.
    value BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    total BIGINT NOT NULL,
    quote_id TEXT,
    entry_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at, id);
CREATE UNIQUE INDEX orders_quote_idx ON orders (quote_id);
