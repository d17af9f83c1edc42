//! Each user's file workspace: folders, uploads streamed to the object store within a quota,
//! moves, recursive deletes, search and reads. Another user's entry is never found.

pub mod names;
mod preview;
mod scan;

pub use preview::{Preview, Thumbnail, preview, thumbnail};

use crate::Core;
use crate::error::CoreError;
use crate::time::rfc3339;
use bytes::Bytes;
use etx_db::files::{FileRow, MAX_DEPTH};
use etx_db::users::UserRow;
use etx_db::{DatabaseTransaction, Db, DbErrorKind, classify, now_micros};
use etx_domain::AuditAction;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesConfig {
    /// Bytes each user may store (default 1 GiB).
    pub quota_bytes: u64,
    /// Files and folders each user may have.
    pub max_entries: u32,
    /// `host:port` of a clamd that scans every upload before it becomes visible; unset: no
    /// scanning.
    #[serde(default)]
    pub clamd: Option<String>,
}

/// A file or folder as the API and pages show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileView {
    pub id: String,
    pub name: String,
    /// `folder` or `file`.
    pub kind: String,
    /// The containing folder; `null` at the top of the workspace.
    pub parent_id: Option<String>,
    /// Bytes; 0 for a folder.
    pub size: i64,
    /// Read from the file's bytes when it was uploaded.
    pub content_type: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&FileRow> for FileView {
    fn from(f: &FileRow) -> Self {
        FileView {
            id: f.id.clone(),
            name: f.name.clone(),
            kind: if f.is_folder { "folder" } else { "file" }.into(),
            parent_id: f.parent_id.clone(),
            size: f.size,
            content_type: f.content_type.clone(),
            created_at: rfc3339(f.created_at),
            updated_at: rfc3339(f.updated_at),
        }
    }
}

/// One folder's entries and the folders above it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FolderListing {
    /// `null` for the top of the workspace.
    pub folder: Option<FileView>,
    /// From the top down to the folder's parent.
    pub path: Vec<FileView>,
    pub entries: Vec<FileView>,
}

/// Storage use: total, quota and per content type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageUse {
    pub used_bytes: i64,
    pub quota_bytes: i64,
    pub files: i64,
    pub by_type: Vec<TypeUse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeUse {
    pub content_type: String,
    pub files: i64,
    pub bytes: i64,
}

/// What a recursive delete removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub files: u64,
    pub folders: u64,
    pub bytes: i64,
}

/// A file's bytes as a stream, with what the response needs to describe them.
pub struct Download {
    pub file: FileRow,
    /// The bytes sent: the whole file, or the requested range.
    pub range: Option<std::ops::Range<u64>>,
    pub body: futures_util::stream::BoxStream<'static, anyhow::Result<Bytes>>,
}

/// The audit record of a workspace change, written in the change's own transaction.
fn audit<'a>(
    owner: &'a str,
    action: AuditAction,
    target: &'a str,
    details: serde_json::Value,
) -> crate::audit::Event<'a> {
    crate::audit::Event::new(Some(owner), action)
        .target("file", target)
        .details(details)
}

fn quota(state: &Core) -> i64 {
    i64::try_from(state.config.files.quota_bytes).unwrap_or(i64::MAX)
}

fn too_large(state: &Core) -> CoreError {
    CoreError::PayloadTooLarge(format!(
        "this would pass your storage quota of {}; delete files to make room",
        human_bytes(state.config.files.quota_bytes)
    ))
}

/// `1 GiB`, `512 MiB`, `10 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let shown = format!("{v:.1}");
    let shown = shown.strip_suffix(".0").unwrap_or(&shown);
    format!("{shown} {}", UNITS[unit])
}

/// The owner's folder `id` (`None`: the top); a file or another user's folder is not found.
async fn folder(
    db: &Db,
    conn: &impl etx_db::ConnectionTrait,
    owner: &str,
    id: Option<&str>,
) -> Result<Option<FileRow>, CoreError> {
    let Some(id) = id else { return Ok(None) };
    match db.file(conn, owner, id).await? {
        Some(f) if f.is_folder => Ok(Some(f)),
        Some(_) => Err(CoreError::field("parent_id", "is a file, not a folder")),
        None => Err(CoreError::NotFound),
    }
}

