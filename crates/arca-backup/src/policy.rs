//! Backup policies: the array takes, prunes, copies to a vault and verifies backups on its
//! own schedule.
//!
//! A policy names volumes by pattern, calendars ([`calendar`]) and keep rules; the scheduler
//! ([`Policies::tick`], called by the daemon's scheduler thread with the backups' clock, or by
//! tests with a clock they drive) starts a run when a calendar's slot comes. Runs are jobs
//! (`policy-run`) executing the slot's steps in order (`run.rs`).
//!
//! Rules (each has a test in tests/backup/policies.rs):
//! - no two runs of one policy overlap: a slot coming while a run goes is recorded as
//!   skipped;
//! - slots missed (downtime, a clock moved forward) give one catch-up run per calendar;
//! - a clock moved back reschedules from the new time: no burst, no gap longer than a period;
//! - a failed step fails the run with its reason (history, `show`, metrics), later steps of
//!   that run are not attempted, and the next slot tries again;
//! - a paused policy does nothing: no runs, and `run` is refused saying so;
//! - state and history are in the pool's metadata (`record.rs` has the layout); a run that a
//!   stop or crash interrupted is recorded as interrupted at the next open.
//!
//! Here: the service, its cache of records and state, and the changes users make. Beside it:
//! `record.rs` (records and layout), `store.rs` (reading and writing them), `schedule.rs`
//! (the tick), `run.rs` (runs and their steps).

use std::collections::BTreeMap;
use std::sync::Arc;

use arca_store::{Error, ErrorKind, Pool, Result};
use jiff::tz::TimeZone;
use parking_lot::{Condvar, Mutex};

use crate::backups::{Backups, Clock, busy, invalid};
use crate::ids::JobId;
use crate::record::HostInfo;

pub mod calendar;
mod copy;
pub mod record;
mod run;
mod schedule;
mod store;

pub use calendar::Calendar;
pub use record::{
    Keep, PolicyRecord, PolicyState, RunRecord, RunResult, Step, StepOutcome, Track, Trigger,
};
pub use schedule::Scheduler;

/// What a create or update gives. For an update, `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    pub volumes: Option<Vec<String>>,
    pub set: Option<bool>,
    /// A calendar; `Some(None)` removes it (update).
    pub snapshot: Option<Option<String>>,
    /// Replaces every keep rule when given.
    pub keep: Option<Keep>,
    pub verify: Option<Option<String>>,
    pub verify_budget_bytes: Option<Option<u64>>,
    pub label: Option<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub tz: Option<String>,
    pub paused: Option<bool>,
    /// The vault of the copy step; `Some(None)` (or `none`) removes the copy step whole.
    pub copy_to: Option<Option<String>>,
    /// The copy step's calendar; `Some(None)` (or `none`) removes the copy step whole.
    pub copy: Option<Option<String>>,
    /// Replaces every vault keep rule when given.
    pub vault_keep: Option<Keep>,
}

/// A policy with what the scheduler derived from it.
pub(crate) struct Entry {
    pub record: PolicyRecord,
    pub state: PolicyState,
    pub tz: TimeZone,
    pub calendars: Vec<(Track, Calendar)>,
}

impl Entry {
    fn new(record: PolicyRecord, state: PolicyState) -> Result<Entry> {
        let (tz, calendars) = derive(&record).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("policy {}: stored settings unusable: {e}", record.name),
            )
        })?;
        Ok(Entry {
            record,
            state,
            tz,
            calendars,
        })
    }
}

/// The time zone and parsed calendars of a record (checked when it was set).
fn derive(r: &PolicyRecord) -> std::result::Result<(TimeZone, Vec<(Track, Calendar)>), String> {
    let tz = calendar::time_zone(&r.tz)?;
    let mut cals = Vec::new();
    for &t in Track::ALL {
        if let Some(c) = r.calendar(t) {
            cals.push((t, Calendar::parse(c)?));
        }
    }
    Ok((tz, cals))
}

/// Runs in progress: by policy name, the run's sequence number and its job.
#[derive(Default)]
pub(crate) struct Running {
    pub by_policy: BTreeMap<String, (u64, Option<JobId>)>,
}

