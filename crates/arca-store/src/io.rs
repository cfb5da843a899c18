//! Data I/O on volumes and snapshots: read, write, write-zeroes, trim, allocation status.
//!
//! Locking: a family's lock is held in read mode across reads and in-place writes, and in
//! write mode across writes that allocate. So an extent cannot be freed (and, after the next
//! commit, reused) while I/O to it is in flight, and a snapshot — which takes the write lock —
//! waits for writes in flight and sees every write that completed before it.
//!
//! A write that needs new extents allocates all of them before any I/O: it fails whole with
//! [`ErrorKind::NoSpace`] or not at all for lack of space. New extents are written before the
//! map points to them; on an I/O error they are released and the map is unchanged.
//!
//! Beside this file: `io/status.rs` (allocation status) and `io/write_path.rs` (how a write
//! reaches the devices).

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result, not_found};
use crate::extent_map::{Phys, Target};
use crate::family::{Family, FamilyHandle, View, resolve};
use crate::guards::{Guard, GuardEffect, reasons_refusing};
use crate::pool::{Inner, Pool};

fn read_only_to_hosts(guards: &[Guard]) -> bool {
    crate::guards::effect_of(guards).contains(GuardEffect::READ_ONLY_TO_HOSTS)
}

mod status;
mod write_path;
pub use status::StatusRun;

/// A volume (read-write) or snapshot (read-only) opened for I/O.
#[derive(Clone)]
pub struct Export {
    pool: Pool,
    handle: Arc<FamilyHandle>,
    snap: Option<u64>,
    name: String,
    /// Opened by the layer above for its own copies: the volume's guard does not apply.
    unguarded: bool,
}

/// What a completed write did, as a [`WriteHook`] is told.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    Data(&'a [u8]),
    /// Zeros over `len` bytes; `unmap` when whole extents may be unmapped.
    Zeroes {
        len: u64,
        unmap: bool,
    },
}

/// Told of every write to a volume: `begin` before it, `end` after it (with what it wrote
/// when it succeeded), before it is acknowledged and before a FUA flush, so a hook's own
/// writes are flushed with it. A pair mirrors its primary's writes this way; `begin` and `end`
/// bracket the write so the pair can take a split at an instant no write straddles. A hook
/// must not write to the volume it watches.
/// How [`Export::write_zeroes`] zeros a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroOptions {
    /// Whole extents may be unmapped (they then read as zeros and report as holes) instead
    /// of being written with zeros.
    pub may_unmap: bool,
    /// Forced unit access: durable when the call returns.
    pub fua: bool,
}

impl ZeroOptions {
    /// Unmapping allowed, no forced unit access: what copies and restores want.
    pub const UNMAP: ZeroOptions = ZeroOptions {
        may_unmap: true,
        fua: false,
    };

    pub const fn fua(self, fua: bool) -> ZeroOptions {
        ZeroOptions { fua, ..self }
    }
}

