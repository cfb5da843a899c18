//! A volume with its snapshots (a "family") and how a logical extent resolves in it.
//!
//! Snapshots cost O(1) to take because they copy nothing. The live map holds the volume's
//! current entries, each stamped with the generation it was born in; taking a snapshot records
//! the generation `g` and starts a new one. When the volume overwrites or trims an entry born
//! before its newest snapshot, the entry moves into that snapshot's `delta` instead of being
//! freed. A snapshot taken at `g` therefore reads logical extent `l` from the first entry found
//! in its own delta, then the deltas of newer snapshots, then the live map: if that entry was
//! born before `g` it is what the snapshot saw; otherwise `l` was not mapped at `g`.
//!
//! Invariants (checked by fsck):
//! - every physical extent is referenced by exactly one entry in the whole pool: snapshots and
//!   clones share data by reading through each other's maps, never by copying entries;
//! - a delta entry of snapshot `S` was born before `S.generation`;
//! - snapshots are ordered by strictly increasing generation, all at most `gen_current`;
//! - a live entry born at or after the newest snapshot's generation is exclusive to the volume
//!   and may be overwritten in place; an older one is shared and is copied on write.
//!
//! A clone is a family whose `parent` is a snapshot of another family: logical extents with no
//! entry of its own read through that snapshot, and a trimmed extent gets a `Zero` entry so it
//! no longer does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::extent_map::{Entry, ExtentMap, Phys, Target};
use crate::placement::DeviceExtents;

#[derive(Debug)]
pub struct Snap {
    pub id: u64,
    pub name: String,
    pub generation: u32,
    pub size: u64,
    pub created_unix: u64,
    pub referenced: u64,
    /// Where the snapshot's data lies (placement.rs): fixed when it is taken.
    pub devices: DeviceExtents,
    pub delta: ExtentMap,
    /// Real (non-`Zero`) entries in `delta`.
    pub delta_real: u64,
    /// Real entries in `delta` that no older snapshot sees: what deleting this snapshot frees.
    pub unique: u64,
    /// Opaque descriptor from the layer above, stored with the snapshot's record.
    pub tag: Option<Vec<u8>>,
    /// The layers above's guards (guards.rs), sorted by owner; stored with the record.
    pub guards: Vec<crate::guards::Guard>,
}

/// Changes not yet committed to the metadata store, drained by one commit.
#[derive(Debug, Default)]
pub struct Dirty {
    /// (owner, logical) -> entry to store, or `None` to remove.
    pub entries: BTreeMap<(u64, u64), Option<Entry>>,
    /// Extents whose last reference is removed by the entries above: reusable once they commit.
    pub frees: Vec<Phys>,
    pub record: bool,
    pub snapshot_records: Vec<u64>,
    pub deleted_snapshots: Vec<u64>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.frees.is_empty()
            && !self.record
            && self.snapshot_records.is_empty()
            && self.deleted_snapshots.is_empty()
    }
}

#[derive(Debug)]
pub struct Family {
    pub name: String,
    pub size: u64,
    pub gen_current: u32,
    /// Placement preference: the device new extents come from while it has room (`None`: the
    /// one with the most free extents). Where the data lies is `live_devices`.
    pub placement: Option<u32>,
    pub created_unix: u64,
    pub live: ExtentMap,
    /// Oldest first; generations strictly increase, and so do ids.
    pub snaps: Vec<Snap>,
    /// Logical extents that resolve to a physical extent (own or through the parent).
    pub referenced: u64,
    /// Where the extents counted in `referenced` lie (placement.rs).
    pub live_devices: DeviceExtents,
    /// Real entries in `live`.
    pub live_real: u64,
    /// Real entries in `live` born at or after the newest snapshot: exclusive to the volume.
    pub live_unique: u64,
    pub deleted: bool,
    pub dirty: Dirty,
    /// Opaque descriptor from the layer above, stored with the volume's record.
    pub tag: Option<Vec<u8>>,
    /// The layers above's guards (guards.rs), sorted by owner; stored with the record.
    pub guards: Vec<crate::guards::Guard>,
    /// Told of every completed write to the live volume (a pair mirrors them). Not stored.
    pub hook: HookSlot,
}

/// A volume's write hook, if any (a newtype so that `Family` stays `Debug`).
#[derive(Default, Clone)]
pub struct HookSlot(pub Option<Arc<dyn crate::io::WriteHook>>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "hook" } else { "none" })
    }
}

/// A family in the registry. `parent` never changes, so it can be read without the lock; the
/// lock order is registry, then a family, then its parent.
#[derive(Debug)]
pub struct FamilyHandle {
    pub id: u64,
    pub parent: Option<(Arc<FamilyHandle>, u64)>,
    pub cell: RwLock<Family>,
}

/// Which image of a family: the live volume or one snapshot (by index into `snaps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Live,
    Snap(usize),
}

