//! On-device layout: superblocks and where the metadata region and data extents live.
//!
//! Every device of a pool:
//!
//! ```text
//! offset 0        superblock copy 0 (4 KiB)
//! offset 4 KiB    superblock copy 1 (4 KiB)
//! offset 8 KiB    generation record slot 0 (4 KiB)
//! offset 12 KiB   generation record slot 1 (4 KiB)
//! offset 64 KiB   metadata region (device 0 only; `meta_len` bytes, see meta_region.rs)
//! data_offset     data extents 0 .. extent_count, each `extent_size` bytes; data_offset is
//!                 extent-aligned so extents are aligned on the device
//! ```
//!
//! Superblock, 4096 bytes, integers little-endian:
//!
//! ```text
//!   0..8     magic "ARCAPOOL"
//!   8..12    layout version (1)
//!  12..16    reserved, zero
//!  16..32    pool id (random)
//!  32..48    device id (random)
//!  48..52    device index in the pool
//!  52..56    device count of the pool
//!  56..64    device size in bytes when labelled
//!  64..68    extent size in bytes (power of two)
//!  68..72    index of the device holding the metadata region
//!  72..80    metadata region offset on that device
//!  80..88    metadata region length
//!  88..96    data offset on this device
//!  96..104   extent count on this device
//! 104..112   creation time, seconds since the Unix epoch
//! 112..4092  zero
//! 4092..4096 CRC-32C of bytes 0..4092
//! ```
//!
//! Both copies are written identically at creation and never rewritten afterwards, so a torn or
//! damaged copy is recovered from the other.
//!
//! Generation record, 4096 bytes, integers little-endian (see generation.rs for how they are
//! used to refuse an old copy of a device):
//!
//! ```text
//!   0..8     magic "ARCAGEN1"
//!   8..24    pool id (as in the superblock)
//!  24..40    device id (as in the superblock)
//!  40..44    device index in the pool
//!  44..48    reserved, zero
//!  48..56    generation: the number of the flush that wrote it
//!  56..4092  zero
//! 4092..4096 CRC-32C of bytes 0..4092
//! ```
//!
//! Generation `g` goes to slot `g % 2`, so writing one never touches the previous one: a torn
//! write leaves the other slot, one generation older, readable. Both slots all-zero means no
//! record (a new pool, or one labelled before records existed: generation 0). The records use
//! space that layout version 1 left unused, so the layout version stays 1: an older build
//! ignores them, and this build reads a pool without them as generation 0.

use crate::error::{Error, ErrorKind, Result};

pub const SUPERBLOCK_SIZE: usize = 4096;
pub const SUPERBLOCK_OFFSETS: [u64; 2] = [0, 4096];
pub const GEN_RECORD_SIZE: usize = 4096;
/// Slot `g % 2` holds generation `g`.
pub const GEN_RECORD_OFFSETS: [u64; 2] = [8192, 12288];
pub const GEN_MAGIC: [u8; 8] = *b"ARCAGEN1";
pub const LAYOUT_VERSION: u32 = 1;
pub const MAGIC: [u8; 8] = *b"ARCAPOOL";
/// Start of the metadata region on the metadata device; room for superblocks before it.
pub const META_OFFSET: u64 = 64 * 1024;
/// Bounds on the extent size chosen at pool creation.
pub const EXTENT_SIZE_MIN: u32 = 4096;
pub const EXTENT_SIZE_MAX: u32 = 64 * 1024 * 1024;
/// Devices per pool; the physical extent address keeps 8 bits for the device.
pub const DEVICE_COUNT_MAX: u32 = 255;
/// Extents per device; the physical extent address keeps 40 bits for the extent.
pub const EXTENT_COUNT_MAX: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub pool_id: [u8; 16],
    pub device_id: [u8; 16],
    pub device_index: u32,
    pub device_count: u32,
    pub device_size: u64,
    pub extent_size: u32,
    pub meta_device: u32,
    pub meta_offset: u64,
    pub meta_len: u64,
    pub data_offset: u64,
    pub extent_count: u64,
    pub created_unix: u64,
}

