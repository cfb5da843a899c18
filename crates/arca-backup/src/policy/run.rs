//! Runs: a `policy-run` job doing the planned steps in order, then one transaction storing
//! the outcome (history, the tracks' last results) and clearing the run in progress.
//!
//! Steps:
//! - snapshot: snapshot backups of the volumes the patterns match now (a volume created
//!   after the policy is included from its next run; volumes holding a backup are not
//!   matched), one backup set with `set`, labelled and with `program = arca-policy/NAME`;
//! - prune: the retention planner over the policy's own complete backups (by program), per
//!   volume; held, locked and kept-until backups are kept by the plan, and a deletion the
//!   backup layer refuses (one a job reads) is reported, not forced;
//! - verify: the policy's complete backups least recently verified first (never verified
//!   before any), as many as the budget's bytes allow but at least one, through the verify
//!   job.
//! - copy and vault prune: `copy.rs`; the prune keeps what the copy still needs while the
//!   vault is unreachable (`copy.rs` too).
//!
//! A step failing ends the run failed with its reason; later steps are not attempted.

use std::sync::Arc;
use std::time::Duration;

use arca_store::{Error, ErrorKind, Result};

use super::copy::{Tally, plan_by_volume};
use super::record::{
    PolicyRecord, RunRecord, RunResult, RunStart, Step, StepOutcome, Track, Trigger, matches,
};
use super::schedule::note_result;
use super::{Policies, not_found, store};
use crate::backups::busy;
use crate::catalog;
use crate::create::CreateRequest;
use crate::ids::{BackupId, JobId};
use crate::jobs::{JobContext, JobError, JobKind, JobResult, JobSnapshot, JobState, PolicyRan};
use crate::record::{BackupRecord, Event, HostInfo, Method, Status};

/// How long a step waits for its job between looks at its own cancel.
const JOB_WAIT_SLICE: Duration = Duration::from_millis(200);

pub(super) fn step_ok(step: Step, summary: String, backups: Vec<BackupId>) -> StepOutcome {
    StepOutcome {
        step,
        ok: true,
        summary,
        backups,
        job: None,
    }
}

/// A step whose job ended without its result: the job, how it ended and why.
pub(super) fn job_failed(
    step: Step,
    what: &str,
    job: JobId,
    state: JobState,
    error: Option<String>,
    backups: Vec<BackupId>,
) -> StepOutcome {
    let why = error.unwrap_or_default();
    step_failed(
        step,
        format!("{what} job {job} {}: {why}", state.as_str()),
        backups,
    )
}

pub(super) fn step_failed(step: Step, summary: String, backups: Vec<BackupId>) -> StepOutcome {
    StepOutcome {
        step,
        ok: false,
        summary,
        backups,
        job: None,
    }
}

impl Policies {
    /// Runs a policy now, as a job: every step of its calendars, or one step. Refused while
    /// it is paused or already running.
    pub fn run_now(self: &Arc<Self>, name: &str, step: Option<Step>) -> Result<JobId> {
        let mut entries = self.entries.lock();
        let e = entries.get_mut(name).ok_or_else(|| not_found(name))?;
        if e.record.paused {
            return Err(busy(format!(
                "policy {name} is paused; resume it first (it does nothing while paused)"
            )));
        }
        if let Some((seq, job)) = self.running(name) {
            return Err(busy(format!(
                "policy {name} is already running (run {seq}{})",
                job.map(|j| format!(", job {j}")).unwrap_or_default()
            )));
        }
        let planned: Vec<Step> = match step {
            Some(s) => vec![s],
            None => Track::ALL
                .iter()
                .copied()
                .filter(|t| e.record.calendar(*t).is_some())
                .flat_map(|t| t.steps(&e.record))
                .collect(),
        };
        if planned.contains(&Step::Prune) && !e.record.keep.any() {
            return Err(crate::backups::invalid(format!(
                "policy {name} has no keep rule: its prune would remove every backup it made"
            )));
        }
        if planned.contains(&Step::VaultPrune) && !e.record.vault_keep.any() {
            return Err(crate::backups::invalid(format!(
                "policy {name} has no vault keep rule: its vault prune would remove every copy \
                 it made"
            )));
        }
        if planned.contains(&Step::Copy) && e.record.copy_to.is_none() {
            return Err(crate::backups::invalid(format!(
                "policy {name} has no vault to copy to (--copy-to)"
            )));
        }
        let start = RunStart {
            seq: e.state.next_seq,
            trigger: Trigger::Manual,
            tracks: Vec::new(),
            planned,
            slot_ms: None,
            slots_missed: 0,
            started_ms: self.now_ms(),
        };
        let seq = start.seq;
        if !self.begin(e, start)? {
            return Err(busy(format!("policy {name}: run {seq} could not start")));
        }
        Ok(self
            .running(name)
            .and_then(|r| r.1)
            .expect("a run that started has its job"))
    }

