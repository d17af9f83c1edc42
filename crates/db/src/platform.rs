//! Each user's settings for the external ETX/CTX platform: one row per user, the secrets in
//! it already sealed by the caller.

use crate::Db;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct PlatformSettingsRow {
    pub user_id: String,
    pub http_uri: String,
    pub ws_uri: String,
    pub api_version: String,
    pub email: String,
    /// The password and data source key, sealed; this crate never sees them in the clear.
    pub secrets: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "user_id, http_uri, ws_uri, api_version, email, secrets, created_at, updated_at";

impl Db {
    pub async fn platform_settings(
        &self,
        conn: &impl ConnectionTrait,
        user_id: &str,
    ) -> Result<Option<PlatformSettingsRow>, DbErr> {
        PlatformSettingsRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM platform_settings WHERE user_id = $1"),
            [user_id.into()],
        ))
        .one(conn)
        .await
    }

    /// Inserts the user's row or replaces every column of it but `created_at`.
    pub async fn save_platform_settings(
        &self,
        conn: &impl ConnectionTrait,
        r: &PlatformSettingsRow,
    ) -> Result<(), DbErr> {
        conn.execute_raw(self.stmt(
            &format!(
                "INSERT INTO platform_settings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (user_id) DO UPDATE SET http_uri = excluded.http_uri, \
                 ws_uri = excluded.ws_uri, api_version = excluded.api_version, \
                 email = excluded.email, secrets = excluded.secrets, \
                 updated_at = excluded.updated_at"
            ),
            [
                r.user_id.as_str().into(),
                r.http_uri.as_str().into(),
                r.ws_uri.as_str().into(),
                r.api_version.as_str().into(),
                r.email.as_str().into(),
                r.secrets.as_str().into(),
                r.created_at.into(),
                r.updated_at.into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// `true` when there was a row to delete.
    pub async fn delete_platform_settings(
        &self,
        conn: &impl ConnectionTrait,
        user_id: &str,
    ) -> Result<bool, DbErr> {
        let r = conn
            .execute_raw(self.stmt(
                "DELETE FROM platform_settings WHERE user_id = $1",
                [user_id.into()],
            ))
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
