//! Restores: in place (with an undo point) or as a new volume, one backup or a whole set.
//!
//! In place from a snapshot backup into its own volume costs what changed since the backup:
//! the store names the extents written or trimmed since the snapshot, and only those are put
//! back (copied from the snapshot, or unmapped where it had a hole). Other in-place restores
//! copy the whole image, skipping holes. While a restore runs its volume is guarded, so hosts
//! that reconnect get it read-only. What happens when a restore is interrupted, cancelled or
//! fails is in `restore_state.rs`: resumed or rolled back to the undo point, never left torn.

use std::sync::Arc;

use arca_store::{Error, GuardOwner, Result};
use serde::Serialize;

use crate::backups::{
    Backups, DISCONNECT_WAIT, UseGuard, backup_not_found, busy, invalid, restore_guard,
};
use crate::catalog;
use crate::copier;
use crate::create::CreateRequest;
use crate::ids::{BackupId, JobId};
use crate::jobs::{JobContext, JobError, JobKind, JobResult, RestoredNew};
use crate::record::{BackupRecord, Destination, Event, HostInfo, Method, RestoredFrom};
use crate::restore_state::{RestoreMarker, Step, put_marker};

#[derive(Debug, Clone)]
pub enum RestoreTo {
    /// Into a volume (the source when `None`), replacing its content.
    InPlace { volume: Option<String>, force: bool },
    /// Into a new volume.
    New { name: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub backups: Vec<BackupId>,
    pub volumes: Vec<String>,
    /// The automatic undo point (a catalogued snapshot backup labelled `pre-restore`).
    pub undo_backups: Vec<BackupId>,
    /// The job doing the work; `None` when the restore was instant.
    pub job: Option<JobId>,
}

pub(crate) struct Plan {
    pub record: BackupRecord,
    pub volume: String,
    /// The vault to restore from; the array's image when `None`.
    pub vault: Option<String>,
}

impl Backups {
    /// Claims a backup for a restore: it must be complete, and deleting it is refused until the
    /// restore ends.
    fn claim_for_restore(&self, ids: &[BackupId]) -> Result<(Vec<BackupRecord>, UseGuard)> {
        if self.stopping() {
            return Err(busy("the array is stopping; restore after it starts again"));
        }
        self.claim(ids, "restored", "a restore being started".into())
    }

    /// Restores one backup, or (with `set`) every backup of a backup set in place into its
    /// source volume.
    pub fn restore(self: &Arc<Self>, id: BackupId, to: RestoreTo) -> Result<Restored> {
        let (mut records, uses) = self.claim_for_restore(&[id])?;
        let r = records.remove(0);
        match to {
            RestoreTo::New { name } => self.restore_new(r, &name, uses),
            RestoreTo::InPlace { volume, force } => {
                let volume = self.in_place_target(&r, volume)?;
                self.restore_in_place(
                    vec![Plan {
                        record: r,
                        volume,
                        vault: None,
                    }],
                    uses,
                    force,
                )
            }
        }
    }

    /// The volume an in-place restore of `r` goes into: the one named, or its source.
    pub(crate) fn in_place_target(
        &self,
        r: &BackupRecord,
        volume: Option<String>,
    ) -> Result<String> {
        if let Some(v) = volume {
            return Ok(v);
        }
        let v = self.volume_by_id(r.source.volume_id).ok_or_else(|| {
            invalid(format!(
                "the source of backup {} ({}) no longer exists; name a volume to restore into",
                r.id, r.source.volume_name
            ))
        })?;
        Ok(v.name)
    }

    /// Restores every complete backup of a set in place, as a unit: one undo point for all of
    /// them (itself a set), then one job.
    pub fn restore_set(self: &Arc<Self>, set_id: u64, force: bool) -> Result<Restored> {
        let q = catalog::Query {
            set_id: Some(set_id),
            limit: catalog::QUERY_LIMIT_MAX,
            ..catalog::Query::default()
        };
        let members = catalog::query(&self.pool, &q)?;
        if members.is_empty() {
            return Err(Error::new(
                arca_store::ErrorKind::NotFound,
                format!("backup set {set_id} does not exist"),
            ));
        }
        let ids: Vec<BackupId> = members.iter().map(|m| m.id).collect();
        let (records, uses) = self.claim_for_restore(&ids)?;
        let mut plans = Vec::new();
        for r in records {
            let v = self.volume_by_id(r.source.volume_id).ok_or_else(|| {
                invalid(format!(
                    "volume {} of set {set_id} no longer exists",
                    r.source.volume_name
                ))
            })?;
            plans.push(Plan {
                record: r,
                volume: v.name,
                vault: None,
            });
        }
        self.restore_in_place(plans, uses, force)
    }

