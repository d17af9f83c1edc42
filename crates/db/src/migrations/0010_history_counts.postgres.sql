-- History rows arrive many at a time (a group of transfers writes all of its rows in one
-- statement), so the per-user counters are bumped once per statement and user instead of once
-- per row, each run of a row trigger being a query of its own. Users are taken in id order, so
-- concurrent statements lock counter rows in one order.
DROP TRIGGER transactions_count ON transactions;
DROP FUNCTION etx_count_transactions();
CREATE FUNCTION etx_count_inserted_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transaction_counts (user_id, n)
    SELECT user_id, COUNT(*) FROM inserted GROUP BY user_id ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET n = transaction_counts.n + excluded.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION etx_count_deleted_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transaction_counts c SET n = c.n - d.n
    FROM (SELECT user_id, COUNT(*) AS n FROM deleted GROUP BY user_id) d
    WHERE c.user_id = d.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER transactions_count_insert AFTER INSERT ON transactions
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION etx_count_inserted_transactions();
CREATE TRIGGER transactions_count_delete AFTER DELETE ON transactions
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION etx_count_deleted_transactions();
