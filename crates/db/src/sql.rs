//! Statements that are combined before they run (rows of several inserts into one, several
//! statements into one PostgreSQL `WITH`) are kept as structure, not text: values stay next to
//! the place they are bound, and a placeholder gets its number only when the final statement is
//! rendered. Combining them therefore never has to find and renumber `$n` in SQL text.

use crate::DbKind;
use sea_orm::sea_query::ArrayType;
use sea_orm::{DbBackend, DbErr, QueryResult, Statement, TryGetable, Value};
use std::borrow::Cow;
use std::fmt::Write;

/// A statement, or part of one: SQL text with values bound where they are used.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sql {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
enum Piece {
    Text(Cow<'static, str>),
    Param(Value),
    /// A row source in `FROM`, named `alias`, whose columns are `column1`, `column2`, … on
    /// both databases (SQLite cannot rename the columns of a `VALUES` list).
    Rows(Rows, &'static str),
}

impl Sql {
    pub(crate) fn new(text: impl Into<Cow<'static, str>>) -> Sql {
        Sql::default().sql(text)
    }

    /// Text only: it must not contain placeholders, which would go unnumbered.
    pub(crate) fn sql(mut self, text: impl Into<Cow<'static, str>>) -> Sql {
        self.pieces.push(Piece::Text(text.into()));
        self
    }

    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Sql {
        self.pieces.push(Piece::Param(value.into()));
        self
    }

    pub(crate) fn rows(mut self, rows: Rows, alias: &'static str) -> Sql {
        self.pieces.push(Piece::Rows(rows, alias));
        self
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    fn render(self, out: &mut Render) {
        for piece in self.pieces {
            match piece {
                Piece::Text(t) => out.sql.push_str(&t),
                Piece::Param(v) => out.param(v),
                Piece::Rows(rows, alias) => match rows.array_types().filter(|_| out.unnest()) {
                    Some(types) => {
                        rows.render_unnest(&types, out);
                        write!(out.sql, " AS {alias}(").expect("writing to a String");
                        for c in 1..=types.len() {
                            if c > 1 {
                                out.sql.push_str(", ");
                            }
                            write!(out.sql, "column{c}").expect("writing to a String");
                        }
                        out.sql.push(')');
                    }
                    None => {
                        out.sql.push('(');
                        rows.render_values(out);
                        write!(out.sql, ") AS {alias}").expect("writing to a String");
                    }
                },
            }
        }
    }
}

impl From<&'static str> for Sql {
    fn from(text: &'static str) -> Sql {
        Sql::new(text)
    }
}

/// Rows of values, each as wide as the first.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    width: usize,
    cells: Vec<Value>,
}

impl Rows {
    pub(crate) fn new(width: usize) -> Rows {
        assert!(width > 0, "a row has at least one column");
        Rows {
            width,
            cells: Vec::new(),
        }
    }

    pub(crate) fn with_capacity(width: usize, rows: usize) -> Rows {
        let mut r = Rows::new(width);
        r.cells.reserve(width * rows);
        r
    }

    pub(crate) fn push(&mut self, row: impl IntoIterator<Item = Value>) {
        let before = self.cells.len();
        self.cells.extend(row);
        assert_eq!(
            self.cells.len() - before,
            self.width,
            "a row must have one value per column"
        );
    }

    fn append(&mut self, other: Rows) {
        assert_eq!(self.width, other.width);
        self.cells.extend(other.cells);
    }

    /// Each column's PostgreSQL element type, if every column has one that all its values
    /// share; only then can the rows travel as one array per column.
    fn array_types(&self) -> Option<Vec<&'static str>> {
        if self.cells.is_empty() {
            return None;
        }
        (0..self.width)
            .map(|c| {
                let ty = array_type(&self.cells[c])?.0;
                self.cells[c..]
                    .iter()
                    .step_by(self.width)
                    .all(|v| array_type(v).is_some_and(|t| t.0 == ty))
                    .then_some(ty)
            })
            .collect()
    }

    /// `VALUES ($1, $2), ($3, $4)`
    fn render_values(self, out: &mut Render) {
        out.sql.push_str("VALUES ");
        for (i, v) in self.cells.into_iter().enumerate() {
            let col = i % self.width;
            if col == 0 {
                out.sql.push_str(if i == 0 { "(" } else { "), (" });
            } else {
                out.sql.push_str(", ");
            }
            out.param(v);
        }
        out.sql.push(')');
    }

