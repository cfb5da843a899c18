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
//! attaches (a backup destination points back at its catalog record with it). Version 3 adds
//! the object's guards (guards.rs). Version 1 and 2 records still decode, with no tag (v1) and
//! no guards (v1, v2); they are written back as version 3 when next changed.
//!
//! Encoding of a version 3 volume record, byte by byte (postcard: unsigned integers are LEB128
//! varints, `u8` is one byte, a string or byte string is a varint length then its bytes, an
//! `Option` is one byte 0 (none) or 1 then the value, a sequence is a varint count then its
//! elements, an enum is a varint variant index then its fields):
//!
//! 1. version: one byte, 3;
//! 2. `name`: string; `size`: varint; `gen_current`: varint; `placement`: option of varint;
//!    `parent`: option of (varint volume id, varint snapshot id); `created_unix`: varint;
//!    `tag`: option of byte string;
//! 3. `guards`: varint count, then per guard: owner variant index (0 `Backup`, 1 `Restore`,
//!    2 `Pair`) as a varint, the owner's id as a varint, the effect as one byte (bit 0 read-only
//!    to hosts, bit 1 no delete, bit 2 no resize; other bits refused), the reason as a string.
//!
//! A version 3 snapshot record: the version byte 3; `volume` varint; `name` string;
//! `generation` varint; `size` varint; `referenced_extents` varint; `created_unix` varint;
//! `tag` option of byte string; then `guards` as above. Versions 1 and 2 are the same without
//! `guards` (and, for version 1, without `tag`).
//!
//! An `extents` owner is a volume id (its live map) or a snapshot id (the entries that snapshot
//! preserved when its volume overwrote or trimmed them). Ids come from one counter and are never
//! reused. The allocator is not stored: it is rebuilt from `extents` at open.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::guards::{Guard, GuardEffect};

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
const RECORD_VERSION: u8 = 3;
const RECORD_VERSION_V2: u8 = 2;
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
    /// Sorted by owner, at most one per owner.
    pub guards: Vec<Guard>,
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
    pub guards: Vec<Guard>,
}

/// Records as version 1 stored them: the fields of version 3 without `tag` and `guards`.
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

/// Records as version 2 stored them: version 1's fields, then `tag`. Postcard writes a nested
/// struct's fields in line, so this reads version 2's flat layout.
#[derive(Deserialize)]
struct RecordV2<V1> {
    v1: V1,
    tag: Option<Vec<u8>>,
}

impl VolumeRecordV1 {
    fn upgrade(self, tag: Option<Vec<u8>>) -> VolumeRecord {
        VolumeRecord {
            name: self.name,
            size: self.size,
            gen_current: self.gen_current,
            placement: self.placement,
            parent: self.parent,
            created_unix: self.created_unix,
            tag,
            guards: Vec::new(),
        }
    }
}

impl SnapshotRecordV1 {
    fn upgrade(self, tag: Option<Vec<u8>>) -> SnapshotRecord {
        SnapshotRecord {
            volume: self.volume,
            name: self.name,
            generation: self.generation,
            size: self.size,
            referenced_extents: self.referenced_extents,
            created_unix: self.created_unix,
            tag,
            guards: Vec::new(),
        }
    }
}

/// Reads a record of version 1 or 2 (`None` for the current version).
fn decode_old<'a, V1: Deserialize<'a>>(bytes: &'a [u8]) -> Option<Result<RecordV2<V1>, String>> {
    let (version, rest) = bytes.split_first()?;
    let old = match *version {
        RECORD_VERSION_V1 => postcard::from_bytes(rest).map(|v1| RecordV2 { v1, tag: None }),
        RECORD_VERSION_V2 => postcard::from_bytes(rest),
        _ => return None,
    };
    Some(old.map_err(|e| e.to_string()))
}

