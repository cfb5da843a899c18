//! Verification: re-read a backup's image and compare it with the digest recorded when it was
//! taken; the result (and the damaged byte ranges) goes on the record's history.

use std::sync::Arc;

use arca_store::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::backups::Backups;
use crate::catalog;
use crate::digest;
use crate::digest_store;
use crate::ids::BackupId;
use crate::jobs::{JobContext, JobError, JobKind, JobResult};
use crate::record::{DAMAGED_RANGES_MAX, Event, Status};

/// How long a verification waiting for a digest job sleeps between looks at its own cancel.
const DIGEST_WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(200);

/// The outcome for one backup, as a verify job's result lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Verification {
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub backup: BackupId,
    pub ok: bool,
    /// Damaged byte ranges of the image: `[offset, length]`.
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<[u64; 2]>))]
    pub damaged: Vec<(u64, u64)>,
    pub damaged_bytes: u64,
    pub unreadable_extents: u64,
    pub error: Option<String>,
}

impl Backups {
    /// Starts one job verifying the given backups in turn (all complete ones when empty and
    /// `all`). Returns the job id and the backups it covers.
    pub fn verify(
        self: &Arc<Self>,
        ids: &[BackupId],
        all: bool,
    ) -> Result<(crate::JobId, Vec<BackupId>)> {
        let (ids, uses) = if all {
            let _c = self.catalog_lock.lock();
            let (records, _) = catalog::all(&self.pool)?;
            let ids: Vec<BackupId> = records
                .iter()
                .filter(|r| r.status == Status::Complete && r.on_array())
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
            ids.iter()
                .map(BackupId::to_string)
                .collect::<Vec<_>>()
                .join(",")
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

    fn verify_one(&self, id: BackupId, ctx: &JobContext) -> Result<Verification, JobError> {
        let mut r = self.get(id)?;
        if r.digest.is_none() {
            // Taken moments ago: its digest job is still reading the snapshot.
            let job = self.digest_jobs.lock().get(&id).copied();
            if let Some(j) = job.and_then(|j| self.jobs.get(j)) {
                // In slices, so cancelling this verification is not held up by the digest.
                while !j.wait(DIGEST_WAIT_SLICE).finished() {
                    ctx.check()?;
                }
            }
            // Read again even without a job: it may have recorded the digest and ended
            // between the first read and the look-up.
            r = self.get(id)?;
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
        id: BackupId,
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

#[cfg(test)]
mod tests {
    //! Verification waiting for a digest job, and the map of digest jobs it waits on.

    use std::sync::Arc;

    use crate::BackupId;
    use std::time::{Duration, Instant};

    use arca_store::sim::{PowerDomain, SimDevice};
    use arca_store::{BlockDevice, Pool, PoolConfig};

    use crate::jobs::{JobKind, JobManager, JobResult, JobState};
    use crate::{Backups, CreateRequest, NoHosts};

    const ES: u64 = 4096;
    const WAIT: Duration = Duration::from_secs(20);

    fn backups() -> (Arc<Backups>, Arc<JobManager>) {
        let dev = Arc::new(SimDevice::new("sim0", 32 << 20, PowerDomain::new()));
        let config = PoolConfig {
            extent_size: ES as u32,
            meta_len: Some(4 << 20),
        };
        let pool = Pool::create(vec![dev as Arc<dyn BlockDevice>], &config).unwrap();
        let jobs = Arc::new(JobManager::new());
        let b = Backups::open(pool, jobs.clone(), Arc::new(NoHosts)).unwrap();
        (b, jobs)
    }

    /// A snapshot backup of `volume` whose digest is not recorded (as while its job runs).
    fn undigested_backup(b: &Arc<Backups>, jobs: &JobManager, volume: &str) -> BackupId {
        if b.pool.volume(volume).is_err() {
            b.pool.create_volume(volume, 32 * ES, None).unwrap();
            let e = b.pool.export(volume).unwrap();
            e.write(0, &[7u8; 8 * ES as usize], false).unwrap();
        }
        let c = b
            .create(CreateRequest {
                volumes: vec![volume.into()],
                ..CreateRequest::default()
            })
            .unwrap();
        let j = jobs.get(c.jobs[0]).unwrap();
        assert_eq!(j.wait(WAIT), JobState::Succeeded);
        let id = c.records[0].id;
        b.update(id, |r| {
            r.digest = None;
            Ok(())
        })
        .unwrap();
        id
    }

    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Regression: a verification waiting for a backup's digest job waited up to 24 h without
    /// looking at its own cancellation.
    #[test]
    fn cancelling_a_verify_waiting_for_a_digest_returns_promptly() {
        let (b, jobs) = backups();
        let id = undigested_backup(&b, &jobs, "v");
        // A digest job that does not end until told: the verification must wait for it.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let digest = jobs
            .start(JobKind::BackupDigest, "v", move |_| {
                let _ = held.recv();
                Ok(None)
            })
            .unwrap();
        b.digest_jobs.lock().insert(id, digest.id());
        let (vj, _) = b.verify(&[id], false).unwrap();
        let verify = jobs.get(vj).unwrap();
        // The job sets its total first, then reads the record and waits.
        wait_until("the verification starts", || {
            verify.snapshot().bytes_total > 0
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(verify.snapshot().state, JobState::Running, "it waits");
        assert!(verify.cancel());
        assert_eq!(verify.wait(WAIT), JobState::Cancelled);
        assert_eq!(
            digest.snapshot().state,
            JobState::Running,
            "not by the digest's end"
        );
        release.send(()).unwrap();
        assert_eq!(digest.wait(WAIT), JobState::Succeeded);
    }

    /// Regression: the map from backups to their digest jobs kept every entry for the
    /// daemon's life; a job that fails must leave it too.
    #[test]
    fn a_failed_digest_job_leaves_the_map() {
        let (b, jobs) = backups();
        // Neither backup exists: each digest fails, so the job does.
        let j = b
            .start_digests(vec![BackupId(u64::MAX - 1), BackupId(u64::MAX)])
            .unwrap();
        assert_eq!(jobs.get(j).unwrap().wait(WAIT), JobState::Failed);
        assert_eq!(b.digests_running(), 0);
        assert!(b.digest_jobs.lock().is_empty());
    }

    /// Regression (as above): a cancelled digest job leaves the map, for the backups it did
    /// and those it never reached.
    #[test]
    fn a_cancelled_digest_job_leaves_the_map() {
        let (b, jobs) = backups();
        let first = undigested_backup(&b, &jobs, "v");
        let second = undigested_backup(&b, &jobs, "v");
        let job = {
            // Recording the first digest needs the catalog lock: the job cannot end before
            // it sees the cancel.
            let _c = b.catalog_lock.lock();
            let j = b.start_digests(vec![first, second]).unwrap();
            {
                let map = b.digest_jobs.lock();
                assert_eq!((map.get(&first), map.get(&second)), (Some(&j), Some(&j)));
            }
            let job = jobs.get(j).unwrap();
            assert!(job.cancel());
            job
        };
        assert_eq!(job.wait(WAIT), JobState::Cancelled);
        assert!(b.digest_jobs.lock().is_empty());
        assert!(b.get(second).unwrap().digest.is_none(), "never reached");
    }

    /// A verification of a backup whose digest job has ended compares with that digest.
    #[test]
    fn a_verify_after_the_digest_job_compares() {
        let (b, jobs) = backups();
        let id = undigested_backup(&b, &jobs, "v");
        let j = b.start_digests(vec![id, BackupId(u64::MAX)]).unwrap();
        let digest = jobs.get(j).unwrap();
        assert_eq!(digest.wait(WAIT), JobState::Succeeded);
        // The result shape the API documents.
        let want = JobResult::Digested(crate::jobs::Digested {
            digested: vec![id],
            failed: vec![BackupId(u64::MAX)],
        });
        assert_eq!(digest.snapshot().result, Some(want));
        assert_eq!(
            serde_json::to_string(&digest.snapshot().result).unwrap(),
            format!("{{\"digested\":[{id}],\"failed\":[{}]}}", u64::MAX)
        );
        let (vj, _) = b.verify(&[id], false).unwrap();
        let verify = jobs.get(vj).unwrap();
        assert_eq!(verify.wait(WAIT), JobState::Succeeded);
        match verify.snapshot().result {
            Some(JobResult::Verify(v)) => assert!(v.iter().all(|x| x.ok), "{v:?}"),
            other => panic!("a verification's result: {other:?}"),
        }
    }
}
