//! The engine's and the backup layer's enums and job results as the API's types: one `From`
//! each, so every handler names a value the same way.

use arca_backup::record::{Method, Status};

use crate::types::*;

impl From<arca_backup::JobKind> for JobKind {
    fn from(k: arca_backup::JobKind) -> JobKind {
        use arca_backup::JobKind as K;
        match k {
            K::PoolCheck => JobKind::PoolCheck,
            K::BackupCopy => JobKind::BackupCopy,
            K::BackupDigest => JobKind::BackupDigest,
            K::Verify => JobKind::Verify,
            K::Restore => JobKind::Restore,
            K::RestoreRollback => JobKind::RestoreRollback,
            K::PairCopy => JobKind::PairCopy,
            K::PairResync => JobKind::PairResync,
            K::PairReverseResync => JobKind::PairReverseResync,
            K::PolicyRun => JobKind::PolicyRun,
        }
    }
}

impl From<arca_backup::JobState> for JobState {
    fn from(s: arca_backup::JobState) -> JobState {
        use arca_backup::JobState as S;
        match s {
            S::Running => JobState::Running,
            S::Succeeded => JobState::Succeeded,
            S::Failed => JobState::Failed,
            S::Cancelled => JobState::Cancelled,
        }
    }
}

impl From<Method> for BackupMethod {
    fn from(m: Method) -> BackupMethod {
        match m {
            Method::Snapshot => BackupMethod::Snapshot,
            Method::Copy => BackupMethod::Copy,
        }
    }
}

impl From<BackupMethod> for Method {
    fn from(m: BackupMethod) -> Method {
        match m {
            BackupMethod::Snapshot => Method::Snapshot,
            BackupMethod::Copy => Method::Copy,
        }
    }
}

impl From<Status> for BackupStatus {
    fn from(s: Status) -> BackupStatus {
        match s {
            Status::Copying => BackupStatus::Copying,
            Status::Complete => BackupStatus::Complete,
            Status::Failed => BackupStatus::Failed,
            Status::Consumed => BackupStatus::Consumed,
            Status::Deleted => BackupStatus::Deleted,
        }
    }
}

impl From<BackupStatus> for Status {
    fn from(s: BackupStatus) -> Status {
        match s {
            BackupStatus::Copying => Status::Copying,
            BackupStatus::Complete => Status::Complete,
            BackupStatus::Failed => Status::Failed,
            BackupStatus::Consumed => Status::Consumed,
            BackupStatus::Deleted => Status::Deleted,
        }
    }
}

impl From<arca_backup::TargetKind> for TargetKind {
    fn from(k: arca_backup::TargetKind) -> TargetKind {
        use arca_backup::TargetKind as K;
        match k {
            K::PairSecondary => TargetKind::PairSecondary,
            K::NewSnapshot => TargetKind::NewSnapshot,
            K::ExistingVolume => TargetKind::ExistingVolume,
            K::NewVolume => TargetKind::NewVolume,
        }
    }
}

impl From<arca_backup::PairState> for PairState {
    fn from(s: arca_backup::PairState) -> PairState {
        use arca_backup::PairState as S;
        match s {
            S::Copy => PairState::Copy,
            S::Pair => PairState::Pair,
            S::Split => PairState::Split,
            S::Resync => PairState::Resync,
            S::ReverseResync => PairState::ReverseResync,
            S::Error => PairState::Error,
        }
    }
}

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

impl From<arca_backup::Verification> for Verification {
    fn from(v: arca_backup::Verification) -> Verification {
        Verification {
            backup: v.backup,
            ok: v.ok,
            damaged: v.damaged.into_iter().map(|(o, l)| [o, l]).collect(),
            damaged_bytes: v.damaged_bytes,
            unreadable_extents: v.unreadable_extents,
            error: v.error,
        }
    }
}

impl From<arca_backup::JobResult> for JobResult {
    fn from(r: arca_backup::JobResult) -> JobResult {
        use arca_backup::JobResult as R;
        match r {
            R::PoolCheck(report) => JobResult::PoolCheck(report.into()),
            R::Verify(list) => JobResult::Verify(list.into_iter().map(Into::into).collect()),
            R::RestoredInPlace(list) => JobResult::RestoredInPlace(
                list.into_iter()
                    .map(|x| RestoredInPlace {
                        backup: x.backup,
                        volume: x.volume,
                        bytes_rewritten: x.bytes_rewritten,
                    })
                    .collect(),
            ),
            R::RestoredNew { backup, volume } => {
                JobResult::RestoredNew(RestoredNew { backup, volume })
            }
            R::RolledBack { rolled_back_to } => {
                JobResult::RolledBack(RolledBack { rolled_back_to })
            }
            R::BackupCopied {
                backup,
                bytes_copied,
            } => JobResult::BackupCopied(BackupCopied {
                backup,
                bytes_copied,
            }),
            R::Digested { digested, failed } => JobResult::Digested(Digested { digested, failed }),
            R::PairCopied { pair, bytes_copied } => {
                JobResult::PairCopied(PairCopied { pair, bytes_copied })
            }
            R::PolicyRan {
                policy,
                run,
                result,
            } => JobResult::PolicyRan(PolicyRan {
                policy,
                run,
                result: result.into(),
            }),
        }
    }
}

impl From<arca_backup::JobSnapshot> for Job {
    fn from(j: arca_backup::JobSnapshot) -> Job {
        Job {
            id: j.id,
            kind: j.kind.into(),
            target: j.target,
            state: j.state.into(),
            bytes_done: j.bytes_done,
            bytes_total: j.bytes_total,
            rate: j.rate_bytes_per_second,
            eta_seconds: j.eta_seconds,
            error: j.error,
            result: j.result.map(Into::into),
            created: rfc3339(j.created_unix),
            finished: j.finished_unix.map(rfc3339),
        }
    }
}