impl Family {
    /// A volume's family with its maps empty, its counters zero, no tag, guards or hook, and
    /// nothing dirty.
    pub fn new(name: String, size: u64, placement: Option<u32>, created_unix: u64) -> Family {
        Family {
            name,
            size,
            gen_current: 0,
            placement,
            created_unix,
            live: ExtentMap::new(),
            snaps: Vec::new(),
            referenced: 0,
            live_devices: Default::default(),
            live_real: 0,
            live_unique: 0,
            deleted: false,
            dirty: Dirty::default(),
            tag: None,
            guards: Vec::new(),
            hook: Default::default(),
        }
    }

    /// Generation of the newest snapshot, or 0: live entries born before it are shared.
    pub fn newest_gen(&self) -> u32 {
        self.snaps.last().map_or(0, |s| s.generation)
    }

    pub fn snap_index(&self, id: u64) -> Option<usize> {
        self.snaps.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// The index of snapshot `name` of this family (`volume`, for the error).
    pub fn snap_named(&self, volume: &str, name: &str) -> crate::error::Result<usize> {
        self.snaps
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| crate::error::not_found(format_args!("snapshot {volume}@{name}")))
    }

    pub fn view_size(&self, view: View) -> u64 {
        match view {
            View::Live => self.size,
            View::Snap(i) => self.snaps[i].size,
        }
    }

    /// The family's own entry for `l` in `view`, or `None` when the view has none (a hole, or
    /// the parent's data for a clone).
    pub fn own_lookup(&self, view: View, l: u64) -> Option<Entry> {
        match view {
            View::Live => self.live.get(l),
            View::Snap(i) => {
                let generation = self.snaps[i].generation;
                let found = self.snaps[i..]
                    .iter()
                    .find_map(|s| s.delta.get(l))
                    .or_else(|| self.live.get(l));
                found.filter(|e| e.birth < generation)
            }
        }
    }

    /// Moves a live entry that is being replaced or trimmed out of the live map's accounting:
    /// into the newest snapshot's delta when a snapshot sees it, else it is freed.
    pub fn retire_live(&mut self, l: u64, old: Entry) {
        let newest = self.newest_gen();
        let real = old.phys().is_some();
        if real {
            self.live_real -= 1;
        }
        if old.birth < newest {
            let n = self.snaps.len();
            let prev_gen = if n >= 2 {
                self.snaps[n - 2].generation
            } else {
                0
            };
            let snap = self
                .snaps
                .last_mut()
                .expect("newest_gen > 0 means a snapshot");
            let replaced = snap.delta.insert(l, old);
            assert!(replaced.is_none(), "delta of {} already held {l}", snap.id);
            if real {
                snap.delta_real += 1;
                if old.birth >= prev_gen {
                    snap.unique += 1;
                }
            }
            self.dirty.entries.insert((snap.id, l), Some(old));
        } else if let Some(p) = old.phys() {
            self.live_unique -= 1;
            self.dirty.frees.push(p);
        }
    }

    /// Sets the live entry for `l`, retiring the old one.
    pub fn set_live(&mut self, id: u64, l: u64, target: Target) {
        let entry = Entry::new(target, self.gen_current);
        if let Some(old) = self.live.insert(l, entry) {
            self.retire_live(l, old);
        }
        if target != Target::Zero {
            self.live_real += 1;
            self.live_unique += 1;
        }
        self.dirty.entries.insert((id, l), Some(entry));
    }

    /// Removes the live entry for `l`, retiring it.
    pub fn remove_live(&mut self, id: u64, l: u64) {
        if let Some(old) = self.live.remove(l) {
            self.retire_live(l, old);
            self.dirty.entries.insert((id, l), None);
        }
    }

    /// Recounts `unique` of the snapshot at `index` (after its older neighbour changed).
    pub fn recount_snap_unique(&mut self, index: usize) {
        let prev_gen = if index > 0 {
            self.snaps[index - 1].generation
        } else {
            0
        };
        let s = &mut self.snaps[index];
        s.unique = s
            .delta
            .iter()
            .filter(|(_, e)| e.phys().is_some() && e.birth >= prev_gen)
            .count() as u64;
    }

    pub fn recount_live_unique(&mut self) {
        self.live_unique = self.recount_live().1;
    }

    /// (mapped, unique) live extents, counted from the map: what `live_real` and
    /// `live_unique` must be.
    pub fn recount_live(&self) -> (u64, u64) {
        let newest = self.newest_gen();
        let mapped = self.live.iter().filter(|(_, e)| e.phys().is_some());
        let (mut real, mut unique) = (0, 0);
        for (_, e) in mapped {
            real += 1;
            unique += u64::from(e.birth >= newest);
        }
        (real, unique)
    }
}