    pub(super) fn spawn_run(
        self: &Arc<Self>,
        record: PolicyRecord,
        start: RunStart,
    ) -> std::io::Result<JobId> {
        let me = self.clone();
        let job =
            self.backups
                .jobs()
                .start(JobKind::PolicyRun, &record.name.clone(), move |ctx| {
                    let (steps, cancelled) = me.execute(&record, &start, ctx);
                    let run = me.finish(&record.name, &start, steps, cancelled, ctx.id());
                    match (cancelled, run) {
                        (true, _) => Err(JobError::Cancelled),
                        (false, Ok(run)) if run.result == RunResult::Succeeded => {
                            Ok(Some(JobResult::PolicyRan(PolicyRan {
                                policy: record.name.clone(),
                                run: run.seq,
                                result: run.result,
                            })))
                        }
                        // A failed run fails its job too, with the run's reason.
                        (false, Ok(run)) => Err(JobError::Failed(format!(
                            "policy {} run {} {}: {}",
                            record.name,
                            run.seq,
                            run.result.as_str(),
                            run.reason.unwrap_or_default()
                        ))),
                        (false, Err(e)) => Err(JobError::Failed(e.to_string())),
                    }
                })?;
        Ok(job.id())
    }

    /// Does the planned steps; stops at the first failure or a cancel (true).
    fn execute(
        &self,
        p: &PolicyRecord,
        start: &RunStart,
        ctx: &JobContext,
    ) -> (Vec<StepOutcome>, bool) {
        let mut out = Vec::new();
        for &step in &start.planned {
            if ctx.check().is_err() {
                return (out, true);
            }
            let hook = self.before_step.lock().clone();
            if let Some(h) = hook {
                h(&p.name, step);
            }
            let outcome = match step {
                Step::Snapshot => self.step_snapshot(p),
                Step::Prune => self.step_prune(p),
                Step::Verify => self.step_verify(p, ctx),
                Step::Copy => self.step_copy(p, ctx),
                Step::VaultPrune => self.step_vault_prune(p),
            };
            let outcome = match outcome {
                Ok(o) => o,
                Err(StepError::Cancelled) => return (out, true),
                Err(StepError::Failed(e)) => step_failed(step, e, Vec::new()),
            };
            let ok = outcome.ok;
            out.push(outcome);
            if !ok {
                break;
            }
        }
        (out, false)
    }

