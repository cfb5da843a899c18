//! The API's JSON types, shared by the server and the CLI. Field names are stable: scripts
//! read them. Sizes are bytes; times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The one error shape: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `not_found`, `conflict`, `invalid`, `no_space`, `unauthorized`,
    /// `busy`, `io_error`, `corrupt`, `too_large`, `internal`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub index: u32,
    pub path: String,
    pub capacity: u64,
    pub used: u64,
    pub free: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    pub id: String,
    pub extent_size: u64,
    pub capacity: u64,
    pub used: u64,
    pub free: u64,
    pub metadata_used: u64,
    pub metadata_capacity: u64,
    pub volumes: u64,
    pub snapshots: u64,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Origin {
    pub volume: String,
    pub snapshot: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub name: String,
    pub size: u64,
    /// Bytes of extents the volume reads from (its own and, for a clone, its origin's).
    pub used: u64,
    /// Bytes only the live volume references.
    pub unique: u64,
    /// Bytes the volume and its snapshots own: what deleting all of them frees.
    pub owned: u64,
    /// Device the volume's extents come from while it has room.
    pub device: Option<u32>,
    /// For a clone: the snapshot it was made from.
    pub origin: Option<Origin>,
    pub snapshots: u64,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub volume: String,
    pub name: String,
    pub size: u64,
    /// Bytes of extents the snapshot reads from.
    pub used: u64,
    /// What deleting the snapshot frees.
    pub unique: u64,
    pub clones: Vec<String>,
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Export {
    /// `VOLUME` or `VOLUME@SNAPSHOT`.
    pub name: String,
    pub size: u64,
    pub read_only: bool,
    /// The URI an NBD client uses.
    pub uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckReport {
    pub clean: bool,
    pub problems: Vec<Problem>,
    pub volumes: u64,
    pub snapshots: u64,
    pub extents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    /// What the job does, e.g. `pool-check`.
    pub kind: String,
    /// What it works on.
    pub target: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second since the job started.
    pub rate: f64,
    /// Seconds left at the current rate, while running.
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
    /// What the job produced (for `pool-check`: a CheckReport).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub created: String,
    pub finished: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Bytes, a multiple of 512, at most 1 PiB.
    #[schema(minimum = 512, maximum = 1125899906842624_u64, multiple_of = 512)]
    pub size: u64,
    /// Device index to place the volume's extents on.
    pub device: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// New size in bytes; volumes only grow.
    #[schema(minimum = 512, maximum = 1125899906842624_u64, multiple_of = 512)]
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameVolume {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// Defaults to the time, e.g. `snap-20261128T230501Z`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneSnapshot {
    /// Name of the new volume.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    pub device: Option<u32>,
}

pub fn rfc3339(unix_seconds: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(t).to_string()
}
