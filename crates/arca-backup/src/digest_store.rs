//! Where backups' extent hashes live: chunks shared between backups, counted by reference.
//!
//! Why: successive backups of a volume mostly hold the same data, and storing every backup's
//! hashes in full (24 bytes per allocated extent) filled the metadata region after a few dozen
//! backups of a large volume. Hashes are grouped by logical extent range into chunks of
//! [`CHUNK_EXTENTS`]; a chunk is stored once, keyed by a hash of its bytes, and shared by every
//! backup whose image has the same data in that range. A backup costs its index (20 bytes per
//! chunk) plus the chunks that changed since the backups that share the rest.
//!
//! ```text
//! backup_digest_index   key: backup id (8, BE) ++ part (4, BE)
//!                       value: version (1) = 2, then up to INDEX_PART_CHUNKS entries of
//!                              chunk number (4, BE) ++ chunk key (16)
//! backup_digest_chunks  key: chunk key (16) = BLAKE3 of the chunk's entries, first 16 bytes
//!                       value: reference count (4, LE), then entries of
//!                              extent within the chunk (2, BE) ++ hash (16)
//! ```
//!
//! Digests written before this layout sit in `backup_digests` (one row per 1,024 entries of
//! extent (8, BE) ++ hash (16)); they are read and removed as before.
//!
//! Invariant: a chunk's reference count is the number of index entries naming it; the catalog
//! check recounts. Changes are planned (reading committed counts) and applied in one
//! transaction under the catalog lock, so no two plans interleave.

use std::collections::BTreeMap;
use std::ops::Bound;

use arca_store::{Pool, Result, Txn};

use crate::catalog::DIGESTS;
use crate::digest::{CHUNK_ENTRIES, ExtentHash, HASH_LEN};
use crate::ids::BackupId;

pub const DIGEST_INDEX: &str = "backup_digest_index";
pub const DIGEST_CHUNKS: &str = "backup_digest_chunks";

/// Extents per chunk; an entry's place in its chunk fits in 2 bytes.
pub const CHUNK_EXTENTS: u64 = 1024;
/// Chunks per index row, bounding a row at 80 KiB.
const INDEX_PART_CHUNKS: usize = 4096;
const INDEX_VERSION: u8 = 2;
const INDEX_ENTRY_LEN: usize = 4 + KEY_LEN;
const KEY_LEN: usize = 16;
const CHUNK_ENTRY_LEN: usize = 2 + HASH_LEN;
const LEGACY_ENTRY_LEN: usize = 8 + HASH_LEN;

type ChunkKey = [u8; KEY_LEN];

/// Bytes a new digest of `extents` allocated extents takes at most (no chunk shared).
pub fn stored_bytes_max(extents: u64) -> u64 {
    let chunks = extents.div_ceil(CHUNK_EXTENTS).max(1);
    extents * CHUNK_ENTRY_LEN as u64 + chunks * (INDEX_ENTRY_LEN + KEY_LEN + 8) as u64
}

/// Bytes a digest takes for its index alone (every chunk shared).
pub fn index_bytes(extents_span: u64) -> u64 {
    extents_span.div_ceil(CHUNK_EXTENTS) * INDEX_ENTRY_LEN as u64 + 16
}

fn index_key(id: BackupId, part: u32) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend(part.to_be_bytes());
    k
}

/// Chunks of a digest: (chunk number, encoded entries), in order. `hashes` ascend by extent.
fn chunks_of(hashes: &[ExtentHash]) -> Vec<(u32, Vec<u8>)> {
    let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
    for &(l, h) in hashes {
        let n = u32::try_from(l / CHUNK_EXTENTS).expect("volumes are at most 2^50 bytes");
        if out.last().is_none_or(|(m, _)| *m != n) {
            out.push((n, Vec::new()));
        }
        let row = &mut out.last_mut().expect("pushed above").1;
        row.extend(((l % CHUNK_EXTENTS) as u16).to_be_bytes());
        row.extend(h);
    }
    out
}

fn chunk_key(entries: &[u8]) -> ChunkKey {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&blake3::hash(entries).as_bytes()[..KEY_LEN]);
    k
}

/// Reference-count changes, planned against the committed counts, applied in one transaction.
#[derive(Debug, Default)]
pub struct Plan {
    puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    deletes: Vec<(&'static str, Vec<u8>)>,
}

impl Plan {
    pub fn apply(self, t: &mut Txn<'_>) {
        for (table, key) in self.deletes {
            t.delete(table, key);
        }
        for (table, key, value) in self.puts {
            t.put(table, key, value);
        }
    }