/// A name taken in that folder: the conflict the client can act on.
fn name_taken(name: &str) -> CoreError {
    CoreError::conflict_field("name", &format!("{name:?} already exists in this folder"))
}

fn is_unique_violation(e: &etx_db::DbErr) -> bool {
    matches!(classify(e), DbErrorKind::UniqueViolation { .. })
}

fn new_row(owner: &str, parent: Option<&str>, name: &str, folder: bool) -> FileRow {
    let now = now_micros();
    FileRow {
        id: uuid::Uuid::now_v7().to_string(),
        owner_id: owner.to_string(),
        parent_id: parent.map(str::to_string),
        is_folder: folder,
        name: name.to_string(),
        size: 0,
        content_type: if folder {
            "folder"
        } else {
            "application/octet-stream"
        }
        .into(),
        object_key: None,
        created_at: now,
        updated_at: now,
    }
}

/// Refuses a new entry past the per-user entry limit.
async fn check_entries(
    state: &Core,
    conn: &impl etx_db::ConnectionTrait,
    owner: &str,
    adding: i64,
) -> Result<(), CoreError> {
    let max = i64::from(state.config.files.max_entries);
    if state.db.count_files(conn, owner).await? + adding > max {
        return Err(CoreError::LimitExceeded(format!(
            "a workspace holds at most {max} files and folders"
        )));
    }
    Ok(())
}

/// Creates a folder in `parent` (`None`: the top).
pub async fn create_folder(
    state: &Core,
    user: &UserRow,
    parent: Option<&str>,
    name: &str,
) -> Result<FileView, CoreError> {
    let name = names::entry_name(name, "name")?;
    let db = &state.db;
    let tx = db.begin_write().await?;
    // One change to a workspace's tree at a time: checks below hold until the commit.
    db.lock_user(&tx, &user.id).await?;
    let parent = folder(db, &tx, &user.id, parent).await?;
    if ancestors(db, &tx, &user.id, parent.as_ref()).await?.len() >= MAX_DEPTH {
        return Err(CoreError::field(
            "parent_id",
            "folders nest at most 32 deep",
        ));
    }
    check_entries(state, &tx, &user.id, 1).await?;
    let row = new_row(
        &user.id,
        parent.as_ref().map(|p| p.id.as_str()),
        &name,
        true,
    );
    match db.insert_file(&tx, &row).await {
        Err(e) if is_unique_violation(&e) => return Err(name_taken(&name)),
        other => other?,
    }
    audit(
        &user.id,
        AuditAction::FolderCreate,
        &row.id,
        json!({"name": name}),
    )
    .write(db, &tx)
    .await?;
    tx.commit().await?;
    Ok(FileView::from(&row))
}

