//! BAR grouping: splits a BAR-data CSV into one CSV per emission source
//! (`orgFullName + " : " + emissionSourceName`), in bounded memory, plus a manifest.
//!
//! The rules, as the product states them:
//! - Input: RFC 4180 CSV in UTF-8, an optional BOM, LF or CRLF line ends (mixed too), quoted
//!   cells with commas, doubled quotes and line breaks. A header row is required and must name
//!   `orgFullName` and `emissionSourceName` exactly; otherwise the file fails naming what is
//!   missing (or naming a key column given twice). Blank lines are skipped.
//! - A row with another number of cells than the header, that is not UTF-8 or that is longer
//!   than 16 MiB fails the whole file with its line number; no group file is written before the
//!   input was read to its end, so a malformed file leaves no output.
//! - A row whose org or source cell is empty or only whitespace is dropped and counted. Nothing
//!   is trimmed otherwise: ` Acme` and `Acme` are different keys.
//! - Groups are sorted by key in byte order (`B` < `a`, `Source 1` < `Source 10` < `Source 2`);
//!   rows of a group keep file order.
//! - The key columns are left out; every other cell keeps its exact text (no type guessing).
//!   Output is RFC 4180 with LF line ends, a cell quoted only when it holds a comma, a quote, CR
//!   or LF.
//!
//! Memory: rows are parsed as a stream, on a thread of their own (see `parse`: lines without
//! quotes are split where they lie in the read buffer; a few batches of at most 2048 rows in
//! flight). The rows of the first `BarOptions::direct_keys`
//! distinct keys of the file (1024 by default) are written straight to their group files: each
//! such key has a small buffer of output lines (its share of half the budget), and full buffers
//! are appended to the key's file in the spill directory by a writer thread (see `direct`); when
//! the input is read to its end those files are renamed to their final names. With a few hundred
//! emission sources, that is every row, and nothing is sorted or spilled.
//! Rows of the other keys go into a sort buffer (the rest of the budget: each row's output line,
//! 12 bytes of index, and each distinct key once), allocated once; when full its rows are grouped
//! by key, the keys sorted, and the run spilled to a file (an external merge sort). Spilling runs
//! on a second thread while the reader fills another buffer (two of half the sort budget each).
//! The runs are then merged by key (at most 64 at once, in rounds if there are more), copying
//! each key's rows as one block into its group file; one group file is open at a time. The
//! direct groups are numbered and renamed in key order between the merged ones.
//! Neither the file size nor the number of groups changes the memory used.

mod direct;
mod hash;
mod output;
mod parse;
mod runs;
#[cfg(test)]
mod tests;

pub use output::{MANIFEST, ManifestEntry, file_name, read_manifest};

use direct::DirectGroups;
use output::GroupFiles;
use parse::{CsvSource, Parser};
use runs::{FAN_IN, RunWriter, Spiller};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub const ORG_COLUMN: &str = "orgFullName";
pub const SOURCE_COLUMN: &str = "emissionSourceName";

/// Rows between two polls of the cancellation check and two progress reports while reading.
const POLL_ROWS: u64 = 16 * 1024;

#[derive(Debug, Clone)]
pub struct BarOptions {
    /// Memory for the grouping's buffers: half for the buffers of the keys written directly
    /// (when `direct_keys` is not 0), the rest for the sort buffer (rows buffered before a
    /// spill). The process needs about this, the sort's scratch (at most a quarter of the sort
    /// buffer) and a few MiB of I/O buffers.
    pub run_bytes: usize,
    /// Distinct keys (the first ones of the file) whose rows are written straight to their
    /// group files instead of through the sort; 0 sorts every row.
    pub direct_keys: usize,
}

impl Default for BarOptions {
    fn default() -> Self {
        BarOptions {
            run_bytes: 32 * 1024 * 1024,
            direct_keys: 1024,
        }
    }
}

/// Bounds of a direct key's buffer: the direct half of the budget shared by `direct_keys`.
const DIRECT_CHUNK_MIN: usize = 1024;
const DIRECT_CHUNK_MAX: usize = 1024 * 1024;

/// What a grouping did. The rows of each group are listed in the manifest (read it with
/// [`read_manifest`]); they are not held here so that 100,000 groups cost no memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarSummary {
    /// Data rows in the file (the header not counted).
    pub rows_read: u64,
    /// Rows dropped because their org or source cell was empty or whitespace.
    pub rows_dropped: u64,
    pub groups: u64,
    pub manifest: PathBuf,
}

