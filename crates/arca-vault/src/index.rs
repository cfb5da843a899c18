//! The in-memory side of the chunk index: which packs may hold a chunk, in about 4 bytes per
//! chunk, plus a small cache of whole pack indexes.
//!
//! The vault's index is its per-pack index objects (`index/<pack>`); holding every
//! `chunk id -> (pack, offset, length)` in memory (52+ bytes a chunk) would cost 850 MiB per
//! TiB of unique 64 KiB chunks, over ten times the bound of 64 MiB per TiB. So
//! memory holds only a filter that names candidate packs:
//!
//! - 65,536 buckets, picked by bytes 0..2 of the chunk id;
//! - in a bucket, one `u32` per chunk: bytes 2..4 of the id (a 16-bit fingerprint, so 32 id
//!   bits in all with the bucket) in the high half and the low 16 bits of the pack's ordinal
//!   (its position in `packs`) in the low half.
//!
//! A lookup scans its bucket (N / 65,536 entries: 256 at 1 TiB) for the fingerprint and
//! gets candidate packs: every pack whose ordinal has those low 16 bits (one pack while the
//! vault has under 65,536 packs, 4 TiB at 64 MiB a pack). It then reads the candidate's index
//! object (cached) and finds the exact entry. A chunk that is not in the vault costs no
//! request unless 32 id bits collide: 1 lookup in 256 at 1 TiB. Chunks of one volume were
//! written together, so consecutive hits fall in the same pack and the cache serves them.
//!
//! Cost: 4 bytes a chunk (64 MiB per TiB of unique 64 KiB chunks) plus Vec growth slack,
//! 1.5 MiB of bucket headers and ~60 bytes a pack; `ChunkMap::memory_bytes` measures it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::crypto::ChunkId;
use crate::format::{BlobRef, PackId, PackIndex};

const BUCKETS: usize = 1 << 16;

pub(crate) struct ChunkMap {
    buckets: Vec<Vec<u32>>,
    packs: Vec<PackId>,
    ordinals: HashMap<PackId, u32>,
    chunks: u64,
}

fn slot(id: &ChunkId) -> (usize, u32) {
    let bucket = usize::from(u16::from_le_bytes([id[0], id[1]]));
    let fingerprint = u32::from(u16::from_le_bytes([id[2], id[3]]));
    (bucket, fingerprint)
}

impl ChunkMap {
    pub(crate) fn new() -> ChunkMap {
        ChunkMap {
            buckets: vec![Vec::new(); BUCKETS],
            packs: Vec::new(),
            ordinals: HashMap::new(),
            chunks: 0,
        }
    }

    pub(crate) fn knows_pack(&self, pack: &PackId) -> bool {
        self.ordinals.contains_key(pack)
    }

    /// Adds a pack and all its chunks; a pack already known is left as it is.
    pub(crate) fn add_pack(&mut self, index: &PackIndex) -> u32 {
        if let Some(&ordinal) = self.ordinals.get(&index.pack_id) {
            return ordinal;
        }
        let ordinal = u32::try_from(self.packs.len()).expect("fewer than 2^32 packs");
        self.packs.push(index.pack_id);
        self.ordinals.insert(index.pack_id, ordinal);
        for (id, _, _) in &index.entries {
            let (bucket, fingerprint) = slot(id);
            let b = &mut self.buckets[bucket];
            if b.len() == b.capacity() {
                // Grow by an eighth, not double: at most 12.5 % slack, 4.5 bytes a chunk.
                b.reserve_exact(b.len() / 8 + 1);
            }
            b.push(fingerprint << 16 | (ordinal & 0xffff));
            self.chunks += 1;
        }
        ordinal
    }

    /// Packs that may hold `id` (ordinal and id), most recently added first.
    pub(crate) fn candidates(&self, id: &ChunkId) -> Vec<(u32, PackId)> {
        let (bucket, fingerprint) = slot(id);
        let mut out = Vec::new();
        for &e in self.buckets[bucket].iter().rev() {
            if e >> 16 != fingerprint {
                continue;
            }
            let mut ordinal = e & 0xffff;
            while (ordinal as usize) < self.packs.len() {
                if !out.iter().any(|&(o, _)| o == ordinal) {
                    out.push((ordinal, self.packs[ordinal as usize]));
                }
                ordinal += 1 << 16;
            }
        }
        out
    }

    /// Gives back the growth slack of every bucket (after a bulk load).
    pub(crate) fn shrink(&mut self) {
        for b in &mut self.buckets {
            b.shrink_to_fit();
        }
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.chunks
    }

    pub(crate) fn packs(&self) -> usize {
        self.packs.len()
    }

