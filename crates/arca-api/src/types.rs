//! The API's JSON types, shared by the server and the CLI. Field names are stable: scripts
//! read them. Sizes are bytes; times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// `as_str`, `ALL` and `Display` for the API's own plain-string enums.
use arca_backup::wire_names;

mod backups;
mod checks;
mod jobs;
mod pairs;
mod policies;
mod vaults;

pub use backups::*;
pub use checks::*;
pub use jobs::*;
pub use pairs::*;
pub use policies::*;
pub use vaults::*;

// The backup layer's own types, served as they are (their schemas derive there, behind its
// `utoipa` feature); renamed where the API's name says more.
pub use arca_backup::policy::{
    RunResult as PolicyRunResult, Step as PolicyStep, StepOutcome as PolicyStepOutcome,
    Track as PolicyTrack, Trigger as PolicyTrigger,
};
pub use arca_backup::{
    BackupCopied, CopiedToVault, Digested, JobKind, JobState, Method as BackupMethod, PairCopied,
    PairState, PolicyRan, RestoredInPlace, RestoredNew, RolledBack, Status as BackupStatus,
    Target as BackupTarget, TargetKind, VaultCopied, Verification,
};

/// The one error shape: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `not_found`, `conflict`, `invalid`, `no_space`, `unauthorized`,
    /// `busy`, `io_error`, `corrupt`, `too_large`, `rate_limited`, `internal`.
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
    /// Bytes of metadata pages in use.
    pub metadata_used: u64,
    /// Size of the metadata region.
    pub metadata_capacity: u64,
    /// What the metadata store can surely grow to inside the region (it grows by doubling).
    pub metadata_reachable: u64,
    /// Held back so host writes (the maps of every unallocated extent) and deletions always
    /// commit.
    pub metadata_reserved: u64,
    /// Room left for new volumes, snapshots and backups; at zero they are refused (507).
    pub metadata_available: u64,
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
    /// Placement preference: the device the volume's new extents come from while it has room;
    /// null lets the pool take the device with the most free space. Where the data lies is
    /// `device_bytes`.
    pub device: Option<u32>,
    /// Where the volume's data lies: the bytes of `used` on each device holding some, by device
    /// index (a clone counts what it shares with its origin). Losing a device listed here loses
    /// data of the volume; losing any other does not.
    #[serde(default)]
    pub device_bytes: Vec<DeviceBytes>,
    /// For a clone: the snapshot it was made from.
    pub origin: Option<Origin>,
    pub snapshots: u64,
    pub created: String,
    /// Why hosts get the volume read-only and deleting or resizing it is refused (it holds a
    /// backup, a restore into it is in progress or being recovered, it is a pair's
    /// secondary); null when none of that applies.
    #[serde(default)]
    pub protection: Option<String>,
}

/// Bytes of an image's data on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceBytes {
    pub device: u32,
    pub bytes: u64,
}

impl DeviceBytes {
    /// The devices holding some of the data, from bytes indexed by device.
    pub fn list(device_bytes: &[u64]) -> Vec<DeviceBytes> {
        (0..device_bytes.len() as u32)
            .zip(device_bytes)
            .filter(|(_, b)| **b > 0)
            .map(|(device, &bytes)| DeviceBytes { device, bytes })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub volume: String,
    pub name: String,
    pub size: u64,
    /// Bytes of extents the snapshot reads from.
    pub used: u64,
    /// Where the snapshot's data lies, as for a volume.
    #[serde(default)]
    pub device_bytes: Vec<DeviceBytes>,
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
    /// The hosts connected to it now (their addresses): who an in-place restore or a forced
    /// delete disconnects.
    #[serde(default)]
    pub connected: Vec<String>,
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
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Bytes, a multiple of 512, at most 1 PiB.
    #[schema(minimum = 512, maximum = 1125899906842624_u64, multiple_of = 512)]
    pub size: u64,
    /// Placement preference: the device to allocate the volume's extents from while it has
    /// room (they spill over to others when it is full). Null: the device with the most free
    /// space at each allocation.
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

/// Seconds since the epoch as the API writes volume, snapshot and job times.
pub fn rfc3339(unix_seconds: u64) -> String {
    arca_backup::time::format_secs(unix_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_names<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        all: &[T],
        name: impl Fn(&T) -> &'static str,
    ) {
        for v in all {
            let text = serde_json::to_string(v).unwrap();
            assert_eq!(text, format!("\"{}\"", name(v)));
            assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), v);
        }
    }

    #[test]
    fn wire_names_are_the_serde_names() {
        same_names(JobKind::ALL, |v| v.as_str());
        same_names(JobState::ALL, |v| v.as_str());
        same_names(TargetKind::ALL, |v| v.as_str());
        same_names(BackupMethod::ALL, |v| v.as_str());
        same_names(BackupStatus::ALL, |v| v.as_str());
        same_names(DestinationKind::ALL, |v| v.as_str());
        same_names(PairState::ALL, |v| v.as_str());
        same_names(PolicyStep::ALL, |v| v.as_str());
        same_names(PolicyTrack::ALL, |v| v.as_str());
        same_names(PolicyRunResult::ALL, |v| v.as_str());
        same_names(PolicyTrigger::ALL, |v| v.as_str());
        same_names(VaultKind::ALL, |v| v.as_str());
        same_names(CheckKind::ALL, |v| v.as_str());
        same_names(CheckOutcome::ALL, |v| v.as_str());
    }

    #[test]
    fn job_results_read_back_as_their_shapes() {
        let read = |text: &str| serde_json::from_str::<JobResult>(text).unwrap();
        assert!(matches!(
            read(r#"{"backup":1,"bytes_copied":2}"#),
            JobResult::BackupCopied(_)
        ));
        assert!(matches!(
            read(r#"{"backup":1,"volume":"v"}"#),
            JobResult::RestoredNew(_)
        ));
        assert!(matches!(
            read(r#"[{"backup":1,"volume":"v","bytes_rewritten":3}]"#),
            JobResult::RestoredInPlace(_)
        ));
        assert!(matches!(
            read(r#"{"pair":"s","bytes_copied":2}"#),
            JobResult::PairCopied(_)
        ));
        assert!(matches!(
            read(r#"{"digested":[1],"failed":[]}"#),
            JobResult::Digested(_)
        ));
        assert!(matches!(
            read(r#"{"rolled_back_to":[4]}"#),
            JobResult::RolledBack(_)
        ));
        assert!(matches!(
            read(r#"{"policy":"p","run":3,"result":"skipped"}"#),
            JobResult::PolicyRan(_)
        ));
    }
}
