//! Price alerts and the conditional update that makes each firing happen once.

use crate::sql::Insert;
use crate::{Batch, Db, now_micros};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct AlertRow {
    pub id: String,
    pub user_id: String,
    pub asset: String,
    pub kind: String,
    pub price: Option<i64>,
    pub move_bps: Option<i64>,
    pub window_secs: Option<i64>,
    pub repeats: bool,
    /// Also mail the owner when it fires.
    pub email: bool,
    pub cooldown_secs: i64,
    pub active: bool,
    pub fired_at: Option<i64>,
    pub fired_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, user_id, asset, kind, price, move_bps, window_secs, repeats, email, \
     cooldown_secs, active, fired_at, fired_count, created_at, updated_at";

impl Db {
    pub fn queue_alert(batch: &mut Batch, a: &AlertRow) {
        batch.push(
            Insert::new(
                "price_alerts",
                &[
                    "id",
                    "user_id",
                    "asset",
                    "kind",
                    "price",
                    "move_bps",
                    "window_secs",
                    "repeats",
                    "email",
                    "cooldown_secs",
                    "active",
                    "fired_at",
                    "fired_count",
                    "created_at",
                    "updated_at",
                ],
            )
            .row([
                a.id.clone().into(),
                a.user_id.clone().into(),
                a.asset.clone().into(),
                a.kind.clone().into(),
                a.price.into(),
                a.move_bps.into(),
                a.window_secs.into(),
                a.repeats.into(),
                a.email.into(),
                a.cooldown_secs.into(),
                a.active.into(),
                a.fired_at.into(),
                a.fired_count.into(),
                a.created_at.into(),
                a.updated_at.into(),
            ]),
        );
    }

    /// The user's alerts, newest first.
    pub async fn alerts_of(&self, user_id: &str) -> Result<Vec<AlertRow>, DbErr> {
        AlertRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM price_alerts WHERE user_id = $1 \
                 ORDER BY created_at DESC, id DESC"
            ),
            [user_id.into()],
        ))
        .all(self.conn())
        .await
    }

    pub async fn count_alerts(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
    ) -> Result<i64, DbErr> {
        self.scalar_i64_in(
            tx,
            "SELECT COUNT(*) FROM price_alerts WHERE user_id = $1",
            vec![user_id.into()],
        )
        .await
    }

    /// `user_id`'s alert `id`; any user's with `None`.
    pub async fn alert(&self, user_id: Option<&str>, id: &str) -> Result<Option<AlertRow>, DbErr> {
        let (sql, values): (String, Vec<sea_orm::Value>) = match user_id {
            Some(u) => (
                format!("SELECT {COLUMNS} FROM price_alerts WHERE id = $1 AND user_id = $2"),
                vec![id.into(), u.into()],
            ),
            None => (
                format!("SELECT {COLUMNS} FROM price_alerts WHERE id = $1"),
                vec![id.into()],
            ),
        };
        AlertRow::find_by_statement(self.stmt(&sql, values))
            .one(self.conn())
            .await
    }

    /// Turns the user's alert on or off; `None` if there is no such alert of theirs.
    pub async fn set_alert_active(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
        id: &str,
        active: bool,
    ) -> Result<Option<AlertRow>, DbErr> {
        AlertRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE price_alerts SET active = $3, updated_at = $4 \
                 WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
            ),
            [
                id.into(),
                user_id.into(),
                active.into(),
                now_micros().into(),
            ],
        ))
        .one(tx)
        .await
    }

    pub async fn delete_alert(
        &self,
        tx: &DatabaseTransaction,
        user_id: &str,
        id: &str,
    ) -> Result<bool, DbErr> {
        let r = tx
            .execute_raw(self.stmt(
                "DELETE FROM price_alerts WHERE id = $1 AND user_id = $2",
                [id.into(), user_id.into()],
            ))
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Fires the alert if it is still active and out of its cool-down at `now`: one firing
    /// per alert and cool-down however many instances evaluate it. A one-off alert becomes
    /// inactive. `None` when it did not fire.
    pub async fn fire_alert(
        &self,
        tx: &DatabaseTransaction,
        id: &str,
        now: i64,
    ) -> Result<Option<AlertRow>, DbErr> {
        AlertRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE price_alerts SET fired_at = $2, fired_count = fired_count + 1, \
                 active = repeats, updated_at = $2 WHERE id = $1 AND active \
                 AND (fired_at IS NULL OR fired_at <= $2 - cooldown_secs * 1000000) \
                 RETURNING {COLUMNS}"
            ),
            [id.into(), now.into()],
        ))
        .one(tx)
        .await
    }

    /// Active alerts after (`created_at`, `id`) = `after`, oldest first.
    pub async fn active_alerts(
        &self,
        after: (i64, &str),
        limit: i64,
    ) -> Result<Vec<AlertRow>, DbErr> {
        AlertRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM price_alerts WHERE active \
                 AND (created_at > $1 OR (created_at = $1 AND id > $2)) \
                 ORDER BY created_at, id LIMIT $3"
            ),
            [after.0.into(), after.1.into(), limit.into()],
        ))
        .all(self.conn())
        .await
    }
}
