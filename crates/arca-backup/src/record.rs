//! The management information of one backup: its catalog record.
//!
//! A record is stored twice, by design: in the catalog (`backups` table, indexed) and as the
//! descriptor attached to its destination (the snapshot's or volume's tag), each update writing
//! both in one metadata transaction. So the catalog can be checked against the data and rebuilt
//! from it. Encoding: version byte 3, then postcard (fields in declaration order, integers as
//! varints, `Option` as a 0/1 byte then the value, `Vec` and strings length-prefixed, enum
//! variants by their index). Older versions still decode (see `record_legacy.rs`): version 2
//! lacked the last three fields (`vault_copies`, `host_copies`, `off_array_since_ms`) and its
//! `Restored` event did not say where from (it was the array's image); version 1 also lacked
//! `stepped_back_from_ms`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::copies::{HOST_COPIES_MAX, HostCopy, RestoredFrom, VAULT_COPIES_MAX, VaultCopy};

/// Bounds on what a host may attach to a backup, so records stay small.
pub const TEXT_LEN_MAX: usize = 256;
pub const DESCRIPTION_LEN_MAX: usize = 1024;
pub const META_PAIRS_MAX: usize = 32;
pub const META_KEY_LEN_MAX: usize = 64;
/// History entries kept per record; the oldest go first.
pub const HISTORY_MAX: usize = 64;
/// Damaged ranges kept in one verification entry (the count is always exact).
pub const DAMAGED_RANGES_MAX: usize = 64;

const RECORD_VERSION: u8 = 3;

/// Backup ids per millisecond: ids are time × this + a sequence. Ids only ever grow, even when
/// the clock steps back (the sequence carries on from the highest id given), so an id's time
/// can be later than the backup's point in time.
pub const IDS_PER_MS: u64 = 1000;

// The serde names below are the API's; postcard (the stored records) keeps variant indexes,
// so new variants go at the end.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = BackupMethod))]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A snapshot of the volume: instant, shares the source's extents and device.
    Snapshot,
    /// A full copy into another volume (a job).
    Copy,
}

crate::wire_names!(Method {
    Snapshot => "snapshot",
    Copy => "copy",
});

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = BackupStatus))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A copy backup whose data is not yet complete.
    Copying,
    Complete,
    /// The copy did not finish (see `status_reason`).
    Failed,
    /// Its destination was reused (a pair resync).
    Consumed,
    /// Deleted or expired: the data is gone, the record stays as history.
    Deleted,
}

