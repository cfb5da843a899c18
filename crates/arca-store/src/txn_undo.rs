//! Undoing a committing transaction's applied ops when its flush fails, newest first, each
//! exactly (the module doc of txn.rs says why that is possible with host I/O running).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::extent_map::{Entry, ExtentMap, Phys};
use crate::family::{Dirty, Family, FamilyHandle, HookSlot, Snap};
use crate::guards::Guard;
use crate::pool::PoolPending;
use crate::txn_apply::{Applier, insert};

/// What undoes one applied op.
pub(crate) enum Undo {
    /// A created volume or clone: removed again.
    Created(Arc<FamilyHandle>),
    /// A created snapshot (by id): deleted again.
    Snapshot(Arc<FamilyHandle>, u64),
    DeletedSnapshot(Arc<FamilyHandle>, Box<Removal>),
    DeletedVolume(Box<DeletedVolume>),
    VolumeTag(Arc<FamilyHandle>, Option<Vec<u8>>),
    SnapshotTag(Arc<FamilyHandle>, u64, Option<Vec<u8>>),
    VolumeGuards(Arc<FamilyHandle>, Vec<Guard>),
    SnapshotGuards(Arc<FamilyHandle>, u64, Vec<Guard>),
}

pub(crate) struct DeletedVolume {
    pub(crate) handle: Arc<FamilyHandle>,
    pub(crate) name: String,
    pub(crate) live: ExtentMap,
    pub(crate) snaps: Vec<Snap>,
    pub(crate) dirty: Dirty,
    pub(crate) hook: HookSlot,
    /// What the delete added to the pool's pending changes.
    pub(crate) pending: PoolPending,
}

/// How a snapshot's removal changed its family, to put it back exactly.
pub(crate) struct Removal {
    idx: usize,
    snap: Snap,
    /// Logical extents moved into the older snapshot's delta, with the dirty value their key
    /// had there before.
    moved: Vec<(u64, Option<Option<Entry>>)>,
    freed: Vec<Phys>,
    /// The snapshot's own uncommitted entries, dropped with it.
    dirty_dropped: Vec<((u64, u64), Option<Entry>)>,
    had_record: bool,
}

/// Removes the snapshot at `idx`: entries an older snapshot still sees move to it, the rest
/// are freed (after the commit). The caller has checked guards and clones.
pub(crate) fn remove_snapshot(f: &mut Family, idx: usize) -> Removal {
    let snap = f.snaps.remove(idx);
    let older = idx.checked_sub(1);
    let older_prev_gen = if idx >= 2 {
        f.snaps[idx - 2].generation
    } else {
        0
    };
    let mut moved = Vec::new();
    let mut freed = Vec::new();
    for (l, e) in snap.delta.iter() {
        match older {
            Some(o) if e.birth < f.snaps[o].generation => {
                let os = &mut f.snaps[o];
                let replaced = os.delta.insert(l, e);
                assert!(replaced.is_none(), "older snapshot already preserved {l}");
                if e.phys().is_some() {
                    os.delta_real += 1;
                    if e.birth >= older_prev_gen {
                        os.unique += 1;
                    }
                }
                let prev = f.dirty.entries.insert((os.id, l), Some(e));
                moved.push((l, prev));
            }
            _ => {
                if let Some(p) = e.phys() {
                    f.dirty.frees.push(p);
                    freed.push(p);
                }
            }
        }
    }
    // The deleted snapshot's stored entries go with its owner id.
    let keys: Vec<(u64, u64)> = f
        .dirty
        .entries
        .range((snap.id, 0)..=(snap.id, u64::MAX))
        .map(|(k, _)| *k)
        .collect();
    let mut dirty_dropped = Vec::new();
    for k in keys {
        let v = f.dirty.entries.remove(&k).expect("listed above");
        dirty_dropped.push((k, v));
    }
    f.dirty.deleted_snapshots.push(snap.id);
    let had_record = f.dirty.snapshot_records.contains(&snap.id);
    f.dirty.snapshot_records.retain(|&id| id != snap.id);
    recount_after(f, idx);
    f.dirty.record = true;
    Removal {
        idx,
        snap,
        moved,
        freed,
        dirty_dropped,
        had_record,
    }
}

/// The next newer image of position `idx` has a different older neighbour now.
fn recount_after(f: &mut Family, idx: usize) {
    if idx < f.snaps.len() {
        f.recount_snap_unique(idx);
    } else {
        f.recount_live_unique();
    }
}

/// Puts back a snapshot [`remove_snapshot`] removed, with nothing changed in the family since
/// (its locks held), except what a failed flush drained and put back.
/// Snapshot `sid` of `f`, its record marked to be rewritten. It exists: undo runs in the
/// reverse order of the operations, so a snapshot is restored before its changes are undone.
fn undone_snap(f: &mut Family, sid: u64) -> &mut Snap {
    let i = f.snap_index(sid).expect("undone in reverse order");
    f.dirty.snapshot_records.push(sid);
    &mut f.snaps[i]
}

