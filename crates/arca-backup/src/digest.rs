//! Content digests of backup images, and their comparison with an image (verification). The
//! walk that reads images is the copier's (`copier.rs`).
//!
//! A digest holds, for every allocated logical extent, the first 16 bytes of its BLAKE3 hash
//! (over the extent's bytes inside the image: the last extent may be short). Holes read as
//! zeros and are not listed. The root is BLAKE3 over a domain string, the extent size, the image
//! size and the (extent, hash) list. Where the hashes are stored: digest_store.rs.

use arca_store::Export;

use crate::copier::{Piece, walk};
use crate::record::DigestInfo;

pub const HASH_LEN: usize = 16;
pub const CHUNK_ENTRIES: usize = 1024;

pub type ExtentHash = (u64, [u8; HASH_LEN]);

pub fn hash_extent(data: &[u8]) -> [u8; HASH_LEN] {
    let h = blake3::hash(data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&h.as_bytes()[..HASH_LEN]);
    out
}

/// The hash of each extent of a `size`-byte image of zeros. An image has at most two extent
/// lengths (whole extents and a shorter tail), so each is hashed once: hashing an extent's
/// worth of zeros for every hole costs as much as reading the image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZeroHashes {
    size: u64,
    es: u64,
    whole: [u8; HASH_LEN],
    tail: [u8; HASH_LEN],
}

impl ZeroHashes {
    pub(crate) fn new(size: u64, es: u64) -> ZeroHashes {
        assert!(es > 0, "an extent size is positive");
        let whole = hash_extent(&vec![0u8; es as usize]);
        let tail = match size % es {
            0 => whole,
            t => hash_extent(&vec![0u8; t as usize]),
        };
        ZeroHashes {
            size,
            es,
            whole,
            tail,
        }
    }

    /// The hash of extent `l` holding zeros.
    pub(crate) fn of(&self, l: u64) -> [u8; HASH_LEN] {
        debug_assert!(l * self.es < self.size, "extent {l} is inside the image");
        if (l + 1) * self.es <= self.size {
            self.whole
        } else {
            self.tail
        }
    }
}

pub fn root(extent_size: u64, size: u64, hashes: &[ExtentHash]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"arca-backup-digest-v1");
    h.update(&extent_size.to_le_bytes());
    h.update(&size.to_le_bytes());
    for (l, x) in hashes {
        h.update(&l.to_le_bytes());
        h.update(x);
    }
    *h.finalize().as_bytes()
}

pub fn info(extent_size: u64, size: u64, hashes: &[ExtentHash]) -> DigestInfo {
    DigestInfo {
        extent_size,
        root: root(extent_size, size, hashes),
        extents: hashes.len() as u64,
    }
}

/// Hashes every extent of an allocated piece of data starting at an extent boundary.
pub fn hash_data(offset: u64, data: &[u8], es: u64, out: &mut Vec<ExtentHash>) {
    debug_assert_eq!(offset % es, 0, "walks hand out extent-aligned data");
    for (i, c) in data.chunks(es as usize).enumerate() {
        out.push((offset / es + i as u64, hash_extent(c)));
    }
}

/// Result of comparing an image with its recorded digest.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Damaged byte ranges, merged, in order.
    pub damaged: Vec<(u64, u64)>,
    /// Extents that could not be read, with the first error.
    pub unreadable_extents: u64,
    pub first_read_error: Option<String>,
    pub bytes_read: u64,
}

/// Re-reads an image and compares it with the recorded hashes: an extent is damaged when its
/// hash differs, when it cannot be read, or when it was recorded as data and is now a hole (or
/// the reverse, unless it holds only zeros).
pub fn compare(
    export: &Export,
    size: u64,
    es: u64,
    recorded: &[ExtentHash],
    progress: &mut dyn FnMut(u64) -> std::result::Result<(), crate::jobs::JobError>,
) -> std::result::Result<Comparison, crate::jobs::JobError> {
    let mut cmp = Comparison::default();
    let mut fresh: Vec<(u64, Option<[u8; HASH_LEN]>)> = Vec::new();
    walk::<crate::jobs::JobError>(export, size, es, true, |p| {
        match p {
            Piece::Data { offset, data } => {
                let mut v = Vec::new();
                hash_data(offset, data, es, &mut v);
                fresh.extend(v.into_iter().map(|(l, h)| (l, Some(h))));
                cmp.bytes_read += data.len() as u64;
                progress(data.len() as u64)?;
            }
            Piece::Hole { len, .. } => progress(len)?,
            Piece::Unreadable { offset, len, error } => {
                cmp.unreadable_extents += 1;
                if cmp.first_read_error.is_none() {
                    cmp.first_read_error = Some(error.to_string());
                }
                fresh.push((offset / es, None));
                progress(len)?;
            }
        }
        Ok(())
    })?;
    let zeros = ZeroHashes::new(size, es);
    let zero_hash = |l: u64| zeros.of(l);
    let mut bad: Vec<u64> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < recorded.len() || j < fresh.len() {
        let r = recorded.get(i).copied();
        let f = fresh.get(j).copied();
        match (r, f) {
            (Some((rl, rh)), Some((fl, fh))) if rl == fl => {
                if fh != Some(rh) {
                    bad.push(rl);
                }
                i += 1;
                j += 1;
            }
            (Some((rl, rh)), f) if f.is_none_or(|(fl, _)| rl < fl) => {
                // Recorded as data, now a hole: damaged unless the data was zeros.
                if rh != zero_hash(rl) {
                    bad.push(rl);
                }
                i += 1;
            }
            (_, Some((fl, fh))) => {
                // Now data where a hole was recorded: damaged unless it holds zeros.
                if fh != Some(zero_hash(fl)) {
                    bad.push(fl);
                }
                j += 1;
            }
            (None, None) => unreachable!("the loop condition"),
            (Some(_), None) => unreachable!("handled by the arm above"),
        }
    }
    for l in bad {
        let start = l * es;
        let len = (size - start).min(es);
        match cmp.damaged.last_mut() {
            Some((o, n)) if *o + *n == start => *n += len,
            _ => cmp.damaged.push((start, len)),
        }
    }
    Ok(cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the zero hashes are computed once per length, and must equal hashing the
    /// extent's own length of zeros, whole extents and a short tail alike.
    #[test]
    fn zero_hashes_match_hashing_each_extent_of_zeros() {
        let es = 4096;
        for size in [es, 3 * es, 3 * es + 1, 3 * es + 100, 4 * es - 1] {
            let z = ZeroHashes::new(size, es);
            for l in 0..size.div_ceil(es) {
                let len = (size - l * es).min(es) as usize;
                assert_eq!(
                    z.of(l),
                    hash_extent(&vec![0u8; len]),
                    "size {size} extent {l}"
                );
            }
        }
    }
}
