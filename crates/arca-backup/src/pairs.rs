//! Copy pairs: a primary volume and a full-size secondary kept as its copy.
//!
//! States: `copy` (initial copy), `pair` (every write to the primary is applied to the
//! secondary before it is acknowledged), `split` (the secondary frozen at the split instant,
//! writable), `resync` / `reverse-resync` (changed extents copied primary to secondary, or
//! back), `error` (a secondary write failed; the primary keeps serving).
//!
//! Change tracking costs nothing to make crash-safe: a split takes a snapshot of each side at
//! one instant (no write straddles it: the mirror hook brackets every primary write, and the
//! split waits for those in flight), and "what changed since the split" is the store's
//! `changed_extents` against those snapshots, which survive crashes like any snapshot. An
//! interrupted resync restarts from the same snapshots: still incremental, and it ends
//! identical. A secondary that fails in `pair` state gets the same treatment from that
//! instant on the primary, plus the extents of the writes it missed.
//!
//! Records live in the `pairs` table of the metadata store (id → record, postcard with a
//! version byte). A pair that was in `pair` state when the daemon stopped without closing it
//! restarts with a full copy: a write in flight at the crash may have reached one side only.
//!
//! Here: the pairs of a pool, their state changes (create, split, resync, delete, restart)
//! and the guards they want. Beside it: `record.rs` (the record and its states), `gate.rs`
//! (the gate primary writes pass), `mirror.rs` (the write hook mirroring to the secondary) and
//! `copy_job.rs` (the initial copy and resyncs).

use std::ops::Bound;
use std::sync::Arc;

use arca_store::{Error, ErrorKind, Guard, GuardEffect, GuardOwner, Pool, Result, Txn};
use parking_lot::{Mutex, RwLock};

use crate::backups::{busy, invalid, now_ms};
use crate::ids::{JobId, PairId};
use crate::jobs::JobManager;

mod copy_job;
mod gate;
mod mirror;
mod record;

use gate::Gate;
use mirror::Mirror;
pub use record::{PAIRS, PairRecord, PairState, primary_snapshot, secondary_snapshot};

/// The guards a pair's state wants, owned by the pair (`GuardOwner::Pair`): on the secondary
/// except while split (in error it may hold half a write), on the primary during a reverse
/// resync, and on the tracking snapshots while they exist. Other owners' guards on the same
/// volumes (a backup held on a split secondary) are theirs to keep or lift.
fn stage_guards(pool: &Pool, t: &mut Txn<'_>, r: &PairRecord) -> Result<()> {
    let owner = GuardOwner::Pair(r.id.get());
    let primary = volume_name(pool, r.primary_id).ok();
    let secondary = volume_name(pool, r.secondary_id).ok();
    if let Some(s) = &secondary {
        match r.state {
            PairState::Split => t.remove_volume_guard(s, owner)?,
            st => t.add_volume_guard(
                s,
                Guard::new(
                    owner,
                    GuardEffect::ALL,
                    format!("secondary of pair {} ({})", r.name, st.as_str()),
                ),
            )?,
        }
    }
    if let Some(p) = &primary {
        if r.state == PairState::ReverseResync {
            let why = format!("being restored from its pair {} (reverse-resync)", r.name);
            t.add_volume_guard(p, Guard::new(owner, GuardEffect::ALL, why))?;
        } else {
            t.remove_volume_guard(p, owner)?;
        }
    }
    for (vol, snap) in [
        (&primary, primary_snapshot(r.id)),
        (&secondary, secondary_snapshot(r.id)),
    ] {
        if let Some(v) = vol
            && t.snapshot_exists(v, &snap)
        {
            let why = format!("change tracking of pair {}", r.name);
            t.add_snapshot_guard(v, &snap, Guard::new(owner, GuardEffect::NO_DELETE, why))?;
        }
    }
    Ok(())
}

/// Plans removing every guard of the pair (it ends).
fn stage_lift_guards(pool: &Pool, t: &mut Txn<'_>, r: &PairRecord) -> Result<()> {
    let owner = GuardOwner::Pair(r.id.get());
    for id in [r.primary_id, r.secondary_id] {
        if let Ok(v) = volume_name(pool, id) {
            t.remove_volume_guard(&v, owner)?;
        }
    }
    Ok(())
}