/// How many levels `f` spans: 1 for a file or an empty folder, one more per level of folders
/// inside it.
fn levels(all: &[FileRow], f: &FileRow) -> usize {
    let mut children: HashMap<&str, Vec<&FileRow>> = HashMap::new();
    for e in all {
        if let Some(p) = &e.parent_id {
            children.entry(p.as_str()).or_default().push(e);
        }
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut deepest = 0;
    let mut stack = vec![(f, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        if !seen.insert(e.id.as_str()) {
            continue;
        }
        for c in children.get(e.id.as_str()).into_iter().flatten() {
            stack.push((c, depth + 1));
        }
    }
    deepest
}

/// `f` and the folders above it, nearest first (empty at the top), at most `MAX_DEPTH + 1`.
async fn ancestors(
    db: &Db,
    conn: &impl etx_db::ConnectionTrait,
    owner: &str,
    f: Option<&FileRow>,
) -> Result<Vec<FileRow>, CoreError> {
    let mut chain: Vec<FileRow> = f.into_iter().cloned().collect();
    while chain.len() <= MAX_DEPTH {
        let Some(p) = chain.last().and_then(|f| f.parent_id.clone()) else {
            break;
        };
        match db.file(conn, owner, &p).await? {
            Some(row) => chain.push(row),
            None => break,
        }
    }
    Ok(chain)
}

/// The folder for a file uploaded at `segments` (its folders, then its name) under `base`,
/// creating the folders that do not exist yet.
async fn ensure_folders(
    state: &Core,
    tx: &DatabaseTransaction,
    owner: &str,
    base: Option<&FileRow>,
    folders: &[String],
) -> Result<Option<String>, CoreError> {
    let db = &state.db;
    if ancestors(db, tx, owner, base).await?.len() + folders.len() > MAX_DEPTH {
        return Err(CoreError::field("file", "folders nest at most 32 deep"));
    }
    let mut parent = base.map(|b| b.id.clone());
    for name in folders {
        if db
            .child_named(tx, owner, parent.as_deref(), name)
            .await?
            .is_none()
        {
            check_entries(state, tx, owner, 1).await?;
            // Another upload may create the same folder at the same moment: both use it.
            let row = new_row(owner, parent.as_deref(), name, true);
            db.insert_file_if_absent(tx, &row).await?;
        }
        parent = Some(
            match db.child_named(tx, owner, parent.as_deref(), name).await? {
                Some(f) if f.is_folder => f.id,
                Some(_) => {
                    return Err(CoreError::conflict_field(
                        "file",
                        &format!("{name:?} is a file, not a folder"),
                    ));
                }
                None => {
                    return Err(CoreError::conflict_field(
                        "file",
                        &format!("the folder {name:?} changed meanwhile; try again"),
                    ));
                }
            },
        );
    }
    Ok(parent)
}

/// An uploaded file whose bytes are stored but not yet visible.
pub struct Staged {
    folders: Vec<String>,
    name: String,
    key: String,
    size: i64,
    head: Vec<u8>,
}

/// An upload of one or more files into one folder: each file's bytes stream to the object
/// store as they arrive, counted against what is left of the quota, and nothing becomes
/// visible until `commit` records them all in one transaction. A failure at any point, or
/// `discard`, leaves nothing behind.
pub struct Upload<'a> {
    state: &'a Core,
    user: &'a UserRow,
    base: Option<FileRow>,
    room: i64,
    staged: Vec<Staged>,
}

/// How long an upload may send nothing before it is given up.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl<'a> Upload<'a> {
    /// Starts an upload into `parent` (`None`: the top of the workspace).
    pub async fn start(
        state: &'a Core,
        user: &'a UserRow,
        parent: Option<&str>,
    ) -> Result<Upload<'a>, CoreError> {
        let base = folder(&state.db, state.db.conn(), &user.id, parent).await?;
        let room = quota(state) - state.db.file_bytes_used(&user.id).await?;
        if room <= 0 {
            return Err(too_large(state));
        }
        Ok(Upload {
            state,
            user,
            base,
            room,
            staged: Vec::new(),
        })
    }

    /// Streams one file, named by `path` (a name, or a relative path whose folders are
    /// created on commit), to the object store.
    pub async fn add<S, E>(&mut self, path: &str, mut body: S) -> Result<(), CoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<CoreError>,
    {
        let mut folders = names::relative_path(path, MAX_DEPTH)?;
        let name = folders.pop().unwrap_or_default();
        let state = self.state;
        let key = format!("files/{}/{}", self.user.id, uuid::Uuid::now_v7().simple());
        let mut scan = match state.config.files.clamd.as_deref() {
            Some(address) if !address.is_empty() => Some(scan::Scan::start(address).await?),
            _ => None,
        };
        let mut writer = state.storage.writer(&key).await?;
        let mut size: i64 = 0;
        let mut head: Vec<u8> = Vec::new();
        let room = self.room;
        let streamed: Result<(), CoreError> = async {
            loop {
                let next = tokio::time::timeout(UPLOAD_IDLE, body.next())
                    .await
                    .map_err(|_| CoreError::BadRequest("the upload stalled".into()))?;
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(Into::into)?;
                size += chunk.len() as i64;
                if size > room {
                    return Err(too_large(state));
                }
                if head.len() < 512 {
                    head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
                }
                if let Some(s) = scan.as_mut() {
                    s.feed(&chunk).await?;
                }
                writer.write(&chunk).await?;
            }
            match scan.take() {
                Some(s) => s.finish().await,
                None => Ok(()),
            }
        }
        .await;
        if let Err(CoreError::Validation { message, .. }) = &streamed {
            tracing::warn!(
                user_id = self.user.id,
                file = name,
                message,
                "an upload was refused by the malware scanner"
            );
            crate::audit::Event::new(Some(&self.user.id), AuditAction::FilesInfected)
                .details(json!({"name": name, "reason": message}))
                .record(state)
                .await;
        }
        if let Err(e) = streamed {
            if let Err(a) = writer.abort().await {
                tracing::warn!(error = %a, "an interrupted upload could not be aborted");
            }
            return Err(e);
        }
        writer.finish().await?;
        self.room -= size;
        self.staged.push(Staged {
            folders,
            name,
            key,
            size,
            head,
        });
        Ok(())
    }

    /// Files streamed so far.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Makes every streamed file visible at once, or none of them.
    pub async fn commit(mut self) -> Result<Vec<FileView>, CoreError> {
        let staged = std::mem::take(&mut self.staged);
        match record(self.state, self.user, self.base.as_ref(), &staged).await {
            Ok(views) => Ok(views),
            Err(e) => {
                discard(self.state, &staged).await;
                Err(e)
            }
        }
    }

    /// Removes what was streamed; nothing was visible.
    pub async fn discard(mut self) {
        let staged = std::mem::take(&mut self.staged);
        discard(self.state, &staged).await;
    }
}

