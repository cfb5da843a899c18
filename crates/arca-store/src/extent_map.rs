//! In-memory extent maps: logical extent index -> physical extent and birth generation.
//!
//! A map is a B-tree of chunks of `CHUNK` 12-byte entries, a chunk allocated when first used.
//! A fully mapped range costs 12 bytes per extent plus a few bytes per chunk; memory follows
//! what is mapped, never the volume's size (a write at the end of a 1 PiB volume costs one
//! chunk).

/// Physical extent address: device index in bits 40..48, extent index on the device in 0..40.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Phys(pub u64);

impl Phys {
    pub fn new(device: u32, index: u64) -> Phys {
        debug_assert!(index < (1 << 40) && device < 256);
        Phys(((device as u64) << 40) | index)
    }
    pub fn device(self) -> u32 {
        (self.0 >> 40) as u32
    }
    pub fn index(self) -> u64 {
        self.0 & ((1 << 40) - 1)
    }
}

/// What a map says about one logical extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Data lives in this physical extent.
    Extent(Phys),
    /// Reads as zeros, whatever a parent snapshot holds (a trimmed extent of a clone).
    Zero,
}

/// One map entry. `birth` is the family generation the entry was written in: a snapshot taken
/// at generation `g` sees exactly the entries born before `g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Entry {
    /// 0: no entry; `u64::MAX`: [`Target::Zero`]; otherwise `Phys + 1`.
    raw: u64,
    pub birth: u32,
}

const RAW_NONE: u64 = 0;
const RAW_ZERO: u64 = u64::MAX;

impl Entry {
    pub fn new(target: Target, birth: u32) -> Entry {
        let raw = match target {
            Target::Extent(p) => p.0 + 1,
            Target::Zero => RAW_ZERO,
        };
        Entry { raw, birth }
    }

    pub fn target(self) -> Target {
        match self.raw {
            RAW_ZERO => Target::Zero,
            raw => {
                debug_assert_ne!(raw, RAW_NONE);
                Target::Extent(Phys(raw - 1))
            }
        }
    }

    pub fn phys(self) -> Option<Phys> {
        match self.target() {
            Target::Extent(p) => Some(p),
            Target::Zero => None,
        }
    }

    /// The 12-byte persisted form (raw, birth).
    pub fn to_parts(self) -> (u64, u32) {
        (self.raw, self.birth)
    }

    pub fn from_parts(raw: u64, birth: u32) -> Option<Entry> {
        (raw != RAW_NONE).then_some(Entry { raw, birth })
    }
}

use std::collections::BTreeMap;

const CHUNK_SHIFT: u32 = 6;
const CHUNK: usize = 1 << CHUNK_SHIFT;
const EMPTY: Entry = Entry {
    raw: RAW_NONE,
    birth: 0,
};

type Chunk = Box<[Entry; CHUNK]>;

#[derive(Debug, Default)]
pub struct ExtentMap {
    chunks: BTreeMap<u64, Chunk>,
    len: u64,
}

impl ExtentMap {
    pub fn new() -> ExtentMap {
        ExtentMap::default()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn get(&self, logical: u64) -> Option<Entry> {
        let chunk = self.chunks.get(&(logical >> CHUNK_SHIFT))?;
        let e = chunk[logical as usize & (CHUNK - 1)];
        (e.raw != RAW_NONE).then_some(e)
    }

    /// Sets an entry, returning the one it replaces.
    pub fn insert(&mut self, logical: u64, entry: Entry) -> Option<Entry> {
        assert_ne!({ entry.raw }, RAW_NONE);
        let chunk = self
            .chunks
            .entry(logical >> CHUNK_SHIFT)
            .or_insert_with(|| Box::new([EMPTY; CHUNK]));
        let slot = &mut chunk[logical as usize & (CHUNK - 1)];
        let old = *slot;
        *slot = entry;
        if old.raw == RAW_NONE {
            self.len += 1;
            None
        } else {
            Some(old)
        }
    }

    pub fn remove(&mut self, logical: u64) -> Option<Entry> {
        let c = logical >> CHUNK_SHIFT;
        let chunk = self.chunks.get_mut(&c)?;
        let slot = &mut chunk[logical as usize & (CHUNK - 1)];
        let old = *slot;
        if old.raw == RAW_NONE {
            return None;
        }
        *slot = EMPTY;
        self.len -= 1;
        if chunk.iter().all(|e| e.raw == RAW_NONE) {
            self.chunks.remove(&c);
        }
        Some(old)
    }

    /// Entries in logical order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Entry)> + '_ {
        self.chunks.iter().flat_map(|(&c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, e)| {
                (e.raw != RAW_NONE).then_some(((c << CHUNK_SHIFT) | i as u64, *e))
            })
        })
    }

    /// Heap bytes used, for the memory-per-extent figure: the chunks plus an estimate of the
    /// B-tree's nodes (key, pointer and about half a slot of slack per chunk).
    pub fn memory_bytes(&self) -> usize {
        let per_chunk = size_of::<[Entry; CHUNK]>() + 2 * (size_of::<u64>() + size_of::<Chunk>());
        self.chunks.len() * per_chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_twelve_bytes() {
        assert_eq!(size_of::<Entry>(), 12);
    }

    #[test]
    fn insert_get_remove_iter() {
        let mut m = ExtentMap::new();
        let e = |i| Entry::new(Target::Extent(Phys::new(1, i)), 3);
        assert_eq!(m.insert(5, e(7)), None);
        assert_eq!(m.insert(700, Entry::new(Target::Zero, 1)), None);
        assert_eq!(m.insert(5, e(8)), Some(e(7)));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(5).unwrap().target(), Target::Extent(Phys::new(1, 8)));
        assert_eq!(m.get(700).unwrap().target(), Target::Zero);
        assert_eq!(m.get(6), None);
        assert_eq!(m.get(1 << 30), None);
        let all: Vec<u64> = m.iter().map(|(l, _)| l).collect();
        assert_eq!(all, vec![5, 700]);
        // Far offsets cost one chunk, not a vector up to them.
        m.insert(1 << 40, Entry::new(Target::Zero, 1));
        // Three chunks: (5), (700) and (1 << 40).
        assert!(m.memory_bytes() < 4 * 1024, "{}", m.memory_bytes());
        assert_eq!(m.remove(5), Some(e(8)));
        assert_eq!(m.remove(5), None);
        assert_eq!(m.len(), 2);
    }
}
