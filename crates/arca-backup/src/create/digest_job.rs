//! The digest job: reads a snapshot backup's (immutable) image, hashes it, and records the
//! digest with the backup.

use std::sync::Arc;

use arca_store::{Error, Result};

use crate::backups::Backups;
use crate::catalog;
use crate::copier;
use crate::digest;
use crate::digest_store;
use crate::ids::{BackupId, JobId};
use crate::jobs::{Digested, JobError, JobKind, JobResult};

impl Backups {
    /// Backups whose digest job is running.
    pub fn digests_running(&self) -> usize {
        self.digest_jobs.lock().len()
    }

    /// Starts the job computing a snapshot backup's digest.
    pub(crate) fn start_digest(self: &Arc<Self>, id: BackupId) -> Result<JobId> {
        self.start_digests(vec![id])
    }

    /// Starts one job computing the digests of several backups in turn (after a restart, one
    /// job for all that were pending, not a thread each). A backup that cannot be digested is
    /// logged and skipped; the job fails only when none could be.
    pub(crate) fn start_digests(self: &Arc<Self>, ids: Vec<BackupId>) -> Result<JobId> {
        let me = self.clone();
        let target = match ids.as_slice() {
            [one] => self.get(*one)?.source.volume_name,
            _ => format!("{} backups", ids.len()),
        };
        let list = ids.clone();
        // Held until the job is entered in it, so the job's own removal comes after.
        let mut running = self.digest_jobs.lock();
        let job = self
            .jobs
            .start(JobKind::BackupDigest, &target, move |ctx| {
                // The map only tells verify which job to wait for: forgotten when this ends.
                let _forget = ForgetDigestJob {
                    backups: me.clone(),
                    ids: list.clone(),
                    job: ctx.id(),
                };
                let mut done = Vec::new();
                let mut failed = Vec::new();
                for &id in &list {
                    ctx.check()?;
                    match me.digest_one(id, ctx) {
                        Ok(()) => done.push(id),
                        Err(JobError::Cancelled) => return Err(JobError::Cancelled),
                        Err(JobError::Failed(m)) => {
                            tracing::warn!(backup = %id, "digest failed: {m}");
                            failed.push((id, m));
                        }
                    }
                }
                if done.is_empty() && !failed.is_empty() {
                    let (id, m) = &failed[0];
                    return Err(JobError::Failed(format!("backup {id}: {m}")));
                }
                let failed: Vec<BackupId> = failed.iter().map(|f| f.0).collect();
                Ok(Some(JobResult::Digested(Digested {
                    digested: done,
                    failed,
                })))
            })
            .map_err(|e| Error::io("starting a digest job", e))?;
        for id in ids {
            running.insert(id, job.id());
        }
        Ok(job.id())
    }

    fn digest_one(&self, id: BackupId, ctx: &crate::jobs::JobContext) -> Result<(), JobError> {
        let r = self.get(id)?;
        if r.digest.is_some() || !r.status.live() {
            return Ok(());
        }
        let (_, image) = self.image(&r)?;
        let es = self.pool.extent_size();
        ctx.set_total(r.source.size);
        let opts = copier::Options {
            hash: true,
            ..copier::Options::default()
        };
        let hashes = copier::copy(&image, r.source.size, &opts, ctx)?.hashes;
        let info = digest::info(es, r.source.size, &hashes);
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        if !old.status.live() {
            // Deleted meanwhile: nothing to record.
            return Ok(());
        }
        let mut new = old.clone();
        new.digest = Some(info);
        let digest_plan = digest_store::plan_store(&self.pool, id, &hashes)?;
        let mut t = self.pool.transaction();
        digest_plan.apply(&mut t);
        catalog::put(&mut t, Some(&old), &new);
        self.tag_destination(&mut t, &new)?;
        t.commit()?;
        Ok(())
    }
}

/// Removes a digest job's backups from `Backups::digest_jobs` when the job ends, however it
/// ends, so the map holds only running jobs.
struct ForgetDigestJob {
    backups: Arc<Backups>,
    ids: Vec<BackupId>,
    job: JobId,
}

impl Drop for ForgetDigestJob {
    fn drop(&mut self) {
        let mut map = self.backups.digest_jobs.lock();
        for id in &self.ids {
            if map.get(id) == Some(&self.job) {
                map.remove(id);
            }
        }
    }
}
