//! The engine's check report and the backup layer's job results and snapshots as the API's
//! types: one `From` each, so every handler names a value the same way.

use crate::types::*;

impl From<arca_store::FsckReport> for CheckReport {
    fn from(r: arca_store::FsckReport) -> CheckReport {
        CheckReport {
            clean: r.is_clean(),
            problems: r
                .problems
                .into_iter()
                .map(|p| Problem {
                    code: p.code.to_string(),
                    message: p.message,
                })
                .collect(),
            volumes: r.volumes as u64,
            snapshots: r.snapshots as u64,
            extents: r.extents_referenced,
        }
    }
}

/// A job's result with the engine's check report turned into the API's.
fn job_result(r: arca_backup::JobResult) -> JobResult {
    use arca_backup::JobResult as R;
    match r {
        R::PoolCheck(report) => R::PoolCheck(report.into()),
        R::Verify(x) => R::Verify(x),
        R::RestoredInPlace(x) => R::RestoredInPlace(x),
        R::RestoredNew(x) => R::RestoredNew(x),
        R::RolledBack(x) => R::RolledBack(x),
        R::BackupCopied(x) => R::BackupCopied(x),
        R::Digested(x) => R::Digested(x),
        R::PairCopied(x) => R::PairCopied(x),
        R::PolicyRan(x) => R::PolicyRan(x),
        R::CopiedToVault(x) => R::CopiedToVault(x),
    }
}

impl From<arca_backup::JobSnapshot> for Job {
    fn from(j: arca_backup::JobSnapshot) -> Job {
        Job {
            id: j.id,
            kind: j.kind,
            target: j.target,
            state: j.state,
            bytes_done: j.bytes_done,
            bytes_total: j.bytes_total,
            rate: j.rate_bytes_per_second,
            eta_seconds: j.eta_seconds,
            error: j.error,
            result: j.result.map(job_result),
            created: rfc3339(j.created_unix),
            finished: j.finished_unix.map(rfc3339),
        }
    }
}
