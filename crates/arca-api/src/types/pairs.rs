//! Copy pairs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

// ---- Copy pairs ----------------------------------------------------------------------------
//
// A pair keeps a secondary volume as a full copy of a primary: `copy` (the initial copy),
// `pair` (every primary write is applied to the secondary before it is acknowledged; hosts get
// the secondary read-only), `split` (the secondary frozen at the split instant, writable),
// `resync` / `reverse-resync` (what changed since the split copied primary to secondary, or
// back), `error` (a secondary write or a copy failed; the primary serves on).

/// `POST /v1/pairs`: make `secondary` a copy of `primary`. The pair is named after the
/// secondary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePair {
    /// The volume copied.
    pub primary: String,
    /// The volume that becomes the copy (its content is overwritten): at least as large as
    /// the primary, free (no guard, no snapshots, no backup, no host connected) and in no
    /// other pair.
    pub secondary: String,
    /// Bytes per second the copy jobs (initial copy, resyncs) stay under; unlimited when
    /// absent. An integer: the CLI's `--pace 100M` sends 104857600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub pace: Option<u64>,
}

/// A copy pair.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pair {
    /// The pair's name: its secondary's name when the pair was made.
    pub name: String,
    /// The primary volume's current name (null if it no longer exists).
    pub primary: Option<String>,
    /// The secondary volume's current name (null if it no longer exists).
    pub secondary: Option<String>,
    pub state: PairState,
    /// Why the pair is in its state, when there is more to say (an error, a full copy after
    /// a crash, a cancelled job).
    pub reason: Option<String>,
    /// The pace of its copy jobs; null: unlimited.
    pub pace_bytes_per_second: Option<u64>,
    #[schema(format = DateTime)]
    pub created: String,
    /// When the pair was split, while it is split (or resyncing from the split).
    #[schema(format = DateTime)]
    pub split: Option<String>,
    /// The pair's running copy job, else its last one since the daemon started.
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedPair {
    pub pair: Pair,
    /// The initial copy's job (kind `pair-copy`).
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
    /// Said when the pair is weaker than it looks: both volumes on one device.
    pub warning: Option<String>,
}

/// `POST /v1/pairs/{name}/resync`. No body: forward.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncPair {
    /// Copy back, secondary to primary: the primary returns to the secondary's image (hosts
    /// get the primary read-only meanwhile). Only from `split`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
    /// When the secondary holds a live backup (a copy backup taken by splitting the pair),
    /// record it as consumed and resync; without this the resync is refused (409) naming it.
    /// Overrides the backup's keep-until, never a hold or a lock-until (409 either way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consume_backup: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResyncStarted {
    pub pair: Pair,
    /// The job copying what changed (kind `pair-resync` or `pair-reverse-resync`).
    #[schema(value_type = u64)]
    pub job: arca_backup::JobId,
}
