//! The catalog: backup records and their indexes in the pool's metadata store.
//!
//! Tables (application tables of the store, keys bytewise ordered, integers big-endian):
//!
//! | table                | key                                   | value                   |
//! |----------------------|---------------------------------------|-------------------------|
//! | `backups`            | id (8)                                | record ([`BackupRecord`]) |
//! | `backups_by_volume`  | source volume id (8) ++ id (8)        | empty                   |
//! | `backups_by_label`   | label ++ 0 ++ id (8)                  | empty                   |
//! | `backups_by_host`    | host ++ 0 ++ id (8)                   | empty                   |
//! | `backups_by_app`     | application ++ 0 ++ id (8)            | empty                   |
//! | `backups_by_meta`    | key ++ 0 ++ value ++ 0 ++ id (8)      | empty                   |
//! | `backups_by_set`     | set id (8) ++ id (8)                  | empty                   |
//! | `backups_by_status`  | status (1) ++ id (8)                  | empty                   |
//! | `backups_by_vault`   | vault name ++ 0 ++ id (8)             | empty                   |
//! | `backup_generations` | source volume id (8)                  | last generation (8)     |
//! | `backup_digests`     | id (8) ++ chunk (4)                   | (extent (8), hash (16))* |
//!
//! Index keys end in the backup id, and ids sort by creation and start with the clock's
//! millisecond, so a time range's start bounds the keys of every index (not its end: ids grow
//! on when the clock steps back). Texts cannot hold control characters ([`crate::HostInfo::validate`]),
//! so 0 separates fields. The digest table belongs with the destination, not the catalog: a
//! rebuild keeps it (it is the evidence verification compares against). So does
//! `backup_id_mark` (one row: the highest backup id given), which keeps ids growing across
//! restarts with the clock moved back even when a rebuild dropped the newest records.

use std::ops::Bound;

use arca_store::{AppReader, Pool, Txn};

use crate::ids::BackupId;
use crate::record::{BackupRecord, IDS_PER_MS, Status};

pub const BACKUPS: &str = "backups";
pub const BY_VOLUME: &str = "backups_by_volume";
pub const BY_LABEL: &str = "backups_by_label";
pub const BY_HOST: &str = "backups_by_host";
pub const BY_APP: &str = "backups_by_app";
pub const BY_META: &str = "backups_by_meta";
pub const BY_SET: &str = "backups_by_set";
pub const BY_STATUS: &str = "backups_by_status";
/// Backups listing a copy in a vault (whatever their status: `vault remove` must see all).
pub const BY_VAULT: &str = "backups_by_vault";
pub const GENERATIONS: &str = "backup_generations";
pub const DIGESTS: &str = "backup_digests";
pub const ID_MARK: &str = "backup_id_mark";
const ID_MARK_KEY: &[u8] = b"last";

/// The catalog's own tables: what a rebuild reconstructs.
pub const CATALOG_TABLES: [&str; 10] = [
    BACKUPS,
    BY_VOLUME,
    BY_LABEL,
    BY_HOST,
    BY_APP,
    BY_META,
    BY_SET,
    BY_STATUS,
    BY_VAULT,
    GENERATIONS,
];

/// The status's byte in index keys (never reused: keys are stored).
fn status_byte(s: Status) -> u8 {
    match s {
        Status::Copying => 1,
        Status::Complete => 2,
        Status::Failed => 3,
        Status::Consumed => 4,
        Status::Deleted => 5,
    }
}

/// Most records one query returns.
pub const QUERY_LIMIT_MAX: usize = 100_000;

fn text_key(text: &str, id: BackupId) -> Vec<u8> {
    let mut k = text.as_bytes().to_vec();
    k.push(0);
    k.extend(id.to_be_bytes());
    k
}

fn u64_key(a: u64, id: BackupId) -> Vec<u8> {
    let mut k = a.to_be_bytes().to_vec();
    k.extend(id.to_be_bytes());
    k
}

fn meta_prefix(key: &str, value: &str) -> Vec<u8> {
    let mut k = key.as_bytes().to_vec();
    k.push(0);
    k.extend(value.as_bytes());
    k.push(0);
    k
}

/// Every index row of a record.
pub fn index_keys(r: &BackupRecord) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![(BY_VOLUME, u64_key(r.source.volume_id, r.id))];
    if let Some(l) = &r.info.label {
        out.push((BY_LABEL, text_key(l, r.id)));
    }
    if let Some(h) = &r.info.host {
        out.push((BY_HOST, text_key(h, r.id)));
    }
    if let Some(a) = &r.info.application {
        out.push((BY_APP, text_key(a, r.id)));
    }
    for (k, v) in &r.info.meta {
        let mut key = meta_prefix(k, v);
        key.extend(r.id.to_be_bytes());
        out.push((BY_META, key));
    }
    if let Some(s) = r.set_id {
        out.push((BY_SET, u64_key(s, r.id)));
    }
    let mut status = vec![status_byte(r.status)];
    status.extend(r.id.to_be_bytes());
    out.push((BY_STATUS, status));
    for c in &r.vault_copies {
        out.push((BY_VAULT, text_key(&c.vault, r.id)));
    }
    out
}

