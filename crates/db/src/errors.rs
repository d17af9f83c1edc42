//! What kind of failure a database error is, decided by the driver's error code (SQLSTATE on
//! PostgreSQL, the extended result code on SQLite), never by the message text.

use sea_orm::sqlx::{self, error::DatabaseError};
use sea_orm::{DbErr, RuntimeErr};

/// The failures callers act on; everything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique or primary-key constraint refused the write. PostgreSQL names the constraint;
    /// SQLite does not (its message names the columns only), so there it is `None`.
    UniqueViolation {
        constraint: Option<String>,
    },
    /// PostgreSQL could not serialise the transaction (SQLSTATE 40001); retrying it may succeed.
    SerializationFailure,
    /// PostgreSQL broke a deadlock by aborting this transaction (SQLSTATE 40P01).
    Deadlock,
    /// SQLite could not get a lock in time (SQLITE_BUSY or SQLITE_LOCKED and their extended
    /// codes, e.g. BUSY_SNAPSHOT).
    Busy,
    /// The database could not be reached or went away: no connection within the pool's
    /// timeout, a broken socket, or PostgreSQL shutting down, starting up or out of
    /// connections (SQLSTATE class 08, 57P01-57P03, 53300). Nothing new was committed by
    /// this statement; a commit cut off this way may or may not have landed, which is what
    /// idempotency keys answer on the retry.
    Unreachable,
    /// PostgreSQL refused a value the client sent: text with a NUL character (SQLSTATE 22021)
    /// or one it cannot encode (22P05), a value too long to index (54000) or a number out of
    /// its column's range (22003). The statement changed nothing; the request is at fault, not
    /// the server.
    UnstorableValue,
    Other,
}

impl DbErrorKind {
    /// A conflict with a concurrent transaction: nothing was committed and the same work may
    /// succeed when run again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbErrorKind::SerializationFailure | DbErrorKind::Deadlock | DbErrorKind::Busy
        )
    }
}

// PostgreSQL SQLSTATEs.
const PG_UNIQUE_VIOLATION: &str = "23505";
const PG_SERIALIZATION_FAILURE: &str = "40001";
const PG_DEADLOCK_DETECTED: &str = "40P01";
/// admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections.
const PG_GONE: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];
/// character_not_in_repertoire, untranslatable_character, program_limit_exceeded,
/// numeric_value_out_of_range.
const PG_UNSTORABLE: [&str; 4] = ["22021", "22P05", "54000", "22003"];

// SQLite primary result codes; an extended code carries its primary code in the low byte.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// Classifies `err` by the code the database reported.
pub fn classify(err: &DbErr) -> DbErrorKind {
    let e = match err {
        DbErr::ConnectionAcquire(_) => return DbErrorKind::Unreachable,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(_) => return DbErrorKind::Unreachable,
        _ => return DbErrorKind::Other,
    };
    let d = match &**e {
        sqlx::Error::Database(d) => d,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => return DbErrorKind::Unreachable,
        _ => return DbErrorKind::Other,
    };
    if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        classify_postgres(d.as_ref())
    } else if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        classify_sqlite(d.as_ref())
    } else {
        DbErrorKind::Other
    }
}

fn classify_postgres(d: &dyn DatabaseError) -> DbErrorKind {
    match d.code().as_deref() {
        Some(PG_UNIQUE_VIOLATION) => DbErrorKind::UniqueViolation {
            constraint: d.constraint().map(str::to_string),
        },
        Some(PG_SERIALIZATION_FAILURE) => DbErrorKind::SerializationFailure,
        Some(PG_DEADLOCK_DETECTED) => DbErrorKind::Deadlock,
        Some(c) if c.starts_with("08") || PG_GONE.contains(&c) => DbErrorKind::Unreachable,
        Some(c) if PG_UNSTORABLE.contains(&c) => DbErrorKind::UnstorableValue,
        _ => DbErrorKind::Other,
    }
}