struct Runtime {
    record: Mutex<PairRecord>,
    gate: Gate,
    /// Held shared by the mirror while it writes the secondary, exclusive by a copy job while
    /// it copies a batch: a mirrored write never lands between a copy's read and its write.
    copy_lock: RwLock<()>,
    job: Mutex<Option<JobId>>,
    /// In `error` state: the primary's snapshot tracks its changes (until then the mirror
    /// notes them in `missed_extents`).
    error_tracked: std::sync::atomic::AtomicBool,
    /// The secondary opened for the mirror's writes (an export follows renames).
    secondary: Mutex<Option<arca_store::Export>>,
}

impl Runtime {
    fn new(record: PairRecord) -> Arc<Runtime> {
        Arc::new(Runtime {
            record: Mutex::new(record),
            gate: Gate::default(),
            copy_lock: RwLock::new(()),
            job: Mutex::new(None),
            error_tracked: std::sync::atomic::AtomicBool::new(true),
            secondary: Mutex::new(None),
        })
    }
}

fn resync_allowed(r: &PairRecord, reverse: bool) -> Result<()> {
    let allowed = r.state == PairState::Split || (r.state == PairState::Error && !reverse);
    if allowed {
        return Ok(());
    }
    Err(busy(format!(
        "pair {} is in state {}; resync needs split{}",
        r.name,
        r.state.as_str(),
        if reverse { "" } else { " or error" }
    )))
}

fn volume_name(pool: &Pool, id: u64) -> Result<String> {
    pool.volumes()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("volume id {id} no longer exists"),
            )
        })
}

/// The pairs of a pool.
pub struct Pairs {
    pool: Pool,
    jobs: Arc<JobManager>,
    pairs: Mutex<Vec<Arc<Runtime>>>,
    /// Serializes state changes (taken before the store's commit lock).
    lock: Mutex<()>,
}

