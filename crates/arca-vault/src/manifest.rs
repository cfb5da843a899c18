//! A copied backup's manifest: its ordered chunk list with holes kept as holes, where each
//! chunk lies (pack, offset, length), the root digest and the catalog's opaque record.
//! The byte layout is in `format`'s module documentation.

use crate::crypto::ChunkId;
use crate::error::{Error, Result};
use crate::format::{PackId, Reader, hex};

/// One chunk of a manifest. `stored_len == 0` marks a hole (a blob always has its codec
/// byte, so a real blob is never empty). 44 bytes per chunk in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: ChunkId,
    pub pack: u32,
    pub offset: u32,
    pub stored_len: u32,
}

impl Entry {
    pub(crate) const HOLE: Entry = Entry {
        id: [0; 32],
        pack: 0,
        offset: 0,
        stored_len: 0,
    };

    pub(crate) fn is_hole(&self) -> bool {
        self.stored_len == 0
    }
}

/// A backup as it lies in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub backup_id: u64,
    pub vault_id: [u8; 16],
    pub image_size: u64,
    pub chunk_size: u32,
    pub created_unix_s: u64,
    /// Keyed BLAKE3 over the chunk list (see `format`): equal roots, equal images.
    pub root: [u8; 32],
    /// The backup's record as the catalog encoded it; the vault never interprets it.
    pub meta: Vec<u8>,
    pub(crate) packs: Vec<PackId>,
    pub(crate) entries: Vec<Entry>,
}

impl Manifest {
    pub fn chunk_count(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn hole_chunks(&self) -> u64 {
        self.entries.iter().filter(|e| e.is_hole()).count() as u64
    }

    /// Bytes of the image that are data (not holes).
    pub fn data_bytes(&self) -> u64 {
        (0..self.entries.len() as u64)
            .filter(|&i| !self.entries[i as usize].is_hole())
            .map(|i| self.chunk_len(i))
            .sum()
    }

    /// The names of the packs this manifest refers to (for verification and GC).
    pub fn pack_names(&self) -> Vec<String> {
        self.packs.iter().map(crate::format::pack_name).collect()
    }

    pub fn root_hex(&self) -> String {
        hex(&self.root)
    }

    /// The id of chunk `index`; `None` for a hole (or an index past the end).
    pub fn chunk_id(&self, index: u64) -> Option<ChunkId> {
        let e = self.entries.get(usize::try_from(index).ok()?)?;
        (!e.is_hole()).then_some(e.id)
    }

    /// This manifest with every chunk `keep` refuses turned into a hole: a reader of it
    /// fetches only the kept chunks (an in-place restore needs only what differs). Not for
    /// writing: its root no longer matches its chunks.
    pub fn only(&self, keep: impl Fn(u64) -> bool) -> Manifest {
        let mut m = self.clone();
        for (i, e) in m.entries.iter_mut().enumerate() {
            if !keep(i as u64) {
                *e = Entry::HOLE;
            }
        }
        m
    }

    /// Bytes in chunk `index` (the last chunk may be short).
    pub fn chunk_len(&self, index: u64) -> u64 {
        chunk_len(self.image_size, self.chunk_size, index)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            100 + self.meta.len() + 16 * self.packs.len() + 49 * self.entries.len(),
        );
        out.extend_from_slice(&self.backup_id.to_le_bytes());
        out.extend_from_slice(&self.vault_id);
        out.extend_from_slice(&self.image_size.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.created_unix_s.to_le_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&len32(self.meta.len()).to_le_bytes());
        out.extend_from_slice(&self.meta);
        out.extend_from_slice(&len32(self.packs.len()).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(p);
        }
        let runs_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut runs = 0u32;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.is_hole() {
                let n = self.entries[i..].iter().take_while(|e| e.is_hole()).count();
                out.push(0);
                out.extend_from_slice(&len32(n).to_le_bytes());
                i += n;
            } else {
                out.push(1);
                out.extend_from_slice(&e.id);
                out.extend_from_slice(&e.pack.to_le_bytes());
                out.extend_from_slice(&e.offset.to_le_bytes());
                out.extend_from_slice(&e.stored_len.to_le_bytes());
                i += 1;
            }
            runs += 1;
        }
        out[runs_at..runs_at + 4].copy_from_slice(&runs.to_le_bytes());
        out
    }

    /// Parses and checks a manifest payload: every chunk covered once, every pack
    /// reference inside the table, the root matching the list.
    pub(crate) fn decode(name: &str, payload: &[u8], chunk_key: &[u8; 32]) -> Result<Manifest> {
        let bad = |what: &str| Error::corrupt(name, None, format!("malformed manifest: {what}"));
        let mut r = Reader::new(payload);
        let t = || bad("truncated");
        let backup_id = r.u64().ok_or_else(t)?;
        let vault_id = r.array().ok_or_else(t)?;
        let image_size = r.u64().ok_or_else(t)?;
        let chunk_size = r.u32().ok_or_else(t)?;
        let created_unix_s = r.u64().ok_or_else(t)?;
        let root = r.array().ok_or_else(t)?;
        let meta_len = r.u32().ok_or_else(t)? as usize;
        let meta = r.bytes(meta_len).ok_or_else(t)?.to_vec();
        let pack_count = r.u32().ok_or_else(t)? as usize;
        let packs_bytes = r
            .bytes(pack_count.checked_mul(16).ok_or_else(t)?)
            .ok_or_else(t)?;
        let packs: Vec<PackId> = packs_bytes
            .chunks(16)
            .map(|c| c.try_into().expect("16"))
            .collect();
        if chunk_size == 0 {
            return Err(bad("chunk size 0"));
        }
        let chunks = image_size.div_ceil(u64::from(chunk_size));
        // Each data run takes 49 bytes, so a truthful list is bounded by the payload: never
        // reserve more than the bytes could describe.
        let mut entries = Vec::with_capacity((chunks as usize).min(r.remaining() / 5 + 1));
        let run_count = r.u32().ok_or_else(t)?;
        for _ in 0..run_count {
            match r.u8().ok_or_else(t)? {
                0 => {
                    let n = r.u32().ok_or_else(t)? as u64;
                    if n == 0 || entries.len() as u64 + n > chunks {
                        return Err(bad("hole run out of range"));
                    }
                    entries.extend(std::iter::repeat_n(Entry::HOLE, n as usize));
                }
                1 => {
                    let id = r.array().ok_or_else(t)?;
                    let pack = r.u32().ok_or_else(t)?;
                    let offset = r.u32().ok_or_else(t)?;
                    let stored_len = r.u32().ok_or_else(t)?;
                    if pack as usize >= packs.len() || stored_len == 0 {
                        return Err(bad("chunk reference out of range"));
                    }
                    if entries.len() as u64 >= chunks {
                        return Err(bad("more chunks than the image holds"));
                    }
                    entries.push(Entry {
                        id,
                        pack,
                        offset,
                        stored_len,
                    });
                }
                _ => return Err(bad("unknown run kind")),
            }
        }
        if entries.len() as u64 != chunks || r.remaining() != 0 {
            return Err(bad("chunk list does not cover the image"));
        }
        let m = Manifest {
            backup_id,
            vault_id,
            image_size,
            chunk_size,
            created_unix_s,
            root,
            meta,
            packs,
            entries,
        };
        if m.compute_root(chunk_key) != m.root {
            return Err(bad("root digest does not match the chunk list"));
        }
        Ok(m)
    }

    pub(crate) fn compute_root(&self, chunk_key: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(chunk_key);
        h.update(&self.image_size.to_le_bytes())
            .update(&self.chunk_size.to_le_bytes());
        for e in &self.entries {
            if e.is_hole() {
                h.update(&[0]);
            } else {
                h.update(&[1]).update(&e.id);
            }
        }
        *h.finalize().as_bytes()
    }
}