/// Called before each step of each run, with the policy and the step: lets tests hold a run
/// at a known point (to have the next slot come while it goes).
pub type StepHook = Arc<dyn Fn(&str, Step) + Send + Sync>;

pub struct Policies {
    pub(crate) pool: Pool,
    pub(crate) backups: Arc<Backups>,
    pub(crate) clock: Clock,
    /// Every policy, as stored. Changes are committed under this lock, then applied here.
    pub(crate) entries: Mutex<BTreeMap<String, Entry>>,
    pub(crate) running: Mutex<Running>,
    pub(crate) idle: Condvar,
    /// Runs by (policy, result) since the daemon started, for the metrics.
    pub(crate) counters: Mutex<BTreeMap<(String, RunResult), u64>>,
    pub(crate) before_step: Mutex<Option<StepHook>>,
    /// The clock at the previous tick: a later tick seeing an earlier time knows it was moved
    /// back.
    pub(crate) last_tick_ms: Mutex<Option<u64>>,
}

impl Policies {
    /// Loads the policies; runs a stop or crash interrupted are recorded as interrupted.
    /// Uses the backups' clock.
    pub fn open(backups: Arc<Backups>) -> Result<Arc<Policies>> {
        let pool = backups.pool().clone();
        let clock = backups.clock.clone();
        let p = Arc::new(Policies {
            pool,
            backups,
            clock,
            entries: Mutex::new(BTreeMap::new()),
            running: Mutex::new(Running::default()),
            idle: Condvar::new(),
            counters: Mutex::new(BTreeMap::new()),
            before_step: Mutex::new(None),
            last_tick_ms: Mutex::new(None),
        });
        let loaded = store::load_all(&p.pool)?;
        let now = p.now_ms();
        let mut entries = p.entries.lock();
        for (record, mut state) in loaded {
            if let Some(start) = state.running.take() {
                let run = start.ended(
                    now,
                    RunResult::Interrupted,
                    Some("interrupted: the array stopped during the run".into()),
                    Vec::new(),
                    None,
                );
                schedule::note_result(&mut state, &run);
                store::save_state(&p.pool, &record.name, &state, Some(&run))?;
                p.count(&record.name, RunResult::Interrupted);
            }
            let name = record.name.clone();
            entries.insert(name, Entry::new(record, state)?);
        }
        drop(entries);
        Ok(p)
    }

    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// See [`StepHook`].
    pub fn set_step_hook(&self, hook: Option<StepHook>) {
        *self.before_step.lock() = hook;
    }

    pub fn list(&self) -> Vec<(PolicyRecord, PolicyState)> {
        self.entries
            .lock()
            .values()
            .map(|e| (e.record.clone(), e.state.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<(PolicyRecord, PolicyState)> {
        let entries = self.entries.lock();
        let e = entries.get(name).ok_or_else(|| not_found(name))?;
        Ok((e.record.clone(), e.state.clone()))
    }

    /// The run in progress of a policy: its sequence number and job.
    pub fn running(&self, name: &str) -> Option<(u64, Option<JobId>)> {
        self.running.lock().by_policy.get(name).copied()
    }

    pub fn create(&self, name: &str, spec: PolicySpec) -> Result<PolicyRecord> {
        record::check_name(name).map_err(invalid)?;
        let now = self.now_ms();
        let mut r = PolicyRecord {
            name: name.to_string(),
            volumes: Vec::new(),
            set: false,
            snapshot: None,
            keep: Keep::default(),
            verify: None,
            verify_budget_bytes: None,
            label: None,
            meta: BTreeMap::new(),
            tz: "UTC".into(),
            paused: false,
            created_ms: now,
            updated_ms: now,
            copy_to: None,
            copy: None,
            vault_keep: Keep::default(),
        };
        apply(&mut r, spec);
        let (tz, calendars) = check(&r)?;
        self.check_vault(&r)?;
        let mut entries = self.entries.lock();
        if entries.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("policy {name} already exists"),
            ));
        }
        let mut state = PolicyState::default();
        schedule_from(&mut state, &tz, &calendars, now, |_| true);
        store::save(&self.pool, &r, &state)?;
        entries.insert(
            name.to_string(),
            Entry {
                record: r.clone(),
                state,
                tz,
                calendars,
            },
        );
        Ok(r)
    }