    /// Sets the reference counts of `deltas` from the committed ones; `rows` gives a new
    /// chunk's entries.
    fn count(
        &mut self,
        pool: &Pool,
        deltas: BTreeMap<ChunkKey, i64>,
        rows: &BTreeMap<ChunkKey, Vec<u8>>,
    ) -> Result<std::result::Result<(), String>> {
        let current = pool.app_read(|r| {
            deltas
                .keys()
                .map(|k| r.get(DIGEST_CHUNKS, k))
                .collect::<Result<Vec<_>>>()
        })?;
        let mut problem = None;
        for ((key, delta), cur) in deltas.into_iter().zip(current) {
            let (count, entries) = match &cur {
                Some(v) if v.len() >= 4 => (
                    u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) as i64,
                    &v[4..],
                ),
                Some(_) => {
                    problem = Some(format!("digest chunk {} is malformed", hex(&key)));
                    continue;
                }
                None => match rows.get(&key) {
                    Some(e) => (0, e.as_slice()),
                    None => {
                        problem = Some(format!(
                            "digest chunk {} is missing (named by an index)",
                            hex(&key)
                        ));
                        continue;
                    }
                },
            };
            let next = count + delta;
            if next <= 0 {
                self.deletes.push((DIGEST_CHUNKS, key.to_vec()));
            } else {
                let mut v = (next as u32).to_le_bytes().to_vec();
                v.extend_from_slice(entries);
                self.puts.push((DIGEST_CHUNKS, key.to_vec(), v));
            }
        }
        Ok(problem.map_or(Ok(()), Err))
    }
}

/// Plans storing backup `id`'s hashes (it has none yet). Fails only on I/O errors.
pub fn plan_store(pool: &Pool, id: BackupId, hashes: &[ExtentHash]) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut deltas: BTreeMap<ChunkKey, i64> = BTreeMap::new();
    let mut rows: BTreeMap<ChunkKey, Vec<u8>> = BTreeMap::new();
    let mut index: Vec<u8> = Vec::new();
    let mut part = 0u32;
    let chunks = chunks_of(hashes);
    for (i, (n, entries)) in chunks.iter().enumerate() {
        let key = chunk_key(entries);
        *deltas.entry(key).or_default() += 1;
        rows.entry(key).or_insert_with(|| entries.clone());
        if index.is_empty() {
            index.push(INDEX_VERSION);
        }
        index.extend(n.to_be_bytes());
        index.extend(key);
        if (i + 1) % INDEX_PART_CHUNKS == 0 {
            plan.puts.push((
                DIGEST_INDEX,
                index_key(id, part),
                std::mem::take(&mut index),
            ));
            part += 1;
        }
    }
    if !index.is_empty() || chunks.is_empty() {
        if index.is_empty() {
            index.push(INDEX_VERSION);
        }
        plan.puts.push((DIGEST_INDEX, index_key(id, part), index));
    }
    if let Err(m) = plan.count(pool, deltas, &rows)? {
        // A new chunk is always found in `rows`; only a malformed stored one gets here.
        return Err(arca_store::Error::new(arca_store::ErrorKind::Corrupt, m));
    }
    Ok(plan)
}

/// Plans removing backup `id`'s hashes, in either layout. A damaged index is removed without
/// touching counts (the catalog check reports the counts it leaves wrong).
pub fn plan_remove(pool: &Pool, id: BackupId) -> Result<Plan> {
    let mut plan = Plan::default();
    let (parts, legacy_rows) = read_index(pool, id)?;
    for (part, _) in &parts {
        plan.deletes.push((DIGEST_INDEX, index_key(id, *part)));
    }
    for c in 0..legacy_rows {
        plan.deletes.push((DIGESTS, legacy_key(id, c as u32)));
    }
    let mut deltas: BTreeMap<ChunkKey, i64> = BTreeMap::new();
    for (_, v) in &parts {
        if let Ok(entries) = decode_index(v) {
            for (_, key) in entries {
                *deltas.entry(key).or_default() -= 1;
            }
        }
    }
    if let Err(m) = plan.count(pool, deltas, &BTreeMap::new())? {
        tracing::warn!("removing the digest of backup {id}: {m}");
    }
    Ok(plan)
}

fn legacy_key(id: BackupId, chunk: u32) -> Vec<u8> {
    index_key(id, chunk)
}

/// A backup's index rows: (part, value).
type IndexRows = Vec<(u32, Vec<u8>)>;

/// The index rows of `id` and the number of legacy rows.
fn read_index(pool: &Pool, id: BackupId) -> Result<(IndexRows, usize)> {
    let (from, to) = (index_key(id, 0), index_key(id, u32::MAX));
    let mut parts = Vec::new();
    pool.app_scan(
        DIGEST_INDEX,
        Bound::Included(&from),
        Bound::Included(&to),
        false,
        |k, v| {
            let part = u32::from_be_bytes(k[8..12].try_into().expect("12-byte keys"));
            parts.push((part, v.to_vec()));
            true
        },
    )?;
    let mut legacy = 0;
    pool.app_scan(
        DIGESTS,
        Bound::Included(&from),
        Bound::Included(&to),
        false,
        |_, _| {
            legacy += 1;
            true
        },
    )?;
    Ok((parts, legacy))
}

