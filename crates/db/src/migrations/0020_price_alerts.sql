-- Price alerts. `above` and `below` fire while the price is at or past `price` (quote USD
-- × 10^8); `move` fires when the price moved `move_bps` or more, either way, within
-- `window_secs`. A repeating alert fires again no sooner than `cooldown_secs` after it last
-- did; a one-off one is inactive once it fired.
CREATE TABLE price_alerts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    price BIGINT,
    move_bps BIGINT,
    window_secs BIGINT,
    repeats BOOLEAN NOT NULL,
    cooldown_secs BIGINT NOT NULL,
    active BOOLEAN NOT NULL,
    fired_at BIGINT,
    fired_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX price_alerts_user_idx ON price_alerts (user_id, created_at, id);
-- Each instance's evaluator loads the active alerts at start and picks up new ones by time.
CREATE INDEX price_alerts_active_idx ON price_alerts (created_at, id) WHERE active;
