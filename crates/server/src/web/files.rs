//! `/files`: the file workspace page: a folder's entries with its path, storage use, uploads
//! of files or a whole folder, new folders and deletes. Forms post here and redirect back.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, PageResult, Stamp, WebUser, check_form_csrf, form_expired};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::error::CoreError;
use etx_core::files::{self, FileView, Upload, human_bytes};
use futures_util::StreamExt;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct FilesQuery {
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub msg: Option<String>,
}

pub struct EntryLine {
    pub id: String,
    pub name: String,
    pub is_folder: bool,
    /// A folder or a CSV file: a BAR grouping can start on it.
    pub groupable: bool,
    /// An image the server draws a thumbnail of.
    pub thumbnail: bool,
    pub size: String,
    pub content_type: String,
    pub updated_at: Stamp,
}

impl From<&FileView> for EntryLine {
    fn from(f: &FileView) -> Self {
        EntryLine {
            id: f.id.clone(),
            name: f.name.clone(),
            is_folder: f.kind == "folder",
            thumbnail: matches!(
                f.content_type.as_str(),
                "image/png" | "image/jpeg" | "image/webp" | "image/gif"
            ),
            groupable: f.kind == "folder"
                || f.content_type == "text/csv"
                || f.name.to_ascii_lowercase().ends_with(".csv"),
            size: if f.kind == "folder" {
                String::new()
            } else {
                human_bytes(u64::try_from(f.size).unwrap_or(0))
            },
            content_type: if f.kind == "folder" {
                "folder".into()
            } else {
                f.content_type.clone()
            },
            updated_at: Stamp::of(&f.updated_at),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "files.html")]
pub struct FilesPage {
    layout: Layout,
    /// The folder shown; empty at the top.
    folder_id: String,
    folder_name: String,
    path: Vec<(String, String)>,
    entries: Vec<EntryLine>,
    used: String,
    quota: String,
    percent: i64,
    error: Option<String>,
    /// The user has ETX platform settings: files can go to the platform's jobs.
    has_platform: bool,
}

pub async fn view_files_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<FilesQuery>,
) -> PageResult {
    let folder = q.folder.as_deref().filter(|f| !f.is_empty());
    let listing = files::list(&state, &u.auth.user, folder)
        .await
        .map_err(ApiError::from)?;
    let usage = files::usage(&state, &u.auth.user)
        .await
        .map_err(ApiError::from)?;
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "files");
    layout.notice = notice(&NoticeQuery { msg: q.msg.clone() });
    let percent = if usage.quota_bytes > 0 {
        (usage.used_bytes.saturating_mul(100) / usage.quota_bytes).clamp(0, 100)
    } else {
        0
    };
    Ok(FilesPage {
        layout,
        folder_id: listing
            .folder
            .as_ref()
            .map(|f| f.id.clone())
            .unwrap_or_default(),
        folder_name: listing
            .folder
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        path: listing
            .path
            .iter()
            .map(|p| (p.id.clone(), p.name.clone()))
            .collect(),
        entries: listing.entries.iter().map(EntryLine::from).collect(),
        used: human_bytes(u64::try_from(usage.used_bytes).unwrap_or(0)),
        quota: human_bytes(u64::try_from(usage.quota_bytes).unwrap_or(0)),
        percent,
        error: q.msg.as_deref().and_then(problem).map(str::to_string),
        has_platform: super::jobs::has_platform(&state, &u.auth.user).await,
    }
    .into_response())
}

/// Fixed messages for a failed form, chosen by key so nothing from the URL reaches the page.
fn problem(key: &str) -> Option<&'static str> {
    match key {
        "quota" => Some("That upload would pass your storage quota; nothing was stored."),
        "taken" => Some("A file or folder of that name already exists there; nothing was stored."),
        "bad-name" => Some("That name cannot be used; nothing was stored."),
        "no-file" => Some("Choose at least one file or a folder to upload."),
        "failed" => Some("The upload failed; nothing was stored."),
        _ => None,
    }
}

fn back(folder: &str, msg: &str) -> Response {
    let folder = if folder.is_empty() {
        String::new()
    } else {
        format!(
            "folder={}&",
            form_urlencoded::byte_serialize(folder.as_bytes()).collect::<String>()
        )
    };
    Redirect::to(&format!("/files?{folder}msg={msg}")).into_response()
}

/// The key of the message a failed form shows.
fn failure_key(e: &CoreError) -> &'static str {
    match e {
        CoreError::PayloadTooLarge(_) => "quota",
        CoreError::Conflict { .. } => "taken",
        CoreError::Validation { .. } => "bad-name",
        _ => "failed",
    }
}

/// Uploads from the page: the form's first part is its CSRF token, then the chosen files
/// (a folder chosen with the folder picker arrives with relative paths).
pub async fn view_upload_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Query(q): Query<FilesQuery>,
    mut mp: Multipart,
) -> PageResult {
    let folder = q.folder.unwrap_or_default();
    let token = match mp.next_field().await {
        Ok(Some(f)) if f.name() == Some("csrf_token") => f.text().await.unwrap_or_default(),
        _ => String::new(),
    };
    if check_form_csrf(&headers, &token).is_err() {
        return Ok(form_expired());
    }
    let parent = Some(folder.as_str()).filter(|f| !f.is_empty());
    let mut up = match Upload::start(&state, &u.auth.user, parent).await {
        Ok(up) => up,
        Err(CoreError::NotFound) => return Err(PageError::from(ApiError::NotFound)),
        Err(e) => return Ok(back(&folder, failure_key(&e))),
    };
    let read: Result<(), CoreError> = async {
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| CoreError::BadRequest(e.body_text()))?
        {
            // A file input left empty still sends one part with an empty name.
            let Some(name) = field
                .file_name()
                .filter(|n| !n.is_empty())
                .map(str::to_string)
            else {
                continue;
            };
            if field.name() != Some("file") {
                continue;
            }
            let body = field.map(|c| c.map_err(|e| CoreError::BadRequest(e.to_string())));
            up.add(&name, body).await?;
        }
        Ok(())
    }
    .await;
    match read {
        Ok(()) if up.is_empty() => {
            up.discard().await;
            Ok(back(&folder, "no-file"))
        }
        Ok(()) => match up.commit().await {
            Ok(_) => Ok(back(&folder, "uploaded")),
            Err(e) => Ok(back(&folder, failure_key(&e))),
        },
        Err(e) => {
            up.discard().await;
            Ok(back(&folder, failure_key(&e)))
        }
    }
}

#[derive(Deserialize)]
pub struct FolderForm {
    pub csrf_token: String,
    pub name: String,
    #[serde(default)]
    pub parent: String,
}

pub async fn view_folder_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<FolderForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    let parent = Some(f.parent.as_str()).filter(|p| !p.is_empty());
    match files::create_folder(&state, &u.auth.user, parent, &f.name).await {
        Ok(_) => Ok(back(&f.parent, "folder-created")),
        Err(CoreError::NotFound) => Err(PageError::from(ApiError::NotFound)),
        Err(e) => Ok(back(&f.parent, failure_key(&e))),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    pub csrf_token: String,
}

pub async fn view_delete_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    let entry = files::get(&state, &u.auth.user, &id)
        .await
        .map_err(ApiError::from)?;
    files::delete(&state, &u.auth.user, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(back(entry.parent_id.as_deref().unwrap_or(""), "deleted"))
}
