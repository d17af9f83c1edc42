-- Prices are integers: USD with 8 decimal places ("e8"), like every amount in the system.
-- Raw ticks, at most one per symbol and second, kept for a short while.
CREATE TABLE price_ticks (
    symbol TEXT NOT NULL,
    at BIGINT NOT NULL,
    price BIGINT NOT NULL,
    PRIMARY KEY (symbol, at)
);

-- OHLC candles per span ('1m', '5m', '1h', '1d'); `start` is the span's first
-- microsecond. The primary key serves every history query (symbol, span, time range).
CREATE TABLE candles (
    symbol TEXT NOT NULL,
    span TEXT NOT NULL,
    start BIGINT NOT NULL,
    open BIGINT NOT NULL,
    high BIGINT NOT NULL,
    low BIGINT NOT NULL,
    close BIGINT NOT NULL,
    ticks BIGINT NOT NULL,
    PRIMARY KEY (symbol, span, start)
)