/// How far a grouping is: reading counts input bytes, writing counts rows written to groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Reading { bytes: u64, total: u64 },
    Writing { rows: u64, total: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum BarError {
    #[error("missing required column(s): {}", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    #[error("the file is empty: a header row is required")]
    NoHeader,
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("the output directory {} is not empty", .0.display())]
    OutputNotEmpty(PathBuf),
    #[error("cancelled")]
    Cancelled,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> BarError {
    let context = context.into();
    move |source| BarError::Io { context, source }
}

/// Removes the spill directory however the grouping ends.
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Groups `input` into `out_dir` (created if missing, and it must be empty). Synchronous: run
/// it on a blocking thread. `progress` is called now and then; `cancelled` is polled every few
/// thousand rows and before each group, and a cancelled grouping returns
/// [`BarError::Cancelled`]. On any error the directory has no `manifest.csv`; group files
/// already written are left for the caller to discard with the directory.
pub fn group_bar_csv(
    input: &Path,
    out_dir: &Path,
    options: &BarOptions,
    progress: &mut dyn FnMut(Progress),
    cancelled: &dyn Fn() -> bool,
) -> Result<BarSummary, BarError> {
    let file = File::open(input).map_err(io_err(format!("opening {}", input.display())))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    prepare_out_dir(out_dir)?;
    let spill = SpillDir(out_dir.join(".bar-spill"));
    std::fs::create_dir(&spill.0).map_err(io_err("creating the spill directory"))?;

    let mut source = CsvSource::new(file).map_err(parse_failure)?;
    let mut header = Vec::new();
    let columns = match source.next().map_err(parse_failure)? {
        Some(record) => {
            let columns = Columns::find(&record)?;
            runs::write_record(&mut header, columns.others(record.iter()));
            columns
        }
        None => return Err(BarError::NoHeader),
    };

    let direct_share = if options.direct_keys > 0 {
        options.run_bytes / 2
    } else {
        0
    };
    let chunk =
        (direct_share / options.direct_keys.max(1)).clamp(DIRECT_CHUNK_MIN, DIRECT_CHUNK_MAX);
    let mut direct = DirectGroups::start(&spill.0, header.clone(), options.direct_keys, chunk)
        .map_err(io_err("starting the group writing thread"))?;
    let (mut spiller, mut buffer) = Spiller::start(options.run_bytes - direct_share)
        .map_err(io_err("starting the spilling thread"))?;
    let mut run_paths = Vec::new();
    let (mut rows_read, mut rows_dropped) = (0u64, 0u64);
    let mut parser =
        Parser::start(source, columns).map_err(io_err("starting the parsing thread"))?;
    while let Some(batch) = parser.next().map_err(parse_failure)? {
        let polls = rows_read / POLL_ROWS;
        rows_read += batch.rows;
        rows_dropped += batch.dropped;
        if rows_read / POLL_ROWS != polls {
            if cancelled() {
                return Err(BarError::Cancelled);
            }
            progress(Progress::Reading {
                bytes: batch.byte,
                total,
            });
        }
        for i in 0..batch.len() {
            let (key, line) = (batch.key(i), batch.line(i));
            if let Some(id) = direct.slot(key) {
                // Not `io_err`, whose context string would be allocated for every row.
                if let Err(source) = direct.push(id, line) {
                    return Err(BarError::Io {
                        context: "writing the groups".into(),
                        source,
                    });
                }
                continue;
            }
            if !buffer.is_empty() && !buffer.fits(line.len(), key.len()) {
                let path = next_run(&spill.0, &mut run_paths);
                buffer = spiller
                    .swap(buffer, path)
                    .map_err(io_err("writing a sorted run"))?;
            }
            if !buffer.push(key, line) {
                return Err(BarError::Malformed {
                    line: batch.line_number(i),
                    message: "row too large".into(),
                });
            }
        }
        parser.recycle(batch);
    }
    let path = if buffer.is_empty() {
        PathBuf::new()
    } else {
        next_run(&spill.0, &mut run_paths)
    };
    spiller
        .finish(buffer, path)
        .map_err(io_err("writing a sorted run"))?;
    let direct = direct.finish().map_err(io_err("writing the groups"))?;
    progress(Progress::Reading {
        bytes: total,
        total,
    });

    let merge_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::Interrupted && cancelled() {
            BarError::Cancelled
        } else {
            BarError::Io {
                context: "merging the sorted runs".into(),
                source: e,
            }
        }
    };
    // Rounds over contiguous chunks keep the runs in file order, which the merge relies on.
    let mut round = 0;
    while run_paths.len() > FAN_IN {
        round += 1;
        let mut next = Vec::new();
        for (n, chunk) in run_paths.chunks(FAN_IN).enumerate() {
            let path = spill.0.join(format!("merge-{round}-{n}"));
            let mut writer = RunWriter::create(&path).map_err(merge_err)?;
            runs::merge(chunk, &mut writer, cancelled).map_err(merge_err)?;
            writer.finish().map_err(merge_err)?;
            for p in chunk {
                let _ = std::fs::remove_file(p);
            }
            next.push(path);
        }
        run_paths = next;
    }

    let rows_kept = rows_read - rows_dropped;
    let mut report = |rows, total| progress(Progress::Writing { rows, total });
    let mut files = GroupFiles::create(out_dir, header, rows_kept, &mut report, direct, cancelled)
        .map_err(merge_err)?;
    runs::merge(&run_paths, &mut files, cancelled).map_err(merge_err)?;
    let groups = files.finish().map_err(merge_err)?;
    Ok(BarSummary {
        rows_read,
        rows_dropped,
        groups,
        manifest: out_dir.join(MANIFEST),
    })
}

