//! Streams a manifest's chunks in order. Adjacent blobs of one pack are fetched with one
//! ranged GET (up to `Tuning::read_span_bytes`), `Tuning::reads_in_flight` of them at once,
//! each decoded (opened, decompressed, length and id checked) on the vault's runtime while
//! the caller consumes earlier chunks. Memory is bounded by in-flight spans times span size.
//! A chunk that fails any check is an error naming the backup, the pack and the chunk:
//! never wrong data.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::task::JoinHandle;

use crate::crypto::{ChunkId, chunk_id};
use crate::error::{Error, Result};
use crate::format::{self, CODEC_STORED, CODEC_ZSTD, PackId};
use crate::manifest::Manifest;
use crate::vault::{Inner, Vault};

/// What a chunk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkContent {
    /// Zeros, stored as nothing; a restore leaves it unwritten (or punches a hole).
    Hole,
    Data(Bytes),
}

/// One chunk of an image: bytes `[index * chunk size, + len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: u64,
    pub len: u64,
    pub content: ChunkContent,
}

enum Pending {
    Holes {
        first: u64,
        count: u64,
    },
    Fetch {
        handle: JoinHandle<Result<Vec<Chunk>>>,
    },
}

/// Iterator over a manifest's chunks; see `Vault::reader`.
pub struct ChunkReader<'a> {
    vault: &'a Vault,
    manifest: &'a Manifest,
    planned: usize,
    queue: VecDeque<Pending>,
    ready: VecDeque<Chunk>,
    done: bool,
}

/// A blob to decode from a fetched span.
struct Want {
    index: u64,
    id: ChunkId,
    /// Offset in the span.
    at: usize,
    stored_len: usize,
    raw_len: usize,
}

impl Vault {
    /// Reads `manifest` (from `read_manifest`) chunk by chunk, in order.
    pub fn reader<'a>(&'a self, manifest: &'a Manifest) -> ChunkReader<'a> {
        ChunkReader {
            vault: self,
            manifest,
            planned: 0,
            queue: VecDeque::new(),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

impl ChunkReader<'_> {
    fn fetches(&self) -> usize {
        self.queue
            .iter()
            .filter(|p| matches!(p, Pending::Fetch { .. }))
            .count()
    }

    /// Queues work until enough fetches are in flight or the manifest is fully planned.
    fn plan(&mut self) {
        let m = self.manifest;
        let tuning = &self.vault.tuning;
        while self.planned < m.entries.len() && self.fetches() < tuning.reads_in_flight.max(1) {
            let first = self.planned;
            if m.entries[first].is_hole() {
                let count = m.entries[first..]
                    .iter()
                    .take_while(|e| e.is_hole())
                    .count();
                self.queue.push_back(Pending::Holes {
                    first: first as u64,
                    count: count as u64,
                });
                self.planned += count;
                continue;
            }
            let head = m.entries[first];
            let start = u64::from(head.offset);
            let mut end;
            let mut wants = vec![];
            let mut i = first;
            loop {
                let e = m.entries[i];
                wants.push(Want {
                    index: i as u64,
                    id: e.id,
                    at: (u64::from(e.offset) - start) as usize,
                    stored_len: e.stored_len as usize,
                    raw_len: m.chunk_len(i as u64) as usize,
                });
                end = u64::from(e.offset) + u64::from(e.stored_len);
                i += 1;
                let Some(next) = m.entries.get(i) else { break };
                let adjacent =
                    !next.is_hole() && next.pack == head.pack && u64::from(next.offset) == end;
                if !adjacent || end + u64::from(next.stored_len) - start > tuning.read_span_bytes {
                    break;
                }
            }
            self.planned = i;
            let inner = self.vault.inner.clone();
            let pack = m.packs[head.pack as usize];
            let backup_id = m.backup_id;
            let handle = self
                .vault
                .rt
                .spawn(fetch_span(inner, backup_id, pack, start, end, wants));
            self.queue.push_back(Pending::Fetch { handle });
        }
    }
}

impl Iterator for ChunkReader<'_> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        if let Some(c) = self.ready.pop_front() {
            return Some(Ok(c));
        }
        if self.done {
            return None;
        }
        self.plan();
        let Some(front) = self.queue.pop_front() else {
            self.done = true;
            return None;
        };
        match front {
            Pending::Holes { first, count } => {
                let m = self.manifest;
                self.ready.extend((first..first + count).map(|i| Chunk {
                    index: i,
                    len: m.chunk_len(i),
                    content: ChunkContent::Hole,
                }));
            }
            Pending::Fetch { handle } => match self.vault.rt.block_on(handle) {
                Ok(Ok(chunks)) => self.ready.extend(chunks),
                Ok(Err(e)) => {
                    self.stop();
                    return Some(Err(e));
                }
                Err(join) => {
                    self.stop();
                    let detail = format!("decoding task failed: {join}");
                    return Some(Err(Error::corrupt(
                        "(reader)",
                        Some(self.manifest.backup_id),
                        detail,
                    )));
                }
            },
        }
        self.ready.pop_front().map(Ok)
    }
}

