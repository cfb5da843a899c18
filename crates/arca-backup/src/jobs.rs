//! Jobs: long operations run on their own thread, with progress, a rate and an ETA, and
//! cancellation. A job body polls [`JobContext::cancelled`] between steps and must leave
//! nothing half-done that claims to be whole when it stops early.
//!
//! Jobs live in memory: after a restart the list starts empty (operations that must survive
//! a restart record their own state where they keep their data).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::ids::BackupId;
use crate::verify::Verification;

pub use crate::ids::JobId;

/// Finished jobs kept for `job list`/`job show`; older ones are forgotten first.
pub const FINISHED_JOBS_KEPT_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

crate::wire_names!(JobState {
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl JobState {
    pub fn finished(self) -> bool {
        self != JobState::Running
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// A consistency check of the pool; result: a CheckReport.
    PoolCheck,
    /// A copy backup being copied; result: a BackupCopied.
    BackupCopy,
    /// Snapshot backups' digests being computed; result: a Digested.
    BackupDigest,
    /// Backups compared with their digests; result: a list of Verification.
    Verify,
    /// A restore; result: a RestoredNew, or a list of RestoredInPlace.
    Restore,
    /// An in-place restore being undone; result: a RolledBack.
    RestoreRollback,
    /// A pair's initial copy; result: a PairCopied.
    PairCopy,
    /// A pair's resync, primary to secondary; result: a PairCopied.
    PairResync,
    /// A pair's resync, secondary to primary; result: a PairCopied.
    PairReverseResync,
    /// A backup policy's run; result: a PolicyRan.
    PolicyRun,
    /// Backups copied into a vault; result: a CopiedToVault.
    VaultCopy,
}

crate::wire_names!(JobKind {
    PoolCheck => "pool-check",
    BackupCopy => "backup-copy",
    BackupDigest => "backup-digest",
    Verify => "verify",
    Restore => "restore",
    RestoreRollback => "restore-rollback",
    PairCopy => "pair-copy",
    PairResync => "pair-resync",
    PairReverseResync => "pair-reverse-resync",
    PolicyRun => "policy-run",
    VaultCopy => "vault-copy",
});

// The results' doc comments are the API's descriptions of them.

/// The result of a `backup-copy` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupCopied {
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub backup: BackupId,
    pub bytes_copied: u64,
}

/// The result of a `backup-digest` job: the backups digested, and those that could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Digested {
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<u64>))]
    pub digested: Vec<BackupId>,
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<u64>))]
    pub failed: Vec<BackupId>,
}

/// The result of a `restore` job into a new volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoredNew {
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub backup: BackupId,
    pub volume: String,
}

/// One volume of an in-place `restore` job's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoredInPlace {
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub backup: BackupId,
    pub volume: String,
    /// Bytes that differed from the backup and were written.
    pub bytes_rewritten: u64,
}

/// The result of a `restore-rollback` job: the undo points the volumes hold again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<u64>))]
    pub rolled_back_to: Vec<BackupId>,
}

/// The result of a `pair-copy`, `pair-resync` or `pair-reverse-resync` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PairCopied {
    pub pair: String,
    pub bytes_copied: u64,
}

/// The result of a `policy-run` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyRan {
    pub policy: String,
    pub run: u64,
    pub result: crate::policy::RunResult,
}

/// The result of a `vault-copy` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CopiedToVault {
    pub vault: String,
    pub copies: Vec<crate::vault_copy::VaultCopied>,
}

/// What a job produced; which one its kind says. Untagged: each serialises as its own shape,
/// the shapes the API documents. `P` is the pool check's report: the engine's here, the API's
/// own CheckReport there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult<P = arca_store::FsckReport> {
    /// `pool-check`: the report.
    PoolCheck(P),
    /// `verify`: one outcome per backup, in the order asked.
    Verify(Vec<Verification>),
    /// `restore` in place: one entry per volume.
    RestoredInPlace(Vec<RestoredInPlace>),
    RestoredNew(RestoredNew),
    RolledBack(RolledBack),
    BackupCopied(BackupCopied),
    Digested(Digested),
    PairCopied(PairCopied),
    /// The run's place in the policy's history and how it ended.
    PolicyRan(PolicyRan),
    /// What each backup's copy read and wrote, in the order copied.
    CopiedToVault(CopiedToVault),
}

/// Why a job body stopped without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    Cancelled,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for JobError {
    fn from(e: E) -> JobError {
        JobError::Failed(e.to_string())
    }
}

struct Outcome {
    state: JobState,
    error: Option<String>,
    /// What the job produced (for example a check report).
    result: Option<JobResult>,
    finished_unix: Option<u64>,
    finished_at: Option<Instant>,
}

