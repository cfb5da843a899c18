//! The copy calendar's steps, and how both prunes explain themselves.
//!
//! - copy: the policy's complete backups on the array that have no copy in its vault go
//!   there in one `vault-copy` job (oldest first, each incremental from the base that job
//!   picks). Not copied again: a backup older than the newest of its volume already there,
//!   and one whose copy there was removed (a vault prune's decision stands).
//! - vault prune: the vault keep rules over the policy's copies in its vault (whether or not
//!   the array still holds the image), per volume, independent of the array's keep rules.
//!   A copy goes as `backup delete` removes one: manifest, then copy entry and
//!   `vault_copy_forgotten`; a backup left with no image and no copy is deleted. Held, locked
//!   and kept-until backups are kept, and a copy a job reads is kept and named.
//! - the safety rule of the array prune: a backup still to copy is not given up while the
//!   vault cannot be reached, or while the policy's last copy attempt failed (the next
//!   copy copies it); the prune says which and why. Otherwise the keep rules apply alone: a
//!   backup pruned between two copy slots was never to be copied.

use std::collections::{BTreeMap, BTreeSet};

use arca_store::ErrorKind;

use super::record::{HISTORY_MAX, PolicyRecord, Step, StepOutcome};
use super::run::{StepError, job_failed, step_failed, step_ok};
use super::{Policies, store};
use crate::catalog;
use crate::ids::BackupId;
use crate::jobs::{JobContext, JobResult, JobState};
use crate::record::{BackupRecord, Event, Status};
use crate::retention::{self, Candidate, Decision, Reason};

type StepResult = std::result::Result<StepOutcome, StepError>;

/// What a prune step decided, for its one-line summary: removed ids, kept ones counted per
/// rule, and those kept for a protection or a safety rule named with it.
#[derive(Default)]
pub(super) struct Tally {
    pub removed: Vec<BackupId>,
    pub kept: usize,
    by_rule: BTreeMap<&'static str, usize>,
    /// Kept by a protection (hold, lock, keep-until) and nothing else, or refused as busy.
    named: Vec<String>,
    /// Kept because not yet copied to the vault, and why.
    pending: Vec<BackupId>,
    pending_why: String,
}

fn rule_name(r: &Reason) -> &'static str {
    match r {
        Reason::Last { .. } => "keep-last",
        Reason::Hourly(_) => "keep-hourly",
        Reason::Daily(_) => "keep-daily",
        Reason::Weekly(_) => "keep-weekly",
        Reason::Monthly(_) => "keep-monthly",
        Reason::Yearly(_) => "keep-yearly",
        Reason::NewestVerified => "newest verified",
        Reason::Hold => "hold",
        Reason::KeepUntil(_) => "keep-until",
        Reason::LockUntil(_) => "lock-until",
    }
}