/// Writes a record and its index rows (dropping rows of `old` it no longer has).
pub fn put(t: &mut Txn<'_>, old: Option<&BackupRecord>, new: &BackupRecord) {
    let keys = index_keys(new);
    if let Some(old) = old {
        assert_eq!(old.id, new.id, "a record keeps its id");
        for k in index_keys(old) {
            if !keys.contains(&k) {
                t.delete(k.0, k.1);
            }
        }
    }
    for (table, key) in keys {
        t.put(table, key, Vec::new());
    }
    t.put(BACKUPS, new.id.to_be_bytes().to_vec(), new.encode());
}

pub fn get(pool: &Pool, id: BackupId) -> arca_store::Result<Option<Result<BackupRecord, String>>> {
    Ok(pool
        .app_get(BACKUPS, &id.to_be_bytes())?
        .map(|b| BackupRecord::decode(&b)))
}

/// Records that do not decode: (id, why).
pub type Unreadable = Vec<(BackupId, String)>;

/// Every record, oldest first, and those that do not decode.
pub fn all(pool: &Pool) -> arca_store::Result<(Vec<BackupRecord>, Unreadable)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    pool.app_scan(
        BACKUPS,
        Bound::Unbounded,
        Bound::Unbounded,
        false,
        |k, v| {
            let id = BackupId(k.try_into().map(u64::from_be_bytes).unwrap_or(0));
            match BackupRecord::decode(v) {
                Ok(r) => good.push(r),
                Err(e) => bad.push((id, e)),
            }
            true
        },
    )?;
    Ok((good, bad))
}

