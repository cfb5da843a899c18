//! Backups, restores, retention and the catalog.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

// ---- Backups -------------------------------------------------------------------------------
//
// Times are RFC 3339 in UTC with milliseconds (`2026-11-29T01:02:03.456Z`); requests accept
// any RFC 3339 offset or a bare date. Durations are like `30d`, `12h`, `1w 2d`.

/// What holds a backup's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A snapshot of the source volume.
    Snapshot,
    /// A full-copy volume.
    Volume,
}

wire_names!(DestinationKind {
    Snapshot => "snapshot",
    Volume => "volume",
});

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
    #[schema(value_type = Vec<u64>)]
    pub jobs: Vec<arca_backup::JobId>,
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
    pub kind: DestinationKind,
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
        /// Where the data came from: `array` (its image here) or `vault:NAME`.
        from: String,
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
        #[schema(value_type = u64)]
        undo_backup: arca_backup::BackupId,
        reason: String,
    },
    /// A restore into a new volume did not finish; the incomplete volume was removed.
    RestoreFailed {
        to: String,
        reason: String,
    },
    /// A copy into a vault finished.
    CopiedToVault {
        vault: String,
        manifest: String,
    },
    /// A host recorded a copy it made itself.
    HostCopyRecorded {
        medium: String,
        location: Option<String>,
    },
    /// The host changed the information it supplied: `what` names the fields and keys.
    Annotated {
        what: String,
    },
    /// Brought into this catalog from a vault.
    Imported {
        vault: String,
    },
    /// The vault was removed from the registry with force; its copy is no longer listed.
    VaultCopyForgotten {
        vault: String,
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
    #[schema(value_type = u64)]
    pub id: arca_backup::BackupId,
    pub source: BackupSource,
    /// Per source volume, increasing.
    pub generation: u64,
    pub method: BackupMethod,
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
    pub status: BackupStatus,
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
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
    /// Where the backup lives: `array` while the array holds its image, `vault:NAME` per vault
    /// copy, `host:MEDIUM` per copy a host recorded.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Set when the array no longer holds the image (deleted, or the backup was imported)
    /// and the backup lives in its vault copies: since when. The status stays `complete`.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub off_array_since: Option<String>,
    #[serde(default)]
    pub vault_copies: Vec<super::BackupVaultCopy>,
    #[serde(default)]
    pub host_copies: Vec<super::BackupHostCopy>,
}

/// A page of backups, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
    /// Pass as `before` for the next page; null on the last page.
    #[schema(value_type = Option<u64>)]
    pub next_before: Option<arca_backup::BackupId>,
}

/// `POST /v1/backups/verify`: the backups to verify, or all complete ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBackups {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<u64>)]
    pub ids: Vec<arca_backup::BackupId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyStarted {
    /// The verify job; its result is a list of Verification.
    #[schema(value_type = u64)]
    pub job: arca_backup::JobId,
    #[schema(value_type = Vec<u64>)]
    pub backups: Vec<arca_backup::BackupId>,
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
    /// Restore from this vault's copy. Default: the array's image when it is there and not
    /// known damaged, else the first registered vault holding a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_vault: Option<String>,
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
    #[schema(value_type = Vec<u64>)]
    pub backups: Vec<arca_backup::BackupId>,
    pub volumes: Vec<String>,
    /// The undo point(s) taken before an in-place restore: snapshot backups labelled
    /// `pre-restore`.
    #[schema(value_type = Vec<u64>)]
    pub undo_backups: Vec<arca_backup::BackupId>,
    /// The job doing the work; null when the restore was instant.
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
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
    #[schema(value_type = u64)]
    pub backup: arca_backup::BackupId,
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
    #[schema(value_type = Option<u64>)]
    pub backup: Option<arca_backup::BackupId>,
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
    /// Records of backups without a destination (deleted, failed, living only in vaults)
    /// kept from the old catalog.
    pub kept_history: u64,
    pub unreadable_descriptors: Vec<String>,
}

/// A volume's newest complete backup (`GET /v1/newest-backups`): what an overview needs to
/// name the volumes without a recent backup, in one request however many volumes there are.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewestBackup {
    pub volume: String,
    pub volume_id: u64,
    /// The volume holds a backup's image (a copy backup's destination): it is a backup
    /// itself, not a volume that needs one.
    pub holds_backup: bool,
    /// The newest complete backup's id; null (and so the fields below) when there is none.
    #[schema(value_type = Option<u64>)]
    pub backup: Option<arca_backup::BackupId>,
    #[schema(format = DateTime)]
    pub point_in_time: Option<String>,
    pub label: Option<String>,
    /// Its newest verification's result; null when never verified.
    pub verified: Option<bool>,
}
