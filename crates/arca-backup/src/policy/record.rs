//! What a policy is (its record), what the scheduler keeps about it (its state), and what
//! each run did (its history), with their stored layout.
//!
//! Layout in the pool's metadata (application tables, values are a version byte followed by
//! postcard):
//! - `policies`: policy name → [`PolicyRecord`] (what the user set);
//! - `policy_state`: policy name → [`PolicyState`] (next and last runs, the run in progress);
//! - `policy_history`: policy name, a 0 byte, run sequence (big-endian u64) → [`RunRecord`];
//!   at most [`HISTORY_MAX`] runs per policy, the oldest dropped first.
//!
//! Extending: a run is made of [`Track`]s (an event calendar and the [`Step`]s it fires, in
//! order). A new kind of work is a new `Track` and new `Step` variants added at the end of
//! their enums (postcard stores the variant index, so older records keep decoding), its
//! settings a new record version (version 2 added copying to a vault and pruning there).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{BackupId, JobId};
use crate::retention;
use crate::stored::{decode, encode};

pub const POLICIES: &str = "policies";
pub const POLICY_STATE: &str = "policy_state";
pub const POLICY_HISTORY: &str = "policy_history";

/// Version 2 added the copy settings (`copy_to`, `copy`, `vault_keep`) at the end.
const RECORD_VERSION: u8 = 2;
const STATE_VERSION: u8 = 1;
const RUN_VERSION: u8 = 1;

/// Runs kept in a policy's history.
pub const HISTORY_MAX: usize = 100;
/// Longest policy name.
pub const POLICY_NAME_MAX: usize = 64;
/// Volume patterns per policy.
pub const PATTERNS_MAX: usize = 32;

// The enums' serde names are the API's; postcard stores variant indexes.

/// A step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = PolicyStep))]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Snapshot backups of the matched volumes (a backup set with `set`).
    Snapshot,
    /// The policy's own backups pruned by its keep rules.
    Prune,
    /// Rolling verification of the policy's backups within the budget.
    Verify,
    /// The policy's backups on the array not yet in its vault copied there.
    Copy,
    /// The policy's copies in its vault pruned by its vault keep rules.
    VaultPrune,
}

crate::wire_names!(Step {
    Snapshot => "snapshot",
    Prune => "prune",
    Verify => "verify",
    Copy => "copy",
    VaultPrune => "vault-prune",
});

impl Step {
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.iter().copied().find(|x| x.as_str() == s)
    }
}

/// A calendar of a policy: `snapshot` (snapshot, then prune) or `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = PolicyTrack))]
#[serde(rename_all = "kebab-case")]
pub enum Track {
    /// `--snapshot CALENDAR`: snapshot, then prune.
    Snapshot,
    /// `--verify CALENDAR`: verify.
    Verify,
    /// `--copy CALENDAR`: copy to the vault, then prune there.
    Copy,
}

// `ALL` is in the order a run does the tracks' steps when several are due together: the copy
// after the snapshot (it copies that snapshot too), verification last.
crate::wire_names!(Track {
    Snapshot => "snapshot",
    Copy => "copy",
    Verify => "verify",
});

impl Track {
    /// The steps a slot of this track runs, in order.
    pub fn steps(self, p: &PolicyRecord) -> Vec<Step> {
        match self {
            Track::Snapshot if p.keep.any() => vec![Step::Snapshot, Step::Prune],
            Track::Snapshot => vec![Step::Snapshot],
            Track::Verify => vec![Step::Verify],
            Track::Copy if p.vault_keep.any() => vec![Step::Copy, Step::VaultPrune],
            Track::Copy => vec![Step::Copy],
        }
    }
}

/// Keep rules of the prune step (as `backup prune` takes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl Keep {
    pub fn any(&self) -> bool {
        self.retention().check().is_ok()
    }

    pub fn retention(&self) -> retention::Policy {
        retention::Policy {
            keep_last: self.last,
            keep_hourly: self.hourly,
            keep_daily: self.daily,
            keep_weekly: self.weekly,
            keep_monthly: self.monthly,
            keep_yearly: self.yearly,
            keep_newest_verified: true,
        }
    }

    /// The rules as the vault prune applies them: the array's verifications say nothing of
    /// a vault copy, so no "newest verified" rule.
    pub fn vault_retention(&self) -> retention::Policy {
        retention::Policy {
            keep_newest_verified: false,
            ..self.retention()
        }
    }
}

