//! The vault's on-storage format, version 1, byte by byte (FORMAT.md says the same with the
//! reasons). All integers are little-endian. Objects are written once and never modified.
//!
//! Object names, relative to the vault's root (directory or bucket prefix):
//!
//! | name                              | what                                              |
//! |-----------------------------------|---------------------------------------------------|
//! | `arca-vault.config`               | the vault's config (always readable without key)  |
//! | `packs/<h2>/<pack-id hex>`        | a pack: chunk blobs back to back                  |
//! | `index/<pack-id hex>`             | the index of one pack, written after the pack     |
//! | `manifests/<backup id, 16 hex>`   | one copied backup, written last                   |
//!
//! `<pack-id hex>` is 32 lowercase hex digits of a random 16-byte pack id, `<h2>` its first
//! two digits (a fan-out for directory vaults).
//!
//! **Envelope** (config, index, manifest):
//!
//! ```text
//! 0   magic [8]     "ARCAVCFG" | "ARCAVIDX" | "ARCAVMAN"
//! 8   version u16   FORMAT_VERSION
//! 10  flags u8      bit 0: body is sealed; other bits zero
//! 11  body          flags bit 0 clear: payload || BLAKE3(header[0..11] || name || payload) [32]
//!                   flags bit 0 set:   nonce [24] || XChaCha20-Poly1305(payload) || tag [16]
//!                                      with associated data header[0..11] || name
//! ```
//!
//! `name` is the object's name above, so an object copied under another name (a manifest
//! passed off as another backup's) fails its check. The config is never sealed.
//!
//! **Config payload** (`ARCAVCFG`):
//!
//! ```text
//! 0   vault id [16]         random
//! 16  chunk size u32        bytes per chunk (the array's extent size, 64 KiB by default)
//! 20  created u64           seconds since the Unix epoch
//! 28  encryption u8         0 none, 1 XChaCha20-Poly1305
//! 29  encryption 0: chunk-id key [32]                               (payload is 61 bytes)
//!     encryption 1: nonce [24] || sealed chunk-id key [32] || tag [16] with associated
//!                   data "arca-vault key check" || vault id       (payload is 101 bytes)
//! ```
//!
//! Opening the sealed chunk-id key is the key check: a wrong key fails there, before any
//! data is read.
//!
//! **Pack object** (`packs/..`):
//!
//! ```text
//! 0   magic "ARCAVPAK" [8]
//! 8   version u16
//! 10  flags u8              bit 0: blobs are sealed
//! 11  pack id [16]
//! 27  blobs, back to back; a blob is
//!       plain:  inner
//!       sealed: nonce [24] || XChaCha20-Poly1305(inner) || tag [16], associated data = chunk id
//!     inner = codec u8 (0 stored, 1 zstd) || data
//! ```
//!
//! A chunk's data decodes to exactly its raw length and its keyed BLAKE3 equals its id; a
//! reader checks both. A blob is bound to its chunk id, not to its pack, so repacking (issue
//! 14's GC) can move blobs unchanged.
//!
//! **Pack index payload** (`ARCAVIDX`):
//!
//! ```text
//! 0   pack id [16]
//! 16  pack length u64       bytes of the whole pack object
//! 24  count u32
//! 28  count entries of 44 bytes: chunk id [32], offset u32, stored length u32, raw length u32
//! ```
//!
//! **Manifest payload** (`ARCAVMAN`):
//!
//! ```text
//! 0   backup id u64
//! 8   vault id [16]
//! 24  image size u64        bytes
//! 32  chunk size u32        the vault's chunk size when written
//! 36  created u64           seconds since the Unix epoch
//! 44  root [32]             keyed BLAKE3 (chunk-id key) of image size u64 || chunk size u32 ||
//!                           per chunk in order: 0x00 (hole) or 0x01 || chunk id
//! 76  meta length u32, meta [..]      the backup's record as the catalog encodes it (opaque)
//! ..  pack count u32, pack ids [16] each
//! ..  run count u32, runs:
//!       0x00 count u32                                  `count` hole chunks (count >= 1)
//!       0x01 chunk id [32] pack u32 offset u32 stored length u32     one data chunk
//! ```
//!
//! Chunk i covers image bytes [i * chunk size, min((i + 1) * chunk size, image size)); the
//! runs cover every chunk exactly once, in order. `pack` indexes the manifest's own pack
//! table, so a restore finds every chunk's bytes without consulting any index.