async fn discard(state: &Core, staged: &[Staged]) {
    for s in staged {
        if let Err(e) = state.storage.delete(&s.key).await {
            tracing::warn!(error = %e, key = s.key, "a refused upload's bytes could not be removed");
        }
    }
}

/// Records uploaded files: their folders, their rows and their bytes against the quota.
async fn record(
    state: &Core,
    user: &UserRow,
    base: Option<&FileRow>,
    staged: &[Staged],
) -> Result<Vec<FileView>, CoreError> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    db.lock_user(&tx, &user.id).await?;
    // The folder the files go to was found before they streamed in; it may be gone since.
    if let Some(b) = base
        && db.file(&tx, &user.id, &b.id).await?.is_none()
    {
        return Err(CoreError::conflict_field(
            "parent_id",
            "the folder was deleted while the files were uploading",
        ));
    }
    let total: i64 = staged.iter().map(|s| s.size).sum();
    if !db
        .reserve_file_bytes(&tx, &user.id, total, quota(state))
        .await?
    {
        return Err(too_large(state));
    }
    let mut views = Vec::with_capacity(staged.len());
    for s in staged {
        let parent = ensure_folders(state, &tx, &user.id, base, &s.folders).await?;
        check_entries(state, &tx, &user.id, 1).await?;
        let row = FileRow {
            size: s.size,
            content_type: names::sniff(&s.head, &s.name).into(),
            object_key: Some(s.key.clone()),
            ..new_row(&user.id, parent.as_deref(), &s.name, false)
        };
        match db.insert_file(&tx, &row).await {
            Err(e) if is_unique_violation(&e) => return Err(name_taken(&s.name)),
            other => other?,
        }
        views.push(FileView::from(&row));
    }
    let files: Vec<_> = views
        .iter()
        .map(|v| json!({"id": v.id, "name": v.name, "size": v.size}))
        .collect();
    let folder = base.map_or("", |b| b.id.as_str());
    let details = json!({"files": files, "bytes": total});
    audit(&user.id, AuditAction::FilesUpload, folder, details)
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    Ok(views)
}

/// A folder's entries (`None`: the top) with the folders above it.
pub async fn list(
    state: &Core,
    user: &UserRow,
    id: Option<&str>,
) -> Result<FolderListing, CoreError> {
    let db = &state.db;
    let f = folder(db, db.conn(), &user.id, id).await?;
    let above = ancestors(db, db.conn(), &user.id, f.as_ref()).await?;
    let path = above.iter().skip(1).rev().map(FileView::from).collect();
    let entries = db
        .children(db.conn(), &user.id, id)
        .await?
        .iter()
        .map(FileView::from)
        .collect();
    Ok(FolderListing {
        folder: f.as_ref().map(FileView::from),
        path,
        entries,
    })
}