pub trait WriteHook: Send + Sync {
    fn begin(&self);
    /// `written` is `None` when the write failed: `len` bytes from `offset` may then hold
    /// anything (part of it may have landed), or `len` is 0 when nothing was written (a bad
    /// range, a read-only volume, no space: refused before any I/O).
    fn end(&self, offset: u64, len: u64, written: Option<Written<'_>>);
}

/// Bytes a write may have changed: all of them unless it was refused before any I/O (only a
/// device error can leave part of a write behind).
fn touched(r: &Result<()>, len: u64) -> u64 {
    match r {
        Err(e) if e.kind() != ErrorKind::Io => 0,
        _ => len,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// `VOLUME` or `VOLUME@SNAPSHOT`.
    pub name: String,
    pub size: u64,
    pub read_only: bool,
}

/// One piece of a request inside one logical extent.
#[derive(Debug, Clone, Copy)]
struct Piece {
    l: u64,
    /// Offset inside the extent.
    at: u64,
    len: u64,
    /// Offset inside the request.
    pos: usize,
}

fn pieces(offset: u64, len: u64, es: u64) -> impl Iterator<Item = Piece> {
    let end = offset + len;
    let mut cur = offset;
    std::iter::from_fn(move || {
        if cur >= end {
            return None;
        }
        let at = cur % es;
        let n = (es - at).min(end - cur);
        let p = Piece {
            l: cur / es,
            at,
            len: n,
            pos: (cur - offset) as usize,
        };
        cur += n;
        Some(p)
    })
}

#[derive(Clone, Copy)]
enum Src<'a> {
    Data(&'a [u8]),
    Zeros,
}

impl Inner {
    fn device_offset(&self, p: Phys, at: u64) -> u64 {
        let sb = &self.superblocks[p.device() as usize];
        debug_assert!(p.index() < sb.extent_count);
        sb.data_offset + p.index() * self.extent_size + at
    }

    fn io_error(&self, what: &str, export: &str, p: Phys, e: std::io::Error) -> Error {
        Error::io(
            format!(
                "{what} {export}: device {}",
                self.devices[p.device() as usize].name()
            ),
            e,
        )
    }

    /// Reads from one extent; with `nowait`, false instead of waiting for the disk.
    fn read_extent(
        &self,
        p: Phys,
        at: u64,
        buf: &mut [u8],
        export: &str,
        nowait: bool,
    ) -> Result<bool> {
        let device = &self.devices[p.device() as usize];
        let offset = self.device_offset(p, at);
        let r = if nowait {
            device.read_at_nowait(buf, offset)
        } else {
            device.read_at(buf, offset).map(|()| true)
        };
        r.map_err(|e| self.io_error("reading", export, p, e))
    }
}

impl Pool {
    /// Opens `VOLUME` or `VOLUME@SNAPSHOT` for I/O. A guarded volume opens read-only.
    pub fn export(&self, name: &str) -> Result<Export> {
        self.open_export(name, false)
    }

    /// Opens an export that writes through a volume's guard: for the layer that set the guard
    /// (a backup copying into its destination, a restore into the volume it protects).
    pub fn export_unguarded(&self, name: &str) -> Result<Export> {
        self.open_export(name, true)
    }

    fn open_export(&self, name: &str, unguarded: bool) -> Result<Export> {
        let (volume, snapshot) = match name.split_once('@') {
            Some((v, s)) => (v, Some(s)),
            None => (name, None),
        };
        let handle = self.lookup_family(volume)?;
        let snap = match snapshot {
            None => None,
            Some(s) => {
                let f = handle.cell.read();
                Some(f.snaps[f.snap_named(volume, s)?].id)
            }
        };
        Ok(Export {
            pool: self.clone(),
            handle,
            snap,
            name: name.to_string(),
            unguarded,
        })
    }

    /// Every volume (read-write) and snapshot (read-only), by name.
    pub fn exports(&self) -> Vec<ExportInfo> {
        let reg = self.inner.registry.read();
        let mut out = Vec::new();
        for (name, h) in &reg.by_name {
            let f = h.cell.read();
            out.push(ExportInfo {
                name: name.clone(),
                size: f.size,
                read_only: read_only_to_hosts(&f.guards),
            });
            for s in &f.snaps {
                out.push(ExportInfo {
                    name: format!("{name}@{}", s.name),
                    size: s.size,
                    read_only: true,
                });
            }
        }
        out
    }
}

impl Export {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot, or a guarded volume opened by [`Pool::export`].
    pub fn read_only(&self) -> bool {
        self.snap.is_some()
            || (!self.unguarded && read_only_to_hosts(&self.handle.cell.read().guards))
    }

    /// Refuses writes to a guarded volume, naming the guard. Called under the family's lock so
    /// a guard set meanwhile is seen.
    fn check_guard(&self, f: &Family) -> Result<()> {
        if self.unguarded {
            return Ok(());
        }
        match reasons_refusing(&f.guards, GuardEffect::READ_ONLY_TO_HOSTS) {
            Some(why) => Err(Error::new(
                ErrorKind::ReadOnly,
                format!("volume {} is read-only: {why}", self.name),
            )),
            None => Ok(()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Current size in bytes (a volume may grow while open).
    pub fn size(&self) -> Result<u64> {
        let f = self.handle.cell.read();
        let view = self.view(&f)?;
        Ok(f.view_size(view))
    }

    fn view(&self, f: &Family) -> Result<View> {
        if f.deleted {
            return Err(not_found(format_args!("volume {}", self.name)));
        }
        match self.snap {
            None => Ok(View::Live),
            Some(id) => f
                .snap_index(id)
                .map(View::Snap)
                .ok_or_else(|| not_found(format_args!("snapshot {}", self.name))),
        }
    }

    fn check_range(&self, f: &Family, view: View, offset: u64, len: u64) -> Result<()> {
        let size = f.view_size(view);
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfRange,
                format!(
                    "I/O at offset {offset} length {len} is past the end of {} ({size} bytes)",
                    self.name
                ),
            )),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.snap.is_some() {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("snapshot {} is read-only", self.name),
            ));
        }
        Ok(())
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let f = self.handle.cell.read();
        let done = self.read_locked(&f, offset, buf, false)?;
        debug_assert!(done, "a blocking read always completes");
        Ok(())
    }

    /// Reads only if nothing has to wait: not the family's lock (held by a write that
    /// allocates) and not the disk (the data is cached). `Ok(false)` when it would wait, and
    /// `buf` then holds anything: call [`Export::read`]. For a server thread that serves cached
    /// reads itself and hands the rest to threads that may block.
    pub fn try_read(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        let Some(f) = self.handle.cell.try_read() else {
            return Ok(false);
        };
        self.read_locked(&f, offset, buf, true)
    }

    fn read_locked(&self, f: &Family, offset: u64, buf: &mut [u8], nowait: bool) -> Result<bool> {
        let inner = &self.pool.inner;
        let es = inner.extent_size;
        let view = self.view(f)?;
        self.check_range(f, view, offset, buf.len() as u64)?;
        // Coalesce pieces that are contiguous on one device into one read.
        let mut run: Option<(Phys, u64, usize, usize)> = None; // (extent, at, pos, len)
        let flush_run = |run: Option<(Phys, u64, usize, usize)>, buf: &mut [u8]| match run {
            Some((p, at, pos, len)) => {
                inner.read_extent(p, at, &mut buf[pos..pos + len], &self.name, nowait)
            }
            None => Ok(true),
        };
        for pc in pieces(offset, buf.len() as u64, es) {
            let range = pc.pos..pc.pos + pc.len as usize;
            match resolve(&self.handle, f, view, pc.l, es) {
                Target::Extent(p) => {
                    if let Some((rp, rat, rpos, rlen)) = run
                        && rp.device() == p.device()
                        && inner.device_offset(rp, rat) + rlen as u64
                            == inner.device_offset(p, pc.at)
                        && rpos + rlen == pc.pos
                    {
                        run = Some((rp, rat, rpos, rlen + pc.len as usize));
                        continue;
                    }
                    if !flush_run(run.take(), buf)? {
                        return Ok(false);
                    }
                    run = Some((p, pc.at, pc.pos, pc.len as usize));
                }
                Target::Zero => buf[range].fill(0),
            }
        }
        flush_run(run, buf)
    }

    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.check_writable()?;
        let hook = self.hook();
        if let Some(h) = &hook {
            h.begin();
        }
        let r = self.write_data(offset, data);
        let len = touched(&r, data.len() as u64);
        self.hook_end(hook, offset, len, r.is_ok().then_some(Written::Data(data)));
        r?;
        if fua {
            self.pool.flush()?;
        }
        Ok(())
    }