use crate::crypto::{ChunkId, Sealer};
use crate::error::{Error, Result};

pub const FORMAT_VERSION: u16 = 1;
pub(crate) const CONFIG_NAME: &str = "arca-vault.config";
pub(crate) const PACKS_DIR: &str = "packs";
pub(crate) const INDEX_DIR: &str = "index";
pub(crate) const MANIFESTS_DIR: &str = "manifests";
pub(crate) const MAGIC_CONFIG: &[u8; 8] = b"ARCAVCFG";
pub(crate) const MAGIC_INDEX: &[u8; 8] = b"ARCAVIDX";
pub(crate) const MAGIC_MANIFEST: &[u8; 8] = b"ARCAVMAN";
pub(crate) const MAGIC_PACK: &[u8; 8] = b"ARCAVPAK";
pub(crate) const MAGIC_GC_STATE: &[u8; 8] = b"ARCAVGCS";
pub(crate) const MAGIC_VERIFY_STATE: &[u8; 8] = b"ARCAVVFY";
/// Upkeep state objects: the only objects that are replaced in place (see `state`).
pub(crate) const MAGIC_LEASE: &[u8; 8] = b"ARCAVLSE";
pub(crate) const LEASE_DIR: &str = "upkeep/lease";
pub(crate) const GC_STATE_NAME: &str = "upkeep/gc";
pub(crate) const VERIFY_STATE_NAME: &str = "upkeep/verify";
pub(crate) const HEADER_LEN: usize = 11;
pub(crate) const CHECKSUM_LEN: usize = 32;
pub(crate) const INDEX_ENTRY_LEN: usize = 44;
pub(crate) const KEY_CHECK_AAD: &[u8] = b"arca-vault key check";
pub(crate) const CODEC_STORED: u8 = 0;
pub(crate) const CODEC_ZSTD: u8 = 1;

pub type PackId = [u8; 16];

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub(crate) fn pack_name(id: &PackId) -> String {
    let h = hex(id);
    format!("{PACKS_DIR}/{}/{h}", &h[..2])
}

pub(crate) fn index_name(id: &PackId) -> String {
    format!("{INDEX_DIR}/{}", hex(id))
}

pub fn manifest_name(backup_id: u64) -> String {
    format!("{MANIFESTS_DIR}/{backup_id:016x}")
}

pub(crate) fn header(magic: &[u8; 8], sealed: bool) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = sealed as u8;
    h
}

/// Wraps `payload` as the envelope above.
pub(crate) fn seal_object(magic: &[u8; 8], sealer: &Sealer, name: &str, payload: &[u8]) -> Vec<u8> {
    let head = header(magic, sealer.encrypted());
    let mut out = head.to_vec();
    if sealer.encrypted() {
        let aad = [&head[..], name.as_bytes()].concat();
        out.extend_from_slice(&sealer.seal(&aad, payload));
    } else {
        out.extend_from_slice(payload);
        let mut h = blake3::Hasher::new();
        h.update(&head).update(name.as_bytes()).update(payload);
        out.extend_from_slice(h.finalize().as_bytes());
    }
    out
}

/// Checks a header: magic, then version; returns whether the body is sealed.
pub(crate) fn check_header(magic: &[u8; 8], name: &str, bytes: &[u8]) -> Result<bool> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
        return Err(Error::corrupt(
            name,
            None,
            "not a vault object of this kind (bad magic)",
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            object: name.to_string(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    match bytes[10] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::corrupt(name, None, "unknown header flags")),
    }
}

