//! Committing a transaction: applying its planned ops to memory, flushing, and undoing them
//! (txn_undo.rs) when the flush fails (the module doc of txn.rs says why each undo is exact).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLockWriteGuard;

use crate::error::{Error, ErrorKind, Result};
use crate::extent_map::ExtentMap;
use crate::family::{Dirty, Family, FamilyHandle, Snap};
use crate::guards::{self, Guard, GuardEffect, GuardOwner};
use crate::placement::DeviceExtents;
use crate::pool::{Pool, PoolPending, Registry, SNAPSHOTS_PER_VOLUME_MAX, now_unix};
use crate::txn::{Op, Txn, exists};
use crate::txn_undo::{DeletedVolume, Undo, remove_snapshot};

/// Family write locks a committing transaction holds across its flush (txn.rs), by id.
#[derive(Default)]
pub(crate) struct Locks<'g> {
    held: Vec<(u64, RwLockWriteGuard<'g, Family>)>,
}

impl<'g> Locks<'g> {
    /// Locks `handles` by descending id (the pool's order among families).
    fn lock(handles: &'g [Arc<FamilyHandle>]) -> Locks<'g> {
        let mut order: Vec<&'g Arc<FamilyHandle>> = handles.iter().collect();
        order.sort_by_key(|h| std::cmp::Reverse(h.id));
        Locks {
            held: order.into_iter().map(|h| (h.id, h.cell.write())).collect(),
        }
    }

    /// Runs `f` on the family, through the held guard or under its lock taken now.
    pub(crate) fn with<R>(&mut self, h: &FamilyHandle, f: impl FnOnce(&mut Family) -> R) -> R {
        match self.held.iter_mut().find(|(id, _)| *id == h.id) {
            Some((_, g)) => f(g),
            None => f(&mut h.cell.write()),
        }
    }

    /// Runs `f` on several families at once (in the order given): through the held guards,
    /// and under locks taken now, by descending id, for the others (in a holding commit those
    /// are families it created, which no other thread can reach yet).
    fn with_many<R>(
        &mut self,
        hs: &[Arc<FamilyHandle>],
        f: impl FnOnce(&mut [&mut Family]) -> R,
    ) -> R {
        let held_ids: Vec<u64> = self.held.iter().map(|(id, _)| *id).collect();
        let mut rest: Vec<usize> = (0..hs.len())
            .filter(|&i| !held_ids.contains(&hs[i].id))
            .collect();
        rest.sort_by_key(|&i| std::cmp::Reverse(hs[i].id));
        let mut own: Vec<(usize, RwLockWriteGuard<'_, Family>)> =
            rest.into_iter().map(|i| (i, hs[i].cell.write())).collect();
        let mut refs: Vec<(usize, &mut Family)> = Vec::with_capacity(hs.len());
        for (id, g) in self.held.iter_mut() {
            if let Some(i) = hs.iter().position(|h| h.id == *id) {
                refs.push((i, &mut **g));
            }
        }
        refs.extend(own.iter_mut().map(|(i, g)| (*i, &mut **g)));
        refs.sort_by_key(|(i, _)| *i);
        let mut refs: Vec<&mut Family> = refs.into_iter().map(|(_, f)| f).collect();
        f(&mut refs)
    }
}

fn new_family(
    name: &str,
    size: u64,
    placement: Option<u32>,
    referenced: u64,
    live_devices: DeviceExtents,
) -> Family {
    Family {
        referenced,
        live_devices,
        dirty: Dirty {
            record: true,
            ..Dirty::default()
        },
        ..Family::new(name.to_string(), size, placement, now_unix())
    }
}

pub(crate) fn insert(reg: &mut Registry, h: Arc<FamilyHandle>, name: &str) {
    reg.by_name.insert(name.to_string(), h.clone());
    reg.by_id.insert(h.id, h);
}

fn has_clones(reg: &Registry, family: u64, snap: Option<u64>) -> bool {
    !crate::control::clones_of(reg, family, snap).is_empty()
}

fn busy(what: String) -> Error {
    Error::new(ErrorKind::Busy, what)
}

pub(crate) struct Applier<'r, 'g> {
    pub(crate) pool: &'r Pool,
    pub(crate) reg: &'r mut Registry,
    pub(crate) locks: &'r mut Locks<'g>,
    pub(crate) undo: Vec<Undo>,
}

impl Applier<'_, '_> {
    /// Applies one op, checking it again against memory (the planned view already did; this
    /// catches what changed outside transactions, such as a rename).
    fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreateVolume {
                id,
                name,
                size,
                placement,
            } => self.create_volume(*id, name, *size, *placement),
            Op::Clone {
                id,
                volume,
                snapshot,
                name,
                placement,
            } => self.clone_snapshot(*id, volume, snapshot, name, *placement),
            Op::CreateSnapshots { items } => self.create_snapshots(items),
            Op::DeleteSnapshot { volume, name } => self.delete_snapshot(volume, name),
            Op::DeleteVolume {
                name,
                with_snapshots,
            } => self.delete_volume(name, *with_snapshots),
            Op::VolumeTag { volume, tag } => self.volume_tag(volume, tag),
            Op::SnapshotTag {
                volume,
                snapshot,
                tag,
            } => self.snapshot_tag(volume, snapshot, tag),
            Op::Guard {
                volume,
                snapshot,
                owner,
                guard,
            } => self.guard(volume, snapshot.as_deref(), *owner, guard.as_ref()),
        }
    }

