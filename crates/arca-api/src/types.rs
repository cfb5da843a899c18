//! The API's JSON types, shared by the server and the CLI. Field names are stable: scripts
//! read them. Sizes are bytes; times are RFC 3339 strings in UTC.

use std::collections::BTreeMap;

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
    /// What the job produced: for `pool-check` a CheckReport, for `verify` a list of
    /// Verification, for `backup-copy` `{backup, bytes_copied}`, for `backup-digest`
    /// `{digested, failed}` (lists of backup ids), for `restore` what was restored, for
    /// `pair-copy`, `pair-resync` and `pair-reverse-resync` `{pair, bytes_copied}`.
    #[schema(value_type = Option<Value>)]
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

pub fn rfc3339(unix_seconds: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(t).to_string()
}

// ---- Backups -------------------------------------------------------------------------------
//
// Times are RFC 3339 in UTC with milliseconds (`2026-11-29T01:02:03.456Z`); requests accept
// any RFC 3339 offset or a bare date. Durations are like `30d`, `12h`, `1w 2d`.

/// A place a volume can be backed up to (`GET /v1/volumes/{name}/backup-targets`), best first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupTarget {
    /// `pair-secondary` (the secondary of one of the volume's pairs), `new-snapshot`,
    /// `existing-volume` or `new-volume`.
    pub kind: String,
    /// `snapshot` or `copy`: the method a backup to this target uses.
    pub method: String,
    /// The existing volume, for `existing-volume`.
    pub volume: Option<String>,
    /// The device the copy's data goes to (a new volume's placement, an existing volume's
    /// preference; for a snapshot, the one device the source's data lies on); null when there
    /// is no one such device.
    pub device: Option<u32>,
    /// Shares no device with the source's data (as `device_bytes` reports it): survives the
    /// loss of any device that holds the source's data.
    pub other_device: bool,
    /// Why it ranks where it does.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupMethod {
    /// A snapshot of the volume: instant, shares the source's extents and device.
    Snapshot,
    /// A full copy into another volume (a job).
    Copy,
}

/// `POST /v1/backups`: back up one volume, or several at one point in time (a backup set).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// The volumes to back up; several make a backup set, taken at one instant.
    #[schema(min_items = 1, max_items = 64)]
    pub volumes: Vec<String>,
    /// Destination volume of a copy (an existing free volume at least as large as the
    /// source). Implies method `copy`; one volume only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Default: `copy` when `to` is given, else `snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<BackupMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub label: Option<String>,
    /// The program that asked for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub program: Option<String>,
    /// The host that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub host: Option<String>,
    /// The application whose data the volume holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub app: Option<String>,
    /// The host's identifier of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub content_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Free key/value pairs (at most 32; keys without `=`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Keep at least until then: deletion before needs force; prune keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub keep_until: Option<String>,
    /// Keep for this long from now (e.g. `30d`); excludes keep_until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<String>,
    /// Hold: never deleted until released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// Retention lock: deletion before then is refused, even forced; can only be extended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub lock_until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedBackups {
    pub backups: Vec<Backup>,
    /// Jobs copying (copy backups) or computing digests (snapshot backups), one per backup.
    pub jobs: Vec<u64>,
    /// The backup set's id when several volumes were backed up together.
    pub set_id: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupSource {
    /// Stable across renames.
    pub volume_id: u64,
    /// The volume's name when the backup was taken.
    pub volume_name: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupDestination {
    /// `snapshot` (a snapshot of the source volume) or `volume` (a full-copy volume).
    pub kind: String,
    /// The volume holding the image (for a snapshot: the source's name at backup time).
    pub volume: String,
    /// The snapshot's name, for `snapshot`.
    pub snapshot: Option<String>,
    /// The destination volume's id, for `volume`.
    pub volume_id: Option<u64>,
    /// Device chosen for a copy.
    pub device: Option<u32>,
    /// For `volume`: the backup made the volume (deleting the backup deletes it).
    pub created: Option<bool>,
    /// NBD export where the image is read (read-only) while the backup is complete.
    pub export: Option<String>,
    /// The URI an NBD client uses for `export`.
    pub uri: Option<String>,
}

/// What the host said about the backup.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BackupInfo {
    pub program: Option<String>,
    pub host: Option<String>,
    pub application: Option<String>,
    pub content_id: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupRetention {
    #[schema(format = DateTime)]
    pub keep_until: Option<String>,
    pub hold: bool,
    #[schema(format = DateTime)]
    pub lock_until: Option<String>,
}

/// The content digest taken with the backup (null until its job has computed it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupDigest {
    pub extent_size: u64,
    /// BLAKE3 root, hex.
    pub root: String,
    /// Allocated extents hashed.
    pub extents: u64,
}

