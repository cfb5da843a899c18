//! Verification: re-read a backup's image and compare it with the digest recorded when it was
//! taken; the result (and the damaged byte ranges) goes on the record's history.

use std::sync::Arc;

use arca_store::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::backups::Backups;
use crate::catalog;
use crate::digest;
use crate::digest_store;
use crate::jobs::{JobContext, JobError, JobKind, JobResult};
use crate::record::{DAMAGED_RANGES_MAX, Event, Status};

/// The outcome for one backup, as the verify job's result lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub backup: u64,
    pub ok: bool,
    /// Damaged byte ranges of the image: (offset, length).
    pub damaged: Vec<(u64, u64)>,
    pub damaged_bytes: u64,
    pub unreadable_extents: u64,
    pub error: Option<String>,
}

impl Backups {
    /// Starts one job verifying the given backups in turn (all complete ones when empty and
    /// `all`). Returns the job id and the backups it covers.
    pub fn verify(self: &Arc<Self>, ids: &[u64], all: bool) -> Result<(u64, Vec<u64>)> {
        let (ids, uses) = if all {
            let _c = self.catalog_lock.lock();
            let (records, _) = catalog::all(&self.pool)?;
            let ids: Vec<u64> = records
                .iter()
                .filter(|r| r.status == Status::Complete)
                .map(|r| r.id)
                .collect();
            let uses = self.register_use(&ids, "a verification".into());
            (ids, uses)
        } else {
            if ids.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "name the backups to verify, or all",
                ));
            }
            let (_, uses) = self.claim(ids, "verified", "a verification".into())?;
            (ids.to_vec(), uses)
        };
        let me = self.clone();
        let list = ids.clone();
        let uses = std::sync::Arc::new(uses);
        let uses_in_job = uses.clone();
        let mut total = 0;
        for &id in &ids {
            total += self.get(id)?.source.size;
        }
        let target = if all {
            "all".to_string()
        } else {
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        };
        let job = self
            .jobs
            .start(JobKind::Verify, &target, move |ctx| {
                // Deleting a backup is refused while this job reads it.
                let _uses = &uses_in_job;
                ctx.set_total(total);
                let mut results = Vec::new();
                for &id in &list {
                    ctx.check()?;
                    results.push(me.verify_one(id, ctx)?);
                }
                Ok(Some(JobResult::Verify(results)))
            })
            .map_err(|e| Error::io("starting a verify job", e))?;
        uses.describe(format!("verify job {}", job.id()));
        Ok((job.id(), ids))
    }

    fn verify_one(&self, id: u64, ctx: &JobContext) -> Result<Verification, JobError> {
        let mut r = self.get(id)?;
        if r.digest.is_none() {
            // Taken moments ago: its digest job is still reading the snapshot.
            let job = self.digest_jobs.lock().get(&id).copied();
            if let Some(j) = job.and_then(|j| self.jobs.get(j)) {
                // In slices, so cancelling this verification is not held up by the digest.
                while !j.wait(std::time::Duration::from_millis(200)).finished() {
                    ctx.check()?;
                }
                r = self.get(id)?;
            }
        }
        let Some(info) = r.digest.clone() else {
            // The digest job has not finished (or failed): nothing to compare with yet.
            return Ok(Verification {
                backup: id,
                ok: false,
                damaged: Vec::new(),
                damaged_bytes: 0,
                unreadable_extents: 0,
                error: Some("the digest has not been computed yet".into()),
            });
        };
        let recorded = match digest_store::load(&self.pool, id)? {
            Ok(h) => h,
            Err(m) => {
                return Ok(self.record_result(id, Vec::new(), 0, Some(m))?);
            }
        };
        if digest::root(info.extent_size, r.source.size, &recorded) != info.root {
            let m = "the stored extent hashes do not match the digest root".to_string();
            return Ok(self.record_result(id, Vec::new(), 0, Some(m))?);
        }
        let (_, image) = self.image(&r)?;
        let mut progress = |n: u64| {
            ctx.add_done(n);
            ctx.check()
        };
        let cmp = digest::compare(
            &image,
            r.source.size,
            info.extent_size,
            &recorded,
            &mut progress,
        )?;
        Ok(self.record_result(
            id,
            cmp.damaged,
            cmp.unreadable_extents,
            cmp.first_read_error,
        )?)
    }

    fn record_result(
        &self,
        id: u64,
        damaged: Vec<(u64, u64)>,
        unreadable: u64,
        error: Option<String>,
    ) -> Result<Verification> {
        let ok = damaged.is_empty() && unreadable == 0 && error.is_none();
        let damaged_bytes = damaged.iter().map(|d| d.1).sum();
        let kept: Vec<(u64, u64)> = damaged.iter().take(DAMAGED_RANGES_MAX).copied().collect();
        self.update(id, |r| {
            r.push_history(
                self.now_ms(),
                Event::Verified {
                    ok,
                    damaged: kept,
                    damaged_ranges: damaged.len() as u64,
                },
            );
            Ok(())
        })?;
        Ok(Verification {
            backup: id,
            ok,
            damaged,
            damaged_bytes,
            unreadable_extents: unreadable,
            error,
        })
    }
}
