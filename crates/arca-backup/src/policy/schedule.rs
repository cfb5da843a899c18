//! The tick: which calendars' slots have come, and what starts.
//!
//! Each calendar ([`Track`]) of a policy keeps the time of its next slot. At a tick at `now`:
//! - a slot not yet computed (new policy, changed calendar) is computed from now: creating a
//!   policy never runs it at once;
//! - a slot at or before now is due: one run for it, however many slots passed since (a
//!   catch-up after downtime or a clock moved forward), and the next slot is the first after
//!   now;
//! - a clock moved back (now earlier than at the previous tick) reschedules every slot later
//!   than the calendar's first one after now, so no period passes without a run;
//! - the tracks due together run together (one run, their steps in track order); when the
//!   policy's previous run still goes, the run is recorded as skipped instead.
//!
//! A tick costs a comparison per calendar when nothing is due.

use std::sync::Arc;

use arca_store::Result;

use super::record::{PolicyState, RunRecord, RunResult, RunStart, Step, Track, Trigger};
use super::{Entry, Policies, store};

/// Slots counted for a catch-up's record at most (the run is one whatever the count).
const MISSED_COUNT_MAX: u64 = 10_000;

/// What a tick found due for one policy.
struct Due {
    tracks: Vec<Track>,
    slot_ms: u64,
    slots_missed: u64,
}

/// Updates the tracks' last run and result, and the policy's last success, from a run.
pub(super) fn note_result(state: &mut PolicyState, run: &RunRecord) {
    for t in &run.tracks {
        let ts = state.tracks.entry(*t).or_default();
        ts.last_run_ms = Some(run.started_ms);
        ts.last_result = Some(run.result);
        ts.last_reason = run.reason.clone();
        if run.result == RunResult::Succeeded {
            ts.last_success_ms = Some(run.started_ms);
        }
    }
    if run.result == RunResult::Succeeded {
        state.last_success_ms = Some(run.started_ms);
    }
}

/// Advances one policy's calendars to `now`; returns what is due (the state changed when
/// `changed` is set).
fn advance(e: &mut Entry, now: u64, moved_back: bool, changed: &mut bool) -> Option<Due> {
    let mut due: Option<Due> = None;
    for (track, cal) in &e.calendars {
        let ts = e.state.tracks.entry(*track).or_default();
        let next = match ts.next_ms {
            None => {
                ts.next_ms = cal.next_after(&e.tz, now);
                *changed = true;
                continue;
            }
            Some(n) if moved_back => {
                let fresh = cal.next_after(&e.tz, now);
                if fresh.is_some_and(|f| f < n) {
                    ts.next_ms = fresh;
                    *changed = true;
                    continue;
                }
                n
            }
            Some(n) => n,
        };
        if next > now {
            continue;
        }
        // Due: one run for every slot up to now.
        let mut missed = 0;
        let mut at = next;
        while missed < MISSED_COUNT_MAX {
            match cal.next_after(&e.tz, at) {
                Some(t) if t <= now => {
                    missed += 1;
                    at = t;
                }
                _ => break,
            }
        }
        ts.next_ms = cal.next_after(&e.tz, now);
        *changed = true;
        let d = due.get_or_insert(Due {
            tracks: Vec::new(),
            slot_ms: next,
            slots_missed: 0,
        });
        d.tracks.push(*track);
        d.slot_ms = d.slot_ms.min(next);
        d.slots_missed = d.slots_missed.max(missed);
    }
    due
}

