//! Restores that survive a stop or a crash: each one's state is stored, and recovered at open.
//!
//! Table `restores` (an application table of the store, not part of the catalog: a rebuild
//! keeps it): key = the target volume's id (8, big-endian), value = a [`RestoreMarker`].
//!
//! Invariants:
//! - a restore's marker is committed in the transaction that takes its undo point (in place)
//!   or creates its volume (as a new volume), and removed in the transaction that records its
//!   outcome in the backup's history; the restored data is durable before that commit (a
//!   commit syncs every device first). So after any stop or crash, every volume whose content
//!   may be partly restored has a marker;
//! - while a volume has a marker it is guarded (read-only to hosts, not deletable or
//!   resizable), with a guard owned by the restore (`GuardOwner::Restore`) whose reason says why;
//! - a marker that says `rolling_back` is never resumed: the rollback was decided, and it is
//!   what completes. Markers of one restore (a set) share a group and are undone together.
//!
//! At open, an in-place restore is resumed (restoring rewrites content and nothing else, so
//! running it again from the start is idempotent), unless it was rolling back or a backup it
//! restores can no longer be read; then it is rolled back to its undo point (itself a restore,
//! from a snapshot of the same volume, costing what the restore had rewritten). A restore into
//! a new volume is not resumed: the incomplete volume is removed and the failure recorded, as
//! for an interrupted copy backup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arca_store::{Error, ErrorKind, Result, Txn};
use serde::{Deserialize, Serialize};

use crate::backups::{Backups, UseGuard, restore_guard};
use crate::catalog;
use crate::ids::BackupId;
use crate::jobs::{JobContext, JobError, JobKind, JobResult, RestoredInPlace, RolledBack};
use crate::record::{BackupRecord, Event, RestoredFrom, Status};
use arca_store::GuardOwner;

pub(crate) const RESTORES: &str = "restores";

const MARKER_VERSION: u8 = 1;

/// One volume's restore in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RestoreMarker {
    pub volume_id: u64,
    /// The volume's name when the restore started (for messages; the id is what counts).
    pub volume: String,
    /// The backup being restored.
    pub backup: BackupId,
    /// The undo point of an in-place restore; `None` for a restore into a new volume.
    pub undo: Option<BackupId>,
    /// Shared by the markers of one restore (the first undo point's id, or the backup's).
    pub group: BackupId,
    pub started_ms: u64,
    /// Set once the restore is being undone, with why.
    pub rolling_back: Option<String>,
}

impl RestoreMarker {
    fn encode(&self) -> Vec<u8> {
        crate::stored::encode(MARKER_VERSION, self)
    }

    fn decode(bytes: &[u8]) -> std::result::Result<RestoreMarker, String> {
        crate::stored::decode(MARKER_VERSION, "restore marker", bytes)
    }
}

pub(crate) fn put_marker(t: &mut Txn<'_>, m: &RestoreMarker) {
    t.put(RESTORES, m.volume_id.to_be_bytes().to_vec(), m.encode());
}

fn delete_marker(t: &mut Txn<'_>, volume_id: u64) {
    t.delete(RESTORES, volume_id.to_be_bytes().to_vec());
}

/// Volume ids whose marker does not decode, with why.
type UnreadableMarkers = Vec<(u64, String)>;

/// One volume of an in-place restore, as its job sees it.
#[derive(Clone)]
pub(crate) struct Step {
    pub backup_id: BackupId,
    /// The backup's record: needed to resume, not to roll back (when it may be unreadable).
    pub backup: Option<BackupRecord>,
    pub undo: BackupRecord,
    pub volume_id: u64,
    /// Its name when the restore started (for messages).
    pub volume: String,
    /// The vault the backup is restored from (one step alone); the array's image when `None`.
    /// Not in the marker: a restore resumed after a restart reads the array's image, or rolls
    /// back when the backup has none.
    pub vault: Option<String>,
}

pub(crate) fn job_error_text(e: &JobError) -> String {
    match e {
        JobError::Cancelled => "cancelled".to_string(),
        JobError::Failed(m) => m.clone(),
    }
}

fn undo_ids(steps: &[Step]) -> String {
    let ids: Vec<String> = steps.iter().map(|s| s.undo.id.to_string()).collect();
    ids.join(", ")
}

