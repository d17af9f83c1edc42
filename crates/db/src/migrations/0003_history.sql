-- Transactions per user, so a history page's total is one row read however long the history.
-- Kept by a trigger on `transactions` (see 0003_history.*.sql), so it cannot drift.
CREATE TABLE transaction_counts (
    user_id TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO transaction_counts (user_id, n)
SELECT user_id, COUNT(*) FROM transactions GROUP BY user_id
