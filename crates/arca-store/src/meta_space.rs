//! Room in the metadata region: what is used, what is held back, and admission of changes that
//! add metadata.
//!
//! Why: the region has a fixed size, and redb copies on write, so even a deletion needs free
//! pages before it can free any. A region allowed to fill up wedges the pool: host flushes fail
//! (their extent maps cannot be committed) and no delete can commit to make room. So:
//!
//! - Host writes and deletions never ask: they may use the reserve.
//! - Everything that adds metadata of its own (volumes, snapshots, clones, the rows of the
//!   layers above) asks first with an estimate, and is refused with [`ErrorKind::NoSpace`]
//!   before it changes anything when it would eat into the reserve.
//! - The reserve is room to map every extent not yet allocated ([`MAP_ENTRY_ROOM_BYTES`] each)
//!   plus room for deletions ([`delete_reserve_bytes`]). Extent maps hold at most one entry per
//!   allocated extent, so host writes can always be mapped.
//!
//! What can be reached: redb grows its file by doubling (below 4 GiB), and a growth past the
//! region fails even when a smaller one would fit. From a file of `L` bytes the growths reach
//! `2^k (L - h) + h` for a small header `h`; the largest of those that fits is what the store
//! counts on ([`reachable_bytes`]), which is at least about half the region.

use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::meta_guard::store_error;
use crate::pool::Pool;

/// Metadata room kept per unallocated extent: an extent-map entry (16-byte key, 16-byte value)
/// with its share of branch pages, half-full leaves and the copy a commit makes. Measured about
/// 30 bytes per entry once a map is large; 64 leaves a margin.
pub const MAP_ENTRY_ROOM_BYTES: u64 = 64;

/// redb's header pages, which a growth does not double (one 4 KiB page measured; two counted).
const REDB_HEADER_BYTES: u64 = 8 * 1024;

/// Room kept for deletions: a deletion rewrites the pages on the paths to what it removes.
pub fn delete_reserve_bytes(capacity_bytes: u64) -> u64 {
    (capacity_bytes / 32).max(256 * 1024)
}

/// The largest file length redb can grow to from `file_bytes` inside `capacity_bytes`.
pub fn reachable_bytes(file_bytes: u64, capacity_bytes: u64) -> u64 {
    if file_bytes <= REDB_HEADER_BYTES {
        // A new store: redb's first growths are small; half the region is surely reachable.
        return capacity_bytes / 2;
    }
    // Each growth at most doubles the length, so 2^k * file_bytes <= capacity means the k-th
    // growth fits; it reaches at least 2^k * (file_bytes - header).
    let mut k = 0u32;
    while file_bytes
        .checked_shl(k + 1)
        .is_some_and(|l| l <= capacity_bytes)
        && k < 63
    {
        k += 1;
    }
    ((file_bytes - REDB_HEADER_BYTES) << k)
        .saturating_add(REDB_HEADER_BYTES)
        .max(file_bytes)
}

/// The metadata region's use, as `pool status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaSpace {
    /// Size of the region.
    pub capacity_bytes: u64,
    /// Length of the store's file in the region (pages in use and free ones among them).
    pub file_bytes: u64,
    /// What the store can surely grow to (see the module documentation).
    pub reachable_bytes: u64,
    /// Pages in use by the store.
    pub used_bytes: u64,
    /// Held back for host writes (maps of unallocated extents) and deletions.
    pub reserved_bytes: u64,
    /// What new volumes, snapshots, backups and records may still use.
    pub available_bytes: u64,
}

impl Pool {
    /// The metadata region's use. Counts the store's pages (a walk of its trees, cached until
    /// the next commit); an error reading them counts the whole file as used.
    pub fn meta_space(&self) -> MetaSpace {
        let used = self.meta_used_bytes().unwrap_or_else(|e| {
            tracing::warn!("counting metadata pages: {e}");
            self.inner.meta.used()
        });
        self.meta_space_with(used)
    }

