//! Content digests of backup images, and the walk over an image that copies and verification
//! share: allocated extents are read in large chunks, holes are skipped.
//!
//! A digest holds, for every allocated logical extent, the first 16 bytes of its BLAKE3 hash
//! (over the extent's bytes inside the image: the last extent may be short). Holes read as
//! zeros and are not listed. The root is BLAKE3 over a domain string, the extent size, the image
//! size and the (extent, hash) list. Where the hashes are stored: digest_store.rs.

use arca_store::Export;

use crate::record::DigestInfo;

pub const HASH_LEN: usize = 16;
pub const CHUNK_ENTRIES: usize = 1024;
/// Bytes read per request while walking an image.
pub const WALK_CHUNK_BYTES: u64 = 1 << 20;

pub type ExtentHash = (u64, [u8; HASH_LEN]);

pub fn hash_extent(data: &[u8]) -> [u8; HASH_LEN] {
    let h = blake3::hash(data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&h.as_bytes()[..HASH_LEN]);
    out
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

/// What a walk reports for each piece of the image.
pub enum Piece<'a> {
    /// Allocated bytes at `offset` (extent-aligned, whole extents except at the image's end).
    Data { offset: u64, data: &'a [u8] },
    /// A hole (reads as zeros).
    Hole { offset: u64, len: u64 },
    /// Extent-aligned bytes that could not be read.
    Unreadable {
        offset: u64,
        len: u64,
        error: arca_store::Error,
    },
}

/// Walks `size` bytes of an image in order: holes as [`Piece::Hole`], data in runs of
/// contiguous allocated extents of up to [`WALK_CHUNK_BYTES`]. Costs what is allocated, not the
/// size. With `tolerate_read_errors`, a failed read is retried extent by extent and what still
/// fails is reported as [`Piece::Unreadable`]; otherwise the error stops the walk. `visit`
/// returning an error stops it too.
pub fn walk<E: From<arca_store::Error>>(
    export: &Export,
    size: u64,
    es: u64,
    tolerate_read_errors: bool,
    mut visit: impl FnMut(Piece<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let per_chunk = (WALK_CHUNK_BYTES / es).max(1);
    let mut buf = vec![0u8; (per_chunk * es) as usize];
    let extents = export.allocated_extents()?;
    let mut pos = 0u64;
    let mut i = 0;
    while i < extents.len() {
        // A run of consecutive extents, at most one chunk long.
        let first = extents[i];
        let mut n = 1;
        while i + (n as usize) < extents.len()
            && extents[i + n as usize] == first + n
            && n < per_chunk
        {
            n += 1;
        }
        i += n as usize;
        let at = first * es;
        if at >= size {
            break;
        }
        if at > pos {
            visit(Piece::Hole {
                offset: pos,
                len: at - pos,
            })?;
        }
        let len = (n * es).min(size - at);
        let b = &mut buf[..len as usize];
        match export.read(at, b) {
            Ok(()) => visit(Piece::Data {
                offset: at,
                data: b,
            })?,
            Err(e) if !tolerate_read_errors => return Err(e.into()),
            Err(_) => {
                let mut o = at;
                while o < at + len {
                    let m = es.min(at + len - o);
                    let eb = &mut buf[..m as usize];
                    match export.read(o, eb) {
                        Ok(()) => visit(Piece::Data {
                            offset: o,
                            data: eb,
                        })?,
                        Err(error) => visit(Piece::Unreadable {
                            offset: o,
                            len: m,
                            error,
                        })?,
                    }
                    o += m;
                }
            }
        }
        pos = at + len;
    }
    if pos < size {
        visit(Piece::Hole {
            offset: pos,
            len: size - pos,
        })?;
    }
    Ok(())
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
    let zero_hash = |l: u64| {
        let len = (size - l * es).min(es) as usize;
        hash_extent(&vec![0u8; len])
    };
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