    /// Stores how the run ended and clears it.
    fn finish(
        &self,
        name: &str,
        start: &RunStart,
        steps: Vec<StepOutcome>,
        cancelled: bool,
        job: JobId,
    ) -> Result<RunRecord> {
        let failed = steps.iter().find(|s| !s.ok);
        let (result, reason) = match (cancelled, failed) {
            (true, _) => (RunResult::Failed, Some("cancelled".to_string())),
            (false, Some(s)) => (
                RunResult::Failed,
                Some(format!("{} failed: {}", s.step.as_str(), s.summary)),
            ),
            (false, None) => (RunResult::Succeeded, None),
        };
        let run = start.ended(self.now_ms(), result, reason, steps, Some(job));
        let stored = {
            let mut entries = self.entries.lock();
            match entries.get_mut(name) {
                Some(e) => {
                    e.state.running = None;
                    note_result(&mut e.state, &run);
                    store::save_state(&self.pool, name, &e.state, Some(&run))
                }
                // Deletion is refused while a run goes: nothing to record to.
                None => Ok(()),
            }
        };
        self.count(name, result);
        self.running.lock().by_policy.remove(name);
        self.idle.notify_all();
        stored.map(|()| run)
    }

    /// The volumes the policy's patterns match now, by name; never a backup's destination.
    pub fn matched_volumes(&self, p: &PolicyRecord) -> Vec<String> {
        let mut names: Vec<String> = self
            .pool
            .volumes()
            .into_iter()
            .filter(|v| {
                let holds_backup = v
                    .tag
                    .as_deref()
                    .is_some_and(|t| BackupRecord::decode(t).is_ok());
                !holds_backup && p.volumes.iter().any(|pat| matches(pat, &v.name))
            })
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    }

    fn step_snapshot(&self, p: &PolicyRecord) -> std::result::Result<StepOutcome, StepError> {
        let volumes = self.matched_volumes(p);
        if volumes.is_empty() {
            return Ok(step_failed(
                Step::Snapshot,
                format!("no volume matches {}", p.volumes.join(", ")),
                Vec::new(),
            ));
        }
        let info = HostInfo {
            program: Some(p.program()),
            label: Some(p.label()),
            meta: p.meta.clone(),
            ..HostInfo::default()
        };
        let request = |volumes: Vec<String>| CreateRequest {
            volumes,
            to: None,
            method: Some(Method::Snapshot),
            info: info.clone(),
            retention: Default::default(),
        };
        if p.set {
            let n = volumes.len();
            return Ok(match self.backups.create(request(volumes)) {
                Ok(c) => {
                    let ids: Vec<BackupId> = c.records.iter().map(|r| r.id).collect();
                    let set = c.records.first().and_then(|r| r.set_id);
                    let what = set.map(|s| format!(" (set {s})")).unwrap_or_default();
                    step_ok(
                        Step::Snapshot,
                        format!("{n} volume(s) backed up{what}"),
                        ids,
                    )
                }
                Err(e) => step_failed(Step::Snapshot, format!("backup set: {e}"), Vec::new()),
            });
        }
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        for v in &volumes {
            match self.backups.create(request(vec![v.clone()])) {
                Ok(c) => ids.extend(c.records.iter().map(|r| r.id)),
                Err(e) => errors.push(format!("{v}: {e}")),
            }
        }
        let summary = format!("{} of {} volume(s) backed up", ids.len(), volumes.len());
        Ok(if errors.is_empty() {
            step_ok(Step::Snapshot, summary, ids)
        } else {
            step_failed(
                Step::Snapshot,
                format!("{summary}; {}", errors.join("; ")),
                ids,
            )
        })
    }

    /// The policy's own complete backups on the array (by the program they record).
    pub(super) fn own_backups(&self, p: &PolicyRecord) -> Result<Vec<BackupRecord>> {
        let q = catalog::Query {
            status: Some(Status::Complete),
            limit: catalog::QUERY_LIMIT_MAX,
            ..catalog::Query::default()
        };
        let program = p.program();
        let mut records = catalog::query(&self.pool, &q)?;
        // Only images on the array: pruning and verifying here act on them (a backup living
        // only in vaults is kept by the vault's own retention).
        records.retain(|r| r.on_array() && r.info.program.as_deref() == Some(program.as_str()));
        Ok(records)
    }