/// The owner's entry `id`.
pub async fn get(state: &Core, user: &UserRow, id: &str) -> Result<FileRow, CoreError> {
    state
        .db
        .file(state.db.conn(), &user.id, id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Entries whose name contains `text`, at most 100.
pub async fn search(state: &Core, user: &UserRow, text: &str) -> Result<Vec<FileView>, CoreError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 100 {
        return Err(CoreError::field("q", "must be 1 to 100 characters"));
    }
    let rows = state.db.search_files(&user.id, text, 100).await?;
    Ok(rows.iter().map(FileView::from).collect())
}

/// Renames and/or moves an entry. `parent`: `None` keeps it where it is, `Some(None)` moves it
/// to the top. A folder cannot move into itself or below itself.
pub async fn update(
    state: &Core,
    user: &UserRow,
    id: &str,
    parent: Option<Option<&str>>,
    name: Option<&str>,
) -> Result<FileView, CoreError> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    db.lock_user(&tx, &user.id).await?;
    let f = db
        .file(&tx, &user.id, id)
        .await?
        .ok_or(CoreError::NotFound)?;
    let name = match name {
        Some(n) => names::entry_name(n, "name")?,
        None => f.name.clone(),
    };
    let target = match parent {
        Some(p) => folder(db, &tx, &user.id, p).await?,
        None => folder(db, &tx, &user.id, f.parent_id.as_deref()).await?,
    };
    // Walking up from the target must not pass the entry itself.
    let above = ancestors(db, &tx, &user.id, target.as_ref()).await?;
    if above.iter().any(|t| t.id == f.id) {
        return Err(CoreError::field(
            "parent_id",
            "a folder cannot move into itself or a folder inside it",
        ));
    }
    if f.is_folder && parent.is_some() {
        let all = db.all_files_in(&tx, &user.id).await?;
        if above.len() + levels(&all, &f) > MAX_DEPTH {
            return Err(CoreError::field(
                "parent_id",
                "folders nest at most 32 deep: this move would nest deeper",
            ));
        }
    }
    let parent_id = target.as_ref().map(|t| t.id.as_str());
    let moved = match db.move_file(&tx, &user.id, id, parent_id, &name).await {
        Err(e) if is_unique_violation(&e) => return Err(name_taken(&name)),
        other => other?.ok_or(CoreError::NotFound)?,
    };
    let details = json!({
        "before": {"name": f.name, "parent_id": f.parent_id},
        "after": {"name": moved.name, "parent_id": moved.parent_id},
    });
    audit(&user.id, AuditAction::FileUpdate, &f.id, details)
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    Ok(FileView::from(&moved))
}

/// Deletes an entry and, for a folder, everything in it. The rows go in one transaction; the
/// bytes are removed from the object store after it commits.
pub async fn delete(state: &Core, user: &UserRow, id: &str) -> Result<Deleted, CoreError> {
    let db = &state.db;
    let tx = db.begin_write().await?;
    db.lock_user(&tx, &user.id).await?;
    let all = db.all_files_in(&tx, &user.id).await?;
    let target = all.iter().find(|f| f.id == id).ok_or(CoreError::NotFound)?;
    let mut children: HashMap<&str, Vec<&FileRow>> = HashMap::new();
    for f in &all {
        if let Some(p) = &f.parent_id {
            children.entry(p.as_str()).or_default().push(f);
        }
    }
    // Depth-first, so every entry comes after the entries inside it.
    let mut order: Vec<&FileRow> = Vec::new();
    let mut stack = vec![(target, false)];
    // Guards the walk should a loop of folders ever be stored.
    let mut seen: HashSet<&str> = HashSet::new();
    while let Some((f, expanded)) = stack.pop() {
        if expanded || !f.is_folder {
            order.push(f);
            continue;
        }
        if !seen.insert(f.id.as_str()) {
            continue;
        }
        stack.push((f, true));
        for c in children.get(f.id.as_str()).into_iter().flatten() {
            stack.push((c, false));
        }
    }
    let ids: Vec<String> = order.iter().map(|f| f.id.clone()).collect();
    let bytes: i64 = order.iter().filter(|f| !f.is_folder).map(|f| f.size).sum();
    let removed = db.delete_files(&tx, &user.id, &ids).await?;
    if removed != ids.len() as u64 {
        // Something was added or moved meanwhile: do nothing rather than orphan it.
        return Err(CoreError::conflict_field(
            "id",
            "the folder changed while it was being deleted; try again",
        ));
    }
    db.release_file_bytes(&tx, &user.id, bytes).await?;
    let details = json!({"name": target.name, "entries": ids.len(), "bytes": bytes});
    audit(&user.id, AuditAction::FileDelete, &target.id, details)
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    for f in order.iter().filter(|f| !f.is_folder) {
        let thumb = preview::thumbnail_key(&user.id, &f.id);
        for key in f.object_key.as_deref().into_iter().chain([thumb.as_str()]) {
            if let Err(e) = state.storage.delete(key).await {
                tracing::warn!(error = %e, key, "a deleted file's bytes could not be removed");
            }
        }
    }
    let files = order.iter().filter(|f| !f.is_folder).count() as u64;
    Ok(Deleted {
        files,
        folders: order.len() as u64 - files,
        bytes,
    })
}

