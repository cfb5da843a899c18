//! In-place restores from a vault: the target volume is rewritten where it differs from the
//! backup's copy, and only there. The guard, the undo point, the markers and the rollback are
//! those of every in-place restore (`restore.rs`, `restore_state.rs`); this is the rewrite.
//!
//! What the target holds is known without reading it wherever it is unchanged since a
//! *reference*: a snapshot backup of that very volume, still on the array, with a manifest in
//! the same vault and a digest (the backup itself when it is one, else the newest such). There
//! the reference manifest's chunk id is the target's, and the reference's stored extent hash
//! its digest hash. Elsewhere (changed since, or everywhere without a reference) the target's
//! allocated extents are read and given the vault's keyed chunk id. An extent whose id is the
//! backup's is left alone; the others are fetched from the vault (several requests in flight)
//! and written, or unmapped where the backup has a hole or zeros.
//!
//! Before the job succeeds, the digest of the result (the reference's hashes where unchanged,
//! the hashes of what was read or written elsewhere) must be the backup's; otherwise the
//! restore fails and is rolled back to its undo point like any failed in-place restore.

use arca_store::{Export, ZeroOptions};
use arca_vault::{ChunkContent, ChunkId, Manifest, Vault};

use crate::backups::Backups;
use crate::digest::{self, ExtentHash};
use crate::digest_store;
use crate::ids::BackupId;
use crate::jobs::{JobContext, JobError};
use crate::record::{BackupRecord, Destination, Status};
use crate::restore_state::Step;
use crate::vault_copy::{decode_meta, vault_error};

/// Bytes read from the target per request while comparing it.
const READ_RUN_BYTES: u64 = 1 << 20;

/// What the target is known to hold where it is unchanged since the reference snapshot.
struct Reference {
    id: BackupId,
    manifest: Manifest,
    /// The reference's stored extent hashes, by extent, ascending.
    hashes: Vec<ExtentHash>,
    /// Extents written or trimmed since the reference, ascending.
    changed: Vec<u64>,
}

impl Reference {
    /// The target's chunk id (`None`: zeros) and digest hash at extent `l`, when unchanged
    /// since the reference and its hash is known.
    fn knows(&self, l: u64) -> Option<(Option<ChunkId>, Option<[u8; digest::HASH_LEN]>)> {
        if self.changed.binary_search(&l).is_ok() {
            return None;
        }
        let id = self.manifest.chunk_id(l);
        let hash = self
            .hashes
            .binary_search_by_key(&l, |(x, _)| *x)
            .ok()
            .map(|i| self.hashes[i].1);
        match (id, hash) {
            // A data chunk whose hash is not stored: read it instead.
            (Some(_), None) => None,
            other => Some(other),
        }
    }
}

/// The outcome of comparing the target with the backup: what must change.
#[derive(Default)]
struct Plan {
    /// Extents to fetch from the vault and write, ascending.
    fetch: Vec<u64>,
    /// Extents to unmap (the backup has zeros there, the target not).
    clear: Vec<u64>,
    /// Digest hashes of the result at the extents left alone.
    hashes: Vec<ExtentHash>,
    /// Bytes read from the target to compare.
    read: u64,
}

impl Backups {
    /// Rewrites the step's volume with the backup's copy in the step's vault, writing only
    /// what differs. Returns the bytes rewritten (written or unmapped).
    pub(crate) fn rewrite_from_vault(&self, s: &Step, ctx: &JobContext) -> Result<u64, JobError> {
        let r = s.backup.as_ref().expect("a restore runs with its backup");
        let vault = s.vault.as_deref().expect("a vault step");
        let v = self.open_vault(vault)?;
        let m = v
            .read_manifest(r.id.get())
            .map_err(|e| vault_error(vault, e))?;
        let info = r.digest.as_ref().ok_or_else(|| {
            JobError::Failed(format!("backup {} has no digest to check against", r.id))
        })?;
        let es = self.pool.extent_size();
        let size = r.source.size;
        if m.image_size != size || u64::from(m.chunk_size) != es || info.extent_size != es {
            return Err(JobError::Failed(format!(
                "vault {vault}: the copy of backup {} ({} bytes in {}-byte chunks) does not fit \
                 this pool's {es}-byte extents and the backup's {size} bytes",
                r.id, m.image_size, m.chunk_size
            )));
        }
        let (_, zeros) = decode_meta(&m.meta)
            .map_err(|e| JobError::Failed(format!("vault {vault}: backup {}: {e}", r.id)))?;
        let target = self
            .volume_by_id(s.volume_id)
            .ok_or_else(|| JobError::Failed(format!("volume {} no longer exists", s.volume)))?;
        let to = self.pool.export_unguarded(&target.name)?;
        // The reference stays claimed (not deletable) while it stands for the target.
        let reference = self.reference_for(&v, vault, r, s.volume_id, &target.name)?;
        let _claimed = reference.as_ref().map(|(_, u)| u);
        let reference = reference.as_ref().map(|(x, _)| x);
        ctx.restart_progress(target.size);
        let mut plan = compare(&v, &m, &to, reference, ctx)?;
        let mut rewritten = 0;
        for &l in &plan.clear {
            ctx.check()?;
            let len = m.chunk_len(l);
            to.write_zeroes(l * es, len, ZeroOptions::UNMAP)?;
            rewritten += len;
            ctx.add_done(len);
        }
        let wanted = m.only(|i| plan.fetch.binary_search(&i).is_ok());
        let mut fetched = 0;
        for c in v.reader(&wanted) {
            ctx.check()?;
            let c = c.map_err(|e| vault_error(vault, e))?;
            if let ChunkContent::Data(b) = &c.content {
                to.write(c.index * es, b, false)?;
                plan.hashes.push((c.index, digest::hash_extent(b)));
                fetched += b.len() as u64;
                ctx.add_done(c.len);
            }
        }
        rewritten += fetched;
        // Beyond the image's end (the volume grew since) the volume reads zeros.
        if target.size > size
            && to
                .allocated_extents()?
                .last()
                .is_some_and(|&l| (l + 1) * es > size)
        {
            to.write_zeroes(size, target.size - size, ZeroOptions::UNMAP)?;
        }
        ctx.add_done(target.size - size);
        self.count(vault, |x| {
            x.bytes_restored += fetched;
            x.restores += 1;
        });
        let zero = digest::ZeroHashes::new(size, es);
        plan.hashes.extend(zeros.iter().map(|&l| (l, zero.of(l))));
        plan.hashes.sort_unstable_by_key(|(l, _)| *l);
        if digest::root(es, size, &plan.hashes) != info.root {
            return Err(JobError::Failed(format!(
                "volume {} restored from vault {vault} does not match backup {}'s digest",
                s.volume, r.id
            )));
        }
        tracing::info!(
            backup = %r.id,
            volume = %s.volume,
            vault,
            reference = ?reference.map(|x| x.id),
            bytes_compared_by_reading = plan.read,
            bytes_fetched = fetched,
            bytes_rewritten = rewritten,
            "restored in place from a vault"
        );
        Ok(rewritten)
    }

