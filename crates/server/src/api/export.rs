//! Streamed CSV or JSON attachments of a user's rows (transactions, orders). The caller's
//! reader task fetches keyset pages one ahead into a channel of two; the stream here formats
//! each page as it arrives, so memory stays flat at any size, no connection is held between
//! pages, and a client that goes away drops the receiver, which stops the reader.

use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

/// `csv` → true, `json` → false, else a 422.
pub(crate) fn is_csv(format: &str) -> Result<bool, ApiError> {
    match format {
        "csv" => Ok(true),
        "json" => Ok(false),
        _ => Err(ApiError::field("format", "must be csv or json")),
    }
}

/// What a page reader sends: a page, or `Err` when reading failed (the download then ends
/// with an error instead of passing for complete).
pub(crate) type Page<R> = Result<Vec<R>, ()>;

/// Starts the reader: `fetch(cursor, carry)` answers the page after `cursor` (the first page
/// for `None`) and gives back `carry`, whatever the reader keeps between pages (a cache);
/// `cursor_of` is the cursor after a page's last row. A page shorter than `page` is the last.
pub(crate) fn spawn_reader<R, C, S, F, Fut>(
    page: i64,
    mut carry: S,
    mut fetch: F,
    cursor_of: fn(&R) -> C,
) -> mpsc::Receiver<Page<R>>
where
    R: Send + 'static,
    C: Send + 'static,
    S: Send + 'static,
    F: FnMut(Option<C>, S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(Vec<R>, S), etx_db::DbErr>> + Send,
{
    let (pages, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut cursor = None;
        loop {
            let rows = match fetch(cursor.take(), carry).await {
                Ok((rows, c)) => {
                    carry = c;
                    rows
                }
                Err(e) => {
                    tracing::error!(error = %e, "export aborted");
                    let _ = pages.send(Err(())).await;
                    return;
                }
            };
            let last = (rows.len() as i64) < page;
            cursor = rows.last().map(cursor_of);
            if pages.send(Ok(rows)).await.is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Writes one row as a CSV line (with a scratch buffer).
pub(crate) type CsvRow<R> = Box<dyn Fn(&mut String, &mut String, &R) + Send + Sync>;

/// How one row is written: as a CSV line and as a JSON value.
pub(crate) struct RowFormat<R> {
    pub csv_header: &'static str,
    pub csv: CsvRow<R>,
    pub json: Box<dyn Fn(&R) -> String + Send + Sync>,
}

/// The attachment `{prefix}-{time}.csv|json` of every page `rx` delivers; a page shorter than
/// `page` is the last.
pub(crate) fn attachment<R: Send + 'static>(
    headers: HeaderMap,
    csv: bool,
    prefix: &str,
    page: i64,
    rx: mpsc::Receiver<Page<R>>,
    format: RowFormat<R>,
) -> ApiResult<Response> {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let (ctype, name) = if csv {
        ("text/csv; charset=utf-8", format!("{prefix}-{stamp}.csv"))
    } else {
        ("application/json", format!("{prefix}-{stamp}.json"))
    };
    let format = std::sync::Arc::new(format);
    let stream = futures_util::stream::unfold(Some((true, rx)), move |st| {
        let format = format.clone();
        async move {
            let (first, mut rx) = st?;
            let rows = match rx.recv().await {
                Some(Ok(rows)) => rows,
                Some(Err(())) | None => {
                    return Some((Err(std::io::Error::other("export failed")), None));
                }
            };
            let mut chunk = String::with_capacity(rows.len() * 160 + 128);
            let mut scratch = String::with_capacity(32);
            if first {
                chunk.push_str(if csv { format.csv_header } else { "[" });
            }
            for (i, r) in rows.iter().enumerate() {
                if csv {
                    (format.csv)(&mut chunk, &mut scratch, r);
                } else {
                    if !(first && i == 0) {
                        chunk.push(',');
                    }
                    chunk.push_str(&(format.json)(r));
                }
            }
            let last = (rows.len() as i64) < page;
            if last && !csv {
                chunk.push(']');
            }
            let next = (!last).then_some((false, rx));
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), next))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.extend(headers);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(anyhow::Error::from)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// A cell that a spreadsheet would run as a formula gets a leading apostrophe; cells with
/// separators, quotes or line breaks are quoted.
pub(crate) fn push_csv_cell(out: &mut String, v: &str) {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = v.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quote {
        for c in v.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(v);
    }
}
