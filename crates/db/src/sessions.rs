//! Sessions and their refresh tokens. A session is checked on every authenticated request, so
//! logout, password change or suspension take effect at once.

use crate::users::UserRow;
use crate::{Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub remember_me: bool,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub refresh_hash: &'a str,
    pub remember_me: bool,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now used up and `new_hash` replaces it.
    Rotated {
        session_id: String,
        user_id: String,
        remember_me: bool,
    },
    /// The token was rotated moments ago (another tab of the same browser refreshing at the
    /// same time): the successor it was rotated into, sealed, is handed out again.
    Replayed {
        session_id: String,
        user_id: String,
        remember_me: bool,
        successor_sealed: String,
    },
    /// The token had already been used: the session has been revoked.
    Reused,
    /// Unknown, expired or belonging to a revoked session.
    Invalid,
}

/// Recently authenticated sessions, and recently named recipients of money, so that a busy
/// client does not cost a database round trip per request for either. Every write through
/// `Db` that may change a user or session clears both, so logout, suspension, password and
/// username changes still take effect on the next request. A read that began before a clear
/// is not cached afterwards (the generation tells), so a clear cannot be undone by a reader
/// that saw the old row.
#[derive(Default)]
pub struct SessionCache {
    ttl_ms: std::sync::atomic::AtomicU64,
    generation: std::sync::atomic::AtomicU64,
    sessions: TtlMap<ActiveSession>,
    pub(crate) recipients: TtlMap<UserRow>,
    /// Clears caused by this process's writes (not those heard from other instances).
    pub(crate) local_clears: std::sync::atomic::AtomicU64,
    /// Told of each such clear, so that other instances can clear theirs.
    pub(crate) on_clear: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("ttl_ms", &self.ttl_ms)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

const CACHE_MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct TtlMap<V>(
    std::sync::Mutex<std::collections::HashMap<String, (V, std::time::Instant)>>,
);

impl<V> Default for TtlMap<V> {
    fn default() -> Self {
        TtlMap(Default::default())
    }
}

impl<V: Clone> TtlMap<V> {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (V, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &str, ttl: std::time::Duration) -> Option<V> {
        let map = self.lock();
        let (v, at) = map.get(key)?;
        (at.elapsed() < ttl).then(|| v.clone())
    }

    fn clear(&self) {
        let mut map = self.lock();
        if !map.is_empty() {
            map.clear();
        }
    }
}

impl SessionCache {
    pub(crate) fn set_ttl(&self, ttl: std::time::Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.ttl_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
        self.forget();
    }

    pub(crate) fn ttl(&self) -> Option<std::time::Duration> {
        let ms = self.ttl_ms.load(std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// Taken before a read whose result may be cached; see `put_if`.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches `v` unless a clear happened since `generation` was taken. Checked under the map's
    /// lock, which `clear` takes after moving the generation on.
    pub(crate) fn put_if<V: Clone>(&self, map: &TtlMap<V>, generation: u64, key: &str, v: &V) {
        if self.ttl().is_none() {
            return;
        }
        let mut m = map.lock();
        if self.generation() != generation {
            return;
        }
        if m.len() >= CACHE_MAX_ENTRIES {
            m.clear();
        }
        m.insert(key.to_string(), (v.clone(), std::time::Instant::now()));
    }

    fn get(&self, sid: &str) -> Option<ActiveSession> {
        let s = self.sessions.get(sid, self.ttl()?)?;
        (s.session.expires_at > now_micros()).then_some(s)
    }

    /// Drops everything cached after a write of this process, and says so to `on_clear`.
    pub(crate) fn clear(&self) {
        self.forget();
        self.local_clears
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(tell) = self.on_clear.get() {
            tell();
        }
    }

    /// Drops everything cached (a clear heard from elsewhere, or a new TTL).
    pub(crate) fn forget(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.sessions.clear();
        self.recipients.clear();
    }

    /// Clears the cache when dropped. Taken before a write that may change a user or a
    /// session, so the clear also happens when the caller's future is dropped after the
    /// write (a client that disconnects) or the commit reports an error.
    pub(crate) fn clear_on_drop(&self) -> ClearOnDrop<'_> {
        ClearOnDrop(self)
    }

    fn evict(&self, sid: &str) {
        self.sessions.lock().remove(sid);
    }
}

pub(crate) struct ClearOnDrop<'a>(&'a SessionCache);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Session plus its user, read in one query for request authentication.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub session: SessionRow,
    pub user: UserRow,
}