    /// `unnest($1::text[], $2::int8[])`: one array parameter per column, so the text is the
    /// same whatever the number of rows and PostgreSQL reuses the prepared statement and its
    /// plan.
    fn render_unnest(self, types: &[&'static str], out: &mut Render) {
        let rows = self.cells.len() / self.width;
        let mut columns: Vec<Vec<Value>> =
            (0..self.width).map(|_| Vec::with_capacity(rows)).collect();
        for (i, v) in self.cells.into_iter().enumerate() {
            columns[i % self.width].push(v);
        }
        out.sql.push_str("unnest(");
        for (c, (column, ty)) in columns.into_iter().zip(types).enumerate() {
            if c > 0 {
                out.sql.push_str(", ");
            }
            let (param, literal) = array_param(column);
            out.param(param);
            // A literal is a text parameter, cast to the array type: a different statement
            // text, since PostgreSQL fixes each parameter's type when it prepares a statement.
            let via_text = if literal { "::text" } else { "" };
            write!(out.sql, "{via_text}::{ty}[]").expect("writing to a String");
        }
        out.sql.push(')');
    }
}

/// One array parameter of `values`, which share one element type, and whether it is an array
/// literal in a text parameter. Arrays travel in PostgreSQL's binary format, which the server
/// reads without parsing quotes and escapes (parsing the text form took a seventh of its CPU
/// when a tick filled thousands of orders); the driver's arrays carry no NULL element, so a
/// column with one is sent as a literal instead.
fn array_param(values: Vec<Value>) -> (Value, bool) {
    match values.first().and_then(array_type) {
        Some((_, ty)) if values.iter().all(Value::is_some) => {
            (Value::Array(ty, Some(Box::new(values))), false)
        }
        _ => (array_literal(&values), true),
    }
}

/// `{"a",1,NULL}`: one text parameter holding a PostgreSQL array literal.
fn array_literal(values: &[Value]) -> Value {
    let mut out = String::from("{");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_array_element(&mut out, v);
    }
    out.push('}');
    out.into()
}

/// `INSERT INTO table (columns) <rows><suffix>`, the rows as a `VALUES` list or, on PostgreSQL,
/// as `SELECT * FROM unnest(…)`.
#[derive(Clone, Debug)]
pub(crate) struct Insert {
    table: &'static str,
    columns: &'static [&'static str],
    rows: Rows,
    /// `ON CONFLICT …`, `RETURNING …`
    suffix: Sql,
}

impl Insert {
    pub(crate) fn new(table: &'static str, columns: &'static [&'static str]) -> Insert {
        Insert {
            table,
            columns,
            rows: Rows::new(columns.len()),
            suffix: Sql::default(),
        }
    }

    pub(crate) fn with_capacity(
        table: &'static str,
        columns: &'static [&'static str],
        rows: usize,
    ) -> Insert {
        Insert {
            rows: Rows::with_capacity(columns.len(), rows),
            ..Insert::new(table, columns)
        }
    }

    pub(crate) fn row(mut self, row: impl IntoIterator<Item = Value>) -> Insert {
        self.rows.push(row);
        self
    }

    pub(crate) fn push_row(&mut self, row: impl IntoIterator<Item = Value>) {
        self.rows.push(row);
    }

    pub(crate) fn suffix(mut self, suffix: impl Into<Sql>) -> Insert {
        self.suffix = suffix.into();
        self
    }

    /// Whether `other`'s rows can be added to this one's: same table and columns, and nothing
    /// after the rows. An `ON CONFLICT … DO UPDATE` may not touch a row twice in one statement,
    /// and a `RETURNING` or conflict clause makes the rows affected per statement matter, so
    /// only plain inserts merge.
    fn merges_with(&self, other: &Insert) -> bool {
        self.suffix.is_empty()
            && other.suffix.is_empty()
            && self.table == other.table
            && self.columns == other.columns
    }

    fn render(self, out: &mut Render) {
        write!(
            out.sql,
            "INSERT INTO {} ({}) ",
            self.table,
            self.columns.join(", ")
        )
        .expect("writing to a String");
        match self.rows.array_types().filter(|_| out.unnest()) {
            Some(types) => {
                out.sql.push_str("SELECT * FROM ");
                self.rows.render_unnest(&types, out);
            }
            None => self.rows.render_values(out),
        }
        self.suffix.render(out);
    }
}

/// One statement of a `Batch`.
#[derive(Clone, Debug)]
pub(crate) enum Stmt {
    Insert(Insert),
    Sql(Sql),
}

impl From<Insert> for Stmt {
    fn from(i: Insert) -> Stmt {
        Stmt::Insert(i)
    }
}

