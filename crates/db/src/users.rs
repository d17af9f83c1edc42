//! The `users` table: accounts, roles, lockout counters and avatar references.

use crate::{Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

#[derive(Debug, Clone, FromQueryResult)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub role: String,
    pub avatar_key: Option<String>,
    pub avatar_content_type: Option<String>,
    pub exp: i64,
    pub is_active: bool,
    pub is_verified: bool,
    pub failed_logins: i32,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The unique constraints on `users` (migration 0001), as PostgreSQL names them in errors.
pub const USERNAME_KEY: &str = "users_username_lower_key";
pub const EMAIL_KEY: &str = "users_email_lower_key";

const COLUMNS: &str = "id, username, email, name, password_hash, role, avatar_key, \
    avatar_content_type, exp, is_active, is_verified, failed_logins, locked_until, created_at, \
    updated_at";

pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub is_verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    Username,
    Exp,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub search: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// Partial admin update; `None` leaves the column as it is.
#[derive(Debug, Clone, Default)]
pub struct AdminPatch {
    pub role: Option<String>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
}

/// Escapes LIKE wildcards so a search for `a_b` matches only that text.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Usernames never contain `@` and email addresses always do, so a login names one column and
/// the look-up is one index probe.
fn login_condition(login: &str) -> &'static str {
    if login.contains('@') {
        "email_lower = $1"
    } else {
        "username_lower = $1"
    }
}

/// What came of `Db::delete_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    NotFound,
    LastAdmin,
    HoldsFunds,
}

