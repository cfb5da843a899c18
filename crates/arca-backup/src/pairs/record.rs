//! A pair's record: its state and what survives a restart, stored in the `pairs` table, and
//! the names of its change-tracking snapshots.

use serde::{Deserialize, Serialize};

use crate::ids::PairId;

pub const PAIRS: &str = "pairs";
const RECORD_VERSION: u8 = 1;

/// A pair's state (see the section's introduction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PairState {
    Copy,
    Pair,
    Split,
    Resync,
    ReverseResync,
    Error,
}

crate::wire_names!(PairState {
    Copy => "copy",
    Pair => "pair",
    Split => "split",
    Resync => "resync",
    ReverseResync => "reverse-resync",
    Error => "error",
});

impl PairState {
    /// Whether primary writes are applied to the secondary.
    pub(super) fn mirrors(self) -> bool {
        matches!(self, PairState::Copy | PairState::Pair | PairState::Resync)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: PairId,
    /// The pair's name: its secondary's name when it was made.
    pub name: String,
    pub primary_id: u64,
    pub secondary_id: u64,
    pub state: PairState,
    pub reason: Option<String>,
    /// Copy jobs stay under this rate (bytes per second).
    pub pace_bytes_per_second: Option<u64>,
    pub created_ms: u64,
    pub split_ms: Option<u64>,
    /// Extents that may differ beyond what the split snapshots track: writes the secondary
    /// missed when it failed.
    pub missed_extents: Vec<u64>,
    /// Set when the daemon closed the pair cleanly in `pair` state.
    pub closed_cleanly: bool,
    /// The initial copy did not finish: the next resync copies everything.
    pub needs_full_copy: bool,
}

impl PairRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        crate::stored::encode(RECORD_VERSION, self)
    }

    pub(super) fn decode(b: &[u8]) -> std::result::Result<PairRecord, String> {
        crate::stored::decode(RECORD_VERSION, "pair record", b)
    }
}

pub fn primary_snapshot(id: PairId) -> String {
    format!("pair-{id}-primary")
}

pub fn secondary_snapshot(id: PairId) -> String {
    format!("pair-{id}-secondary")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair id is stored as the bare integer it was before it had its own type: postcard
    /// writes each field in order, integers as varints (300 = `AC 02`), strings length first.
    #[test]
    fn pair_record_id_encodes_as_a_bare_varint() {
        let r = PairRecord {
            id: PairId(300),
            name: "s".into(),
            primary_id: 1,
            secondary_id: 2,
            state: PairState::Pair,
            reason: None,
            pace_bytes_per_second: None,
            created_ms: 5,
            split_ms: None,
            missed_extents: Vec::new(),
            closed_cleanly: false,
            needs_full_copy: false,
        };
        let bytes = r.encode();
        let expected = [
            RECORD_VERSION,
            0xAC,
            0x02,
            1,
            b's',
            1,
            2,
            1,
            0,
            0,
            5,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(PairRecord::decode(&bytes).unwrap(), r);
        assert_eq!(primary_snapshot(r.id), "pair-300-primary");
    }
}
