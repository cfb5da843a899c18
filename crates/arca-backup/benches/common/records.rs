//! Catalog records for the benchmarks that fill a catalog directly: this crate's catalog
//! benchmark and arca's console benchmark (which includes this file by path).

use std::collections::BTreeMap;

use arca_backup::record::{
    BackupRecord, Destination, DigestInfo, HostInfo, Method, Retention, Source, Status,
};

/// Backup `i` of volume `name` (`volume_id`, 1 GiB): a complete snapshot backup of
/// generation `generation` taken at `at_ms`. Its digest is present, so a daemon opened on the
/// pool starts no digest jobs; its snapshot does not exist, which no listing reads.
pub fn snapshot_record(
    i: u64,
    volume_id: u64,
    name: &str,
    generation: u64,
    at_ms: u64,
) -> BackupRecord {
    BackupRecord {
        id: arca_backup::BackupId(at_ms * 1000 + i % 1000),
        source: Source {
            volume_id,
            volume_name: name.to_string(),
            size: 1 << 30,
        },
        generation,
        method: Method::Snapshot,
        destination: Destination::Snapshot {
            volume: name.to_string(),
            snapshot: format!("backup-{i}"),
        },
        point_in_time_ms: at_ms,
        started_ms: at_ms,
        completed_ms: Some(at_ms + 5),
        status: Status::Complete,
        status_reason: None,
        info: HostInfo {
            program: Some("bench".into()),
            host: Some(format!("host{}", i % 50)),
            application: Some("pg".into()),
            content_id: None,
            label: Some(["hourly", "daily"][(i % 2) as usize].into()),
            description: None,
            meta: BTreeMap::new(),
        },
        retention: Retention::default(),
        digest: Some(DigestInfo {
            extent_size: 65536,
            root: [0; 32],
            extents: 0,
        }),
        logical_bytes: 1 << 30,
        allocated_bytes: 1 << 28,
        set_id: None,
        history: Vec::new(),
        job: None,
        stepped_back_from_ms: None,
        vault_copies: Vec::new(),
        host_copies: Vec::new(),
        off_array_since_ms: None,
    }
}