impl Db {
    pub async fn insert_user(&self, u: NewUser<'_>) -> Result<UserRow, DbErr> {
        let now = now_micros();
        self.execute(
            "INSERT INTO users (id, username, username_lower, email, email_lower, name, \
             password_hash, role, is_verified, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            [
                u.id.into(),
                u.username.into(),
                u.username.to_ascii_lowercase().into(),
                u.email.into(),
                u.email.to_lowercase().into(),
                u.name.map(str::to_string).into(),
                u.password_hash.into(),
                u.role.into(),
                u.is_verified.into(),
                now.into(),
            ],
        )
        .await?;
        self.user_by_id(u.id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("user vanished after insert".into()))
    }

    async fn one_user(&self, where_sql: &str, v: Vec<Value>) -> Result<Option<UserRow>, DbErr> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE {where_sql}");
        UserRow::find_by_statement(self.stmt(&sql, v))
            .one(self.conn())
            .await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, DbErr> {
        self.one_user("id = $1", vec![id.into()]).await
    }

    /// The users with these ids, in no particular order; unknown ids are left out.
    pub async fn users_by_ids(&self, ids: &[&str]) -> Result<Vec<UserRow>, DbErr> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE id IN ({})",
            crate::ledger::in_list(1, ids.len())
        );
        let v: Vec<Value> = ids.iter().map(|&id| id.into()).collect();
        UserRow::find_by_statement(self.stmt(&sql, v))
            .all(self.conn())
            .await
    }

    /// `user_by_login` on a given connection or transaction.
    pub async fn user_by_login_in(
        &self,
        c: &impl ConnectionTrait,
        login: &str,
    ) -> Result<Option<UserRow>, DbErr> {
        let l = login.trim().to_lowercase();
        let sql = format!("SELECT {COLUMNS} FROM users WHERE {}", login_condition(&l));
        UserRow::find_by_statement(self.stmt(&sql, [l.into()]))
            .one(c)
            .await
    }

    pub async fn user_by_id_in(
        &self,
        c: &impl ConnectionTrait,
        id: &str,
    ) -> Result<Option<UserRow>, DbErr> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        UserRow::find_by_statement(self.stmt(&sql, [id.into()]))
            .one(c)
            .await
    }

    /// Finds a user by username or email, both case-insensitively.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>, DbErr> {
        let l = login.trim().to_lowercase();
        self.one_user(login_condition(&l), vec![l.into()]).await
    }

    /// The active, verified user with that username or email (case-insensitive), who may
    /// receive money: `user_by_login` served from the session cache while it holds the row
    /// (a client paying the same people does not cost a query per payment). The cache is
    /// cleared by every write that may change a user.
    pub async fn recipient_by_login(&self, login: &str) -> Result<Option<UserRow>, DbErr> {
        let l = login.trim().to_lowercase();
        let cache = &self.sessions;
        if let Some(ttl) = cache.ttl()
            && let Some(hit) = cache.recipients.get(&l, ttl)
        {
            return Ok(Some(hit));
        }
        let generation = cache.generation();
        let user = self
            .one_user(login_condition(&l), vec![l.clone().into()])
            .await?
            .filter(|u| u.is_active && u.is_verified);
        if let Some(u) = &user {
            cache.put_if(&cache.recipients, generation, &l, u);
        }
        Ok(user)
    }

    pub async fn username_or_email_taken(
        &self,
        username: &str,
        email: &str,
        except_id: Option<&str>,
    ) -> Result<(bool, bool), DbErr> {
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "SELECT username_lower, email_lower FROM users \
                 WHERE (username_lower = $1 OR email_lower = $2) AND id <> $3",
                [
                    username.to_ascii_lowercase().into(),
                    email.to_lowercase().into(),
                    except_id.unwrap_or("").into(),
                ],
            ))
            .await?;
        let (mut u, mut e) = (false, false);
        for r in rows {
            u |= r.try_get::<String>("", "username_lower")? == username.to_ascii_lowercase();
            e |= r.try_get::<String>("", "email_lower")? == email.to_lowercase();
        }
        Ok((u, e))
    }

    pub async fn count_users(&self) -> Result<i64, DbErr> {
        self.scalar_i64("SELECT COUNT(*) AS n FROM users", vec![])
            .await
    }

    pub async fn count_active_admins(&self) -> Result<i64, DbErr> {
        self.scalar_i64(
            "SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND is_active = TRUE",
            vec![],
        )
        .await
    }

    pub async fn scalar_i64(&self, sql: &str, v: Vec<Value>) -> Result<i64, DbErr> {
        self.scalar_i64_in(self.conn(), sql, v).await
    }

    /// A count or sum as `conn` (a transaction, or the pool) sees it.
    pub async fn scalar_i64_in(
        &self,
        conn: &impl ConnectionTrait,
        sql: &str,
        v: Vec<Value>,
    ) -> Result<i64, DbErr> {
        let row = conn.query_one_raw(self.stmt(sql, v)).await?;
        match row {
            Some(r) => r.try_get_by_index::<i64>(0),
            None => Ok(0),
        }
    }

    pub async fn list_users(
        &self,
        f: &UserFilter,
        sort: SortField,
        descending: bool,
        skip: i64,
        limit: i64,
    ) -> Result<Page<UserRow>, DbErr> {
        let mut clauses = Vec::new();
        let mut vals: Vec<Value> = Vec::new();
        if let Some(q) = f.search.as_deref().filter(|q| !q.trim().is_empty()) {
            vals.push(like_pattern(q.trim()).into());
            let n = vals.len();
            clauses.push(format!(
                "(username_lower LIKE ${n} ESCAPE '\\' OR email_lower LIKE ${n} ESCAPE '\\' \
                 OR LOWER(COALESCE(name, '')) LIKE ${n} ESCAPE '\\')"
            ));
        }
        if let Some(r) = &f.role {
            vals.push(r.clone().into());
            clauses.push(format!("role = ${}", vals.len()));
        }
        if let Some(a) = f.is_active {
            vals.push(a.into());
            clauses.push(format!("is_active = ${}", vals.len()));
        }
        if let Some(v) = f.is_verified {
            vals.push(v.into());
            clauses.push(format!("is_verified = ${}", vals.len()));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let total = self
            .scalar_i64(
                &format!("SELECT COUNT(*) AS n FROM users {where_sql}"),
                vals.clone(),
            )
            .await?;
        let order_col = match sort {
            SortField::CreatedAt => "created_at",
            SortField::Username => "username_lower",
            SortField::Exp => "exp",
        };
        let dir = if descending { "DESC" } else { "ASC" };
        vals.push(limit.into());
        vals.push(skip.into());
        let n = vals.len();
        let sql = format!(
            "SELECT {COLUMNS} FROM users {where_sql} ORDER BY {order_col} {dir}, id {dir} \
             LIMIT ${} OFFSET ${n}",
            n - 1
        );
        let items = UserRow::find_by_statement(self.stmt(&sql, vals))
            .all(self.conn())
            .await?;
        Ok(Page { items, total })
    }

    /// Recipient lookup: active, verified users whose username starts with `q`, or whose email
    /// is exactly `q` (so addresses cannot be discovered by prefix).
    pub async fn search_recipients(
        &self,
        q: &str,
        exclude_id: &str,
        limit: i64,
    ) -> Result<Vec<UserRow>, DbErr> {
        let lower = q.trim().to_lowercase();
        let mut prefix = like_pattern(&lower);
        prefix.remove(0);
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE is_active = TRUE AND is_verified = TRUE AND id <> $1 \
             AND (username_lower LIKE $2 ESCAPE '\\' OR email_lower = $3) \
             ORDER BY username_lower LIMIT $4"
        );
        UserRow::find_by_statement(self.stmt(
            &sql,
            [exclude_id.into(), prefix.into(), lower.into(), limit.into()],
        ))
        .all(self.conn())
        .await
    }

    pub async fn leaderboard(&self, limit: i64) -> Result<Vec<UserRow>, DbErr> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE is_active = TRUE ORDER BY exp DESC, created_at ASC \
             LIMIT $1"
        );
        UserRow::find_by_statement(self.stmt(&sql, [limit.into()]))
            .all(self.conn())
            .await
    }

    /// Saves profile fields. A new email address also voids every unused reset and
    /// verification token, in the same transaction: links mailed to the old address must not
    /// outlive it.
    pub async fn update_profile(
        &self,
        id: &str,
        username: &str,
        email: &str,
        name: Option<&str>,
        email_changed: bool,
    ) -> Result<(), DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let now = now_micros();
        let tx = self.begin_write().await?;
        tx.execute_raw(self.stmt(
            "UPDATE users SET username = $2, username_lower = $3, email = $4, email_lower = $5, \
             name = $6, is_verified = CASE WHEN $7 THEN FALSE ELSE is_verified END, \
             updated_at = $8 WHERE id = $1",
            [
                id.into(),
                username.into(),
                username.to_ascii_lowercase().into(),
                email.into(),
                email.to_lowercase().into(),
                name.map(str::to_string).into(),
                email_changed.into(),
                now.into(),
            ],
        ))
        .await?;
        if email_changed {
            tx.execute_raw(self.stmt(
                "UPDATE email_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
                [id.into(), now.into()],
            ))
            .await?;
        }
        tx.commit().await
    }

    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<(), DbErr> {
        self.execute(
            "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL, \
             updated_at = $3 WHERE id = $1",
            [id.into(), hash.into(), now_micros().into()],
        )
        .await
        .map(|_| ())
    }

    /// Counts a failed password or second-factor check; the one that reaches `threshold` locks
    /// the account. Returns the count after this failure (0 if the user is gone).
    pub async fn record_failed_login(
        &self,
        id: &str,
        threshold: i32,
        lock_micros: i64,
    ) -> Result<i32, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let now = now_micros();
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "UPDATE users SET failed_logins = failed_logins + 1, \
                 locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
                 WHERE id = $1 RETURNING failed_logins",
                [id.into(), threshold.into(), (now + lock_micros).into()],
            ))
            .await?;
        match row {
            Some(r) => r.try_get_by_index::<i32>(0),
            None => Ok(0),
        }
    }

    /// After a lock expires the counter starts over; a success clears it too.
    pub async fn reset_failed_logins(&self, id: &str) -> Result<(), DbErr> {
        self.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 \
             AND (failed_logins <> 0 OR locked_until IS NOT NULL)",
            [id.into()],
        )
        .await
        .map(|_| ())
    }

    /// Applies an admin change. When the change would leave no active admin, nothing is written
    /// and `Ok(false)` is returned; the check and the write are one statement, so two admins
    /// demoting each other at once cannot both succeed.
    pub async fn admin_update_user(&self, id: &str, p: &AdminPatch) -> Result<bool, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let tx = self.begin_write().await?;
        self.lock_admins(&tx).await?;
        let n = tx
            .execute_raw(self.stmt(
                "UPDATE users SET role = COALESCE($2, role), is_active = COALESCE($3, is_active), \
                 is_verified = COALESCE($4, is_verified), updated_at = $5 WHERE id = $1",
                [
                    id.into(),
                    p.role.clone().into(),
                    p.is_active.into(),
                    p.is_verified.into(),
                    now_micros().into(),
                ],
            ))
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(true);
        }
        let admins = self.active_admins_in(&tx).await?;
        if admins == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a user unless that would leave no active admin or the user still holds funds
    /// (`Db::holds_funds`). The funds check runs in the deleting transaction after the user's
    /// row and accounts are locked, so money arriving meanwhile is either seen or waits.
    pub async fn delete_user(&self, id: &str) -> Result<Deletion, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let tx = self.begin_write().await?;
        self.lock_admins(&tx).await?;
        let n = tx
            .execute_raw(self.stmt("DELETE FROM users WHERE id = $1", [id.into()]))
            .await?;
        if n.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Deletion::NotFound);
        }
        let admins = self.active_admins_in(&tx).await?;
        if admins == 0 {
            tx.rollback().await?;
            return Ok(Deletion::LastAdmin);
        }
        if self.kind() == crate::DbKind::Postgres {
            tx.query_all_raw(self.stmt(
                "SELECT id FROM ledger_accounts WHERE owner_id = $1 ORDER BY id FOR UPDATE",
                [id.into()],
            ))
            .await?;
        }
        if self.holds_funds_in(&tx, id).await? {
            tx.rollback().await?;
            return Ok(Deletion::HoldsFunds);
        }
        tx.commit().await?;
        Ok(Deletion::Deleted)
    }

    /// On PostgreSQL, row-locks the user until `tx` ends, so that per-user limits counted in
    /// it (open orders, alerts) hold against the same user's concurrent requests (SQLite's
    /// IMMEDIATE transaction already serialises writers).
    pub async fn lock_user(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        id: &str,
    ) -> Result<(), DbErr> {
        if self.kind() == crate::DbKind::Postgres {
            tx.query_all_raw(self.stmt(
                "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
                [id.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, row-locks the active admins so concurrent demotions are decided one after
    /// the other (SQLite's IMMEDIATE transaction already serialises writers).
    async fn lock_admins(&self, tx: &sea_orm::DatabaseTransaction) -> Result<(), DbErr> {
        if self.kind() == crate::DbKind::Postgres {
            tx.query_all_raw(self.stmt(
                "SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE FOR UPDATE",
                [],
            ))
            .await?;
        }
        Ok(())
    }

    async fn active_admins_in(&self, tx: &sea_orm::DatabaseTransaction) -> Result<i64, DbErr> {
        tx.query_one_raw(self.stmt(
            "SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND is_active = TRUE",
            [],
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()
        .map(|n| n.unwrap_or(0))
    }

    pub async fn set_avatar(
        &self,
        id: &str,
        key: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<(), DbErr> {
        self.execute(
            "UPDATE users SET avatar_key = $2, avatar_content_type = $3, updated_at = $4 \
             WHERE id = $1",
            [
                id.into(),
                key.map(str::to_string).into(),
                content_type.map(str::to_string).into(),
                now_micros().into(),
            ],
        )
        .await
        .map(|_| ())
    }
}