fn decode_index(v: &[u8]) -> std::result::Result<Vec<(u32, ChunkKey)>, String> {
    if v.first() != Some(&INDEX_VERSION) || !(v.len() - 1).is_multiple_of(INDEX_ENTRY_LEN) {
        return Err(format!(
            "a digest index row of {} bytes is malformed",
            v.len()
        ));
    }
    Ok(v[1..]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(|e| {
            let n = u32::from_be_bytes(e[..4].try_into().expect("4 bytes"));
            (n, e[4..].try_into().expect("16 bytes"))
        })
        .collect())
}

/// Loads backup `id`'s extent hashes in extent order. A missing or malformed row is an error
/// naming the backup (the outer error is an I/O error).
pub fn load(pool: &Pool, id: BackupId) -> Result<std::result::Result<Vec<ExtentHash>, String>> {
    let (parts, legacy_rows) = read_index(pool, id)?;
    if parts.is_empty() {
        return load_legacy(pool, id, legacy_rows);
    }
    let mut entries = Vec::new();
    for (_, v) in &parts {
        match decode_index(v) {
            Ok(e) => entries.extend(e),
            Err(m) => return Ok(Err(format!("backup {id}: {m}"))),
        }
    }
    let chunks = pool.app_read(|r| {
        entries
            .iter()
            .map(|(_, k)| r.get(DIGEST_CHUNKS, k))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut out = Vec::new();
    for ((n, key), row) in entries.iter().zip(chunks) {
        let Some(row) = row else {
            return Ok(Err(format!(
                "backup {id}: digest chunk {} is missing",
                hex(key)
            )));
        };
        let body = row.get(4..).unwrap_or_default();
        if row.len() < 4 || !body.len().is_multiple_of(CHUNK_ENTRY_LEN) || chunk_key(body) != *key {
            return Ok(Err(format!(
                "backup {id}: digest chunk {} is damaged",
                hex(key)
            )));
        }
        for e in body.chunks_exact(CHUNK_ENTRY_LEN) {
            let off = u16::from_be_bytes([e[0], e[1]]) as u64;
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(&e[2..]);
            out.push((*n as u64 * CHUNK_EXTENTS + off, h));
        }
    }
    Ok(Ok(out))
}

fn load_legacy(
    pool: &Pool,
    id: BackupId,
    rows: usize,
) -> Result<std::result::Result<Vec<ExtentHash>, String>> {
    let mut out = Vec::with_capacity(rows * CHUNK_ENTRIES);
    let mut bad = None;
    let (from, to) = (legacy_key(id, 0), legacy_key(id, u32::MAX));
    pool.app_scan(
        DIGESTS,
        Bound::Included(&from),
        Bound::Included(&to),
        false,
        |_, v| {
            if !v.len().is_multiple_of(LEGACY_ENTRY_LEN) {
                bad = Some(format!("a digest row of backup {id} is {} bytes", v.len()));
                return false;
            }
            for e in v.chunks_exact(LEGACY_ENTRY_LEN) {
                let l = u64::from_be_bytes(e[..8].try_into().expect("8 bytes"));
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(&e[8..]);
                out.push((l, h));
            }
            true
        },
    )?;
    Ok(match bad {
        Some(m) => Err(m),
        None => Ok(out),
    })
}

/// Recounts every chunk's references from the indexes: (chunk, stored count, counted), for
/// each chunk whose two differ, and chunks that no index names.
pub fn recount(pool: &Pool) -> Result<Vec<(String, u32, u32)>> {
    let mut counted: BTreeMap<ChunkKey, u32> = BTreeMap::new();
    pool.app_scan(
        DIGEST_INDEX,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        |_, v| {
            if let Ok(entries) = decode_index(v) {
                for (_, k) in entries {
                    *counted.entry(k).or_default() += 1;
                }
            }
            true
        },
    )?;
    let mut wrong = Vec::new();
    pool.app_scan(
        DIGEST_CHUNKS,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        |k, v| {
            let stored = v
                .get(..4)
                .map_or(0, |c| u32::from_le_bytes(c.try_into().expect("4 bytes")));
            let key: Option<ChunkKey> = k.try_into().ok();
            let n = key.and_then(|k| counted.remove(&k)).unwrap_or(0);
            if n != stored {
                wrong.push((hex(k), stored, n));
            }
            true
        },
    )?;
    // Named by an index but not stored: load reports those per backup.
    Ok(wrong)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_group_by_extent_range() {
        let h = [1u8; HASH_LEN];
        let c = chunks_of(&[(0, h), (5, h), (1024, h), (3000, h)]);
        let numbers: Vec<u32> = c.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        assert_eq!(c[0].1.len(), 2 * CHUNK_ENTRY_LEN);
        // The same data in the same range gives the same chunk, wherever the backup.
        assert_eq!(chunk_key(&c[1].1), chunk_key(&chunks_of(&[(1024, h)])[0].1));
    }

    #[test]
    fn index_rows_round_trip() {
        let mut v = vec![INDEX_VERSION];
        v.extend(7u32.to_be_bytes());
        v.extend([9u8; KEY_LEN]);
        assert_eq!(decode_index(&v).unwrap(), vec![(7, [9u8; KEY_LEN])]);
        assert!(decode_index(&v[..5]).is_err());
        assert!(decode_index(&[]).is_err());
    }
}
