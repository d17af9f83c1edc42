//! Opening the database: SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL a pool.
//! Writers on SQLite start IMMEDIATE transactions so two writers queue instead of failing.

use crate::sql::{Render, Stmt};
use anyhow::Context;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionOptions, TransactionTrait, Value,
};
use std::fmt::Write;
use std::time::Duration;

/// sqlx 0.9.0 no longer sets TCP_NODELAY on its sockets (launchbadge/sqlx#4335; fixed upstream,
/// not yet released). A statement too large for the socket's first send then waits for
/// PostgreSQL's delayed ACK, ~40 ms, which is fatal to a transfer group's one big statement.
/// Until a release has the fix, every new pool connection turns Nagle off on the process's TCP
/// sockets connected to the database's port (found through /proc/self/fd); doing it to a
/// socket that already has it, or to another connection to the same port, is harmless.
#[allow(unsafe_code)]
mod nodelay {
    #[cfg(target_os = "linux")]
    pub fn to_port(port: u16) {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            if is_socket && peer_port(fd) == Some(port) {
                let on: libc::c_int = 1;
                // SAFETY: plain syscalls on an integer descriptor with a correctly sized
                // option value; if the descriptor was closed meanwhile they fail with EBADF.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&on as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn peer_port(fd: i32) -> Option<u16> {
        // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len` bytes.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc = unsafe {
            libc::getpeername(
                fd,
                (&mut addr as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // The port sits at the same offset, in network byte order, in both address families.
        match i32::from(addr.ss_family) {
            libc::AF_INET | libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in or sockaddr_in6.
                let sin: &libc::sockaddr_in =
                    unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
                Some(u16::from_be(sin.sin_port))
            }
            _ => None,
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn to_port(_port: u16) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    kind: DbKind,
    pub(crate) sessions: std::sync::Arc<crate::sessions::SessionCache>,
    /// Keys the audit chain (HMAC-SHA256); derived from the server secret by the caller.
    pub(crate) audit_key: Option<std::sync::Arc<[u8; 32]>>,
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Db::connect_with(url, max_connections, Duration::from_secs(10)).await
    }

    /// As `connect`, with how long a caller waits for a connection before the pool gives up
    /// (an error `classify` calls `Unreachable`).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Db> {
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbKind::Postgres
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres:");
        };
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false)
            .acquire_timeout(acquire_timeout)
            .connect_timeout(Duration::from_secs(10));
        match kind {
            DbKind::Sqlite => {
                opts.max_connections(max_connections.min(8))
                    .min_connections(1);
                opts.map_sqlx_sqlite_opts(|o| {
                    o.create_if_missing(true)
                        .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                });
            }
            DbKind::Postgres => {
                opts.max_connections(max_connections).min_connections(1);
                let port = url
                    .parse::<sea_orm::sqlx::postgres::PgConnectOptions>()
                    .map(|o| o.get_port())
                    .unwrap_or(5432);
                opts.map_sqlx_postgres_pool_opts(move |p| {
                    p.after_connect(move |_, _| {
                        Box::pin(async move {
                            nodelay::to_port(port);
                            Ok(())
                        })
                    })
                });
            }
        }
        let conn = Database::connect(opts)
            .await
            .with_context(|| format!("cannot connect to the {kind:?} database"))?;
        Ok(Db {
            conn,
            kind,
            sessions: Default::default(),
            audit_key: None,
        })
    }

