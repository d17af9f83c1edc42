-- Additions to `transaction_counts` not yet folded into it. On PostgreSQL every statement that
-- writes history appends one row per user here instead of updating that user's counter, so
-- concurrent writers never wait on each other's counter rows; upkeep folds them in every
-- second or so. A total is the counter plus its pending rows, read in one statement.
CREATE TABLE transaction_count_deltas (
    user_id TEXT NOT NULL,
    n BIGINT NOT NULL
);
CREATE INDEX transaction_count_deltas_user_idx ON transaction_count_deltas (user_id)
