-- Limit and stop orders rest until the feed crosses their price, they are cancelled or they
-- expire. While open, `held` minor units of `held_asset` sit in the owner's orders hold:
-- a buy holds the quote asset (value and fee at the limit price, or at the stop price with a
-- margin), a sell holds the base amount. `price` is the limit or stop price while the order
-- is open and the price it filled at afterwards; `reason` says why an order did not fill.
ALTER TABLE orders ADD COLUMN trigger_price BIGINT;
ALTER TABLE orders ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN held_asset TEXT;
ALTER TABLE orders ADD COLUMN expires_at BIGINT;
ALTER TABLE orders ADD COLUMN reason TEXT;
-- The matcher loads open orders at start and picks up other instances' new ones by time.
CREATE INDEX orders_open_idx ON orders (created_at, id) WHERE status = 'open';
CREATE INDEX orders_user_open_idx ON orders (user_id) WHERE status = 'open';
