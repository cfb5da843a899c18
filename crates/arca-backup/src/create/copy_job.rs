//! The copy backup job: copies the point-in-time image into the destination volume, hashing
//! as it goes, then one transaction marks the backup complete (or failed) and drops the
//! point-in-time snapshot.

use std::sync::Arc;

use arca_store::{Error, GuardOwner, Result};

use crate::backups::{Backups, pit_snapshot_name};
use crate::catalog;
use crate::copier;
use crate::digest::{self, ExtentHash};
use crate::digest_store;
use crate::ids::{BackupId, JobId};
use crate::jobs::{BackupCopied, JobError, JobKind, JobResult};
use crate::record::{Destination, Status};

impl Backups {
    pub(super) fn start_copy(self: &Arc<Self>, id: BackupId) -> Result<JobId> {
        let r = self.get(id)?;
        let me = self.clone();
        let target = r.source.volume_name.clone();
        let job = self
            .jobs
            .start(JobKind::BackupCopy, &target, move |ctx| {
                let result = me.copy_body(id, ctx);
                match result {
                    Ok(bytes) => Ok(Some(JobResult::BackupCopied(BackupCopied {
                        backup: id,
                        bytes_copied: bytes,
                    }))),
                    Err(e) => {
                        let reason = match &e {
                            JobError::Cancelled => "cancelled".to_string(),
                            JobError::Failed(m) => m.clone(),
                        };
                        if let Err(x) = me.fail_copy(id, &reason) {
                            tracing::error!(backup = %id, "marking the copy failed: {x}");
                        }
                        Err(e)
                    }
                }
            })
            .map_err(|e| Error::io("starting a copy job", e))?;
        Ok(job.id())
    }

    /// Copies the point-in-time image into the destination, hashing as it goes, then marks
    /// the backup complete. Returns the bytes copied.
    fn copy_body(&self, id: BackupId, ctx: &crate::jobs::JobContext) -> Result<u64, JobError> {
        let r = self.get(id)?;
        let Destination::Volume {
            volume_id, created, ..
        } = r.destination
        else {
            return Err(JobError::Failed("not a copy backup".into()));
        };
        let src = self
            .volume_by_id(r.source.volume_id)
            .ok_or_else(|| JobError::Failed("the source volume was deleted".into()))?;
        let dst = self
            .volume_by_id(volume_id)
            .ok_or_else(|| JobError::Failed("the destination volume was deleted".into()))?;
        let from = self
            .pool
            .export(&format!("{}@{}", src.name, pit_snapshot_name(id)))?;
        let to = self.pool.export_unguarded(&dst.name)?;
        let es = self.pool.extent_size();
        let size = r.source.size;
        // A volume made for the backup is all holes already and the image's size; a reused
        // one is zeroed where the image has holes and beyond its end (it must keep no old data).
        let dest_size = if created { size } else { dst.size.max(size) };
        ctx.set_total(dest_size);
        let opts = copier::Options {
            to: Some(&to),
            dest_size: Some(dest_size),
            fresh: created,
            hash: true,
            ..copier::Options::default()
        };
        let copied = copier::copy(&from, size, &opts, ctx)?;
        let (hashes, copied) = (copied.hashes, copied.data_bytes);
        self.complete_copy(id, es, &hashes)
            .map_err(JobError::from)?;
        Ok(copied)
    }

    /// One transaction: the record complete with its digest, the point-in-time snapshot gone.
    fn complete_copy(&self, id: BackupId, es: u64, hashes: &[ExtentHash]) -> Result<()> {
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        let mut new = old.clone();
        new.status = Status::Complete;
        new.completed_ms = Some(self.now_ms());
        new.digest = Some(digest::info(es, old.source.size, hashes));
        new.job = None;
        let src = self.volume_by_id(old.source.volume_id);
        let digest_plan = digest_store::plan_store(&self.pool, id, hashes)?;
        let mut t = self.pool.transaction();
        if let Some(src) = &src {
            let pit = pit_snapshot_name(id);
            t.remove_snapshot_guard(&src.name, &pit, GuardOwner::Backup(id.get()))?;
            t.delete_snapshot(&src.name, &pit)?;
        }
        digest_plan.apply(&mut t);
        catalog::put(&mut t, Some(&old), &new);
        // The destination's guard now says it holds the backup.
        self.tag_destination(&mut t, &new)?;
        t.commit()
    }

    /// Marks a copy failed with its reason: the point-in-time snapshot goes, a volume made
    /// for the backup goes, a reused one keeps the failed record as its descriptor.
    pub(crate) fn fail_copy(&self, id: BackupId, reason: &str) -> Result<()> {
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        if old.status != Status::Copying {
            return Ok(());
        }
        let mut new = old.clone();
        new.status = Status::Failed;
        new.status_reason = Some(reason.to_string());
        new.completed_ms = Some(self.now_ms());
        new.job = None;
        let src = self.volume_by_id(old.source.volume_id);
        let pit = pit_snapshot_name(id);
        let has_pit = src
            .as_ref()
            .is_some_and(|s| self.pool.snapshot(&s.name, &pit).is_ok());
        let mut t = self.pool.transaction();
        if let (Some(s), true) = (&src, has_pit) {
            t.remove_snapshot_guard(&s.name, &pit, GuardOwner::Backup(id.get()))?;
            t.delete_snapshot(&s.name, &pit)?;
        }
        if let Destination::Volume {
            volume_id, created, ..
        } = &old.destination
            && let Some(v) = self.volume_by_id(*volume_id)
        {
            t.remove_volume_guard(&v.name, GuardOwner::Backup(id.get()))?;
            if *created {
                t.delete_volume(&v.name, false)?;
            } else {
                t.set_volume_tag(&v.name, Some(new.encode()))?;
            }
        }
        catalog::put(&mut t, Some(&old), &new);
        t.commit()?;
        tracing::warn!(backup = %id, "copy backup failed: {reason}");
        Ok(())
    }
}
