//! Control operations: volumes, snapshots, clones, and what the pool reports about them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;

use crate::error::{Error, ErrorKind, Result, not_found};
use crate::extent_map::ExtentMap;
use crate::family::{Dirty, Family, FamilyHandle, Snap};
use crate::names;
use crate::pool::{
    DeviceStatus, Pool, PoolStatus, Registry, SNAPSHOTS_PER_VOLUME_MAX, SnapshotInfo, VolumeInfo,
    check_size, hex, now_unix,
};

impl Pool {
    fn check_placement(&self, placement: Option<u32>) -> Result<()> {
        match placement {
            Some(d) if d as usize >= self.inner.devices.len() => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "device {d} does not exist (the pool has devices 0 to {})",
                    self.inner.devices.len() - 1
                ),
            )),
            _ => Ok(()),
        }
    }

    fn new_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn lookup(&self, name: &str) -> Result<Arc<FamilyHandle>> {
        self.inner
            .registry
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(format_args!("volume {name}")))
    }

    /// Creates a thin volume of `size` bytes (a multiple of 512), allocating nothing yet.
    pub fn create_volume(
        &self,
        name: &str,
        size: u64,
        placement: Option<u32>,
    ) -> Result<VolumeInfo> {
        let mut t = self.transaction();
        t.create_volume(name, size, placement)?;
        t.commit()?;
        self.volume(name)
    }

    pub(crate) fn create_volume_mem(
        &self,
        name: &str,
        size: u64,
        placement: Option<u32>,
    ) -> Result<()> {
        names::validate("volume", name)?;
        check_size(size)?;
        self.check_placement(placement)?;
        {
            let mut reg = self.inner.registry.write();
            if reg.by_name.contains_key(name) {
                return Err(exists("volume", name));
            }
            let id = self.new_id();
            let dirty = Dirty {
                record: true,
                ..Dirty::default()
            };
            let fam = Family {
                name: name.to_string(),
                size,
                gen_current: 0,
                placement,
                created_unix: now_unix(),
                live: ExtentMap::new(),
                snaps: Vec::new(),
                referenced: 0,
                live_devices: Default::default(),
                live_real: 0,
                live_unique: 0,
                deleted: false,
                dirty,
                tag: None,
                guard: None,
                hook: Default::default(),
            };
            insert(&mut reg, id, None, fam);
        }
        Ok(())
    }

    /// Grows a volume. Shrinking is refused: it would discard data a host may still need.
    pub fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeInfo> {
        check_size(size)?;
        let h = self.lookup(name)?;
        {
            let mut f = h.cell.write();
            if f.deleted {
                return Err(not_found(format_args!("volume {name}")));
            }
            if let Some(g) = &f.guard {
                return Err(guarded(&format!("volume {name}"), g));
            }
            if size < f.size {
                return Err(Error::new(
                    ErrorKind::InvalidSize,
                    format!(
                        "volume {name} is {} bytes; shrinking to {size} is not supported",
                        f.size
                    ),
                ));
            }
            f.size = size;
            f.dirty.record = true;
        }
        self.flush()?;
        self.volume(name)
    }

    pub fn rename_volume(&self, old: &str, new: &str) -> Result<VolumeInfo> {
        names::validate("volume", new)?;
        {
            let mut reg = self.inner.registry.write();
            let h = reg
                .by_name
                .get(old)
                .cloned()
                .ok_or_else(|| not_found(format_args!("volume {old}")))?;
            if reg.by_name.contains_key(new) {
                return Err(exists("volume", new));
            }
            reg.by_name.remove(old);
            reg.by_name.insert(new.to_string(), h.clone());
            let mut f = h.cell.write();
            f.name = new.to_string();
            f.dirty.record = true;
        }
        self.flush()?;
        self.volume(new)
    }

    /// Deletes a volume. With snapshots it is refused unless `with_snapshots`; while clones of
    /// its snapshots exist it is always refused (delete the clones first).
    pub fn delete_volume(&self, name: &str, with_snapshots: bool) -> Result<()> {
        let mut t = self.transaction();
        t.delete_volume(name, with_snapshots)?;
        t.commit()
    }

    /// Whether deleting the volume (with its snapshots or not) would be refused, and why,
    /// without deleting it: for callers that must act first (disconnect hosts) only when the
    /// delete would go ahead.
    pub fn check_delete_volume(&self, name: &str, with_snapshots: bool) -> Result<()> {
        let reg = self.inner.registry.read();
        let h = reg
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(format_args!("volume {name}")))?;
        let f = h.cell.read();
        delete_refusal(&reg, &h, &f, name, with_snapshots).map_or(Ok(()), Err)
    }

    pub(crate) fn delete_volume_mem(&self, name: &str, with_snapshots: bool) -> Result<()> {
        {
            let mut reg = self.inner.registry.write();
            let h = reg
                .by_name
                .get(name)
                .cloned()
                .ok_or_else(|| not_found(format_args!("volume {name}")))?;
            let mut f = h.cell.write();
            if let Some(e) = delete_refusal(&reg, &h, &f, name, with_snapshots) {
                return Err(e);
            }
            let mut pending = self.inner.pending.lock();
            let dirty = std::mem::take(&mut f.dirty);
            pending.frees.extend(dirty.frees);
            pending
                .purge_owners
                .extend(dirty.deleted_snapshots.iter().copied());
            pending.deleted_snapshots.extend(dirty.deleted_snapshots);
            pending
                .frees
                .extend(f.live.iter().filter_map(|(_, e)| e.phys()));
            pending.purge_owners.push(h.id);
            pending.deleted_volumes.push(h.id);
            for s in &f.snaps {
                pending
                    .frees
                    .extend(s.delta.iter().filter_map(|(_, e)| e.phys()));
                pending.purge_owners.push(s.id);
                pending.deleted_snapshots.push(s.id);
            }
            f.live = ExtentMap::new();
            f.snaps.clear();
            f.deleted = true;
            if f.hook.0.take().is_some() {
                self.inner.hooks.fetch_sub(1, Ordering::SeqCst);
            }
            drop(f);
            reg.by_name.remove(name);
            reg.by_id.remove(&h.id);
        }
        Ok(())
    }

    /// Takes a snapshot: O(1) in the volume's size and content. Every write that completed
    /// before the call is in it; none issued after is. Durable on return.
    pub fn create_snapshot(&self, volume: &str, name: &str) -> Result<SnapshotInfo> {
        let mut t = self.transaction();
        t.create_snapshots(&[(volume, name)])?;
        t.commit()?;
        self.snapshot(volume, name)
    }

    /// Snapshots several volumes at one instant: every family's write lock is held together,
    /// so no write to any of them lands between the first snapshot and the last. All or none.
    pub(crate) fn create_snapshots_mem(&self, items: &[(&str, &str)]) -> Result<Vec<u64>> {
        let mut handles = Vec::with_capacity(items.len());
        for &(volume, name) in items {
            names::validate("snapshot", name)?;
            let h = self.lookup(volume)?;
            if handles
                .iter()
                .any(|(x, _): &(Arc<FamilyHandle>, &str)| x.id == h.id)
            {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("volume {volume} is named twice"),
                ));
            }
            handles.push((h, name));
        }
        // Lock order among families: by descending id, so two multi-snapshots cannot deadlock,
        // and a clone (whose id is above its origin's) comes before its origin, as in a write
        // to the clone, which takes the origin's lock inside its own.
        let mut order: Vec<usize> = (0..handles.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(handles[i].0.id));
        let mut guards: Vec<Option<parking_lot::RwLockWriteGuard<'_, Family>>> =
            (0..handles.len()).map(|_| None).collect();
        for &i in &order {
            guards[i] = Some(handles[i].0.cell.write());
        }
        for (i, &(volume, name)) in items.iter().enumerate() {
            let f = guards[i].as_ref().expect("locked above");
            if f.deleted {
                return Err(not_found(format_args!("volume {volume}")));
            }
            if f.snaps.iter().any(|s| s.name == name) {
                return Err(exists("snapshot", &format!("{volume}@{name}")));
            }
            if f.snaps.len() >= SNAPSHOTS_PER_VOLUME_MAX || f.gen_current == u32::MAX - 1 {
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    format!(
                        "volume {volume} has reached its limit of {SNAPSHOTS_PER_VOLUME_MAX} \
                         snapshots"
                    ),
                ));
            }
        }
        let now = now_unix();
        let mut ids = Vec::with_capacity(items.len());
        for (i, &(_, name)) in items.iter().enumerate() {
            let f = guards[i].as_mut().expect("locked above");
            let id = self.new_id();
            let generation = f.gen_current + 1;
            let snap = Snap {
                id,
                name: name.to_string(),
                generation,
                size: f.size,
                created_unix: now,
                referenced: f.referenced,
                devices: f.live_devices.clone(),
                delta: ExtentMap::new(),
                delta_real: 0,
                unique: 0,
                tag: None,
                guard: None,
            };
            f.gen_current = generation;
            f.live_unique = 0;
            f.snaps.push(snap);
            f.dirty.record = true;
            f.dirty.snapshot_records.push(id);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Deletes a snapshot, in any order. Refused while clones of it exist.
    pub fn delete_snapshot(&self, volume: &str, name: &str) -> Result<()> {
        let mut t = self.transaction();
        t.delete_snapshot(volume, name)?;
        t.commit()
    }

    pub(crate) fn delete_snapshot_mem(&self, volume: &str, name: &str) -> Result<()> {
        {
            // The registry lock keeps clones from being made while this one goes.
            let reg = self.inner.registry.write();
            let h = reg
                .by_name
                .get(volume)
                .cloned()
                .ok_or_else(|| not_found(format_args!("volume {volume}")))?;
            let mut f = h.cell.write();
            let idx = f
                .snaps
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| not_found(format_args!("snapshot {volume}@{name}")))?;
            if let Some(g) = &f.snaps[idx].guard {
                return Err(guarded(&format!("snapshot {volume}@{name}"), g));
            }
            let clones = clones_of(&reg, h.id, Some(f.snaps[idx].id));
            if !clones.is_empty() {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "snapshot {volume}@{name} has clones: {}; delete them first",
                        clones.join(", ")
                    ),
                ));
            }
            let f = &mut *f;
            let snap = f.snaps.remove(idx);
            // Entries an older snapshot still sees move to it; the rest are freed.
            let older = idx.checked_sub(1);
            let older_prev_gen = if idx >= 2 {
                f.snaps[idx - 2].generation
            } else {
                0
            };
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
                        f.dirty.entries.insert((os.id, l), Some(e));
                    }
                    _ => {
                        if let Some(p) = e.phys() {
                            f.dirty.frees.push(p);
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
            for k in keys {
                f.dirty.entries.remove(&k);
            }
            f.dirty.deleted_snapshots.push(snap.id);
            f.dirty.snapshot_records.retain(|&id| id != snap.id);
            // The next newer image now has a different older neighbour.
            if idx < f.snaps.len() {
                f.recount_snap_unique(idx);
            } else {
                f.recount_live_unique();
            }
            f.dirty.record = true;
        }
        Ok(())
    }

    /// Creates a writable volume from a snapshot, sharing its extents until written.
    pub fn clone_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
        name: &str,
        placement: Option<u32>,
    ) -> Result<VolumeInfo> {
        let mut t = self.transaction();
        t.clone_snapshot(volume, snapshot, name, placement)?;
        t.commit()?;
        self.volume(name)
    }

    pub(crate) fn clone_snapshot_mem(
        &self,
        volume: &str,
        snapshot: &str,
        name: &str,
        placement: Option<u32>,
    ) -> Result<()> {
        names::validate("volume", name)?;
        self.check_placement(placement)?;
        {
            let mut reg = self.inner.registry.write();
            if reg.by_name.contains_key(name) {
                return Err(exists("volume", name));
            }
            let ph = reg
                .by_name
                .get(volume)
                .cloned()
                .ok_or_else(|| not_found(format_args!("volume {volume}")))?;
            let (snap_id, size, referenced, devices, parent_placement) = {
                let pf = ph.cell.read();
                let s = pf
                    .snaps
                    .iter()
                    .find(|s| s.name == snapshot)
                    .ok_or_else(|| not_found(format_args!("snapshot {volume}@{snapshot}")))?;
                (s.id, s.size, s.referenced, s.devices.clone(), pf.placement)
            };
            let id = self.new_id();
            let dirty = Dirty {
                record: true,
                ..Dirty::default()
            };
            let fam = Family {
                name: name.to_string(),
                size,
                gen_current: 0,
                placement: placement.or(parent_placement),
                created_unix: now_unix(),
                live: ExtentMap::new(),
                snaps: Vec::new(),
                referenced,
                live_devices: devices,
                live_real: 0,
                live_unique: 0,
                deleted: false,
                dirty,
                tag: None,
                guard: None,
                hook: Default::default(),
            };
            insert(&mut reg, id, Some((ph, snap_id)), fam);
        }
        Ok(())
    }

    pub fn volumes(&self) -> Vec<VolumeInfo> {
        let handles: Vec<Arc<FamilyHandle>> = self
            .inner
            .registry
            .read()
            .by_name
            .values()
            .cloned()
            .collect();
        handles.iter().filter_map(|h| self.volume_info(h)).collect()
    }

    pub fn volume(&self, name: &str) -> Result<VolumeInfo> {
        let h = self.lookup(name)?;
        self.volume_info(&h)
            .ok_or_else(|| not_found(format_args!("volume {name}")))
    }

    fn volume_info(&self, h: &FamilyHandle) -> Option<VolumeInfo> {
        let es = self.inner.extent_size;
        let origin = h.parent.as_ref().map(|(p, sid)| {
            let pf = p.cell.read();
            let sname = pf
                .snap_index(*sid)
                .map_or_else(String::new, |i| pf.snaps[i].name.clone());
            (pf.name.clone(), sname)
        });
        let f = h.cell.read();
        if f.deleted {
            return None;
        }
        let owned = f.live_real + f.snaps.iter().map(|s| s.delta_real).sum::<u64>();
        Some(VolumeInfo {
            id: h.id,
            name: f.name.clone(),
            size: f.size,
            created_unix: f.created_unix,
            placement: f.placement,
            origin,
            snapshots: f.snaps.len(),
            referenced_bytes: f.referenced * es,
            device_bytes: f.live_devices.bytes(self.inner.devices.len(), es),
            unique_bytes: f.live_unique * es,
            owned_bytes: owned * es,
            tag: f.tag.clone(),
            guard: f.guard.clone(),
        })
    }

    /// Snapshots of one volume, oldest first.
    pub fn snapshots(&self, volume: &str) -> Result<Vec<SnapshotInfo>> {
        let h = self.lookup(volume)?;
        let reg = self.inner.registry.read();
        let f = h.cell.read();
        Ok(f.snaps
            .iter()
            .map(|s| {
                snapshot_info(
                    &reg,
                    &h,
                    &f,
                    s,
                    self.inner.extent_size,
                    self.inner.devices.len(),
                )
            })
            .collect())
    }

    pub fn snapshot(&self, volume: &str, name: &str) -> Result<SnapshotInfo> {
        self.snapshots(volume)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| not_found(format_args!("snapshot {volume}@{name}")))
    }

    /// The pool's allocation unit in bytes.
    pub fn extent_size(&self) -> u64 {
        self.inner.extent_size
    }

    /// Capacity and use of every device, cheaply (no metadata walk, unlike [`Pool::status`]).
    pub fn device_status(&self) -> Vec<DeviceStatus> {
        let inner = &self.inner;
        let es = inner.extent_size;
        let alloc = inner.alloc.lock();
        inner
            .superblocks
            .iter()
            .zip(&inner.devices)
            .map(|(sb, d)| {
                let free = alloc.free_extents(sb.device_index);
                DeviceStatus {
                    index: sb.device_index,
                    name: d.name().to_string(),
                    capacity_bytes: sb.extent_count * es,
                    used_bytes: (sb.extent_count - free) * es,
                    free_bytes: free * es,
                }
            })
            .collect()
    }

    /// The whole pool's state, with the metadata region's use (counting its pages may walk the
    /// metadata store once per commit: see [`Pool::meta_space`]).
    pub fn status(&self) -> PoolStatus {
        let inner = &self.inner;
        let es = inner.extent_size;
        let devices = self.device_status();
        // Before the registry lock: counting metadata pages may wait for a commit.
        let metadata = self.meta_space();
        let reg = inner.registry.read();
        let snapshots = reg.by_id.values().map(|h| h.cell.read().snaps.len()).sum();
        PoolStatus {
            pool_id: hex(&inner.superblocks[0].pool_id),
            extent_size: es,
            capacity_bytes: devices.iter().map(|d| d.capacity_bytes).sum(),
            used_bytes: devices.iter().map(|d| d.used_bytes).sum(),
            free_bytes: devices.iter().map(|d| d.free_bytes).sum(),
            devices,
            metadata,
            volumes: reg.by_id.len(),
            snapshots,
        }
    }

    /// Heap bytes held by extent maps and the number of entries in them.
    pub fn map_memory(&self) -> (usize, u64) {
        let reg = self.inner.registry.read();
        let mut bytes = 0;
        let mut entries = 0;
        for h in reg.by_id.values() {
            let f = h.cell.read();
            bytes += f.live.memory_bytes();
            entries += f.live.len();
            for s in &f.snaps {
                bytes += s.delta.memory_bytes();
                entries += s.delta.len();
            }
        }
        (bytes, entries)
    }
}