    /// Changes a policy. A calendar or time zone that changes, and every calendar of a policy
    /// resumed, is scheduled afresh from now.
    pub fn update(&self, name: &str, spec: PolicySpec) -> Result<PolicyRecord> {
        let mut entries = self.entries.lock();
        let e = entries.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut r = e.record.clone();
        apply(&mut r, spec);
        r.updated_ms = self.now_ms();
        let (tz, calendars) = check(&r)?;
        if r.copy_to != e.record.copy_to {
            self.check_vault(&r)?;
        }
        let mut state = e.state.clone();
        // Resuming starts from now: the slots that passed while paused are not caught up.
        let resumed = e.record.paused && !r.paused;
        let old = &e.record;
        state.tracks.retain(|t, _| r.calendar(*t).is_some());
        schedule_from(&mut state, &tz, &calendars, r.updated_ms, |t| {
            r.calendar(t) != old.calendar(t) || r.tz != old.tz || resumed
        });
        store::save(&self.pool, &r, &state)?;
        *e = Entry {
            record: r.clone(),
            state,
            tz,
            calendars,
        };
        Ok(r)
    }

    pub fn set_paused(&self, name: &str, paused: bool) -> Result<PolicyRecord> {
        self.update(
            name,
            PolicySpec {
                paused: Some(paused),
                ..PolicySpec::default()
            },
        )
    }

    /// Deletes a policy, its state and its history; its backups stay (as any backup, until
    /// deleted or pruned by hand). Refused while it runs.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut entries = self.entries.lock();
        if !entries.contains_key(name) {
            return Err(not_found(name));
        }
        if let Some((seq, job)) = self.running(name) {
            return Err(busy(format!(
                "policy {name} is running (run {seq}{}); wait for it to end, or cancel it",
                job.map(|j| format!(", job {j}")).unwrap_or_default()
            )));
        }
        store::delete(&self.pool, name)?;
        entries.remove(name);
        self.counters.lock().retain(|(p, _), _| p != name);
        Ok(())
    }

    /// The policy's runs, newest first, at most `limit`.
    pub fn history(&self, name: &str, limit: usize) -> Result<Vec<RunRecord>> {
        if !self.entries.lock().contains_key(name) {
            return Err(not_found(name));
        }
        store::history(&self.pool, name, limit)
    }

    /// The next `count` slots of each calendar of the policy, as the scheduler computes them
    /// (after the clock's now).
    pub fn next_runs(&self, name: &str, count: usize) -> Result<Vec<(Track, Vec<u64>)>> {
        let entries = self.entries.lock();
        let e = entries.get(name).ok_or_else(|| not_found(name))?;
        let now = self.now_ms();
        Ok(e.calendars
            .iter()
            .map(|(t, c)| {
                // The stored next slot first (it may be a catch-up still to run); a paused
                // policy's is stale (resuming schedules from then).
                let stored = (!e.record.paused)
                    .then(|| e.state.tracks.get(t).and_then(|s| s.next_ms))
                    .flatten();
                let mut times = Vec::new();
                let mut from = now;
                if let Some(n) = stored {
                    times.push(n);
                    from = n.max(now);
                }
                times.extend(c.upcoming(&e.tz, from, count.saturating_sub(times.len())));
                times.truncate(count);
                (*t, times)
            })
            .collect())
    }

    /// Runs by policy and result since the daemon started (metrics).
    pub fn run_counts(&self) -> Vec<(String, RunResult, u64)> {
        self.counters
            .lock()
            .iter()
            .map(|((p, r), n)| (p.clone(), *r, *n))
            .collect()
    }

    pub(crate) fn count(&self, name: &str, result: RunResult) {
        *self
            .counters
            .lock()
            .entry((name.to_string(), result))
            .or_default() += 1;
    }

    /// Waits until no run is in progress (tests and the daemon's stop); false on timeout.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut r = self.running.lock();
        while !r.by_policy.is_empty() {
            if self.idle.wait_until(&mut r, deadline).timed_out() {
                return r.by_policy.is_empty();
            }
        }
        true
    }
}

