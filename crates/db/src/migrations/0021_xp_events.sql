-- Experience points, one row per award. A one-off award (`ref` = '') exists at most once per
-- user and kind; a repeating one is keyed by what earned it (a transfer's or a trade's history
-- row), so replaying an event never pays twice. `day` (days since 1970-01-01, UTC) serves the
-- daily caps and the weekly leaderboard; `users.exp` is the running sum, updated in the same
-- transaction as each row.
CREATE TABLE xp_events (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    points BIGINT NOT NULL,
    day BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX xp_events_key_idx ON xp_events (user_id, kind, ref);
CREATE INDEX xp_events_user_idx ON xp_events (user_id, created_at, id);
CREATE INDEX xp_events_day_idx ON xp_events (day, user_id);
