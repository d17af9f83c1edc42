//! Opening the database: SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL a pool.
//! Writers on SQLite start IMMEDIATE transactions so two writers queue instead of failing.

use anyhow::Context;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionOptions, TransactionTrait, Value,
};
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
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbKind::Postgres
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres:");
        };
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
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

    /// Runs a write. A write may have changed a user or session, so cached sessions and
    /// recipients are dropped.
    pub async fn execute(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<u64, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let n = self
            .conn
            .execute_raw(self.stmt(sql, values))
            .await?
            .rows_affected();
        Ok(n)
    }

    /// Audit records chained from now on are keyed with `key`, and verification checks them with
    /// it, so a consistent rewrite of the chain needs the server secret, not only write access.
    pub fn with_audit_key(mut self, key: [u8; 32]) -> Self {
        self.audit_key = Some(std::sync::Arc::new(key));
        self
    }

    /// Keeps looked-up sessions for up to `ttl` (zero disables). Only safe while every write to
    /// users and sessions goes through this process, i.e. a single instance.
    pub fn with_session_cache(self, ttl: Duration) -> Self {
        self.sessions.set_ttl(ttl);
        self
    }
}

/// Inserts queued to run together at the end of a write transaction. On PostgreSQL they go as
/// ONE statement (data-modifying CTEs), so a movement's entry, postings, history rows, audit
/// record and idempotency answer cost one round trip; on SQLite, where a statement is a
/// function call rather than a round trip, they run one by one. Each statement numbers its
/// placeholders from `$1`.
#[derive(Default, Clone)]
pub struct Batch {
    stmts: Vec<(String, Vec<Value>)>,
}

impl Batch {
    pub fn push(&mut self, sql: impl Into<String>, values: Vec<Value>) {
        self.stmts.push((sql.into(), values));
    }

    pub fn append(&mut self, other: Batch) {
        self.stmts.extend(other.stmts);
    }

    /// Merges plain inserts of the same text (`INSERT … VALUES (…)[, (…)]`, nothing after the
    /// tuples) into one multi-row insert each, in first-seen order, rows kept in order; any
    /// other statement follows them. Many movements committed together then cost a few
    /// statements instead of several each.
    pub fn merge_inserts(self) -> Batch {
        // (statement head up to VALUES, its rows: tuples text and their values)
        type Rows = Vec<(String, Vec<Value>)>;
        let mut out: Vec<(String, Rows)> = Vec::new();
        let mut other = Vec::new();
        for (sql, values) in self.stmts {
            let Some(at) = plain_insert_values(&sql) else {
                other.push((sql, values));
                continue;
            };
            let (head, tuples) = sql.split_at(at);
            match out.iter_mut().find(|(h, _)| h == head) {
                Some((_, parts)) => parts.push((tuples.to_string(), values)),
                None => out.push((head.to_string(), vec![(tuples.to_string(), values)])),
            }
        }
        let mut stmts = Vec::with_capacity(out.len() + other.len());
        for (head, parts) in out {
            let mut sql = head;
            let mut values: Vec<Value> = Vec::new();
            for (i, (tuples, v)) in parts.into_iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&shift_placeholders(&tuples, values.len()));
                values.extend(v);
            }
            stmts.push((sql, values));
        }
        stmts.extend(other);
        Batch { stmts }
    }
}

/// Where the tuples of `INSERT INTO t (…) VALUES (…), (…)` start, if the statement is exactly
/// that (no `ON CONFLICT`, `RETURNING` or `SELECT`).
fn plain_insert_values(sql: &str) -> Option<usize> {
    if !sql.starts_with("INSERT INTO ") || !sql.trim_end().ends_with(')') {
        return None;
    }
    let at = sql.find(" VALUES ")? + " VALUES ".len();
    let upper = sql[at..].to_ascii_uppercase();
    if upper.contains("ON CONFLICT") || upper.contains("RETURNING") || upper.contains("SELECT") {
        return None;
    }
    Some(at)
}