/// Decodes a record of the current version (whose guards must be as the store writes them),
/// or of version 1 or 2, brought up to date by `upgrade`.
fn decode_record<'a, V1: Deserialize<'a>, T: Deserialize<'a>>(
    bytes: &'a [u8],
    upgrade: impl FnOnce(V1, Option<Vec<u8>>) -> T,
    guards: impl FnOnce(&T) -> &[Guard],
) -> Result<T, String> {
    if let Some(old) = decode_old::<V1>(bytes) {
        return old.map(|r| upgrade(r.v1, r.tag));
    }
    let r: T = decode(bytes)?;
    check_guards(guards(&r))?;
    Ok(r)
}

impl VolumeRecord {
    pub fn decode(bytes: &[u8]) -> Result<VolumeRecord, String> {
        decode_record(bytes, VolumeRecordV1::upgrade, |r: &VolumeRecord| &r.guards)
    }
}

/// Stored guards must be what the store writes: known effects, sorted, one per owner.
fn check_guards(guards: &[Guard]) -> Result<(), String> {
    for g in guards {
        if GuardEffect::from_bits(g.effect.bits()).is_none() {
            return Err(format!("guard of {} has unknown effect bits", g.owner));
        }
    }
    if guards.windows(2).any(|w| w[0].owner >= w[1].owner) {
        return Err("guards are not sorted by owner".into());
    }
    Ok(())
}

impl SnapshotRecord {
    pub fn decode(bytes: &[u8]) -> Result<SnapshotRecord, String> {
        decode_record(bytes, SnapshotRecordV1::upgrade, |r: &SnapshotRecord| {
            &r.guards
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::GuardOwner;

    #[test]
    fn version_2_records_decode_without_guards() {
        let mut v2 = vec![RECORD_VERSION_V2];
        // name "v", size 4096, gen 1, no placement, no parent, created 5, tag Some([9]).
        v2.extend([1, b'v', 0x80, 0x20, 1, 0, 0, 5, 1, 1, 9]);
        let r = VolumeRecord::decode(&v2).unwrap();
        assert_eq!(r.size, 4096);
        assert_eq!(r.tag, Some(vec![9]));
        assert!(r.guards.is_empty());
    }

    #[test]
    fn version_1_records_decode_without_tag_or_guards() {
        // name "v", size 4096, gen 1, no placement, no parent, created 5.
        let r = VolumeRecord::decode(&[RECORD_VERSION_V1, 1, b'v', 0x80, 0x20, 1, 0, 0, 5]);
        let r = r.unwrap();
        assert_eq!((r.name.as_str(), r.size, r.created_unix), ("v", 4096, 5));
        assert_eq!((r.tag, r.guards.len()), (None, 0));
        // volume 2, name "s", generation 1, size 0, referenced 0, created 0.
        let v1 = [RECORD_VERSION_V1, 2, 1, b's', 1, 0, 0, 0];
        let s = SnapshotRecord::decode(&v1).unwrap();
        assert_eq!((s.volume, s.name.as_str(), s.generation), (2, "s", 1));
        assert_eq!((s.tag, s.guards.len()), (None, 0));
        // Version 2: the same, then the tag.
        let v2 = [RECORD_VERSION_V2, 2, 1, b's', 1, 0, 0, 0, 1, 1, 7];
        assert_eq!(SnapshotRecord::decode(&v2).unwrap().tag, Some(vec![7]));
    }

    #[test]
    fn version_3_guards_are_encoded_as_documented() {
        let r = SnapshotRecord {
            volume: 2,
            name: "s".into(),
            generation: 1,
            size: 0,
            referenced_extents: 0,
            created_unix: 0,
            tag: None,
            guards: vec![Guard::new(
                GuardOwner::Pair(300),
                GuardEffect::NO_DELETE,
                "p",
            )],
        };
        let bytes = encode(&r);
        assert_eq!(
            bytes,
            vec![3, 2, 1, b's', 1, 0, 0, 0, 0, 1, 2, 0xAC, 0x02, 2, 1, b'p']
        );
        assert_eq!(SnapshotRecord::decode(&bytes).unwrap(), r);
        let mut bad = bytes.clone();
        bad[13] = 8;
        assert!(SnapshotRecord::decode(&bad).is_err());
    }
}
