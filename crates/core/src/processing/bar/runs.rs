//! Sorted runs of the BAR grouping: rows buffered up to a memory budget, sorted by key and spilled
//! to a temporary file, then merged back in key order group by group.
//!
//! A run file is a sequence of blocks, one per key present in the run, in key byte order:
//! `key_len: u32 LE`, `rows: u64 LE`, `bytes: u64 LE`, the key, then `bytes` bytes of finished
//! output lines. Rows inside a block keep file order (the in-memory sort is stable, and the merge
//! takes equal keys from earlier runs first), so the merge only ever copies whole blocks.

use super::hash::KeyMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Buffer size of each open run file; the merge holds at most `FAN_IN` of them.
const RUN_IO_BUFFER: usize = 128 * 1024;
/// Runs merged at once; more runs than this are merged in rounds, so open files and buffers stay
/// bounded whatever the input size.
pub(super) const FAN_IN: usize = 64;

#[derive(Clone, Copy)]
struct Entry {
    line_start: u32,
    line_len: u32,
    group: u32,
}

/// Bytes a distinct key costs in the key table beyond its own (the map's slot and the
/// allocation), counted against the budget.
const KEY_OVERHEAD: usize = 64;

/// Rows of the current run: finished output lines in one arena, an index of 12 bytes a row
/// naming each row's key by number, and the run's distinct keys. The arena and the index are
/// allocated once at their full size and never grow (a full one triggers a spill instead), so
/// the footprint is the budget: a growing `Vec` would double past it; untouched capacity costs
/// no resident memory on a small input. Rows are grouped by key number when spilled, and only
/// the distinct keys are sorted: comparing long keys with common prefixes row by row was most
/// of the time.
pub(super) struct RunBuffer {
    arena: Vec<u8>,
    index: Vec<Entry>,
    groups: KeyMap<u32>,
    key_bytes: usize,
}