impl Db {
    pub async fn insert_session(&self, s: NewSession<'_>) -> Result<(), DbErr> {
        let now = now_micros();
        let tx = self.begin_write().await?;
        tx.execute_raw(self.stmt(
            "INSERT INTO sessions (id, user_id, refresh_hash, remember_me, user_agent, ip, \
             created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
            [
                s.id.into(),
                s.user_id.into(),
                s.refresh_hash.into(),
                s.remember_me.into(),
                s.user_agent.map(str::to_string).into(),
                s.ip.map(str::to_string).into(),
                now.into(),
                s.expires_at.into(),
            ],
        ))
        .await?;
        tx.execute_raw(self.stmt(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
            [s.refresh_hash.into(), s.id.into(), now.into()],
        ))
        .await?;
        tx.commit().await
    }

    /// The session with its user when the session is live (not revoked, not expired).
    pub async fn active_session(&self, session_id: &str) -> Result<Option<ActiveSession>, DbErr> {
        if let Some(hit) = self.sessions.get(session_id) {
            return Ok(Some(hit));
        }
        let generation = self.sessions.generation();
        let sql = "SELECT s.id AS s_id, s.user_id AS s_user_id, s.remember_me AS s_remember_me, \
             s.user_agent AS s_user_agent, s.ip AS s_ip, s.created_at AS s_created_at, \
             s.last_seen_at AS s_last_seen_at, s.expires_at AS s_expires_at, \
             s.revoked_at AS s_revoked_at, \
             u.id, u.username, u.email, u.name, u.password_hash, u.role, u.avatar_key, \
             u.avatar_content_type, u.exp, u.is_active, u.is_verified, u.failed_logins, \
             u.locked_until, u.created_at, u.updated_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2";
        let Some(row) = self
            .conn()
            .query_one_raw(self.stmt(sql, [session_id.into(), now_micros().into()]))
            .await?
        else {
            return Ok(None);
        };
        let session = SessionRow {
            id: row.try_get("", "s_id")?,
            user_id: row.try_get("", "s_user_id")?,
            remember_me: row.try_get("", "s_remember_me")?,
            user_agent: row.try_get("", "s_user_agent")?,
            ip: row.try_get("", "s_ip")?,
            created_at: row.try_get("", "s_created_at")?,
            last_seen_at: row.try_get("", "s_last_seen_at")?,
            expires_at: row.try_get("", "s_expires_at")?,
            revoked_at: row.try_get("", "s_revoked_at")?,
        };
        let user = UserRow::from_query_result(&row, "")?;
        let active = ActiveSession { session, user };
        let cache = &self.sessions;
        cache.put_if(&cache.sessions, generation, &active.session.id, &active);
        Ok(Some(active))
    }

    /// Marks the session seen, at most once a minute so reads stay reads.
    pub async fn touch_session(&self, session_id: &str) -> Result<(), DbErr> {
        let now = now_micros();
        self.conn()
            .execute_raw(self.stmt(
                "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $3",
                [session_id.into(), now.into(), (now - 60_000_000).into()],
            ))
            .await?;
        self.sessions.evict(session_id);
        Ok(())
    }
}

/// How a refresh token is rotated.
pub struct RotateRefresh<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    /// The new token sealed by the caller, kept on the old row for the grace period.
    pub successor_sealed: &'a str,
    /// How long a just-rotated token still yields its successor instead of counting as reuse.
    pub grace_micros: i64,
    /// No session lives longer than this from its sign-in, however often it is refreshed.
    pub max_lifetime_micros: i64,
}

