//! `/api/files`: the signed-in user's file workspace: upload files or whole folders, folders,
//! listing, tree-free search, moves, recursive deletes, storage use and ranged downloads.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etx_core::error::CoreError;
use etx_core::files::{self, Deleted, FileView, FolderListing, Preview, StorageUse, Upload};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The quota, checked while the bytes stream, bounds an upload; not the JSON limit.
        .routes(routes!(list, upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(create_folder))
        .routes(routes!(search))
        .routes(routes!(usage))
        .routes(routes!(get_entry, update, delete))
        .routes(routes!(download))
        .routes(routes!(preview))
        .routes(routes!(thumbnail))
        .routes(routes!(staff_list))
        .routes(routes!(staff_download))
}

#[derive(Deserialize, IntoParams)]
pub struct FolderQuery {
    /// The folder; omitted for the top of the workspace.
    pub folder_id: Option<String>,
}

/// One folder's entries (folders first, then by name) and the folders above it.
#[utoipa::path(get, path = "/api/files", tag = "files", params(FolderQuery),
    responses(
        (status = 200, description = "The folder's entries", body = FolderListing),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such folder of yours", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<FolderQuery>,
) -> ApiResult<Json<FolderListing>> {
    Ok(Json(
        files::list(&state, &auth.user, q.folder_id.as_deref()).await?,
    ))
}

/// The files an upload stored.
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    pub files: Vec<FileView>,
}

/// Upload files, or a whole folder keeping its tree, into a folder (`folder_id`, or the top).
/// `multipart/form-data` with one `file` part per file; a part's file name may be a relative
/// path (`reports/2024/bar.csv`), whose folders are created. All files become visible together
/// or, if any is refused (name taken, quota, bad name), none does.
#[utoipa::path(post, path = "/api/files", tag = "files", params(FolderQuery),
    request_body(content_type = "multipart/form-data", description = "`file` parts"),
    responses(
        (status = 201, description = "The stored files", body = Uploaded),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such folder of yours", body = ErrorBody),
        (status = 409, description = "A name is taken in its folder", body = ErrorBody),
        (status = 413, description = "Past your storage quota", body = ErrorBody),
        (status = 422, description = "No file, or a bad name", body = ErrorBody),
    ))]
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<FolderQuery>,
    mp: Multipart,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let mut up = Upload::start(&state, &auth.user, q.folder_id.as_deref()).await?;
    match read_parts(&mut up, mp).await {
        Ok(()) if !up.is_empty() => {
            let files = up.commit().await?;
            Ok((StatusCode::CREATED, Json(Uploaded { files })))
        }
        Ok(()) => {
            up.discard().await;
            Err(ApiError::field("file", "is required"))
        }
        Err(e) => {
            up.discard().await;
            Err(e)
        }
    }
}

async fn read_parts(up: &mut Upload<'_>, mut mp: Multipart) -> Result<(), ApiError> {
    while let Some(field) = mp.next_field().await.map_err(bad_multipart)? {
        if field.name() != Some("file") {
            continue;
        }
        let Some(name) = field.file_name().map(str::to_string) else {
            return Err(ApiError::field("file", "each file part needs a file name"));
        };
        let body = field.map(|chunk| {
            chunk.map_err(|e| CoreError::BadRequest(format!("the upload broke off: {e}")))
        });
        up.add(&name, body).await?;
    }
    Ok(())
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
}

/// Body of a new folder.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFolder {
    pub name: String,
    /// The containing folder; omitted or `null` for the top.
    pub parent_id: Option<String>,
}

/// Create a folder.
#[utoipa::path(post, path = "/api/files/folders", tag = "files", request_body = NewFolder,
    responses(
        (status = 201, description = "The folder", body = FileView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such parent folder of yours", body = ErrorBody),
        (status = 409, description = "The name is taken in that folder", body = ErrorBody),
        (status = 422, description = "A bad name", body = ErrorBody),
    ))]
async fn create_folder(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(b): AppJson<NewFolder>,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let f = files::create_folder(&state, &auth.user, b.parent_id.as_deref(), &b.name).await?;
    Ok((StatusCode::CREATED, Json(f)))
}

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Text the name contains (1–100 characters, case-insensitive for ASCII).
    pub q: String,
}