/// A policy as the user set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    /// Volume name patterns (`*` any run of characters, `?` one), matched at each run.
    pub volumes: Vec<String>,
    /// Back the matched volumes up as one backup set (one instant).
    pub set: bool,
    pub snapshot: Option<String>,
    pub keep: Keep,
    pub verify: Option<String>,
    /// Bytes of images one verify run reads at most (at least one backup is read).
    pub verify_budget_bytes: Option<u64>,
    /// The backups' label; the policy's name when not set.
    pub label: Option<String>,
    pub meta: BTreeMap<String, String>,
    /// IANA time zone the calendars are read in.
    pub tz: String,
    pub paused: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The registered vault the copy step copies to (set together with `copy`).
    pub copy_to: Option<String>,
    /// The calendar of the copy step.
    pub copy: Option<String>,
    /// Keep rules of the policy's copies in `copy_to`, independent of `keep`.
    pub vault_keep: Keep,
}

impl PolicyRecord {
    pub fn calendar(&self, t: Track) -> Option<&str> {
        match t {
            Track::Snapshot => self.snapshot.as_deref(),
            Track::Verify => self.verify.as_deref(),
            Track::Copy => self.copy.as_deref(),
        }
    }

    /// What its backups record as `program`: how its prune knows its own.
    pub fn program(&self) -> String {
        program_of(&self.name)
    }

    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.name.clone())
    }
}

pub fn program_of(name: &str) -> String {
    format!("arca-policy/{name}")
}

/// How a run ended: `skipped` when the policy's previous run was still going at its slot,
/// `interrupted` when the array stopped during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = PolicyRunResult))]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    Succeeded,
    Failed,
    /// Not run: the previous run of the policy was still going.
    Skipped,
    /// The array stopped or crashed during the run.
    Interrupted,
}

crate::wire_names!(RunResult {
    Succeeded => "succeeded",
    Failed => "failed",
    Skipped => "skipped",
    Interrupted => "interrupted",
});

/// Why a run started: its slot, a catch-up of slots missed (one run for all), or by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = PolicyTrigger))]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its slot came.
    Schedule,
    /// Slots passed while the array was down or the clock jumped: one run for all of them.
    CatchUp,
    /// `policy run`.
    Manual,
}

crate::wire_names!(Trigger {
    Schedule => "schedule",
    CatchUp => "catch-up",
    Manual => "manual",
});

/// What one step of a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = PolicyStepOutcome))]
pub struct StepOutcome {
    pub step: Step,
    pub ok: bool,
    /// What was done, or why it failed.
    pub summary: String,
    /// Backups the step made, removed or verified.
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<u64>))]
    pub backups: Vec<BackupId>,
    // The job the step started and waited for (verification).
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub job: Option<JobId>,
}

/// One run in a policy's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub seq: u64,
    pub trigger: Trigger,
    /// The calendars whose slots the run is for (none for a manual run).
    pub tracks: Vec<Track>,
    /// The steps it was to run, in order.
    pub planned: Vec<Step>,
    /// The slot the run is for (the first one missed, for a catch-up).
    pub slot_ms: Option<u64>,
    /// Slots a catch-up run stands for.
    pub slots_missed: u64,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub result: RunResult,
    /// Why it failed, was skipped or interrupted.
    pub reason: Option<String>,
    pub steps: Vec<StepOutcome>,
    pub job: Option<JobId>,
}

/// The scheduler's view of one track.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackState {
    /// When its next slot is due; `None` until first scheduled.
    pub next_ms: Option<u64>,
    pub last_run_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
    pub last_result: Option<RunResult>,
    pub last_reason: Option<String>,
}

/// A run in progress, stored when it starts: found at open, it was interrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    pub seq: u64,
    pub trigger: Trigger,
    pub tracks: Vec<Track>,
    pub planned: Vec<Step>,
    pub slot_ms: Option<u64>,
    pub slots_missed: u64,
    pub started_ms: u64,
}

