-- What each history row's amount was worth in US cents when it moved; a fill's rows carry
-- what was paid or received for them. The portfolio's average-cost basis and realised P&L are
-- computed from these. Rows from before this column have none and count at today's price.
ALTER TABLE transactions ADD COLUMN usd_value BIGINT