    fn step_prune(&self, p: &PolicyRecord) -> std::result::Result<StepOutcome, StepError> {
        let records = self.own_backups(p)?;
        let mut pending = self.pending_copies(p)?;
        let mut tally = Tally::default();
        for (r, d) in plan_by_volume(&records, &p.keep.retention(), self.now_ms())? {
            if d.keep {
                tally.keep(r.id, &d);
                continue;
            }
            if let Some(why) = pending.as_mut().and_then(|x| x.reason(self, &p.name, r.id)) {
                tally.pending(r.id, &why);
                continue;
            }
            match self
                .backups
                .delete_with(r.id, crate::expire::RETENTION_DELETE)
            {
                Ok(_) => tally.removed.push(r.id),
                Err(e) if e.kind() == ErrorKind::Busy => tally.busy(r.id, &e),
                Err(e) => return Err(StepError::Failed(format!("deleting {}: {e}", r.id))),
            }
        }
        Ok(step_ok(Step::Prune, tally.summary(""), tally.removed))
    }

    /// Waits for a job a step started, cancelling it when the run is cancelled.
    pub(super) fn wait_job(
        &self,
        job_id: JobId,
        ctx: &JobContext,
    ) -> std::result::Result<JobSnapshot, StepError> {
        let job = self
            .backups
            .jobs()
            .get(job_id)
            .ok_or_else(|| StepError::Failed(format!("job {job_id} vanished")))?;
        while !job.wait(JOB_WAIT_SLICE).finished() {
            if ctx.cancel_requested() {
                job.cancel();
            }
        }
        Ok(job.snapshot())
    }

    fn step_verify(
        &self,
        p: &PolicyRecord,
        ctx: &JobContext,
    ) -> std::result::Result<StepOutcome, StepError> {
        let mut records = self.own_backups(p)?;
        if records.is_empty() {
            return Ok(step_ok(
                Step::Verify,
                "no backup to verify".into(),
                Vec::new(),
            ));
        }
        // Least recently verified first; never verified before all, oldest backup first.
        records.sort_by_key(|r| (last_verified_ms(r), r.id));
        let budget = p.verify_budget_bytes.unwrap_or(u64::MAX);
        let mut picked = Vec::new();
        let mut bytes = 0u64;
        for r in &records {
            if !picked.is_empty() && bytes.saturating_add(r.source.size) > budget {
                break;
            }
            bytes = bytes.saturating_add(r.source.size);
            picked.push(r.id);
        }
        let (job_id, ids) = self.backups.verify(&picked, false)?;
        let snap = self.wait_job(job_id, ctx)?;
        let mut outcome = match (snap.state, snap.result) {
            (JobState::Succeeded, Some(JobResult::Verify(list))) => {
                let bad: Vec<String> = list
                    .iter()
                    .filter(|v| !v.ok)
                    .map(|v| match &v.error {
                        Some(e) => format!("{}: {e}", v.backup),
                        None => format!("{}: {} damaged bytes", v.backup, v.damaged_bytes),
                    })
                    .collect();
                let head = format!("verified {} backup(s), {bytes} bytes", list.len());
                if bad.is_empty() {
                    step_ok(Step::Verify, format!("{head}: all good"), ids)
                } else {
                    step_failed(Step::Verify, format!("{head}: {}", bad.join("; ")), ids)
                }
            }
            (JobState::Cancelled, _) => return Err(StepError::Cancelled),
            (state, _) => job_failed(Step::Verify, "verify", job_id, state, snap.error, ids),
        };
        outcome.job = Some(job_id);
        Ok(outcome)
    }
}

/// When a backup was last verified (0: never).
fn last_verified_ms(r: &BackupRecord) -> u64 {
    r.history
        .iter()
        .rev()
        .find(|h| matches!(h.event, Event::Verified { .. }))
        .map_or(0, |h| h.at_ms)
}

pub(super) enum StepError {
    Cancelled,
    Failed(String),
}

impl From<Error> for StepError {
    fn from(e: Error) -> StepError {
        StepError::Failed(e.to_string())
    }
}
