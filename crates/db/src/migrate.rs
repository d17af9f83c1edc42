//! Forward-only migrations embedded in the binary. The SQL is written once in a portable subset
//! (TEXT, BIGINT, INTEGER, BOOLEAN) so the same files serve SQLite and PostgreSQL. What has no
//! common syntax, or is needed on one database only, comes in a file per database, run after
//! the common one: triggers (history counters), and PostgreSQL-only schema changes where
//! concurrent writers need them (0009 drops a unique index that only PostgreSQL could race on),
//! so the two schemas are not identical.

use crate::{Db, DbKind};
use anyhow::Context;
use sea_orm::ConnectionTrait;

struct Migration {
    version: i64,
    name: &'static str,
    /// Split on `;` and run statement by statement.
    common: &'static str,
    /// Run whole (bodies contain `;`).
    postgres: &'static str,
    sqlite: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts",
        common: include_str!("migrations/0001_accounts.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 2,
        name: "ledger",
        common: include_str!("migrations/0002_ledger.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 3,
        name: "history",
        common: include_str!("migrations/0003_history.sql"),
        postgres: include_str!("migrations/0003_history.postgres.sql"),
        sqlite: include_str!("migrations/0003_history.sqlite.sql"),
    },
    Migration {
        version: 4,
        name: "audit",
        common: include_str!("migrations/0004_audit.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 5,
        name: "security",
        common: include_str!("migrations/0005_security.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 6,
        name: "market",
        common: include_str!("migrations/0006_market.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 7,
        name: "notifications",
        common: include_str!("migrations/0007_notifications.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 8,
        name: "payments",
        common: include_str!("migrations/0008_payments.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 9,
        name: "account keys",
        common: "",
        // SQLite has one writer at a time, so the race this fixes cannot happen there.
        postgres: include_str!("migrations/0009_account_keys.postgres.sql"),
        sqlite: "",
    },
    Migration {
        version: 10,
        name: "history counts per statement",
        common: "",
        // SQLite has no statement-level triggers; its row trigger is a function call, not a query.
        postgres: include_str!("migrations/0010_history_counts.postgres.sql"),
        sqlite: "",
    },
    Migration {
        version: 11,
        name: "history count deltas",
        common: include_str!("migrations/0011_history_count_deltas.sql"),
        // SQLite has one writer at a time: its row trigger keeps updating the counter itself.
        postgres: include_str!("migrations/0011_history_count_deltas.postgres.sql"),
        sqlite: "",
    },
    Migration {
        version: 12,
        name: "adjustment approvals and suspense",
        common: include_str!("migrations/0012_adjustments_and_suspense.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 13,
        name: "session edges",
        common: include_str!("migrations/0013_session_edges.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 14,
        name: "file workspace",
        common: include_str!("migrations/0014_files.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 15,
        name: "processing jobs",
        common: include_str!("migrations/0015_jobs.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 16,
        name: "platform settings",
        common: include_str!("migrations/0016_platform_settings.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 17,
        name: "job parameters",
        common: include_str!("migrations/0017_job_params.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 18,
        name: "orders",
        common: include_str!("migrations/0018_orders.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 19,
        name: "resting_orders",
        common: include_str!("migrations/0019_resting_orders.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 20,
        name: "price_alerts",
        common: include_str!("migrations/0020_price_alerts.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 21,
        name: "xp_events",
        common: include_str!("migrations/0021_xp_events.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 22,
        name: "transaction_usd_value",
        common: include_str!("migrations/0022_transaction_usd_value.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 23,
        name: "pair_settings",
        common: include_str!("migrations/0023_pair_settings.sql"),
        postgres: "",
        sqlite: "",
    },
    Migration {
        version: 24,
        name: "alert_email",
        common: include_str!("migrations/0024_alert_email.sql"),
        postgres: "",
        sqlite: "",
    },
];

pub async fn run(db: &Db) -> anyhow::Result<()> {
    db.conn()
        .execute_unprepared(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("creating schema_migrations")?;
    for m in MIGRATIONS {
        let (version, name, sql) = (m.version, m.name, m.common);
        let tx = db.begin_write().await?;
        let done = tx
            .query_one_raw(db.stmt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                [version.into()],
            ))
            .await?
            .is_some();
        if done {
            tx.rollback().await?;
            continue;
        }
        // Comments may contain semicolons, so they go before the file is split into statements.
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            tx.execute_unprepared(statement)
                .await
                .with_context(|| format!("migration {version} ({name}) failed at: {statement}"))?;
        }
        let dialect = match db.kind() {
            DbKind::Postgres => m.postgres,
            DbKind::Sqlite => m.sqlite,
        };
        if !dialect.trim().is_empty() {
            tx.execute_unprepared(dialect)
                .await
                .with_context(|| format!("migration {version} ({name}) failed"))?;
        }
        tx.execute_raw(db.stmt(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            [version.into(), name.into(), crate::now_micros().into()],
        ))
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "migration applied");
    }
    Ok(())
}