impl Policies {
    /// The vault a policy copies to must be registered (a later removal fails its copies).
    fn check_vault(&self, r: &PolicyRecord) -> Result<()> {
        match &r.copy_to {
            Some(v) => {
                self.backups.vault(v).map(|_| ()).map_err(|e| {
                    invalid(format!("policy {}: cannot copy to vault {v}: {e}", r.name))
                })
            }
            None => Ok(()),
        }
    }
}

/// Sets the next slot of the calendars `which` selects to the first after `now`.
fn schedule_from(
    state: &mut PolicyState,
    tz: &TimeZone,
    calendars: &[(Track, Calendar)],
    now: u64,
    which: impl Fn(Track) -> bool,
) {
    for (t, c) in calendars {
        if which(*t) {
            state.tracks.entry(*t).or_default().next_ms = c.next_after(tz, now);
        }
    }
}

pub(crate) fn not_found(name: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("policy {name} does not exist"))
}

fn apply(r: &mut PolicyRecord, s: PolicySpec) {
    let blank = |c: Option<String>| c.filter(|c| !c.trim().is_empty() && c.trim() != "none");
    if let Some(v) = s.volumes {
        r.volumes = v;
    }
    if let Some(v) = s.set {
        r.set = v;
    }
    if let Some(c) = s.snapshot {
        r.snapshot = blank(c);
    }
    if let Some(k) = s.keep {
        r.keep = k;
    }
    if let Some(c) = s.verify {
        r.verify = blank(c);
    }
    if let Some(b) = s.verify_budget_bytes {
        r.verify_budget_bytes = b;
    }
    if let Some(l) = s.label {
        r.label = Some(l);
    }
    if let Some(m) = s.meta {
        r.meta = m;
    }
    if let Some(t) = s.tz {
        r.tz = t;
    }
    if let Some(p) = s.paused {
        r.paused = p;
    }
    // Removing the vault or the copy calendar removes the copy step whole.
    let copy_to = s.copy_to.map(blank);
    let copy = s.copy.map(blank);
    let removed = matches!(copy_to, Some(None)) || matches!(copy, Some(None));
    if let Some(v) = copy_to {
        r.copy_to = v;
    }
    if let Some(c) = copy {
        r.copy = c;
    }
    if let Some(k) = s.vault_keep {
        r.vault_keep = k;
    }
    if removed {
        r.copy_to = None;
        r.copy = None;
        r.vault_keep = Keep::default();
    }
}

/// Checks a record as a whole; gives what the scheduler derives from it.
fn check(r: &PolicyRecord) -> Result<(TimeZone, Vec<(Track, Calendar)>)> {
    if r.volumes.is_empty() {
        return Err(invalid("a policy needs at least one volume pattern"));
    }
    if r.volumes.len() > record::PATTERNS_MAX {
        return Err(invalid(format!(
            "{} volume patterns; at most {}",
            r.volumes.len(),
            record::PATTERNS_MAX
        )));
    }
    for p in &r.volumes {
        if p.is_empty() || p.len() > 256 || p.chars().any(char::is_control) {
            return Err(invalid(format!(
                "volume pattern {p:?} must be 1 to 256 printable characters"
            )));
        }
    }
    match (&r.copy_to, &r.copy) {
        (Some(_), None) => {
            return Err(invalid(
                "a vault to copy to needs a copy calendar (--copy), or nothing is copied",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "a copy calendar needs the vault to copy to (--copy-to)",
            ));
        }
        (None, None) if r.vault_keep != Keep::default() => {
            return Err(invalid(
                "vault keep rules need a vault to copy to (--copy-to) and a copy calendar",
            ));
        }
        _ => {}
    }
    if r.snapshot.is_none() && r.verify.is_none() && r.copy.is_none() {
        return Err(invalid(
            "a policy needs a snapshot, copy or verify calendar: without one it never runs",
        ));
    }
    if r.verify_budget_bytes == Some(0) {
        return Err(invalid("a verify budget must be above 0 bytes"));
    }
    let info = HostInfo {
        program: Some(r.program()),
        label: Some(r.label()),
        meta: r.meta.clone(),
        ..HostInfo::default()
    };
    info.validate().map_err(invalid)?;
    derive(r).map_err(invalid)
}
