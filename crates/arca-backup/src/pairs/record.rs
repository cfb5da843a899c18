//! A pair's record: its state and what survives a restart, stored in the `pairs` table, and
//! the names of its change-tracking snapshots.

use serde::{Deserialize, Serialize};

pub const PAIRS: &str = "pairs";
const RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    Copy,
    Pair,
    Split,
    Resync,
    ReverseResync,
    Error,
}

impl PairState {
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::Copy => "copy",
            PairState::Pair => "pair",
            PairState::Split => "split",
            PairState::Resync => "resync",
            PairState::ReverseResync => "reverse-resync",
            PairState::Error => "error",
        }
    }

    /// Whether primary writes are applied to the secondary.
    pub(super) fn mirrors(self) -> bool {
        matches!(self, PairState::Copy | PairState::Pair | PairState::Resync)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: u64,
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
        let mut out = vec![RECORD_VERSION];
        out.extend(postcard::to_stdvec(self).expect("records serialize"));
        out
    }

    pub(super) fn decode(b: &[u8]) -> std::result::Result<PairRecord, String> {
        match b.split_first() {
            Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
            Some((v, _)) => Err(format!("pair record version {v} is not supported")),
            None => Err("empty pair record".into()),
        }
    }
}

pub fn primary_snapshot(id: u64) -> String {
    format!("pair-{id}-primary")
}

pub fn secondary_snapshot(id: u64) -> String {
    format!("pair-{id}-secondary")
}