/// Why a volume cannot be deleted now: clones of its snapshots, a guard on it or on one of its
/// snapshots, or snapshots when they are not to go with it.
fn delete_refusal(
    reg: &Registry,
    h: &FamilyHandle,
    f: &Family,
    name: &str,
    with_snapshots: bool,
) -> Option<Error> {
    let clones = clones_of(reg, h.id, None);
    if !clones.is_empty() {
        return Some(Error::new(
            ErrorKind::Busy,
            format!(
                "volume {name} has clones of its snapshots: {}; delete them first",
                clones.join(", ")
            ),
        ));
    }
    if let Some(g) = &f.guard {
        return Some(guarded(&format!("volume {name}"), g));
    }
    if let Some(s) = f.snaps.iter().find(|s| s.guard.is_some()) {
        let g = s.guard.as_deref().unwrap_or_default();
        return Some(guarded(&format!("snapshot {name}@{}", s.name), g));
    }
    if !f.snaps.is_empty() && !with_snapshots {
        let snaps: Vec<&str> = f.snaps.iter().map(|s| s.name.as_str()).collect();
        return Some(Error::new(
            ErrorKind::Busy,
            format!(
                "volume {name} has {} snapshot(s): {}; delete them first or delete with its \
                 snapshots",
                snaps.len(),
                snaps.join(", ")
            ),
        ));
    }
    None
}