/// Resolves logical extent `l` of `view` of `handle`'s family (whose lock the caller holds as
/// `fam`), through parents for clones. Takes each parent's read lock briefly: the data a clone
/// reads through a snapshot stays allocated while the clone exists.
pub fn resolve(handle: &FamilyHandle, fam: &Family, view: View, l: u64, es: u64) -> Target {
    if let Some(e) = fam.own_lookup(view, l) {
        return e.target();
    }
    match &handle.parent {
        None => Target::Zero,
        Some((parent, snap_id)) => {
            let pf = parent.cell.read();
            let i = pf
                .snap_index(*snap_id)
                .expect("a snapshot with clones cannot be deleted");
            if l >= pf.snaps[i].size.div_ceil(es) {
                // Beyond the parent snapshot: a clone grown past it reads zeros there.
                return Target::Zero;
            }
            resolve(parent, &pf, View::Snap(i), l, es)
        }
    }
}

/// Where a walk through a clone's origins finds each origin's family: [`Locking`] takes its
/// read lock briefly; fsck reads it from the guards it already holds (fsck.rs).
pub(crate) trait Origins {
    /// Runs `f` on the origin snapshot of `h`'s family (its handle, family and view), or on
    /// `None` for a volume that is no clone or whose origin snapshot is gone.
    fn with_origin<R>(
        &self,
        h: &FamilyHandle,
        f: impl FnOnce(Option<(&FamilyHandle, &Family, View)>) -> R,
    ) -> R;
}

/// Origins read under their own read lock, taken briefly (as [`resolve`] does).
pub(crate) struct Locking;

impl Origins for Locking {
    fn with_origin<R>(
        &self,
        h: &FamilyHandle,
        f: impl FnOnce(Option<(&FamilyHandle, &Family, View)>) -> R,
    ) -> R {
        let Some((parent, sid)) = &h.parent else {
            return f(None);
        };
        let pf = parent.cell.read();
        let view = pf.snap_index(*sid).map(View::Snap);
        f(view.map(|v| (&**parent, &*pf, v)))
    }
}

/// [`resolve`] through `origins`; an origin snapshot that is gone reads as zeros (fsck reports
/// it).
pub(crate) fn resolve_via(
    origins: &impl Origins,
    h: &FamilyHandle,
    fam: &Family,
    view: View,
    l: u64,
    es: u64,
) -> Target {
    if let Some(e) = fam.own_lookup(view, l) {
        return e.target();
    }
    origins.with_origin(h, |origin| match origin {
        Some((p, pf, View::Snap(i))) if l < pf.snaps[i].size.div_ceil(es) => {
            resolve_via(origins, p, pf, View::Snap(i), l, es)
        }
        // No origin, or beyond the origin snapshot: a clone grown past it reads zeros there.
        _ => Target::Zero,
    })
}

/// Logical extents (ascending) of `view` that resolve to a physical extent. Costs what is
/// mapped, not the size: only extents with an entry somewhere on the resolution path can be
/// real.
pub(crate) fn referenced_extents(
    origins: &impl Origins,
    h: &FamilyHandle,
    fam: &Family,
    view: View,
    es: u64,
) -> Vec<u64> {
    let limit = fam.view_size(view).div_ceil(es);
    let mut candidates = BTreeSet::new();
    candidate_extents(origins, h, fam, view, limit, &mut candidates);
    candidates
        .into_iter()
        .filter(|&l| matches!(resolve_via(origins, h, fam, view, l, es), Target::Extent(_)))
        .collect()
}

/// Where the extents `view` reads lie, per device: the view's placement. Their total is its
/// referenced count.
pub(crate) fn referenced_devices(
    origins: &impl Origins,
    h: &FamilyHandle,
    fam: &Family,
    view: View,
    es: u64,
) -> crate::placement::DeviceExtents {
    let limit = fam.view_size(view).div_ceil(es);
    let mut candidates = BTreeSet::new();
    candidate_extents(origins, h, fam, view, limit, &mut candidates);
    let mut out = crate::placement::DeviceExtents::default();
    for l in candidates {
        if let Target::Extent(p) = resolve_via(origins, h, fam, view, l, es) {
            out.add(p.device());
        }
    }
    out
}

/// Logical extents below `limit` with an entry in `view`'s maps or its origins'.
fn candidate_extents(
    origins: &impl Origins,
    h: &FamilyHandle,
    fam: &Family,
    view: View,
    limit: u64,
    out: &mut BTreeSet<u64>,
) {
    let first = match view {
        View::Live => fam.snaps.len(),
        View::Snap(i) => i,
    };
    let maps = fam.snaps[first..]
        .iter()
        .map(|s| &s.delta)
        .chain(std::iter::once(&fam.live));
    for m in maps {
        out.extend(m.iter().map(|(l, _)| l).filter(|&l| l < limit));
    }
    origins.with_origin(h, |origin| {
        if let Some((p, pf, v)) = origin {
            candidate_extents(origins, p, pf, v, limit, out);
        }
    });
}
