//! The live map that garbage collection and verification's structural check build: every
//! pack's blobs from its index object (offset and a 4-byte id fingerprint each) and one
//! live bit per blob, set by streaming manifests one at a time.
//!
//! Memory: 8 bytes and one bit per chunk in the vault (128 MiB per TiB of unique 64 KiB
//! chunks) plus about 100 bytes a pack, plus one manifest at a time (44 bytes per chunk of
//! that backup's image). It never holds all manifests, nor a chunk id per chunk. Work is
//! one GET per index object and per manifest.
//!
//! Blobs of a pack lie back to back from the pack header on (the writer appends them), so a
//! blob's stored length is the distance to the next blob's offset (or to the pack's end).

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use crate::crypto::ChunkId;
use crate::error::{Error, Result};
use crate::format::{self, INDEX_DIR, PackId, PackIndex};
use crate::manifest::Manifest;
use crate::vault::{Vault, fetch_index};

/// The blobs of one pack, in pack order.
pub(crate) struct PackBlobs {
    pub pack_len: u64,
    offsets: Vec<u32>,
    fingerprints: Vec<u32>,
    live: Vec<u64>,
    /// Some manifest names this pack in its pack table.
    pub referenced: bool,
}

impl PackBlobs {
    fn stored_len(&self, i: usize) -> u64 {
        let end = self
            .offsets
            .get(i + 1)
            .map_or(self.pack_len, |&o| u64::from(o));
        end.saturating_sub(u64::from(self.offsets[i]))
    }

    /// Bytes of blobs some manifest uses.
    pub(crate) fn live_bytes(&self) -> u64 {
        (0..self.offsets.len())
            .filter(|&i| self.live[i / 64] >> (i % 64) & 1 == 1)
            .map(|i| self.stored_len(i))
            .sum()
    }
}

/// A manifest refers to something the vault's indexes do not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// A pack with no (readable) index object.
    NoIndex { backup: u64, pack: PackId },
    /// A chunk whose pack's index has no blob at that offset, or another id or length there.
    NotInIndex {
        backup: u64,
        pack: PackId,
        offset: u32,
        chunk: ChunkId,
    },
}

fn fingerprint(id: &ChunkId) -> u32 {
    u32::from_le_bytes([id[0], id[1], id[2], id[3]])
}

#[derive(Default)]
pub(crate) struct LiveMap {
    pub packs: HashMap<PackId, PackBlobs>,
    /// Index objects that could not be read (damaged), with why.
    pub bad_indexes: Vec<(PackId, String)>,
    /// Packs that manifests name but that have no index here: never collected.
    pub unindexed_refs: HashSet<PackId>,
}

impl LiveMap {
    pub(crate) fn add_index(&mut self, index: &PackIndex) {
        let n = index.entries.len();
        let blobs = PackBlobs {
            pack_len: index.pack_len,
            offsets: index.entries.iter().map(|(_, b, _)| b.offset).collect(),
            fingerprints: index
                .entries
                .iter()
                .map(|(id, _, _)| fingerprint(id))
                .collect(),
            live: vec![0; n.div_ceil(64)],
            referenced: false,
        };
        self.packs.insert(index.pack_id, blobs);
    }

    pub(crate) fn referenced(&self, pack: &PackId) -> bool {
        self.packs.get(pack).is_some_and(|p| p.referenced) || self.unindexed_refs.contains(pack)
    }

    /// Sets the live bits of a manifest's chunks; what it refers to and the indexes lack
    /// goes to `flaws` (a pack without an index is reported once per manifest).
    pub(crate) fn add_manifest(&mut self, m: &Manifest, flaws: &mut Vec<Flaw>) {
        let mut no_index = vec![false; m.packs.len()];
        for (slot, pack) in m.packs.iter().enumerate() {
            match self.packs.get_mut(pack) {
                Some(p) => p.referenced = true,
                None => {
                    no_index[slot] = true;
                    self.unindexed_refs.insert(*pack);
                }
            }
        }
        for e in m.entries.iter().filter(|e| !e.is_hole()) {
            let pack = m.packs[e.pack as usize];
            let Some(p) = self.packs.get_mut(&pack) else {
                if std::mem::take(&mut no_index[e.pack as usize]) {
                    flaws.push(Flaw::NoIndex {
                        backup: m.backup_id,
                        pack,
                    });
                }
                continue;
            };
            let found = p.offsets.binary_search(&e.offset).ok().filter(|&i| {
                p.fingerprints[i] == fingerprint(&e.id)
                    && p.stored_len(i) == u64::from(e.stored_len)
            });
            match found {
                Some(i) => p.live[i / 64] |= 1 << (i % 64),
                None => flaws.push(Flaw::NotInIndex {
                    backup: m.backup_id,
                    pack,
                    offset: e.offset,
                    chunk: e.id,
                }),
            }
        }
    }

    /// Heap bytes held, from capacities.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let per_pack = 16 + std::mem::size_of::<PackBlobs>() + 8;
        let blobs: usize = self
            .packs
            .values()
            .map(|p| {
                p.offsets.capacity() * 4 + p.fingerprints.capacity() * 4 + p.live.capacity() * 8
            })
            .sum();
        let refs = self.unindexed_refs.capacity() * 24;
        (self.packs.capacity() * per_pack + blobs + refs) as u64
    }
}

impl Vault {
    /// Reads every pack index object into a live map (all bits clear), a few at a time;
    /// each index is folded in as it arrives, so only the map itself stays in memory.
    pub(crate) fn load_live_map(&self) -> Result<LiveMap> {
        let packs: Vec<PackId> = self
            .list_names(INDEX_DIR)?
            .iter()
            .filter_map(|n| n.strip_prefix("index/"))
            .filter_map(format::parse_hex::<16>)
            .collect();
        let inner = self.inner.clone();
        self.rt.block_on(async {
            let mut map = LiveMap::default();
            let mut fetched = futures::stream::iter(packs)
                .map(|pack| {
                    let inner = inner.clone();
                    async move { (pack, fetch_index(inner, pack).await) }
                })
                .buffer_unordered(self.tuning.fetches_in_flight.max(1));
            while let Some((pack, r)) = fetched.next().await {
                match r {
                    Ok(index) => map.add_index(&index),
                    // Deleted since the listing (a concurrent gc): nothing to hold.
                    Err(Error::MissingObject { .. }) => {}
                    Err(Error::Corrupt { detail, .. }) => map.bad_indexes.push((pack, detail)),
                    Err(e) => return Err(e),
                }
            }
            Ok(map)
        })
    }

    /// Reads every manifest, one at a time, and hands each (or why it could not be read)
    /// to `each`. A manifest deleted while the walk runs is skipped. Returns the ids read.
    pub(crate) fn walk_manifests(
        &self,
        mut each: impl FnMut(u64, Result<Manifest>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let ids = self.list_manifests()?;
        let mut read = Vec::with_capacity(ids.len());
        for id in ids {
            match self.read_manifest(id) {
                Err(Error::NoManifest(_)) => continue,
                Err(e @ Error::Store { .. }) => return Err(e),
                r => each(id, r)?,
            }
            read.push(id);
        }
        Ok(read)
    }
}