impl From<Sql> for Stmt {
    fn from(s: Sql) -> Stmt {
        Stmt::Sql(s)
    }
}

impl Stmt {
    pub(crate) fn render(self, out: &mut Render) {
        match self {
            Stmt::Insert(i) => i.render(out),
            Stmt::Sql(s) => s.render(out),
        }
    }
}

/// Merges plain inserts into the same table and columns into one multi-row insert each, in
/// first-seen order with their rows in order; every other statement follows them, in order.
pub(crate) fn merge_inserts(stmts: Vec<Stmt>) -> Vec<Stmt> {
    let mut inserts: Vec<Insert> = Vec::new();
    let mut other = Vec::new();
    for s in stmts {
        match s {
            Stmt::Insert(i) if i.suffix.is_empty() => {
                match inserts.iter_mut().find(|m| m.merges_with(&i)) {
                    Some(m) => m.rows.append(i.rows),
                    None => inserts.push(i),
                }
            }
            s => other.push(s),
        }
    }
    inserts.into_iter().map(Stmt::Insert).chain(other).collect()
}

/// SQL text being written for one database, and the values of its placeholders so far: the
/// next placeholder is `$(values.len() + 1)`.
pub(crate) struct Render {
    kind: DbKind,
    pub(crate) sql: String,
    values: Vec<Value>,
}

impl Render {
    pub(crate) fn new(kind: DbKind) -> Render {
        Render {
            kind,
            sql: String::new(),
            values: Vec::new(),
        }
    }

    fn unnest(&self) -> bool {
        self.kind == DbKind::Postgres
    }

    fn param(&mut self, v: Value) {
        self.values.push(v);
        write!(self.sql, "${}", self.values.len()).expect("writing to a String");
    }

    #[cfg(test)]
    pub(crate) fn into_parts(self) -> (String, Vec<Value>) {
        (self.sql, self.values)
    }

    pub(crate) fn into_statement(self) -> Statement {
        let backend = match self.kind {
            DbKind::Sqlite => DbBackend::Sqlite,
            DbKind::Postgres => DbBackend::Postgres,
        };
        Statement::from_sql_and_values(backend, self.sql, self.values)
    }
}

/// Appends `v` to a PostgreSQL array literal as one element: quoted text, a number, `t`/`f`,
/// or `NULL`. Only called for values `array_type` accepts.
fn push_array_element(out: &mut String, v: &Value) {
    match v {
        Value::String(Some(s)) => push_text_element(out, s),
        Value::BigInt(Some(n)) => write!(out, "{n}").expect("writing to a String"),
        Value::Int(Some(n)) => write!(out, "{n}").expect("writing to a String"),
        Value::SmallInt(Some(n)) => write!(out, "{n}").expect("writing to a String"),
        Value::Bool(Some(b)) => out.push(if *b { 't' } else { 'f' }),
        _ => out.push_str("NULL"),
    }
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

/// The PostgreSQL element type of a column of `v`s, and the driver's array of them.
fn array_type(v: &Value) -> Option<(&'static str, ArrayType)> {
    Some(match v {
        Value::String(_) => ("text", ArrayType::String),
        Value::BigInt(_) => ("int8", ArrayType::BigInt),
        Value::Int(_) => ("int4", ArrayType::Int),
        Value::SmallInt(_) => ("int2", ArrayType::SmallInt),
        Value::Bool(_) => ("bool", ArrayType::Bool),
        _ => return None,
    })
}

/// One `text[]` parameter holding `items`, for `= ANY($n::text[])` and `unnest($n::text[])`.
pub(crate) fn text_array<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    let items: Vec<Value> = items.into_iter().map(Value::from).collect();
    Value::Array(ArrayType::String, Some(Box::new(items)))
}

