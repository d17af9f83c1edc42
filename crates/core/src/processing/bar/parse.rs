//! CSV reading for the grouping, on its own thread.
//!
//! [`CsvSource`] reads RFC 4180 records the way `csv_core` (the csv crate's parser) does, with a
//! shortcut for the common case: a line with no quote and no CR before its end is split at its
//! commas where it lies in the read buffer, with no copy and no per-byte state machine. Any other
//! line (a quote anywhere, a lone CR) goes through `csv_core`, which sees exactly the bytes it
//! would have seen reading the whole file, so both give the same records: CR, LF and CRLF line
//! ends, blank lines skipped, quoted cells with commas, doubled quotes and line breaks.
//!
//! [`Parser`] runs a `CsvSource` on a thread: it checks each row (cell count, UTF-8), drops rows
//! without a key, and builds each kept row's key and output line, handing them to the grouping
//! thread in batches, so parsing and grouping run on two cores. A few batches exist at once (the
//! ones queued, the one being filled and the one being grouped), whatever the file size; a batch
//! ends after `BATCH_ROWS` rows or `BATCH_BYTES` of output, and a batch's buffers that grew for
//! long rows are not reused.

use super::runs::write_record;
use super::{Columns, is_blank};
use csv_core::ReadRecordResult;
use memchr::{memchr_iter, memchr2};
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The read buffer, and the largest record: a line or quoted record longer than this fails the
/// file instead of growing memory without bound.
const READ_BYTES: usize = 256 * 1024;
pub(super) const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Why reading stopped before the end of the file. Rows before it were all handed over.
#[derive(Debug)]
pub(super) enum Failure {
    Io(io::Error),
    Malformed { line: u64, message: String },
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// One record: its cells are `data[s..e]` for each `(s, e)` of `bounds`.
pub(super) struct Record<'a> {
    data: &'a [u8],
    bounds: &'a [(usize, usize)],
    /// The line the record starts on (1 for the file's first line).
    pub(super) line: u64,
    /// Read by the shortcut: no cell holds a quote, comma, CR or LF.
    plain: bool,
    /// The cells are UTF-8.
    utf8: bool,
}

impl<'a> Record<'a> {
    pub(super) fn len(&self) -> usize {
        self.bounds.len()
    }

    #[inline]
    pub(super) fn cell(&self, i: usize) -> &'a [u8] {
        let (s, e) = self.bounds[i];
        &self.data[s..e]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.bounds.iter().map(|&(s, e)| &self.data[s..e])
    }

    fn too_long(line: u64) -> Failure {
        Failure::Malformed {
            line,
            message: format!("a row longer than {} MiB", MAX_RECORD >> 20),
        }
    }
}

/// Bit `i` of each mask describes byte `i` of a block: a comma, a line feed, or a byte that
/// needs a careful look (a quote, a CR, or a byte outside ASCII).
#[derive(Clone, Copy, Default)]
struct Masks {
    comma: u64,
    lf: u64,
    special: u64,
}

