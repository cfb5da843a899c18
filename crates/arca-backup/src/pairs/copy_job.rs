//! The pair copy job: the initial copy, a resync (what changed since the split) or a reverse
//! resync, through the copier, then the pair back in `pair` state.

use std::collections::BTreeSet;
use std::sync::Arc;

use arca_store::{Error, GuardOwner, Result};

use super::{
    PAIRS, PairState, Pairs, Runtime, primary_snapshot, secondary_snapshot, stage_guards,
    volume_name,
};
use crate::copier;
use crate::jobs::{JobContext, JobError, JobKind, JobResult, PairCopied};

impl Pairs {
    /// Starts the job that copies: everything (initial copy) or what changed since the split.
    pub(super) fn start_copy_job(
        self: &Arc<Self>,
        rt: &Arc<Runtime>,
        changed_only: bool,
        reverse: bool,
    ) -> Result<()> {
        let me = self.clone();
        let rtc = rt.clone();
        let name = rt.record.lock().name.clone();
        let kind = match (changed_only, reverse) {
            (false, _) => JobKind::PairCopy,
            (true, false) => JobKind::PairResync,
            (true, true) => JobKind::PairReverseResync,
        };
        let job = self
            .jobs
            .start(kind, &name, move |ctx| {
                let r = me.copy_body(&rtc, changed_only, reverse, ctx);
                if let Err(e) = &r {
                    let reason = match e {
                        JobError::Cancelled => "cancelled".to_string(),
                        JobError::Failed(m) => m.clone(),
                    };
                    let _l = me.lock.lock();
                    // A failed initial copy or resync leaves the pair in error (the primary
                    // serves on); a later resync picks it up.
                    if let Err(x) = me.set(&rtc, |x| {
                        if x.state == PairState::Copy {
                            x.needs_full_copy = true;
                        }
                        if x.state != PairState::ReverseResync {
                            x.state = PairState::Error;
                        } else {
                            x.state = PairState::Split;
                        }
                        x.reason = Some(reason.clone());
                    }) {
                        tracing::error!("recording a failed pair copy: {x}");
                    }
                }
                r
            })
            .map_err(|e| Error::io("starting a pair copy job", e))?;
        *rt.job.lock() = Some(job.id());
        Ok(())
    }

    fn copy_body(
        &self,
        rt: &Arc<Runtime>,
        changed_only: bool,
        reverse: bool,
        ctx: &JobContext,
    ) -> std::result::Result<Option<JobResult>, JobError> {
        let r = rt.record.lock().clone();
        let primary = volume_name(&self.pool, r.primary_id)?;
        let secondary = volume_name(&self.pool, r.secondary_id)?;
        let (from_name, to_name) = if reverse {
            (&secondary, &primary)
        } else {
            (&primary, &secondary)
        };
        let from = self.pool.export_unguarded(from_name)?;
        let to = self.pool.export_unguarded(to_name)?;
        let es = self.pool.extent_size();
        let size = self.pool.volume(&primary)?.size;
        // An error during the initial copy leaves nothing tracked: only a full copy repairs.
        let tracked = self
            .pool
            .snapshot(&primary, &primary_snapshot(r.id))
            .is_ok();
        let changed_only = changed_only && tracked && !r.needs_full_copy;
        let mut refill = false;
        let extents: Vec<u64> = if changed_only {
            let mut set: BTreeSet<u64> = r.missed_extents.iter().copied().collect();
            for (vol, snap) in [
                (&primary, primary_snapshot(r.id)),
                (&secondary, secondary_snapshot(r.id)),
            ] {
                if self.pool.snapshot(vol, &snap).is_ok() {
                    set.extend(self.pool.changed_extents(vol, &snap)?);
                } else if vol == &secondary && r.split_ms.is_some() {
                    // After a split, without the secondary's snapshot nothing says what
                    // changed there. (After an error only the primary was snapshotted: the
                    // secondary took no writes but the missed ones.)
                    return Err(JobError::Failed(format!(
                        "the change tracking snapshot {snap} of {vol} is missing; delete and \
                         recreate the pair"
                    )));
                }
            }
            set.into_iter().collect()
        } else {
            // Everything either side holds: the primary's data, and the secondary's old data
            // where the primary has holes.
            let mut set: BTreeSet<u64> = from.allocated_extents()?.into_iter().collect();
            let old = to.allocated_extents()?;
            refill = !old.is_empty();
            set.extend(old);
            set.into_iter().collect()
        };
        ctx.set_total(copier::listed_bytes(&extents, size, es));
        let opts = copier::Options {
            to: Some(&to),
            extents: copier::Extents::Listed(&extents),
            dest_size: Some(size),
            // A full copy into a secondary that holds data (after a stop that did not close
            // the pair, nearly all of it the same): reading beats rewriting it.
            differs_only: !changed_only && refill,
            // Extent by extent, as it always went; the mirror waits at most one.
            chunk_bytes: Some(es),
            pace_bytes_per_second: r.pace_bytes_per_second,
            exclusive: Some(&rt.copy_lock),
            ..copier::Options::default()
        };
        let done = copier::copy(&from, size, &opts, ctx)?.bytes_done;
        // The copy is durable before the state says so.
        self.pool.flush()?;
        let _l = self.lock.lock();
        rt.gate.close();
        let finish = (|| -> Result<()> {
            let mut new = rt.record.lock().clone();
            new.state = PairState::Pair;
            new.reason = None;
            new.split_ms = None;
            new.missed_extents.clear();
            new.needs_full_copy = false;
            let mut t = self.pool.transaction();
            for (vol, snap) in [
                (&primary, primary_snapshot(r.id)),
                (&secondary, secondary_snapshot(r.id)),
            ] {
                if t.snapshot_exists(vol, &snap) {
                    t.remove_snapshot_guard(vol, &snap, GuardOwner::Pair(r.id.get()))?;
                    t.delete_snapshot(vol, &snap)?;
                }
            }
            t.put(PAIRS, r.id.get().to_be_bytes().to_vec(), new.encode());
            stage_guards(&self.pool, &mut t, &new)?;
            t.commit()?;
            *rt.record.lock() = new;
            Ok(())
        })();
        rt.gate.open();
        finish?;
        Ok(Some(JobResult::PairCopied(PairCopied {
            pair: r.name,
            bytes_copied: done,
        })))
    }
}