impl Policies {
    /// Looks at the clock and starts the runs whose slots have come. Returns how many runs
    /// started (skipped runs not counted).
    pub fn tick(self: &Arc<Self>) -> Result<usize> {
        let now = self.now_ms();
        let moved_back = {
            let mut last = self.last_tick_ms.lock();
            let back = last.is_some_and(|l| now < l);
            *last = Some(now);
            back
        };
        let mut started = 0;
        let mut entries = self.entries.lock();
        let mut failure = None;
        for e in entries.values_mut() {
            if e.record.paused {
                continue;
            }
            let mut changed = false;
            let due = advance(e, now, moved_back, &mut changed);
            let Some(due) = due else {
                if changed
                    && let Err(err) = store::save_state(&self.pool, &e.record.name, &e.state, None)
                {
                    failure.get_or_insert(err);
                }
                continue;
            };
            let trigger = if due.slots_missed > 0 {
                Trigger::CatchUp
            } else {
                Trigger::Schedule
            };
            let planned: Vec<Step> = due.tracks.iter().flat_map(|t| t.steps(&e.record)).collect();
            let start = RunStart {
                seq: e.state.next_seq,
                trigger,
                tracks: due.tracks,
                planned,
                slot_ms: Some(due.slot_ms),
                slots_missed: due.slots_missed,
                started_ms: now,
            };
            match self.begin(e, start) {
                Ok(true) => started += 1,
                Ok(false) => {}
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        match failure {
            // The policies stored fine still run; the error is the daemon's to log.
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// Starts a run for an entry (its state advanced by the caller), or records it as
    /// skipped when the policy's previous run still goes. True when it started.
    pub(super) fn begin(self: &Arc<Self>, e: &mut Entry, start: RunStart) -> Result<bool> {
        let name = e.record.name.clone();
        let mut state = e.state.clone();
        state.next_seq += 1;
        if let Some((seq, job)) = self.running(&name) {
            let reason = format!(
                "run {seq} of the policy was still going{}",
                job.map(|j| format!(" (job {j})")).unwrap_or_default()
            );
            let run = start.ended(
                start.started_ms,
                RunResult::Skipped,
                Some(reason),
                Vec::new(),
                None,
            );
            note_result(&mut state, &run);
            store::save_state(&self.pool, &name, &state, Some(&run))?;
            e.state = state;
            self.count(&name, RunResult::Skipped);
            return Ok(false);
        }
        state.running = Some(start.clone());
        // Stored before the run starts: found at the next open, it was interrupted.
        store::save_state(&self.pool, &name, &state, None)?;
        e.state = state;
        self.running
            .lock()
            .by_policy
            .insert(name.clone(), (start.seq, None));
        match self.spawn_run(e.record.clone(), start.clone()) {
            Ok(job) => {
                if let Some(r) = self.running.lock().by_policy.get_mut(&name) {
                    r.1 = Some(job);
                }
                Ok(true)
            }
            Err(err) => {
                // No thread: the run ends here, failed with the reason.
                let run = start.ended(
                    self.now_ms(),
                    RunResult::Failed,
                    Some(format!("cannot start the run: {err}")),
                    Vec::new(),
                    None,
                );
                e.state.running = None;
                note_result(&mut e.state, &run);
                self.running.lock().by_policy.remove(&name);
                self.idle.notify_all();
                self.count(&name, RunResult::Failed);
                store::save_state(&self.pool, &name, &e.state, Some(&run))?;
                Ok(false)
            }
        }
    }
}

/// The longest the scheduler thread sleeps between ticks: a clock moved, a policy created
/// or changed is looked at within this.
const TICK_MAX_MS: u64 = 1_000;
const TICK_MIN_MS: u64 = 20;

/// The daemon's scheduler thread; stops (and is joined) when dropped or by [`Scheduler::stop`].
pub struct Scheduler {
    stop: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Policies {
    /// The earliest next slot of any active policy.
    fn earliest_slot_ms(&self) -> Option<u64> {
        self.entries
            .lock()
            .values()
            .filter(|e| !e.record.paused)
            .flat_map(|e| e.state.tracks.values().filter_map(|t| t.next_ms))
            .min()
    }

    /// Starts the thread that ticks: at the next slot, and at least every second. Tick
    /// errors (metadata that cannot be written) are logged and the thread goes on.
    pub fn start_scheduler(self: &Arc<Self>) -> std::io::Result<Scheduler> {
        let stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let me = self.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("policy-scheduler".into())
            .spawn(move || {
                loop {
                    if let Err(e) = me.tick() {
                        tracing::error!("backup policy scheduler: {e}");
                    }
                    let now = me.now_ms();
                    let wait_ms = me
                        .earliest_slot_ms()
                        .map_or(TICK_MAX_MS, |t| t.saturating_sub(now))
                        .clamp(TICK_MIN_MS, TICK_MAX_MS);
                    let mut stopped = flag.0.lock();
                    if *stopped {
                        return;
                    }
                    flag.1
                        .wait_for(&mut stopped, std::time::Duration::from_millis(wait_ms));
                    if *stopped {
                        return;
                    }
                }
            })?;
        Ok(Scheduler {
            stop,
            thread: Some(thread),
        })
    }
}
