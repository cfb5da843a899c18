//! Control operations: volumes, snapshots, clones, and what the pool reports about them.

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result, not_found};
use crate::family::{Family, FamilyHandle, Snap};
use crate::guards::{self, GuardEffect};
use crate::names;
use crate::pool::{
    DeviceStatus, Pool, PoolStatus, Registry, SnapshotInfo, VolumeInfo, check_size, hex,
};
use crate::txn::delete_refusal;

impl Pool {
    pub(crate) fn check_placement(&self, placement: Option<u32>) -> Result<()> {
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

    /// Grows a volume. Shrinking is refused: it would discard data a host may still need.
    pub fn resize_volume(&self, name: &str, size: u64) -> Result<VolumeInfo> {
        check_size(size)?;
        let h = self.lookup_family(name)?;
        {
            let mut f = h.cell.write();
            if f.deleted {
                return Err(not_found(format_args!("volume {name}")));
            }
            if let Some(e) =
                guards::refusal(&format!("volume {name}"), &f.guards, GuardEffect::NO_RESIZE)
            {
                return Err(e);
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
            let h = reg.volume(old)?;
            if reg.by_name.contains_key(new) {
                return Err(crate::txn::exists("volume", new));
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
        let h = reg.volume(name)?;
        let f = h.cell.read();
        let clones = clones_of(&reg, h.id, None);
        let snaps: Vec<&str> = f.snaps.iter().map(|s| s.name.as_str()).collect();
        let guards: Vec<(String, &[crate::Guard])> =
            std::iter::once((format!("volume {name}"), &f.guards[..]))
                .chain(
                    f.snaps
                        .iter()
                        .map(|s| (format!("snapshot {name}@{}", s.name), &s.guards[..])),
                )
                .collect();
        delete_refusal(name, &clones, &guards, &snaps, with_snapshots).map_or(Ok(()), Err)
    }

    /// Takes a snapshot: O(1) in the volume's size and content. Every write that completed
    /// before the call is in it; none issued after is. Durable on return.
    pub fn create_snapshot(&self, volume: &str, name: &str) -> Result<SnapshotInfo> {
        let mut t = self.transaction();
        t.create_snapshots(&[(volume, name)])?;
        t.commit()?;
        self.snapshot(volume, name)
    }

    /// Deletes a snapshot, in any order. Refused while clones of it exist.
    pub fn delete_snapshot(&self, volume: &str, name: &str) -> Result<()> {
        let mut t = self.transaction();
        t.delete_snapshot(volume, name)?;
        t.commit()
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
        let h = self.lookup_family(name)?;
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
            guards: f.guards.clone(),
            guard: guards::reasons_refusing(&f.guards, GuardEffect::ALL),
        })
    }

    /// Snapshots of one volume, oldest first.
    pub fn snapshots(&self, volume: &str) -> Result<Vec<SnapshotInfo>> {
        let h = self.lookup_family(volume)?;
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

/// Names of clones of `family`'s snapshot `snap` (or of any of its snapshots).
/// Names of the clones of `family`'s snapshot `snap`, or of any of its snapshots.
pub(crate) fn clones_of(reg: &Registry, family: u64, snap: Option<u64>) -> Vec<String> {
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
        guards: s.guards.clone(),
        guard: guards::reasons_refusing(&s.guards, GuardEffect::ALL),
    }
}
