//! Upkeep state objects: `upkeep/gc` (garbage collection's marks and last results) and
//! `upkeep/verify` (when each pack was last checked). They are the only objects replaced in
//! place; each has one writer at a time (one array holds the vault's lease, and one gc or
//! verify runs per vault), and losing or damaging one costs work, never data: gc marks
//! afresh, every pack becomes due for verification. Both use the envelope of
//! FORMAT.md (sealed in an encrypted vault). Layouts are in FORMAT.md.

use std::collections::HashMap;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::format::{
    self, GC_STATE_NAME, MAGIC_GC_STATE, MAGIC_VERIFY_STATE, PackId, Reader, VERIFY_STATE_NAME,
};
use crate::vault::{Vault, get_bytes};

/// A pack marked by phase 1 of garbage collection, with the bytes its removal frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub pack: PackId,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GcState {
    /// When the last phase 2 ran (0: never).
    pub last_gc_unix_s: u64,
    /// Bytes the last phase 2 deleted.
    pub last_deleted_bytes: u64,
    /// As of the last phase 1: bytes of unique chunks that manifests use, and bytes that
    /// garbage collection can give back (unused packs plus the dead part of sparse ones).
    pub live_bytes: u64,
    pub reclaimable_bytes: u64,
    /// When phase 1 wrote the marks (0: no marks).
    pub marked_at_unix_s: u64,
    pub marks: Vec<Mark>,
    /// The manifests phase 1 read: phase 2 reads only the others (written since).
    pub seen: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VerifyState {
    /// When the last verify ended (0: never).
    pub last_verify_unix_s: u64,
    /// When each pack's data was last checked clean (absent: never).
    pub checked: HashMap<PackId, u64>,
}

fn truncated(name: &str) -> Error {
    Error::corrupt(name, None, "malformed upkeep state")
}

impl GcState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + 24 * self.marks.len() + 8 * self.seen.len());
        for v in [
            self.last_gc_unix_s,
            self.last_deleted_bytes,
            self.live_bytes,
            self.reclaimable_bytes,
            self.marked_at_unix_s,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.marks.len() as u32).to_le_bytes());
        for m in &self.marks {
            out.extend_from_slice(&m.pack);
            out.extend_from_slice(&m.bytes.to_le_bytes());
        }
        out.extend_from_slice(&(self.seen.len() as u32).to_le_bytes());
        for id in &self.seen {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<GcState> {
        let t = || truncated(GC_STATE_NAME);
        let mut r = Reader::new(payload);
        let mut s = GcState {
            last_gc_unix_s: r.u64().ok_or_else(t)?,
            last_deleted_bytes: r.u64().ok_or_else(t)?,
            live_bytes: r.u64().ok_or_else(t)?,
            reclaimable_bytes: r.u64().ok_or_else(t)?,
            marked_at_unix_s: r.u64().ok_or_else(t)?,
            ..GcState::default()
        };
        let marks = r.u32().ok_or_else(t)? as usize;
        if marks > r.remaining() / 24 {
            return Err(t());
        }
        for _ in 0..marks {
            let pack = r.array().ok_or_else(t)?;
            let bytes = r.u64().ok_or_else(t)?;
            s.marks.push(Mark { pack, bytes });
        }
        let seen = r.u32().ok_or_else(t)? as usize;
        if seen.checked_mul(8) != Some(r.remaining()) {
            return Err(t());
        }
        for _ in 0..seen {
            s.seen.push(r.u64().ok_or_else(t)?);
        }
        Ok(s)
    }
}

impl VerifyState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 24 * self.checked.len());
        out.extend_from_slice(&self.last_verify_unix_s.to_le_bytes());
        out.extend_from_slice(&(self.checked.len() as u32).to_le_bytes());
        let mut packs: Vec<_> = self.checked.iter().collect();
        packs.sort_unstable();
        for (pack, at) in packs {
            out.extend_from_slice(pack);
            out.extend_from_slice(&at.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<VerifyState> {
        let t = || truncated(VERIFY_STATE_NAME);
        let mut r = Reader::new(payload);
        let last_verify_unix_s = r.u64().ok_or_else(t)?;
        let count = r.u32().ok_or_else(t)? as usize;
        if count * 24 != r.remaining() {
            return Err(t());
        }
        let mut checked = HashMap::with_capacity(count);
        for _ in 0..count {
            let pack = r.array().ok_or_else(t)?;
            checked.insert(pack, r.u64().ok_or_else(t)?);
        }
        Ok(VerifyState {
            last_verify_unix_s,
            checked,
        })
    }
}

impl Vault {
    /// The payload of a state object; `None` when it is absent.
    fn read_state(&self, magic: &[u8; 8], name: &str) -> Result<Option<Vec<u8>>> {
        match self.rt.block_on(get_bytes(&self.inner, name)) {
            Ok(bytes) => format::open_object(magic, &self.inner.sealer, name, &bytes).map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(name, None, e)),
        }
    }

    fn write_state(&self, magic: &[u8; 8], name: &str, payload: &[u8]) -> Result<()> {
        let bytes = format::seal_object(magic, &self.inner.sealer, name, payload);
        self.rt
            .block_on(
                self.inner
                    .store
                    .put(&Path::from(name), PutPayload::from(bytes)),
            )
            .map(|_| ())
            .map_err(|e| Error::store(name, None, e))
    }

    /// A damaged gc state is treated as absent: the next gc marks afresh, and its new mark
    /// time restarts the grace period, so copies that ignored the lost marks stay safe.
    pub(crate) fn read_gc_state(&self) -> Result<GcState> {
        match self.read_state(MAGIC_GC_STATE, GC_STATE_NAME) {
            Ok(Some(p)) => Ok(GcState::decode(&p).unwrap_or_default()),
            Ok(None) | Err(Error::Corrupt { .. }) => Ok(GcState::default()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn write_gc_state(&self, s: &GcState) -> Result<()> {
        self.write_state(MAGIC_GC_STATE, GC_STATE_NAME, &s.encode())
    }

    /// A damaged verify state is treated as absent: every pack becomes due again.
    pub(crate) fn read_verify_state(&self) -> Result<VerifyState> {
        match self.read_state(MAGIC_VERIFY_STATE, VERIFY_STATE_NAME) {
            Ok(Some(p)) => Ok(VerifyState::decode(&p).unwrap_or_default()),
            Ok(None) | Err(Error::Corrupt { .. }) => Ok(VerifyState::default()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn write_verify_state(&self, s: &VerifyState) -> Result<()> {
        self.write_state(MAGIC_VERIFY_STATE, VERIFY_STATE_NAME, &s.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_reject_truncation() {
        let gc = GcState {
            last_gc_unix_s: 5,
            last_deleted_bytes: 6,
            live_bytes: 7,
            reclaimable_bytes: 8,
            marked_at_unix_s: 9,
            marks: vec![Mark {
                pack: [3; 16],
                bytes: 100,
            }],
            seen: vec![1, 2, 40],
        };
        let bytes = gc.encode();
        assert_eq!(GcState::decode(&bytes).unwrap(), gc);
        for n in 0..bytes.len() {
            assert!(GcState::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut v = VerifyState {
            last_verify_unix_s: 11,
            ..VerifyState::default()
        };
        v.checked.insert([1; 16], 10);
        v.checked.insert([2; 16], 0);
        let bytes = v.encode();
        assert_eq!(VerifyState::decode(&bytes).unwrap(), v);
        assert!(VerifyState::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