    fn restore_new(
        self: &Arc<Self>,
        r: BackupRecord,
        name: &str,
        uses: UseGuard,
    ) -> Result<Restored> {
        match &r.destination {
            Destination::Snapshot { snapshot, .. } => self.clone_new(&r, snapshot, name),
            Destination::Volume { .. } => self.copy_new(r, name, uses),
        }
    }

    /// Restores a snapshot backup into a new volume: instant, a clone shares the snapshot's
    /// extents. One transaction with the note.
    fn clone_new(&self, r: &BackupRecord, snapshot: &str, name: &str) -> Result<Restored> {
        let id = r.id;
        let src = self
            .volume_by_id(r.source.volume_id)
            .ok_or_else(|| backup_not_found(id))?;
        {
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            t.clone_snapshot(&src.name, snapshot, name, None)?;
            let event = Event::Restored {
                to: name.to_string(),
                in_place: false,
                from: RestoredFrom::Array,
            };
            self.note_in(&mut t, id, event)?;
            t.commit()?;
        }
        Ok(Restored {
            backups: vec![id],
            volumes: vec![name.to_string()],
            undo_backups: Vec::new(),
            job: None,
        })
    }

    /// Restores a copy backup into a new volume: the volume and its marker now, the image by a
    /// job.
    fn copy_new(self: &Arc<Self>, r: BackupRecord, name: &str, uses: UseGuard) -> Result<Restored> {
        let (_, image) = self.image(&r)?;
        let size = r.source.size;
        self.restore_new_by_job(&r, name, uses, RestoredFrom::Array, move |_, to, ctx| {
            // A new volume: holes are there already.
            let opts = copier::Options {
                to: Some(to),
                fresh: true,
                ..copier::Options::default()
            };
            copier::copy(&image, size, &opts, ctx)?;
            Ok(())
        })
    }

    /// A restore into new volume `name` whose image `fill` writes (the volume holds only holes
    /// when it starts), as a job: the volume, its guard and its marker in one transaction now,
    /// so a stop or crash before the job records it done leaves a volume the next start
    /// removes; hosts see it read-only until then.
    pub(crate) fn restore_new_by_job(
        self: &Arc<Self>,
        r: &BackupRecord,
        name: &str,
        uses: UseGuard,
        from: RestoredFrom,
        fill: impl FnOnce(&Backups, &arca_store::Export, &JobContext) -> Result<(), JobError>
        + Send
        + 'static,
    ) -> Result<Restored> {
        let id = r.id;
        let volume_id = {
            let _c = self.catalog_lock.lock();
            let mut t = self.pool.transaction();
            let volume_id = t.create_volume(name, r.source.size, None)?;
            // Hosts see it read-only from its first instant until the copy is done.
            t.add_volume_guard(
                name,
                restore_guard(volume_id, &format!(" from backup {id}")),
            )?;
            put_marker(
                &mut t,
                &RestoreMarker {
                    volume_id,
                    volume: name.to_string(),
                    backup: id,
                    undo: None,
                    group: id,
                    started_ms: self.now_ms(),
                    rolling_back: None,
                },
            );
            t.commit()?;
            volume_id
        };
        let me = self.clone();
        let target = name.to_string();
        let size = r.source.size;
        let uses = Arc::new(uses);
        let held = uses.clone();
        // Listed before the job can run: stop() takes this lock, so it cannot miss it.
        let mut listed = self.restore_jobs.lock();
        let what = format!("into new volume {name}");
        let started = self.jobs.start(JobKind::Restore, name, move |ctx| {
            // Named before the job does anything, so a refusal can name the job.
            held.describe(format!("restore job {} {what}", ctx.id()));
            let _held = held;
            let copy = (|| -> Result<(), JobError> {
                let to = me.pool.export_unguarded(&target)?;
                ctx.set_total(size);
                fill(&me, &to, ctx)
            })();
            match copy {
                Ok(()) => {
                    me.finish_new(volume_id, id, &target, from)?;
                    Ok(Some(JobResult::RestoredNew(RestoredNew {
                        backup: id,
                        volume: target,
                    })))
                }
                Err(_) if me.stopping() => {
                    tracing::warn!(volume = %target, "restore interrupted by the stop");
                    Err(JobError::Failed(
                        "interrupted: the array is stopping; the incomplete volume is \
                         removed at its next start"
                            .into(),
                    ))
                }
                Err(e) => {
                    let reason = crate::restore_state::job_error_text(&e);
                    if let Err(x) = me.fail_new(volume_id, id, &target, &reason) {
                        tracing::error!(volume = %target, "removing a failed restore: {x}");
                    }
                    Err(e)
                }
            }
        });
        let started = started.inspect(|j| listed.push(j.id()));
        drop(listed);
        let job = match started {
            Ok(j) => j,
            Err(e) => {
                let reason = format!("the restore job could not start: {e}");
                // The cause is what the caller must see; a failed clean-up is logged
                // (the next start removes the volume).
                if let Err(x) = self.fail_new(volume_id, id, name, &reason) {
                    tracing::error!(volume = %name, "removing a restore that did not start: {x}");
                }
                return Err(Error::io("starting a restore job", e));
            }
        };
        Ok(Restored {
            backups: vec![id],
            volumes: vec![name.to_string()],
            undo_backups: Vec::new(),
            job: Some(job.id()),
        })
    }