    fn meta_space_with(&self, used_bytes: u64) -> MetaSpace {
        let inner = &self.inner;
        let capacity = inner.meta.capacity();
        let reachable = reachable_bytes(inner.meta.used(), capacity);
        let free_extents = inner.alloc.lock().total_free();
        let reserved = free_extents
            .saturating_mul(MAP_ENTRY_ROOM_BYTES)
            .saturating_add(delete_reserve_bytes(capacity));
        MetaSpace {
            capacity_bytes: capacity,
            file_bytes: inner.meta.used(),
            reachable_bytes: reachable,
            used_bytes,
            reserved_bytes: reserved,
            available_bytes: reachable
                .saturating_sub(used_bytes)
                .saturating_sub(reserved),
        }
    }

    /// Bytes of pages the metadata store uses, from redb's allocator. Walks every tree, so it
    /// is cached for as long as no commit happens.
    fn meta_used_bytes(&self) -> Result<u64> {
        let inner = &self.inner;
        let commits = inner.commits.load(Ordering::SeqCst);
        {
            let cached = inner.meta_used_cache.lock();
            if let Some((at, used)) = *cached
                && at == commits
            {
                return Ok(used);
            }
        }
        let ctx = "counting metadata pages";
        let db = self.db()?;
        let db = db.as_ref().expect("db() opens the store");
        let label = &inner.meta_label;
        // The walk reads every page: guarded like every call into the store.
        let used = self.guarded(ctx, || {
            let txn = db
                .begin_write()
                .map_err(|e| store_error(label, ctx, e.into()))?;
            let stats = txn.stats().map_err(|e| store_error(label, ctx, e.into()))?;
            txn.abort().map_err(|e| store_error(label, ctx, e.into()))?;
            Ok(stats.allocated_pages() * stats.page_size() as u64)
        })?;
        // A commit between reading the count and the walk makes this one stale; it is only
        // cached under the count read first, so a later call walks again.
        *inner.meta_used_cache.lock() = Some((commits, used));
        Ok(used)
    }

    /// Admits a change that adds about `bytes` of metadata, or refuses it with
    /// [`ErrorKind::NoSpace`]. Cheap while the store's file is far from what it can reach;
    /// near it, counts the pages in use.
    pub fn admit_metadata(&self, what: &str, bytes: u64) -> Result<()> {
        let inner = &self.inner;
        // Rows cost more than their bytes: leaf slack, branch pages, and the commit's copy.
        let need = bytes.saturating_mul(2).saturating_add(4096);
        let file = inner.meta.used();
        let quick = self.meta_space_with(file);
        if quick.available_bytes >= need {
            // Even if every byte of the file were in use there is room.
            return Ok(());
        }
        let space = self.meta_space();
        if space.available_bytes >= need {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::NoSpace,
            format!(
                "{what}: metadata region nearly full ({} used of {} reachable in a region of {}; \
                 {} held back for host writes and deletions, {} needed): delete backups or \
                 snapshots to make room",
                human(space.used_bytes),
                human(space.reachable_bytes),
                human(space.capacity_bytes),
                human(space.reserved_bytes),
                human(need),
            ),
        ))
    }
}

/// Sizes for messages: binary units, one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_follows_doubling_inside_the_region() {
        const MIB: u64 = 1 << 20;
        // 4.25 MiB doubles to 8.5 and then 17 > 16: 8.5 MiB less the header is reachable.
        let r = reachable_bytes(4 * MIB + MIB / 4, 16 * MIB);
        assert!(r > 8 * MIB && r <= 16 * MIB, "{r}");
        // A file that cannot double any more reaches what it has.
        assert_eq!(reachable_bytes(9 * MIB, 16 * MIB), 9 * MIB);
        assert_eq!(reachable_bytes(0, 16 * MIB), 8 * MIB);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