/// Rows of two columns as tuples.
pub(crate) fn pairs<A: TryGetable, B: TryGetable>(
    rows: Vec<QueryResult>,
) -> Result<Vec<(A, B)>, DbErr> {
    rows.into_iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// Rows of three columns as tuples.
pub(crate) fn triples<A: TryGetable, B: TryGetable, C: TryGetable>(
    rows: Vec<QueryResult>,
) -> Result<Vec<(A, B, C)>, DbErr> {
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
                r.try_get_by_index(2)?,
            ))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{Insert, Render, Rows, Sql, Stmt};
    use crate::DbKind;
    use sea_orm::Value;
    use sea_orm::sea_query::ArrayType;

    fn render(kind: DbKind, stmt: impl Into<Stmt>) -> (String, Vec<Value>) {
        let mut out = Render::new(kind);
        stmt.into().render(&mut out);
        out.into_parts()
    }

    fn insert() -> Insert {
        Insert::new("t", &["a", "b", "c"])
            .row(["x\"y\\z".into(), 1i64.into(), true.into()])
            .row([Option::<String>::None.into(), 2i64.into(), false.into()])
            .suffix(" ON CONFLICT DO NOTHING")
    }

    #[test]
    fn an_insert_is_a_values_list_on_sqlite() {
        let (sql, v) = render(DbKind::Sqlite, insert());
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING"
        );
        let expected: Vec<Value> = vec![
            "x\"y\\z".into(),
            1i64.into(),
            true.into(),
            Option::<String>::None.into(),
            2i64.into(),
            false.into(),
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn an_insert_is_one_array_per_column_on_postgres() {
        let (sql, v) = render(DbKind::Postgres, insert());
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c) SELECT * FROM unnest($1::text::text[], $2::int8[], $3::bool[]) \
             ON CONFLICT DO NOTHING"
        );
        // The column with a NULL goes as a literal, the others as binary arrays.
        let expected: Vec<Value> = vec![
            r#"{"x\"y\\z",NULL}"#.into(),
            array(ArrayType::BigInt, [1i64.into(), 2i64.into()]),
            array(ArrayType::Bool, [true.into(), false.into()]),
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn rows_in_from_keep_their_column_names_and_placeholders_follow_the_text() {
        let mut rows = Rows::new(2);
        rows.push(["p".into(), 1i64.into()]);
        rows.push(["q".into(), 2i64.into()]);
        let update = Sql::new("UPDATE a SET n = a.n + v.column2, at = ")
            .bind(9i64)
            .sql(" FROM ")
            .rows(rows, "v")
            .sql(" WHERE a.id = v.column1 AND a.day = ")
            .bind(7i64);
        let (sql, v) = render(DbKind::Sqlite, update.clone());
        assert_eq!(
            sql,
            "UPDATE a SET n = a.n + v.column2, at = $1 FROM (VALUES ($2, $3), ($4, $5)) AS v \
             WHERE a.id = v.column1 AND a.day = $6"
        );
        let expected: Vec<Value> = vec![
            9i64.into(),
            "p".into(),
            1i64.into(),
            "q".into(),
            2i64.into(),
            7i64.into(),
        ];
        assert_eq!(v, expected);
        let (sql, v) = render(DbKind::Postgres, update);
        assert_eq!(
            sql,
            "UPDATE a SET n = a.n + v.column2, at = $1 FROM unnest($2::text[], $3::int8[]) \
             AS v(column1, column2) WHERE a.id = v.column1 AND a.day = $4"
        );
        let expected: Vec<Value> = vec![
            9i64.into(),
            array(ArrayType::String, ["p".into(), "q".into()]),
            array(ArrayType::BigInt, [1i64.into(), 2i64.into()]),
            7i64.into(),
        ];
        assert_eq!(v, expected);
    }

    /// An array parameter has one element type, and only some values have a text form in an
    /// array literal here; anything else keeps its own placeholder.
    #[test]
    fn mixed_or_unsupported_columns_stay_a_values_list_on_postgres() {
        let mixed = Insert::new("t", &["a"])
            .row(["x".into()])
            .row([1i64.into()]);
        let float = Insert::new("t", &["a", "b"]).row(["x".into(), 1.5f64.into()]);
        for stmt in [mixed, float] {
            let sqlite = render(DbKind::Sqlite, stmt.clone());
            assert!(sqlite.0.contains(" VALUES ($1"), "{}", sqlite.0);
            assert_eq!(render(DbKind::Postgres, stmt), sqlite);
        }
    }

    #[test]
    #[should_panic(expected = "one value per column")]
    fn a_row_must_fill_every_column() {
        let _ = Insert::new("t", &["a", "b"]).row(["x".into()]);
    }

    /// An array parameter as `render_unnest` and `text_array` send it.
    pub(crate) fn array<const N: usize>(ty: ArrayType, values: [Value; N]) -> Value {
        Value::Array(ty, Some(Box::new(values.into())))
    }

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(
            super::array_literal(&["a,b".into(), "\"".into(), "".into(), Value::String(None)]),
            Value::from(r#"{"a,b","\"","",NULL}"#)
        );
        assert_eq!(
            super::text_array(["a,b", ""]),
            array(ArrayType::String, ["a,b".into(), "".into()])
        );
    }
}