/// Files and folders whose name contains the text, at most 100.
#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    pub entries: Vec<FileView>,
}

/// Search your files and folders by name.
#[utoipa::path(get, path = "/api/files/search", tag = "files", params(SearchQuery),
    responses(
        (status = 200, description = "Matching entries", body = SearchResult),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "Empty or too long", body = ErrorBody),
    ))]
async fn search(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<SearchQuery>,
) -> ApiResult<Json<SearchResult>> {
    let entries = files::search(&state, &auth.user, &q.q).await?;
    Ok(Json(SearchResult { entries }))
}

/// Your storage use: total, quota and per content type.
#[utoipa::path(get, path = "/api/files/usage", tag = "files",
    responses(
        (status = 200, description = "Storage use", body = StorageUse),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn usage(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<StorageUse>> {
    Ok(Json(files::usage(&state, &auth.user).await?))
}

/// One file or folder.
#[utoipa::path(get, path = "/api/files/{id}", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The entry", body = FileView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such entry of yours", body = ErrorBody),
    ))]
async fn get_entry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FileView>> {
    let f = files::get(&state, &auth.user, &id).await?;
    Ok(Json(FileView::from(&f)))
}

/// Body of a rename or move: either field or both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryUpdate {
    pub name: Option<String>,
    /// The folder to move into; `null` for the top, omitted to stay.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
}

/// Tells "`parent_id`: null" (move to the top) from an omitted `parent_id` (stay).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// Rename and/or move a file or folder.
#[utoipa::path(patch, path = "/api/files/{id}", tag = "files", params(("id" = String, Path)),
    request_body = EntryUpdate,
    responses(
        (status = 200, description = "The entry", body = FileView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such entry or folder of yours", body = ErrorBody),
        (status = 409, description = "The name is taken in the target folder", body = ErrorBody),
        (status = 422, description = "A bad name, or a folder moved into itself", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(b): AppJson<EntryUpdate>,
) -> ApiResult<Json<FileView>> {
    let parent = b.parent_id.as_ref().map(|p| p.as_deref());
    Ok(Json(
        files::update(&state, &auth.user, &id, parent, b.name.as_deref()).await?,
    ))
}

/// Delete a file, or a folder with everything in it.
#[utoipa::path(delete, path = "/api/files/{id}", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "What was removed", body = Deleted),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such entry of yours", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(files::delete(&state, &auth.user, &id).await?))
}

/// What a file looks like without downloading it: a CSV's header and first 50 rows, JSON
/// indented, the start of a text (at most 256 KiB is read), or the address an image or PDF is
/// shown from.
#[utoipa::path(get, path = "/api/files/{id}/preview", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The preview", body = Preview),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such file of yours", body = ErrorBody),
        (status = 422, description = "A folder", body = ErrorBody),
    ))]
async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Preview>> {
    Ok(Json(files::preview(&state, &auth.user, &id).await?))
}

/// A small copy of an image (PNG, JPEG, WebP or GIF; at most 512 pixels a side, metadata
/// removed), drawn on first use and kept.
#[utoipa::path(get, path = "/api/files/{id}/thumbnail", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/png"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such file of yours", body = ErrorBody),
        (status = 413, description = "The image is over 20 MiB", body = ErrorBody),
        (status = 415, description = "Not an image this server draws, or one it cannot decode", body = ErrorBody),
        (status = 422, description = "A folder", body = ErrorBody),
        (status = 503, description = "Too many images being drawn; retry shortly", body = ErrorBody),
    ))]
async fn thumbnail(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let t = files::thumbnail(&state, &auth.user, &id).await?;
    let mut resp = Response::new(Body::from(t.bytes));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(t.content_type),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}

/// Download a file. Supports one `Range: bytes=…` (206, or 416 when it does not fit); images
/// and PDF may be shown in place, everything else is an attachment.
#[utoipa::path(get, path = "/api/files/{id}/download", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such file of yours", body = ErrorBody),
        (status = 416, description = "The range is outside the file"),
        (status = 422, description = "A folder", body = ErrorBody),
    ))]
