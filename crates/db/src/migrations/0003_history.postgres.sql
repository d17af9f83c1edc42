CREATE FUNCTION etx_count_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO transaction_counts (user_id, n) VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET n = transaction_counts.n + 1;
    ELSE
        UPDATE transaction_counts SET n = n - 1 WHERE user_id = OLD.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER transactions_count AFTER INSERT OR DELETE ON transactions
FOR EACH ROW EXECUTE FUNCTION etx_count_transactions();
