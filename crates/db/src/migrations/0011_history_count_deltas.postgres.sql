CREATE OR REPLACE FUNCTION etx_count_inserted_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transaction_count_deltas (user_id, n)
    SELECT user_id, COUNT(*) FROM inserted GROUP BY user_id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION etx_count_deleted_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transaction_count_deltas (user_id, n)
    SELECT user_id, -COUNT(*) FROM deleted GROUP BY user_id;
    RETURN NULL;
END
$$;
