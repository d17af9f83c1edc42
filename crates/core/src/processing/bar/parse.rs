//! CSV parsing on its own thread: records are read in batches into reused `ByteRecord`s,
//! checked (cell count, UTF-8) and their output lines built, then handed to the grouping thread,
//! so parsing and grouping run on two cores. A few batches exist at once (the ones queued, the
//! one being filled and the one being grouped), whatever the file size; a batch ends after
//! `BATCH_BYTES` of cells, and a record or line buffer that held a long row is not reused, so a
//! batch stays small whatever the rows.

use super::Columns;
use super::runs::write_record;
use csv::ByteRecord;
use std::fs::File;
use std::io::{self, BufReader};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Records per batch, and the cell bytes after which a batch is sent even if not full.
const BATCH_ROWS: usize = 2048;
const BATCH_BYTES: usize = 256 * 1024;
/// A record that held more cell bytes or cells than this is dropped after use, not reused, so
/// the records of a batch hold at most about 1 KiB each.
const REUSE_BYTES: usize = 256;
const REUSE_CELLS: usize = 32;
/// A batch's line buffer larger than this is dropped after use.
const REUSE_LINES: usize = 4 * BATCH_BYTES;

pub(super) type CsvReader = csv::Reader<BufReader<File>>;

/// Parsed records in file order, `records[..len]`, each with its output line (the cells other
/// than the key columns, as CSV).
pub(super) struct Batch {
    pub(super) records: Vec<ByteRecord>,
    pub(super) len: usize,
    lines: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    /// The output line of record `i`.
    #[inline]
    pub(super) fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.lines[start..self.ends[i]]
    }
}

/// Why parsing stopped before the end of the file. Rows before it were all handed over.
pub(super) enum Failure {
    Csv(csv::Error),
    Malformed { line: u64, message: String },
}

pub(super) struct Parser {
    batches: Option<Receiver<Result<Batch, Failure>>>,
    back: SyncSender<Batch>,
    thread: Option<JoinHandle<()>>,
}

/// The checks of a row, in the order they apply.
fn check(record: &ByteRecord, columns: &Columns) -> Result<(), Failure> {
    let line = record.position().map_or(0, |p| p.line());
    if record.len() != columns.count {
        return Err(Failure::Malformed {
            line,
            message: format!(
                "{} cells where the header has {}",
                record.len(),
                columns.count
            ),
        });
    }
    if !record.as_slice().is_ascii() && std::str::from_utf8(record.as_slice()).is_err() {
        return Err(Failure::Malformed {
            line,
            message: "not valid UTF-8".into(),
        });
    }
    Ok(())
}

impl Parser {
    /// Reads the rest of `csv` on a new thread.
    pub(super) fn start(mut csv: CsvReader, columns: Columns) -> io::Result<Self> {
        let (tx, batches) = sync_channel::<Result<Batch, Failure>>(QUEUED);
        let (back, free) = sync_channel::<Batch>(QUEUED + 2);
        let thread = std::thread::Builder::new()
            .name("bar-parse".into())
            .spawn(move || {
                loop {
                    let mut batch = free.try_recv().unwrap_or_else(|_| Batch {
                        records: vec![ByteRecord::new(); BATCH_ROWS],
                        len: 0,
                        lines: Vec::with_capacity(BATCH_BYTES),
                        ends: Vec::with_capacity(BATCH_ROWS),
                    });
                    batch.len = 0;
                    batch.lines.clear();
                    batch.ends.clear();
                    let mut bytes = 0;
                    let mut end = false;
                    let mut failure = None;
                    while batch.len < batch.records.len() && bytes < BATCH_BYTES {
                        let record = &mut batch.records[batch.len];
                        match csv.read_byte_record(record) {
                            Ok(true) => {}
                            Ok(false) => {
                                end = true;
                                break;
                            }
                            Err(e) => {
                                failure = Some(Failure::Csv(e));
                                break;
                            }
                        }
                        if let Err(f) = check(record, &columns) {
                            failure = Some(f);
                            break;
                        }
                        bytes += record.as_slice().len();
                        write_record(&mut batch.lines, columns.others(record));
                        batch.ends.push(batch.lines.len());
                        batch.len += 1;
                    }
                    if batch.len > 0 && tx.send(Ok(batch)).is_err() {
                        return;
                    }
                    if let Some(f) = failure {
                        let _ = tx.send(Err(f));
                        return;
                    }
                    if end {
                        return;
                    }
                }
            })?;
        Ok(Parser {
            batches: Some(batches),
            back,
            thread: Some(thread),
        })
    }

    /// The next batch; `None` at the end of the file.
    pub(super) fn next(&mut self) -> Result<Option<Batch>, Failure> {
        let received = match &self.batches {
            Some(rx) => rx.recv(),
            None => return Ok(None),
        };
        match received {
            Ok(result) => result.map(Some),
            Err(_) => {
                // The thread is done: at the end of the file, or it panicked.
                self.batches = None;
                match self.thread.take().map(JoinHandle::join) {
                    Some(Err(_)) => Err(Failure::Csv(csv::Error::from(io::Error::other(
                        "the parsing thread stopped",
                    )))),
                    _ => Ok(None),
                }
            }
        }
    }

    /// Hands a batch back to be reused (but not the buffers of long rows).
    pub(super) fn recycle(&self, mut batch: Batch) {
        for r in &mut batch.records[..batch.len] {
            if r.as_slice().len() > REUSE_BYTES || r.len() > REUSE_CELLS {
                *r = ByteRecord::new();
            }
        }
        if batch.lines.capacity() > REUSE_LINES {
            batch.lines = Vec::with_capacity(BATCH_BYTES);
        }
        let _ = self.back.try_send(batch);
    }
}

/// Batches queued each way.
const QUEUED: usize = 2;

impl Drop for Parser {
    // Stops the thread (its next send fails) before the caller's files go away.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