impl RunStart {
    /// Its history entry once it ended.
    pub fn ended(
        &self,
        ended_ms: u64,
        result: RunResult,
        reason: Option<String>,
        steps: Vec<StepOutcome>,
        job: Option<JobId>,
    ) -> RunRecord {
        RunRecord {
            seq: self.seq,
            trigger: self.trigger,
            tracks: self.tracks.clone(),
            planned: self.planned.clone(),
            slot_ms: self.slot_ms,
            slots_missed: self.slots_missed,
            started_ms: self.started_ms,
            ended_ms: Some(ended_ms),
            result,
            reason,
            steps,
            job,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub tracks: BTreeMap<Track, TrackState>,
    /// The sequence number the next run gets.
    pub next_seq: u64,
    pub running: Option<RunStart>,
    pub last_success_ms: Option<u64>,
}

impl PolicyRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode(RECORD_VERSION, self)
    }
    pub fn decode(b: &[u8]) -> Result<PolicyRecord, String> {
        match b.first() {
            // Version 1 is version 2 without its last fields: postcard reads the bytes of
            // "none" (two absent calendars, six absent keep rules) appended to it as such.
            Some(1) => decode(1, "policy record", &[b, &[0u8; 8]].concat()),
            _ => decode(RECORD_VERSION, "policy record", b),
        }
    }
}

impl PolicyState {
    pub fn encode(&self) -> Vec<u8> {
        encode(STATE_VERSION, self)
    }
    pub fn decode(b: &[u8]) -> Result<PolicyState, String> {
        decode(STATE_VERSION, "policy state", b)
    }
}

impl RunRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode(RUN_VERSION, self)
    }
    pub fn decode(b: &[u8]) -> Result<RunRecord, String> {
        decode(RUN_VERSION, "policy run record", b)
    }
}

/// The history key of run `seq` of `name`.
pub fn history_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend(seq.to_be_bytes());
    k
}

/// Checks a policy name: 1 to 64 of letters, digits, `.`, `_` and `-`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= POLICY_NAME_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?} must be 1 to {POLICY_NAME_MAX} letters, digits, '.', '_' or \
             '-', not starting with '.'"
        ))
    }
}

/// Whether `name` matches `pattern` (`*` any run of characters, `?` any one).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard match with one backtrack point (the last `*`).
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_shell_globs() {
        assert!(matches("db-*", "db-1"));
        assert!(matches("*", "anything"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*-data-*", "x-data-y"));
        assert!(!matches("db-*", "web-1"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
    }

    #[test]
    fn records_round_trip_and_refuse_other_versions() {
        let s = PolicyState {
            next_seq: 7,
            ..Default::default()
        };
        let b = s.encode();
        assert_eq!(PolicyState::decode(&b).unwrap(), s);
        let mut other = b.clone();
        other[0] = 99;
        assert!(
            PolicyState::decode(&other)
                .unwrap_err()
                .contains("version 99")
        );
        assert!(PolicyState::decode(&[]).is_err());
    }

    #[test]
    fn a_version_1_policy_record_reads_as_one_without_copy_settings() {
        let r = PolicyRecord {
            name: "p".into(),
            volumes: vec!["db-*".into()],
            set: true,
            snapshot: Some("hourly".into()),
            keep: Keep {
                last: Some(3),
                ..Keep::default()
            },
            verify: None,
            verify_budget_bytes: Some(7),
            label: None,
            meta: BTreeMap::from([("k".into(), "v".into())]),
            tz: "UTC".into(),
            paused: false,
            created_ms: 1,
            updated_ms: 2,
            copy_to: None,
            copy: None,
            vault_keep: Keep::default(),
        };
        // What version 1 wrote: the same fields without the last eight bytes.
        let b = r.encode();
        let mut v1 = b[..b.len() - 8].to_vec();
        v1[0] = 1;
        assert_eq!(PolicyRecord::decode(&v1).unwrap(), r);
        let with_copy = PolicyRecord {
            copy_to: Some("off".into()),
            copy: Some("daily".into()),
            vault_keep: Keep {
                daily: Some(7),
                ..Keep::default()
            },
            ..r
        };
        assert_eq!(
            PolicyRecord::decode(&with_copy.encode()).unwrap(),
            with_copy
        );
    }

    #[test]
    fn history_keys_sort_by_sequence_within_a_policy() {
        assert!(history_key("a", 2) < history_key("a", 10));
        assert!(history_key("a", u64::MAX) < history_key("a-", 0));
    }
}
