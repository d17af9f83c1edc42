//! Stored market data: recent raw ticks and OHLC candles. Prices are USD in units of 1e-8.

use crate::Db;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickRow<'a> {
    pub symbol: &'a str,
    pub at: i64,
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct CandleRow {
    pub symbol: String,
    pub span: String,
    pub start: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub ticks: i64,
}

/// Rows per multi-row statement; keeps every statement well under both backends' parameter
/// limits.
const CHUNK: usize = 200;

fn values_list(rows: usize, cols: usize) -> String {
    let mut s = String::new();
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * cols + c + 1));
        }
        s.push(')');
    }
    s
}

impl Db {
    /// Stores ticks; a second tick for the same symbol and microsecond is ignored.
    pub async fn insert_ticks(&self, ticks: &[TickRow<'_>]) -> Result<(), DbErr> {
        for chunk in ticks.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO price_ticks (symbol, at, price) VALUES {} \
                 ON CONFLICT (symbol, at) DO NOTHING",
                values_list(chunk.len(), 3)
            );
            let values: Vec<Value> = chunk
                .iter()
                .flat_map(|t| [t.symbol.into(), t.at.into(), t.price.into()])
                .collect();
            self.conn().execute_raw(self.stmt(&sql, values)).await?;
        }
        Ok(())
    }

    /// Merges partial candles into the stored ones: the first open stays, highs and lows widen,
    /// the later close wins. Instances that each see ticks can merge into the same rows.
    pub async fn merge_candles(&self, candles: &[CandleRow]) -> Result<(), DbErr> {
        self.write_candles(
            candles,
            "DO UPDATE SET \
             high = CASE WHEN excluded.high > candles.high THEN excluded.high \
               ELSE candles.high END, \
             low = CASE WHEN excluded.low < candles.low THEN excluded.low \
               ELSE candles.low END, \
             close = excluded.close, ticks = candles.ticks + excluded.ticks",
        )
        .await
    }

    /// Stores candles where none is stored yet; existing ones (recorded from live ticks, or
    /// written by another instance) stay as they are.
    pub async fn insert_missing_candles(&self, candles: &[CandleRow]) -> Result<(), DbErr> {
        self.write_candles(candles, "DO NOTHING").await
    }

    /// Multi-row inserts of `candles`, `on_conflict` deciding what happens to a stored one.
    async fn write_candles(&self, candles: &[CandleRow], on_conflict: &str) -> Result<(), DbErr> {
        for chunk in candles.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO candles (symbol, span, start, open, high, low, close, ticks) \
                 VALUES {} ON CONFLICT (symbol, span, start) {on_conflict}",
                values_list(chunk.len(), 8)
            );
            let values: Vec<Value> = chunk
                .iter()
                .flat_map(|c| {
                    [
                        c.symbol.clone().into(),
                        c.span.clone().into(),
                        c.start.into(),
                        c.open.into(),
                        c.high.into(),
                        c.low.into(),
                        c.close.into(),
                        c.ticks.into(),
                    ]
                })
                .collect();
            self.conn().execute_raw(self.stmt(&sql, values)).await?;
        }
        Ok(())
    }

    /// Candles of one span in `[from, to)`, oldest first, at most `limit`.
    pub async fn candles(
        &self,
        symbol: &str,
        span: &str,
        from: i64,
        to: i64,
        limit: u64,
    ) -> Result<Vec<CandleRow>, DbErr> {
        // The newest `limit` in range, returned oldest first.
        CandleRow::find_by_statement(self.stmt(
            "SELECT * FROM (SELECT symbol, span, start, open, high, low, close, ticks \
             FROM candles WHERE symbol = $1 AND span = $2 AND start >= $3 AND start < $4 \
             ORDER BY start DESC LIMIT $5) recent ORDER BY start",
            [
                symbol.into(),
                span.into(),
                from.into(),
                to.into(),
                (limit as i64).into(),
            ],
        ))
        .all(self.conn())
        .await
    }

    /// Removes ticks older than `tick_cutoff` and candles of `span` older than its cutoff.
    pub async fn purge_market(
        &self,
        tick_cutoff: i64,
        candle_cutoffs: &[(&str, i64)],
    ) -> Result<u64, DbErr> {
        let mut n = self
            .conn()
            .execute_raw(self.stmt(
                "DELETE FROM price_ticks WHERE at < $1",
                [tick_cutoff.into()],
            ))
            .await?
            .rows_affected();
        for (span, cutoff) in candle_cutoffs {
            n += self
                .conn()
                .execute_raw(self.stmt(
                    "DELETE FROM candles WHERE span = $1 AND start < $2",
                    [(*span).into(), (*cutoff).into()],
                ))
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}