fn guarded(what: &str, why: &str) -> Error {
    Error::new(ErrorKind::Busy, format!("{what} is protected: {why}"))
}

fn exists(what: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("{what} {name} already exists"),
    )
}

fn insert(reg: &mut Registry, id: u64, parent: Option<(Arc<FamilyHandle>, u64)>, fam: Family) {
    let name = fam.name.clone();
    let h = Arc::new(FamilyHandle {
        id,
        parent,
        cell: RwLock::new(fam),
    });
    reg.by_name.insert(name, h.clone());
    reg.by_id.insert(id, h);
}

/// Names of clones of `family`'s snapshot `snap` (or of any of its snapshots).
fn clones_of(reg: &Registry, family: u64, snap: Option<u64>) -> Vec<String> {
    reg.by_name
        .iter()
        .filter(|(_, h)| {
            h.parent
                .as_ref()
                .is_some_and(|(p, s)| p.id == family && snap.is_none_or(|x| x == *s))
        })
        .map(|(n, _)| n.clone())
        .collect()
}

fn snapshot_info(
    reg: &Registry,
    h: &FamilyHandle,
    f: &Family,
    s: &Snap,
    es: u64,
    devices: usize,
) -> SnapshotInfo {
    SnapshotInfo {
        id: s.id,
        volume: f.name.clone(),
        name: s.name.clone(),
        size: s.size,
        created_unix: s.created_unix,
        referenced_bytes: s.referenced * es,
        device_bytes: s.devices.bytes(devices, es),
        unique_bytes: s.unique * es,
        clones: clones_of(reg, h.id, Some(s.id)),
        tag: s.tag.clone(),
        guard: s.guard.clone(),
    }
}