impl RunBuffer {
    /// `budget` bytes in all: three quarters for the arena and the key table, the rest for the
    /// index (and the spill's ordering, a third of the index, comes on top).
    pub(super) fn new(budget: usize) -> Self {
        // The arena addresses rows with u32 offsets.
        let budget = budget.clamp(1024, u32::MAX as usize);
        let arena = budget / 4 * 3;
        let index = (budget - arena) / size_of::<Entry>();
        RunBuffer {
            arena: Vec::with_capacity(arena),
            index: Vec::with_capacity(index),
            groups: KeyMap::default(),
            key_bytes: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a row whose output line has `line_len` bytes fits without growing the buffer
    /// (its key, of `key_len` bytes, may be new).
    pub(super) fn fits(&self, line_len: usize, key_len: usize) -> bool {
        self.index.len() < self.index.capacity()
            && self.arena.capacity()
                >= self.arena.len() + self.key_bytes + line_len + key_len + KEY_OVERHEAD
    }

    /// Adds one row of `key` with its finished output `line`. Returns false when the row cannot
    /// be addressed (the buffer passed 4 GiB).
    pub(super) fn push(&mut self, key: &[u8], line: &[u8]) -> bool {
        let group = match self.groups.get(key) {
            Some(&g) => g,
            None => {
                let Ok(g) = u32::try_from(self.groups.len()) else {
                    return false;
                };
                self.key_bytes += key.len() + KEY_OVERHEAD;
                self.groups.insert(key.to_vec(), g);
                g
            }
        };
        let line_start = self.arena.len();
        self.arena.extend_from_slice(line);
        let (Ok(line_start), Ok(line_len), Ok(_)) = (
            u32::try_from(line_start),
            u32::try_from(line.len()),
            u32::try_from(self.arena.len()),
        ) else {
            return false;
        };
        self.index.push(Entry {
            line_start,
            line_len,
            group,
        });
        true
    }

    fn line(&self, e: &Entry) -> &[u8] {
        let start = e.line_start as usize;
        &self.arena[start..start + e.line_len as usize]
    }

    /// Writes the buffered rows as a run file, by key, leaving the buffer empty.
    pub(super) fn spill(&mut self, path: &Path) -> io::Result<()> {
        let mut keys: Vec<(Vec<u8>, u32)> = self.groups.drain().collect();
        keys.sort_unstable();
        // Rows of each key number, in file order (a counting sort, so stable).
        let mut first = vec![0u32; keys.len() + 1];
        for e in &self.index {
            first[e.group as usize + 1] += 1;
        }
        for g in 1..first.len() {
            first[g] += first[g - 1];
        }
        let mut next = first.clone();
        let mut order = vec![0u32; self.index.len()];
        for (i, e) in self.index.iter().enumerate() {
            let slot = &mut next[e.group as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let mut out = BufWriter::with_capacity(RUN_IO_BUFFER, File::create(path)?);
        for (key, g) in &keys {
            let rows = &order[first[*g as usize] as usize..first[*g as usize + 1] as usize];
            let bytes: u64 = rows
                .iter()
                .map(|&i| u64::from(self.index[i as usize].line_len))
                .sum();
            write_block_header(&mut out, key, rows.len() as u64, bytes)?;
            for &i in rows {
                out.write_all(self.line(&self.index[i as usize]))?;
            }
        }
        // No fsync: a run lives only for this call and is read back from the page cache.
        out.into_inner().map_err(|e| e.into_error())?;
        self.index.clear();
        self.arena.clear();
        self.key_bytes = 0;
        // A run of many keys must not leave its table's capacity to the next.
        self.groups = KeyMap::default();
        Ok(())
    }
}

/// Appends one CSV record with LF ending, quoting a cell only when it holds a comma, a quote,
/// CR or LF (RFC 4180; the `csv` crate's "necessary" style). A record of one empty cell is
/// written `""` so that it does not read back as a blank line.
pub(super) fn write_record<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a [u8]>) {
    let mut count = 0usize;
    let mut last_empty = false;
    for cell in cells {
        if count > 0 {
            out.push(b',');
        }
        if cell
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        {
            out.push(b'"');
            for &b in cell {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(cell);
        }
        last_empty = cell.is_empty();
        count += 1;
    }
    if count == 1 && last_empty {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

fn write_block_header(out: &mut impl Write, key: &[u8], rows: u64, bytes: u64) -> io::Result<()> {
    let key_len = u32::try_from(key.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "key too long"))?;
    out.write_all(&key_len.to_le_bytes())?;
    out.write_all(&rows.to_le_bytes())?;
    out.write_all(&bytes.to_le_bytes())?;
    out.write_all(key)
}

/// Where merged groups go: the final group files, or the next round's run file.
pub(super) trait GroupSink {
    /// A group starts; `bytes` of its lines follow through [`GroupSink::body`].
    fn begin(&mut self, key: &[u8], rows: u64, bytes: u64) -> io::Result<()>;
    fn body(&mut self) -> &mut dyn Write;
    fn end(&mut self) -> io::Result<()>;
}

/// One run being read: the header of its current block, whose lines are still unread.
struct RunReader {
    input: BufReader<File>,
    key: Vec<u8>,
    rows: u64,
    bytes: u64,
}

impl RunReader {
    fn open(path: &Path) -> io::Result<Self> {
        Ok(RunReader {
            input: BufReader::with_capacity(RUN_IO_BUFFER, File::open(path)?),
            key: Vec::new(),
            rows: 0,
            bytes: 0,
        })
    }

    /// Reads the next block's header; false at the end of the run.
    fn advance(&mut self) -> io::Result<bool> {
        let mut head = [0u8; 20];
        match self.input.read_exact(&mut head[..4]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        self.input.read_exact(&mut head[4..])?;
        let key_len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        self.rows = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
        self.bytes = u64::from_le_bytes(head[12..].try_into().expect("8 bytes"));
        self.key.resize(key_len, 0);
        self.input.read_exact(&mut self.key)?;
        Ok(true)
    }

    fn copy_lines(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.input).take(self.bytes), out)?;
        if copied != self.bytes {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "run file ended inside a block",
            ));
        }
        Ok(())
    }
}

/// Merges `runs` (in file order) into `sink`, one call of `begin`/`end` per distinct key in key
/// byte order. Equal keys are taken from earlier runs first, which keeps rows in file order.
/// `cancelled` is polled before each group; a cancelled merge fails with `Interrupted`.
pub(super) fn merge(
    runs: &[PathBuf],
    sink: &mut dyn GroupSink,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut readers = Vec::with_capacity(runs.len());
    for path in runs {
        readers.push(RunReader::open(path)?);
    }
    // (key, run index): the key is cloned into the heap so the readers can move on.
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        if r.advance()? {
            heap.push(Reverse((r.key.clone(), i)));
        }
    }
    let mut same = Vec::with_capacity(readers.len());
    while let Some(Reverse((key, first))) = heap.pop() {
        same.clear();
        same.push(first);
        while let Some(Reverse((k, _))) = heap.peek() {
            if *k != key {
                break;
            }
            let Some(Reverse((_, i))) = heap.pop() else {
                break;
            };
            same.push(i);
        }
        if cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let rows = same.iter().map(|&i| readers[i].rows).sum();
        let bytes = same.iter().map(|&i| readers[i].bytes).sum();
        sink.begin(&key, rows, bytes)?;
        for &i in &same {
            readers[i].copy_lines(sink.body())?;
        }
        sink.end()?;
        for &i in &same {
            let r = &mut readers[i];
            if r.advance()? {
                heap.push(Reverse((r.key.clone(), i)));
            }
        }
    }
    Ok(())
}

/// A run file being written by a merge round.
pub(super) struct RunWriter {
    out: BufWriter<File>,
}

impl RunWriter {
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        Ok(RunWriter {
            out: BufWriter::with_capacity(RUN_IO_BUFFER, File::create(path)?),
        })
    }

