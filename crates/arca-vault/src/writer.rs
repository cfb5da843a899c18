//! The copy writer: takes a backup image chunk by chunk (data, hole, or "same as the base
//! backup's chunk"), dedups, compresses, seals, gathers new chunks into packs uploaded as
//! multipart objects, writes each pack's index right after the pack, and the manifest last.
//!
//! Order of writes and why nothing is lost or half-visible:
//! 1. a pack (multipart: nothing is visible until it completes);
//! 2. its index object, once the pack is complete: from then on any later copy (a retry
//!    after a failure included) finds and reuses the pack's chunks;
//! 3. after the last chunk, the manifest (a conditional put: written once). A copy that
//!    dies before 3 leaves packs that no manifest names: invisible, reused by the next copy
//!    through their indexes, and removed by GC (issue 14) if never used.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

use crate::crypto::{ChunkId, random_array};
use crate::error::{Error, Result};
use crate::format::{
    self, BlobRef, CODEC_STORED, CODEC_ZSTD, MAGIC_INDEX, MAGIC_MANIFEST, MAGIC_PACK, PackId,
    PackIndex,
};
use crate::manifest::{Entry, Manifest, chunk_len};
use crate::vault::{Vault, now_unix_s};

/// zstd level 1: the fastest standard level. Chunk data that does not shrink is stored as is.
const ZSTD_LEVEL: i32 = 1;

/// What a copy did. `bytes_*` are bytes; requests are object-store write requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Data bytes handed to `data` (holes and base entries read nothing and count nothing).
    pub bytes_given: u64,
    /// Bytes of chunks that were not in the vault yet.
    pub bytes_new: u64,
    /// Bytes written to the vault: packs, their indexes and the manifest.
    pub bytes_stored: u64,
    pub chunks_new: u64,
    /// Chunks found in the vault (dedup) or taken from the base manifest.
    pub chunks_reused: u64,
    pub chunks_hole: u64,
    /// Write requests: multipart create, parts and complete, index and manifest puts.
    pub put_requests: u64,
    /// The manifest object's name (set by `finish`).
    pub manifest: String,
}

/// A new chunk being compressed and sealed on a worker thread.
struct InFlight {
    /// Its index in `entries` (a placeholder until appended).
    entry: usize,
    id: ChunkId,
    raw_len: u32,
    handle: tokio::task::JoinHandle<Result<Vec<u8>>>,
}

/// New chunks compressed and sealed at once (2 MiB at 64 KiB chunks): enough to keep both
/// worker threads busy while the caller hashes, little memory.
const MAX_IN_FLIGHT: usize = 32;

struct PackBuilder {
    id: PackId,
    /// The pack's slot in this copy's manifest pack table.
    slot: u32,
    upload: WriteMultipart,
    len: u64,
    index: PackIndex,
    local: HashMap<ChunkId, BlobRef>,
}

/// One copy in progress; see `Vault::begin_copy`.
pub struct CopyWriter<'a> {
    vault: &'a Vault,
    base: Option<&'a Manifest>,
    backup_id: u64,
    image_size: u64,
    chunk_count: u64,
    packs: Vec<PackId>,
    slots: HashMap<PackId, u32>,
    entries: Vec<Entry>,
    pending: Option<PackBuilder>,
    inflight: VecDeque<InFlight>,
    inflight_ids: HashSet<ChunkId>,
    stats: CopyStats,
    broken: bool,
    /// Packs garbage collection had marked when this copy began: never deduped against
    /// (see `gc`), so a pack deleted by phase 2 is never named by this copy.
    avoid: HashSet<PackId>,
}

