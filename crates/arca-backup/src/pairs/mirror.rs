//! The mirror: the write hook on a primary that applies each write to the secondary while the
//! pair mirrors, and turns a failed secondary write into the `error` state.

use std::sync::Arc;

use arca_store::{Error, ErrorKind, Pool, Result, WriteHook, Written};

use super::{PairState, Pairs, Runtime, volume_name};

pub(super) struct Mirror {
    pub(super) pool: Pool,
    pub(super) rt: Arc<Runtime>,
    pub(super) pairs: std::sync::Weak<Pairs>,
}

impl WriteHook for Mirror {
    fn begin(&self) {
        self.rt.gate.enter();
    }

    fn end(&self, offset: u64, len: u64, written: Option<Written<'_>>) {
        let mut failed = false;
        if written.is_some() || len > 0 {
            let state = self.rt.record.lock().state;
            if state.mirrors() {
                let r = match written {
                    Some(w) => {
                        let _c = self.rt.copy_lock.read();
                        self.mirror(offset, w)
                    }
                    // The primary write failed, perhaps after part of it landed: the sides
                    // may differ there.
                    None => Err(Error::new(
                        ErrorKind::Io,
                        "a primary write failed part way; the secondary may differ there",
                    )),
                };
                if let Err(e) = r {
                    // Error at once in memory, so mirroring stops; the durable record and the
                    // snapshot tracking further changes follow, outside the gate (their
                    // commit waits for nothing a gate holder holds).
                    let es = self.pool.extent_size();
                    let mut rec = self.rt.record.lock();
                    if rec.state.mirrors() {
                        if rec.state == PairState::Copy {
                            rec.needs_full_copy = true;
                        }
                        rec.state = PairState::Error;
                        rec.reason = Some(format!("writing the secondary failed: {e}"));
                        // With the state, so every later write notes its extents until the
                        // error's snapshot exists.
                        self.rt
                            .error_tracked
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                        failed = true;
                    }
                    rec.missed_extents
                        .extend(offset / es..(offset + len).div_ceil(es));
                }
            } else if state == PairState::Error
                && !self
                    .rt
                    .error_tracked
                    .load(std::sync::atomic::Ordering::SeqCst)
            {
                // Until the error's snapshot exists, changes are remembered by extent.
                let es = self.pool.extent_size();
                self.rt
                    .record
                    .lock()
                    .missed_extents
                    .extend(offset / es..(offset + len).div_ceil(es));
            }
        }
        self.rt.gate.leave();
        if failed && let Some(p) = self.pairs.upgrade() {
            p.secondary_failed(&self.rt);
        }
    }
}

impl Mirror {
    fn mirror(&self, offset: u64, w: Written<'_>) -> Result<()> {
        let cached = self.rt.secondary.lock().clone();
        let to = match cached {
            Some(e) => e,
            None => {
                let id = self.rt.record.lock().secondary_id;
                let e = self.pool.export_unguarded(&volume_name(&self.pool, id)?)?;
                *self.rt.secondary.lock() = Some(e.clone());
                e
            }
        };
        match w {
            Written::Data(d) => to.write(offset, d, false),
            Written::Zeroes { len, unmap } => to.write_zeroes(
                offset,
                len,
                arca_store::ZeroOptions {
                    may_unmap: unmap,
                    fua: false,
                },
            ),
        }
    }
}