fn classify_sqlite(d: &dyn DatabaseError) -> DbErrorKind {
    let Some(code) = d.code().and_then(|c| c.parse::<i32>().ok()) else {
        return DbErrorKind::Other;
    };
    match code {
        SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY => {
            DbErrorKind::UniqueViolation { constraint: None }
        }
        c if c & 0xff == SQLITE_BUSY || c & 0xff == SQLITE_LOCKED => DbErrorKind::Busy,
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::{DbErrorKind, classify};
    use crate::Db;
    use sea_orm::{
        ConnectOptions, ConnectionTrait, Database, DbErr, IsolationLevel, SqliteTransactionMode,
        TransactionOptions, TransactionTrait,
    };
    use std::time::Duration;

    fn sqlite_path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("etx-errors-{}.db", uuid::Uuid::now_v7().simple()))
    }

    fn remove(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn errors_without_a_database_code_are_other() {
        assert_eq!(
            classify(&DbErr::Custom("could not serialize".into())),
            DbErrorKind::Other
        );
        assert_eq!(
            classify(&DbErr::RecordNotFound("gone".into())),
            DbErrorKind::Other
        );
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_reached_is_unreachable() {
        use sea_orm::{ConnAcquireErr, RuntimeErr, sqlx};
        assert_eq!(
            classify(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            DbErrorKind::Unreachable
        );
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            classify(&DbErr::Exec(RuntimeErr::SqlxError(io.into()))),
            DbErrorKind::Unreachable
        );
        // Nothing listens on this port: connecting is refused.
        let mut opts = ConnectOptions::new("postgres://postgres@127.0.0.1:1/none");
        opts.connect_timeout(std::time::Duration::from_secs(2));
        let e = Database::connect(opts).await.expect_err("no server there");
        assert_eq!(classify(&e), DbErrorKind::Unreachable, "{e:?}");
        assert!(!DbErrorKind::Unreachable.is_transient());
    }

    #[tokio::test]
    async fn sqlite_unique_violations_are_classified_by_code() {
        let path = sqlite_path();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 1)
            .await
            .unwrap();
        db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             CONSTRAINT t_name_key UNIQUE (name))",
            [],
        )
        .await
        .unwrap();
        db.execute("INSERT INTO t (id, name) VALUES (1, 'a')", [])
            .await
            .unwrap();
        let unique = db
            .execute("INSERT INTO t (id, name) VALUES (2, 'a')", [])
            .await
            .unwrap_err();
        assert_eq!(
            classify(&unique),
            DbErrorKind::UniqueViolation { constraint: None }
        );
        let primary = db
            .execute("INSERT INTO t (id, name) VALUES (1, 'b')", [])
            .await
            .unwrap_err();
        assert_eq!(
            classify(&primary),
            DbErrorKind::UniqueViolation { constraint: None }
        );
        let not_null = db
            .execute("INSERT INTO t (id, name) VALUES (3, NULL)", [])
            .await
            .unwrap_err();
        assert_eq!(classify(&not_null), DbErrorKind::Other);
        let syntax = db.execute("SELEC 1", []).await.unwrap_err();
        assert_eq!(classify(&syntax), DbErrorKind::Other);
        drop(db);
        remove(&path);
    }

    #[tokio::test]
    async fn sqlite_lock_contention_is_busy() {
        let path = sqlite_path();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        // Two pools on one file, the second without a busy timeout so that it fails at once.
        let first = Db::connect(&url, 1).await.unwrap();
        first
            .execute("CREATE TABLE t (id INTEGER)", [])
            .await
            .unwrap();
        let mut opts = ConnectOptions::new(url.clone());
        opts.max_connections(1).sqlx_logging(false);
        opts.map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let second = Database::connect(opts).await.unwrap();
        let holding = first.begin_write().await.unwrap();
        let immediate = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let busy = second.begin_with_options(immediate).await.unwrap_err();
        assert_eq!(classify(&busy), DbErrorKind::Busy, "{busy}");
        assert!(classify(&busy).is_transient());
        holding.rollback().await.unwrap();
        drop((first, second));
        remove(&path);
    }

    /// A connection to a schema of its own in the PostgreSQL database named by
    /// `TEST_DATABASE_URL`, or `None` when it is not set.
    async fn postgres() -> Option<Db> {
        let base = std::env::var("TEST_DATABASE_URL").ok()?;
        let url = Db::isolated_schema_url(&base).await.unwrap();
        let db = Db::connect(&url, 4).await.unwrap();
        db.execute(
            "CREATE TABLE t (id INT8 PRIMARY KEY, name TEXT NOT NULL, n INT8 NOT NULL DEFAULT 0, \
             CONSTRAINT t_name_key UNIQUE (name))",
            [],
        )
        .await
        .unwrap();
        db.execute("INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b')", [])
            .await
            .unwrap();
        Some(db)
    }

    #[tokio::test]
    async fn postgres_unique_violations_name_the_constraint() {
        let Some(db) = postgres().await else { return };
        let unique = db
            .execute("INSERT INTO t (id, name) VALUES (3, 'a')", [])
            .await
            .unwrap_err();
        assert_eq!(
            classify(&unique),
            DbErrorKind::UniqueViolation {
                constraint: Some("t_name_key".into())
            }
        );
        let primary = db
            .execute("INSERT INTO t (id, name) VALUES (1, 'c')", [])
            .await
            .unwrap_err();
        assert_eq!(
            classify(&primary),
            DbErrorKind::UniqueViolation {
                constraint: Some("t_pkey".into())
            }
        );
        let syntax = db.execute("SELEC 1", []).await.unwrap_err();
        assert_eq!(classify(&syntax), DbErrorKind::Other);
    }

    #[tokio::test]
    async fn postgres_concurrent_update_is_a_serialization_failure() {
        let Some(db) = postgres().await else { return };
        let opts = TransactionOptions {
            isolation_level: Some(IsolationLevel::RepeatableRead),
            ..Default::default()
        };
        let tx = db.conn().begin_with_options(opts).await.unwrap();
        // The snapshot is taken at the first statement.
        tx.execute_unprepared("SELECT n FROM t WHERE id = 1")
            .await
            .unwrap();
        db.execute("UPDATE t SET n = n + 1 WHERE id = 1", [])
            .await
            .unwrap();
        let err = tx
            .execute_unprepared("UPDATE t SET n = n + 1 WHERE id = 1")
            .await
            .unwrap_err();
        assert_eq!(classify(&err), DbErrorKind::SerializationFailure, "{err}");
        assert!(classify(&err).is_transient());
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn postgres_lock_cycle_is_a_deadlock() {
        let Some(db) = postgres().await else { return };
        let a = db.conn().begin().await.unwrap();
        let b = db.conn().begin().await.unwrap();
        a.execute_unprepared("UPDATE t SET n = 1 WHERE id = 1")
            .await
            .unwrap();
        b.execute_unprepared("UPDATE t SET n = 2 WHERE id = 2")
            .await
            .unwrap();
        // Each now waits for the other's row; PostgreSQL aborts one of them.
        let (ra, rb) = tokio::join!(
            a.execute_unprepared("UPDATE t SET n = 1 WHERE id = 2"),
            b.execute_unprepared("UPDATE t SET n = 2 WHERE id = 1"),
        );
        let err = match (ra, rb) {
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
            other => panic!("expected exactly one deadlock victim: {other:?}"),
        };
        assert_eq!(classify(&err), DbErrorKind::Deadlock, "{err}");
        assert!(classify(&err).is_transient());
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = a.rollback().await;
            let _ = b.rollback().await;
        })
        .await;
    }
}