impl Vault {
    /// Starts a copy of backup `backup_id`, an image of `image_size` bytes. `base` is an
    /// earlier manifest of the same volume in this vault whose chunks `same_as_base` may
    /// take. Loads the vault's index first, so chunks uploaded by any earlier copy (one that
    /// failed included) are reused.
    pub fn begin_copy<'a>(
        &'a self,
        backup_id: u64,
        image_size: u64,
        base: Option<&'a Manifest>,
    ) -> Result<CopyWriter<'a>> {
        if let Some(b) = base
            && (b.vault_id != self.inner.vault_id || b.chunk_size != self.inner.chunk_size)
        {
            return Err(Error::InvalidCopy(format!(
                "base backup {} is not a manifest of this vault",
                b.backup_id
            )));
        }
        let name = format::manifest_name(backup_id);
        match self
            .rt
            .block_on(self.inner.store.head(&Path::from(name.as_str())))
        {
            Ok(_) => return Err(Error::ManifestExists(backup_id)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store(&name, Some(backup_id), e)),
        }
        let avoid: HashSet<PackId> = self.read_gc_state()?.marks.iter().map(|m| m.pack).collect();
        if let Some(b) = base
            && b.packs.iter().any(|p| avoid.contains(p))
        {
            return Err(Error::InvalidCopy(format!(
                "base backup {} is no longer in the vault (garbage collection is removing its packs): copy without a base",
                b.backup_id
            )));
        }
        // Cached indexes may be of packs a gc has deleted since: read them afresh.
        self.cache.lock().expect("cache lock").clear();
        self.load_index()?;
        let chunk_count = image_size.div_ceil(u64::from(self.inner.chunk_size));
        Ok(CopyWriter {
            vault: self,
            base,
            backup_id,
            image_size,
            chunk_count,
            packs: Vec::new(),
            slots: HashMap::new(),
            entries: Vec::with_capacity(chunk_count.min(1 << 24) as usize),
            pending: None,
            inflight: VecDeque::new(),
            inflight_ids: HashSet::new(),
            stats: CopyStats::default(),
            broken: false,
            avoid,
        })
    }
}

