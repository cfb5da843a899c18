//! How a write reaches the devices: in place where the volume owns the extent alone (under
//! the read lock), else under the write lock with new extents allocated first and partial
//! pieces copied on write; the device writes merged into contiguous runs.

use std::sync::atomic::Ordering;

use super::{Export, Piece, Src, pieces};
use crate::error::{Error, ErrorKind, Result};
use crate::extent_map::{Phys, Target};
use crate::family::{Family, View, resolve};
use crate::pool::Inner;

/// A contiguous device range and where its bytes come from.
struct Run {
    device: u32,
    offset: u64,
    len: u64,
    bytes: RunBytes,
}

#[derive(Clone, Copy)]
enum RunBytes {
    /// `len` bytes of the request's data from this position.
    Src(usize),
    /// Merged buffer number `i`.
    Buf(usize),
    Zeros,
}
impl Export {
    /// The common case: every piece lands in an extent the volume owns alone. Done under the
    /// read lock, so writers to different extents run in parallel. False if it does not apply.
    pub(super) fn write_in_place(&self, offset: u64, src: Src<'_>, len: u64) -> Result<bool> {
        let inner = &self.pool.inner;
        let es = inner.extent_size;
        let f = self.handle.cell.read();
        let view = self.view(&f)?;
        self.check_guard(&f)?;
        self.check_range(&f, view, offset, len)?;
        let newest = f.newest_gen();
        let mut runs = Vec::new();
        for pc in pieces(offset, len, es) {
            match f.live.get(pc.l) {
                Some(e) if e.birth >= newest => match e.phys() {
                    Some(p) => push_run(inner, &mut runs, p, pc, src_bytes(src, pc)),
                    None => return Ok(false),
                },
                _ => return Ok(false),
            }
        }
        self.do_runs(&runs, src, &[])?;
        Ok(true)
    }

    /// Writes `pcs` under the family's write lock, allocating and copying on write as needed.
    pub(super) fn write_locked(&self, f: &mut Family, pcs: &[Piece], src: Src<'_>) -> Result<()> {
        let inner = &self.pool.inner;
        let es = inner.extent_size;
        let newest = f.newest_gen();
        // Plan: which pieces go in place, which need a new extent (and what they held).
        let mut new_pieces: Vec<(Piece, Target)> = Vec::new();
        let mut in_place: Vec<(Piece, Phys)> = Vec::new();
        for &pc in pcs {
            match f.live.get(pc.l) {
                Some(e) if e.birth >= newest && e.phys().is_some() => {
                    in_place.push((pc, e.phys().expect("checked")));
                }
                _ => new_pieces.push((pc, resolve(&self.handle, f, View::Live, pc.l, es))),
            }
        }
        let fresh = if new_pieces.is_empty() {
            Vec::new()
        } else {
            let mut alloc = inner.alloc.lock();
            match alloc.allocate(f.placement, new_pieces.len()) {
                Some(fresh) => fresh,
                None => {
                    return Err(Error::new(
                        ErrorKind::NoSpace,
                        format!(
                            "no space: writing {} needs {} new extent(s) of {es} bytes; {} free",
                            self.name,
                            new_pieces.len(),
                            alloc.total_free()
                        ),
                    ));
                }
            }
        };
        // Partial pieces in new extents need the old content around the new bytes.
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        let mut runs = Vec::new();
        let result = (|| {
            for (&(pc, old), &p) in new_pieces.iter().zip(&fresh) {
                let bytes = if pc.len == es {
                    src_bytes(src, pc)
                } else {
                    let mut b = vec![0u8; es as usize];
                    if let Target::Extent(op) = old {
                        inner.read_extent(op, 0, &mut b, &self.name, false)?;
                    }
                    let r = pc.at as usize..(pc.at + pc.len) as usize;
                    match src {
                        Src::Data(d) => b[r].copy_from_slice(&d[pc.pos..pc.pos + pc.len as usize]),
                        Src::Zeros => b[r].fill(0),
                    }
                    bufs.push(b);
                    RunBytes::Buf(bufs.len() - 1)
                };
                let whole = Piece {
                    at: 0,
                    len: es,
                    ..pc
                };
                push_run(inner, &mut runs, p, whole, bytes);
            }
            for &(pc, p) in &in_place {
                push_run(inner, &mut runs, p, pc, src_bytes(src, pc));
            }
            self.do_runs(&runs, src, &bufs)
        })();
        if let Err(e) = result {
            // Nothing points to the new extents yet: they go straight back.
            let mut a = inner.alloc.lock();
            for &p in &fresh {
                a.free(p);
            }
            return Err(e);
        }
        let id = self.handle.id;
        for (&(pc, old), &p) in new_pieces.iter().zip(&fresh) {
            f.set_live(id, pc.l, Target::Extent(p));
            match old {
                Target::Zero => f.referenced += 1,
                Target::Extent(op) => f.live_devices.remove(op.device()),
            }
            f.live_devices.add(p.device());
        }
        Ok(())
    }

    fn do_runs(&self, runs: &[Run], src: Src<'_>, bufs: &[Vec<u8>]) -> Result<()> {
        let inner = &self.pool.inner;
        let mut zeros: Vec<u8> = Vec::new();
        for r in runs {
            let dev = &inner.devices[r.device as usize];
            let len = r.len as usize;
            let bytes: &[u8] = match (r.bytes, src) {
                (RunBytes::Src(pos), Src::Data(d)) => &d[pos..pos + len],
                (RunBytes::Buf(i), _) => &bufs[i][..len],
                _ => {
                    if zeros.len() < len {
                        zeros.resize(len, 0);
                    }
                    &zeros[..len]
                }
            };
            dev.write_at(bytes, r.offset).map_err(|e| {
                Error::io(format!("writing {}: device {}", self.name, dev.name()), e)
            })?;
        }
        // The next flush takes a new generation (generation.rs). Read first: writers then
        // share the flag's cache line instead of bouncing it.
        if !runs.is_empty() && !inner.data_written.load(Ordering::SeqCst) {
            inner.data_written.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

const ZERO_RUN_MAX_BYTES: u64 = 4 << 20;

fn src_bytes(src: Src<'_>, pc: Piece) -> RunBytes {
    match src {
        Src::Data(_) => RunBytes::Src(pc.pos),
        Src::Zeros => RunBytes::Zeros,
    }
}

/// Appends a device write, merging it into the previous one when both are contiguous.
fn push_run(inner: &Inner, runs: &mut Vec<Run>, p: Phys, pc: Piece, bytes: RunBytes) {
    let offset = inner.device_offset(p, pc.at);
    if let Some(last) = runs.last_mut()
        && last.device == p.device()
        && last.offset + last.len == offset
    {
        let merged = match (last.bytes, bytes) {
            (RunBytes::Src(a), RunBytes::Src(b)) if a + last.len as usize == b => true,
            // Bounded: zeros come from one buffer of the run's length.
            (RunBytes::Zeros, RunBytes::Zeros) => last.len + pc.len <= ZERO_RUN_MAX_BYTES,
            _ => false,
        };
        if merged {
            last.len += pc.len;
            return;
        }
    }
    runs.push(Run {
        device: p.device(),
        offset,
        len: pc.len,
        bytes,
    });
}