impl Pairs {
    /// Loads the pairs, installs their mirrors and guards, and resumes what a stop
    /// interrupted: an initial copy or a resync restarts; a pair not closed cleanly in `pair`
    /// state gets a full copy.
    pub fn open(pool: Pool, jobs: Arc<JobManager>) -> Result<Arc<Pairs>> {
        let mut records = Vec::new();
        pool.app_scan(PAIRS, Bound::Unbounded, Bound::Unbounded, false, |_, v| {
            records.push(PairRecord::decode(v));
            true
        })?;
        let p = Arc::new(Pairs {
            pool,
            jobs,
            pairs: Mutex::new(Vec::new()),
            lock: Mutex::new(()),
        });
        for r in records {
            let mut r = r.map_err(|e| Error::new(ErrorKind::Corrupt, e))?;
            if r.state == PairState::Pair && !r.closed_cleanly {
                r.state = PairState::Copy;
                r.reason = Some("the array stopped without closing the pair: full copy".into());
            }
            r.closed_cleanly = false;
            let rt = Runtime::new(r.clone());
            p.store(&r)?;
            if let Err(e) = p.install(&rt) {
                // A side deleted behind the pair's back: keep the record, in error, so the
                // pool still opens and the pair can be deleted.
                tracing::warn!(pair = %r.name, "cannot restore the pair: {e}");
                p.set(&rt, |x| {
                    x.state = PairState::Error;
                    x.reason = Some(format!("cannot restore the pair: {e}"));
                })?;
                p.pairs.lock().push(rt.clone());
                continue;
            }
            p.pairs.lock().push(rt.clone());
            match r.state {
                PairState::Copy => p.start_copy_job(&rt, false, false)?,
                PairState::Resync => p.start_copy_job(&rt, true, false)?,
                PairState::ReverseResync => p.start_copy_job(&rt, true, true)?,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Marks pairs in `pair` state closed cleanly (the daemon's orderly stop, after the data
    /// path stopped and its last flush), so the next start need not copy them in full. Writes
    /// to their primaries block from here on.
    pub fn close(&self) -> Result<()> {
        let _l = self.lock.lock();
        for rt in self.pairs.lock().iter() {
            let mut r = rt.record.lock().clone();
            if r.state == PairState::Pair {
                rt.gate.close();
                r.closed_cleanly = true;
                self.store(&r)?;
            }
        }
        Ok(())
    }

    /// Stores the record with the guards its state wants, in one transaction.
    fn store(&self, r: &PairRecord) -> Result<()> {
        let mut t = self.pool.transaction();
        t.put(PAIRS, r.id.get().to_be_bytes().to_vec(), r.encode());
        stage_guards(&self.pool, &mut t, r)?;
        t.commit()
    }

    /// Sets the record (in memory and durably).
    fn set(&self, rt: &Runtime, change: impl FnOnce(&mut PairRecord)) -> Result<PairRecord> {
        let mut r = rt.record.lock().clone();
        change(&mut r);
        self.store(&r)?;
        *rt.record.lock() = r.clone();
        Ok(r)
    }

    /// The mirror (not stored; the guards are, with the record). Both sides must exist.
    fn install(self: &Arc<Self>, rt: &Arc<Runtime>) -> Result<()> {
        let (primary_id, secondary_id) = {
            let r = rt.record.lock();
            (r.primary_id, r.secondary_id)
        };
        volume_name(&self.pool, secondary_id)?;
        self.pool.set_write_hook(
            &volume_name(&self.pool, primary_id)?,
            Some(Arc::new(Mirror {
                pool: self.pool.clone(),
                rt: rt.clone(),
                pairs: Arc::downgrade(self),
            })),
        )?;
        Ok(())
    }

    fn find(&self, name: &str) -> Result<Arc<Runtime>> {
        self.pairs
            .lock()
            .iter()
            .find(|rt| rt.record.lock().name == name)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("pair {name} does not exist")))
    }

    /// Refuses a change that would break a pair (deleting or resizing one of its volumes).
    pub fn check_volume_change(&self, volume: &str, what: &str) -> Result<()> {
        let Ok(v) = self.pool.volume(volume) else {
            return Ok(());
        };
        for rt in self.pairs.lock().iter() {
            let r = rt.record.lock();
            if r.primary_id == v.id || r.secondary_id == v.id {
                return Err(busy(format!(
                    "cannot {what} {volume}: it is in pair {}; delete the pair first",
                    r.name
                )));
            }
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<PairRecord> {
        self.pairs
            .lock()
            .iter()
            .map(|rt| rt.record.lock().clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<PairRecord> {
        Ok(self.find(name)?.record.lock().clone())
    }

    /// The running copy job of a pair, if any.
    pub fn job(&self, name: &str) -> Result<Option<JobId>> {
        Ok(*self.find(name)?.job.lock())
    }

    /// Makes a pair and starts its initial copy. The secondary must be at least as large and
    /// free; the second value is a warning when one device's loss may take both (placement.rs).
    pub fn create(
        self: &Arc<Self>,
        primary: &str,
        secondary: &str,
        pace_bytes_per_second: Option<u64>,
        hosts: &dyn crate::Hosts,
    ) -> Result<(PairRecord, Option<String>)> {
        let _l = self.lock.lock();
        let p = self.pool.volume(primary)?;
        let s = self.pool.volume(secondary)?;
        if p.id == s.id {
            return Err(invalid("a volume cannot be its own secondary"));
        }
        if s.size < p.size {
            return Err(invalid(format!(
                "secondary {secondary} is {} bytes, smaller than {primary} ({} bytes)",
                s.size, p.size
            )));
        }
        if pace_bytes_per_second == Some(0) {
            return Err(invalid("a pace of 0 would never copy"));
        }
        if let Some(g) = &s.guard {
            return Err(busy(format!("{secondary} is not free: {g}")));
        }
        if let Some(g) = &p.guard {
            // A reverse resync would write into it.
            return Err(busy(format!("{primary} is protected: {g}")));
        }
        if s.snapshots > 0 || s.tag.is_some() {
            return Err(busy(format!("{secondary} has snapshots or holds a backup")));
        }
        let connected = hosts.connected(secondary);
        if !connected.is_empty() {
            return Err(busy(format!(
                "{secondary} is in use by {}",
                connected.join(", ")
            )));
        }
        for rt in self.pairs.lock().iter() {
            let r = rt.record.lock();
            if [r.primary_id, r.secondary_id].contains(&s.id) {
                return Err(busy(format!("{secondary} is already in pair {}", r.name)));
            }
            if r.secondary_id == p.id || r.primary_id == p.id {
                return Err(busy(format!("{primary} is already in pair {}", r.name)));
            }
        }
        let devices = self.pool.device_status().len();
        let warning = crate::placement::pair_warning(&p, &s, devices);
        // Ids key the records: above every id in use, even within one millisecond.
        let last = self
            .pairs
            .lock()
            .iter()
            .map(|rt| rt.record.lock().id.get())
            .max()
            .unwrap_or(0);
        let r = PairRecord {
            id: PairId(now_ms().max(last + 1)),
            name: secondary.to_string(),
            primary_id: p.id,
            secondary_id: s.id,
            state: PairState::Copy,
            reason: None,
            pace_bytes_per_second,
            created_ms: now_ms(),
            split_ms: None,
            missed_extents: Vec::new(),
            closed_cleanly: false,
            needs_full_copy: false,
        };
        self.store(&r)?;
        let rt = Runtime::new(r.clone());
        self.install(&rt)?;
        self.pairs.lock().push(rt.clone());
        self.start_copy_job(&rt, false, false)?;
        Ok((r, warning))
    }

    /// Splits the pair at one instant: the secondary is frozen as the primary was then, and
    /// both sides track what changes from there.
    pub fn split(&self, name: &str) -> Result<PairRecord> {
        self.split_with(name, &mut |_, _| Ok(()))
    }

    /// A split whose transaction carries `also`'s changes too, planned (given the split
    /// record) before the pair's own guards change: a backup held on the secondary from the
    /// split's instant, with its record, all or nothing with the split.
    pub fn split_with(
        &self,
        name: &str,
        also: &mut dyn FnMut(&mut Txn<'_>, &PairRecord) -> Result<()>,
    ) -> Result<PairRecord> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        let r = rt.record.lock().clone();
        if r.state != PairState::Pair {
            return Err(busy(format!(
                "pair {name} is in state {}; only a pair in state pair can split",
                r.state.as_str()
            )));
        }
        let primary = volume_name(&self.pool, r.primary_id)?;
        let secondary = volume_name(&self.pool, r.secondary_id)?;
        // No primary write is half mirrored while the snapshots are taken.
        rt.gate.close();
        let result = (|| {
            let mut new = r.clone();
            new.state = PairState::Split;
            new.split_ms = Some(now_ms());
            let mut t = self.pool.transaction();
            t.create_snapshots(&[
                (primary.as_str(), primary_snapshot(r.id).as_str()),
                (secondary.as_str(), secondary_snapshot(r.id).as_str()),
            ])?;
            t.put(PAIRS, r.id.get().to_be_bytes().to_vec(), new.encode());
            // The caller's guards go on before the pair's lift: no instant unguarded.
            also(&mut t, &new)?;
            stage_guards(&self.pool, &mut t, &new)?;
            t.commit()?;
            *rt.record.lock() = new.clone();
            Ok(new)
        })();
        rt.gate.open();
        result
    }

    /// Copies what changed since the split: primary to secondary, or back (`reverse`, the
    /// restore: the primary is read-only to hosts meanwhile). Returns the job.
    /// Refused while the secondary holds a live backup (its guard says so): giving that up is
    /// the backup service's decision ([`crate::Backups::resync_pair`] consumes it first).
    pub fn resync(self: &Arc<Self>, name: &str, reverse: bool) -> Result<JobId> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        resync_allowed(&rt.record.lock(), reverse)?;
        let secondary_id = rt.record.lock().secondary_id;
        if let Ok(v) = volume_name(&self.pool, secondary_id)
            && let Some(g) = self
                .pool
                .volume(&v)?
                .guards
                .into_iter()
                .find(|g| matches!(g.owner, GuardOwner::Backup(_)))
        {
            return Err(busy(format!(
                "cannot resync pair {name}: its secondary {v} {}; consume the backup first",
                g.reason
            )));
        }
        let state = if reverse {
            PairState::ReverseResync
        } else {
            PairState::Resync
        };
        rt.gate.close();
        let r = self.set(&rt, |x| {
            x.state = state;
            x.reason = None;
        });
        rt.gate.open();
        r?;
        self.start_copy_job(&rt, true, reverse)?;
        Ok(rt.job.lock().expect("just started"))
    }

    /// Whether the pair's state lets it resync now (the backup layer asks before it consumes
    /// a backup held on the secondary, so a refused resync consumes nothing).
    pub fn check_resync(&self, name: &str, reverse: bool) -> Result<()> {
        resync_allowed(&self.find(name)?.record.lock(), reverse)
    }

    /// Ends a pair: the mirror goes, the guards and tracking snapshots go, both volumes stay.
    pub fn delete(&self, name: &str) -> Result<()> {
        let _l = self.lock.lock();
        let rt = self.find(name)?;
        if let Some(j) = *rt.job.lock()
            && self
                .jobs
                .get(j)
                .is_some_and(|j| !j.snapshot().state.finished())
        {
            return Err(busy(format!(
                "pair {name} has job {j} running; cancel it first"
            )));
        }
        let r = rt.record.lock().clone();
        let primary = volume_name(&self.pool, r.primary_id).ok();
        let secondary = volume_name(&self.pool, r.secondary_id).ok();
        let mut t = self.pool.transaction();
        for (vol, snap) in [
            (&primary, primary_snapshot(r.id)),
            (&secondary, secondary_snapshot(r.id)),
        ] {
            if let Some(v) = vol
                && t.snapshot_exists(v, &snap)
            {
                t.remove_snapshot_guard(v, &snap, GuardOwner::Pair(r.id.get()))?;
                t.delete_snapshot(v, &snap)?;
            }
        }
        stage_lift_guards(&self.pool, &mut t, &r)?;
        t.delete(PAIRS, r.id.get().to_be_bytes().to_vec());
        t.commit()?;
        if let Some(p) = &primary {
            self.pool.set_write_hook(p, None)?;
        }
        self.pairs.lock().retain(|x| !Arc::ptr_eq(x, &rt));
        Ok(())
    }

    /// A mirrored write failed on the secondary (the record already says `error` in memory):
    /// the state becomes durable, and a snapshot of the primary tracks its changes from now on;
    /// the writes before it are in `missed_extents`.
    fn secondary_failed(&self, rt: &Arc<Runtime>) {
        let _l = self.lock.lock();
        // No write lands between the snapshot and the end of noting extents by hand.
        rt.gate.close();
        let result = (|| -> Result<()> {
            let r = rt.record.lock().clone();
            let primary = volume_name(&self.pool, r.primary_id)?;
            let mut t = self.pool.transaction();
            let snap = primary_snapshot(r.id);
            // Tracking matters only when the secondary was whole.
            if !r.needs_full_copy && self.pool.snapshot(&primary, &snap).is_err() {
                t.create_snapshots(&[(primary.as_str(), snap.as_str())])?;
            }
            // Read again after the snapshot: every change before it is in the record.
            let r = rt.record.lock().clone();
            t.put(PAIRS, r.id.get().to_be_bytes().to_vec(), r.encode());
            stage_guards(&self.pool, &mut t, &r)?;
            t.commit()
        })();
        let name = rt.record.lock().name.clone();
        if result.is_ok() {
            rt.error_tracked
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        rt.gate.open();
        match result {
            Ok(()) => {}
            // Memory keeps noting changes by extent; a failed commit stays pending for the
            // next flush, which carries the record with it.
            Err(x) => tracing::error!(pair = %name, "recording the error state: {x}"),
        }
        tracing::warn!(pair = %name, "secondary failed, pair in error state");
    }
}
