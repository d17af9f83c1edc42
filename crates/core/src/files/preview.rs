//! What a file looks like without downloading it: the first rows of a CSV, JSON pretty
//! printed, the start of a text, or where the browser can show an image or PDF itself.

use super::{Core, CoreError, get, names};
use etx_db::users::UserRow;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// Bytes read for a preview, whatever the file's size.
const PREVIEW_BYTES: u64 = 256 * 1024;
/// Rows of a CSV shown.
const PREVIEW_ROWS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Preview {
    /// The header and the first rows, cell text as stored.
    Csv {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
        /// More rows follow.
        truncated: bool,
    },
    /// The whole document, indented.
    Json {
        text: String,
    },
    Text {
        text: String,
        truncated: bool,
    },
    /// Shown by the browser from the download address (inline for these types).
    Image {
        url: String,
    },
    Pdf {
        url: String,
    },
    /// Binary content with no preview.
    None,
}

/// The preview of the owner's file `id`.
pub async fn preview(state: &Core, user: &UserRow, id: &str) -> Result<Preview, CoreError> {
    let file = get(state, user, id).await?;
    let Some(key) = file.object_key.as_deref().filter(|_| !file.is_folder) else {
        return Err(CoreError::field("id", "is a folder; preview its files"));
    };
    let url = format!("/api/files/{}/download", file.id);
    let ct = file.content_type.as_str();
    if names::shown_inline(ct) {
        return Ok(if ct == "application/pdf" {
            Preview::Pdf { url }
        } else {
            Preview::Image { url }
        });
    }
    if !ct.starts_with("text/") && ct != "application/json" {
        return Ok(Preview::None);
    }
    let size = u64::try_from(file.size).unwrap_or(0);
    let want = size.min(PREVIEW_BYTES);
    let mut head = Vec::with_capacity(want as usize);
    if want > 0 {
        let mut body = state
            .storage
            .read(key, Some(0..want))
            .await?
            .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("file {id} has no stored bytes")))?;
        while let Some(chunk) = body.next().await {
            head.extend_from_slice(&chunk?);
        }
    }
    let whole = want == size;
    Ok(match ct {
        "text/csv" => csv_rows(&head, whole),
        "application/json" if whole => match serde_json::from_slice::<serde_json::Value>(&head) {
            Ok(v) => Preview::Json {
                text: serde_json::to_string_pretty(&v).unwrap_or_default(),
            },
            Err(_) => text(&head, whole),
        },
        _ => text(&head, whole),
    })
}

/// The start of a text; a character cut by the read limit is dropped.
fn text(head: &[u8], whole: bool) -> Preview {
    let s = match std::str::from_utf8(head) {
        Ok(s) => s.to_string(),
        Err(e) => String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned(),
    };
    Preview::Text {
        text: s,
        truncated: !whole,
    }
}

/// The header and up to `PREVIEW_ROWS` rows; a row cut by the read limit is not shown.
fn csv_rows(head: &[u8], whole: bool) -> Preview {
    let data = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut records = r.byte_records();
    let cells = |rec: &csv::ByteRecord| -> Vec<String> {
        rec.iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    let columns = match records.next() {
        Some(Ok(h)) => cells(&h),
        _ => return text(head, whole),
    };
    let mut rows = Vec::new();
    let mut truncated = false;
    for rec in records {
        let Ok(rec) = rec else { break };
        if rows.len() == PREVIEW_ROWS {
            truncated = true;
            break;
        }
        rows.push(cells(&rec));
    }
    if !whole && rows.len() < PREVIEW_ROWS {
        // The last row read may be cut in the middle.
        rows.pop();
        truncated = true;
    }
    Preview::Csv {
        columns,
        rows,
        truncated,
    }
}

/// Images larger than this are not read to draw a thumbnail.
const THUMB_SOURCE_BYTES: i64 = 20 * 1024 * 1024;

/// A small re-encoded copy of an image (at most 512 pixels a side, no metadata).
pub struct Thumbnail {
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
}

/// Where a file's thumbnail is kept once drawn.
pub(super) fn thumbnail_key(owner: &str, file_id: &str) -> String {
    format!("thumbs/{owner}/{file_id}")
}

/// The type of a kept thumbnail, from its first bytes.
fn image_type(b: &[u8]) -> &'static str {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else if b.starts_with(b"GIF8") {
        "image/gif"
    } else {
        "image/png"
    }
}