    fn create_volume(
        &mut self,
        id: u64,
        name: &str,
        size: u64,
        placement: Option<u32>,
    ) -> Result<()> {
        if self.reg.by_name.contains_key(name) {
            return Err(exists("volume", name));
        }
        let h = Arc::new(FamilyHandle {
            id,
            parent: None,
            cell: parking_lot::RwLock::new(new_family(
                name,
                size,
                placement,
                0,
                DeviceExtents::default(),
            )),
        });
        insert(self.reg, h.clone(), name);
        self.undo.push(Undo::Created(h));
        Ok(())
    }

    fn clone_snapshot(
        &mut self,
        id: u64,
        volume: &str,
        snapshot: &str,
        name: &str,
        placement: Option<u32>,
    ) -> Result<()> {
        if self.reg.by_name.contains_key(name) {
            return Err(exists("volume", name));
        }
        let ph = self.reg.volume(volume)?;
        let (sid, size, referenced, devices, pp) = self.locks.with(&ph, |pf| {
            let i = pf.snap_named(volume, snapshot)?;
            let s = &pf.snaps[i];
            Ok::<_, Error>((s.id, s.size, s.referenced, s.devices.clone(), pf.placement))
        })?;
        let fam = new_family(name, size, placement.or(pp), referenced, devices);
        let h = Arc::new(FamilyHandle {
            id,
            parent: Some((ph, sid)),
            cell: parking_lot::RwLock::new(fam),
        });
        insert(self.reg, h.clone(), name);
        self.undo.push(Undo::Created(h));
        Ok(())
    }

    fn delete_snapshot(&mut self, volume: &str, name: &str) -> Result<()> {
        let h = self.reg.volume(volume)?;
        let reg = &*self.reg;
        let removal = self.locks.with(&h, |f| {
            let idx = f.snap_named(volume, name)?;
            let what = format!("snapshot {volume}@{name}");
            if let Some(e) = guards::refusal(&what, &f.snaps[idx].guards, GuardEffect::NO_DELETE) {
                return Err(e);
            }
            if has_clones(reg, h.id, Some(f.snaps[idx].id)) {
                return Err(busy(format!("{what} has clones; delete them first")));
            }
            Ok(remove_snapshot(f, idx))
        })?;
        self.undo.push(Undo::DeletedSnapshot(h, Box::new(removal)));
        Ok(())
    }

    fn volume_tag(&mut self, volume: &str, tag: &Option<Vec<u8>>) -> Result<()> {
        let h = self.reg.volume(volume)?;
        let old = self.locks.with(&h, |f| {
            f.dirty.record = true;
            std::mem::replace(&mut f.tag, tag.clone())
        });
        self.undo.push(Undo::VolumeTag(h, old));
        Ok(())
    }

    fn snapshot_tag(&mut self, volume: &str, snapshot: &str, tag: &Option<Vec<u8>>) -> Result<()> {
        let h = self.reg.volume(volume)?;
        let (sid, old) = self.locks.with(&h, |f| {
            let i = f.snap_named(volume, snapshot)?;
            let s = &mut f.snaps[i];
            let old = std::mem::replace(&mut s.tag, tag.clone());
            let sid = s.id;
            f.dirty.snapshot_records.push(sid);
            Ok::<_, Error>((sid, old))
        })?;
        self.undo.push(Undo::SnapshotTag(h, sid, old));
        Ok(())
    }