/// A file's bytes, or those of `range` (start inclusive, end exclusive, within the file).
pub async fn download(
    state: &Core,
    user: &UserRow,
    id: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Download, CoreError> {
    let file = get(state, user, id).await?;
    let key = match (&file.object_key, file.is_folder) {
        (Some(k), false) => k.clone(),
        _ => return Err(CoreError::field("id", "is a folder; download its files")),
    };
    // An empty file has no bytes to ask a range of.
    let range = range.filter(|_| file.size > 0);
    let body = state
        .storage
        .read(&key, range.clone())
        .await?
        .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("file {id} has no stored bytes")))?;
    Ok(Download { file, range, body })
}

/// The user `owner_id` for an admin looking at their workspace. Moderators are refused;
/// anyone else is told nothing exists, as for any object not theirs.
async fn staff_target(
    state: &Core,
    auth: &crate::Auth,
    owner_id: &str,
) -> Result<UserRow, CoreError> {
    if !auth.role.is_admin() {
        return Err(if auth.role.is_staff() {
            CoreError::Forbidden("admins only".into())
        } else {
            CoreError::NotFound
        });
    }
    state
        .db
        .user_by_id(owner_id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// A user's folder as an admin sees it, read only. The look is audited before anything is
/// returned; if the record cannot be written, nothing is shown.
pub async fn staff_list(
    state: &Core,
    auth: &crate::Auth,
    owner_id: &str,
    folder: Option<&str>,
) -> Result<FolderListing, CoreError> {
    let owner = staff_target(state, auth, owner_id).await?;
    let listing = list(state, &owner, folder).await?;
    crate::audit::Event::new(Some(&auth.user.id), AuditAction::FilesStaffRead)
        .target("user", &owner.id)
        .details(json!({"folder_id": folder, "entries": listing.entries.len()}))
        .write(&state.db, state.db.conn())
        .await?;
    Ok(listing)
}

/// A user's file for an admin, audited before a byte is sent.
pub async fn staff_download(
    state: &Core,
    auth: &crate::Auth,
    owner_id: &str,
    file_id: &str,
) -> Result<Download, CoreError> {
    let owner = staff_target(state, auth, owner_id).await?;
    let d = download(state, &owner, file_id, None).await?;
    crate::audit::Event::new(Some(&auth.user.id), AuditAction::FilesStaffDownload)
        .target("file", &d.file.id)
        .details(json!({"owner_id": owner.id, "name": d.file.name, "size": d.file.size}))
        .write(&state.db, state.db.conn())
        .await?;
    Ok(d)
}

/// Storage use: total, quota, per type.
pub async fn usage(state: &Core, user: &UserRow) -> Result<StorageUse, CoreError> {
    let by_type = state.db.file_usage_by_type(&user.id).await?;
    Ok(StorageUse {
        used_bytes: state.db.file_bytes_used(&user.id).await?,
        quota_bytes: quota(state),
        files: by_type.iter().map(|t| t.files).sum(),
        by_type: by_type
            .into_iter()
            .map(|t| TypeUse {
                content_type: t.content_type,
                files: t.files,
                bytes: t.bytes,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1024 * 1024 * 1024), "1 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 4), "3 MiB");
        assert_eq!(human_bytes(1023), "1023 B");
    }
}