/// The thumbnail of the owner's image `id`: drawn on first use through the same bounded,
/// metadata-stripping decoder as avatars, then kept in the object store.
pub async fn thumbnail(state: &Core, user: &UserRow, id: &str) -> Result<Thumbnail, CoreError> {
    let file = get(state, user, id).await?;
    let Some(key) = file.object_key.as_deref().filter(|_| !file.is_folder) else {
        return Err(CoreError::field(
            "id",
            "is a folder; folders have no thumbnail",
        ));
    };
    if !matches!(
        file.content_type.as_str(),
        "image/png" | "image/jpeg" | "image/webp" | "image/gif"
    ) {
        return Err(CoreError::UnsupportedMediaType(
            "only PNG, JPEG, WebP and GIF images have thumbnails".into(),
        ));
    }
    let cached = thumbnail_key(&user.id, &file.id);
    if let Some(bytes) = state.storage.get(&cached).await? {
        return Ok(Thumbnail {
            content_type: image_type(&bytes),
            bytes,
        });
    }
    if file.size > THUMB_SOURCE_BYTES {
        return Err(CoreError::PayloadTooLarge(
            "images over 20 MiB have no thumbnail; download the image instead".into(),
        ));
    }
    let mut body = state
        .storage
        .read(key, None)
        .await?
        .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("file {id} has no stored bytes")))?;
    let mut data = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
    while let Some(chunk) = body.next().await {
        data.extend_from_slice(&chunk?);
    }
    let drawn = etx_storage::process_avatar_bounded(data.into())
        .await
        .map_err(|e| match e {
            etx_storage::AvatarError::Busy => CoreError::Busy {
                message: e.to_string(),
                retry_after_secs: 5,
            },
            other => CoreError::UnsupportedMediaType(format!("no thumbnail: {other}")),
        })?;
    let bytes = bytes::Bytes::from(drawn.bytes);
    if let Err(e) = state.storage.put(&cached, bytes.clone()).await {
        tracing::warn!(error = %e, "a thumbnail could not be kept; it will be drawn again");
    }
    Ok(Thumbnail {
        bytes,
        content_type: drawn.content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_previews_keep_cell_text_and_drop_a_cut_row() {
        let data = b"\xEF\xBB\xBFa,b\r\n0878036,\"x, y\"\n1e5,TRUE\n";
        let Preview::Csv {
            columns,
            rows,
            truncated,
        } = csv_rows(data, true)
        else {
            panic!("csv")
        };
        assert_eq!(columns, ["a", "b"]);
        assert_eq!(rows, [["0878036", "x, y"], ["1e5", "TRUE"]]);
        assert!(!truncated);
        let Preview::Csv {
            rows, truncated, ..
        } = csv_rows(b"a,b\n1,2\n3,4", false)
        else {
            panic!("csv")
        };
        assert_eq!(rows, [["1", "2"]]);
        assert!(truncated);
        let many: String = std::iter::once("h\n".to_string())
            .chain((0..80).map(|i| format!("{i}\n")))
            .collect();
        let Preview::Csv {
            rows, truncated, ..
        } = csv_rows(many.as_bytes(), true)
        else {
            panic!("csv")
        };
        assert_eq!(rows.len(), PREVIEW_ROWS);
        assert!(truncated);
    }

    #[test]
    fn text_previews_end_on_a_whole_character() {
        let cut = &"naïve".as_bytes()[..3];
        let Preview::Text { text: t, truncated } = text(cut, false) else {
            panic!("text")
        };
        assert_eq!(t, "na");
        assert!(truncated);
    }
}