    /// The reference for restoring `r` into volume `volume_id`, claimed: the newest complete
    /// snapshot backup of that volume on the array with a digest and a copy in this vault.
    fn reference_for(
        &self,
        v: &Vault,
        vault: &str,
        r: &BackupRecord,
        volume_id: u64,
        volume: &str,
    ) -> Result<Option<(Reference, crate::backups::UseGuard)>, JobError> {
        let (best, uses) = {
            let _c = self.catalog_lock.lock();
            let best = self
                .backups_in_vault_locked(vault)?
                .into_iter()
                .filter(|b| {
                    b.source.volume_id == volume_id
                        && b.status == Status::Complete
                        && b.on_array()
                        && b.digest.is_some()
                        && b.source.size == r.source.size
                        && matches!(b.destination, Destination::Snapshot { .. })
                })
                .max_by_key(|b| b.generation);
            let Some(best) = best else { return Ok(None) };
            let uses = self.register_use(&[best.id], "an in-place restore from a vault".into());
            (best, uses)
        };
        let Destination::Snapshot { snapshot, .. } = &best.destination else {
            unreachable!("filtered above")
        };
        let manifest = match v.read_manifest(best.id.get()) {
            Ok(m) if m.image_size == r.source.size && m.chunk_size == v.chunk_size() => m,
            // Its copy is gone or does not fit: compare by reading instead.
            _ => return Ok(None),
        };
        let Ok(hashes) = digest_store::load(&self.pool, best.id)? else {
            return Ok(None);
        };
        let changed = self.pool.changed_extents(volume, snapshot)?;
        Ok(Some((
            Reference {
                id: best.id,
                manifest,
                hashes,
                changed,
            },
            uses,
        )))
    }
}

/// Decides, extent by extent, what of the target differs from the backup's manifest `m`,
/// reading only what the reference does not tell. Progress counts the extents left alone.
fn compare(
    v: &Vault,
    m: &Manifest,
    to: &Export,
    reference: Option<&Reference>,
    ctx: &JobContext,
) -> Result<Plan, JobError> {
    let es = u64::from(m.chunk_size);
    let n = m.chunk_count();
    let allocated = to.allocated_extents()?;
    let is_data = |l: u64| allocated.binary_search(&l).is_ok();
    let known = |l: u64| reference.and_then(|x| x.knows(l));
    let per_run = (READ_RUN_BYTES / es).max(1);
    let mut buf = vec![0u8; (per_run * es) as usize];
    let mut plan = Plan::default();
    // The target's chunk at `l` is `has` (`None`: zeros) with digest hash `hash`.
    let settle = |plan: &mut Plan, l: u64, has: Option<ChunkId>, hash| {
        let want = m.chunk_id(l);
        match (want == has, want, hash) {
            (true, Some(_), Some(h)) => plan.hashes.push((l, h)),
            (true, _, _) => {}
            (false, Some(_), _) => return plan.fetch.push(l),
            (false, None, _) => return plan.clear.push(l),
        }
        ctx.add_done(m.chunk_len(l));
    };
    let mut l = 0;
    while l < n {
        ctx.check()?;
        if let Some((has, hash)) = known(l) {
            settle(&mut plan, l, has, hash);
            l += 1;
            continue;
        }
        if !is_data(l) {
            settle(&mut plan, l, None, None);
            l += 1;
            continue;
        }
        let mut end = l + 1;
        while end < n && end - l < per_run && known(end).is_none() && is_data(end) {
            end += 1;
        }
        let at = l * es;
        let len = (end * es).min(m.image_size) - at;
        let b = &mut buf[..len as usize];
        to.read(at, b)?;
        plan.read += len;
        for (k, chunk) in (l..end).zip(b.chunks(es as usize)) {
            let has = (!chunk.iter().all(|&x| x == 0)).then(|| v.chunk_id(chunk));
            settle(&mut plan, k, has, Some(digest::hash_extent(chunk)));
        }
        l = end;
    }
    Ok(plan)
}
