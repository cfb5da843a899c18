//! Jobs: their kinds, states and results.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// A consistency check of the pool; result: a CheckReport.
    PoolCheck,
    /// A copy backup being copied; result: a BackupCopied.
    BackupCopy,
    /// Snapshot backups' digests being computed; result: a Digested.
    BackupDigest,
    /// Backups compared with their digests; result: a list of Verification.
    Verify,
    /// A restore; result: a RestoredNew, or a list of RestoredInPlace.
    Restore,
    /// An in-place restore being undone; result: a RolledBack.
    RestoreRollback,
    /// A pair's initial copy; result: a PairCopied.
    PairCopy,
    /// A pair's resync, primary to secondary; result: a PairCopied.
    PairResync,
    /// A pair's resync, secondary to primary; result: a PairCopied.
    PairReverseResync,
    /// A backup policy's run; result: a PolicyRan.
    PolicyRun,
}

wire_names!(JobKind {
    PoolCheck => "pool-check",
    BackupCopy => "backup-copy",
    BackupDigest => "backup-digest",
    Verify => "verify",
    Restore => "restore",
    RestoreRollback => "restore-rollback",
    PairCopy => "pair-copy",
    PairResync => "pair-resync",
    PairReverseResync => "pair-reverse-resync",
    PolicyRun => "policy-run",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

wire_names!(JobState {
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// The result of a `backup-copy` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCopied {
    #[schema(value_type = u64)]
    pub backup: arca_backup::BackupId,
    pub bytes_copied: u64,
}

/// The result of a `backup-digest` job: the backups digested, and those that could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Digested {
    #[schema(value_type = Vec<u64>)]
    pub digested: Vec<arca_backup::BackupId>,
    #[schema(value_type = Vec<u64>)]
    pub failed: Vec<arca_backup::BackupId>,
}

/// The result of a `restore` job into a new volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoredNew {
    #[schema(value_type = u64)]
    pub backup: arca_backup::BackupId,
    pub volume: String,
}

/// One volume of an in-place `restore` job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoredInPlace {
    #[schema(value_type = u64)]
    pub backup: arca_backup::BackupId,
    pub volume: String,
    /// Bytes that differed from the backup and were written.
    pub bytes_rewritten: u64,
}

/// The result of a `restore-rollback` job: the undo points the volumes hold again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    #[schema(value_type = Vec<u64>)]
    pub rolled_back_to: Vec<arca_backup::BackupId>,
}

/// The result of a `pair-copy`, `pair-resync` or `pair-reverse-resync` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairCopied {
    pub pair: String,
    pub bytes_copied: u64,
}

/// What a job produced; which one its kind says. Untagged: each serialises as its own shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult {
    PoolCheck(CheckReport),
    Verify(Vec<Verification>),
    RestoredInPlace(Vec<RestoredInPlace>),
    RestoredNew(RestoredNew),
    RolledBack(RolledBack),
    BackupCopied(BackupCopied),
    Digested(Digested),
    PairCopied(PairCopied),
    PolicyRan(PolicyRan),
}

/// The document's schema of [`JobResult`]: any of the shapes (anyOf, not oneOf: an empty list
/// is both an empty verification and an empty restore list), or null.
fn job_result_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Ref, Type};
    let list = |name: &str| {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(name))
            .build()
    };
    AnyOfBuilder::new()
        .item(Ref::from_schema_name("CheckReport"))
        .item(list("Verification"))
        .item(list("RestoredInPlace"))
        .item(Ref::from_schema_name("RestoredNew"))
        .item(Ref::from_schema_name("RolledBack"))
        .item(Ref::from_schema_name("BackupCopied"))
        .item(Ref::from_schema_name("Digested"))
        .item(Ref::from_schema_name("PairCopied"))
        .item(Ref::from_schema_name("PolicyRan"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    #[schema(value_type = u64)]
    pub id: arca_backup::JobId,
    pub kind: JobKind,
    /// What it works on.
    pub target: String,
    pub state: JobState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second since the job started.
    pub rate: f64,
    /// Seconds left at the current rate, while running.
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
    /// What the job produced, once it succeeded (see JobKind for which shape).
    #[schema(schema_with = job_result_schema)]
    pub result: Option<JobResult>,
    pub created: String,
    pub finished: Option<String>,
}
