//! The BAR grouping's output directory: one CSV file per group, named from its key, and the
//! manifest (`manifest.csv`: key, file, rows) that lists them in key order.
//!
//! Groups come from the merge of the sorted runs, one file open at a time, and from the keys
//! written directly (already complete in the spill directory, renamed here), interleaved in key
//! order. The manifest is written as `manifest.csv.part` and
//! renamed when the last group is done, so an output directory is complete exactly when it has
//! a `manifest.csv`.

use super::direct::DirectGroup;
use super::runs::GroupSink;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.csv";
const MANIFEST_PART: &str = "manifest.csv.part";
/// Bytes of the key kept in a file name; the numeric prefix keeps names unique anyway.
const NAME_BYTES: usize = 80;

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub key: String,
    pub file: String,
    pub rows: u64,
}

/// The file name of the `index`-th group (from 1, in key order): the index zero-padded to
/// `width` digits, a dash, and the key with every run of characters other than letters, digits,
/// `.`, `-` and `_` turned into one `_` (no separators, control characters or spaces), without
/// leading or trailing `_`/`.` (no hidden files, no `..`), cut to 80 bytes. The prefix makes
/// names unique even when keys sanitise alike, and with `width` at least the digits of the
/// row count, sorting the names sorts the groups by key.
pub fn file_name(index: u64, width: usize, key: &str) -> String {
    let mut stem = String::with_capacity(key.len().min(NAME_BYTES));
    let mut gap = false;
    for c in key.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
            if gap && !stem.is_empty() {
                stem.push('_');
            }
            gap = false;
            if stem.len() + c.len_utf8() > NAME_BYTES {
                break;
            }
            stem.push(c);
        } else {
            gap = true;
        }
    }
    let stem = stem.trim_matches(|c| c == '_' || c == '.');
    let stem = if stem.is_empty() { "group" } else { stem };
    format!("{index:0width$}-{stem}.csv")
}

/// Reads a finished output directory's manifest, one entry at a time (it may list 100,000
/// groups, so it is never loaded whole here).
pub fn read_manifest(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<ManifestEntry>>> {
    let reader = csv::Reader::from_path(dir.join(MANIFEST)).map_err(csv_to_io)?;
    Ok(reader.into_records().map(|r| {
        let r = r.map_err(csv_to_io)?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed manifest line");
        let rows = r.get(2).and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        Ok(ManifestEntry {
            key: r.get(0).ok_or_else(bad)?.to_owned(),
            file: r.get(1).ok_or_else(bad)?.to_owned(),
            rows,
        })
    }))
}

fn csv_to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

struct OpenGroup {
    out: BufWriter<File>,
    key: String,
    file: String,
    rows: u64,
}

/// Writes the group files and the manifest as the merge hands over groups.
pub(super) struct GroupFiles<'p> {
    dir: PathBuf,
    header: Vec<u8>,
    width: usize,
    manifest: csv::Writer<File>,
    current: Option<OpenGroup>,
    groups: u64,
    rows_written: u64,
    rows_total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
    /// Groups written directly, sorted by key, and how many of them are published.
    direct: Vec<DirectGroup>,
    direct_done: usize,
    cancelled: &'p dyn Fn() -> bool,
}

impl<'p> GroupFiles<'p> {
    /// `header` is the output header line; `rows_total` the rows to be written (for progress
    /// and the width of the numeric prefix); `direct` the groups already written, sorted by key
    /// (no key of theirs comes from the merge). `cancelled` is polled before each of them.
    pub(super) fn create(
        dir: &Path,
        header: Vec<u8>,
        rows_total: u64,
        progress: &'p mut dyn FnMut(u64, u64),
        direct: Vec<DirectGroup>,
        cancelled: &'p dyn Fn() -> bool,
    ) -> io::Result<Self> {
        let manifest = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_path(dir.join(MANIFEST_PART))
            .map_err(csv_to_io)?;
        let mut files = GroupFiles {
            dir: dir.to_owned(),
            header,
            width: rows_total.max(1).ilog10() as usize + 1,
            manifest,
            current: None,
            groups: 0,
            rows_written: 0,
            rows_total,
            progress,
            direct,
            direct_done: 0,
            cancelled,
        };
        files.width = files.width.max(5);
        files
            .manifest
            .write_record(["key", "file", "rows"])
            .map_err(csv_to_io)?;
        Ok(files)
    }

    /// Publishes the direct groups whose key sorts before `next` (all when `None`): each gets
    /// the next number, its file is renamed to its final name and listed.
    fn publish_direct(&mut self, next: Option<&[u8]>) -> io::Result<()> {
        while let Some(g) = self.direct.get(self.direct_done) {
            if next.is_some_and(|next| g.key.as_slice() >= next) {
                break;
            }
            if (self.cancelled)() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
            }
            self.groups += 1;
            let key = String::from_utf8_lossy(&g.key).into_owned();
            let file = file_name(self.groups, self.width, &key);
            std::fs::rename(&g.path, self.dir.join(&file))?;
            let rows = g.rows;
            self.direct_done += 1;
            self.listed(&key, &file, rows)?;
        }
        Ok(())
    }

    /// Lists a finished group in the manifest and reports progress.
    fn listed(&mut self, key: &str, file: &str, rows: u64) -> io::Result<()> {
        self.manifest
            .write_record([key.as_bytes(), file.as_bytes(), rows.to_string().as_bytes()])
            .map_err(csv_to_io)?;
        self.rows_written += rows;
        (self.progress)(self.rows_written, self.rows_total);
        Ok(())
    }

    /// Publishes the remaining direct groups, completes the manifest and publishes it under its
    /// final name. Returns the number of groups.
    pub(super) fn finish(mut self) -> io::Result<u64> {
        self.publish_direct(None)?;
        self.manifest.flush()?;
        std::fs::rename(self.dir.join(MANIFEST_PART), self.dir.join(MANIFEST))?;
        Ok(self.groups)
    }
}

impl GroupSink for GroupFiles<'_> {
    fn begin(&mut self, key: &[u8], rows: u64, _bytes: u64) -> io::Result<()> {
        self.publish_direct(Some(key))?;
        self.groups += 1;
        // Keys are built from cells already checked to be UTF-8.
        let key = String::from_utf8_lossy(key).into_owned();
        let file = file_name(self.groups, self.width, &key);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(&file))?;
        let mut out = BufWriter::with_capacity(64 * 1024, f);
        out.write_all(&self.header)?;
        self.current = Some(OpenGroup {
            out,
            key,
            file,
            rows,
        });
        Ok(())
    }

    fn body(&mut self) -> &mut dyn Write {
        match &mut self.current {
            Some(g) => &mut g.out,
            None => unreachable!("body() is only called between begin() and end()"),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        let Some(g) = self.current.take() else {
            return Ok(());
        };
        g.out.into_inner().map_err(|e| e.into_error())?;
        self.listed(&g.key, &g.file, g.rows)
    }
}
