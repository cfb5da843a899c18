//! The extent allocator: one free bitmap per device, rebuilt from the maps at open (the maps
//! are the only persistent truth, so the allocator can never disagree with them after a crash).

use crate::extent_map::Phys;

#[derive(Debug)]
struct DeviceSpace {
    /// Bit set = extent in use (or freed by a commit that is not yet durable).
    used: Vec<u64>,
    extent_count: u64,
    free: u64,
    /// Next-fit cursor: sequential writes get contiguous extents.
    cursor: u64,
}

#[derive(Debug)]
pub struct Allocator {
    devices: Vec<DeviceSpace>,
}

impl Allocator {
    pub fn new(extent_counts: &[u64]) -> Allocator {
        Allocator {
            devices: extent_counts
                .iter()
                .map(|&n| DeviceSpace {
                    used: vec![0; n.div_ceil(64) as usize],
                    extent_count: n,
                    free: n,
                    cursor: 0,
                })
                .collect(),
        }
    }

    pub fn is_used(&self, p: Phys) -> bool {
        let d = &self.devices[p.device() as usize];
        d.used[(p.index() / 64) as usize] & (1 << (p.index() % 64)) != 0
    }

    /// Marks an extent used; false if it already was (a double reference).
    pub fn mark_used(&mut self, p: Phys) -> bool {
        let d = &mut self.devices[p.device() as usize];
        assert!(p.index() < d.extent_count, "extent {p:?} out of range");
        let word = &mut d.used[(p.index() / 64) as usize];
        let bit = 1 << (p.index() % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        d.free -= 1;
        true
    }

    pub fn free(&mut self, p: Phys) {
        let d = &mut self.devices[p.device() as usize];
        let word = &mut d.used[(p.index() / 64) as usize];
        let bit = 1 << (p.index() % 64);
        assert!(*word & bit != 0, "double free of {p:?}");
        *word &= !bit;
        d.free += 1;
    }

    pub fn free_extents(&self, device: u32) -> u64 {
        self.devices[device as usize].free
    }

    pub fn total_free(&self) -> u64 {
        self.devices.iter().map(|d| d.free).sum()
    }

    /// Allocates `n` extents, from `preferred` while it has room, then from the devices with the
    /// most free extents. All or nothing: `None` when the pool has fewer than `n` free.
    pub fn allocate(&mut self, preferred: Option<u32>, n: usize) -> Option<Vec<Phys>> {
        if self.total_free() < n as u64 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let device = match preferred.filter(|&d| self.devices[d as usize].free > 0) {
                Some(d) => d,
                None => (0..self.devices.len() as u32)
                    .max_by_key(|&d| self.devices[d as usize].free)
                    .expect("pool has devices"),
            };
            let want = n - out.len();
            self.take_from(device, want, &mut out);
        }
        Some(out)
    }

    fn take_from(&mut self, device: u32, want: usize, out: &mut Vec<Phys>) {
        let d = &mut self.devices[device as usize];
        let mut taken = 0;
        let mut scanned = 0;
        let mut i = d.cursor;
        while taken < want && d.free > 0 && scanned < d.extent_count {
            if i >= d.extent_count {
                i = 0;
            }
            let w = (i / 64) as usize;
            if d.used[w] == u64::MAX && i.is_multiple_of(64) {
                // Skip a full word at once.
                i += 64;
                scanned += 64;
                continue;
            }
            let bit = 1 << (i % 64);
            if d.used[w] & bit == 0 {
                d.used[w] |= bit;
                d.free -= 1;
                out.push(Phys::new(device, i));
                taken += 1;
            }
            i += 1;
            scanned += 1;
        }
        d.cursor = if i >= d.extent_count { 0 } else { i };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_contiguously_prefers_device_and_is_all_or_nothing() {
        let mut a = Allocator::new(&[100, 200]);
        let got = a.allocate(Some(0), 3).unwrap();
        assert_eq!(got, vec![Phys::new(0, 0), Phys::new(0, 1), Phys::new(0, 2)]);
        let got = a.allocate(None, 2).unwrap();
        assert!(got.iter().all(|p| p.device() == 1));
        assert!(a.allocate(None, 296).is_none());
        assert_eq!(a.total_free(), 295);
        let got = a.allocate(Some(0), 295).unwrap();
        assert_eq!(got.len(), 295);
        assert_eq!(a.total_free(), 0);
        a.free(Phys::new(1, 7));
        assert_eq!(a.allocate(Some(0), 1).unwrap(), vec![Phys::new(1, 7)]);
    }
}
