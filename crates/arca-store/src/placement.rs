//! Where an image's data lies: for each device, the extents the image reads from it.
//!
//! A volume's placement *preference* (`--device`) only says where its new extents are allocated
//! while that device has room; without one, the allocator takes the device with the most free
//! extents. So the preference cannot answer "if device D dies, does this image lose data?".
//! These counters can: they count every extent the image's current content reads, wherever it
//! came from, so for a clone they include the extents it still shares with its origin (losing
//! those loses the clone's data just as much). Each image counts an extent once, so the sum over
//! devices is the image's `referenced` count; an extent shared by several images is counted in
//! each of them.
//!
//! Cost: the live volume's counters change where its `referenced` count changes (a write that
//! allocates, an unmapping trim), in O(1). A snapshot's never change after it is taken (its
//! image is immutable), so it starts as a copy of the volume's. At open they are rebuilt:
//! the live counts by resolving every mapped extent (as `referenced` always was), the snapshots'
//! in one pass over the family's entries (see [`count_snapshots`]). fsck recounts both by
//! resolving and compares.

use crate::extent_map::Target;
use crate::family::{Family, FamilyHandle, View, resolve};

/// Extents per device index, growing to the highest device counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceExtents(Vec<u64>);

impl DeviceExtents {
    pub fn add(&mut self, device: u32) {
        let d = device as usize;
        if self.0.len() <= d {
            self.0.resize(d + 1, 0);
        }
        self.0[d] += 1;
    }

    pub fn remove(&mut self, device: u32) {
        let slot = self.0.get_mut(device as usize);
        let n = slot.expect("an extent was counted on the device it is removed from");
        assert!(*n > 0, "device {device} has no counted extent to remove");
        *n -= 1;
        // No trailing zeros, so that equal counts compare equal (fsck compares recounts).
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Bytes per device for a pool of `devices` devices.
    pub fn bytes(&self, devices: usize, es: u64) -> Vec<u64> {
        (0..devices)
            .map(|d| self.0.get(d).copied().unwrap_or(0) * es)
            .collect()
    }

    fn from_signed(counts: &[i64]) -> DeviceExtents {
        // Negative only on metadata that is already inconsistent; fsck reports that.
        let mut v: Vec<u64> = counts.iter().map(|&n| n.max(0) as u64).collect();
        while v.last() == Some(&0) {
            v.pop();
        }
        DeviceExtents(v)
    }
}

/// Where every logical extent of `view` that resolves to data lies. Costs what is mapped on
/// the view's resolution path, not its size.
pub(crate) fn count_view(h: &FamilyHandle, fam: &Family, view: View, es: u64) -> DeviceExtents {
    crate::family::referenced_devices(&crate::family::Locking, h, fam, view, es)
}

/// Rebuilds a family's counters at open: `referenced` and the live volume's devices by
/// resolving, every snapshot's by [`count_snapshots`]. A clone's origin must be counted first
/// (families load in id order, and an origin is older than its clones).
pub(crate) fn count_at_load(h: &FamilyHandle, es: u64) {
    let mut f = h.cell.write();
    let live = count_view(h, &f, View::Live, es);
    f.referenced = live.total();
    f.live_devices = live;
    let snaps = count_snapshots(h, &f, es);
    for (s, d) in f.snaps.iter_mut().zip(snaps) {
        s.devices = d;
    }
}

/// Every snapshot's devices in one pass over the family's entries: O(entries × (log snapshots
/// + resolving in the origin)) time and O(snapshots × devices) memory.
///
/// An entry born at `b` in the map of snapshot `k` (its delta: it was replaced while `k` was
/// the newest snapshot) or of the live volume (`k` = the newest snapshot) is what snapshots
/// `j0..=k` read at its logical extent, `j0` being the first taken after `b`: each of those
/// finds it first on its resolution path (module doc of family.rs), and no other snapshot
/// does. So each entry adds its device over a range of snapshots (a difference array). For a
/// clone, a snapshot reads its origin's image wherever none of its own entries is visible: it
/// starts from the origin snapshot's devices, and every own entry (data or a zero) subtracts
/// the origin's device at its extent over its range.
fn count_snapshots(h: &FamilyHandle, f: &Family, es: u64) -> Vec<DeviceExtents> {
    let n = f.snaps.len();
    if n == 0 {
        return Vec::new();
    }
    let origin = h.parent.as_ref().map(|(p, sid)| (p, p.cell.read(), *sid));
    let origin = origin.and_then(|(p, pf, sid)| pf.snap_index(sid).map(|i| (p, pf, i)));
    let mut diff: Vec<Vec<i64>> = vec![Vec::new(); n + 1];
    let bump = |diff: &mut Vec<Vec<i64>>, j: usize, device: u32, by: i64| {
        let row = &mut diff[j];
        let d = device as usize;
        if row.len() <= d {
            row.resize(d + 1, 0);
        }
        row[d] += by;
    };
    let maps = f
        .snaps
        .iter()
        .enumerate()
        .map(|(k, s)| (k, &s.delta))
        .chain(std::iter::once((n - 1, &f.live)));
    for (k, map) in maps {
        for (l, e) in map.iter() {
            let j0 = f.snaps.partition_point(|s| s.generation <= e.birth);
            if j0 > k {
                continue;
            }
            if let Some(p) = e.phys() {
                bump(&mut diff, j0, p.device(), 1);
                bump(&mut diff, k + 1, p.device(), -1);
            }
            if let Some((p, pf, i)) = &origin
                && l < pf.snaps[*i].size.div_ceil(es)
                && let Target::Extent(op) = resolve(p, pf, View::Snap(*i), l, es)
            {
                bump(&mut diff, j0, op.device(), -1);
                bump(&mut diff, k + 1, op.device(), 1);
            }
        }
    }
    let mut running: Vec<i64> = Vec::new();
    if let Some((_, pf, i)) = &origin {
        for (d, n) in pf.snaps[*i].devices.0.iter().enumerate() {
            if d >= running.len() {
                running.resize(d + 1, 0);
            }
            running[d] += *n as i64;
        }
    }
    let mut out = Vec::with_capacity(n);
    for row in diff.iter().take(n) {
        if running.len() < row.len() {
            running.resize(row.len(), 0);
        }
        for (d, by) in row.iter().enumerate() {
            running[d] += by;
        }
        out.push(DeviceExtents::from_signed(&running));
    }
    out
}