    fn write_data(&self, offset: u64, data: &[u8]) -> Result<()> {
        if !self.write_in_place(offset, Src::Data(data), data.len() as u64)? {
            let mut f = self.handle.cell.write();
            let view = self.view(&f)?;
            self.check_guard(&f)?;
            self.check_range(&f, view, offset, data.len() as u64)?;
            let es = self.pool.inner.extent_size;
            let all: Vec<Piece> = pieces(offset, data.len() as u64, es).collect();
            self.write_locked(&mut f, &all, Src::Data(data))?;
        }
        Ok(())
    }

    /// Writes zeros. Whole extents are unmapped when `opts.may_unmap` (they then read as
    /// zeros and report as holes); otherwise, and for partial extents, zeros are written.
    pub fn write_zeroes(&self, offset: u64, len: u64, opts: ZeroOptions) -> Result<()> {
        let ZeroOptions { may_unmap, fua } = opts;
        self.check_writable()?;
        let hook = self.hook();
        if let Some(h) = &hook {
            h.begin();
        }
        let r = self.zero(offset, len, may_unmap);
        let written = Written::Zeroes {
            len,
            unmap: may_unmap,
        };
        self.hook_end(hook, offset, touched(&r, len), r.is_ok().then_some(written));
        r?;
        if fua {
            self.pool.flush()?;
        }
        Ok(())
    }