    /// Creates an empty schema in the PostgreSQL database at `base_url` and returns a URL whose
    /// connections use it, so concurrent test runs never see each other's rows.
    pub async fn isolated_schema_url(base_url: &str) -> anyhow::Result<String> {
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let db = Db::connect(base_url, 1).await?;
        db.execute(&format!("CREATE SCHEMA {schema}"), []).await?;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{base_url}{sep}options=-c%20search_path%3D{schema}"
        ))
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        match self.kind {
            DbKind::Sqlite => DbBackend::Sqlite,
            DbKind::Postgres => DbBackend::Postgres,
        }
    }

    /// A statement with `$n` placeholders, which both backends accept.
    pub fn stmt(&self, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// Begins a transaction that will write; on SQLite it takes the write lock up front.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        let mut o = TransactionOptions::default();
        if self.kind == DbKind::Sqlite {
            o.sqlite_transaction_mode = Some(sea_orm::SqliteTransactionMode::Immediate);
        }
        self.conn.begin_with_options(o).await
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        crate::migrate::run(self).await
    }

    /// Runs a write. A write that changed a row may have changed a user or session, so cached
    /// sessions and recipients are dropped.
    pub async fn execute(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<u64, DbErr> {
        let cleared = self.sessions.clear_on_drop();
        let n = self
            .conn
            .execute_raw(self.stmt(sql, values))
            .await?
            .rows_affected();
        if n == 0 {
            // Nothing changed (a login resetting a counter already at zero): nothing cached
            // is stale, here or on other instances.
            std::mem::forget(cleared);
        }
        Ok(n)
    }

    /// Audit records chained from now on are keyed with `key`, and verification checks them with
    /// it, so a consistent rewrite of the chain needs the server secret, not only write access.
    pub fn with_audit_key(mut self, key: [u8; 32]) -> Self {
        self.audit_key = Some(std::sync::Arc::new(key));
        self
    }

    /// Keeps looked-up sessions for up to `ttl` (zero disables). Only safe while every write to
    /// users and sessions goes through this process (a single instance), or while the other
    /// instances' clears reach this one (`clear_sessions_from_elsewhere`).
    pub fn with_session_cache(self, ttl: Duration) -> Self {
        self.sessions.set_ttl(ttl);
        self
    }

    /// Changes how long sessions are kept (zero disables), dropping what is cached.
    pub fn set_session_cache_ttl(&self, ttl: Duration) {
        self.sessions.set_ttl(ttl);
    }

    /// `tell` runs after each clear of cached sessions caused by a write of this process
    /// (logout, suspension, a password or role change). Set once.
    pub fn on_session_clear(&self, tell: impl Fn() + Send + Sync + 'static) {
        let _ = self.sessions.on_clear.set(Box::new(tell));
    }

    /// How many clears this process's writes have caused so far.
    pub fn session_clears(&self) -> u64 {
        self.sessions
            .local_clears
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Another instance changed a user or a session: drop what is cached here too.
    pub fn clear_sessions_from_elsewhere(&self) {
        self.sessions.forget();
    }
}

/// Statements queued to run together at the end of a write transaction. On PostgreSQL they go as
/// ONE statement (data-modifying CTEs), so a movement's entry, postings, history rows, audit
/// record and idempotency answer cost one round trip; on SQLite, where a statement is a
/// function call rather than a round trip, they run one by one.
#[derive(Default, Clone, Debug)]
pub struct Batch {
    stmts: Vec<Stmt>,
}

impl Batch {
    pub(crate) fn push(&mut self, stmt: impl Into<Stmt>) {
        self.stmts.push(stmt.into());
    }

    pub fn append(&mut self, other: Batch) {
        self.stmts.extend(other.stmts);
    }

    /// Merges plain inserts (no `ON CONFLICT` or `RETURNING`) into the same table and columns
    /// into one multi-row insert each, in first-seen order, rows kept in order; any other
    /// statement follows them. Many movements committed together then cost a few statements
    /// instead of several each.
    pub fn merge_inserts(self) -> Batch {
        Batch {
            stmts: crate::sql::merge_inserts(self.stmts),
        }
    }
}

impl Db {
    pub(crate) fn render(&self, stmt: Stmt) -> Statement {
        let mut out = Render::new(self.kind);
        stmt.render(&mut out);
        out.into_statement()
    }

    /// Runs a batch through `tx` (a transaction, or the pool for a single statement); returns
    /// the rows affected by its last statement.
    pub async fn run_batch(&self, tx: &impl ConnectionTrait, batch: Batch) -> Result<u64, DbErr> {
        if self.kind == DbKind::Sqlite {
            let mut affected = 0;
            for stmt in batch.stmts {
                affected = tx.execute_raw(self.render(stmt)).await?.rows_affected();
            }
            return Ok(affected);
        }
        if batch.stmts.is_empty() {
            return Ok(0);
        }
        Ok(tx
            .execute_raw(with_last(self.kind, batch.stmts).into_statement())
            .await?
            .rows_affected())
    }

    /// Runs a batch through `tx` and returns the rows affected by each of its statements, in
    /// order. On PostgreSQL it is still one statement: each part returns a row per row it
    /// changed and the outer query counts them, so the statements must not have their own
    /// `RETURNING`.
    pub async fn run_batch_counts(
        &self,
        tx: &impl ConnectionTrait,
        batch: Batch,
    ) -> Result<Vec<u64>, DbErr> {
        if self.kind == DbKind::Sqlite || batch.stmts.len() < 2 {
            let mut counts = Vec::with_capacity(batch.stmts.len());
            for stmt in batch.stmts {
                counts.push(tx.execute_raw(self.render(stmt)).await?.rows_affected());
            }
            return Ok(counts);
        }
        let n = batch.stmts.len();
        let row = tx
            .query_one_raw(with_counts(self.kind, batch.stmts).into_statement())
            .await?
            .ok_or_else(|| DbErr::Custom("batch returned no row".into()))?;
        (0..n)
            .map(|i| {
                let c: i64 = row.try_get_by_index(i)?;
                Ok(u64::try_from(c).unwrap_or(0))
            })
            .collect()
    }
}

/// `WITH s0 AS (…), s1 AS (…) <last statement>`: one statement whose rows affected are the
/// last one's.
fn with_last(kind: DbKind, mut stmts: Vec<Stmt>) -> Render {
    let mut out = Render::new(kind);
    let last = stmts.pop();
    if !stmts.is_empty() {
        with_parts(&mut out, stmts, "");
        out.sql.push(' ');
    }
    if let Some(last) = last {
        last.render(&mut out);
    }
    out
}

/// `WITH s0 AS (… RETURNING 1), … SELECT (SELECT COUNT(*) FROM s0), …`: one statement whose
/// one row holds the rows affected by each part.
fn with_counts(kind: DbKind, stmts: Vec<Stmt>) -> Render {
    let n = stmts.len();
    let mut out = Render::new(kind);
    with_parts(&mut out, stmts, " RETURNING 1");
    out.sql.push_str(" SELECT ");
    for i in 0..n {
        if i > 0 {
            out.sql.push_str(", ");
        }
        write!(out.sql, "(SELECT COUNT(*) FROM s{i})").expect("writing to a String");
    }
    out
}

/// `WITH s0 AS (stmt0<suffix>), s1 AS (…)`: the statements as data-modifying CTEs.
fn with_parts(out: &mut Render, stmts: Vec<Stmt>, suffix: &str) {
    out.sql.push_str("WITH ");
    for (i, stmt) in stmts.into_iter().enumerate() {
        if i > 0 {
            out.sql.push_str(", ");
        }
        write!(out.sql, "s{i} AS (").expect("writing to a String");
        stmt.render(out);
        out.sql.push_str(suffix);
        out.sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, Db, DbKind, with_counts, with_last};
    use crate::sql::tests::array;
    use crate::sql::{Insert, Render, Rows, Sql, Stmt};
    use sea_orm::ConnectionTrait;
    use sea_orm::Value;
    use sea_orm::sea_query::ArrayType;

    fn sqlite_sql(stmts: &[Stmt]) -> Vec<(String, Vec<Value>)> {
        stmts
            .iter()
            .map(|s| {
                let mut out = Render::new(DbKind::Sqlite);
                s.clone().render(&mut out);
                out.into_parts()
            })
            .collect()
    }

    fn pair(x: i64, y: i64) -> [Value; 2] {
        [x.into(), y.into()]
    }

    #[test]
    fn same_inserts_merge_into_one_statement_in_order() {
        let mut b = Batch::default();
        b.push(Insert::new("a", &["x", "y"]).row(pair(1, 2)));
        b.push(Sql::new("UPDATE c SET x = ").bind(9i64));
        b.push(Insert::new("b", &["x", "y"]).row(pair(10, 11)));
        b.push(
            Insert::new("a", &["x", "y"])
                .row(pair(3, 4))
                .row(pair(5, 6)),
        );
        b.push(
            Insert::new("a", &["x", "y"])
                .row(pair(7, 8))
                .suffix(" ON CONFLICT DO NOTHING"),
        );
        let m = b.merge_inserts();
        let rendered = sqlite_sql(&m.stmts);
        let sql: Vec<&str> = rendered.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sql,
            [
                "INSERT INTO a (x, y) VALUES ($1, $2), ($3, $4), ($5, $6)",
                "INSERT INTO b (x, y) VALUES ($1, $2)",
                "UPDATE c SET x = $1",
                "INSERT INTO a (x, y) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            ]
        );
        let first: Vec<Value> = (1..=6i64).map(Value::from).collect();
        assert_eq!(rendered[0].1, first);
        assert_eq!(rendered[3].1, pair(7, 8));
    }

    fn transfer_batch(rows: i64) -> Batch {
        let mut b = Batch::default();
        let mut insert = Insert::new("t", &["id", "n"]);
        for r in 0..rows {
            insert.push_row([format!("id{r}").into(), r.into()]);
        }
        b.push(insert);
        let mut deltas = Rows::new(2);
        for r in 0..rows {
            deltas.push([format!("id{r}").into(), (r * 10).into()]);
        }
        b.push(
            Sql::new("UPDATE a SET n = a.n + v.column2, at = ")
                .bind(7i64)
                .sql(" FROM ")
                .rows(deltas, "v")
                .sql(" WHERE a.id = v.column1"),
        );
        b.push(
            Insert::new("k", &["id"])
                .row(["key".into()])
                .suffix(" ON CONFLICT DO NOTHING"),
        );
        b
    }

    #[test]
    fn a_postgres_batch_is_one_statement_numbered_in_order() {
        let (sql, values) = with_counts(DbKind::Postgres, transfer_batch(2).stmts).into_parts();
        assert_eq!(
            sql,
            "WITH s0 AS (INSERT INTO t (id, n) SELECT * FROM unnest($1::text[], $2::int8[]) RETURNING 1), \
             s1 AS (UPDATE a SET n = a.n + v.column2, at = $3 FROM unnest($4::text[], $5::int8[]) \
             AS v(column1, column2) WHERE a.id = v.column1 RETURNING 1), \
             s2 AS (INSERT INTO k (id) SELECT * FROM unnest($6::text[]) ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM s0), (SELECT COUNT(*) FROM s1), (SELECT COUNT(*) FROM s2)"
        );
        let ids = || array(ArrayType::String, ["id0".into(), "id1".into()]);
        let expected: Vec<Value> = vec![
            ids(),
            array(ArrayType::BigInt, [0i64.into(), 1i64.into()]),
            7i64.into(),
            ids(),
            array(ArrayType::BigInt, [0i64.into(), 10i64.into()]),
            array(ArrayType::String, ["key".into()]),
        ];
        assert_eq!(values, expected);

        let (sql, values) = with_last(DbKind::Postgres, transfer_batch(1).stmts).into_parts();
        assert_eq!(
            sql,
            "WITH s0 AS (INSERT INTO t (id, n) SELECT * FROM unnest($1::text[], $2::int8[])), \
             s1 AS (UPDATE a SET n = a.n + v.column2, at = $3 FROM unnest($4::text[], $5::int8[]) \
             AS v(column1, column2) WHERE a.id = v.column1) \
             INSERT INTO k (id) SELECT * FROM unnest($6::text[]) ON CONFLICT DO NOTHING"
        );
        assert_eq!(values.len(), 6);
    }

    /// PostgreSQL prepares each distinct text once per connection; a text that changed with the
    /// number of rows would be prepared (and planned) again for every group size.
    #[test]
    fn the_postgres_text_does_not_depend_on_the_number_of_rows() {
        let one = with_counts(DbKind::Postgres, transfer_batch(1).stmts).into_parts();
        for rows in [2, 7, 50] {
            let many = with_counts(DbKind::Postgres, transfer_batch(rows).stmts).into_parts();
            assert_eq!(many.0, one.0);
            assert_eq!(many.1.len(), one.1.len());
        }
        let on_sqlite = sqlite_sql(&transfer_batch(3).stmts);
        assert_eq!(
            on_sqlite[1].0,
            "UPDATE a SET n = a.n + v.column2, at = $1 FROM (VALUES ($2, $3), ($4, $5), ($6, $7)) \
             AS v WHERE a.id = v.column1"
        );
    }

    fn sqlite_path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("etx-batch-{}.db", uuid::Uuid::now_v7().simple()))
    }

    /// Two movements committed together the way a transfer group commits them, through the
    /// repository functions, so every statement shape they queue runs on a real database.
    async fn run_transfers(db: &Db) {
        use crate::ledger::{NewEntry, NewIdempotency, NewTransaction, Usage};
        db.migrate().await.unwrap();
        db.execute(
            "INSERT INTO ledger_accounts (id, owner_id, kind, asset, balance, allow_negative, \
             created_at, updated_at) VALUES ('equity::USD', '', 'equity', 'USD', 0, TRUE, 0, 0)",
            [],
        )
        .await
        .unwrap();
        let tx = db.begin_write().await.unwrap();
        db.open_accounts(
            &tx,
            &[
                ("wallet:ua:USD", "ua", "wallet", "USD"),
                ("wallet:ub:USD", "ub", "wallet", "USD"),
            ],
        )
        .await
        .unwrap();
        db.usage(&tx, Usage::Transfers, 1, &["ua"], true)
            .await
            .unwrap();
        let entry = |id, legs: &[(&'static str, i64)]| {
            (
                NewEntry {
                    id,
                    kind: etx_domain::EntryKind::P2p,
                    asset: "USD",
                    memo: None,
                    created_by: Some("it's \"quoted\""),
                    legs: Vec::new(),
                },
                legs.to_vec(),
            )
        };
        let entries = [
            entry("e1", &[("wallet:ua:USD", 100), ("equity::USD", -100)]),
            entry("e2", &[("wallet:ua:USD", -30), ("wallet:ub:USD", 30)]),
        ];
        let mut queued = Batch::default();
        for (e, legs) in &entries {
            Db::queue_entry(&mut queued, e, legs, 5);
        }
        let mut batch = queued.merge_inserts();
        let side = |id, user_id, amount| NewTransaction {
            id,
            user_id,
            kind: etx_domain::TxKind::P2p,
            direction: "in",
            asset: "USD",
            amount,
            fee: 0,
            status: "completed",
            counterparty_id: None,
            note: Some("a,b{c}"),
            entry_id: None,
            usd_value: None,
        };
        Db::insert_transactions(
            &mut batch,
            &mut [side("t1", "ua", 100), side("t2", "ub", 30)],
        );
        assert_eq!(
            db.run_batch_counts(&tx, batch).await.unwrap(),
            [2, 4, 2],
            "entries, postings, history rows"
        );
        let mut batch = Batch::default();
        Db::queue_balance_changes(
            &mut batch,
            &[
                ("wallet:ua:USD", 70),
                ("wallet:ub:USD", 30),
                ("equity::USD", -100),
            ],
            6,
        );
        Db::queue_usage(&mut batch, Usage::Transfers, 1, 1_000, &[("ua", 70)]);
        let record = |key| NewIdempotency {
            user_id: "ua",
            key,
            scope: "transfer",
            request_hash: "h",
            status: 201,
            response: "{}",
        };
        Db::queue_idempotency(&mut batch, &[record("k1"), record("k2")], 6);
        assert_eq!(db.run_batch_counts(&tx, batch).await.unwrap(), [3, 1, 2]);
        assert!(
            !db.finish_with_idempotency(&tx, Batch::default(), record("k1"))
                .await
                .unwrap(),
            "a key already stored is skipped"
        );
        let used = db
            .usage(&tx, Usage::Transfers, 1, &["ua"], false)
            .await
            .unwrap();
        assert_eq!(used, [("ua".to_string(), 70)]);
        // Other columns NULL this time, on the same connection: on PostgreSQL a column with a
        // NULL travels as a literal in a text parameter, an array of the driver's otherwise, and
        // a statement prepared for one must not be reused with the other.
        for row in [
            side("t3", "ua", 30),
            NewTransaction {
                counterparty_id: Some("ub"),
                note: None,
                usd_value: Some(30),
                ..side("t4", "ua", 30)
            },
        ] {
            let mut batch = Batch::default();
            Db::insert_transactions(&mut batch, &mut [row]);
            assert_eq!(db.run_batch_counts(&tx, batch).await.unwrap(), [1]);
        }
        let rows = tx
            .query_all_raw(db.stmt(
                "SELECT id, note, usd_value FROM transactions ORDER BY id",
                [],
            ))
            .await
            .unwrap();
        let rows: Vec<(String, Option<String>, Option<i64>)> = crate::sql::triples(rows).unwrap();
        assert_eq!(
            rows,
            [
                ("t1".to_string(), Some("a,b{c}".to_string()), None),
                ("t2".to_string(), Some("a,b{c}".to_string()), None),
                ("t3".to_string(), Some("a,b{c}".to_string()), None),
                ("t4".to_string(), None, Some(30)),
            ]
        );
        tx.commit().await.unwrap();
        assert_eq!(db.verify_ledger().await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn batches_run_on_sqlite() {
        let path = sqlite_path();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 1)
            .await
            .unwrap();
        run_transfers(&db).await;
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }

    /// On the PostgreSQL database named by `TEST_DATABASE_URL`, in a schema of its own.
    #[tokio::test]
    async fn batches_run_on_postgres() {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            return;
        };
        let url = Db::isolated_schema_url(&base).await.unwrap();
        let db = Db::connect(&url, 2).await.unwrap();
        run_transfers(&db).await;
    }
}