/// Last generation used for a volume's backups.
pub fn generation(r: &AppReader, volume_id: u64) -> arca_store::Result<u64> {
    Ok(r.get(GENERATIONS, &volume_id.to_be_bytes())?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

pub fn set_generation(t: &mut Txn<'_>, volume_id: u64, generation: u64) {
    t.put(
        GENERATIONS,
        volume_id.to_be_bytes().to_vec(),
        generation.to_be_bytes().to_vec(),
    );
}

/// The highest backup id given so far, as last recorded (0 when none was).
pub fn id_mark(pool: &Pool) -> arca_store::Result<u64> {
    Ok(pool
        .app_get(ID_MARK, ID_MARK_KEY)?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// Records `id` as the highest given; the caller passes a value that never decreases.
pub fn set_id_mark(t: &mut Txn<'_>, id: u64) {
    t.put(ID_MARK, ID_MARK_KEY.to_vec(), id.to_be_bytes().to_vec());
}

/// The record of generation `generation` of a volume's backups, if the catalog has it.
/// Walks the volume's records newest first: the one wanted is almost always the first.
pub fn by_generation(
    pool: &Pool,
    volume_id: u64,
    generation: u64,
) -> arca_store::Result<Option<BackupRecord>> {
    let prefix = volume_id.to_be_bytes();
    let from = u64_key(volume_id, BackupId(0));
    let to = u64_key(volume_id, BackupId(u64::MAX));
    pool.app_read(|reader| {
        let mut found = None;
        let mut failure = None;
        reader.scan(
            BY_VOLUME,
            Bound::Included(&from),
            Bound::Included(&to),
            true,
            |k, _| {
                debug_assert!(k.starts_with(&prefix));
                let id = u64::from_be_bytes(k[8..].try_into().expect("volume index keys"));
                match reader.get(BACKUPS, &id.to_be_bytes()) {
                    Ok(Some(v)) => {
                        if let Ok(r) = BackupRecord::decode(&v)
                            && r.generation == generation
                        {
                            found = Some(r);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                }
                found.is_none() && failure.is_none()
            },
        )?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    })
}

/// A catalog query: every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub volume_id: Option<u64>,
    pub label: Option<String>,
    pub host: Option<String>,
    pub application: Option<String>,
    pub meta: Vec<(String, String)>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub status: Option<Status>,
    pub set_id: Option<u64>,
    /// Backups with a copy in this vault.
    pub in_vault: Option<String>,
    /// Backups without a copy in this vault.
    pub not_in_vault: Option<String>,
    /// Only records with an id below this (the previous page's last id).
    pub before_id: Option<BackupId>,
    pub limit: usize,
}

impl Query {
    fn matches(&self, r: &BackupRecord) -> bool {
        self.volume_id.is_none_or(|v| r.source.volume_id == v)
            && self
                .label
                .as_ref()
                .is_none_or(|l| r.info.label.as_ref() == Some(l))
            && self
                .host
                .as_ref()
                .is_none_or(|h| r.info.host.as_ref() == Some(h))
            && self
                .application
                .as_ref()
                .is_none_or(|a| r.info.application.as_ref() == Some(a))
            && self.meta.iter().all(|(k, v)| r.info.meta.get(k) == Some(v))
            && self.status.is_none_or(|s| r.status == s)
            && self.set_id.is_none_or(|s| r.set_id == Some(s))
            && self.since_ms.is_none_or(|t| r.point_in_time_ms >= t)
            && self.until_ms.is_none_or(|t| r.point_in_time_ms <= t)
            && self
                .in_vault
                .as_ref()
                .is_none_or(|v| r.vault_copies.iter().any(|c| &c.vault == v))
            && self
                .not_in_vault
                .as_ref()
                .is_none_or(|v| r.vault_copies.iter().all(|c| &c.vault != v))
    }

    /// Id bounds implied by the time range and the page. An id's millisecond is the clock's
    /// when the backup started, or later (ids grow on when the clock steps back), and the
    /// point in time follows the start: so `since` bounds the ids from below. Nothing bounds
    /// them from above: after a clock step the ids of backups with early points in time are
    /// high. `matches` decides exactly.
    fn id_range(&self) -> (u64, u64) {
        let lo = self.since_ms.map_or(0, |t| {
            // The point in time can follow the id by the time taken to start; a minute of
            // slack keeps the range a superset.
            t.saturating_sub(60_000).saturating_mul(IDS_PER_MS)
        });
        let hi = self
            .before_id
            .map_or(u64::MAX, |b| b.get().saturating_sub(1));
        (lo, hi)
    }
}

/// Runs a query: matching records, newest first, at most `limit`. Uses the most selective
/// index the filters allow, then checks every filter on the record.
pub fn query(pool: &Pool, q: &Query) -> arca_store::Result<Vec<BackupRecord>> {
    let limit = q.limit.clamp(1, QUERY_LIMIT_MAX);
    let (lo, hi) = q.id_range();
    let mut out = Vec::new();
    if lo > hi {
        return Ok(out);
    }
    let index: Option<(&str, Vec<u8>)> = if let Some(s) = q.set_id {
        Some((BY_SET, s.to_be_bytes().to_vec()))
    } else if let Some(v) = q.volume_id {
        Some((BY_VOLUME, v.to_be_bytes().to_vec()))
    } else if let Some(v) = &q.in_vault {
        Some((BY_VAULT, [v.as_bytes(), &[0]].concat()))
    } else if let Some((k, v)) = q.meta.first() {
        Some((BY_META, meta_prefix(k, v)))
    } else if let Some(l) = &q.label {
        Some((BY_LABEL, [l.as_bytes(), &[0]].concat()))
    } else if let Some(h) = &q.host {
        Some((BY_HOST, [h.as_bytes(), &[0]].concat()))
    } else if let Some(a) = &q.application {
        Some((BY_APP, [a.as_bytes(), &[0]].concat()))
    } else {
        q.status.map(|s| (BY_STATUS, vec![status_byte(s)]))
    };
    pool.app_read(|reader| {
        let mut failure = None;
        let mut consider = |bytes: &[u8]| -> bool {
            match BackupRecord::decode(bytes) {
                Ok(r) if q.matches(&r) => out.push(r),
                Ok(_) => {}
                // A damaged record is skipped here; `catalog check` names it.
                Err(_) => {}
            }
            out.len() < limit
        };
        match &index {
            None => reader.scan(
                BACKUPS,
                Bound::Included(&lo.to_be_bytes()),
                Bound::Included(&hi.to_be_bytes()),
                true,
                |_, v| consider(v),
            )?,
            Some((table, prefix)) => {
                let from = [prefix.as_slice(), &lo.to_be_bytes()].concat();
                let to = [prefix.as_slice(), &hi.to_be_bytes()].concat();
                reader.scan(
                    table,
                    Bound::Included(&from),
                    Bound::Included(&to),
                    true,
                    |k, _| {
                        let id = u64::from_be_bytes(
                            k[k.len() - 8..]
                                .try_into()
                                .expect("index keys end in an id"),
                        );
                        match reader.get(BACKUPS, &id.to_be_bytes()) {
                            Ok(Some(v)) => consider(&v),
                            // An index row without its record: `catalog check` names it.
                            Ok(None) => true,
                            Err(e) => {
                                failure = Some(e);
                                false
                            }
                        }
                    },
                )?
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    Ok(out)
}