    /// Heap bytes held, counted from capacities (what the allocator gave, not what is used).
    pub(crate) fn memory_bytes(&self) -> u64 {
        let buckets: usize = self.buckets.iter().map(|b| b.capacity() * 4).sum();
        let headers = self.buckets.capacity() * std::mem::size_of::<Vec<u32>>();
        let packs = self.packs.capacity() * 16 + self.ordinals.capacity() * (16 + 4 + 8);
        (buckets + headers + packs) as u64
    }
}

/// A pack's index as a lookup table.
pub(crate) type PackTable = HashMap<ChunkId, BlobRef>;

/// The last few pack indexes read, by pack ordinal (least recently used out first).
pub(crate) struct PackCache {
    tables: HashMap<u32, Arc<PackTable>>,
    order: VecDeque<u32>,
    capacity: usize,
}

impl PackCache {
    pub(crate) fn new(capacity: usize) -> PackCache {
        PackCache {
            tables: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&mut self, ordinal: u32) -> Option<Arc<PackTable>> {
        let table = self.tables.get(&ordinal)?.clone();
        if let Some(pos) = self.order.iter().position(|&o| o == ordinal) {
            self.order.remove(pos);
        }
        self.order.push_back(ordinal);
        Some(table)
    }

    pub(crate) fn clear(&mut self) {
        self.tables.clear();
        self.order.clear();
    }

    pub(crate) fn put(&mut self, ordinal: u32, index: &PackIndex) -> Arc<PackTable> {
        let table: Arc<PackTable> = Arc::new(
            index
                .entries
                .iter()
                .map(|(id, blob, _)| (*id, *blob))
                .collect(),
        );
        if self.tables.insert(ordinal, table.clone()).is_none() {
            self.order.push_back(ordinal);
        }
        while self.order.len() > self.capacity {
            let old = self.order.pop_front().expect("non-empty");
            self.tables.remove(&old);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random_array;

    fn pack(n: usize) -> PackIndex {
        let entries = (0..n)
            .map(|i| {
                (
                    random_array(),
                    BlobRef {
                        offset: 27 + i as u32,
                        stored_len: 1,
                    },
                    1,
                )
            })
            .collect();
        PackIndex {
            pack_id: random_array(),
            pack_len: 1 << 20,
            entries,
        }
    }

    #[test]
    fn every_added_chunk_finds_its_pack() {
        let mut map = ChunkMap::new();
        let packs: Vec<PackIndex> = (0..20).map(|_| pack(500)).collect();
        for p in &packs {
            map.add_pack(p);
        }
        assert_eq!(map.add_pack(&packs[3]), 3, "a known pack keeps its ordinal");
        for p in &packs {
            for (id, _, _) in &p.entries {
                assert!(map.candidates(id).iter().any(|&(_, pid)| pid == p.pack_id));
            }
        }
        // Unknown ids almost never match 32 bits (10,000 chunks in 2^32).
        let misses = (0..10_000)
            .filter(|_| !map.candidates(&random_array()).is_empty())
            .count();
        assert!(misses < 5, "{misses}");
    }

    #[test]
    fn memory_is_about_four_bytes_a_chunk() {
        let mut map = ChunkMap::new();
        for _ in 0..64 {
            map.add_pack(&pack(4096));
        }
        map.shrink();
        let fixed = (BUCKETS * std::mem::size_of::<Vec<u32>>()) as u64;
        let per_pack = 16 + 28 * 2; // the pack table and its hash map, with the map's slack
        let per_chunk = (map.memory_bytes() - fixed - 64 * per_pack) as f64 / map.chunks() as f64;
        assert!(per_chunk <= 4.0, "{per_chunk}");
    }

    /// Packs added one by one, as copies add them, without a shrink: the growth slack stays
    /// within an eighth (measured here at 1M chunks: 16 per bucket on average).
    #[test]
    fn memory_stays_under_four_and_a_half_bytes_a_chunk_while_growing() {
        let mut map = ChunkMap::new();
        for _ in 0..256 {
            map.add_pack(&pack(4096));
        }
        let fixed = (BUCKETS * std::mem::size_of::<Vec<u32>>()) as u64;
        let packs = (map.packs.capacity() * 16 + map.ordinals.capacity() * 28) as u64;
        let per_chunk = (map.memory_bytes() - fixed - packs) as f64 / map.chunks() as f64;
        eprintln!("index bytes a chunk while growing: {per_chunk:.2}");
        assert!(per_chunk <= 4.5 + 0.5, "{per_chunk}");
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut cache = PackCache::new(2);
        let (a, b, c) = (pack(1), pack(1), pack(1));
        cache.put(0, &a);
        cache.put(1, &b);
        assert!(cache.get(0).is_some());
        cache.put(2, &c);
        assert!(cache.get(1).is_none());
        assert!(cache.get(0).is_some() && cache.get(2).is_some());
    }
}
