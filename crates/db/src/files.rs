//! Each user's file workspace: the tree of folders and files, and the bytes each user stores.
//! The bytes themselves are in the object store; a row is what makes a file visible.

use crate::{Db, now_micros};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

#[derive(Debug, Clone, FromQueryResult)]
pub struct FileRow {
    pub id: String,
    pub owner_id: String,
    /// `None` for an entry at the top of the workspace.
    pub parent_id: Option<String>,
    pub is_folder: bool,
    pub name: String,
    pub size: i64,
    pub content_type: String,
    pub object_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Stored bytes and file count of one content type.
#[derive(Debug, Clone, FromQueryResult)]
pub struct TypeUsage {
    pub content_type: String,
    pub files: i64,
    pub bytes: i64,
}

const COLUMNS: &str = "id, owner_id, parent_id, is_folder, name, size, content_type, object_key, created_at, \
     updated_at";

/// The tree is deep at most this many folders: bounds every walk up or down it.
pub const MAX_DEPTH: usize = 32;

impl Db {
    /// The owner's entry `id`; another user's is `None`, like a missing one.
    pub async fn file(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        id: &str,
    ) -> Result<Option<FileRow>, DbErr> {
        FileRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM files WHERE id = $1 AND owner_id = $2"),
            [id.into(), owner.into()],
        ))
        .one(conn)
        .await
    }

    /// The entries of one folder (`None`: the top), folders first, then by name.
    pub async fn children(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        parent: Option<&str>,
    ) -> Result<Vec<FileRow>, DbErr> {
        let (cond, values): (&str, Vec<Value>) = match parent {
            Some(p) => ("parent_id = $2", vec![owner.into(), p.into()]),
            None => ("parent_id IS NULL", vec![owner.into()]),
        };
        FileRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM files WHERE owner_id = $1 AND {cond} \
                 ORDER BY is_folder DESC, name"
            ),
            values,
        ))
        .all(conn)
        .await
    }

    /// The entry called `name` in a folder, if any.
    pub async fn child_named(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<Option<FileRow>, DbErr> {
        let (cond, values): (&str, Vec<Value>) = match parent {
            Some(p) => ("parent_id = $3", vec![owner.into(), name.into(), p.into()]),
            None => ("parent_id IS NULL", vec![owner.into(), name.into()]),
        };
        FileRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM files WHERE owner_id = $1 AND name = $2 AND {cond}"),
            values,
        ))
        .one(conn)
        .await
    }

    /// Every entry of the owner, for the tree and for walks: bounded by the caller's quota and
    /// the entry limit.
    pub async fn all_files(&self, owner: &str) -> Result<Vec<FileRow>, DbErr> {
        self.all_files_in(self.conn(), owner).await
    }

    /// `all_files` on a given connection or transaction.
    pub async fn all_files_in(
        &self,
        c: &impl ConnectionTrait,
        owner: &str,
    ) -> Result<Vec<FileRow>, DbErr> {
        FileRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM files WHERE owner_id = $1 ORDER BY name"),
            [owner.into()],
        ))
        .all(c)
        .await
    }

    /// Entries whose name contains `text` (case-insensitive for ASCII), at most `limit`.
    pub async fn search_files(
        &self,
        owner: &str,
        text: &str,
        limit: u64,
    ) -> Result<Vec<FileRow>, DbErr> {
        let escaped: String = text
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '\\' | '%' | '_' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        FileRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM files WHERE owner_id = $1 \
                 AND LOWER(name) LIKE $2 ESCAPE '\\' ORDER BY name LIMIT $3"
            ),
            [
                owner.into(),
                format!("%{escaped}%").into(),
                (limit as i64).into(),
            ],
        ))
        .all(self.conn())
        .await
    }

    pub async fn count_files(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
    ) -> Result<i64, DbErr> {
        let row = conn
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) FROM files WHERE owner_id = $1",
                [owner.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get_by_index(0)?,
            None => 0,
        })
    }

    /// Adds an entry; a name already taken in that folder is a unique violation.
    pub async fn insert_file(&self, conn: &impl ConnectionTrait, f: &FileRow) -> Result<(), DbErr> {
        conn.execute_raw(self.insert_stmt(f, "")).await?;
        Ok(())
    }

    /// Adds an entry unless its name is taken in that folder (by a concurrent upload, say):
    /// `false` then, and the transaction goes on.
    pub async fn insert_file_if_absent(
        &self,
        conn: &impl ConnectionTrait,
        f: &FileRow,
    ) -> Result<bool, DbErr> {
        let n = conn
            .execute_raw(self.insert_stmt(f, " ON CONFLICT DO NOTHING"))
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    fn insert_stmt(&self, f: &FileRow, tail: &str) -> sea_orm::Statement {
        self.stmt(
            &format!(
                "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10){tail}"
            ),
            [
                f.id.clone().into(),
                f.owner_id.clone().into(),
                f.parent_id.clone().into(),
                f.is_folder.into(),
                f.name.clone().into(),
                f.size.into(),
                f.content_type.clone().into(),
                f.object_key.clone().into(),
                f.created_at.into(),
                f.updated_at.into(),
            ],
        )
    }

    /// Moves and/or renames an entry; `None` when it is not the owner's.
    pub async fn move_file(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        id: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<Option<FileRow>, DbErr> {
        FileRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE files SET parent_id = $3, name = $4, updated_at = $5 \
                 WHERE id = $1 AND owner_id = $2 RETURNING {COLUMNS}"
            ),
            [
                id.into(),
                owner.into(),
                parent.map(str::to_string).into(),
                name.into(),
                now_micros().into(),
            ],
        ))
        .one(conn)
        .await
    }

    /// Deletes entries, children before their folders (the caller orders `ids` so).
    pub async fn delete_files(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        ids: &[String],
    ) -> Result<u64, DbErr> {
        let mut n = 0;
        for id in ids {
            n += conn
                .execute_raw(self.stmt(
                    "DELETE FROM files WHERE id = $1 AND owner_id = $2",
                    [id.clone().into(), owner.into()],
                ))
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Adds `bytes` to the owner's stored total if it stays within `quota`; `false` (and no
    /// change) otherwise. Conditional in one statement, so concurrent uploads cannot pass the
    /// quota together.
    pub async fn reserve_file_bytes(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        bytes: i64,
        quota: i64,
    ) -> Result<bool, DbErr> {
        conn.execute_raw(self.stmt(
            "INSERT INTO file_usage (owner_id, used) VALUES ($1, 0) ON CONFLICT (owner_id) DO NOTHING",
            [owner.into()],
        ))
        .await?;
        let changed = conn
            .execute_raw(self.stmt(
                "UPDATE file_usage SET used = used + $2 WHERE owner_id = $1 AND used + $2 <= $3",
                [owner.into(), bytes.into(), quota.into()],
            ))
            .await?
            .rows_affected();
        Ok(changed == 1)
    }

    pub async fn release_file_bytes(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        bytes: i64,
    ) -> Result<(), DbErr> {
        conn.execute_raw(self.stmt(
            "UPDATE file_usage SET used = used - $2 WHERE owner_id = $1",
            [owner.into(), bytes.into()],
        ))
        .await?;
        Ok(())
    }

    /// Bytes the owner stores now.
    pub async fn file_bytes_used(&self, owner: &str) -> Result<i64, DbErr> {
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "SELECT used FROM file_usage WHERE owner_id = $1",
                [owner.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get_by_index(0)?,
            None => 0,
        })
    }

    /// Files and bytes per content type, largest first.
    pub async fn file_usage_by_type(&self, owner: &str) -> Result<Vec<TypeUsage>, DbErr> {
        TypeUsage::find_by_statement(self.stmt(
            "SELECT content_type, COUNT(*) AS files, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM files \
             WHERE owner_id = $1 AND is_folder = FALSE GROUP BY content_type \
             ORDER BY bytes DESC, content_type",
            [owner.into()],
        ))
        .all(self.conn())
        .await
    }
}
