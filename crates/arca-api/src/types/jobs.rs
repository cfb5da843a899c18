//! Jobs: their kinds, states and results.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

/// What a job produced, with the API's pool check report.
pub type JobResult = arca_backup::JobResult<CheckReport>;

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
        .item(Ref::from_schema_name("CopiedToVault"))
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
