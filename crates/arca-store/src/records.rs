//! Persistent records in the metadata store (redb tables) and their encodings.
//!
//! Tables:
//!
//! | table       | key                 | value                                         |
//! |-------------|---------------------|-----------------------------------------------|
//! | `meta`      | `&str`              | `u64` (`next_id`, `format`)                    |
//! | `volumes`   | volume id `u64`     | version byte 1 + postcard [`VolumeRecord`]     |
//! | `snapshots` | snapshot id `u64`   | version byte 1 + postcard [`SnapshotRecord`]   |
//! | `extents`   | (owner id, logical) | (raw entry `u64`, birth `u32`), see extent_map |
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
pub const FORMAT: u64 = 1;
const RECORD_VERSION: u8 = 1;

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