/// The payload of an envelope, checked (checksum or AEAD tag).
pub(crate) fn open_object(
    magic: &[u8; 8],
    sealer: &Sealer,
    name: &str,
    bytes: &[u8],
) -> Result<Vec<u8>> {
    let sealed = check_header(magic, name, bytes)?;
    let (head, body) = bytes.split_at(HEADER_LEN);
    if sealed != sealer.encrypted() {
        let why = if sealed {
            "sealed in a vault without encryption"
        } else {
            "not sealed"
        };
        return Err(Error::corrupt(name, None, why));
    }
    if sealed {
        let aad = [head, name.as_bytes()].concat();
        return sealer
            .open(&aad, body)
            .ok_or_else(|| Error::corrupt(name, None, "authentication failed"));
    }
    if body.len() < CHECKSUM_LEN {
        return Err(Error::corrupt(name, None, "truncated"));
    }
    let (payload, sum) = body.split_at(body.len() - CHECKSUM_LEN);
    let mut h = blake3::Hasher::new();
    h.update(head).update(name.as_bytes()).update(payload);
    if h.finalize().as_bytes() != sum {
        return Err(Error::corrupt(name, None, "checksum mismatch"));
    }
    Ok(payload.to_vec())
}

/// Little-endian reads over an untrusted buffer; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N).map(|b| b.try_into().expect("length checked"))
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// The config object's payload.
#[derive(Clone)]
pub(crate) struct ConfigPayload {
    pub vault_id: [u8; 16],
    pub chunk_size: u32,
    pub created_unix_s: u64,
    /// The plain chunk-id key, or its sealed form (nonce || ciphertext || tag).
    pub key_field: KeyField,
}

#[derive(Clone)]
pub(crate) enum KeyField {
    Plain([u8; 32]),
    Sealed(Vec<u8>),
}

pub(crate) const SEALED_KEY_LEN: usize = 24 + 32 + 16;

impl ConfigPayload {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(101);
        out.extend_from_slice(&self.vault_id);
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.created_unix_s.to_le_bytes());
        match &self.key_field {
            KeyField::Plain(key) => {
                out.push(0);
                out.extend_from_slice(key);
            }
            KeyField::Sealed(sealed) => {
                assert_eq!(sealed.len(), SEALED_KEY_LEN);
                out.push(1);
                out.extend_from_slice(sealed);
            }
        }
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<ConfigPayload> {
        let bad = |what: &str| Error::corrupt(CONFIG_NAME, None, what.to_string());
        let mut r = Reader::new(payload);
        let vault_id = r.array().ok_or_else(|| bad("truncated"))?;
        let chunk_size = r.u32().ok_or_else(|| bad("truncated"))?;
        let created_unix_s = r.u64().ok_or_else(|| bad("truncated"))?;
        let key_field = match r.u8() {
            Some(0) => KeyField::Plain(r.array().ok_or_else(|| bad("truncated"))?),
            Some(1) => KeyField::Sealed(
                r.bytes(SEALED_KEY_LEN)
                    .ok_or_else(|| bad("truncated"))?
                    .to_vec(),
            ),
            _ => return Err(bad("unknown encryption")),
        };
        if r.remaining() != 0 {
            return Err(bad("trailing bytes"));
        }
        if chunk_size == 0 {
            return Err(bad("chunk size 0"));
        }
        Ok(ConfigPayload {
            vault_id,
            chunk_size,
            created_unix_s,
            key_field,
        })
    }
}

/// Where one chunk lies in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub offset: u32,
    pub stored_len: u32,
}

/// A pack's index: every blob in it, in pack order.
#[derive(Debug, Clone)]
pub(crate) struct PackIndex {
    pub pack_id: PackId,
    pub pack_len: u64,
    pub entries: Vec<(ChunkId, BlobRef, u32)>,
}