impl Db {
    /// Uses up `old_hash` and installs `new_hash` in the same transaction. Presenting a token
    /// that was already used revokes the whole session (someone else holds a copy), unless it
    /// was rotated within the grace period: then its successor is returned again.
    pub async fn rotate_refresh(
        &self,
        r: RotateRefresh<'_>,
        new_expires_at: impl Fn(bool) -> i64,
    ) -> Result<Rotation, DbErr> {
        let now = now_micros();
        let tx = self.begin_write().await?;
        let used = tx
            .execute_raw(self.stmt(
                "UPDATE refresh_tokens SET used_at = $2, successor_sealed = $3 \
                 WHERE token_hash = $1 AND used_at IS NULL",
                [r.old_hash.into(), now.into(), r.successor_sealed.into()],
            ))
            .await?
            .rows_affected();
        let found = tx
            .query_one_raw(self.stmt(
                "SELECT s.id, s.user_id, s.remember_me, s.revoked_at, s.expires_at, s.created_at, \
                 t.used_at, t.successor_sealed \
                 FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
                 WHERE t.token_hash = $1",
                [r.old_hash.into()],
            ))
            .await?;
        let Some(row) = found else {
            tx.rollback().await?;
            return Ok(Rotation::Invalid);
        };
        let session_id: String = row.try_get("", "id")?;
        let user_id: String = row.try_get("", "user_id")?;
        let remember_me: bool = row.try_get("", "remember_me")?;
        let revoked_at: Option<i64> = row.try_get("", "revoked_at")?;
        let expires_at: i64 = row.try_get("", "expires_at")?;
        let created_at: i64 = row.try_get("", "created_at")?;
        let used_at: Option<i64> = row.try_get("", "used_at")?;
        let successor: Option<String> = row.try_get("", "successor_sealed")?;
        let ends_at = created_at.saturating_add(r.max_lifetime_micros);
        if revoked_at.is_some() || expires_at <= now || ends_at <= now {
            tx.rollback().await?;
            return Ok(Rotation::Invalid);
        }
        if used == 0 {
            if let (Some(at), Some(successor_sealed)) = (used_at, successor)
                && now - at <= r.grace_micros
            {
                tx.rollback().await?;
                return Ok(Rotation::Replayed {
                    session_id,
                    user_id,
                    remember_me,
                    successor_sealed,
                });
            }
            let _cleared = self.sessions.clear_on_drop();
            tx.execute_raw(self.stmt(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = 'refresh_reuse' \
                 WHERE id = $1 AND revoked_at IS NULL",
                [session_id.into(), now.into()],
            ))
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused);
        }
        tx.execute_raw(self.stmt(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
            [r.new_hash.into(), session_id.clone().into(), now.into()],
        ))
        .await?;
        tx.execute_raw(self.stmt(
            "UPDATE sessions SET refresh_hash = $2, last_seen_at = $3, expires_at = $4 WHERE id = $1",
            [
                session_id.clone().into(),
                r.new_hash.into(),
                now.into(),
                new_expires_at(remember_me).min(ends_at).into(),
            ],
        ))
        .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            session_id,
            user_id,
            remember_me,
        })
    }

    pub async fn revoke_session(&self, session_id: &str, reason: &str) -> Result<bool, DbErr> {
        Ok(self
            .execute(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
                 WHERE id = $1 AND revoked_at IS NULL",
                [session_id.into(), now_micros().into(), reason.into()],
            )
            .await?
            > 0)
    }

    /// Revokes every live session of a user except `keep` (the caller's own, when given);
    /// returns the ids of the sessions ended.
    pub async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: &str,
    ) -> Result<Vec<String>, DbErr> {
        let _cleared = self.sessions.clear_on_drop();
        let rows = self
            .conn()
            .query_all_raw(self.stmt(
                "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
                 WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4 RETURNING id",
                [
                    user_id.into(),
                    now_micros().into(),
                    reason.into(),
                    keep.unwrap_or("").into(),
                ],
            ))
            .await?;
        rows.iter().map(|r| r.try_get::<String>("", "id")).collect()
    }

    /// Revokes one of the user's own live sessions; `false` if there is none with that id.
    pub async fn revoke_own_session(&self, user_id: &str, session_id: &str) -> Result<bool, DbErr> {
        Ok(self
            .execute(
                "UPDATE sessions SET revoked_at = $3, revoked_reason = 'signed_out_by_user' \
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                [session_id.into(), user_id.into(), now_micros().into()],
            )
            .await?
            > 0)
    }

    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionRow>, DbErr> {
        SessionRow::find_by_statement(self.stmt(
            "SELECT id, user_id, remember_me, user_agent, ip, created_at, last_seen_at, \
             expires_at, revoked_at FROM sessions \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY last_seen_at DESC",
            [user_id.into(), now_micros().into()],
        ))
        .all(self.conn())
        .await
    }
}