impl Masks {
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn of(bytes: &[u8; 64]) -> Masks {
        #[allow(unsafe_code)]
        // SAFETY: SSE2 is part of every x86_64 CPU.
        unsafe {
            Masks::of_sse2(bytes)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    #[inline]
    fn of_sse2(bytes: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let (comma, lf) = (_mm_set1_epi8(b',' as i8), _mm_set1_epi8(b'\n' as i8));
        let (quote, cr) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\r' as i8));
        let bits = |v: __m128i| u64::from(_mm_movemask_epi8(v) as u16);
        let mut m = Masks::default();
        for (i, lane) in bytes.chunks_exact(16).enumerate() {
            #[allow(unsafe_code)]
            // SAFETY: `lane` is 16 readable bytes and the load has no alignment requirement.
            let v = unsafe { _mm_loadu_si128(lane.as_ptr().cast::<__m128i>()) };
            let shift = 16 * i;
            m.comma |= bits(_mm_cmpeq_epi8(v, comma)) << shift;
            m.lf |= bits(_mm_cmpeq_epi8(v, lf)) << shift;
            // A byte's own top bit marks it as outside ASCII.
            let odd = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, cr));
            m.special |= bits(_mm_or_si128(odd, v)) << shift;
        }
        m
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn of(bytes: &[u8; 64]) -> Masks {
        let mut m = Masks::default();
        for (i, &b) in bytes.iter().enumerate() {
            m.comma |= u64::from(b == b',') << i;
            m.lf |= u64::from(b == b'\n') << i;
            m.special |= u64::from(b == b'"' || b == b'\r' || !b.is_ascii()) << i;
        }
        m
    }

    /// The masks of the bytes from `k` on.
    #[inline]
    fn shifted(self, k: usize) -> Masks {
        Masks {
            comma: self.comma >> k,
            lf: self.lf >> k,
            special: self.special >> k,
        }
    }
}

/// Records of a file, read through one buffer.
pub(super) struct CsvSource<R> {
    input: R,
    buf: Vec<u8>,
    /// `buf[pos..end]` is read and not yet consumed.
    pos: usize,
    end: usize,
    eof: bool,
    /// Input bytes before `buf[0]`.
    before: u64,
    /// The line `buf[pos]` is on.
    line: u64,
    core: csv_core::Reader,
    cells: Vec<u8>,
    ends: Vec<usize>,
    bounds: Vec<(usize, usize)>,
    /// The masks of the 64 bytes at `block_at`, while they are in the buffer.
    block: Masks,
    block_at: Option<usize>,
}

impl<R: Read> CsvSource<R> {
    /// Reads `input`, skipping a UTF-8 BOM at its start.
    pub(super) fn new(input: R) -> Result<Self, Failure> {
        let mut source = CsvSource {
            input,
            buf: vec![0; READ_BYTES],
            pos: 0,
            end: 0,
            eof: false,
            before: 0,
            line: 1,
            core: csv_core::Reader::new(),
            cells: vec![0; 4096],
            ends: vec![0; 64],
            bounds: Vec::new(),
            block: Masks::default(),
            block_at: None,
        };
        while source.end < 3 && !source.eof {
            source.fill(0)?;
        }
        if source.buf[..source.end].starts_with(b"\xEF\xBB\xBF") {
            source.pos = 3;
        }
        Ok(source)
    }

    /// Input bytes consumed so far.
    pub(super) fn byte(&self) -> u64 {
        self.before + self.pos as u64
    }