impl Superblock {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        b[16..32].copy_from_slice(&self.pool_id);
        b[32..48].copy_from_slice(&self.device_id);
        b[48..52].copy_from_slice(&self.device_index.to_le_bytes());
        b[52..56].copy_from_slice(&self.device_count.to_le_bytes());
        b[56..64].copy_from_slice(&self.device_size.to_le_bytes());
        b[64..68].copy_from_slice(&self.extent_size.to_le_bytes());
        b[68..72].copy_from_slice(&self.meta_device.to_le_bytes());
        b[72..80].copy_from_slice(&self.meta_offset.to_le_bytes());
        b[80..88].copy_from_slice(&self.meta_len.to_le_bytes());
        b[88..96].copy_from_slice(&self.data_offset.to_le_bytes());
        b[96..104].copy_from_slice(&self.extent_count.to_le_bytes());
        b[104..112].copy_from_slice(&self.created_unix.to_le_bytes());
        let crc = crc32c::crc32c(&b[..SUPERBLOCK_SIZE - 4]);
        b[SUPERBLOCK_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates one copy; the error says what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<Superblock, String> {
        assert_eq!(b.len(), SUPERBLOCK_SIZE);
        if b[0..8] != MAGIC {
            return Err("no Arca superblock (bad magic)".into());
        }
        let crc = u32::from_le_bytes(b[SUPERBLOCK_SIZE - 4..].try_into().unwrap());
        if crc != crc32c::crc32c(&b[..SUPERBLOCK_SIZE - 4]) {
            return Err("superblock checksum mismatch".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != LAYOUT_VERSION {
            return Err(format!(
                "unsupported layout version {version} (this build reads {LAYOUT_VERSION})"
            ));
        }
        let sb = Superblock {
            pool_id: b[16..32].try_into().unwrap(),
            device_id: b[32..48].try_into().unwrap(),
            device_index: u32_at(48),
            device_count: u32_at(52),
            device_size: u64_at(56),
            extent_size: u32_at(64),
            meta_device: u32_at(68),
            meta_offset: u64_at(72),
            meta_len: u64_at(80),
            data_offset: u64_at(88),
            extent_count: u64_at(96),
            created_unix: u64_at(104),
        };
        sb.check_geometry()?;
        Ok(sb)
    }

    /// Internal consistency of the fields (a checksum only proves the bytes were written so).
    fn check_geometry(&self) -> Result<(), String> {
        let es = self.extent_size;
        if !es.is_power_of_two() || !(EXTENT_SIZE_MIN..=EXTENT_SIZE_MAX).contains(&es) {
            return Err(format!("invalid extent size {es}"));
        }
        if self.device_count == 0
            || self.device_count > DEVICE_COUNT_MAX
            || self.device_index >= self.device_count
            || self.meta_device >= self.device_count
        {
            return Err("invalid device index or count".into());
        }
        if self.extent_count > EXTENT_COUNT_MAX || !self.data_offset.is_multiple_of(es as u64) {
            return Err("invalid data region".into());
        }
        let data_end = self
            .extent_count
            .checked_mul(es as u64)
            .and_then(|n| n.checked_add(self.data_offset));
        if data_end.is_none_or(|end| end > self.device_size) {
            return Err("data region past the end of the device".into());
        }
        if self.device_index == self.meta_device
            && (self.meta_offset < META_OFFSET
                || self.meta_offset.saturating_add(self.meta_len) > self.data_offset)
        {
            return Err("metadata region overlaps superblocks or data".into());
        }
        Ok(())
    }
}

/// A device's generation record (one slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenRecord {
    pub pool_id: [u8; 16],
    pub device_id: [u8; 16],
    pub device_index: u32,
    pub generation: u64,
}

impl GenRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; GEN_RECORD_SIZE];
        b[0..8].copy_from_slice(&GEN_MAGIC);
        b[8..24].copy_from_slice(&self.pool_id);
        b[24..40].copy_from_slice(&self.device_id);
        b[40..44].copy_from_slice(&self.device_index.to_le_bytes());
        b[48..56].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32c::crc32c(&b[..GEN_RECORD_SIZE - 4]);
        b[GEN_RECORD_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one slot: `Ok(None)` for an all-zero (never written) slot, an error saying what
    /// is wrong with a damaged one.
    pub fn decode(b: &[u8]) -> Result<Option<GenRecord>, String> {
        assert_eq!(b.len(), GEN_RECORD_SIZE);
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if b[0..8] != GEN_MAGIC {
            return Err("bad magic".into());
        }
        let crc = u32::from_le_bytes(b[GEN_RECORD_SIZE - 4..].try_into().unwrap());
        if crc != crc32c::crc32c(&b[..GEN_RECORD_SIZE - 4]) {
            return Err("checksum mismatch".into());
        }
        Ok(Some(GenRecord {
            pool_id: b[8..24].try_into().unwrap(),
            device_id: b[24..40].try_into().unwrap(),
            device_index: u32::from_le_bytes(b[40..44].try_into().unwrap()),
            generation: u64::from_le_bytes(b[48..56].try_into().unwrap()),
        }))
    }
}

/// Where things go on one device of a new pool.
#[derive(Debug, Clone, Copy)]
pub struct DeviceGeometry {
    pub meta_len: u64,
    pub data_offset: u64,
    pub extent_count: u64,
}

/// Lays out a device of `size_bytes`; `meta_len` is non-zero only for the metadata device.
pub fn geometry(size_bytes: u64, extent_size: u32, meta_len: u64) -> Result<DeviceGeometry> {
    let es = extent_size as u64;
    let data_offset = (META_OFFSET + meta_len).div_ceil(es) * es;
    let extent_count = size_bytes.saturating_sub(data_offset) / es;
    if extent_count == 0 {
        return Err(Error::new(
            ErrorKind::InvalidSize,
            format!(
                "device of {size_bytes} bytes is too small: it needs more than {data_offset} bytes \
                 for superblocks and metadata and one extent of {es} bytes"
            ),
        ));
    }
    Ok(DeviceGeometry {
        meta_len,
        data_offset,
        extent_count: extent_count.min(EXTENT_COUNT_MAX),
    })
}

/// The default metadata region: 1/64 of the metadata device for the catalog, plus twice the
/// room to map every extent of the pool (only about half a region is surely reachable, see
/// meta_space.rs), and never below [`meta_len_min`]; at least 4 MiB, at most 64 GiB, and at
/// most half the device. Sparse until used.
pub fn default_meta_len(device_size_bytes: u64, pool_extents: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let maps = pool_extents.saturating_mul(2 * crate::MAP_ENTRY_ROOM_BYTES);
    let want = (device_size_bytes / 64)
        .saturating_add(maps)
        .max(meta_len_min(pool_extents))
        .clamp(4 * MIB, 64 * 1024 * MIB);
    want.min(device_size_bytes / 2) / MIB * MIB
}

/// Smallest metadata region for a pool of `pool_extents`: half of it (what is surely reachable)
/// maps every extent and keeps the deletion reserve and 256 KiB for records.
pub fn meta_len_min(pool_extents: u64) -> u64 {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    let maps = pool_extents.saturating_mul(crate::MAP_ENTRY_ROOM_BYTES);
    // The deletion reserve is 1/32 of the region but at least 256 KiB: 15/32 of the region
    // must hold maps and records, and half of it all three.
    let by_fraction = maps
        .saturating_add(256 * KIB)
        .saturating_mul(32)
        .div_ceil(15);
    let by_floor = maps.saturating_add(512 * KIB).saturating_mul(2);
    by_fraction.max(by_floor).div_ceil(MIB).saturating_mul(MIB)
}

/// A superblock for tests: device 0 of 1, 1 GiB, 64 KiB extents.
#[cfg(test)]
pub(crate) fn sample_superblock() -> Superblock {
    Superblock {
        pool_id: [1; 16],
        device_id: [2; 16],
        device_index: 0,
        device_count: 1,
        device_size: 1 << 30,
        extent_size: 65536,
        meta_device: 0,
        meta_offset: META_OFFSET,
        meta_len: 16 << 20,
        data_offset: 17 << 20,
        extent_count: ((1 << 30) - (17 << 20)) / 65536,
        created_unix: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the default was below the minimum a pool is refused under, for a small
    /// device 0 beside a large device with small extents.
    #[test]
    fn default_metadata_region_meets_the_minimum() {
        const MIB: u64 = 1 << 20;
        for (dev0, others, es) in [(600 * MIB, 6 << 30, 4096), (1 << 30, 0, 65536)] {
            let extents = (dev0 + others) / es;
            assert!(default_meta_len(dev0, extents) >= meta_len_min(extents));
        }
    }

    #[test]
    fn superblock_round_trips() {
        let sb = sample_superblock();
        assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
    }

    #[test]
    fn superblock_rejects_flipped_bit_and_bad_magic() {
        let mut b = sample_superblock().encode();
        b[100] ^= 1;
        assert!(Superblock::decode(&b).unwrap_err().contains("checksum"));
        let mut b = sample_superblock().encode();
        b[0] = b'X';
        assert!(Superblock::decode(&b).unwrap_err().contains("magic"));
    }

    #[test]
    fn generation_record_round_trips_and_rejects_damage() {
        let r = GenRecord {
            pool_id: [1; 16],
            device_id: [2; 16],
            device_index: 3,
            generation: 0x0102_0304_0506,
        };
        let b = r.encode();
        assert_eq!(&b[0..8], b"ARCAGEN1");
        assert_eq!(&b[48..56], &0x0102_0304_0506u64.to_le_bytes());
        assert_eq!(GenRecord::decode(&b).unwrap(), Some(r));
        assert_eq!(GenRecord::decode(&[0; GEN_RECORD_SIZE]).unwrap(), None);
        let mut torn = b.clone();
        torn[50] ^= 1;
        assert!(GenRecord::decode(&torn).unwrap_err().contains("checksum"));
        torn[0] = b'X';
        assert!(GenRecord::decode(&torn).unwrap_err().contains("magic"));
    }

    #[test]
    fn generation_slots_lie_between_the_superblocks_and_any_data() {
        let end = GEN_RECORD_OFFSETS[1] + GEN_RECORD_SIZE as u64;
        assert!(GEN_RECORD_OFFSETS[0] >= SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_SIZE as u64);
        assert!(end <= META_OFFSET);
        // A device without the metadata region starts its data at META_OFFSET or later.
        assert!(geometry(1 << 30, EXTENT_SIZE_MIN, 0).unwrap().data_offset >= META_OFFSET);
    }

    #[test]
    fn superblock_rejects_inconsistent_geometry_even_with_good_checksum() {
        let mut sb = sample_superblock();
        sb.extent_count *= 2;
        assert!(
            Superblock::decode(&sb.encode())
                .unwrap_err()
                .contains("past the end")
        );
    }
}
