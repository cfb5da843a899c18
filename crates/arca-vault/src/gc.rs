//! Garbage collection that blocks no copy: deleting a backup removes its manifest only;
//! `Vault::gc` finds packs that no manifest uses and deletes them in two phases.
//!
//! - Phase 1 (mark): read every pack index and stream every manifest (see `live`), then
//!   write `upkeep/gc` with the unused packs, the time, and the ids of the manifests read.
//! - Phase 2 (sweep), in a later run once `grace` has passed: read only the manifests
//!   written since phase 1 (ids not in the state); a marked pack one of them names is kept,
//!   the others are deleted (index object first, so no copy finds the pack afterwards).
//!
//! Why no copy ever names a deleted pack, given that the grace period is longer than any
//! copy takes (the rule of FORMAT.md):
//! - a copy that began before the marks were written ends before phase 2 may run, so its
//!   manifest is there for phase 2 to read, and the packs it uses are kept;
//! - a copy that began after reads the marks in `begin_copy` and never dedups against a
//!   marked pack (it stores such chunks again), and a base whose packs are marked (its
//!   manifest was deleted) is refused.
//!
//! Sparse packs (some live data, less than `sparse_live_fraction`) are counted and their
//! dead bytes reported as reclaimable; repacking them needs their manifests rewritten.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, INDEX_DIR, PACKS_DIR, PackId};
use crate::state::{GcState, Mark};
use crate::vault::{Vault, now_unix_s};

/// How a gc run behaves.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Time between marking a pack and deleting it: longer than any copy may take.
    pub grace: Duration,
    /// Report what would go and the bytes reclaimable; write and delete nothing.
    pub dry_run: bool,
    /// A used pack with less than this fraction of live bytes counts as sparse.
    pub sparse_live_fraction: f64,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(48 * 3600),
            dry_run: false,
            sparse_live_fraction: 0.5,
        }
    }
}

/// What a gc run did (or, in a dry run, would do). Bytes are stored bytes of the vault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Phase 2: packs deleted with their index objects, and the bytes freed.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// The object names of the deleted packs.
    pub deleted: Vec<String>,
    /// Marked packs kept because a manifest written since phase 1 uses them.
    pub rescued_packs: u64,
    /// Earlier marks are not due yet: phase 2 may run from this time on.
    pub sweep_due_unix_s: Option<u64>,
    /// Phase 1: packs marked by this run (unused now) and the bytes they hold.
    pub marked_packs: u64,
    pub marked_bytes: u64,
    /// Phase 1's view of the vault.
    pub manifests: u64,
    pub packs: u64,
    pub live_bytes: u64,
    pub sparse_packs: u64,
    pub sparse_dead_bytes: u64,
    /// Unused packs plus the dead part of sparse ones.
    pub reclaimable_bytes: u64,
    /// Heap bytes of phase 1's live map.
    pub memory_bytes: u64,
}

fn pack_of(name: &str, dir: &str) -> Option<PackId> {
    let rest = name.strip_prefix(dir)?.strip_prefix('/')?;
    format::parse_hex::<16>(rest.rsplit('/').next()?)
}