/// The ids, ascending (oldest first).
fn ids_text(ids: &[BackupId]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Tally {
    /// A backup the plan keeps, with its reasons.
    pub fn keep(&mut self, id: BackupId, d: &Decision) {
        self.kept += 1;
        let protected = d.reasons.iter().all(|r| {
            matches!(
                r,
                Reason::Hold | Reason::KeepUntil(_) | Reason::LockUntil(_)
            )
        });
        if protected {
            let why: Vec<String> = d.reasons.iter().map(Reason::describe).collect();
            self.named.push(format!("{id} ({})", why.join(", ")));
        }
        for r in &d.reasons {
            *self.by_rule.entry(rule_name(r)).or_default() += 1;
        }
    }

    /// A removal the backup layer refused as busy (a job reads it): kept, named.
    pub fn busy(&mut self, id: BackupId, e: &arca_store::Error) {
        self.kept += 1;
        self.named.push(format!("{id} (busy: {e})"));
    }

    /// A backup kept because it is still to be copied to the vault.
    pub fn pending(&mut self, id: BackupId, why: &str) {
        self.kept += 1;
        self.pending.push(id);
        why.clone_into(&mut self.pending_why);
    }

    /// `removed N (ids), kept K: keep-last 6, keep-daily 7; kept ...: ids`.
    pub fn summary(&self, what: &str) -> String {
        let mut s = format!("{what}removed {}", self.removed.len());
        if !self.removed.is_empty() {
            s += &format!(" ({})", ids_text(&self.removed));
        }
        s += &format!(", kept {}", self.kept);
        if !self.by_rule.is_empty() {
            let rules: Vec<String> = self
                .by_rule
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            s += &format!(" ({})", rules.join(", "));
        }
        if !self.named.is_empty() {
            s += &format!("; kept for a protection: {}", self.named.join("; "));
        }
        if !self.pending.is_empty() {
            s += &format!(
                "; kept {} not yet copied ({}): {}",
                self.pending.len(),
                self.pending_why,
                ids_text(&self.pending)
            );
        }
        s
    }
}

/// Plans a prune per volume: each record with the planner's decision.
pub(super) fn plan_by_volume<'a>(
    records: &'a [BackupRecord],
    policy: &retention::Policy,
    now_ms: u64,
) -> std::result::Result<Vec<(&'a BackupRecord, Decision)>, StepError> {
    let mut by_volume: BTreeMap<u64, Vec<&BackupRecord>> = BTreeMap::new();
    for r in records {
        by_volume.entry(r.source.volume_id).or_default().push(r);
    }
    let mut out = Vec::new();
    for group in by_volume.values() {
        let candidates: Vec<Candidate> =
            group.iter().map(|r| crate::expire::candidate(r)).collect();
        let decisions =
            retention::plan(&candidates, policy, now_ms / 1000).map_err(StepError::Failed)?;
        out.extend(group.iter().copied().zip(decisions));
    }
    Ok(out)
}

/// Whether `r`'s copy in `vault` was removed once (history).
fn copy_was_removed(r: &BackupRecord, vault: &str) -> bool {
    r.history
        .iter()
        .any(|h| matches!(&h.event, Event::VaultCopyForgotten { vault: v } if v == vault))
}

/// The array prune's view of what is still to be copied (the safety rule).
pub(super) struct Pending {
    vault: String,
    ids: BTreeSet<BackupId>,
    /// Why those are kept now (`None`: not asked yet; `Some(None)`: copies flow, no reason).
    why: Option<Option<String>>,
}

impl Pending {
    /// Why `id` must stay on the array now, or `None`; the vault is probed on the first ask.
    pub fn reason(&mut self, p: &Policies, name: &str, id: BackupId) -> Option<String> {
        if !self.ids.contains(&id) {
            return None;
        }
        let vault = &self.vault;
        self.why
            .get_or_insert_with(|| {
                if let Err(e) = p.backups.probe_vault(vault) {
                    return Some(format!("vault {vault} cannot be reached: {e}"));
                }
                // The newest run that tried to copy (manual runs too).
                let runs = store::history(&p.pool, name, HISTORY_MAX).unwrap_or_default();
                runs.iter()
                    .find_map(|run| {
                        run.steps
                            .iter()
                            .find(|s| s.step == Step::Copy)
                            .map(|s| (run, s))
                    })
                    .filter(|(_, s)| !s.ok)
                    .map(|(run, s)| {
                        format!(
                            "the last copy to vault {vault}, at {} (run {}), failed: {}",
                            crate::time::format_ms(run.started_ms),
                            run.seq,
                            s.summary
                        )
                    })
            })
            .clone()
    }
}

impl Policies {
    /// The policy's complete backups with a copy in `vault` (on the array or not).
    fn own_in_vault(&self, p: &PolicyRecord, vault: &str) -> arca_store::Result<Vec<BackupRecord>> {
        let q = catalog::Query {
            status: Some(Status::Complete),
            in_vault: Some(vault.to_string()),
            limit: catalog::QUERY_LIMIT_MAX,
            ..catalog::Query::default()
        };
        let program = p.program();
        let mut records = catalog::query(&self.pool, &q)?;
        records.retain(|r| r.info.program.as_deref() == Some(program.as_str()));
        Ok(records)
    }