impl CopyWriter<'_> {
    pub fn stats(&self) -> &CopyStats {
        &self.stats
    }

    /// The index of the chunk the writer expects next.
    pub fn next_index(&self) -> u64 {
        self.entries.len() as u64
    }

    fn expect(&self, index: u64) -> Result<u64> {
        if self.broken {
            return Err(Error::InvalidCopy(
                "an earlier error ended this copy".into(),
            ));
        }
        if index != self.next_index() || index >= self.chunk_count {
            return Err(Error::InvalidCopy(format!(
                "chunk {index} given, chunk {} of {} expected",
                self.next_index(),
                self.chunk_count
            )));
        }
        Ok(chunk_len(
            self.image_size,
            self.vault.inner.chunk_size,
            index,
        ))
    }

    fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Chunk `index` is a hole (reads as zeros, stored as nothing).
    pub fn hole(&mut self, index: u64) -> Result<()> {
        self.expect(index)?;
        self.entries.push(Entry::HOLE);
        self.stats.chunks_hole += 1;
        Ok(())
    }

    /// Chunk `index` is unchanged since the base backup: its entry is taken from the base
    /// manifest and nothing is read or written.
    pub fn same_as_base(&mut self, index: u64) -> Result<()> {
        let len = self.expect(index)?;
        let Some(base) = self.base else {
            return Err(Error::InvalidCopy(
                "same_as_base without a base manifest".into(),
            ));
        };
        if index >= base.chunk_count() || base.chunk_len(index) != len {
            return Err(Error::InvalidCopy(format!(
                "chunk {index} is not a whole chunk of the base"
            )));
        }
        let e = base.entries[index as usize];
        if e.is_hole() {
            self.entries.push(Entry::HOLE);
            self.stats.chunks_hole += 1;
        } else {
            let slot = self.slot(base.packs[e.pack as usize]);
            self.entries.push(Entry { pack: slot, ..e });
            self.stats.chunks_reused += 1;
        }
        Ok(())
    }

    /// Chunk `index` holds `data` (its full length; the last chunk may be short). All-zero
    /// data is kept as a hole.
    pub fn data(&mut self, index: u64, data: &[u8]) -> Result<()> {
        let len = self.expect(index)?;
        if data.len() as u64 != len {
            return Err(Error::InvalidCopy(format!(
                "chunk {index} has {} bytes, not {len}",
                data.len()
            )));
        }
        self.stats.bytes_given += len;
        if is_zero(data) {
            self.entries.push(Entry::HOLE);
            self.stats.chunks_hole += 1;
            return Ok(());
        }
        let id = self.vault.chunk_id(data);
        let found = self.find(index, &id);
        match self.guard(found)? {
            Some((pack, blob)) => {
                let slot = self.slot(pack);
                self.entries.push(Entry {
                    id,
                    pack: slot,
                    offset: blob.offset,
                    stored_len: blob.stored_len,
                });
                self.stats.chunks_reused += 1;
                Ok(())
            }
            None => {
                let stored = self.store_new(&id, data);
                self.guard(stored)
            }
        }
    }

    /// Where a chunk with this id already lies: this copy's open pack, the base's entry at
    /// the same index, or anywhere in the vault.
    fn find(&mut self, index: u64, id: &ChunkId) -> Result<Option<(PackId, BlobRef)>> {
        if self.inflight_ids.contains(id) {
            // A repeat of a chunk still being sealed: place it first, then find it.
            self.drain()?;
        }
        if let Some(p) = &self.pending
            && let Some(blob) = p.local.get(id)
        {
            return Ok(Some((p.id, *blob)));
        }
        if let Some(base) = self.base
            && let Some(e) = base.entries.get(index as usize)
            && !e.is_hole()
            && &e.id == id
        {
            let blob = BlobRef {
                offset: e.offset,
                stored_len: e.stored_len,
            };
            return Ok(Some((base.packs[e.pack as usize], blob)));
        }
        self.vault.lookup(id, &self.avoid)
    }

    fn slot(&mut self, pack: PackId) -> u32 {
        if let Some(&s) = self.slots.get(&pack) {
            return s;
        }
        let s = u32::try_from(self.packs.len()).expect("fewer than 2^32 packs in a manifest");
        self.packs.push(pack);
        self.slots.insert(pack, s);
        s
    }

    /// Queues a new chunk: compression and sealing run on the vault's worker threads while
    /// the caller hashes the next chunks; blobs join the pack in chunk order.
    fn store_new(&mut self, id: &ChunkId, data: &[u8]) -> Result<()> {
        let inner = self.vault.inner.clone();
        let (chunk, owned) = (*id, data.to_vec());
        let handle = self
            .vault
            .rt
            .spawn(async move { seal_chunk(&inner, &chunk, &owned) });
        self.entries.push(Entry::HOLE); // set by `append_next` once the blob has its place
        self.inflight.push_back(InFlight {
            entry: self.entries.len() - 1,
            id: *id,
            raw_len: data.len() as u32,
            handle,
        });
        self.inflight_ids.insert(*id);
        self.stats.chunks_new += 1;
        self.stats.bytes_new += data.len() as u64;
        if self.inflight.len() > MAX_IN_FLIGHT {
            self.append_next()?;
        }
        Ok(())
    }

    /// Appends every queued blob to the pack.
    fn drain(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.append_next()?;
        }
        Ok(())
    }

    /// Appends the oldest queued blob to the open pack (closing a pack it would overflow)
    /// and sets its manifest entry.
    fn append_next(&mut self) -> Result<()> {
        let Some(job) = self.inflight.pop_front() else {
            return Ok(());
        };
        let vault = self.vault;
        let blob = vault
            .rt
            .block_on(job.handle)
            .map_err(|e| Error::InvalidCopy(format!("compression task failed: {e}")))??;
        // A pack never passes its target: a full pack is exactly its parts (a 64 MiB pack
        // of 16 MiB parts is 4 part uploads, not 5 for a last blob that spilled over).
        if let Some(p) = &self.pending
            && !p.index.entries.is_empty()
            && p.len + blob.len() as u64 > vault.tuning.pack_target_bytes
        {
            self.close_pack()?;
        }
        if self.pending.is_none() {
            self.open_pack()?;
        }
        let p = self.pending.as_mut().expect("opened above");
        {
            let _ctx = vault.rt.enter();
            // One part in flight while the next fills: bounded memory, overlapped upload.
            vault
                .rt
                .block_on(p.upload.wait_for_capacity(1))
                .map_err(|e| Error::store(&format::pack_name(&p.id), None, e))?;
            p.upload.write(&blob);
        }
        let blob_ref = BlobRef {
            offset: u32::try_from(p.len).expect("packs stay far below 4 GiB"),
            stored_len: u32::try_from(blob.len()).expect("a blob is at most a chunk plus overhead"),
        };
        p.len += blob.len() as u64;
        p.index.entries.push((job.id, blob_ref, job.raw_len));
        p.local.insert(job.id, blob_ref);
        self.inflight_ids.remove(&job.id);
        self.entries[job.entry] = Entry {
            id: job.id,
            pack: p.slot,
            offset: blob_ref.offset,
            stored_len: blob_ref.stored_len,
        };
        Ok(())
    }

    fn open_pack(&mut self) -> Result<()> {
        let id: PackId = random_array();
        let name = format::pack_name(&id);
        let upload = self
            .vault
            .rt
            .block_on(
                self.vault
                    .inner
                    .store
                    .put_multipart(&Path::from(name.as_str())),
            )
            .map_err(|e| Error::store(&name, None, e))?;
        self.stats.put_requests += 1;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, self.vault.tuning.part_bytes);
        let mut head = format::header(MAGIC_PACK, self.vault.inner.sealer.encrypted()).to_vec();
        head.extend_from_slice(&id);
        upload.write(&head);
        let slot = self.slot(id);
        let index = PackIndex {
            pack_id: id,
            pack_len: 0,
            entries: Vec::new(),
        };
        self.pending = Some(PackBuilder {
            id,
            slot,
            upload,
            len: head.len() as u64,
            index,
            local: HashMap::new(),
        });
        Ok(())
    }

    /// Completes the open pack, then writes its index object.
    fn close_pack(&mut self) -> Result<()> {
        let Some(mut p) = self.pending.take() else {
            return Ok(());
        };
        let vault = self.vault;
        let name = format::pack_name(&p.id);
        let finished = {
            let _ctx = vault.rt.enter();
            vault.rt.block_on(p.upload.finish())
        };
        if let Err(e) = finished {
            // A completion whose answer was lost (a reset or cut response) may have landed:
            // its retry then fails. The pack is ours (a random name) if it has our length.
            let head = vault
                .rt
                .block_on(vault.inner.store.head(&Path::from(name.as_str())));
            if !head.is_ok_and(|meta| meta.size == p.len) {
                return Err(Error::store(&name, None, e));
            }
        }
        let parts = p.len.div_ceil(vault.tuning.part_bytes as u64).max(1);
        self.stats.put_requests += parts + 1;
        self.stats.bytes_stored += p.len;
        p.index.pack_len = p.len;
        let index_name = format::index_name(&p.id);
        let bytes = format::seal_object(
            MAGIC_INDEX,
            &vault.inner.sealer,
            &index_name,
            &p.index.encode(),
        );
        self.stats.bytes_stored += bytes.len() as u64;
        match put_once(vault, &index_name, bytes) {
            // Only this copy writes its pack's index: one already there is our own first
            // attempt, retried after its answer was lost.
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::store(&index_name, None, e)),
        }
        self.stats.put_requests += 1;
        vault.add_written_pack(&p.index);
        Ok(())
    }

    /// Completes the copy: closes the last pack and writes the manifest, which makes the
    /// copy visible. `meta` is the backup's catalog record, stored as is.
    pub fn finish(mut self, meta: Vec<u8>) -> Result<CopyStats> {
        if self.broken {
            return Err(Error::InvalidCopy(
                "an earlier error ended this copy".into(),
            ));
        }
        if self.next_index() != self.chunk_count {
            return Err(Error::InvalidCopy(format!(
                "finish after {} of {} chunks",
                self.next_index(),
                self.chunk_count
            )));
        }
        let placed = self.drain();
        self.guard(placed)?;
        let closed = self.close_pack();
        self.guard(closed)?;
        let vault = self.vault;
        let mut manifest = Manifest {
            backup_id: self.backup_id,
            vault_id: vault.inner.vault_id,
            image_size: self.image_size,
            chunk_size: vault.inner.chunk_size,
            created_unix_s: now_unix_s(),
            root: [0; 32],
            meta,
            packs: std::mem::take(&mut self.packs),
            entries: std::mem::take(&mut self.entries),
        };
        manifest.root = manifest.compute_root(&vault.inner.chunk_key);
        let name = format::manifest_name(self.backup_id);
        let bytes = format::seal_object(
            MAGIC_MANIFEST,
            &vault.inner.sealer,
            &name,
            &manifest.encode(),
        );
        let len = bytes.len() as u64;
        if let Err(e) = put_once(vault, &name, bytes) {
            // The answer may have been lost after the manifest landed (a reset, or a retry
            // that met the first attempt): the same chunk list and record there is success.
            let landed = vault
                .read_manifest(self.backup_id)
                .is_ok_and(|m| m.root == manifest.root && m.meta == manifest.meta);
            if !landed {
                return Err(match e {
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. } => {
                        Error::ManifestExists(self.backup_id)
                    }
                    e => Error::store(&name, Some(self.backup_id), e),
                });
            }
        }
        self.stats.put_requests += 1;
        self.stats.bytes_stored += len;
        self.stats.manifest = name;
        Ok(std::mem::take(&mut self.stats))
    }
}