    /// Moves the unconsumed bytes to the front and reads more; the buffer grows when `keep`
    /// unconsumed bytes must stay and fill it. Sets `eof` when the input has ended.
    fn fill(&mut self, keep: usize) -> Result<(), Failure> {
        self.block_at = None;
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.before += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if keep >= MAX_RECORD {
                return Err(Record::too_long(self.line));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next record; `None` at the end of the input.
    pub(super) fn next(&mut self) -> Result<Option<Record<'_>>, Failure> {
        loop {
            let start = self.pos;
            let Some((len, next, careful)) = self.scan()? else {
                if self.eof && self.pos == self.end {
                    return Ok(None);
                }
                let keep = self.end - self.pos;
                self.fill(keep)?;
                continue;
            };
            let line = self.line;
            if careful {
                let text = &self.buf[start..start + len];
                match memchr2(b'"', b'\r', text) {
                    // Only bytes outside ASCII: a plain line if it is UTF-8.
                    None => {}
                    Some(i) if i + 1 == len && text[i] == b'\r' => {
                        self.bounds.last_mut().expect("a cell").1 -= 1;
                    }
                    Some(_) => return self.parse_quoted(),
                }
            }
            let len = self.bounds.last().expect("a cell").1;
            self.pos += next;
            self.line += 1;
            if len == 0 {
                // A blank line.
                continue;
            }
            let data = &self.buf[start..start + len];
            return Ok(Some(Record {
                utf8: !careful || std::str::from_utf8(data).is_ok(),
                data,
                bounds: &self.bounds,
                line,
                plain: true,
            }));
        }
    }

    /// Finds the end of the line at `pos` and its commas (into `bounds`, relative to `pos`):
    /// `(length without the line end, length with it, whether it holds a quote, a CR or a byte
    /// outside ASCII)`. `None` when the buffer ends before the line does and more can be read.
    #[inline]
    fn scan(&mut self) -> Result<Option<(usize, usize, bool)>, Failure> {
        let start = self.pos;
        if start == self.end && self.eof {
            return Ok(None);
        }
        self.bounds.clear();
        let mut cell = 0;
        let mut at = start;
        let mut careful = false;
        loop {
            if at >= self.end {
                if !self.eof {
                    return Ok(None);
                }
                // The last line, with no line end.
                let len = self.end - start;
                self.bounds.push((cell, len));
                return Ok(Some((len, len, careful)));
            }
            let (m, width) = self.window(at);
            let (commas, len) = if m.lf != 0 {
                let nl = m.lf.trailing_zeros();
                let below = (1u64 << nl) - 1;
                careful |= m.special & below != 0;
                (m.comma & below, Some(at + nl as usize - start))
            } else {
                careful |= m.special != 0;
                (m.comma, None)
            };
            let mut c = commas;
            while c != 0 {
                let comma = at + c.trailing_zeros() as usize - start;
                self.bounds.push((cell, comma));
                cell = comma + 1;
                c &= c - 1;
            }
            if let Some(len) = len {
                self.bounds.push((cell, len));
                return Ok(Some((len, len + 1, careful)));
            }
            at += width;
        }
    }

    /// The masks of the bytes from `at` to the end of its 64-byte block (the block's masks are
    /// kept, so the lines within one block classify it once), and how many bytes they describe.
    #[inline]
    fn window(&mut self, at: usize) -> (Masks, usize) {
        if let Some(b) = self.block_at
            && b <= at
            && at < b + 64
        {
            let k = at - b;
            return (self.block.shifted(k), 64 - k);
        }
        if at + 64 <= self.end {
            let bytes: &[u8; 64] = self.buf[at..at + 64].try_into().expect("64 bytes");
            self.block = Masks::of(bytes);
            self.block_at = Some(at);
            return (self.block, 64);
        }
        // The last bytes read: zeros after them mark nothing.
        let mut tail = [0u8; 64];
        let n = self.end - at;
        tail[..n].copy_from_slice(&self.buf[at..self.end]);
        (Masks::of(&tail), n)
    }

    /// A record through `csv_core`, starting at `buf[pos]`, over as many lines and reads as it
    /// takes.
    #[cold]
    fn parse_quoted(&mut self) -> Result<Option<Record<'_>>, Failure> {
        let line = self.line;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let input = &self.buf[self.pos..self.end];
            let (result, nin, out, ends) =
                self.core
                    .read_record(input, &mut self.cells[nout..], &mut self.ends[nend..]);
            self.line += memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.pos += nin;
            nout += out;
            nend += ends;
            match result {
                ReadRecordResult::InputEmpty => {
                    if !self.eof {
                        self.fill(0)?;
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.cells.len() >= MAX_RECORD {
                        return Err(Record::too_long(line));
                    }
                    self.cells.resize(self.cells.len() * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let more = self.ends.len() * 2;
                    self.ends.resize(more, 0);
                }
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return Ok(None),
            }
        }
        self.bounds.clear();
        let mut cell = 0;
        for &end in &self.ends[..nend] {
            self.bounds.push((cell, end));
            cell = end;
        }
        let data = &self.cells[..nout];
        Ok(Some(Record {
            utf8: std::str::from_utf8(data).is_ok(),
            data,
            bounds: &self.bounds,
            line,
            plain: false,
        }))
    }
}

/// Rows kept per batch, and the output bytes after which a batch is sent even if not full.
const BATCH_ROWS: usize = 2048;
const BATCH_BYTES: usize = 256 * 1024;
/// A batch's buffers larger than this after use are dropped, not reused.
const REUSE_BYTES: usize = 4 * BATCH_BYTES;

/// Rows of the file in order: the kept ones with their key and output line (the cells other than
/// the key columns, as CSV), and how many were read and dropped.
pub(super) struct Batch {
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    lines: Vec<u8>,
    line_ends: Vec<usize>,
    line_numbers: Vec<u64>,
    /// Rows read, kept or not.
    pub(super) rows: u64,
    /// Rows dropped for an empty org or source.
    pub(super) dropped: u64,
    /// Input bytes read by the end of this batch.
    pub(super) byte: u64,
}

#[inline]
fn span(ends: &[usize], i: usize) -> std::ops::Range<usize> {
    (if i == 0 { 0 } else { ends[i - 1] })..ends[i]
}

impl Batch {
    fn new() -> Self {
        Batch {
            keys: Vec::with_capacity(BATCH_ROWS * 32),
            key_ends: Vec::with_capacity(BATCH_ROWS),
            lines: Vec::with_capacity(BATCH_BYTES),
            line_ends: Vec::with_capacity(BATCH_ROWS),
            line_numbers: Vec::with_capacity(BATCH_ROWS),
            rows: 0,
            dropped: 0,
            byte: 0,
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.key_ends.clear();
        self.lines.clear();
        self.line_ends.clear();
        self.line_numbers.clear();
        self.rows = 0;
        self.dropped = 0;
    }

    /// Kept rows.
    pub(super) fn len(&self) -> usize {
        self.line_ends.len()
    }

    #[inline]
    pub(super) fn key(&self, i: usize) -> &[u8] {
        &self.keys[span(&self.key_ends, i)]
    }

    /// The output line of kept row `i`.
    #[inline]
    pub(super) fn line(&self, i: usize) -> &[u8] {
        &self.lines[span(&self.line_ends, i)]
    }

    pub(super) fn line_number(&self, i: usize) -> u64 {
        self.line_numbers[i]
    }

    /// Checks a row and adds it, or counts it as dropped.
    #[inline]
    fn add(&mut self, record: &Record<'_>, columns: &Columns) -> Result<(), Failure> {
        if record.len() != columns.count {
            return Err(Failure::Malformed {
                line: record.line,
                message: format!(
                    "{} cells where the header has {}",
                    record.len(),
                    columns.count
                ),
            });
        }
        if !record.utf8 {
            return Err(Failure::Malformed {
                line: record.line,
                message: "not valid UTF-8".into(),
            });
        }
        self.rows += 1;
        let (org, source) = (record.cell(columns.org), record.cell(columns.source));
        if is_blank(org) || is_blank(source) {
            self.dropped += 1;
            return Ok(());
        }
        self.keys.extend_from_slice(org);
        self.keys.extend_from_slice(b" : ");
        self.keys.extend_from_slice(source);
        self.key_ends.push(self.keys.len());
        if record.plain {
            write_plain(&mut self.lines, record, columns);
        } else {
            write_record(&mut self.lines, columns.others(record.iter()));
        }
        self.line_ends.push(self.lines.len());
        self.line_numbers.push(record.line);
        Ok(())
    }
}

/// The output line of a row read by the shortcut: its cells need no quoting, so the cells
/// around the key columns are copied as up to three spans.
#[inline]
fn write_plain(out: &mut Vec<u8>, record: &Record<'_>, columns: &Columns) {
    let (first, second) = (
        columns.org.min(columns.source),
        columns.org.max(columns.source),
    );
    let n = record.bounds.len();
    let mut wrote = false;
    for (a, b) in [(0, first), (first + 1, second), (second + 1, n)] {
        if a < b {
            if wrote {
                out.push(b',');
            }
            out.extend_from_slice(&record.data[record.bounds[a].0..record.bounds[b - 1].1]);
            wrote = true;
        }
    }
    // One empty cell alone would read back as a blank line.
    if n == 3 {
        let only = (0..n).find(|&i| i != first && i != second).unwrap_or(0);
        if record.cell(only).is_empty() {
            out.extend_from_slice(b"\"\"");
        }
    }
    out.push(b'\n');
}

pub(super) struct Parser {
    batches: Option<Receiver<Result<Batch, Failure>>>,
    back: SyncSender<Batch>,
    thread: Option<JoinHandle<()>>,
}

impl Parser {
    /// Reads the rest of `source` on a new thread.
    pub(super) fn start<R: Read + Send + 'static>(
        mut source: CsvSource<R>,
        columns: Columns,
    ) -> io::Result<Self> {
        let (tx, batches) = sync_channel::<Result<Batch, Failure>>(QUEUED);
        let (back, free) = sync_channel::<Batch>(QUEUED + 2);
        let thread = std::thread::Builder::new()
            .name("bar-parse".into())
            .spawn(move || {
                loop {
                    let mut batch = free.try_recv().unwrap_or_else(|_| Batch::new());
                    batch.clear();
                    let mut end = false;
                    let mut failure = None;
                    let mut seen = 0;
                    while seen < BATCH_ROWS && batch.lines.len() < BATCH_BYTES {
                        let record = match source.next() {
                            Ok(Some(r)) => r,
                            Ok(None) => {
                                end = true;
                                break;
                            }
                            Err(f) => {
                                failure = Some(f);
                                break;
                            }
                        };
                        if let Err(f) = batch.add(&record, &columns) {
                            failure = Some(f);
                            break;
                        }
                        seen += 1;
                    }
                    batch.byte = source.byte();
                    if batch.rows > 0 && tx.send(Ok(batch)).is_err() {
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
                    Some(Err(_)) => {
                        Err(Failure::Io(io::Error::other("the parsing thread stopped")))
                    }
                    _ => Ok(None),
                }
            }
        }
    }

    /// Hands a batch back to be reused (but not buffers that grew for long rows).
    pub(super) fn recycle(&self, mut batch: Batch) {
        if batch.lines.capacity() > REUSE_BYTES || batch.keys.capacity() > REUSE_BYTES {
            return;
        }
        batch.clear();
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