    /// Lifts the guards [`Backups::prepare_in_place`] set, in one transaction; a failure is
    /// logged (the caller is already reporting why the restore did not start).
    fn lift_plans(&self, plans: &[Plan]) {
        let mut t = self.pool.transaction();
        // A target that is gone has no guard to lift: it must not keep the others guarded.
        let planned = plans
            .iter()
            .try_for_each(|p| match self.pool.volume(&p.volume) {
                Ok(v) => t.remove_volume_guard(&p.volume, GuardOwner::Restore(v.id)),
                Err(_) => Ok(()),
            });
        if let Err(e) = planned.and_then(|()| t.commit()) {
            tracing::warn!("lifting the guards of a restore that did not start: {e}");
        }
    }

    /// Checks every target, then guards them and disconnects their hosts. On error nothing is
    /// left guarded.
    fn prepare_in_place(&self, plans: &[Plan], force: bool) -> Result<()> {
        // Checks first, so a refusal changes nothing.
        for p in plans {
            let v = self.pool.volume(&p.volume)?;
            if let Some(g) = &v.guard {
                return Err(busy(format!("cannot restore into {}: {g}", v.name)));
            }
            if v.size < p.record.source.size {
                return Err(invalid(format!(
                    "volume {} is {} bytes, smaller than backup {} ({} bytes)",
                    v.name, v.size, p.record.id, p.record.source.size
                )));
            }
            let hosts = self.hosts.connected(&v.name);
            if !hosts.is_empty() && !force {
                return Err(busy(format!(
                    "volume {} has {} host connection(s) ({}); disconnect them first, or \
                     restore with force to disconnect them",
                    v.name,
                    hosts.len(),
                    hosts.join(", ")
                )));
            }
        }
        // All or none: one transaction guards every target.
        let mut t = self.pool.transaction();
        for p in plans {
            let v = self.pool.volume(&p.volume)?;
            let why = format!(" from backup {}", p.record.id);
            t.add_volume_guard(&p.volume, restore_guard(v.id, &why))?;
        }
        t.commit()?;
        for p in plans {
            // The guard already refuses their writes; now they go.
            if self.hosts.disconnect(&p.volume) > 0
                && !self.hosts.wait_disconnected(&p.volume, DISCONNECT_WAIT)
            {
                self.lift_plans(plans);
                return Err(busy(format!(
                    "hosts of {} did not disconnect within {} s",
                    p.volume,
                    DISCONNECT_WAIT.as_secs()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn restore_in_place(
        self: &Arc<Self>,
        plans: Vec<Plan>,
        uses: UseGuard,
        force: bool,
    ) -> Result<Restored> {
        self.prepare_in_place(&plans, force)?;
        let mut volumes = Vec::new();
        for p in &plans {
            match self.pool.volume(&p.volume) {
                Ok(v) => volumes.push(v),
                Err(e) => {
                    self.lift_plans(&plans);
                    return Err(e);
                }
            }
        }
        // The undo point (one catalogued snapshot backup, a set when several volumes) and the
        // restore's markers, in one transaction: from then on a stop or crash leaves a restore
        // the next start resumes or rolls back, never a volume silently half restored.
        let source_ids: Vec<String> = plans.iter().map(|p| p.record.id.to_string()).collect();
        let req = CreateRequest {
            volumes: plans.iter().map(|p| p.volume.clone()).collect(),
            to: None,
            method: Some(Method::Snapshot),
            info: HostInfo {
                program: Some("arca".into()),
                label: Some("pre-restore".into()),
                description: Some(format!(
                    "undo point taken before restoring backup {}",
                    source_ids.join(", ")
                )),
                ..HostInfo::default()
            },
            retention: Default::default(),
        };
        let started_ms = self.now_ms();
        let mut undo: Vec<BackupRecord> = Vec::new();
        let created = self.create_snapshots_with(&req, &volumes, &mut |t, records| {
            let group = records[0].id;
            for (p, u) in plans.iter().zip(records) {
                let m = RestoreMarker {
                    volume_id: u.source.volume_id,
                    volume: p.volume.clone(),
                    backup: p.record.id,
                    undo: Some(u.id),
                    group,
                    started_ms,
                    rolling_back: None,
                };
                put_marker(t, &m);
            }
            let ids: Vec<BackupId> = records.iter().map(|r| r.id).collect();
            uses.add(&ids);
            undo = records.to_vec();
        });
        let steps: Vec<Step> = plans
            .iter()
            .zip(&undo)
            .map(|(p, u)| Step {
                backup_id: p.record.id,
                backup: Some(p.record.clone()),
                undo: u.clone(),
                volume_id: u.source.volume_id,
                volume: p.volume.clone(),
                vault: p.vault.clone(),
            })
            .collect();
        if let Err(e) = created {
            // The undo point and the markers commit together or not at all (the closure above
            // ran either way); a marker that cannot be read counts as committed.
            let committed = steps
                .first()
                .is_some_and(|s| !matches!(self.restore_marker(s.volume_id), Ok(None)));
            if committed {
                // Taken, then failed: nothing was rewritten. The cause is what the caller must
                // see; a failed clean-up is logged (the next start settles it).
                self.abandon_logged(&steps, &format!("the restore could not start: {e}"));
            } else {
                self.lift_plans(&plans);
            }
            return Err(e);
        }
        let undo_ids: Vec<BackupId> = undo.iter().map(|r| r.id).collect();
        let backups: Vec<BackupId> = plans.iter().map(|p| p.record.id).collect();
        let volumes: Vec<String> = plans.iter().map(|p| p.volume.clone()).collect();
        match self.start_in_place_job(steps.clone(), uses, None) {
            Ok(job) => Ok(Restored {
                backups,
                volumes,
                undo_backups: undo_ids,
                job: Some(job),
            }),
            Err(e) => {
                self.abandon_logged(&steps, &format!("the restore job could not start: {e}"));
                Err(Error::io("starting a restore job", e))
            }
        }
    }

    /// Rewrites each volume with a backup's image: only the extents changed since, when the
    /// backup is a snapshot of that very volume; the whole image otherwise, writing only the
    /// extents that differ. Rewriting changes content and nothing else, so doing it again (a
    /// resumed restore) is harmless. Returns the bytes settled per volume.
    pub(crate) fn rewrite(
        &self,
        items: &[(&BackupRecord, u64)],
        ctx: &JobContext,
    ) -> Result<Vec<u64>, JobError> {
        let es = self.pool.extent_size();
        // Progress over the whole set: what each volume will rewrite, known up front.
        let mut total = 0;
        let mut work = Vec::new();
        for &(r, volume_id) in items {
            let v = self.volume_by_id(volume_id).ok_or_else(|| {
                JobError::Failed(format!("volume {} no longer exists", r.source.volume_name))
            })?;
            let diff = match &r.destination {
                Destination::Snapshot { snapshot, .. } if v.id == r.source.volume_id => {
                    Some(self.pool.changed_extents(&v.name, snapshot)?)
                }
                _ => None,
            };
            total += diff
                .as_ref()
                .map_or(v.size, |d| copier::listed_bytes(d, v.size, es));
            work.push((r, v, diff));
        }
        ctx.restart_progress(total);
        let mut out = Vec::new();
        for (r, v, diff) in work {
            let to = self.pool.export_unguarded(&v.name)?;
            let (_, image) = self.image(r)?;
            let opts = copier::Options {
                to: Some(&to),
                // Beyond the image's end (the volume grew since) the volume reads zeros.
                dest_size: Some(v.size),
                ..copier::Options::default()
            };
            let done = match &diff {
                // Only what changed since the snapshot: its data, or a hole where it had none.
                // Extent by extent, as it always went: changes are scattered, and a stop or
                // crash finds the restore between two extents.
                Some(changed) => copier::copy(
                    &image,
                    r.source.size,
                    &copier::Options {
                        extents: copier::Extents::Listed(changed),
                        chunk_bytes: Some(es),
                        ..opts
                    },
                    ctx,
                )?,
                // The whole image, into a volume that mostly holds it already (and whose undo
                // point shares its extents): identical extents are left alone.
                None => copier::copy(
                    &image,
                    r.source.size,
                    &copier::Options {
                        differs_only: true,
                        ..opts
                    },
                    ctx,
                )?,
            };
            out.push(done.bytes_done);
        }
        Ok(out)
    }
}