/// A cell that is empty or only whitespace (Unicode) leaves the row without a key.
#[inline]
fn is_blank(cell: &[u8]) -> bool {
    match cell.first() {
        None => true,
        // Most keys start with a letter: no need to decode them.
        Some(&b) if b.is_ascii() && !char::from(b).is_whitespace() => false,
        Some(_) => std::str::from_utf8(cell).is_ok_and(|s| s.trim().is_empty()),
    }
}

/// The path of the next run file, recorded in file order.
fn next_run(dir: &Path, paths: &mut Vec<PathBuf>) -> PathBuf {
    let path = dir.join(format!("run-{}", paths.len()));
    paths.push(path.clone());
    path
}

fn prepare_out_dir(dir: &Path) -> Result<(), BarError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let mut entries =
        std::fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    if entries.next().is_some() {
        return Err(BarError::OutputNotEmpty(dir.to_owned()));
    }
    Ok(())
}

fn parse_failure(f: parse::Failure) -> BarError {
    match f {
        parse::Failure::Io(source) => BarError::Io {
            context: "reading the input".into(),
            source,
        },
        parse::Failure::Malformed { line, message } => BarError::Malformed { line, message },
    }
}

/// Where the key columns are in the header.
#[derive(Clone, Copy)]
struct Columns {
    org: usize,
    source: usize,
    count: usize,
}

impl Columns {
    fn find(header: &parse::Record<'_>) -> Result<Self, BarError> {
        let position = |name: &str| header.iter().position(|h| h == name.as_bytes());
        for name in [ORG_COLUMN, SOURCE_COLUMN] {
            if header.iter().filter(|h| *h == name.as_bytes()).count() > 1 {
                return Err(BarError::Malformed {
                    line: 1,
                    message: format!("column {name} appears more than once"),
                });
            }
        }
        let (org, source) = (position(ORG_COLUMN), position(SOURCE_COLUMN));
        let missing: Vec<_> = [(ORG_COLUMN, org), (SOURCE_COLUMN, source)]
            .into_iter()
            .filter(|(_, at)| at.is_none())
            .map(|(name, _)| name)
            .collect();
        match (org, source) {
            (Some(org), Some(source)) => Ok(Columns {
                org,
                source,
                count: header.len(),
            }),
            _ => Err(BarError::MissingColumns(missing)),
        }
    }

    /// The cells that go to the output: all but the two key columns.
    fn others<'r>(&self, cells: impl Iterator<Item = &'r [u8]>) -> impl Iterator<Item = &'r [u8]> {
        let (org, source) = (self.org, self.source);
        cells
            .enumerate()
            .filter(move |(i, _)| *i != org && *i != source)
            .map(|(_, cell)| cell)
    }
}
