//! Experience points: awards, their daily totals and the leaderboards. An award and the
//! user's new `exp` are written in one transaction, with the user rows locked first, so two
//! instances awarding the same user never pass a daily cap together.

use crate::ledger::in_list;
use crate::sql::{Insert, Rows, Sql, pairs, text_array};
use crate::{Db, DbKind, now_micros};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, Value};

#[derive(Debug, Clone, FromQueryResult)]
pub struct XpEventRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub r#ref: String,
    pub points: i64,
    pub created_at: i64,
}

pub struct NewXp<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub r#ref: &'a str,
    pub points: i64,
}

impl Db {
    /// Locks the users' rows (in id order, so two awarders cannot deadlock) and answers their
    /// experience (user id, exp). Unknown users are left out.
    pub async fn lock_exp(
        &self,
        tx: &DatabaseTransaction,
        users: &[&str],
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = if self.kind() == DbKind::Postgres {
            self.stmt(
                "SELECT id, exp FROM users WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE",
                [text_array(users.iter().copied())],
            )
        } else {
            self.stmt(
                &format!(
                    "SELECT id, exp FROM users WHERE id IN ({}) ORDER BY id",
                    in_list(1, users.len())
                ),
                users.iter().map(|u| Value::from(*u)),
            )
        };
        pairs(tx.query_all_raw(stmt).await?)
    }

    /// What the users already hold that bears on new awards: their achievements (kind, 0) and
    /// today's points per repeating kind (kind, points), as (user id, kind, points).
    pub async fn xp_standing(
        &self,
        tx: &DatabaseTransaction,
        users: &[&str],
        day: i64,
    ) -> Result<Vec<(String, String, i64)>, DbErr> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let (filter, mut args): (String, Vec<Value>) = if self.kind() == DbKind::Postgres {
            (
                "user_id = ANY($2::text[])".into(),
                vec![text_array(users.iter().copied())],
            )
        } else {
            (
                format!("user_id IN ({})", in_list(2, users.len())),
                users.iter().map(|u| Value::from(*u)).collect(),
            )
        };
        args.insert(0, day.into());
        let sql = format!(
            "SELECT user_id, kind, CAST(0 AS BIGINT) AS points FROM xp_events WHERE ref = '' AND {filter} \
             UNION ALL \
             SELECT user_id, kind, CAST(SUM(points) AS BIGINT) AS points FROM xp_events \
             WHERE day = $1 AND ref <> '' AND {filter} GROUP BY user_id, kind"
        );
        let rows = tx.query_all_raw(self.stmt(&sql, args)).await?;
        crate::sql::triples(rows)
    }

    /// Inserts the awards; one already recorded (same user, kind and ref) is skipped. Answers
    /// the points each user was actually given (user id, points), for `add_exp`.
    pub async fn insert_xp(
        &self,
        tx: &DatabaseTransaction,
        awards: &[NewXp<'_>],
        day: i64,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if awards.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let mut insert = Insert::with_capacity(
            "xp_events",
            &[
                "id",
                "user_id",
                "kind",
                "ref",
                "points",
                "day",
                "created_at",
            ],
            awards.len(),
        );
        for a in awards {
            insert.push_row([
                uuid::Uuid::now_v7().to_string().into(),
                a.user_id.into(),
                a.kind.into(),
                a.r#ref.into(),
                a.points.into(),
                day.into(),
                now.into(),
            ]);
        }
        let insert =
            insert.suffix(" ON CONFLICT (user_id, kind, ref) DO NOTHING RETURNING user_id, points");
        pairs(tx.query_all_raw(self.render(insert.into())).await?)
    }

    /// Adds points to the users' experience; answers their new totals (user id, exp).
    pub async fn add_exp(
        &self,
        tx: &DatabaseTransaction,
        deltas: &[(&str, i64)],
    ) -> Result<Vec<(String, i64)>, DbErr> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Rows::with_capacity(2, deltas.len());
        for (user, n) in deltas {
            rows.push([(*user).into(), (*n).into()]);
        }
        let sql = Sql::new("UPDATE users SET exp = users.exp + v.column2 FROM ")
            .rows(rows, "v")
            .sql(" WHERE users.id = v.column1 RETURNING users.id, users.exp");
        pairs(tx.query_all_raw(self.render(sql.into())).await?)
    }

    /// The user's awards, newest first; with `before` (created_at, id), only older ones.
    pub async fn xp_events_of(
        &self,
        user_id: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<XpEventRow>, DbErr> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        XpEventRow::find_by_statement(self.stmt(
            "SELECT id, user_id, kind, ref, points, created_at FROM xp_events \
             WHERE user_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
            [user_id.into(), at.into(), id.into(), limit.into()],
        ))
        .all(self.conn())
        .await
    }

    /// The user's achievements (one-off awards), oldest first.
    pub async fn achievements_of(&self, user_id: &str) -> Result<Vec<XpEventRow>, DbErr> {
        XpEventRow::find_by_statement(self.stmt(
            "SELECT id, user_id, kind, ref, points, created_at FROM xp_events \
             WHERE user_id = $1 AND ref = '' ORDER BY created_at, id",
            [user_id.into()],
        ))
        .all(self.conn())
        .await
    }

    /// Active users by points earned since `day` (inclusive), most first: (user id, points).
    pub async fn xp_since(&self, day: i64, limit: i64) -> Result<Vec<(String, i64)>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT x.user_id, CAST(SUM(x.points) AS BIGINT) AS points FROM xp_events x \
                 JOIN users u ON u.id = x.user_id AND u.is_active = TRUE \
                 WHERE x.day >= $1 GROUP BY x.user_id \
                 ORDER BY SUM(x.points) DESC, MIN(u.created_at) ASC LIMIT $2",
                [day.into(), limit.into()],
            ))
            .await?;
        pairs(rows)
    }
}