crate::wire_names!(Status {
    Copying => "copying",
    Complete => "complete",
    Failed => "failed",
    Consumed => "consumed",
    Deleted => "deleted",
});

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.iter().copied().find(|x| x.as_str() == s)
    }

    /// Whether the backup's destination exists and is protected.
    pub fn live(self) -> bool {
        matches!(self, Status::Copying | Status::Complete)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The volume's id: stable across renames.
    pub volume_id: u64,
    /// Its name when the backup was taken.
    pub volume_name: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// A snapshot of the source volume.
    Snapshot { volume: String, snapshot: String },
    /// A full-copy volume; `created` when the backup made it (deleting the backup deletes it).
    Volume {
        volume: String,
        volume_id: u64,
        device: Option<u32>,
        created: bool,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub program: Option<String>,
    pub host: Option<String>,
    pub application: Option<String>,
    pub content_id: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub keep_until_ms: Option<u64>,
    pub hold: bool,
    /// Never shortened, and deletion before it is never allowed.
    pub lock_until_ms: Option<u64>,
}

/// The content digest: a BLAKE3 hash (first 16 bytes) of every allocated logical extent, stored
/// in the digest table; `root` is BLAKE3 over the extent size, image size and the (extent,
/// hash) list, so any change to one hash changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestInfo {
    pub extent_size: u64,
    pub root: [u8; 32],
    /// Allocated extents hashed (holes read as zeros and are not listed).
    pub extents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Verified {
        ok: bool,
        /// Damaged byte ranges (offset, length), at most [`DAMAGED_RANGES_MAX`].
        damaged: Vec<(u64, u64)>,
        damaged_ranges: u64,
    },
    Restored {
        to: String,
        in_place: bool,
        /// Where the data came from: the array's image or a vault's copy.
        from: RestoredFrom,
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
    // Restore outcomes besides `Restored` (new variants go last: records are stored).
    /// An in-place restore a stop or crash interrupted was started again.
    RestoreResumed {
        to: String,
    },
    /// An in-place restore that failed, was cancelled, or could not be resumed was undone:
    /// the volume holds the content of undo point `undo` again.
    RestoreRolledBack {
        to: String,
        undo: crate::BackupId,
        reason: String,
    },
    /// A restore into a new volume did not finish; the incomplete volume was removed.
    RestoreFailed {
        to: String,
        reason: String,
    },
    // Version 3: copies off the array and host-written information.
    /// A copy into a vault finished (its entry is in `vault_copies`).
    CopiedToVault {
        vault: String,
        manifest: String,
    },
    /// A host recorded a copy it made itself (its entry is in `host_copies`).
    HostCopyRecorded {
        medium: String,
        location: Option<String>,
    },
    /// The host changed the information it supplied; `what` names the fields and metadata
    /// keys that changed (at most [`TEXT_LEN_MAX`] bytes).
    Annotated {
        what: String,
    },
    /// The backup was brought into this catalog from a vault (disaster recovery).
    Imported {
        vault: String,
    },
    /// The vault was removed from the registry with force: its copy is no longer listed.
    VaultCopyForgotten {
        vault: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Milliseconds since the epoch × [`IDS_PER_MS`] + a sequence: sorts by time, and stays
    /// below 2^53 for millennia, so JSON clients that use doubles read it exactly.
    pub id: crate::BackupId,
    pub source: Source,
    /// Per source volume, increasing.
    pub generation: u64,
    pub method: Method,
    pub destination: Destination,
    pub point_in_time_ms: u64,
    pub started_ms: u64,
    pub completed_ms: Option<u64>,
    pub status: Status,
    pub status_reason: Option<String>,
    pub info: HostInfo,
    pub retention: Retention,
    pub digest: Option<DigestInfo>,
    /// Bytes of the image (the volume's size) and bytes allocated in it at the point in time.
    pub logical_bytes: u64,
    pub allocated_bytes: u64,
    pub set_id: Option<u64>,
    pub history: Vec<HistoryEntry>,
    /// The job copying it, while one runs.
    pub job: Option<crate::JobId>,
    /// Set when the point in time is earlier than that of the volume's previous generation
    /// (the clock was moved back in between): that generation's point in time. Generations,
    /// not points in time, say which backup of a volume is newer.
    pub stepped_back_from_ms: Option<u64>,
    // Version 3.
    /// Finished copies in vaults, one per vault, at most [`VAULT_COPIES_MAX`].
    pub vault_copies: Vec<VaultCopy>,
    /// Copies hosts made themselves, oldest first, at most [`HOST_COPIES_MAX`].
    pub host_copies: Vec<HostCopy>,
    /// Set when the array no longer holds the backup's image but the backup lives on in its
    /// vault copies: since when (the image deleted by retention or `--keep-vault-copies`, or
    /// the record imported from a vault). The status stays `complete`; the destination is
    /// then history (for an imported record, another array's), never touched.
    pub off_array_since_ms: Option<u64>,
}

impl BackupRecord {
    pub fn encode(&self) -> Vec<u8> {
        crate::stored::encode(RECORD_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<BackupRecord, String> {
        match bytes.split_first() {
            Some((&v, rest)) if v == 1 || v == 2 => crate::record_legacy::decode(v, rest),
            _ => crate::stored::decode(RECORD_VERSION, "backup record", bytes),
        }
    }

    /// Whether the array holds the backup's image: live, and not deleted or imported off it.
    /// Only then is there a destination to read, guard or tag.
    pub fn on_array(&self) -> bool {
        self.status.live() && self.off_array_since_ms.is_none()
    }

    /// The vault copies' names, for messages.
    pub fn vault_names(&self) -> Vec<&str> {
        self.vault_copies.iter().map(|c| c.vault.as_str()).collect()
    }

    /// Where the backup lives: `array` while the array holds its image, `vault:NAME` per
    /// vault copy, `host:MEDIUM` per host-made copy. Empty once it is gone everywhere.
    pub fn locations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.on_array() {
            out.push("array".to_string());
        }
        if self.status == Status::Complete {
            out.extend(
                self.vault_copies
                    .iter()
                    .map(|c| format!("vault:{}", c.vault)),
            );
        }
        out.extend(
            self.host_copies
                .iter()
                .map(|c| format!("host:{}", c.medium)),
        );
        out
    }

    pub fn push_history(&mut self, at_ms: u64, event: Event) {
        self.history.push(HistoryEntry { at_ms, event });
        if self.history.len() > HISTORY_MAX {
            let excess = self.history.len() - HISTORY_MAX;
            self.history.drain(..excess);
        }
    }

    /// The newest verification's result, if any.
    pub fn last_verified_ok(&self) -> Option<bool> {
        self.history.iter().rev().find_map(|h| match &h.event {
            Event::Verified { ok, .. } => Some(*ok),
            _ => None,
        })
    }
}

pub(crate) fn check_text(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > max {
        return Err(format!("{what} is {} bytes; at most {max}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

impl HostInfo {
    /// Checks the bounds. Control characters are refused so that index keys can use 0 as a
    /// separator and listings print cleanly.
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [
            ("program", &self.program),
            ("host", &self.host),
            ("application", &self.application),
            ("content id", &self.content_id),
            ("label", &self.label),
        ] {
            if let Some(v) = v {
                check_text(what, v, TEXT_LEN_MAX)?;
            }
        }
        if let Some(d) = &self.description {
            check_text("description", d, DESCRIPTION_LEN_MAX)?;
        }
        if self.meta.len() > META_PAIRS_MAX {
            return Err(format!(
                "{} metadata pairs; at most {META_PAIRS_MAX}",
                self.meta.len()
            ));
        }
        for (k, v) in &self.meta {
            check_text("metadata key", k, META_KEY_LEN_MAX)?;
            if k.contains('=') {
                return Err(format!("metadata key {k:?} must not contain '='"));
            }
            check_text(&format!("metadata value of {k}"), v, TEXT_LEN_MAX)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> BackupRecord {
        BackupRecord {
            id: crate::BackupId(42 * IDS_PER_MS),
            source: Source {
                volume_id: 3,
                volume_name: "db".into(),
                size: 1 << 30,
            },
            generation: 7,
            method: Method::Copy,
            destination: Destination::Volume {
                volume: "bk".into(),
                volume_id: 9,
                device: Some(1),
                created: true,
            },
            point_in_time_ms: 42,
            started_ms: 42,
            completed_ms: Some(50),
            status: Status::Complete,
            status_reason: None,
            info: HostInfo {
                label: Some("nightly".into()),
                meta: [("k".to_string(), "v".to_string())].into(),
                ..HostInfo::default()
            },
            retention: Retention::default(),
            digest: None,
            logical_bytes: 1 << 30,
            allocated_bytes: 4096,
            set_id: None,
            history: Vec::new(),
            job: None,
            stepped_back_from_ms: None,
            vault_copies: Vec::new(),
            host_copies: Vec::new(),
            off_array_since_ms: None,
        }
    }

    /// The backup and job ids are stored as the bare integers they were before they had
    /// their own types: the record's id (42000) is the varint `90 C8 02` after the version
    /// byte; the job's `Some(300)` is the tag 1 and the varint `AC 02`, then the trailing `None` and the three empty version 3 fields.
    #[test]
    fn record_ids_encode_as_bare_varints() {
        let none = sample().encode();
        assert_eq!(none[..4], [RECORD_VERSION, 0x90, 0xC8, 0x02]);
        let with_job = BackupRecord {
            job: Some(crate::JobId(300)),
            ..sample()
        }
        .encode();
        // job, stepped_back_from_ms, then the three (empty) version 3 fields.
        assert_eq!(none[none.len() - 5..], [0, 0, 0, 0, 0]);
        assert_eq!(with_job[..none.len() - 5], none[..none.len() - 5]);
        assert_eq!(with_job[none.len() - 5..], [1, 0xAC, 0x02, 0, 0, 0, 0]);
        assert_eq!(
            BackupRecord::decode(&with_job).unwrap().job,
            Some(crate::JobId(300))
        );
    }

    /// The record of [`sample`] with a restore as its last event, and its version 3 bytes,
    /// whose tail is: `in_place` (1), `from` = Array (variant 0), `job` None, `stepped_back`
    /// None, no vault copies (length 0), no host copies (length 0), `off_array_since` None.
    fn restored_sample() -> (BackupRecord, Vec<u8>) {
        let mut r = sample();
        r.push_history(
            55,
            Event::Restored {
                to: "db".into(),
                in_place: true,
                from: RestoredFrom::Array,
            },
        );
        let v3 = r.encode();
        assert_eq!(v3[0], 3);
        assert_eq!(v3[v3.len() - 7..], [1, 0, 0, 0, 0, 0, 0]);
        (r, v3)
    }

    #[test]
    fn version_2_records_decode_as_restored_from_the_array_and_on_it() {
        let (r, v3) = restored_sample();
        // Version 2's encoding: no `from` in `Restored`, no version 3 fields.
        let mut v2 = vec![2];
        v2.extend(&v3[1..v3.len() - 6]);
        v2.extend([0, 0]);
        assert_eq!(BackupRecord::decode(&v2).unwrap(), r);
        assert!(r.on_array() && r.vault_copies.is_empty() && r.host_copies.is_empty());
        assert!(BackupRecord::decode(&v2[..v2.len() - 1]).is_err());
    }

    #[test]
    fn version_1_records_decode_without_a_clock_step() {
        let (r, v3) = restored_sample();
        // Version 1: version 2 without its last field (`stepped_back_from_ms`).
        let mut v1 = vec![1];
        v1.extend(&v3[1..v3.len() - 6]);
        v1.push(0);
        assert_eq!(BackupRecord::decode(&v1).unwrap(), r);
        assert!(BackupRecord::decode(&v1[..v1.len() - 1]).is_err());
        // The current version carries the step.
        let mut stepped = r.clone();
        stepped.stepped_back_from_ms = Some(99);
        assert_eq!(BackupRecord::decode(&stepped.encode()).unwrap(), stepped);
    }

    #[test]
    fn version_3_fields_round_trip_and_say_where_the_backup_lives() {
        let mut r = sample();
        assert_eq!(r.locations(), ["array"]);
        r.vault_copies.push(VaultCopy {
            vault: "offsite".into(),
            vault_id: [7; 16],
            manifest: "manifests/42".into(),
            copied_ms: 60,
            bytes_read: 1,
            bytes_new: 2,
            bytes_stored: 3,
            digest_root: [9; 32],
        });
        r.host_copies.push(HostCopy {
            medium: "tape".into(),
            location: Some("T0042".into()),
            by: Some("bacula".into()),
            copied_ms: 61,
        });
        r.push_history(
            62,
            Event::Restored {
                to: "db".into(),
                in_place: false,
                from: RestoredFrom::Vault("offsite".into()),
            },
        );
        for e in [
            Event::CopiedToVault {
                vault: "offsite".into(),
                manifest: "manifests/42".into(),
            },
            Event::HostCopyRecorded {
                medium: "tape".into(),
                location: None,
            },
            Event::Annotated {
                what: "label".into(),
            },
            Event::Imported {
                vault: "offsite".into(),
            },
            Event::VaultCopyForgotten {
                vault: "old".into(),
            },
        ] {
            r.push_history(63, e);
        }
        assert_eq!(r.locations(), ["array", "vault:offsite", "host:tape"]);
        r.off_array_since_ms = Some(70);
        assert!(!r.on_array());
        assert_eq!(r.locations(), ["vault:offsite", "host:tape"]);
        assert_eq!(BackupRecord::decode(&r.encode()).unwrap(), r);
        // The last field: Some(70).
        let b = r.encode();
        assert_eq!(b[b.len() - 2..], [1, 70]);
        r.status = Status::Deleted;
        assert_eq!(r.locations(), ["host:tape"]);
    }

    #[test]
    fn record_round_trips_and_rejects_other_versions() {
        let r = sample();
        let b = r.encode();
        assert_eq!(BackupRecord::decode(&b).unwrap(), r);
        let mut bad = b.clone();
        bad[0] = 9;
        assert!(
            BackupRecord::decode(&bad)
                .unwrap_err()
                .contains("version 9")
        );
        assert!(BackupRecord::decode(&[]).is_err());
        assert!(BackupRecord::decode(&b[..b.len() / 2]).is_err());
    }

    #[test]
    fn history_is_bounded_oldest_first_out() {
        let mut r = sample();
        for i in 0..(HISTORY_MAX as u64 + 10) {
            r.push_history(i, Event::Copied { to: i.to_string() });
        }
        assert_eq!(r.history.len(), HISTORY_MAX);
        assert_eq!(r.history[0].at_ms, 10);
    }

    #[test]
    fn host_info_bounds() {
        let mut i = HostInfo::default();
        assert!(i.validate().is_ok());
        i.label = Some("x".repeat(TEXT_LEN_MAX + 1));
        assert!(i.validate().unwrap_err().contains("label"));
        i.label = Some("a\0b".into());
        assert!(i.validate().unwrap_err().contains("control"));
        i.label = None;
        i.meta.insert("a=b".into(), "c".into());
        assert!(i.validate().unwrap_err().contains("'='"));
        i.meta.clear();
        for n in 0..=META_PAIRS_MAX {
            i.meta.insert(n.to_string(), "v".into());
        }
        assert!(i.validate().unwrap_err().contains("pairs"));
    }
}
