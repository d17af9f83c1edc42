//! CSV parsing on its own thread: records are read in batches into reused `ByteRecord`s and
//! handed to the grouping thread, so parsing and grouping run on two cores. A few batches exist
//! at once (the ones queued, the one being filled and the one being grouped), whatever the file
//! size; a batch ends after `BATCH_BYTES` of cells, and a record that held a long row is not
//! reused, so a batch stays small whatever the rows.

use csv::ByteRecord;
use std::fs::File;
use std::io::{self, BufReader};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Records per batch, and the cell bytes after which a batch is sent even if not full.
const BATCH_ROWS: usize = 512;
const BATCH_BYTES: usize = 128 * 1024;
/// A record that held more cell bytes or cells than this is dropped after use, not reused.
const REUSE_BYTES: usize = 512;
const REUSE_CELLS: usize = 64;
/// Batches queued each way.
const QUEUED: usize = 2;

pub(super) type CsvReader = csv::Reader<BufReader<File>>;

/// Parsed records, `records[..len]` in file order.
pub(super) struct Batch {
    pub(super) records: Vec<ByteRecord>,
    pub(super) len: usize,
}

pub(super) struct Parser {
    batches: Option<Receiver<Result<Batch, csv::Error>>>,
    back: SyncSender<Vec<ByteRecord>>,
    thread: Option<JoinHandle<()>>,
}

impl Parser {
    /// Reads the rest of `csv` on a new thread.
    pub(super) fn start(mut csv: CsvReader) -> io::Result<Self> {
        let (tx, batches) = sync_channel::<Result<Batch, csv::Error>>(QUEUED);
        let (back, free) = sync_channel::<Vec<ByteRecord>>(QUEUED + 2);
        let thread = std::thread::Builder::new()
            .name("bar-parse".into())
            .spawn(move || {
                loop {
                    let mut records = free
                        .try_recv()
                        .unwrap_or_else(|_| vec![ByteRecord::new(); BATCH_ROWS]);
                    let (mut len, mut bytes) = (0, 0);
                    let mut end = false;
                    while len < records.len() && bytes < BATCH_BYTES {
                        match csv.read_byte_record(&mut records[len]) {
                            Ok(true) => {
                                bytes += records[len].as_slice().len();
                                len += 1;
                            }
                            Ok(false) => {
                                end = true;
                                break;
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    if (len > 0 && tx.send(Ok(Batch { records, len })).is_err()) || end {
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
    pub(super) fn next(&mut self) -> Result<Option<Batch>, csv::Error> {
        let received = match &self.batches {
            Some(rx) => rx.recv(),
            None => return Ok(None),
        };
        match received {
            Ok(Ok(batch)) => Ok(Some(batch)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The thread is done: at the end of the file, or it panicked.
                self.batches = None;
                match self.thread.take().map(JoinHandle::join) {
                    Some(Err(_)) => Err(csv::Error::from(io::Error::other(
                        "the parsing thread stopped",
                    ))),
                    _ => Ok(None),
                }
            }
        }
    }

    /// Hands a batch's records back to be reused (but not the buffers of long rows).
    pub(super) fn recycle(&self, mut batch: Batch) {
        for r in &mut batch.records[..batch.len] {
            if r.as_slice().len() > REUSE_BYTES || r.len() > REUSE_CELLS {
                *r = ByteRecord::new();
            }
        }
        let _ = self.back.try_send(batch.records);
    }
}

impl Drop for Parser {
    // Stops the thread (its next send fails) before the caller's files go away.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