    /// Puts `guard` (or, when `None`, removes `owner`'s) on a volume or one of its snapshots.
    fn guard(
        &mut self,
        volume: &str,
        snapshot: Option<&str>,
        owner: GuardOwner,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let h = self.reg.volume(volume)?;
        let change = |set: &mut Vec<Guard>| -> Result<Vec<Guard>> {
            let old = set.clone();
            match guard {
                Some(g) => guards::put(set, g.clone())?,
                None => guards::remove(set, owner),
            }
            Ok(old)
        };
        match snapshot {
            None => {
                let old = self.locks.with(&h, |f| {
                    f.dirty.record = true;
                    change(&mut f.guards)
                })?;
                self.undo.push(Undo::VolumeGuards(h, old));
            }
            Some(s) => {
                let (sid, old) = self.locks.with(&h, |f| {
                    let i = f.snap_named(volume, s)?;
                    let old = change(&mut f.snaps[i].guards)?;
                    let sid = f.snaps[i].id;
                    f.dirty.snapshot_records.push(sid);
                    Ok::<_, Error>((sid, old))
                })?;
                self.undo.push(Undo::SnapshotGuards(h, sid, old));
            }
        }
        Ok(())
    }

    /// Every family's lock held together, so no write lands between the first snapshot and
    /// the last.
    fn create_snapshots(&mut self, items: &[(String, String, u64)]) -> Result<()> {
        let hs: Vec<Arc<FamilyHandle>> = items
            .iter()
            .map(|(v, _, _)| self.reg.volume(v))
            .collect::<Result<_>>()?;
        self.locks.with_many(&hs, |fs| {
            for (f, (volume, name, _)) in fs.iter().zip(items) {
                if f.snaps.iter().any(|s| &s.name == name) {
                    return Err(exists("snapshot", &format!("{volume}@{name}")));
                }
                if f.snaps.len() >= SNAPSHOTS_PER_VOLUME_MAX || f.gen_current >= u32::MAX - 1 {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        format!("volume {volume} has reached its limit of snapshots"),
                    ));
                }
            }
            let now = now_unix();
            for (f, (_, name, id)) in fs.iter_mut().zip(items) {
                let generation = f.gen_current + 1;
                let snap = Snap {
                    id: *id,
                    name: name.clone(),
                    generation,
                    size: f.size,
                    created_unix: now,
                    referenced: f.referenced,
                    devices: f.live_devices.clone(),
                    delta: ExtentMap::new(),
                    delta_real: 0,
                    unique: 0,
                    tag: None,
                    guards: Vec::new(),
                };
                f.gen_current = generation;
                f.live_unique = 0;
                f.snaps.push(snap);
                f.dirty.record = true;
                f.dirty.snapshot_records.push(*id);
            }
            Ok(())
        })?;
        for (h, (_, _, id)) in hs.into_iter().zip(items) {
            self.undo.push(Undo::Snapshot(h, *id));
        }
        Ok(())
    }

    fn delete_volume(&mut self, name: &str, with_snapshots: bool) -> Result<()> {
        let h = self.reg.volume(name)?;
        let reg = &*self.reg;
        let pool = self.pool;
        let deleted = self.locks.with(&h, |f| {
            if has_clones(reg, h.id, None) {
                return Err(busy(format!(
                    "volume {name} has clones of its snapshots; delete them first"
                )));
            }
            let what = format!("volume {name}");
            if let Some(e) = guards::refusal(&what, &f.guards, GuardEffect::NO_DELETE) {
                return Err(e);
            }
            for s in &f.snaps {
                let what = format!("snapshot {name}@{}", s.name);
                if let Some(e) = guards::refusal(&what, &s.guards, GuardEffect::NO_DELETE) {
                    return Err(e);
                }
            }
            if !f.snaps.is_empty() && !with_snapshots {
                return Err(busy(format!("volume {name} has snapshots")));
            }
            let dirty = std::mem::take(&mut f.dirty);
            let mut add = PoolPending::default();
            add.frees.extend(dirty.frees.iter().copied());
            add.purge_owners
                .extend(dirty.deleted_snapshots.iter().copied());
            add.deleted_snapshots
                .extend(dirty.deleted_snapshots.iter().copied());
            add.frees
                .extend(f.live.iter().filter_map(|(_, e)| e.phys()));
            add.purge_owners.push(h.id);
            add.deleted_volumes.push(h.id);
            for s in &f.snaps {
                add.frees
                    .extend(s.delta.iter().filter_map(|(_, e)| e.phys()));
                add.purge_owners.push(s.id);
                add.deleted_snapshots.push(s.id);
            }
            let hook = std::mem::take(&mut f.hook);
            if hook.0.is_some() {
                pool.inner.hooks.fetch_sub(1, Ordering::SeqCst);
            }
            f.deleted = true;
            Ok(DeletedVolume {
                handle: h.clone(),
                name: name.to_string(),
                live: std::mem::take(&mut f.live),
                snaps: std::mem::take(&mut f.snaps),
                dirty,
                hook,
                pending: add,
            })
        })?;
        {
            let mut p = self.pool.inner.pending.lock();
            let a = &deleted.pending;
            p.frees.extend(a.frees.iter().copied());
            p.purge_owners.extend(a.purge_owners.iter().copied());
            p.deleted_volumes.extend(a.deleted_volumes.iter().copied());
            p.deleted_snapshots
                .extend(a.deleted_snapshots.iter().copied());
        }
        self.reg.by_name.remove(name);
        self.reg.by_id.remove(&h.id);
        self.undo.push(Undo::DeletedVolume(Box::new(deleted)));
        Ok(())
    }
}

