//! Groups written straight to their files: the first `BarOptions::direct_keys` distinct keys of
//! the file. Their rows skip the sort buffer and the spill round trip: each key has a buffer of
//! `chunk` bytes of finished output lines, and a full buffer is handed to a writer thread that
//! appends it to the key's file in the spill directory (created with the header line on its
//! first chunk, opened and closed for each chunk, so no file stays open). When the input is read,
//! the files are complete; the output step renames them to their final names in key order,
//! interleaved with the merged groups.
//!
//! Memory: at most `direct_keys` buffers of about `chunk` bytes, plus the few in flight to the
//! writer thread; a buffer is allocated when its key next gets a row.

use super::hash::KeyMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Chunks queued for the writer thread, and empty buffers queued back for reuse.
const IN_FLIGHT: usize = 16;

/// A key written directly, as the output step needs it.
pub(super) struct DirectGroup {
    pub(super) key: Vec<u8>,
    pub(super) rows: u64,
    /// Its complete file (header and rows) in the spill directory.
    pub(super) path: PathBuf,
}

struct Slot {
    buffer: Vec<u8>,
    rows: u64,
}

/// The direct keys of one grouping, their buffers and the writer thread.
pub(super) struct DirectGroups {
    keys: KeyMap<u32>,
    slots: Vec<Slot>,
    limit: usize,
    chunk: usize,
    dir: PathBuf,
    to_thread: Option<SyncSender<(u32, Vec<u8>)>>,
    free: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

fn direct_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("direct-{id}"))
}

impl DirectGroups {
    /// Up to `limit` keys with buffers of `chunk` bytes, their files in `dir` starting with
    /// `header`.
    pub(super) fn start(
        dir: &Path,
        header: Vec<u8>,
        limit: usize,
        chunk: usize,
    ) -> io::Result<Self> {
        let (to_thread, chunks) = sync_channel::<(u32, Vec<u8>)>(IN_FLIGHT);
        let (back, free) = sync_channel(IN_FLIGHT);
        let thread_dir = dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("bar-direct".into())
            .spawn(move || write_chunks(&thread_dir, &header, chunk, chunks, back))?;
        Ok(DirectGroups {
            keys: KeyMap::default(),
            slots: Vec::new(),
            limit,
            chunk: chunk.max(1),
            dir: dir.to_owned(),
            to_thread: Some(to_thread),
            free,
            thread: Some(thread),
        })
    }

    /// The number of `key` if it is written directly: known already, or new while there is room.
    #[inline]
    pub(super) fn slot(&mut self, key: &[u8]) -> Option<u32> {
        if let Some(&id) = self.keys.get(key) {
            return Some(id);
        }
        if self.slots.len() >= self.limit {
            return None;
        }
        let id = u32::try_from(self.slots.len()).ok()?;
        self.keys.insert(key.to_vec(), id);
        self.slots.push(Slot {
            buffer: Vec::new(),
            rows: 0,
        });
        Some(id)
    }

    /// Adds a row of key `id` with its finished output `line`; a buffer that could not take it
    /// without growing is written out first.
    #[inline]
    pub(super) fn push(&mut self, id: u32, line: &[u8]) -> io::Result<()> {
        let slot = &mut self.slots[id as usize];
        if slot.buffer.capacity() - slot.buffer.len() < line.len() {
            if !slot.buffer.is_empty() {
                let full = std::mem::take(&mut slot.buffer);
                self.send(id, full)?;
            }
            let slot = &mut self.slots[id as usize];
            if slot.buffer.capacity() == 0 {
                slot.buffer = match self.free.try_recv() {
                    Ok(b) => b,
                    Err(_) => Vec::with_capacity(self.chunk),
                };
            }
        }
        let slot = &mut self.slots[id as usize];
        slot.buffer.extend_from_slice(line);
        slot.rows += 1;
        Ok(())
    }

    fn send(&mut self, id: u32, buffer: Vec<u8>) -> io::Result<()> {
        let sent = match &self.to_thread {
            Some(tx) => tx.send((id, buffer)).is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.stop()) }
    }

    /// Stops the writer thread and returns why it stopped.
    fn stop(&mut self) -> io::Error {
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the group writing thread stopped"),
        }
    }

    /// Writes every buffer out and waits for the files; returns the direct groups sorted by key.
    pub(super) fn finish(mut self) -> io::Result<Vec<DirectGroup>> {
        for id in 0..self.slots.len() {
            let buffer = std::mem::take(&mut self.slots[id].buffer);
            if !buffer.is_empty() {
                self.send(id as u32, buffer)?;
            }
        }
        self.to_thread = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(e),
            _ => return Err(io::Error::other("the group writing thread stopped")),
        }
        let mut groups: Vec<DirectGroup> = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|(key, id)| DirectGroup {
                key,
                rows: self.slots[id as usize].rows,
                path: direct_path(&self.dir, id),
            })
            .collect();
        groups.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(groups)
    }
}

impl Drop for DirectGroups {
    // Stops the thread before the spill directory is removed, also when reading failed.
    fn drop(&mut self) {
        self.to_thread = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: appends each chunk to its key's file, creating the file with the header
/// on the key's first chunk. Files are closed after each chunk, so open descriptors stay few
/// whatever the number of keys.
fn write_chunks(
    dir: &Path,
    header: &[u8],
    chunk_bytes: usize,
    chunks: Receiver<(u32, Vec<u8>)>,
    back: SyncSender<Vec<u8>>,
) -> io::Result<()> {
    let mut created: Vec<bool> = Vec::new();
    for (id, mut chunk) in chunks {
        let i = id as usize;
        if created.len() <= i {
            created.resize(i + 1, false);
        }
        let path = direct_path(dir, id);
        let mut file: File = if created[i] {
            OpenOptions::new().append(true).open(&path)?
        } else {
            created[i] = true;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(header)?;
            f
        };
        file.write_all(&chunk)?;
        drop(file);
        // A buffer that grew for one long row is not kept.
        if chunk.capacity() <= chunk_bytes.saturating_mul(2) {
            chunk.clear();
            if let Err(TrySendError::Disconnected(_)) = back.try_send(chunk) {
                // The reader is finishing; the buffer is not needed.
            }
        }
    }
    Ok(())
}