impl PackIndex {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + INDEX_ENTRY_LEN * self.entries.len());
        out.extend_from_slice(&self.pack_id);
        out.extend_from_slice(&self.pack_len.to_le_bytes());
        let count = u32::try_from(self.entries.len()).expect("a pack holds < 2^32 chunks");
        out.extend_from_slice(&count.to_le_bytes());
        for (id, blob, raw_len) in &self.entries {
            out.extend_from_slice(id);
            out.extend_from_slice(&blob.offset.to_le_bytes());
            out.extend_from_slice(&blob.stored_len.to_le_bytes());
            out.extend_from_slice(&raw_len.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(name: &str, payload: &[u8]) -> Result<PackIndex> {
        let bad = || Error::corrupt(name, None, "malformed pack index");
        let mut r = Reader::new(payload);
        let pack_id = r.array().ok_or_else(bad)?;
        let pack_len = r.u64().ok_or_else(bad)?;
        let count = r.u32().ok_or_else(bad)? as usize;
        if r.remaining() != count * INDEX_ENTRY_LEN {
            return Err(bad());
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.array().ok_or_else(bad)?;
            let offset = r.u32().ok_or_else(bad)?;
            let stored_len = r.u32().ok_or_else(bad)?;
            let raw_len = r.u32().ok_or_else(bad)?;
            if stored_len == 0 || u64::from(offset) + u64::from(stored_len) > pack_len {
                return Err(bad());
            }
            entries.push((id, BlobRef { offset, stored_len }, raw_len));
        }
        Ok(PackIndex {
            pack_id,
            pack_len,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::VaultKey;

    #[test]
    fn envelopes_detect_alteration_renaming_and_version() {
        for sealer in [Sealer::plain(), Sealer::from_key(&VaultKey::generate())] {
            let obj = seal_object(MAGIC_INDEX, &sealer, "index/aa", b"payload bytes");
            assert_eq!(
                open_object(MAGIC_INDEX, &sealer, "index/aa", &obj).unwrap(),
                b"payload bytes"
            );
            assert!(matches!(
                open_object(MAGIC_INDEX, &sealer, "index/bb", &obj),
                Err(Error::Corrupt { .. })
            ));
            assert!(matches!(
                open_object(MAGIC_MANIFEST, &sealer, "index/aa", &obj),
                Err(Error::Corrupt { .. })
            ));
            for i in 0..obj.len() {
                let mut bad = obj.clone();
                bad[i] ^= 0x40;
                assert!(
                    open_object(MAGIC_INDEX, &sealer, "index/aa", &bad).is_err(),
                    "byte {i}"
                );
            }
            let mut newer = obj.clone();
            newer[8] = 2;
            assert!(matches!(
                open_object(MAGIC_INDEX, &sealer, "index/aa", &newer),
                Err(Error::UnsupportedVersion { version: 2, .. })
            ));
        }
    }

    #[test]
    fn pack_index_round_trips_and_rejects_out_of_pack_blobs() {
        let idx = PackIndex {
            pack_id: [7; 16],
            pack_len: 100,
            entries: vec![(
                [1; 32],
                BlobRef {
                    offset: 27,
                    stored_len: 50,
                },
                65536,
            )],
        };
        let back = PackIndex::decode("i", &idx.encode()).unwrap();
        assert_eq!(back.entries, idx.entries);
        let mut bad = idx.clone();
        bad.entries[0].1.stored_len = 74;
        assert!(PackIndex::decode("i", &bad.encode()).is_err());
        assert!(PackIndex::decode("i", &idx.encode()[..40]).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let id: PackId = [0xde; 16];
        assert_eq!(parse_hex::<16>(&hex(&id)), Some(id));
        assert_eq!(parse_hex::<16>("zz"), None);
        assert_eq!(manifest_name(255), "manifests/00000000000000ff");
    }
}