impl ChunkReader<'_> {
    fn stop(&mut self) {
        self.done = true;
        for p in self.queue.drain(..) {
            if let Pending::Fetch { handle } = p {
                handle.abort();
            }
        }
    }
}

impl Drop for ChunkReader<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn fetch_span(
    inner: Arc<Inner>,
    backup_id: u64,
    pack: PackId,
    start: u64,
    end: u64,
    wants: Vec<Want>,
) -> Result<Vec<Chunk>> {
    let name = format::pack_name(&pack);
    let path = Path::from(name.as_str());
    let bytes = match inner.store.get_range(&path, start..end).await {
        Ok(b) => {
            inner.count_get(b.len());
            b
        }
        Err(e @ object_store::Error::NotFound { .. }) => {
            return Err(Error::store(&name, Some(backup_id), e));
        }
        Err(e) => {
            // A range past the end is an altered (truncated) pack, not a storage fault.
            return Err(match inner.store.head(&path).await {
                Ok(meta) if meta.size < end => {
                    let detail = format!(
                        "truncated to {} bytes; chunk {} needs bytes up to {end}",
                        meta.size, wants[0].index
                    );
                    Error::corrupt(&name, Some(backup_id), detail)
                }
                _ => Error::Store {
                    object: format!("{name} (backup {backup_id})"),
                    detail: crate::error::scrub(&e.to_string()),
                },
            });
        }
    };
    if bytes.len() as u64 != end - start {
        let detail = format!("short read: {} of {} bytes", bytes.len(), end - start);
        return Err(Error::corrupt(&name, Some(backup_id), detail));
    }
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        let blob = bytes.slice(w.at..w.at + w.stored_len);
        let data = decode_blob(&inner, &w.id, blob, w.raw_len).map_err(|why| {
            let detail = format!("chunk {} ({}): {why}", w.index, format::hex(&w.id[..8]));
            Error::corrupt(&name, Some(backup_id), detail)
        })?;
        out.push(Chunk {
            index: w.index,
            len: w.raw_len as u64,
            content: ChunkContent::Data(data),
        });
    }
    Ok(out)
}

/// A blob's plaintext, checked: it opens under the vault key for its id, decompresses to
/// exactly `raw_len` bytes, and those bytes have the id. Stored (uncompressed) data is a
/// slice of the fetched span, not a copy.
pub(crate) fn decode_blob(
    inner: &Inner,
    id: &ChunkId,
    blob: Bytes,
    raw_len: usize,
) -> std::result::Result<Bytes, &'static str> {
    let plain = if inner.sealer.encrypted() {
        let opened = inner
            .sealer
            .open(id, &blob)
            .ok_or("authentication failed (altered or another key)")?;
        Bytes::from(opened)
    } else {
        blob
    };
    let Some(&codec) = plain.first() else {
        return Err("empty blob");
    };
    let data = match codec {
        CODEC_STORED => plain.slice(1..),
        CODEC_ZSTD => Bytes::from(
            zstd::bulk::decompress(&plain[1..], raw_len)
                .map_err(|_| "compressed data does not decode")?,
        ),
        _ => return Err("unknown codec"),
    };
    if data.len() != raw_len {
        return Err("wrong length");
    }
    if chunk_id(&inner.chunk_key, &data) != *id {
        return Err("content does not match its chunk id");
    }
    Ok(data)
}