/// One event of a backup's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackupEvent {
    Verified {
        ok: bool,
        /// Damaged byte ranges `[offset, length]` (at most 64 kept).
        damaged: Vec<[u64; 2]>,
        /// How many damaged ranges there were.
        damaged_ranges: u64,
    },
    Restored {
        to: String,
        in_place: bool,
    },
    Copied {
        to: String,
    },
    Consumed {
        by: String,
    },
    Retention {
        what: String,
    },
    /// An in-place restore that a stop or crash interrupted was started again (a `restored`
    /// or `restore_rolled_back` event follows when it ends).
    RestoreResumed {
        to: String,
    },
    /// An in-place restore that failed, was cancelled, or could not be resumed was undone:
    /// the volume holds the content of the undo point again.
    RestoreRolledBack {
        to: String,
        undo_backup: u64,
        reason: String,
    },
    /// A restore into a new volume did not finish; the incomplete volume was removed.
    RestoreFailed {
        to: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupHistoryEntry {
    #[schema(format = DateTime)]
    pub at: String,
    pub event: BackupEvent,
}

/// A backup's management information: its catalog record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    /// Sorts by time; exact in JSON doubles.
    pub id: u64,
    pub source: BackupSource,
    /// Per source volume, increasing.
    pub generation: u64,
    /// `snapshot` or `copy`.
    pub method: String,
    pub destination: BackupDestination,
    #[schema(format = DateTime)]
    pub point_in_time: String,
    /// The point in time is earlier than that of the volume's previous generation: the clock
    /// was moved back in between. Generations, not points in time, say which backup of a
    /// volume is newer (prune's keep-last ranks by them).
    #[serde(default)]
    pub clock_stepped_back: bool,
    /// The previous generation's point in time, when `clock_stepped_back`.
    #[schema(format = DateTime)]
    pub previous_point_in_time: Option<String>,
    #[schema(format = DateTime)]
    pub started: String,
    #[schema(format = DateTime)]
    pub completed: Option<String>,
    /// `copying`, `complete`, `failed`, `consumed` or `deleted`.
    pub status: String,
    pub status_reason: Option<String>,
    pub info: BackupInfo,
    pub retention: BackupRetention,
    pub digest: Option<BackupDigest>,
    /// Bytes of the image (the volume's size).
    pub logical_bytes: u64,
    /// Bytes allocated in the image at the point in time.
    pub allocated_bytes: u64,
    /// Bytes only this backup holds: what deleting it alone frees now. Given by
    /// `GET /v1/backups/{id}`; null in listings (it is computed per backup).
    pub unique_bytes: Option<u64>,
    pub set_id: Option<u64>,
    /// The newest verification's result; null when never verified.
    pub verified: Option<bool>,
    /// Oldest first (the newest 64 events).
    pub history: Vec<BackupHistoryEntry>,
    /// The job copying it or computing its digest, while one runs.
    pub job: Option<u64>,
}

/// A page of backups, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<u64>,
}

/// `POST /v1/backups/verify`: the backups to verify, or all complete ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBackups {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyStarted {
    /// The verify job; its result is a list of Verification.
    pub job: u64,
    pub backups: Vec<u64>,
}

/// The outcome for one backup, as a verify job's result lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    pub backup: u64,
    pub ok: bool,
    /// Damaged byte ranges of the image: `[offset, length]`.
    pub damaged: Vec<[u64; 2]>,
    pub damaged_bytes: u64,
    pub unreadable_extents: u64,
    pub error: Option<String>,
}

/// `POST /v1/backups/{id}/restore`. Neither `to` nor `as`: in place into the source volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBackup {
    /// Restore in place into this volume (its content is replaced; an undo point is taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Restore into a new volume of this name.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub as_name: Option<String>,
    /// In place: disconnect the volume's NBD clients instead of refusing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `POST /v1/backup-sets/{id}/restore`: every volume of the set, in place.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSet {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Restored {
    pub backups: Vec<u64>,
    pub volumes: Vec<String>,
    /// The undo point(s) taken before an in-place restore: snapshot backups labelled
    /// `pre-restore`.
    pub undo_backups: Vec<u64>,
    /// The job doing the work; null when the restore was instant.
    pub job: Option<u64>,
}

/// `POST /v1/backups/{id}/retention`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub keep_until: Option<String>,
    /// Keep for this long from now; excludes keep_until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<String>,
    /// Remove keep-until; excludes keep_until and keep_for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_keep_until: bool,
    /// Extend (never shorten) the retention lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub lock_until: Option<String>,
}

/// `POST /v1/volumes/{name}/prune`: a retention policy applied to the volume's complete
/// backups, each label on its own. At least one keep rule is required.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneBackups {
    /// Only backups with this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep the newest backup whose last verification was good (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_newest_verified: Option<bool>,
    /// Say what would happen, change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PruneItem {
    pub backup: u64,
    pub label: Option<String>,
    #[schema(format = DateTime)]
    pub point_in_time: String,
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
    /// What removing this backup alone frees.
    pub frees_alone_bytes: u64,
    /// Set when the removal was attempted and refused.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Newest first.
    pub items: Vec<PruneItem>,
    pub removed: u64,
    pub kept: u64,
    /// Exactly what removing every removed backup together frees.
    pub freed_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogProblem {
    /// `record-unreadable`, `missing-destination`, `descriptor-mismatch`,
    /// `descriptor-unreadable`, `digest-mismatch`, `orphan-destination`, `index-missing`,
    /// `index-orphan` or `generation`.
    pub code: String,
    pub backup: Option<u64>,
    pub message: String,
}

/// The catalog checked against the destinations, the digests and its own indexes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogReport {
    pub clean: bool,
    pub records: u64,
    pub live: u64,
    pub destinations: u64,
    pub problems: Vec<CatalogProblem>,
}

/// `POST /v1/catalog/rebuild`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildCatalog {
    /// Do not read the old catalog at all (for a damaged one): history of deleted and
    /// failed backups is lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RebuildReport {
    /// Records reconstructed from the descriptors on destinations.
    pub from_descriptors: u64,
    /// Records of backups without a destination (deleted, failed) kept from the old catalog.
    pub kept_history: u64,
    pub unreadable_descriptors: Vec<String>,
}

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
    /// `copy`, `pair`, `split`, `resync`, `reverse-resync` or `error`.
    pub state: String,
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
    pub job: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedPair {
    pub pair: Pair,
    /// The initial copy's job (kind `pair-copy`).
    pub job: Option<u64>,
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
    pub job: u64,
}