pub(crate) fn chunk_len(image_size: u64, chunk_size: u32, index: u64) -> u64 {
    let start = index * u64::from(chunk_size);
    image_size.saturating_sub(start).min(u64::from(chunk_size))
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("manifest fields are < 2^32 items")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest {
            backup_id: 9,
            vault_id: [3; 16],
            image_size: 5 * 4096 + 100,
            chunk_size: 4096,
            created_unix_s: 1,
            root: [0; 32],
            meta: b"record".to_vec(),
            packs: vec![[1; 16], [2; 16]],
            entries: vec![
                Entry::HOLE,
                Entry::HOLE,
                Entry {
                    id: [5; 32],
                    pack: 1,
                    offset: 27,
                    stored_len: 10,
                },
                Entry::HOLE,
                Entry {
                    id: [6; 32],
                    pack: 0,
                    offset: 27,
                    stored_len: 9,
                },
                Entry {
                    id: [7; 32],
                    pack: 0,
                    offset: 36,
                    stored_len: 9,
                },
            ],
        };
        m.root = m.compute_root(&[9; 32]);
        m
    }

    #[test]
    fn manifests_round_trip_with_hole_runs() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode("m", &bytes, &[9; 32]).unwrap(), m);
        assert_eq!(m.chunk_len(5), 100);
        assert_eq!(m.data_bytes(), 4096 * 2 + 100);
    }

    #[test]
    fn manifest_decode_rejects_every_truncation_and_a_wrong_root() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Manifest::decode("m", &bytes[..n], &[9; 32]).is_err(), "{n}");
        }
        assert!(Manifest::decode("m", &bytes, &[8; 32]).is_err());
    }
}
