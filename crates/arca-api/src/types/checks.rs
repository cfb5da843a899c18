//! The record of the pool and catalog checks (`GET /v1/checks`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use arca_backup::wire_names;

/// What was checked: the pool (`POST /v1/pool/check`, metadata against the extents) or the
/// backup catalog (`GET /v1/catalog/check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Pool,
    Catalog,
}

wire_names!(CheckKind {
    Pool => "pool",
    Catalog => "catalog",
});

/// How a check ended: nothing found, problems found, or it could not finish (`error` says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckOutcome {
    Clean,
    Problems,
    Failed,
}

wire_names!(CheckOutcome {
    Clean => "clean",
    Problems => "problems",
    Failed => "failed",
});

/// One problem a check reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckFinding {
    pub code: String,
    pub message: String,
}

/// A finished check, as recorded in the pool's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckRecord {
    pub kind: CheckKind,
    #[schema(format = DateTime)]
    pub started: String,
    #[schema(format = DateTime)]
    pub finished: String,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// The name of the token that ran it (`bootstrap` for the daemon's own token, `anonymous`
    /// when the API needs none).
    pub by: String,
    pub outcome: CheckOutcome,
    /// How many problems it found.
    pub problems: u64,
    /// The first few of them (at most 5), in the order the check reported them.
    pub first_problems: Vec<CheckFinding>,
    /// Why it could not finish (outcome `failed`).
    pub error: Option<String>,
    /// The job that ran it (pool checks run as jobs).
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
}

/// `GET /v1/checks`: the last checks of each kind, newest first (at most 10 of each). They are
/// kept in the pool's metadata, so they survive a restart of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckHistory {
    pub pool: Vec<CheckRecord>,
    pub catalog: Vec<CheckRecord>,
}
