CREATE TRIGGER transactions_count_insert AFTER INSERT ON transactions BEGIN
    INSERT OR IGNORE INTO transaction_counts (user_id, n) VALUES (NEW.user_id, 0);
    UPDATE transaction_counts SET n = n + 1 WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER transactions_count_delete AFTER DELETE ON transactions BEGIN
    UPDATE transaction_counts SET n = n - 1 WHERE user_id = OLD.user_id;
END;