impl Drop for CopyWriter<'_> {
    /// A copy dropped with a pack open aborts its multipart upload (best effort: a store that
    /// cannot be reached keeps the parts until its own expiry, and they are never visible).
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let _ctx = self.vault.rt.enter();
            let _ = self.vault.rt.block_on(p.upload.abort());
        }
    }
}

/// A put that refuses to replace an object (objects are written once).
pub(crate) fn put_once(vault: &Vault, name: &str, bytes: Vec<u8>) -> object_store::Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    vault
        .rt
        .block_on(
            vault
                .inner
                .store
                .put_opts(&Path::from(name), PutPayload::from(bytes), opts),
        )
        .map(|_| ())
}

thread_local! {
    /// One zstd context per worker thread (making one per chunk would dominate the cost).
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// A chunk's blob: codec byte and data (compressed when that shrinks it), sealed.
fn seal_chunk(inner: &crate::vault::Inner, id: &ChunkId, data: &[u8]) -> Result<Vec<u8>> {
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("made above").compress(data)
    });
    let compressed = compressed.map_err(|e| Error::InvalidCopy(format!("zstd: {e}")))?;
    let mut plain = Vec::with_capacity(1 + data.len());
    if compressed.len() < data.len() {
        plain.push(CODEC_ZSTD);
        plain.extend_from_slice(&compressed);
    } else {
        plain.push(CODEC_STORED);
        plain.extend_from_slice(data);
    }
    if inner.sealer.encrypted() {
        Ok(inner.sealer.seal(id, &plain))
    } else {
        Ok(plain)
    }
}

fn is_zero(data: &[u8]) -> bool {
    let words = data.chunks_exact(16);
    let tail = words.remainder();
    words
        .map(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")))
        .all(|w| w == 0)
        && tail.iter().all(|&b| b == 0)
}