/// `sql` with every `$n` placeholder renumbered to `$(n + by)`.
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            n.push(*d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(v) => out.push_str(&(v + by).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

/// Appends `v` to a PostgreSQL array literal as one element: quoted text, a number, `t`/`f`,
/// or `NULL`. `None` for a value that has no such form here.
fn push_array_element(out: &mut String, v: &Value) -> Option<()> {
    use std::fmt::Write;
    match v {
        Value::String(Some(s)) => push_text_element(out, s),
        Value::BigInt(Some(n)) => write!(out, "{n}").ok()?,
        Value::Int(Some(n)) => write!(out, "{n}").ok()?,
        Value::SmallInt(Some(n)) => write!(out, "{n}").ok()?,
        Value::Bool(Some(b)) => out.push(if *b { 't' } else { 'f' }),
        Value::String(None)
        | Value::BigInt(None)
        | Value::Int(None)
        | Value::SmallInt(None)
        | Value::Bool(None) => out.push_str("NULL"),
        _ => return None,
    }
    Some(())
}

fn push_text_element(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The PostgreSQL element type of a column of `v`s.
fn array_type(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::String(_) => "text",
        Value::BigInt(_) => "int8",
        Value::Int(_) => "int4",
        Value::SmallInt(_) => "int2",
        Value::Bool(_) => "bool",
        _ => return None,
    })
}

/// One text parameter holding a PostgreSQL array literal of `items`, for `$n::text[]`.
pub(crate) fn text_array<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    let mut out = String::from("{");
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_text_element(&mut out, s);
    }
    out.push('}');
    out.into()
}

/// The placeholder number at the start of `s` (`$12…` → 12) and its length in bytes.
fn placeholder_at(s: &str) -> Option<(usize, usize)> {
    let digits = s.strip_prefix('$')?;
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits[..len].parse().ok()?;
    Some((n, len + 1))
}

/// Rewrites a `VALUES` list whose cells are all placeholders as `unnest` over one array
/// parameter per column (`INSERT … VALUES (…), (…)` → `INSERT … SELECT * FROM unnest(…)`,
/// `FROM (VALUES …) AS v` → `FROM unnest(…) AS v(column1, …)`), so the statement's text,
/// its prepared statement and its plan stay the same whatever the number of rows. Anything
/// else is returned as it was.
fn unnest_values(sql: String, values: Vec<Value>) -> (String, Vec<Value>) {
    match try_unnest(&sql, &values) {
        Some(done) => done,
        None => (sql, values),
    }
}