impl Backups {
    /// The marker of a restore into the volume, if one is in progress.
    pub(crate) fn restore_marker(&self, volume_id: u64) -> Result<Option<RestoreMarker>> {
        match self.pool.app_get(RESTORES, &volume_id.to_be_bytes())? {
            None => Ok(None),
            Some(b) => RestoreMarker::decode(&b)
                .map(Some)
                .map_err(|e| Error::new(ErrorKind::Corrupt, e)),
        }
    }

    /// Every marker, and the volume ids whose marker does not decode (with why).
    fn restore_markers(&self) -> Result<(Vec<RestoreMarker>, UnreadableMarkers)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        self.pool.app_scan(
            RESTORES,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            |k, v| {
                let id = k.try_into().map(u64::from_be_bytes).unwrap_or(0);
                match RestoreMarker::decode(v) {
                    Ok(m) => good.push(m),
                    Err(e) => bad.push((id, e)),
                }
                true
            },
        )?;
        Ok((good, bad))
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Orderly stop: running restores stop where they are, their markers kept, so that the
    /// next start resumes them (a rollback now would race the pool's close). Waits up to
    /// `timeout` for their jobs to end.
    pub fn stop(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let ids = std::mem::take(&mut *self.restore_jobs.lock());
        let jobs: Vec<_> = ids.iter().filter_map(|&id| self.jobs.get(id)).collect();
        for j in &jobs {
            j.cancel();
        }
        let deadline = Instant::now() + timeout;
        for j in &jobs {
            let state = j.wait(deadline.saturating_duration_since(Instant::now()));
            if !state.finished() {
                tracing::warn!(job = %j.id(), "a restore job did not stop in time");
            }
        }
    }

    /// Guards a volume of a restore, saying `why` ("being restored" then `why`), if it still
    /// exists; replaces the restore's earlier guard there. A failure is logged: the guard the
    /// restore set when it started stays.
    pub(crate) fn guard_restore(&self, volume_id: u64, why: &str) {
        if let Some(v) = self.volume_by_id(volume_id)
            && let Err(e) = self
                .pool
                .add_volume_guard(&v.name, restore_guard(volume_id, why))
        {
            tracing::warn!(volume = %v.name, "guarding a volume being restored: {e}");
        }
    }

    /// Plans lifting a restore's guard inside `t`, with the change that ends the restore.
    pub(crate) fn lift_restore_guard_in(&self, t: &mut Txn<'_>, volume_id: u64) -> Result<()> {
        match self.volume_by_id(volume_id) {
            Some(v) => t.remove_volume_guard(&v.name, GuardOwner::Restore(volume_id)),
            None => Ok(()),
        }
    }

