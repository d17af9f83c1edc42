-- Staff settings per trading pair ('BTC/USD'): a halt, and fee and spread overrides in basis
-- points (NULL: the `[trading]` defaults). A pair without a row trades on the defaults.
CREATE TABLE pair_settings (
    pair TEXT PRIMARY KEY,
    halted BOOLEAN NOT NULL,
    fee_bps BIGINT,
    spread_bps BIGINT,
    updated_by TEXT,
    updated_at BIGINT NOT NULL
)
