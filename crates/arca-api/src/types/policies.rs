//! Backup policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::*;

// ---- Backup policies -----------------------------------------------------------------------
//
// A policy takes snapshot backups of the volumes its patterns match on a calendar, prunes its
// own backups by its keep rules after each, and verifies them on a calendar of their own.
// Calendars are systemd calendar events read in the policy's time zone (README, "Backup
// policies").

/// Keep rules of a policy's prune (as `POST /v1/volumes/{name}/backups/prune` takes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyKeep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
}

/// `POST /v1/policies`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    /// 1 to 64 letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Volume name patterns (`*` any run of characters, `?` one), matched at each run.
    pub volumes: Vec<String>,
    /// Back the matched volumes up as one backup set, at one instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
    /// Calendar of the snapshot backups (each followed by the prune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<PolicyKeep>,
    /// Calendar of the rolling verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// Bytes of images one verification reads at most (at least one backup is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub verify_budget: Option<u64>,
    /// The backups' label; the policy's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Key/value pairs recorded with every backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    /// IANA time zone of the calendars; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Created paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// The registered vault the copy step copies the policy's backups to (with `copy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<String>,
    /// Calendar of the copy to the vault (each followed by the vault prune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// Keep rules of the policy's copies in the vault, independent of `keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_keep: Option<PolicyKeep>,
}

/// `PATCH /v1/policies/{name}`: the fields given change, the others stay. A calendar of
/// `"none"` removes it; `keep` replaces every keep rule; a `verify_budget` of 0 removes it;
/// a `copy` or `copy_to` of `"none"` removes the copy step (vault, calendar, vault keep
/// rules); `vault_keep` replaces every vault keep rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<PolicyKeep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_budget: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Another vault; `"none"` removes the copy step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<String>,
    /// Another copy calendar; `"none"` removes the copy step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// Replaces every vault keep rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_keep: Option<PolicyKeep>,
}

/// One calendar of a policy and where the scheduler stands with it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicySchedule {
    pub track: PolicyTrack,
    pub calendar: String,
    /// The steps each slot runs, in order.
    pub steps: Vec<PolicyStep>,
    /// The next slot (null: the calendar has no more, or the policy is paused).
    #[schema(format = DateTime)]
    pub next: Option<String>,
    #[schema(format = DateTime)]
    pub last_run: Option<String>,
    #[schema(format = DateTime)]
    pub last_success: Option<String>,
    pub last_result: Option<PolicyRunResult>,
    /// Why the last run failed, was skipped or interrupted.
    pub last_reason: Option<String>,
}

/// The run in progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRunning {
    pub run: u64,
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
}

/// A backup policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    pub name: String,
    pub volumes: Vec<String>,
    pub set: bool,
    pub snapshot: Option<String>,
    pub keep: PolicyKeep,
    pub verify: Option<String>,
    pub verify_budget: Option<u64>,
    /// The vault the copy step copies to.
    pub copy_to: Option<String>,
    /// Calendar of the copy step.
    pub copy: Option<String>,
    /// Keep rules of its copies in the vault.
    pub vault_keep: PolicyKeep,
    /// The label its backups get.
    pub label: String,
    /// What its backups record as program (`arca-policy/NAME`): its prune's own backups.
    pub program: String,
    pub meta: BTreeMap<String, String>,
    pub tz: String,
    pub paused: bool,
    #[schema(format = DateTime)]
    pub created: String,
    #[schema(format = DateTime)]
    pub updated: String,
    /// The volumes its patterns match now.
    pub matched_volumes: Vec<String>,
    pub schedules: Vec<PolicySchedule>,
    /// When a run last succeeded.
    #[schema(format = DateTime)]
    pub last_success: Option<String>,
    pub running: Option<PolicyRunning>,
}

/// One run in a policy's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRun {
    /// The run's number in the policy's history.
    pub run: u64,
    pub trigger: PolicyTrigger,
    pub tracks: Vec<PolicyTrack>,
    pub planned: Vec<PolicyStep>,
    /// The slot it ran for (the first missed, for a catch-up).
    #[schema(format = DateTime)]
    pub slot: Option<String>,
    /// Further slots a catch-up stands for.
    pub slots_missed: u64,
    #[schema(format = DateTime)]
    pub started: String,
    #[schema(format = DateTime)]
    pub ended: Option<String>,
    pub result: PolicyRunResult,
    pub reason: Option<String>,
    pub steps: Vec<PolicyStepOutcome>,
    #[schema(value_type = Option<u64>)]
    pub job: Option<arca_backup::JobId>,
}

/// `POST /v1/policies/{name}/run`: every step of its calendars, or one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<PolicyStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRunStarted {
    pub policy: String,
    #[schema(value_type = u64)]
    pub job: arca_backup::JobId,
}

/// The next slots of one calendar.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyNextTimes {
    pub track: PolicyTrack,
    pub calendar: String,
    /// In UTC.
    pub times: Vec<String>,
    /// The same instants in the policy's time zone, with their offset.
    pub local: Vec<String>,
}

/// `GET /v1/policies/{name}/next`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyNext {
    pub policy: String,
    pub tz: String,
    pub paused: bool,
    pub schedules: Vec<PolicyNextTimes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyNextQuery {
    /// Slots per calendar, 1 to 1000 (default 5).
    #[param(minimum = 1, maximum = 1000)]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyHistoryQuery {
    /// Runs, newest first, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}
