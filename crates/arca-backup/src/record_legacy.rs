//! Records of earlier versions, decoded into the current [`BackupRecord`].
//!
//! - Version 2: the fields of version 3 up to `stepped_back_from_ms` (no vault or host copies,
//!   never off the array), and an event list whose `Restored` had no `from` (a restore then
//!   always read the array's image) and which ended at `RestoreFailed`.
//! - Version 1: version 2 without the last field, `stepped_back_from_ms`.
//!
//! The types here are frozen copies of the old layouts: never change them.

use serde::Deserialize;

use crate::ids::{BackupId, JobId};
use crate::record::{
    BackupRecord, Destination, DigestInfo, Event, HistoryEntry, HostInfo, Method, RestoredFrom,
    Retention, Source, Status,
};

#[derive(Deserialize)]
enum EventV2 {
    Verified {
        ok: bool,
        damaged: Vec<(u64, u64)>,
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
    RestoreResumed {
        to: String,
    },
    RestoreRolledBack {
        to: String,
        undo: BackupId,
        reason: String,
    },
    RestoreFailed {
        to: String,
        reason: String,
    },
}

impl From<EventV2> for Event {
    fn from(e: EventV2) -> Event {
        match e {
            EventV2::Verified {
                ok,
                damaged,
                damaged_ranges,
            } => Event::Verified {
                ok,
                damaged,
                damaged_ranges,
            },
            EventV2::Restored { to, in_place } => Event::Restored {
                to,
                in_place,
                from: RestoredFrom::Array,
            },
            EventV2::Copied { to } => Event::Copied { to },
            EventV2::Consumed { by } => Event::Consumed { by },
            EventV2::Retention { what } => Event::Retention { what },
            EventV2::RestoreResumed { to } => Event::RestoreResumed { to },
            EventV2::RestoreRolledBack { to, undo, reason } => {
                Event::RestoreRolledBack { to, undo, reason }
            }
            EventV2::RestoreFailed { to, reason } => Event::RestoreFailed { to, reason },
        }
    }
}

#[derive(Deserialize)]
struct HistoryEntryV2 {
    at_ms: u64,
    event: EventV2,
}

#[derive(Deserialize)]
struct RecordV2 {
    id: BackupId,
    source: Source,
    generation: u64,
    method: Method,
    destination: Destination,
    point_in_time_ms: u64,
    started_ms: u64,
    completed_ms: Option<u64>,
    status: Status,
    status_reason: Option<String>,
    info: HostInfo,
    retention: Retention,
    digest: Option<DigestInfo>,
    logical_bytes: u64,
    allocated_bytes: u64,
    set_id: Option<u64>,
    history: Vec<HistoryEntryV2>,
    job: Option<JobId>,
    stepped_back_from_ms: Option<u64>,
}

/// Decodes the bytes after the version byte of a version 1 or 2 record.
pub(crate) fn decode(version: u8, rest: &[u8]) -> Result<BackupRecord, String> {
    let bytes = if version == 1 {
        // Postcard writes fields in order and `None` as one 0 byte.
        let mut v2 = rest.to_vec();
        v2.push(0);
        std::borrow::Cow::Owned(v2)
    } else {
        std::borrow::Cow::Borrowed(rest)
    };
    let r: RecordV2 = postcard::from_bytes(&bytes)
        .map_err(|e| format!("backup record (version {version}): {e}"))?;
    Ok(BackupRecord {
        id: r.id,
        source: r.source,
        generation: r.generation,
        method: r.method,
        destination: r.destination,
        point_in_time_ms: r.point_in_time_ms,
        started_ms: r.started_ms,
        completed_ms: r.completed_ms,
        status: r.status,
        status_reason: r.status_reason,
        info: r.info,
        retention: r.retention,
        digest: r.digest,
        logical_bytes: r.logical_bytes,
        allocated_bytes: r.allocated_bytes,
        set_id: r.set_id,
        history: r
            .history
            .into_iter()
            .map(|h| HistoryEntry {
                at_ms: h.at_ms,
                event: h.event.into(),
            })
            .collect(),
        job: r.job,
        stepped_back_from_ms: r.stepped_back_from_ms,
        vault_copies: Vec::new(),
        host_copies: Vec::new(),
        off_array_since_ms: None,
    })
}