    /// Adds a history event to a record inside `t` (under the catalog lock). A record that is
    /// gone or unreadable gets none: the outcome is then only logged.
    pub(crate) fn note_in(&self, t: &mut Txn<'_>, id: BackupId, event: Event) -> Result<()> {
        let old = match self.get(id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(backup = %id, "recording a restore outcome: {e}");
                return Ok(());
            }
        };
        let mut new = old.clone();
        new.push_history(self.now_ms(), event);
        catalog::put(t, Some(&old), &new);
        self.tag_destination(t, &new)
    }

    /// Records a restore into a new volume done: one transaction, the marker gone and the
    /// backup's history noting it; then hosts may write.
    pub(crate) fn finish_new(
        &self,
        volume_id: u64,
        backup: BackupId,
        name: &str,
        from: RestoredFrom,
    ) -> Result<()> {
        {
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            delete_marker(&mut t, volume_id);
            self.lift_restore_guard_in(&mut t, volume_id)?;
            self.note_in(
                &mut t,
                backup,
                Event::Restored {
                    to: name.to_string(),
                    in_place: false,
                    from,
                },
            )?;
            t.commit()?;
        }
        Ok(())
    }

    /// A restore into a new volume that did not finish: one transaction removes the volume
    /// (and any snapshot made of it meanwhile) and the marker, and records the failure.
    pub(crate) fn fail_new(
        &self,
        volume_id: u64,
        backup: BackupId,
        name: &str,
        reason: &str,
    ) -> Result<()> {
        let _c = self.catalog_lock.lock();
        let v = self.volume_by_id(volume_id);
        let mut t = self.pool.transaction();
        if let Some(v) = &v {
            t.remove_volume_guard(&v.name, GuardOwner::Restore(volume_id))?;
            t.delete_volume(&v.name, true)?;
        }
        delete_marker(&mut t, volume_id);
        self.note_in(
            &mut t,
            backup,
            Event::RestoreFailed {
                to: name.to_string(),
                reason: reason.to_string(),
            },
        )?;
        t.commit()?;
        tracing::warn!(%backup, volume = %name, "restore into a new volume failed: {reason}");
        Ok(())
    }

    /// Records an in-place restore done: one transaction for all its volumes (a set is one
    /// unit), markers gone, each backup's history noting it; then hosts may write.
    pub(crate) fn finish_in_place(&self, steps: &[Step]) -> Result<()> {
        self.close_steps(steps, |s, to| Event::Restored {
            to,
            in_place: true,
            from: s
                .vault
                .clone()
                .map_or(RestoredFrom::Array, RestoredFrom::Vault),
        })
    }

    /// Ends an in-place restore with its volumes holding their undo points' content (rolled
    /// back, or never changed): markers gone and the outcome in each backup's history.
    fn close_rolled_back(&self, steps: &[Step], reason: &str) -> Result<()> {
        self.close_steps(steps, |s, to| Event::RestoreRolledBack {
            to,
            undo: s.undo.id,
            reason: reason.to_string(),
        })?;
        tracing::warn!(undo = %undo_ids(steps), "restore rolled back: {reason}");
        Ok(())
    }

    /// Ends an in-place restore: in one transaction, every volume's marker removed and its
    /// backup's history given `event(step, volume name)`; then hosts may write again.
    fn close_steps(&self, steps: &[Step], event: impl Fn(&Step, String) -> Event) -> Result<()> {
        {
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            for s in steps {
                delete_marker(&mut t, s.volume_id);
                self.lift_restore_guard_in(&mut t, s.volume_id)?;
                let to = self
                    .volume_by_id(s.volume_id)
                    .map_or_else(|| s.volume.clone(), |v| v.name);
                self.note_in(&mut t, s.backup_id, event(s, to))?;
            }
            t.commit()?;
        }
        Ok(())
    }

    /// An in-place restore whose job never started: nothing was rewritten. A failure to record
    /// that is logged, not returned: the caller reports why the restore did not start, and
    /// the markers left behind make the next start settle it.
    pub(crate) fn abandon_logged(&self, steps: &[Step], reason: &str) {
        if let Err(e) = self.close_rolled_back(steps, reason) {
            tracing::error!(undo = %undo_ids(steps), "recording a restore that did not start: {e}");
        }
    }

    /// Undoes an in-place restore: first the decision, durably (a crash from here on completes
    /// the rollback and never resumes the restore), then each volume rewritten from its undo
    /// point, then the outcome recorded. Runs to its end even if the job was cancelled.
    pub(crate) fn roll_back(
        &self,
        steps: &[Step],
        reason: &str,
        ctx: &JobContext,
    ) -> Result<(), JobError> {
        let ctx = ctx.uncancellable();
        {
            let mut markers = Vec::new();
            for s in steps {
                if let Some(mut m) = self.restore_marker(s.volume_id)? {
                    m.rolling_back = Some(reason.to_string());
                    markers.push(m);
                }
            }
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            for m in &markers {
                put_marker(&mut t, m);
            }
            t.commit()?;
        }
        for s in steps {
            self.guard_restore(
                s.volume_id,
                &format!(
                    ": rolling back to undo point {} after the restore from backup {} failed \
                     ({reason})",
                    s.undo.id, s.backup_id
                ),
            );
        }
        let items: Vec<(&BackupRecord, u64)> =
            steps.iter().map(|s| (&s.undo, s.volume_id)).collect();
        self.rewrite(&items, &ctx)?;
        self.close_rolled_back(steps, reason)?;
        Ok(())
    }

    /// The job body of an in-place restore (new or resumed): rewrite, then record it done; on
    /// failure or cancel, roll back; when the array is stopping, leave it for the next start.
    pub(crate) fn run_in_place(
        &self,
        steps: &[Step],
        ctx: &JobContext,
    ) -> Result<Option<JobResult>, JobError> {
        let items: Vec<(&BackupRecord, u64)> = steps
            .iter()
            .map(|s| {
                let b = s.backup.as_ref();
                (b.expect("a restore runs with its backups"), s.volume_id)
            })
            .collect();
        let rewritten = match steps {
            [s] if s.vault.is_some() => self.rewrite_from_vault(s, ctx).map(|b| vec![b]),
            _ => self.rewrite(&items, ctx),
        };
        let e = match rewritten {
            Ok(bytes) => {
                if let Err(e) = self.finish_in_place(steps) {
                    // Restored, but not recorded: the marker stays, and the next start runs
                    // the restore again (rewriting nothing that matches) and records it.
                    for s in steps {
                        self.guard_restore(
                            s.volume_id,
                            &format!(
                                " from backup {}: recording the outcome failed ({e}); the \
                                 array finishes it at its next start",
                                s.backup_id
                            ),
                        );
                    }
                    return Err(e.into());
                }
                let report = steps
                    .iter()
                    .zip(bytes)
                    .map(|(s, b)| RestoredInPlace {
                        backup: s.backup_id,
                        volume: s.volume.clone(),
                        bytes_rewritten: b,
                    })
                    .collect();
                return Ok(Some(JobResult::RestoredInPlace(report)));
            }
            Err(e) => e,
        };
        if self.stopping() {
            tracing::warn!(
                undo = %undo_ids(steps),
                "restore interrupted by the stop; it resumes at the next start"
            );
            return Err(JobError::Failed(
                "interrupted: the array is stopping; the restore resumes at its next start".into(),
            ));
        }
        let reason = job_error_text(&e);
        match self.roll_back(steps, &reason, ctx) {
            Ok(()) => Err(match e {
                JobError::Cancelled => JobError::Cancelled,
                JobError::Failed(m) => JobError::Failed(format!(
                    "{m}; rolled back to the undo point (backup {})",
                    undo_ids(steps)
                )),
            }),
            Err(x) => {
                let x = job_error_text(&x);
                for s in steps {
                    self.guard_restore(
                        s.volume_id,
                        &format!(
                            ": the restore from backup {} failed ({reason}) and rolling back to \
                             undo point {} failed too ({x}); the array resumes or rolls back \
                             the restore at its next start",
                            s.backup_id, s.undo.id
                        ),
                    );
                }
                Err(JobError::Failed(format!(
                    "{reason}; rolling back to the undo point failed too: {x}; the volume stays \
                     read-only until the next start resumes or rolls back the restore"
                )))
            }
        }
    }

    /// Starts the job of an in-place restore (or of its rollback, when `rollback` says why).
    pub(crate) fn start_in_place_job(
        self: &Arc<Self>,
        steps: Vec<Step>,
        uses: UseGuard,
        rollback: Option<String>,
    ) -> std::io::Result<crate::JobId> {
        let me = self.clone();
        let target: Vec<String> = steps.iter().map(|s| s.volume.clone()).collect();
        let target = target.join(",");
        let uses = Arc::new(uses);
        let held = uses.clone();
        let kind = if rollback.is_some() {
            JobKind::RestoreRollback
        } else {
            JobKind::Restore
        };
        // Listed before the job can run: stop() takes this lock, so it cannot miss it.
        let mut listed = self.restore_jobs.lock();
        let into = target.clone();
        let job = self.jobs.start(kind, &target, move |ctx| {
            // Named before the job does anything, so a refusal can name the job; the backups
            // and undo points stay claimed until the job ends.
            held.describe(format!("{kind} job {} into {into}", ctx.id()));
            let _held = held;
            match &rollback {
                None => me.run_in_place(&steps, ctx),
                Some(reason) => match me.roll_back(&steps, reason, ctx) {
                    Ok(()) => Ok(Some(JobResult::RolledBack(RolledBack {
                        rolled_back_to: steps.iter().map(|s| s.undo.id).collect(),
                    }))),
                    Err(e) => {
                        for s in &steps {
                            me.guard_restore(
                                s.volume_id,
                                &format!(
                                    ": rolling back to undo point {} failed ({}); the array \
                                     retries at its next start",
                                    s.undo.id,
                                    job_error_text(&e)
                                ),
                            );
                        }
                        Err(e)
                    }
                },
            }
        });
        let job = job.inspect(|j| listed.push(j.id()));
        drop(listed);
        let job = job?;
        Ok(job.id())
    }

    /// At open: every restore a stop or crash interrupted is guarded again, then resumed,
    /// rolled back, or (into a new volume) removed; see the module documentation.
    pub(crate) fn recover_restores(self: &Arc<Self>) -> Result<()> {
        let (markers, bad) = self.restore_markers()?;
        for (volume_id, e) in bad {
            // Cannot tell what to do: keep the volume read-only, saying why.
            tracing::error!(volume_id, "a restore marker is unreadable: {e}");
            self.guard_restore(
                volume_id,
                &format!(": its restore record is unreadable ({e}); it stays read-only"),
            );
        }
        let mut groups: BTreeMap<BackupId, Vec<RestoreMarker>> = BTreeMap::new();
        for m in markers {
            if m.undo.is_none() {
                let removed = self.fail_new(
                    m.volume_id,
                    m.backup,
                    &m.volume,
                    "interrupted: the array stopped before the restore finished; the \
                     incomplete volume was removed",
                );
                // One restore that cannot be settled must not keep the array from starting.
                if let Err(e) = removed {
                    tracing::error!(volume = %m.volume, "removing an interrupted restore: {e}");
                    self.guard_restore(
                        m.volume_id,
                        &format!(": an interrupted restore could not be removed ({e})"),
                    );
                }
            } else {
                groups.entry(m.group).or_default().push(m);
            }
        }
        for (_, group) in groups {
            let ids: Vec<u64> = group.iter().map(|m| m.volume_id).collect();
            if let Err(e) = self.recover_in_place(group) {
                tracing::error!(?ids, "settling an interrupted restore: {e}");
                for id in ids {
                    self.guard_restore(
                        id,
                        &format!(": an interrupted restore could not be settled ({e})"),
                    );
                }
            }
        }
        Ok(())
    }

    fn recover_in_place(self: &Arc<Self>, group: Vec<RestoreMarker>) -> Result<()> {
        let usable = |id: BackupId| -> std::result::Result<BackupRecord, String> {
            let r = self.get(id).map_err(|e| e.to_string())?;
            if r.status != Status::Complete {
                return Err(format!("backup {id} is {}", r.status.as_str()));
            }
            self.image_name(&r).map_err(|e| e.to_string())?;
            Ok(r)
        };
        let mut steps = Vec::new();
        let mut rollback = group.iter().find_map(|m| m.rolling_back.clone());
        let mut stuck = None;
        for m in &group {
            let undo_id = m.undo.expect("grouped markers are in place");
            let backup = usable(m.backup);
            if let Err(why) = &backup {
                rollback.get_or_insert_with(|| format!("interrupted, and not resumable: {why}"));
            }
            match usable(undo_id) {
                Ok(undo) => steps.push(Step {
                    backup_id: m.backup,
                    backup: backup.ok(),
                    undo,
                    volume_id: m.volume_id,
                    volume: m.volume.clone(),
                    vault: None,
                }),
                Err(why) => {
                    stuck.get_or_insert(format!("undo point {undo_id}: {why}"));
                }
            }
        }
        if let Some(stuck) = stuck {
            // Without every undo point nothing is safe to start (a resumed restore that fails
            // must be undone): the volumes stay read-only, saying why, and the next start tries
            // again (a repaired catalog may bring the backups back).
            tracing::error!(%stuck, "an interrupted restore cannot be recovered");
            for m in &group {
                self.guard_restore(
                    m.volume_id,
                    &format!(
                        ": the restore from backup {} was interrupted and cannot be recovered \
                         ({stuck}); it stays read-only",
                        m.backup
                    ),
                );
            }
            return Ok(());
        }
        let ids: Vec<BackupId> = steps
            .iter()
            .flat_map(|s| [s.backup_id, s.undo.id])
            .collect();
        let uses = self.register_use(&ids, "an interrupted restore being recovered".into());
        if rollback.is_none() {
            // Resumed from the start, which rewrites whatever differs from the backup.
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            for s in &steps {
                let to = self
                    .volume_by_id(s.volume_id)
                    .map_or_else(|| s.volume.clone(), |v| v.name);
                self.note_in(&mut t, s.backup_id, Event::RestoreResumed { to })?;
            }
            t.commit()?;
        }
        for s in &steps {
            let why = match &rollback {
                None => format!(" from backup {} (resumed after a restart)", s.backup_id),
                Some(r) => format!(
                    ": rolling back to undo point {} after the restore from backup {} was \
                     interrupted ({r})",
                    s.undo.id, s.backup_id
                ),
            };
            self.guard_restore(s.volume_id, &why);
        }
        let target: Vec<String> = steps.iter().map(|s| s.volume.clone()).collect();
        let job = self
            .start_in_place_job(steps, uses, rollback.clone())
            .map_err(|e| Error::io("starting the recovery of a restore", e))?;
        match &rollback {
            None => {
                tracing::warn!(%job, volumes = %target.join(","), "resuming an interrupted restore")
            }
            Some(r) => tracing::warn!(
                %job,
                volumes = %target.join(","),
                "rolling back an interrupted restore: {r}"
            ),
        }
        Ok(())
    }
}