    fn zero(&self, offset: u64, len: u64, may_unmap: bool) -> Result<()> {
        let inner = &self.pool.inner;
        let es = inner.extent_size;
        {
            let mut f = self.handle.cell.write();
            let view = self.view(&f)?;
            self.check_guard(&f)?;
            self.check_range(&f, view, offset, len)?;
            let id = self.handle.id;
            let parent_extents = self.handle.parent.as_ref().map(|(p, sid)| {
                let pf = p.cell.read();
                pf.snap_index(*sid)
                    .map_or(0, |i| pf.snaps[i].size.div_ceil(es))
            });
            let size = f.size;
            let mut rest = Vec::new();
            for pc in pieces(offset, len, es) {
                let old = resolve(&self.handle, &f, View::Live, pc.l, es);
                // The last extent of a volume is whole when zeroed to the volume's end: what
                // lies past the end is never visible, and a hole keeps reading zeros if it grows.
                let whole = pc.len == es || (pc.at == 0 && pc.l * es + pc.len == size);
                if may_unmap && whole {
                    if parent_extents.is_some_and(|n| pc.l < n) {
                        // The parent would show through a plain hole: keep a zero entry.
                        if old != Target::Zero {
                            f.set_live(id, pc.l, Target::Zero);
                        }
                    } else {
                        f.remove_live(id, pc.l);
                    }
                    if let Target::Extent(p) = old {
                        f.referenced -= 1;
                        f.live_devices.remove(p.device());
                    }
                } else if !(may_unmap && old == Target::Zero) {
                    rest.push(pc);
                }
            }
            if !rest.is_empty() {
                self.write_locked(&mut f, &rest, Src::Zeros)?;
            }
        }
        Ok(())
    }

    /// Ends a write for its hook. A hook installed while the write ran (it read none before)
    /// is told too, so that no write escapes a pair being created.
    fn hook_end(
        &self,
        before: Option<std::sync::Arc<dyn WriteHook>>,
        offset: u64,
        len: u64,
        written: Option<Written<'_>>,
    ) {
        match before {
            Some(h) => h.end(offset, len, written),
            None => {
                if let Some(h) = self.hook() {
                    h.begin();
                    h.end(offset, len, written);
                }
            }
        }
    }

    /// The live volume's write hook. Cloned out so that it runs without the volume's lock (it
    /// takes other volumes').
    fn hook(&self) -> Option<std::sync::Arc<dyn WriteHook>> {
        let none_in_pool = self
            .pool
            .inner
            .hooks
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0;
        if self.snap.is_some() || none_in_pool {
            return None;
        }
        self.handle.cell.read().hook.0.clone()
    }

    /// Discards a range: it reads as zeros afterwards and whole extents are freed.
    pub fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.write_zeroes(offset, len, ZeroOptions::UNMAP.fua(fua))
    }

    /// Makes every completed write to the pool durable (the pool has one commit for all).
    pub fn flush(&self) -> Result<()> {
        self.pool.flush()
    }
}