pub struct Job {
    id: JobId,
    kind: JobKind,
    target: String,
    created_unix: u64,
    started_at: Instant,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    cancel: AtomicBool,
    outcome: Mutex<Outcome>,
    done: Condvar,
}

/// A point-in-time view of a job, for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    pub id: JobId,
    pub kind: JobKind,
    pub target: String,
    pub state: JobState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
    pub result: Option<JobResult>,
    pub created_unix: u64,
    pub finished_unix: Option<u64>,
}

/// What a job body sees: progress reporting and the cancel flag.
pub struct JobContext {
    job: Arc<Job>,
    /// Set for work that must finish once begun (undoing what a cancelled job did).
    ignore_cancel: bool,
}

impl JobContext {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job.id
    }

    pub fn set_total(&self, bytes: u64) {
        self.job.bytes_total.store(bytes, Ordering::Relaxed);
    }

    pub fn add_done(&self, bytes: u64) {
        self.job.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn cancelled(&self) -> bool {
        !self.ignore_cancel && self.job.cancel.load(Ordering::Relaxed)
    }

    /// Whether cancel was asked, even on a context that ignores it.
    pub fn cancel_requested(&self) -> bool {
        self.job.cancel.load(Ordering::Relaxed)
    }

    /// The same job, for a step that must run to its end even after cancel was asked (a
    /// rollback): its checks never stop it.
    pub fn uncancellable(&self) -> JobContext {
        JobContext {
            job: self.job.clone(),
            ignore_cancel: true,
        }
    }

    /// Starts the progress over, for a second phase with its own total (a rollback).
    pub fn restart_progress(&self, total: u64) {
        self.job.bytes_done.store(0, Ordering::Relaxed);
        self.job.bytes_total.store(total, Ordering::Relaxed);
    }

    /// `Err(JobError::Cancelled)` once cancel was asked: `ctx.check()?` between steps.
    pub fn check(&self) -> Result<(), JobError> {
        if self.cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }
}

fn now_unix() -> u64 {
    crate::time::now_ms() / 1000
}

impl Job {
    pub fn id(&self) -> JobId {
        self.id
    }

    pub fn snapshot(&self) -> JobSnapshot {
        let o = self.outcome.lock();
        let done = self.bytes_done.load(Ordering::Relaxed);
        let total = self.bytes_total.load(Ordering::Relaxed);
        let end = o.finished_at.unwrap_or_else(Instant::now);
        let secs = end.duration_since(self.started_at).as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (o.state == JobState::Running && rate > 0.0 && total >= done)
            .then(|| (total - done) as f64 / rate);
        JobSnapshot {
            id: self.id,
            kind: self.kind,
            target: self.target.clone(),
            state: o.state,
            bytes_done: done,
            bytes_total: total,
            rate_bytes_per_second: rate,
            eta_seconds: eta,
            error: o.error.clone(),
            result: o.result.clone(),
            created_unix: self.created_unix,
            finished_unix: o.finished_unix,
        }
    }

    /// Asks the job to stop; it does at its next check. False if it had already finished.
    pub fn cancel(&self) -> bool {
        if self.outcome.lock().state.finished() {
            return false;
        }
        self.cancel.store(true, Ordering::Relaxed);
        true
    }

    /// Waits until the job finishes or `timeout` passes; the state then.
    pub fn wait(&self, timeout: Duration) -> JobState {
        let deadline = Instant::now() + timeout;
        let mut o = self.outcome.lock();
        while !o.state.finished() {
            if self.done.wait_until(&mut o, deadline).timed_out() {
                break;
            }
        }
        o.state
    }
}

#[derive(Default)]
pub struct JobManager {
    jobs: Mutex<BTreeMap<JobId, Arc<Job>>>,
    next_id: AtomicU64,
}

