//! What a range of an export holds, without reading it: allocation status, the extents that
//! hold data, and readahead along them.

use super::{Export, pieces};
use crate::error::{Error, Result};
use crate::extent_map::Target;
use crate::family::{Locking, referenced_extents, resolve};

/// One run of [`Export::block_status`]: `length` bytes that are all allocated or all holes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRun {
    pub length: u64,
    pub allocated: bool,
}

impl Export {
    /// Allocation status of a range: runs of allocated extents and holes, covering it exactly.
    pub fn block_status(&self, offset: u64, len: u64) -> Result<Vec<StatusRun>> {
        let es = self.pool.inner.extent_size;
        let f = self.handle.cell.read();
        let view = self.view(&f)?;
        self.check_range(&f, view, offset, len)?;
        let mut runs: Vec<StatusRun> = Vec::new();
        for pc in pieces(offset, len, es) {
            let allocated = matches!(resolve(&self.handle, &f, view, pc.l, es), Target::Extent(_));
            match runs.last_mut() {
                Some(r) if r.allocated == allocated => r.length += pc.len,
                _ => runs.push(StatusRun {
                    length: pc.len,
                    allocated,
                }),
            }
        }
        Ok(runs)
    }

    /// Logical extents (ascending) of the image that hold data. Costs what is mapped, not the
    /// size, so walking a huge thin image is cheap; block_status costs its range.
    pub fn allocated_extents(&self) -> Result<Vec<u64>> {
        let es = self.pool.inner.extent_size;
        let f = self.handle.cell.read();
        let view = self.view(&f)?;
        Ok(referenced_extents(&Locking, &self.handle, &f, view, es))
    }

    /// Starts reading `[offset, offset + len)` into the page cache, waiting for none of it:
    /// readahead along the volume's own order, which a thin volume's extents need because
    /// their order on the disk is the order they were first written in. Holes and what lies
    /// past the end are skipped.
    pub fn prefetch(&self, offset: u64, len: u64) -> Result<()> {
        let inner = &self.pool.inner;
        let es = inner.extent_size;
        // (device, offset, length), merged where contiguous on a device.
        let mut runs: Vec<(u32, u64, u64)> = Vec::new();
        {
            let f = self.handle.cell.read();
            let view = self.view(&f)?;
            let size = f.view_size(view);
            let len = len.min(size.saturating_sub(offset));
            for pc in pieces(offset, len, es) {
                if let Target::Extent(p) = resolve(&self.handle, &f, view, pc.l, es) {
                    let at = inner.device_offset(p, pc.at);
                    match runs.last_mut() {
                        Some((d, o, l)) if *d == p.device() && *o + *l == at => *l += pc.len,
                        _ => runs.push((p.device(), at, pc.len)),
                    }
                }
            }
        }
        // Issued without the lock, which submitting the reads could hold for milliseconds. An
        // extent freed and reused meanwhile only means caching someone else's data.
        for (device, at, len) in runs {
            let dev = &inner.devices[device as usize];
            dev.prefetch(at, len).map_err(|e| {
                Error::io(
                    format!("reading ahead {}: device {}", self.name, dev.name()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}