fn restore_snapshot(f: &mut Family, r: Removal) {
    let idx = r.idx;
    if let Some(o) = idx.checked_sub(1) {
        let older_prev_gen = if idx >= 2 {
            f.snaps[idx - 2].generation
        } else {
            0
        };
        let os = &mut f.snaps[o];
        let oid = os.id;
        for (l, prev) in &r.moved {
            let e = os.delta.remove(*l).expect("moved there by the removal");
            if e.phys().is_some() {
                os.delta_real -= 1;
                if e.birth >= older_prev_gen {
                    os.unique -= 1;
                }
            }
            match prev {
                Some(v) => f.dirty.entries.insert((oid, *l), *v),
                None => f.dirty.entries.remove(&(oid, *l)),
            };
        }
    }
    let freed: HashSet<Phys> = r.freed.iter().copied().collect();
    f.dirty.frees.retain(|p| !freed.contains(p));
    for (k, v) in r.dirty_dropped {
        f.dirty.entries.insert(k, v);
    }
    let id = r.snap.id;
    f.dirty.deleted_snapshots.retain(|&x| x != id);
    if r.had_record {
        f.dirty.snapshot_records.push(id);
    }
    f.snaps.insert(idx, r.snap);
    recount_after(f, idx + 1);
}

impl Applier<'_, '_> {
    /// Undoes every applied op, newest first.
    pub(crate) fn undo_all(&mut self) {
        while let Some(u) = self.undo.pop() {
            self.undo_one(u);
        }
    }

    fn undo_one(&mut self, u: Undo) {
        let pool = self.pool;
        match u {
            Undo::Created(h) => {
                // As a delete would: what host writes allocated meanwhile is freed after the
                // next durable commit.
                let add = self.locks.with(&h, |f| {
                    let mut add = PoolPending::default();
                    let dirty = std::mem::take(&mut f.dirty);
                    add.frees.extend(dirty.frees);
                    add.frees
                        .extend(f.live.iter().filter_map(|(_, e)| e.phys()));
                    assert!(
                        f.snaps.is_empty(),
                        "snapshots of a new volume are undone first"
                    );
                    f.live = ExtentMap::new();
                    f.deleted = true;
                    if f.hook.0.take().is_some() {
                        pool.inner.hooks.fetch_sub(1, Ordering::SeqCst);
                    }
                    add
                });
                pool.inner.pending.lock().frees.extend(add.frees);
                let name = h.cell.read().name.clone();
                if self
                    .reg
                    .by_name
                    .get(&name)
                    .is_some_and(|x| Arc::ptr_eq(x, &h))
                {
                    self.reg.by_name.remove(&name);
                }
                self.reg.by_id.remove(&h.id);
            }
            Undo::Snapshot(h, id) => self.locks.with(&h, |f| {
                let idx = f.snap_index(id).expect("undone in reverse order");
                remove_snapshot(f, idx);
            }),
            Undo::DeletedSnapshot(h, r) => self.locks.with(&h, |f| restore_snapshot(f, *r)),
            Undo::DeletedVolume(d) => {
                let d = *d;
                let had_hook = d.hook.0.is_some();
                self.locks.with(&d.handle, |f| {
                    f.live = d.live;
                    f.snaps = d.snaps;
                    let newer = std::mem::replace(&mut f.dirty, d.dirty);
                    assert!(newer.is_empty(), "a deleted volume takes no writes");
                    f.hook = d.hook;
                    f.deleted = false;
                });
                if had_hook {
                    pool.inner.hooks.fetch_add(1, Ordering::SeqCst);
                }
                {
                    let mut p = pool.inner.pending.lock();
                    let a = d.pending;
                    let frees: HashSet<Phys> = a.frees.into_iter().collect();
                    p.frees.retain(|x| !frees.contains(x));
                    let purge: HashSet<u64> = a.purge_owners.into_iter().collect();
                    p.purge_owners.retain(|x| !purge.contains(x));
                    let vols: HashSet<u64> = a.deleted_volumes.into_iter().collect();
                    p.deleted_volumes.retain(|x| !vols.contains(x));
                    let snaps: HashSet<u64> = a.deleted_snapshots.into_iter().collect();
                    p.deleted_snapshots.retain(|x| !snaps.contains(x));
                }
                insert(self.reg, d.handle, &d.name);
            }
            Undo::VolumeTag(h, old) => self.locks.with(&h, |f| {
                f.tag = old;
                f.dirty.record = true;
            }),
            Undo::SnapshotTag(h, sid, old) => self.locks.with(&h, |f| {
                undone_snap(f, sid).tag = old;
            }),
            Undo::VolumeGuards(h, old) => self.locks.with(&h, |f| {
                f.guards = old;
                f.dirty.record = true;
            }),
            Undo::SnapshotGuards(h, sid, old) => self.locks.with(&h, |f| {
                undone_snap(f, sid).guards = old;
            }),
        }
    }
}