    pub(super) fn finish(self) -> io::Result<()> {
        self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    }
}

impl GroupSink for RunWriter {
    fn begin(&mut self, key: &[u8], rows: u64, bytes: u64) -> io::Result<()> {
        write_block_header(&mut self.out, key, rows, bytes)
    }

    fn body(&mut self) -> &mut dyn Write {
        &mut self.out
    }

    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Spills full buffers on a second thread while the reader fills another: two buffers of half
/// the budget each, so the memory stays the budget and parsing and spilling overlap.
pub(super) struct Spiller {
    to_thread: Option<SyncSender<(RunBuffer, PathBuf)>>,
    back: Receiver<io::Result<RunBuffer>>,
    free: Option<RunBuffer>,
    pending: usize,
    thread: Option<JoinHandle<()>>,
}

impl Spiller {
    /// Starts the spilling thread; returns it with the first buffer to fill.
    pub(super) fn start(budget: usize) -> io::Result<(Self, RunBuffer)> {
        let (to_thread, jobs) = sync_channel::<(RunBuffer, PathBuf)>(1);
        let (done, back) = sync_channel(2);
        let thread = std::thread::Builder::new()
            .name("bar-spill".into())
            .spawn(move || {
                for (mut buffer, path) in jobs {
                    let result = buffer.spill(&path).map(|()| buffer);
                    if done.send(result).is_err() {
                        break;
                    }
                }
            })?;
        let spiller = Spiller {
            to_thread: Some(to_thread),
            back,
            free: Some(RunBuffer::new(budget / 2)),
            pending: 0,
            thread: Some(thread),
        };
        Ok((spiller, RunBuffer::new(budget / 2)))
    }

    fn send(&mut self, buffer: RunBuffer, path: PathBuf) -> io::Result<()> {
        let stopped = || io::Error::other("the spilling thread stopped");
        let tx = self.to_thread.as_ref().ok_or_else(stopped)?;
        tx.send((buffer, path)).map_err(|_| stopped())?;
        self.pending += 1;
        Ok(())
    }

    fn receive(&mut self) -> io::Result<RunBuffer> {
        let buffer = self
            .back
            .recv()
            .map_err(|_| io::Error::other("the spilling thread stopped"))??;
        self.pending -= 1;
        Ok(buffer)
    }

    /// Hands a full buffer over to be written to `path` and returns an empty one, waiting for
    /// the previous spill only if it is still running.
    pub(super) fn swap(&mut self, full: RunBuffer, path: PathBuf) -> io::Result<RunBuffer> {
        self.send(full, path)?;
        match self.free.take() {
            Some(free) => Ok(free),
            None => self.receive(),
        }
    }

    /// Spills the last buffer (if it holds rows) and waits until every run is written.
    pub(super) fn finish(mut self, last: RunBuffer, path: PathBuf) -> io::Result<()> {
        if !last.is_empty() {
            self.send(last, path)?;
        }
        while self.pending > 0 {
            self.receive()?;
        }
        Ok(())
    }
}

impl Drop for Spiller {
    // Stops the thread before the spill directory is removed, also when reading failed.
    fn drop(&mut self) {
        self.to_thread = None;
        while self.pending > 0 && self.back.recv().is_ok() {
            self.pending -= 1;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
