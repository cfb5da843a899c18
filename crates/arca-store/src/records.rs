//! Persistent records in the metadata store (redb tables) and their encodings.
//!
//! Tables:
//!
//! | table       | key                 | value                                         |
//! |-------------|---------------------|-----------------------------------------------|
//! | `meta`      | `&str`              | `u64` (`next_id`, `format`, `commit_generation`) |
//! | `volumes`   | volume id `u64`     | version byte 1 + postcard [`VolumeRecord`]     |
//! | `snapshots` | snapshot id `u64`   | version byte 1 + postcard [`SnapshotRecord`]   |
//! | `extents`   | (owner id, logical) | (raw entry `u64`, birth `u32`), see extent_map |
//! | `app:NAME`  | `&[u8]`             | `&[u8]`: tables of the layers above ([`crate::AppOp`]) |
//!
//! Version 2 records add an opaque `tag` to volumes and snapshots: a descriptor the layer above
//! attaches (a backup destination points back at its catalog record with it). Version 1
//! records still decode, with no tag.
//!
//! An `extents` owner is a volume id (its live map) or a snapshot id (the entries that snapshot
//! preserved when its volume overwrote or trimmed them). Ids come from one counter and are never
//! reused. The allocator is not stored: it is rebuilt from `extents` at open.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const VOLUMES: TableDefinition<u64, &[u8]> = TableDefinition::new("volumes");
pub const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
pub const EXTENTS: TableDefinition<(u64, u64), (u64, u32)> = TableDefinition::new("extents");

pub const KEY_NEXT_ID: &str = "next_id";
pub const KEY_FORMAT: &str = "format";
/// The generation of the flush whose commit this is (see generation.rs); absent before
/// generation records existed, read as 0.
pub const KEY_COMMIT_GENERATION: &str = "commit_generation";
pub const FORMAT: u64 = 1;
const RECORD_VERSION: u8 = 2;
const RECORD_VERSION_V1: u8 = 1;

/// Prefix of the tables the layers above own, so they cannot collide with the engine's.
pub const APP_TABLE_PREFIX: &str = "app:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub size: u64,
    /// Current generation: new entries are born in it.
    pub gen_current: u32,
    pub placement: Option<u32>,
    /// For a clone: (volume id, snapshot id) it was created from.
    pub parent: Option<(u64, u64)>,
    pub created_unix: u64,
    pub tag: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub volume: u64,
    pub name: String,
    /// The snapshot sees entries born before this generation.
    pub generation: u32,
    pub size: u64,
    /// Extents readable through the snapshot; fixed when it is taken.
    pub referenced_extents: u64,
    pub created_unix: u64,
    pub tag: Option<Vec<u8>>,
}

/// Records as version 1 stored them: the same fields without `tag`.
#[derive(Deserialize)]
struct VolumeRecordV1 {
    name: String,
    size: u64,
    gen_current: u32,
    placement: Option<u32>,
    parent: Option<(u64, u64)>,
    created_unix: u64,
}

#[derive(Deserialize)]
struct SnapshotRecordV1 {
    volume: u64,
    name: String,
    generation: u32,
    size: u64,
    referenced_extents: u64,
    created_unix: u64,
}

impl VolumeRecord {
    pub fn decode(bytes: &[u8]) -> Result<VolumeRecord, String> {
        if bytes.first() == Some(&RECORD_VERSION_V1) {
            let r: VolumeRecordV1 = postcard::from_bytes(&bytes[1..]).map_err(|e| e.to_string())?;
            return Ok(VolumeRecord {
                name: r.name,
                size: r.size,
                gen_current: r.gen_current,
                placement: r.placement,
                parent: r.parent,
                created_unix: r.created_unix,
                tag: None,
            });
        }
        decode(bytes)
    }
}

impl SnapshotRecord {
    pub fn decode(bytes: &[u8]) -> Result<SnapshotRecord, String> {
        if bytes.first() == Some(&RECORD_VERSION_V1) {
            let r: SnapshotRecordV1 =
                postcard::from_bytes(&bytes[1..]).map_err(|e| e.to_string())?;
            return Ok(SnapshotRecord {
                volume: r.volume,
                name: r.name,
                generation: r.generation,
                size: r.size,
                referenced_extents: r.referenced_extents,
                created_unix: r.created_unix,
                tag: None,
            });
        }
        decode(bytes)
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_stdvec(value).expect("records serialize"));
    out
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown record version {v}")),
        None => Err("empty record".into()),
    }
}
