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