/// The families a holding commit locks: those its ops name that exist, and their clones
/// (transitively), so that no thread holding a lock the flush needs waits for a held one.
fn families_to_hold(reg: &Registry, ops: &[Op]) -> Vec<Arc<FamilyHandle>> {
    let mut ids: HashSet<u64> = HashSet::new();
    let mut named = |n: &str| {
        if let Some(h) = reg.by_name.get(n) {
            ids.insert(h.id);
        }
    };
    for op in ops {
        match op {
            Op::CreateVolume { .. } => {}
            Op::Clone { volume, .. }
            | Op::DeleteSnapshot { volume, .. }
            | Op::VolumeTag { volume, .. }
            | Op::SnapshotTag { volume, .. }
            | Op::Guard { volume, .. } => named(volume),
            Op::DeleteVolume { name, .. } => named(name),
            Op::CreateSnapshots { items } => items.iter().for_each(|(v, _, _)| named(v)),
        }
    }
    // Clones have larger ids than their origins: one pass in id order closes the set.
    let mut all: Vec<&Arc<FamilyHandle>> = reg.by_id.values().collect();
    all.sort_by_key(|h| h.id);
    for h in &all {
        if let Some((p, _)) = &h.parent
            && ids.contains(&p.id)
        {
            ids.insert(h.id);
        }
    }
    all.into_iter()
        .filter(|h| ids.contains(&h.id))
        .cloned()
        .collect()
}

impl Txn<'_> {
    /// Applies the planned changes and commits them durably, in one metadata transaction; on
    /// any error memory is as before the call (module doc of txn.rs).
    pub fn commit(mut self) -> Result<()> {
        let mut state = self.lock.take().expect("a transaction commits once");
        let ops = std::mem::take(&mut self.ops);
        let app = std::mem::take(&mut self.app);
        let pool = self.pool;
        // A deleted snapshot's undo needs the families still (txn.rs); a deleted volume's
        // does not, but hosts writing to it would see it gone while the commit is undecided.
        let hold = ops
            .iter()
            .any(|o| matches!(o, Op::DeleteSnapshot { .. } | Op::DeleteVolume { .. }));
        let mut reg = Some(pool.inner.registry.write());
        let handles = if hold {
            families_to_hold(reg.as_ref().expect("locked above"), &ops)
        } else {
            Vec::new()
        };
        let mut locks = Locks::lock(&handles);
        let mut a = Applier {
            pool,
            reg: reg.as_mut().expect("locked above"),
            locks: &mut locks,
            undo: Vec::new(),
        };
        if let Err(e) = ops.iter().try_for_each(|op| a.apply(op)) {
            a.undo_all();
            return Err(e);
        }
        let undo = std::mem::take(&mut a.undo);
        let rows = app.len();
        // Under the registry lock, as every pool-level pending change is made.
        pool.inner.pending.lock().app_ops.extend(app);
        let result = if hold {
            pool.flush_with(&mut state, reg.as_deref(), &mut locks)
        } else {
            reg = None;
            pool.flush_with(&mut state, None, &mut locks)
        };
        let Err(e) = result else { return Ok(()) };
        let mut reg = reg.unwrap_or_else(|| pool.inner.registry.write());
        {
            // A failed flush put back exactly what it tried, these rows last, and nothing was
            // added since: the commit lock is still held.
            let mut p = pool.inner.pending.lock();
            let keep = p.app_ops.len().saturating_sub(rows);
            p.app_ops.truncate(keep);
        }
        let mut a = Applier {
            pool,
            reg: &mut reg,
            locks: &mut locks,
            undo,
        };
        a.undo_all();
        Err(e)
    }
}