impl Vault {
    /// One gc run: phase 2 of earlier marks when they are due, then (when no marks wait)
    /// phase 1. Run it periodically; each run moves collection forward. A dry run reports
    /// both phases' outcome as of now and changes nothing.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let now = now_unix_s();
        let mut state = self.read_gc_state()?;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        if !state.marks.is_empty() {
            let due = state.marked_at_unix_s.saturating_add(opts.grace.as_secs());
            if now >= due || opts.dry_run {
                self.sweep(&mut state, now, opts.dry_run, &mut report)?;
            }
            if now < due {
                report.sweep_due_unix_s = Some(due);
                if !opts.dry_run {
                    return Ok(report);
                }
            }
        }
        self.mark(&mut state, now, opts, &mut report)?;
        Ok(report)
    }

    /// Phase 2: deletes the marked packs no manifest written since phase 1 names.
    fn sweep(&self, state: &mut GcState, now: u64, dry: bool, report: &mut GcReport) -> Result<()> {
        let seen: HashSet<u64> = state.seen.iter().copied().collect();
        let marked: HashSet<PackId> = state.marks.iter().map(|m| m.pack).collect();
        let mut rescued = HashSet::new();
        for id in self.list_manifests()? {
            if seen.contains(&id) {
                continue;
            }
            // A manifest that cannot be read could name a marked pack: stop, delete nothing.
            let m = match self.read_manifest(id) {
                Err(Error::NoManifest(_)) => continue,
                other => other?,
            };
            rescued.extend(m.packs.iter().filter(|p| marked.contains(*p)).copied());
        }
        for mark in &state.marks {
            if rescued.contains(&mark.pack) {
                report.rescued_packs += 1;
                continue;
            }
            if !dry {
                self.delete_pack(&mark.pack)?;
            }
            report.deleted_packs += 1;
            report.deleted_bytes += mark.bytes;
            report.deleted.push(format::pack_name(&mark.pack));
        }
        if !dry {
            state.marks.clear();
            state.seen.clear();
            state.marked_at_unix_s = 0;
            state.last_gc_unix_s = now;
            state.last_deleted_bytes = report.deleted_bytes;
            self.write_gc_state(state)?;
        }
        Ok(())
    }

    /// The index object first: from then on no copy can find the pack. Objects already
    /// gone (an earlier sweep that stopped half-way) are fine.
    fn delete_pack(&self, pack: &PackId) -> Result<()> {
        for name in [format::index_name(pack), format::pack_name(pack)] {
            match self
                .rt
                .block_on(self.inner.store.delete(&Path::from(name.as_str())))
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store(&name, None, e)),
            }
        }
        Ok(())
    }

    /// Phase 1: finds the unused packs and records them with the manifests read.
    fn mark(
        &self,
        state: &mut GcState,
        now: u64,
        opts: &GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut map = self.load_live_map()?;
        let mut flaws = vec![];
        // A manifest that cannot be read may use any pack: gc stops rather than guess.
        let seen = self.walk_manifests(|_, m| {
            map.add_manifest(&m?, &mut flaws);
            Ok(())
        })?;
        // Listed after the walk: a pack completed meanwhile is marked, and kept by phase 2
        // when the copy that wrote it has landed its manifest.
        let mut sizes: HashMap<PackId, u64> = HashMap::new();
        for dir in [PACKS_DIR, INDEX_DIR] {
            for (name, size) in self.list_sizes(dir)? {
                if let Some(pack) = pack_of(&name, dir) {
                    *sizes.entry(pack).or_default() += size;
                }
            }
        }
        let mut marks = vec![];
        for (pack, &bytes) in &sizes {
            if !map.referenced(pack) {
                marks.push(Mark { pack: *pack, bytes });
                continue;
            }
            let Some(p) = map.packs.get(pack) else {
                continue;
            };
            let live = p.live_bytes();
            report.live_bytes += live;
            if (live as f64) < opts.sparse_live_fraction * p.pack_len as f64 {
                report.sparse_packs += 1;
                report.sparse_dead_bytes += p.pack_len - live;
            }
        }
        marks.sort_unstable_by_key(|m| m.pack);
        report.manifests = seen.len() as u64;
        report.packs = sizes.len() as u64;
        report.marked_packs = marks.len() as u64;
        report.marked_bytes = marks.iter().map(|m| m.bytes).sum();
        report.reclaimable_bytes = report.marked_bytes + report.sparse_dead_bytes;
        report.memory_bytes = map.memory_bytes() + sizes.capacity() as u64 * 32;
        if opts.dry_run {
            return Ok(());
        }
        state.last_gc_unix_s = now;
        state.live_bytes = report.live_bytes;
        state.reclaimable_bytes = report.reclaimable_bytes;
        state.marked_at_unix_s = if marks.is_empty() { 0 } else { now };
        state.marks = marks;
        state.seen = if state.marks.is_empty() { vec![] } else { seen };
        self.write_gc_state(state)
    }
}