impl JobManager {
    pub fn new() -> JobManager {
        JobManager {
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Starts `body` on its own thread. Its `Ok` value becomes the job's result.
    /// Fails only when no thread can be started (the job is then not listed).
    pub fn start<F>(&self, kind: JobKind, target: &str, body: F) -> std::io::Result<Arc<Job>>
    where
        F: FnOnce(&JobContext) -> Result<Option<JobResult>, JobError> + Send + 'static,
    {
        let job = Arc::new(Job {
            id: JobId(self.next_id.fetch_add(1, Ordering::SeqCst)),
            kind,
            target: target.to_string(),
            created_unix: now_unix(),
            started_at: Instant::now(),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
            outcome: Mutex::new(Outcome {
                state: JobState::Running,
                error: None,
                result: None,
                finished_unix: None,
                finished_at: None,
            }),
            done: Condvar::new(),
        });
        self.forget_old();
        self.jobs.lock().insert(job.id, job.clone());
        let ctx = JobContext {
            job: job.clone(),
            ignore_cancel: false,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("job-{}", job.id))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&ctx)));
                let job = &ctx.job;
                let mut o = job.outcome.lock();
                match r {
                    Ok(Ok(result)) => {
                        o.state = JobState::Succeeded;
                        o.result = result;
                    }
                    Ok(Err(JobError::Cancelled)) => o.state = JobState::Cancelled,
                    Ok(Err(JobError::Failed(m))) => {
                        o.state = JobState::Failed;
                        o.error = Some(m);
                    }
                    Err(_) => {
                        // A bug in the job body: report it on the job, keep the daemon up.
                        o.state = JobState::Failed;
                        o.error = Some("internal error: the job panicked".into());
                    }
                }
                o.finished_unix = Some(now_unix());
                o.finished_at = Some(Instant::now());
                tracing::info!(
                    job = %job.id,
                    kind = job.kind.as_str(),
                    state = o.state.as_str(),
                    "job finished"
                );
                job.done.notify_all();
            });
        if let Err(e) = spawned {
            self.jobs.lock().remove(&job.id);
            return Err(e);
        }
        Ok(job)
    }

    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        self.jobs.lock().get(&id).cloned()
    }

    pub fn list(&self) -> Vec<JobSnapshot> {
        let jobs: Vec<Arc<Job>> = self.jobs.lock().values().cloned().collect();
        jobs.iter().map(|j| j.snapshot()).collect()
    }

    fn forget_old(&self) {
        let mut jobs = self.jobs.lock();
        let finished: Vec<JobId> = jobs
            .iter()
            .filter(|(_, j)| j.outcome.lock().state.finished())
            .map(|(id, _)| *id)
            .collect();
        if finished.len() >= FINISHED_JOBS_KEPT_MAX {
            for id in &finished[..finished.len() + 1 - FINISHED_JOBS_KEPT_MAX] {
                jobs.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_reports_progress_result_and_failure() {
        let m = JobManager::new();
        let j = m
            .start(JobKind::BackupCopy, "x", |ctx| {
                ctx.set_total(100);
                ctx.add_done(100);
                Ok(Some(JobResult::BackupCopied(BackupCopied {
                    backup: crate::BackupId(7),
                    bytes_copied: 100,
                })))
            })
            .unwrap();
        assert_eq!(j.wait(Duration::from_secs(10)), JobState::Succeeded);
        let s = j.snapshot();
        assert_eq!((s.bytes_done, s.bytes_total), (100, 100));
        assert_eq!(s.kind, JobKind::BackupCopy);
        let result = serde_json::to_string(&s.result.unwrap()).unwrap();
        assert_eq!(result, r#"{"backup":7,"bytes_copied":100}"#);
        let f = m
            .start(JobKind::Verify, "y", |_| {
                Err(JobError::Failed("disk on fire".into()))
            })
            .unwrap();
        assert_eq!(f.wait(Duration::from_secs(10)), JobState::Failed);
        assert_eq!(f.snapshot().error.as_deref(), Some("disk on fire"));
        assert_eq!(m.list().len(), 2);
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        for k in [
            JobKind::PoolCheck,
            JobKind::BackupCopy,
            JobKind::BackupDigest,
            JobKind::Verify,
            JobKind::Restore,
            JobKind::RestoreRollback,
            JobKind::PairCopy,
            JobKind::PairResync,
            JobKind::PairReverseResync,
            JobKind::VaultCopy,
        ] {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(text, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<JobKind>(&text).unwrap(), k);
        }
    }

    #[test]
    fn cancel_stops_a_job_at_its_next_check() {
        let m = JobManager::new();
        let j = m
            .start(JobKind::Verify, "z", |ctx| {
                ctx.set_total(u64::MAX);
                loop {
                    ctx.check()?;
                    ctx.add_done(1);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .unwrap();
        assert!(j.cancel());
        assert_eq!(j.wait(Duration::from_secs(10)), JobState::Cancelled);
        assert!(!j.cancel(), "a finished job cannot be cancelled");
    }

    #[test]
    fn an_uncancellable_step_runs_to_its_end_after_cancel() {
        let m = JobManager::new();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let j = m
            .start(JobKind::Restore, "u", move |ctx| {
                rx.recv().unwrap();
                assert!(ctx.cancelled());
                let undo = ctx.uncancellable();
                assert!(!undo.cancelled() && undo.cancel_requested());
                undo.check()?;
                undo.restart_progress(10);
                undo.add_done(10);
                ctx.check()?;
                Ok(None)
            })
            .unwrap();
        assert!(j.cancel());
        tx.send(()).unwrap();
        assert_eq!(j.wait(Duration::from_secs(10)), JobState::Cancelled);
        let s = j.snapshot();
        assert_eq!((s.bytes_done, s.bytes_total), (10, 10));
    }
}