    /// The backups the copy step copies now, oldest first (see the module documentation).
    fn to_copy(&self, p: &PolicyRecord, vault: &str) -> arca_store::Result<Vec<BackupId>> {
        let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
        for r in self.own_in_vault(p, vault)? {
            let g = newest.entry(r.source.volume_id).or_default();
            *g = (*g).max(r.generation);
        }
        let mut ids: Vec<BackupId> = self
            .own_backups(p)?
            .into_iter()
            .filter(|r| {
                !r.vault_copies.iter().any(|c| c.vault == vault)
                    && newest
                        .get(&r.source.volume_id)
                        .is_none_or(|g| r.generation > *g)
                    && !copy_was_removed(r, vault)
            })
            .map(|r| r.id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// What the array prune keeps for the copy step (nothing without one).
    pub(super) fn pending_copies(&self, p: &PolicyRecord) -> arca_store::Result<Option<Pending>> {
        let Some(vault) = &p.copy_to else {
            return Ok(None);
        };
        Ok(Some(Pending {
            vault: vault.clone(),
            ids: self.to_copy(p, vault)?.into_iter().collect(),
            why: None,
        }))
    }

    pub(super) fn step_copy(&self, p: &PolicyRecord, ctx: &JobContext) -> StepResult {
        let Some(vault) = p.copy_to.as_deref() else {
            return Err(StepError::Failed(
                "the policy has no vault to copy to".into(),
            ));
        };
        // An open directory vault whose directory went would be written afresh: ask first.
        if let Err(e) = self.backups.probe_vault(vault) {
            return Ok(step_failed(
                Step::Copy,
                format!("vault {vault} cannot be reached: {e}"),
                Vec::new(),
            ));
        }
        let ids = self.to_copy(p, vault)?;
        if ids.is_empty() {
            return Ok(step_ok(
                Step::Copy,
                format!("nothing new to copy to vault {vault}"),
                Vec::new(),
            ));
        }
        let job_id = self.backups.copy_to_vault(&ids, vault)?;
        let snap = self.wait_job(job_id, ctx)?;
        let mut outcome = match (snap.state, snap.result) {
            (JobState::Succeeded, Some(JobResult::CopiedToVault(done))) => {
                let copies = done.copies;
                let sum = |f: fn(&crate::vault_copy::VaultCopied) -> u64| {
                    copies.iter().map(f).sum::<u64>()
                };
                let incremental = copies.iter().filter(|c| c.base.is_some()).count();
                step_ok(
                    Step::Copy,
                    format!(
                        "copied {} backup(s) to vault {vault} ({incremental} incremental): {} \
                         bytes read, {} new, {} stored",
                        copies.len(),
                        sum(|c| c.bytes_read),
                        sum(|c| c.bytes_new),
                        sum(|c| c.bytes_stored)
                    ),
                    copies.iter().map(|c| c.backup).collect(),
                )
            }
            (JobState::Cancelled, _) => return Err(StepError::Cancelled),
            (state, _) => job_failed(Step::Copy, "vault copy", job_id, state, snap.error, vec![]),
        };
        outcome.job = Some(job_id);
        Ok(outcome)
    }

    pub(super) fn step_vault_prune(&self, p: &PolicyRecord) -> StepResult {
        let Some(vault) = p.copy_to.as_deref() else {
            return Err(StepError::Failed("the policy has no vault to prune".into()));
        };
        let records = self.own_in_vault(p, vault)?;
        let mut tally = Tally::default();
        for (r, d) in plan_by_volume(&records, &p.vault_keep.vault_retention(), self.now_ms())? {
            if d.keep {
                tally.keep(r.id, &d);
                continue;
            }
            match self.backups.delete_vault_copy(r.id, vault) {
                Ok(_) => tally.removed.push(r.id),
                Err(e) if e.kind() == ErrorKind::Busy => tally.busy(r.id, &e),
                Err(e) => {
                    return Ok(step_failed(
                        Step::VaultPrune,
                        format!("{}deleting the copy of {}: {e}", tally.summary(""), r.id),
                        tally.removed,
                    ));
                }
            }
        }
        let summary = tally.summary(&format!("vault {vault}: copies "));
        Ok(step_ok(Step::VaultPrune, summary, tally.removed))
    }
}