async fn download(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let entry = files::get(&state, &auth.user, &id).await?;
    let size = u64::try_from(entry.size).unwrap_or(0);
    let range = match headers.get(header::RANGE).map(|v| parse_range(v, size)) {
        None => None,
        Some(Some(r)) => Some(r),
        Some(None) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let d = files::download(&state, &auth.user, &id, range).await?;
    let inline = files::names::shown_inline(&d.file.content_type);
    Ok(file_response(d, inline))
}

/// A file's bytes as a response: its type, `inline` (images and PDF for their owner) or
/// `attachment`, never run as a page of ours, and a `Range` answered with 206.
fn file_response(d: files::Download, inline: bool) -> Response {
    let size = u64::try_from(d.file.size).unwrap_or(0);
    let body = Body::from_stream(d.body.map(|r| r.map_err(std::io::Error::other)));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    let ct = &d.file.content_type;
    let disposition = if inline { "inline" } else { "attachment" };
    if let Ok(v) = HeaderValue::from_str(ct) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_disposition(disposition, &d.file.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing a user uploaded may run as a page of ours, even an inline PDF.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    let len = match &d.range {
        Some(r) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let v = format!("bytes {}-{}/{size}", r.start, r.end - 1);
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.end - r.start
        }
        None => size,
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[derive(Deserialize, IntoParams)]
pub struct StaffFolderQuery {
    /// The folder; omitted for the top of the user's workspace.
    pub folder_id: Option<String>,
}

/// A user's workspace, read only (admins). Every look is audited (`files.staff_read`) before
/// anything is shown.
#[utoipa::path(get, path = "/api/admin/users/{id}/files", tag = "admin",
    params(("id" = String, Path), StaffFolderQuery),
    responses(
        (status = 200, description = "The folder's entries", body = FolderListing),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Staff who are not admins", body = ErrorBody),
        (status = 404, description = "No such user or folder", body = ErrorBody),
    ))]
async fn staff_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<StaffFolderQuery>,
) -> ApiResult<Json<FolderListing>> {
    Ok(Json(
        files::staff_list(&state, &auth, &id, q.folder_id.as_deref()).await?,
    ))
}

/// Download a user's file (admins), always as an attachment; audited
/// (`files.staff_download`) before a byte is sent.
#[utoipa::path(get, path = "/api/admin/users/{id}/files/{file_id}/download", tag = "admin",
    params(("id" = String, Path), ("file_id" = String, Path)),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Staff who are not admins", body = ErrorBody),
        (status = 404, description = "No such user or file", body = ErrorBody),
        (status = 422, description = "A folder", body = ErrorBody),
    ))]
async fn staff_download(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, file_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let d = files::staff_download(&state, &auth, &id, &file_id).await?;
    Ok(file_response(d, false))
}

/// One `bytes=` range within `size` as start..end (end exclusive); `None` when it cannot be
/// served (several ranges, malformed, or outside the file).
fn parse_range(v: &HeaderValue, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = v.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // The last N bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        (start, end)
    };
    (start < end && start < size).then_some(start..end)
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback and the exact name.
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 5987: every byte outside the unreserved set as %XX (a space too, unlike a form).
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_like_http_says() {
        let r = |s: &str, size| parse_range(&HeaderValue::from_str(s).unwrap(), size);
        assert_eq!(r("bytes=0-9", 100), Some(0..10));
        assert_eq!(r("bytes=90-", 100), Some(90..100));
        assert_eq!(r("bytes=-10", 100), Some(90..100));
        assert_eq!(r("bytes=-500", 100), Some(0..100));
        assert_eq!(r("bytes=50-500", 100), Some(50..100));
        assert_eq!(r("bytes=100-", 100), None);
        assert_eq!(r("bytes=5-2", 100), None);
        assert_eq!(r("bytes=0-1,5-6", 100), None);
        assert_eq!(r("items=0-1", 100), None);
        assert_eq!(r("bytes=0-0", 0), None);
    }

    #[test]
    fn file_names_in_headers_cannot_break_out() {
        assert_eq!(
            content_disposition("attachment", "a\"b.csv"),
            "attachment; filename=\"a_b.csv\"; filename*=UTF-8''a%22b.csv"
        );
        let v = content_disposition("attachment", "caf\u{e9} r\u{e9}sum\u{e9}.pdf");
        assert!(v.contains("filename=\"caf_ r_sum_.pdf\""), "{v}");
        assert!(v.contains("caf%C3%A9%20r%C3%A9sum%C3%A9.pdf"), "{v}");
    }
}
