//! Per-user notifications. A movement queues its notification on its own batch, so the
//! notification exists exactly when the money moved.

use crate::sql::Insert;
use crate::{Batch, Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

pub struct NewNotification<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    /// JSON text with the details a client may act on (ids, amounts).
    pub data: &'a str,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct NotificationRow {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

impl Db {
    pub fn queue_notification(batch: &mut Batch, n: NewNotification<'_>) {
        batch.push(
            Insert::new(
                "notifications",
                &[
                    "id",
                    "user_id",
                    "kind",
                    "title",
                    "body",
                    "data",
                    "created_at",
                ],
            )
            .row([
                n.id.into(),
                n.user_id.into(),
                n.kind.into(),
                n.title.into(),
                n.body.into(),
                n.data.into(),
                now_micros().into(),
            ]),
        );
    }

    /// Newest first; with `before`, only older than that notification (keyset paging).
    pub async fn list_notifications(
        &self,
        user_id: &str,
        unread_only: bool,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<NotificationRow>, DbErr> {
        let mut sql = String::from(
            "SELECT id, kind, title, body, data, created_at, read_at FROM notifications \
             WHERE user_id = $1",
        );
        let mut values: Vec<Value> = vec![user_id.into()];
        if unread_only {
            sql.push_str(" AND read_at IS NULL");
        }
        if let Some(b) = before {
            values.push(b.into());
            sql.push_str(&format!(" AND id < ${}", values.len()));
        }
        values.push((limit as i64).into());
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            values.len()
        ));
        NotificationRow::find_by_statement(self.stmt(&sql, values))
            .all(self.conn())
            .await
    }

    pub async fn unread_notifications(&self, user_id: &str) -> Result<i64, DbErr> {
        self.scalar_i64(
            "SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
            vec![user_id.into()],
        )
        .await
    }

    /// Marks the given notifications (all, when `ids` is `None`) of the user read; returns how
    /// many changed. Another user's ids change nothing.
    pub async fn mark_notifications_read(
        &self,
        user_id: &str,
        ids: Option<&[String]>,
    ) -> Result<u64, DbErr> {
        let mut values: Vec<Value> = vec![user_id.into(), now_micros().into()];
        let mut sql = String::from(
            "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
        );
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(0);
            }
            let list: Vec<String> = ids
                .iter()
                .map(|id| {
                    values.push(id.clone().into());
                    format!("${}", values.len())
                })
                .collect();
            sql.push_str(&format!(" AND id IN ({})", list.join(", ")));
        }
        Ok(self
            .conn()
            .execute_raw(self.stmt(&sql, values))
            .await?
            .rows_affected())
    }
}