fn try_unnest(sql: &str, values: &[Value]) -> Option<(String, Vec<Value>)> {
    let at = sql.find("VALUES (")?;
    let in_parens = sql[..at].ends_with('(');
    // The tuples: each a list of placeholders; columns[c] holds the value indices of column c.
    let mut columns: Vec<Vec<usize>> = Vec::new();
    let mut pos = at + "VALUES ".len();
    let bytes = sql.as_bytes();
    let mut rows = 0;
    loop {
        if bytes.get(pos) != Some(&b'(') {
            return None;
        }
        pos += 1;
        let mut col = 0;
        loop {
            let (n, len) = placeholder_at(&sql[pos..])?;
            values.get(n.checked_sub(1)?)?;
            if rows == 0 {
                columns.push(Vec::new());
            }
            columns.get_mut(col)?.push(n - 1);
            col += 1;
            pos += len;
            match &bytes[pos..] {
                [b',', b' ', ..] => pos += 2,
                [b')', ..] => {
                    pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        if col != columns.len() {
            return None;
        }
        rows += 1;
        if sql[pos..].starts_with(", (") {
            pos += 2;
        } else {
            break;
        }
    }
    let end = pos;
    let mut in_tuples = vec![false; values.len()];
    let mut types = Vec::with_capacity(columns.len());
    for col in &columns {
        let ty = array_type(&values[col[0]])?;
        if col.iter().any(|&i| array_type(&values[i]) != Some(ty)) {
            return None;
        }
        for &i in col {
            in_tuples[i] = true;
        }
        types.push(ty);
    }
    // Placeholders outside the tuples keep their values, renumbered in order; the arrays follow.
    let mut renumber = vec![0usize; values.len()];
    let mut out_values: Vec<Value> =
        Vec::with_capacity(values.len() - rows * columns.len() + columns.len());
    for (i, v) in values.iter().enumerate() {
        if !in_tuples[i] {
            out_values.push(v.clone());
            renumber[i] = out_values.len();
        }
    }
    let rewrite = |part: &str| -> Option<String> {
        let mut out = String::with_capacity(part.len());
        let mut rest = part;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            match placeholder_at(&rest[i..]) {
                Some((n, len)) => {
                    let new = *renumber.get(n.checked_sub(1)?)?;
                    if new == 0 {
                        return None;
                    }
                    out.push_str(&format!("${new}"));
                    rest = &rest[i + len..];
                }
                None => {
                    out.push('$');
                    rest = &rest[i + 1..];
                }
            }
        }
        out.push_str(rest);
        Some(out)
    };
    let (head, tail) = if in_parens {
        (&sql[..at - 1], sql[end..].strip_prefix(')')?)
    } else {
        (&sql[..at], &sql[end..])
    };
    let mut out = rewrite(head)?;
    out.push_str(if in_parens {
        "unnest("
    } else {
        "SELECT * FROM unnest("
    });
    for (c, col) in columns.iter().enumerate() {
        let mut literal = String::from("{");
        for (r, &i) in col.iter().enumerate() {
            if r > 0 {
                literal.push(',');
            }
            push_array_element(&mut literal, &values[i])?;
        }
        literal.push('}');
        out_values.push(literal.into());
        if c > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("${}::{}[]", out_values.len(), types[c]));
    }
    out.push(')');
    let mut tail = rewrite(tail)?;
    if in_parens {
        // `AS v` names the columns as VALUES did: column1, column2, …
        let alias = tail.strip_prefix(" AS ")?;
        let name_len = alias
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let names = (1..=columns.len())
            .map(|c| format!("column{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        tail = format!(" AS {}({names}){}", &alias[..name_len], &alias[name_len..]);
    }
    out.push_str(&tail);
    Some((out, out_values))
}

impl Db {
    /// Runs a batch through `tx` (a transaction, or the pool for a single statement); returns
    /// the rows affected by its last statement.
    pub async fn run_batch(&self, tx: &impl ConnectionTrait, batch: Batch) -> Result<u64, DbErr> {
        let mut stmts = batch.stmts;
        let Some((last_sql, last_vals)) = stmts.pop() else {
            return Ok(0);
        };
        if self.kind == DbKind::Sqlite {
            for (sql, v) in stmts {
                tx.execute_raw(self.stmt(&sql, v)).await?;
            }
            return Ok(tx
                .execute_raw(self.stmt(&last_sql, last_vals))
                .await?
                .rows_affected());
        }
        let (last_sql, last_vals) = unnest_values(last_sql, last_vals);
        if stmts.is_empty() {
            return Ok(tx
                .execute_raw(self.stmt(&last_sql, last_vals))
                .await?
                .rows_affected());
        }
        let (mut sql, mut values) = with_parts(stmts, "");
        sql.push(' ');
        sql.push_str(&shift_placeholders(&last_sql, values.len()));
        values.extend(last_vals);
        Ok(tx
            .execute_raw(self.stmt(&sql, values))
            .await?
            .rows_affected())
    }
}

/// `WITH s0 AS (stmt0<suffix>), s1 AS (…)`: the statements as data-modifying CTEs, their
/// placeholders numbered on from one another, and all their values.
fn with_parts(stmts: Vec<(String, Vec<Value>)>, suffix: &str) -> (String, Vec<Value>) {
    let mut sql = String::from("WITH ");
    let mut values: Vec<Value> = Vec::new();
    for (i, (s, v)) in stmts.into_iter().enumerate() {
        let (s, v) = unnest_values(s, v);
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "s{i} AS ({}{suffix})",
            shift_placeholders(&s, values.len())
        ));
        values.extend(v);
    }
    (sql, values)
}

impl Db {
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
            for (sql, v) in batch.stmts {
                let (sql, v) = match self.kind {
                    DbKind::Postgres => unnest_values(sql, v),
                    DbKind::Sqlite => (sql, v),
                };
                counts.push(tx.execute_raw(self.stmt(&sql, v)).await?.rows_affected());
            }
            return Ok(counts);
        }
        let n = batch.stmts.len();
        let (mut sql, values) = with_parts(batch.stmts, " RETURNING 1");
        let counts: Vec<String> = (0..n)
            .map(|i| format!("(SELECT COUNT(*) FROM s{i})"))
            .collect();
        sql.push_str(" SELECT ");
        sql.push_str(&counts.join(", "));
        let row = tx
            .query_one_raw(self.stmt(&sql, values))
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

#[cfg(test)]
mod tests {
    use super::Batch;

    #[test]
    fn same_inserts_merge_into_one_statement_in_order() {
        let mut b = Batch::default();
        b.push(
            "INSERT INTO a (x, y) VALUES ($1, $2)",
            vec![1.into(), 2.into()],
        );
        b.push("UPDATE c SET x = $1", vec![9.into()]);
        b.push(
            "INSERT INTO a (x, y) VALUES ($1, $2), ($3, $4)",
            vec![3.into(), 4.into(), 5.into(), 6.into()],
        );
        b.push(
            "INSERT INTO a (x, y) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![7.into(), 8.into()],
        );
        let m = b.merge_inserts();
        let sql: Vec<&str> = m.stmts.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sql,
            [
                "INSERT INTO a (x, y) VALUES ($1, $2), ($3, $4), ($5, $6)",
                "UPDATE c SET x = $1",
                "INSERT INTO a (x, y) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            ]
        );
        assert_eq!(m.stmts[0].1.len(), 6);
        assert_eq!(m.stmts[0].1[4], 5.into());
    }

    #[test]
    fn row_lists_become_one_array_per_column() {
        let (sql, v) = super::unnest_values(
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING".into(),
            vec![
                "x\"y\\z".into(),
                1i64.into(),
                Option::<String>::None.into(),
                2i64.into(),
            ],
        );
        assert_eq!(
            sql,
            "INSERT INTO t (a, b) SELECT * FROM unnest($1::text[], $2::int8[]) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            v,
            vec![
                r#"{"x\"y\\z",NULL}"#.to_string().into(),
                "{1,2}".to_string().into()
            ]
        );
    }

    #[test]
    fn values_in_from_keep_their_column_names_and_other_parameters() {
        let (sql, v) = super::unnest_values(
            "UPDATE a SET n = a.n + v.column2, at = $1 FROM (VALUES ($2, $3), ($4, $5)) AS v \
             WHERE a.id = v.column1 AND a.day = $6"
                .into(),
            vec![
                9i64.into(),
                "p".into(),
                1i64.into(),
                "q".into(),
                2i64.into(),
                7i64.into(),
            ],
        );
        assert_eq!(
            sql,
            "UPDATE a SET n = a.n + v.column2, at = $1 FROM unnest($3::text[], $4::int8[]) \
             AS v(column1, column2) WHERE a.id = v.column1 AND a.day = $2"
        );
        assert_eq!(
            v,
            vec![
                9i64.into(),
                7i64.into(),
                r#"{"p","q"}"#.to_string().into(),
                "{1,2}".to_string().into()
            ]
        );
    }

    #[test]
    fn rows_with_literals_or_mixed_types_stay_as_they_are() {
        for (sql, v) in [
            (
                "INSERT INTO t (a, b) VALUES ($1, 0)",
                vec![sea_orm::Value::from("x")],
            ),
            (
                "INSERT INTO t (a) VALUES ($1), ($2)",
                vec!["x".into(), 1i64.into()],
            ),
            ("SELECT 1", vec![]),
        ] {
            let (out, vals) = super::unnest_values(sql.into(), v.clone());
            assert_eq!((out.as_str(), vals), (sql, v));
        }
    }

    #[test]
    fn placeholders_shift_past_earlier_statements() {
        assert_eq!(
            super::shift_placeholders("VALUES ($1, $2), ($10, 'x$y')", 5),
            "VALUES ($6, $7), ($15, 'x$y')"
        );
    }
}
